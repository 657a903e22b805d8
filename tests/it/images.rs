//! `sandbox pull images:ALIAS[@VERSION]` against a generated image server on 127.0.0.1:
//! choosing the product (published aliases, os/release/variant fields), the build (newest with
//! a rootfs, or pinned), the arch, the default machine name, both item-key generations, a
//! server URL with a path, the legacy `meta/1.0/index-system`, and `--json`.
//! Trust, cache and listing cases live in `images_trust`, `images_cache` and `images_listing`;
//! the shared fixture is here.

use std::path::PathBuf;

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::simplestreams::{BuildSpec, Generation, ImageServer, Published, SigningKey};

pub const V1: &str = "20240601_05:24";
pub const V2: &str = "20240602_05:24";
pub const V3: &str = "20240603_05:24";
/// Listed without a rootfs: a build still being uploaded, never to be chosen.
pub const V4: &str = "20240604_05:24";

/// One test's host, server and signing key.
pub struct Lxc {
    pub env: TestEnv,
    pub server: ImageServer,
    pub key: SigningKey,
    /// The key's armored export, for `--keyring`.
    pub keyring: PathBuf,
}

/// The builds [`Lxc::standard`] publishes.
pub struct Standard {
    /// debian/bookworm (variant default) amd64, no published aliases: V1 and V2 keyed the
    /// `lxd` way, V3 the `incus` way; V4 has no rootfs.
    pub default_amd64: Vec<Published>,
    /// debian/bookworm arm64: V1, V2 (incus keys).
    pub default_arm64: Vec<Published>,
    /// debian/bookworm/cloud amd64 with aliases `debian/bookworm/cloud,debian/12/cloud`: V1, V2.
    pub cloud_amd64: Vec<Published>,
    /// Same aliases, arm64: V1.
    pub cloud_arm64: Vec<Published>,
}

impl Lxc {
    pub fn new() -> Lxc {
        Lxc::with_server(ImageServer::new())
    }

    pub fn with_server(server: ImageServer) -> Lxc {
        let env = TestEnv::new();
        let key = SigningKey::sha1_self_signed("lxc");
        let keyring = key.export_to(&env.scratch("keys").join("lxc.asc"));
        Lxc {
            env,
            server,
            key,
            keyring,
        }
    }

    /// Publishes one build signed by the fixture's key.
    pub fn publish(&mut self, spec: BuildSpec) -> Published {
        self.server.publish(spec, &self.key)
    }

    /// Publishes the standard set of builds and the simplestreams documents.
    pub fn standard(&mut self) -> Standard {
        let default =
            |arch: &str, v: &str| BuildSpec::new("Debian", "bookworm", "default", arch, v);
        let cloud = |arch: &str, v: &str| {
            BuildSpec::new("Debian", "bookworm", "cloud", arch, v)
                .aliases(&["debian/bookworm/cloud", "debian/12/cloud"])
        };
        let default_amd64 = vec![
            self.publish(default("amd64", V1)),
            self.publish(default("amd64", V2)),
            self.publish(default("amd64", V3).generation(Generation::Incus)),
            self.publish(
                default("amd64", V4)
                    .generation(Generation::Incus)
                    .without_rootfs(),
            ),
        ];
        let default_arm64 = vec![
            self.publish(default("arm64", V1).generation(Generation::Incus)),
            self.publish(default("arm64", V2).generation(Generation::Incus)),
        ];
        let cloud_amd64 = vec![
            self.publish(cloud("amd64", V1)),
            self.publish(cloud("amd64", V2)),
        ];
        let cloud_arm64 = vec![self.publish(cloud("arm64", V1))];
        self.server.write_streams();
        Standard {
            default_amd64,
            default_arm64,
            cloud_amd64,
            cloud_arm64,
        }
    }

    /// `sandbox [--json] pull --images-server URL --keyring KEY args…`.
    pub fn pull(&self, json: bool, args: &[&str]) -> Outcome {
        let server = self.server.server();
        let mut full = Vec::new();
        if json {
            full.push("--json");
        }
        full.extend([
            "pull",
            "--images-server",
            &server,
            "--keyring",
            arg(&self.keyring),
        ]);
        full.extend(args);
        self.env.sandbox(&full)
    }

