//! Signed publishing: `sandbox build --output docker://… --cosign-key KEY` (a cosign key in
//! cosign's encrypted format, written by Python) and `--sign-key SECRET --lookaside DIR`
//! (simple signing with a GnuPG key); another host pulls it with `--cosign-key PUB` or under
//! a `signedBy` policy and gets the tree of a local build; skopeo's own `signedBy` check
//! accepts the simple-signing signature; a wrong password or a layout without an identity
//! fails before anything is pulled or written.

use std::path::Path;

use serde_json::{Value, json};

use crate::build::{BaseImage, snapshot, testbase};
use crate::build_oci::local_build;
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::registry::Registry;
use crate::oci::ALLOW_ALL;
use crate::oci_signing::{policy_for, python_cosign_key, skopeo_pull};

const EPOCH: &str = "1700000000";
const PASSWORD: &str = "correct horse";

fn publish(env: &TestEnv, password: &str, args: &[&str]) -> Outcome {
    let mut full = vec!["--json", "build", "--tls-verify=false"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["testbase", "web"]);
    env.sandbox_with_env(
        &full,
        &[("SOURCE_DATE_EPOCH", EPOCH), ("COSIGN_PASSWORD", password)],
    )
}

fn fresh_host(policy: &str) -> TestEnv {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    std::fs::write(env.sandboxes_dir().join("policy.json"), policy).unwrap();
    env
}

#[test]
fn a_signed_push_pulls_back_verified_as_the_local_build() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "signed push\n");
    let keys = env.scratch("keys");
    let (cosign_key, cosign_pub) = python_cosign_key(&keys, "ci", PASSWORD);
    let (_, stranger_pub) = python_cosign_key(&keys, "stranger", PASSWORD);
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let secret = gpg.export_secret_to(&keys.join("secret.asc"), true);
    let public = gpg.export_to(&keys.join("public.gpg"), false);
    let store = env.scratch("lookaside");
    let registry = Registry::start(&env.scratch("registry"), None);
    let reference = registry.reference("team/web:1");
    let host = registry.host();

    // A wrong password fails before anything is pulled or pushed.
    publish(
        &env,
        "wrong",
        &["--output", &reference, "--cosign-key", arg(&cosign_key)],
    )
    .failure()
    .stderr_mentions(&["wrong password (COSIGN_PASSWORD)", arg(&cosign_key)]);
    assert_eq!(registry.requests("PUT", "/v2/"), 0, "something was pushed");
    assert!(
        !env.cache_dir().join("v1/blobs").exists(),
        "something was pulled"
    );

    let report = publish(
        &env,
        PASSWORD,
        &[
            "--output",
            &reference,
            "--cosign-key",
            arg(&cosign_key),
            "--sign-key",
            arg(&secret),
            "--lookaside",
            arg(&store),
        ],
    )
    .success()
    .json();
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    let signatures = report["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 3, "{report}");
    assert_eq!(signatures[0]["kind"], "cosign");
    assert_eq!(
        signatures[0]["location"],
        format!(
            "docker://{host}/team/web:sha256-{}.sig",
            digest.trim_start_matches("sha256:")
        )
        .as_str()
    );
    let lookaside_file = store.join(format!(
        "team/web@sha256={}/signature-1",
        digest.trim_start_matches("sha256:")
    ));
    // The same signature as an OCI 1.1 referrer: distribution 2.x has no referrers API, so
    // it is listed in the referrers tag schema's index.
    assert_eq!(signatures[1]["kind"], "cosign-referrer");
    let referrer_at = signatures[1]["location"].as_str().unwrap();
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        referrer_at.starts_with(&format!("docker://{host}/team/web@sha256:"))
            && referrer_at.ends_with(&format!("(referrers tag sha256-{hex})")),
        "{referrer_at}"
    );
    let referrer_digest = referrer_at
        .split('@')
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_string();
    assert_eq!(signatures[2]["kind"], "simple-signing");
    assert_eq!(signatures[2]["location"], arg(&lookaside_file));

    // cosign: pulled with the public key, verified, the local build's tree.
    let other = fresh_host(ALLOW_ALL);
    let pulled = other
        .sandbox(&[
            "--json",
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&cosign_pub),
            &reference,
            "web",
        ])
        .success()
        .json();
    assert_eq!(pulled["manifest_digest"], digest.as_str());
    assert_eq!(pulled["verification"]["mode"], "signature");
    // Found both where cosign looks first (the referrer) and in the .sig tag.
    let notes = pulled["verification"]["notes"].to_string();
    assert!(
        notes.contains(&format!("referrer {referrer_digest}")) && notes.contains(".sig"),
        "{notes}"
    );
    let local = local_build(&env, "testbase");
    assert_eq!(
        snapshot(&other.machine("web")),
        local,
        "the verified pull differs from a local build"
    );
    // Another key's signature is required: refused.
    fresh_host(ALLOW_ALL)
        .sandbox(&[
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&stranger_pub),
            &reference,
            "web",
        ])
        .failure()
        .stderr_mentions(&["no cosign signature of manifest", &digest]);

    // Simple signing: our pull under a signedBy policy, and skopeo's own check.
    let scope = format!("{host}/team/web");
    let signed_by =
        |ring: &Path| json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": ring});
    let policy = policy_for(&scope, signed_by(&public));
    let third = fresh_host(&policy.to_string());
    third
        .sandbox(&[
            "pull",
            "--tls-verify=false",
            "--lookaside",
            arg(&store),
            &reference,
            "web",
        ])
        .success();
    let registries_d = env.scratch("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("local.yaml"),
        format!(
            "docker:\n  {host}:\n    lookaside: file://{}\n",
            store.display()
        ),
    )
    .unwrap();
    let (ok, stderr) = skopeo_pull(&env, &registry, "team/web", &policy, &registries_d);
    assert!(ok, "skopeo refused our simple-signing signature:\n{stderr}");
    let stranger_ring = Gpg::new(KeyAlgo::Ed25519).export_to(&keys.join("other.gpg"), false);
    let (ok, _) = skopeo_pull(
        &env,
        &registry,
        "team/web",
        &policy_for(&scope, signed_by(&stranger_ring)),
        &registries_d,
    );
    assert!(!ok, "skopeo accepted a signature by another key");
}

#[test]
fn a_signed_layout_needs_an_identity_and_holds_the_signature_image() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "signed layout\n");
    let keys = env.scratch("keys");
    let (cosign_key, _) = python_cosign_key(&keys, "ci", PASSWORD);
    let layout = env.scratch("out").join("layout");
    let output = format!("oci-layout:{}:v1", layout.display());
    publish(
        &env,
        PASSWORD,
        &["--output", &output, "--cosign-key", arg(&cosign_key)],
    )
    .failure()
    .stderr_mentions(&["--sign-identity"]);
    assert!(!layout.exists(), "a refused build wrote the layout");

    let report = publish(
        &env,
        PASSWORD,
        &[
            "--output",
            &output,
            "--cosign-key",
            arg(&cosign_key),
            "--sign-identity",
            "registry.example.org/team/web:1",
        ],
    )
    .success()
    .json();
    let digest = report["manifest_digest"].as_str().unwrap();
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "v1",
            &format!("sha256-{}.sig", digest.trim_start_matches("sha256:"))
        ]
    );
}
