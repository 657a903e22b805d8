//! `cache import` of `images:` and OCI refs: each imported ref passes the same verification as
//! an `--offline` pull (the pull pipeline with the ref as its candidate) before it is written,
//! with the importing host's keys and policy; `pull --offline` then works from it alone.

use std::path::Path;

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::ocimage::host_arch;
use crate::harness::rawtar::RawTar;
use crate::images::Lxc;
use crate::oci::{allow_all, assert_rich_tree, registry_with, rich_image, run};

/// Sources of the refs of one kind (`tarball`, `images`, `index`, `oci`) in `env`'s cache.
fn refs_of(env: &TestEnv, kind: &str) -> Vec<String> {
    let out = env.sandbox(&["--json", "cache", "ls"]).success();
    out.json()["refs"]
        .as_array()
        .expect("refs is an array")
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["source"].as_str().expect("a source").to_string())
        .collect()
}

/// The entries of an uncompressed export, in order.
fn entries(file: &Path) -> Vec<(String, Vec<u8>)> {
    crate::harness::rawtar::read_entries(file)
}

/// Writes `list` (sorted by name) as an export next to `file`, named `name`.
fn rewrite(file: &Path, name: &str, mut list: Vec<(String, Vec<u8>)>) -> std::path::PathBuf {
    list.sort();
    let bytes = list
        .iter()
        .fold(RawTar::new(), |t, (n, d)| t.file(n, d))
        .finish();
    let out = file.with_file_name(name);
    std::fs::write(&out, bytes).expect("writing the altered export");
    out
}

/// The manifest entry of an export, as JSON.
fn manifest_of(list: &[(String, Vec<u8>)]) -> serde_json::Value {
    let (_, bytes) = list
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("the export has a manifest");
    serde_json::from_slice(bytes).expect("the manifest is JSON")
}

fn with_manifest(list: &mut [(String, Vec<u8>)], m: &serde_json::Value) {
    let entry = list
        .iter_mut()
        .find(|(n, _)| n == "manifest.json")
        .expect("the export has a manifest");
    entry.1 = serde_json::to_vec_pretty(m).expect("rendering the manifest");
}

#[test]
fn an_images_ref_is_verified_with_the_importing_hosts_keys() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &["--arch", "amd64", "images:debian/bookworm", "a"])
        .success();
    let file = lxc.env.scratch("out").join("cache.tar");
    lxc.env.sandbox(&["cache", "export", arg(&file)]).success();
    lxc.server.stop();
    let server = lxc.server.server();

    // Without the server's key the images ref is refused; the documents come in.
    let bare = TestEnv::new();
    bare.sandbox(&["cache", "import", arg(&file)])
        .failure()
        .stderr_mentions(&["images:debian/bookworm", lxc.key.fingerprint()]);
    assert!(refs_of(&bare, "images").is_empty());

    let to = TestEnv::new();
    to.sandbox(&[
        "cache",
        "import",
        "--keyring",
        arg(&lxc.keyring),
        arg(&file),
    ])
    .success();
    assert_eq!(refs_of(&to, "images"), vec!["images:debian/bookworm"]);
    let out = to
        .sandbox(&[
            "--json",
            "pull",
            "--offline",
            "--images-server",
            &server,
            "--keyring",
            arg(&lxc.keyring),
            "--arch",
            "amd64",
            "images:debian/bookworm",
            "box",
        ])
        .success();
    assert_eq!(
        out.json()["verification"]["key_fingerprint"],
        lxc.key.fingerprint()
    );
    s.default_amd64[2].assert_landed(&to.machine("box"));

    // A rootfs swapped for other bytes under their own name, the ref pointed at them: every
    // blob hashes right; only the signed SHA256SUMS can tell, and does.
    let good = &s.default_amd64[2];
    let evil = &s.default_amd64[1];
    let mut list: Vec<(String, Vec<u8>)> = entries(&file)
        .into_iter()
        .filter(|(n, _)| *n != format!("blobs/sha256/{}", good.rootfs_hex()))
        .collect();
    let mut m = manifest_of(&list);
    for r in m["refs"].as_array_mut().expect("refs") {
        for b in r["ref"]["blobs"].as_array_mut().expect("blobs") {
            if b["digest"] == format!("sha256:{}", good.rootfs_hex()) {
                b["digest"] = format!("sha256:{}", evil.rootfs_hex()).into();
                b["size"] = evil.rootfs.len().into();
            }
        }
    }
    with_manifest(&mut list, &m);
    list.push((
        format!("blobs/sha256/{}", evil.rootfs_hex()),
        evil.rootfs.clone(),
    ));
    let bad = rewrite(&file, "swapped.tar", list);
    let victim = TestEnv::new();
    victim
        .sandbox(&["cache", "import", "--keyring", arg(&lxc.keyring), arg(&bad)])
        .failure()
        .stderr_mentions(&["images:debian/bookworm", &evil.rootfs_hex()]);
    assert!(refs_of(&victim, "images").is_empty());
}