    /// Sets `fetched_at` of every cached server document to long ago, as if the five fresh
    /// minutes had passed; returns how many documents it aged.
    pub fn age_cached_documents(&self) -> usize {
        let dir = self.env.cache_dir().join("v1/refs/index");
        let mut aged = 0;
        for name in crate::harness::dir_names(&dir) {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let mut doc: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            assert!(
                doc.get("fetched_at").is_some(),
                "{} has no fetched_at: {text}",
                path.display()
            );
            doc["fetched_at"] = "2000-01-01T00:00:00Z".into();
            std::fs::write(&path, serde_json::to_vec(&doc).expect("rendering JSON"))
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            aged += 1;
        }
        aged
    }
}

/// The host's architecture in Debian spelling, as the binary must default to.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("the images tests publish amd64 and arm64 builds only, not {other}"),
    }
}

#[test]
fn pulls_the_newest_build_with_a_rootfs_under_the_default_name() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm"])
        .success();

    // V4 is newer but has no rootfs yet: V3 (keyed rootfs.tar.xz / incus.tar.xz) must land.
    s.default_amd64[2].assert_landed(&lxc.env.machine("debian-bookworm"));
    lxc.env.assert_machines(&["debian-bookworm"]);
    assert_eq!(lxc.server.gets(&s.default_amd64[2].rootfs_rel()), 1);
    for older in &s.default_amd64[..2] {
        assert_eq!(
            lxc.server.gets(&older.rootfs_rel()),
            0,
            "an older build was downloaded:\n{}",
            lxc.server.nginx().log_text()
        );
    }
    assert!(
        lxc.env.blobs().contains(&s.default_amd64[2].rootfs_hex()),
        "the rootfs is cached under its digest"
    );
}

#[test]
fn pins_a_version_keyed_the_old_way() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(
        false,
        &[
            "--arch",
            "amd64",
            &format!("images:debian/bookworm@{V1}"),
            "old",
        ],
    )
    .success();
    s.default_amd64[0].assert_landed(&lxc.env.machine("old"));
    lxc.env.assert_machines(&["old"]);
}

#[test]
fn a_pinned_version_the_server_lacks_is_refused_with_what_it_has() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.pull(
        false,
        &["--arch", "amd64", "images:debian/bookworm@20240501_00:00"],
    )
    .failure()
    .stderr_mentions(&["20240501_00:00", V3, V1]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn a_pinned_build_without_rootfs_is_refused() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.pull(
        false,
        &["--arch", "amd64", &format!("images:debian/bookworm@{V4}")],
    )
    .failure()
    .stderr_mentions(&["root.tar.xz", V4]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn published_aliases_match_and_name_the_machine() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    // release_title is "bookworm", so "12" can only come from the published alias list.
    lxc.pull(false, &["--arch", "amd64", "images:debian/12/cloud"])
        .success();
    s.cloud_amd64[1].assert_landed(&lxc.env.machine("debian-12-cloud"));
    // The same product through its fields (and its first alias).
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm/cloud"])
        .success();
    s.cloud_amd64[1].assert_landed(&lxc.env.machine("debian-bookworm-cloud"));
    lxc.env
        .assert_machines(&["debian-12-cloud", "debian-bookworm-cloud"]);
}

#[test]
fn os_release_variant_fields_match_case_insensitively_with_default_variant() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    // The product publishes os "Debian" and no aliases: only the field rule can match, and
    // `debian/bookworm` must mean variant `default`, not `cloud`.
    lxc.pull(
        false,
        &["--arch", "amd64", "images:debian/bookworm/default", "full"],
    )
    .success();
    s.default_amd64[2].assert_landed(&lxc.env.machine("full"));
    lxc.pull(
        false,
        &[
            "--arch",
            "amd64",
            &format!("images:debian/bookworm@{V2}"),
            "short",
        ],
    )
    .success();
    s.default_amd64[1].assert_landed(&lxc.env.machine("short"));
}

