//! OCI pulls end to end: images built in code as layouts, pushed by real skopeo into a real
//! distribution registry (Debian's docker-registry) on 127.0.0.1, pulled by the real binary.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::ocimage::{
    BuiltImage, Comp, Entry, ImageSpec, LayerSpec, host_arch, init_image, multi_platform_layout,
    single_image_layout,
};
use crate::harness::registry::Registry;

pub(crate) const ALLOW_ALL: &str = r#"{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}"#;

/// Three layers: gzip, zstd, plain; a whiteout, an opaque directory, a hardlink to a file of
/// a lower layer, a symlink, and a file replaced; no init, so a `.nspawn` is expected.
pub(crate) fn rich_image(arch: &'static str) -> ImageSpec {
    ImageSpec {
        arch,
        layers: vec![
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![
                    Entry::Dir("etc"),
                    Entry::File("etc/arch", arch.as_bytes().to_vec(), 0o644),
                    Entry::Dir("usr"),
                    Entry::Dir("usr/bin"),
                    Entry::File("usr/bin/tool", b"#!/bin/sh\necho tool\n".to_vec(), 0o755),
                    Entry::Symlink("bin", "usr/bin"),
                    Entry::Dir("data"),
                    Entry::File("data/gone.txt", b"deleted above".to_vec(), 0o644),
                    Entry::File("data/keep.txt", b"v1".to_vec(), 0o644),
                    Entry::Dir("opq"),
                    Entry::File("opq/lower.txt", b"hidden above".to_vec(), 0o644),
                    Entry::Dir("opq/sub"),
                    Entry::File("opq/sub/deep.txt", b"hidden too".to_vec(), 0o644),
                ],
            },
            LayerSpec {
                comp: Comp::Zstd,
                entries: vec![
                    Entry::Whiteout("data/gone.txt"),
                    Entry::Opaque("opq"),
                    Entry::File("opq/upper.txt", b"visible".to_vec(), 0o644),
                    Entry::Hardlink("usr/bin/tool-link", "usr/bin/tool"),
                ],
            },
            LayerSpec {
                comp: Comp::None,
                entries: vec![Entry::File("data/keep.txt", b"v2".to_vec(), 0o644)],
            },
        ],
        entrypoint: vec!["/usr/bin/tool", "--serve"],
        cmd: vec!["two words"],
        env: vec!["PATH=/usr/bin:/bin", "GREETING=hello"],
        last_layer_size_lie: 0,
    }
}

/// Runs the binary with no credentials from the real host's auth files.
pub(crate) fn run(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
    let home = env.scratch("home");
    let runtime = env.scratch("xdg-runtime");
    let mut all = vec![("HOME", arg(&home)), ("XDG_RUNTIME_DIR", arg(&runtime))];
    all.extend_from_slice(vars);
    env.sandbox_with_env(args, &all)
}

pub(crate) fn allow_all(env: &TestEnv) {
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    std::fs::write(env.sandboxes_dir().join("policy.json"), ALLOW_ALL).unwrap();
}

/// A registry holding `spec` as `repo:tag`, and the image's blobs.
pub(crate) fn registry_with(
    env: &TestEnv,
    spec: &ImageSpec,
    repo_tag: &str,
    creds: Option<(&str, &str)>,
) -> (Registry, BuiltImage) {
    let layout = env.scratch("layout");
    let image = single_image_layout(&layout, spec, "t");
    let registry = Registry::start(&env.scratch("registry"), creds);
    registry.push(&layout, "t", repo_tag);
    (registry, image)
}

/// The tree `rich_image` must become.
pub(crate) fn assert_rich_tree(root: &Path, arch: &str) {
    assert_eq!(
        std::fs::read(root.join("etc/arch")).unwrap(),
        arch.as_bytes()
    );
    assert!(!root.join("data/gone.txt").exists(), "the whiteout deletes");
    assert_eq!(std::fs::read(root.join("data/keep.txt")).unwrap(), b"v2");
    let mut opq = crate::harness::dir_names(&root.join("opq"));
    opq.sort();
    assert_eq!(
        opq,
        ["upper.txt"],
        "the opaque dir keeps only its own layer"
    );
    let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    let link = std::fs::metadata(root.join("usr/bin/tool-link")).unwrap();
    assert_eq!(
        tool.ino(),
        link.ino(),
        "the hardlink to a lower layer's file"
    );
    assert_eq!(tool.mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        PathBuf::from("usr/bin")
    );
}

fn assert_exec_nspawn(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains("[Exec]") && text.contains("Boot=no"),
        "{text}"
    );
    let params = text
        .lines()
        .find(|l| l.starts_with("Parameters="))
        .unwrap_or_else(|| panic!("no Parameters= in {text}"));
    assert!(
        params.starts_with("Parameters=/usr/bin/tool --serve "),
        "{params}"
    );
    assert!(params.contains("two words"), "{params}");
    assert!(text.contains("Environment=GREETING=hello"), "{text}");
}