#[test]
fn an_oci_ref_is_resolved_again_and_the_importing_hosts_policy_applies() {
    let from = TestEnv::new();
    allow_all(&from);
    let (registry, _) = registry_with(&from, &rich_image(host_arch()), "app:v1", None);
    let source = registry.reference("app:v1");
    run(&from, &["pull", "--tls-verify=false", &source, "a"], &[]).success();
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();
    drop(registry);

    let to = TestEnv::new();
    allow_all(&to);
    to.sandbox(&["cache", "import", arg(&file)]).success();
    assert_eq!(refs_of(&to, "oci"), vec![source.clone()]);
    run(
        &to,
        &["pull", "--offline", "--tls-verify=false", &source, "box"],
        &[],
    )
    .success();
    assert_rich_tree(&to.machine("box"), host_arch());

    // A host whose policy wants a cosign signature cannot take the exporter's word for one.
    let strict = TestEnv::new();
    std::fs::create_dir_all(strict.sandboxes_dir()).unwrap();
    let key = strict.scratch("keys").join("cosign.pub");
    crate::harness::run_tool(
        std::process::Command::new(crate::harness::require_tool("openssl"))
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(strict.scratch("keys").join("cosign.key")),
        None,
    );
    crate::harness::run_tool(
        std::process::Command::new(crate::harness::require_tool("openssl"))
            .args(["ec", "-pubout", "-in"])
            .arg(strict.scratch("keys").join("cosign.key"))
            .arg("-out")
            .arg(&key),
        None,
    );
    let policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {"": [{"type": "sigstoreSigned", "keyPath": key}]}},
    });
    std::fs::write(
        strict.sandboxes_dir().join("policy.json"),
        serde_json::to_vec(&policy).unwrap(),
    )
    .unwrap();
    strict
        .sandbox(&["cache", "import", arg(&file)])
        .failure()
        .stderr_mentions(&[&source, "signature"]);
    assert!(refs_of(&strict, "oci").is_empty());

    // A layer left out of the export and out of its ref: every listed blob is there and
    // hashes right, but the manifest names the layer, and resolving it again finds it missing.
    let all = entries(&file);
    let mut m = manifest_of(&all);
    let layer = m["refs"]
        .as_array()
        .expect("refs")
        .iter()
        .flat_map(|r| r["ref"]["blobs"].as_array().expect("blobs"))
        .find(|b| b["role"] == "layer")
        .expect("the OCI ref lists a layer")["digest"]
        .clone();
    let hex = layer
        .as_str()
        .expect("a digest")
        .trim_start_matches("sha256:")
        .to_string();
    let mut list: Vec<(String, Vec<u8>)> = all
        .into_iter()
        .filter(|(n, _)| *n != format!("blobs/sha256/{hex}"))
        .collect();
    for r in m["refs"].as_array_mut().expect("refs") {
        r["ref"]["blobs"]
            .as_array_mut()
            .expect("blobs")
            .retain(|b| b["digest"] != layer);
    }
    with_manifest(&mut list, &m);
    let bad = rewrite(&file, "layerless.tar", list);
    let victim = TestEnv::new();
    allow_all(&victim);
    victim
        .sandbox(&["cache", "import", arg(&bad)])
        .failure()
        .stderr_mentions(&[&source, &hex]);
    assert!(refs_of(&victim, "oci").is_empty());
    run(
        &victim,
        &["pull", "--offline", "--tls-verify=false", &source, "box"],
        &[],
    )
    .failure();
    victim.assert_machines(&[]);
}