#[test]
fn arch_is_selected_in_any_spelling_and_defaults_to_the_host() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &["--arch", "arm64", "images:debian/bookworm", "arm"])
        .success();
    s.default_arm64[1].assert_landed(&lxc.env.machine("arm"));
    lxc.pull(
        false,
        &["--arch", "aarch64", "images:debian/12/cloud", "arm-cloud"],
    )
    .success();
    s.cloud_arm64[0].assert_landed(&lxc.env.machine("arm-cloud"));

    lxc.pull(false, &["images:debian/bookworm", "host"])
        .success();
    let host_build = match host_arch() {
        "amd64" => &s.default_amd64[2],
        _ => &s.default_arm64[1],
    };
    host_build.assert_landed(&lxc.env.machine("host"));
}

#[test]
fn an_arch_without_builds_is_refused_naming_the_available_ones() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.pull(false, &["--arch", "riscv64", "images:debian/bookworm"])
        .failure()
        .stderr_mentions(&["riscv64", "amd64", "arm64"]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn an_unknown_alias_is_refused_with_suggestions() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.pull(false, &["--arch", "amd64", "images:debian/bokworm"])
        .failure()
        .stderr_mentions(&["debian/bokworm", "debian/bookworm"]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn a_server_url_with_a_path_and_no_trailing_slash_works() {
    let mut lxc = Lxc::with_server(ImageServer::with_prefix("mirror/lxc"));
    let s = lxc.standard();
    assert!(!lxc.server.server().ends_with('/'));
    lxc.pull(false, &["--arch", "amd64", "images:debian/12/cloud", "box"])
        .success();
    s.cloud_amd64[1].assert_landed(&lxc.env.machine("box"));
    assert_eq!(lxc.server.gets("streams/v1/index.json"), 1);
}

#[test]
fn json_reports_version_digest_signer_and_the_sha1_note() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    let out = lxc
        .pull(true, &["--arch", "amd64", "images:debian/12/cloud"])
        .success();
    let json = out.json();
    let build = &s.cloud_amd64[1];
    assert_eq!(json["version"], V2);
    assert_eq!(json["name"], "debian-12-cloud");
    assert_eq!(json["source"], "images:debian/12/cloud");
    assert_eq!(json["digest"], format!("sha256:{}", build.rootfs_hex()));
    assert_eq!(
        json["path"],
        lxc.env.machine("debian-12-cloud").display().to_string()
    );
    let v = &json["verification"];
    assert_eq!(v["mode"], "signature");
    assert_eq!(v["key_fingerprint"], lxc.key.fingerprint());
    assert!(
        v["signature_source"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("{}SHA256SUMS.asc", build.spec.dir()))),
        "signature_source: {v}"
    );
    let notes = v["notes"].as_array().cloned().unwrap_or_default();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("SHA-1") && n.contains(lxc.key.fingerprint()))),
        "expected a note on the accepted SHA-1 self-signature: {v}"
    );
    build.assert_landed(&lxc.env.machine("debian-12-cloud"));
}

#[test]
fn fixture_key_is_sha1_self_signed_and_signs_with_sha256() {
    // The SHA-1 cases below mean nothing unless gpg made what the fixture claims.
    let mut lxc = Lxc::new();
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    let digests = lxc.key.signature_digests(&lxc.keyring);
    assert!(
        !digests.is_empty() && digests.iter().all(|(_, algo)| *algo == 2),
        "every self-signature must use SHA-1 (hash 2): {digests:?}"
    );
    let sig = lxc.server.path(&format!("{}SHA256SUMS.asc", b.spec.dir()));
    assert_eq!(
        lxc.key.signature_digests(&sig),
        [("0x00".to_string(), 8)],
        "a binary data signature with SHA-256 (hash 8)"
    );
}

/// A legacy server: no streams/, only `meta/1.0/index-system` (and maybe `.7`).
fn legacy(lxc: &mut Lxc) -> Vec<Published> {
    let spec = |arch: &str, v: &str| BuildSpec::new("Debian", "bookworm", "default", arch, v);
    vec![
        lxc.publish(spec("amd64", V1)),
        lxc.publish(spec("amd64", V2)),
        lxc.publish(spec("arm64", V1)),
        lxc.publish(BuildSpec::new("Debian", "bookworm", "cloud", "amd64", V1)),
    ]
}