#[test]
fn a_registry_image_by_tag_then_by_digest_reuses_every_layer() {
    let env = TestEnv::new();
    allow_all(&env);
    let (registry, image) = registry_with(&env, &rich_image(host_arch()), "team/app:1", None);
    let out = run(
        &env,
        &[
            "--json",
            "pull",
            "--tls-verify=false",
            &registry.reference("team/app:1"),
            "app",
        ],
        &[],
    )
    .success();
    let j = out.json();
    // skopeo compresses the plain layer on push, so the registry's manifest is the truth.
    let (digest, manifest) = registry.manifest("team/app", "1");
    assert_eq!(j["manifest_digest"], digest);
    assert_eq!(j["config_digest"], image.config.digest());
    assert_eq!(j["platform"], format!("linux/{}", host_arch()));
    let layers = manifest["layers"].as_array().unwrap();
    let total: u64 = layers.iter().map(|l| l["size"].as_u64().unwrap()).sum();
    assert_eq!(j["layer_bytes_fetched"], total);
    assert_rich_tree(&env.machine("app"), host_arch());
    assert_exec_nspawn(&env.machines_dir().join("app.nspawn"));
    let blobs = env.blobs();
    let mut wanted: Vec<&str> = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    wanted.extend([
        digest.as_str(),
        manifest["config"]["digest"].as_str().unwrap(),
    ]);
    for d in wanted {
        let hex = d.trim_start_matches("sha256:").to_string();
        assert!(blobs.contains(&hex), "blob {d} is cached");
    }
    let layer_gets = || -> Vec<usize> {
        layers
            .iter()
            .map(|l| {
                registry.gets(&format!(
                    "/v2/team/app/blobs/{}",
                    l["digest"].as_str().unwrap()
                ))
            })
            .collect()
    };
    assert_eq!(
        layer_gets(),
        vec![1; layers.len()],
        "each layer fetched once"
    );
    let refs = crate::harness::dir_names(&env.cache_dir().join("v1/refs/oci"));
    assert_eq!(refs.len(), 1, "{refs:?}");

    // By digest: the same image, every layer from the cache.
    let by_digest = registry.reference(&format!("team/app@{digest}"));
    let j = run(
        &env,
        &["--json", "pull", "--tls-verify=false", &by_digest, "app2"],
        &[],
    )
    .success()
    .json();
    assert_eq!(j["manifest_digest"], digest);
    assert_eq!(j["layer_bytes_fetched"], 0);
    assert_eq!(
        layer_gets(),
        vec![1; layers.len()],
        "no layer fetched again"
    );
    assert_rich_tree(&env.machine("app2"), host_arch());

    // A layer that rotted in the cache is noticed and fetched again.
    let first = &layers[0];
    let cached = env.blobs_dir().join(
        first["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&cached, bytes).unwrap();
    let reference = registry.reference("team/app:1");
    let j = run(
        &env,
        &["--json", "pull", "--tls-verify=false", &reference, "app3"],
        &[],
    )
    .success()
    .stderr_mentions(&["corrupt"])
    .json();
    assert_eq!(j["layer_bytes_fetched"], first["size"]);
    assert_rich_tree(&env.machine("app3"), host_arch());

    // Offline, with the registry gone: the ref and the cached blobs are enough.
    drop(registry);
    let j = run(
        &env,
        &["--json", "pull", "--offline", &reference, "app4"],
        &[],
    )
    .success()
    .json();
    assert_eq!(j["manifest_digest"], digest);
    assert_rich_tree(&env.machine("app4"), host_arch());
    env.assert_machines(&[
        "app",
        "app.nspawn",
        "app2",
        "app2.nspawn",
        "app3",
        "app3.nspawn",
        "app4",
        "app4.nspawn",
    ]);
}

#[test]
fn the_platform_is_chosen_from_an_index() {
    let env = TestEnv::new();
    allow_all(&env);
    let layout = env.scratch("layout");
    let (_, images) =
        multi_platform_layout(&layout, &[rich_image("amd64"), rich_image("arm64")], "t");
    let registry = Registry::start(&env.scratch("registry"), None);
    registry.push(&layout, "t", "multi:1");
    let reference = registry.reference("multi:1");
    // TLS is required unless --tls-verify=false: a plain-http registry is not silently used.
    run(&env, &["pull", &reference, "plain"], &[])
        .failure()
        .stderr_mentions(&["GET https://", "--tls-verify=false"]);
    env.assert_machines(&[]);
    let j = run(
        &env,
        &[
            "--json",
            "pull",
            "--tls-verify=false",
            "--platform",
            "linux/arm64",
            &reference,
            "arm",
        ],
        &[],
    )
    .success()
    .json();
    assert_eq!(j["platform"], "linux/arm64");
    let (index_digest, index) = registry.manifest("multi", "1");
    let pick = |arch: &str| -> serde_json::Value {
        let m = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap_or_else(|| panic!("no {arch} in {index}"));
        registry.document(m["digest"].as_str().unwrap())
    };
    let arm = pick("arm64");
    assert_eq!(j["config_digest"], arm["config"]["digest"]);
    assert_eq!(j["config_digest"], images[1].config.digest());
    assert_rich_tree(&env.machine("arm"), "arm64");
    let blobs = env.blobs();
    assert!(
        blobs.contains(&index_digest.trim_start_matches("sha256:").to_string()),
        "the index is cached too"
    );
    assert!(
        !blobs.contains(&images[0].layers[0].hex),
        "the other platform's layers are not fetched"
    );
    let j = run(
        &env,
        &["--json", "pull", "--tls-verify=false", &reference, "native"],
        &[],
    )
    .success()
    .json();
    assert_eq!(j["platform"], format!("linux/{}", host_arch()));
    assert_rich_tree(&env.machine("native"), host_arch());
}

#[test]
fn unsigned_registry_images_need_a_policy_or_verify_no() {
    let env = TestEnv::new();
    let (registry, _) = registry_with(&env, &init_image(), "sys:1", None);
    let reference = registry.reference("sys:1");
    run(
        &env,
        &["pull", "--tls-verify=false", &reference, "sys"],
        &[],
    )
    .failure()
    .stderr_mentions(&["policy refuses", "policy.json does not exist"]);
    env.assert_machines(&[]);
    assert!(env.blobs().is_empty(), "a refused pull fetches nothing");

    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        r#"{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/k.gpg"}]}"#,
    )
    .unwrap();
    run(
        &env,
        &["pull", "--tls-verify=false", &reference, "sys"],
        &[],
    )
    .failure()
    .stderr_mentions(&["requires a simple signing signature", "no lookaside store"]);
    env.assert_machines(&[]);

    let j = run(
        &env,
        &[
            "--json",
            "pull",
            "--verify=no",
            "--tls-verify=false",
            &reference,
            "sys",
        ],
        &[],
    )
    .success()
    .stderr_mentions(&["--verify=no", "NOT"])
    .json();
    assert_eq!(j["verification"]["mode"], "no");
    // An image with an init system boots: no .nspawn.
    env.assert_machines(&["sys"]);

    let host = registry.host();
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{host}/sys":[{{"type":"insecureAcceptAnything"}}]}}}}}}"#
        ),
    )
    .unwrap();
    run(
        &env,
        &["pull", "--force", "--tls-verify=false", &reference, "sys"],
        &[],
    )
    .success();
    env.assert_machines(&["sys"]);
}

#[test]
fn registry_credentials_from_flag_and_auth_file_and_a_clear_401() {
    let env = TestEnv::new();
    allow_all(&env);
    let secret = "pa55-w0rd-s3cret";
    let (registry, _) = registry_with(&env, &init_image(), "priv:1", Some(("alice", secret)));
    let reference = registry.reference("priv:1");
    run(&env, &["pull", "--tls-verify=false", &reference, "a"], &[])
        .failure()
        .stderr_mentions(&["401", "--creds"]);
    // A malformed flag is refused without echoing it (it may be a bare password).
    let out = run(
        &env,
        &["pull", "--creds", "bare-s3cret", &reference, "a"],
        &[],
    );
    assert!(!out.status.success());
    assert!(!out.stderr.contains("bare-s3cret"), "{}", out.stderr);
    let wrong = "wr0ng-guess-value";
    let out = run(
        &env,
        &[
            "-v",
            "pull",
            "--tls-verify=false",
            "--creds",
            &format!("alice:{wrong}"),
            &reference,
            "a",
        ],
        &[],
    )
    .failure()
    .stderr_mentions(&["401", "alice"]);
    assert!(
        !out.stderr.contains(wrong),
        "the password leaked:\n{}",
        out.stderr
    );
    env.assert_machines(&[]);

    let out = run(
        &env,
        &[
            "-v",
            "pull",
            "--tls-verify=false",
            "--creds",
            &format!("alice:{secret}"),
            &reference,
            "a",
        ],
        &[],
    )
    .success();
    assert!(!out.stderr.contains(secret) && !out.stdout.contains(secret));

    let auth_file = env.scratch("auth").join("auth.json");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("alice:{secret}"));
    std::fs::write(
        &auth_file,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{encoded}"}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    run(
        &env,
        &["pull", "--tls-verify=false", &reference, "b"],
        &[("REGISTRY_AUTH_FILE", arg(&auth_file))],
    )
    .success();

    // ~/.docker/config.json naming a credential helper, which gets the host on stdin.
    let bin = env.scratch("bin");
    let helper = bin.join("docker-credential-sbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$1\" = get ] && [ \"$host\" = \"{}\" ] || exit 1\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"{secret}\"}}' \"$host\"\n",
            registry.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let docker_dir = env.scratch("home").join(".docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    std::fs::write(
        docker_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"sbtest"}}}}"#, registry.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = run(
        &env,
        &["pull", "--tls-verify=false", &reference, "c"],
        &[("PATH", &path)],
    )
    .success();
    assert!(!out.stderr.contains(secret));
    env.assert_machines(&["a", "b", "c"]);
}