#[test]
fn pulls_from_a_legacy_index_verified_by_the_signed_sums() {
    let mut lxc = Lxc::new();
    let b = legacy(&mut lxc);
    lxc.server
        .write_legacy_index("index-system", &b.iter().collect::<Vec<_>>());
    let out = lxc
        .pull(true, &["--arch", "amd64", "images:debian/bookworm"])
        .success();
    b[1].assert_landed(&lxc.env.machine("debian-bookworm"));
    let json = out.json();
    assert_eq!(json["version"], V2);
    assert_eq!(
        json["verification"]["key_fingerprint"],
        lxc.key.fingerprint()
    );
    assert!(
        json["verification"]["signature_source"]
            .as_str()
            .is_some_and(|s| s.ends_with("SHA256SUMS.asc")),
        "{json}"
    );
    assert_eq!(lxc.server.gets("streams/v1/index.json"), 0);

    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm/cloud"])
        .success();
    b[3].assert_landed(&lxc.env.machine("debian-bookworm-cloud"));
    lxc.pull(false, &["--arch", "arm64", "images:debian/bookworm", "arm"])
        .success();
    b[2].assert_landed(&lxc.env.machine("arm"));
}

#[test]
fn the_legacy_index_system_7_is_read_first() {
    let mut lxc = Lxc::new();
    let b = legacy(&mut lxc);
    // The two files disagree on purpose: only `.7` lists V2.
    lxc.server
        .write_legacy_index("index-system.7", &[&b[0], &b[1]]);
    lxc.server.write_legacy_index("index-system", &[&b[0]]);
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm"])
        .success();
    b[1].assert_landed(&lxc.env.machine("debian-bookworm"));
    assert_eq!(lxc.server.gets("meta/1.0/index-system"), 0);
}

#[test]
fn a_legacy_build_without_signed_sums_fails_closed() {
    let mut lxc = Lxc::new();
    let b = legacy(&mut lxc);
    lxc.server.write_legacy_index("index-system", &[&b[0]]);
    lxc.server
        .remove(&format!("{}SHA256SUMS.asc", b[0].spec.dir()));
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm"])
        .failure()
        .stderr_mentions(&["SHA256SUMS.asc"]);
    lxc.env.assert_machines(&[]);
    assert_eq!(lxc.server.gets(&b[0].rootfs_rel()), 0);
}

#[test]
fn a_legacy_build_with_only_per_file_signatures_is_pulled() {
    // What the LXC `download` template checks on legacy servers: `rootfs.tar.xz.asc`.
    let mut lxc = Lxc::new();
    let b = legacy(&mut lxc);
    lxc.server.write_legacy_index("index-system", &[&b[0]]);
    lxc.server
        .remove(&format!("{}SHA256SUMS.asc", b[0].spec.dir()));
    lxc.server.sign(&b[0].rootfs_rel(), &lxc.key, "SHA256");
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm"])
        .success();
    b[0].assert_landed(&lxc.env.machine("debian-bookworm"));
}

#[test]
fn the_server_comes_from_the_environment_unless_given() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    let server = lxc.server.server();
    let keyring = arg(&lxc.keyring);
    let pull = [
        "pull",
        "--keyring",
        keyring,
        "--arch",
        "amd64",
        "images:debian/12/cloud",
    ];
    lxc.env
        .sandbox_with_env(&pull, &[("SANDBOX_IMAGES_SERVER", &server)])
        .success();
    s.cloud_amd64[1].assert_landed(&lxc.env.machine("debian-12-cloud"));
    let listed = lxc
        .env
        .sandbox_with_env(
            &["--json", "images", "--remote", "--arch", "arm64"],
            &[("SANDBOX_IMAGES_SERVER", &server)],
        )
        .success()
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // --images-server wins over the environment (which names a server that is not there).
    let dead = "http://127.0.0.1:9/";
    let with_flag = [&pull[..], &["--images-server", &server, "second"]].concat();
    lxc.env
        .sandbox_with_env(&with_flag, &[("SANDBOX_IMAGES_SERVER", dead)])
        .success();
    s.cloud_amd64[1].assert_landed(&lxc.env.machine("second"));
}