#[test]
fn a_layer_altered_in_the_registry_is_refused_and_never_cached() {
    let env = TestEnv::new();
    allow_all(&env);
    let (registry, image) = registry_with(&env, &rich_image(host_arch()), "bad:1", None);
    let victim = &image.layers[1];
    let path = registry.blob_data(&victim.hex);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            &registry.reference("bad:1"),
            "bad",
        ],
        &[],
    )
    .failure()
    .stderr_mentions(&[&victim.hex, "digest mismatch"]);
    assert!(!env.blobs().contains(&victim.hex));
    env.assert_machines(&[]);
    assert!(
        crate::harness::dir_names(&env.cache_tmp_dir())
            .iter()
            .all(|n| !n.starts_with("blob-")),
        "no temp blob is left behind"
    );
}

#[test]
fn layouts_and_archives_are_pulled_without_a_policy() {
    let env = TestEnv::new();
    let layout = env.scratch("layout");
    single_image_layout(&layout, &rich_image(host_arch()), "v1");
    let source = format!("oci-layout:{}:v1", layout.display());
    let j = run(&env, &["--json", "pull", &source, "lay"], &[])
        .success()
        .json();
    assert_eq!(j["verification"]["mode"], "digest");
    assert_rich_tree(&env.machine("lay"), host_arch());
    assert_exec_nspawn(&env.machines_dir().join("lay.nspawn"));

    let sys = env.scratch("sys-layout");
    single_image_layout(&sys, &init_image(), "v1");
    let archive = env.scratch("archives").join("sys.tar");
    crate::harness::run_tool(
        std::process::Command::new(crate::harness::require_tool("skopeo"))
            .args(["--insecure-policy", "copy"])
            .arg(format!("oci:{}:v1", sys.display()))
            .arg(format!("oci-archive:{}:v1", archive.display())),
        None,
    );
    run(
        &env,
        &["pull", &format!("oci-archive:{}", archive.display())],
        &[],
    )
    .success();
    assert!(env.machine("sys").join("sbin/init").is_file());
    env.assert_machines(&["lay", "lay.nspawn", "sys"]);
    assert!(
        crate::harness::dir_names(&env.cache_tmp_dir()).is_empty(),
        "the extracted archive is removed"
    );
}

#[test]
fn a_layout_whose_descriptor_lies_about_a_size_is_refused() {
    let env = TestEnv::new();
    let layout = env.scratch("layout");
    let mut spec = rich_image(host_arch());
    spec.last_layer_size_lie = 1;
    let image = single_image_layout(&layout, &spec, "v1");
    run(
        &env,
        &[
            "pull",
            &format!("oci-layout:{}:v1", layout.display()),
            "liar",
        ],
        &[],
    )
    .failure()
    .stderr_mentions(&[&image.layers[2].hex]);
    assert!(!env.blobs().contains(&image.layers[2].hex));
    env.assert_machines(&[]);
}

#[test]
fn two_concurrent_pulls_of_one_image_download_each_layer_once() {
    let env = TestEnv::new();
    allow_all(&env);
    let (registry, _) = registry_with(&env, &rich_image(host_arch()), "both:1", None);
    let reference = registry.reference("both:1");
    let a = env.spawn(&["pull", "--tls-verify=false", &reference, "one"]);
    let b = env.spawn(&["pull", "--tls-verify=false", &reference, "two"]);
    a.wait().success();
    b.wait().success();
    let (_, manifest) = registry.manifest("both", "1");
    for l in manifest["layers"].as_array().unwrap() {
        let path = format!("/v2/both/blobs/{}", l["digest"].as_str().unwrap());
        assert_eq!(registry.gets(&path), 1, "{path} fetched once");
    }
    assert_rich_tree(&env.machine("one"), host_arch());
    assert_rich_tree(&env.machine("two"), host_arch());
}
