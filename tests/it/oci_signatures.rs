//! Signed `docker://` pulls: cosign signatures built in test code in cosign's exact format
//! (a `sha256-HEX.sig` image of simplesigning layers with the signature annotation), pushed
//! by real skopeo into the real local registry, then pulled by the binary with a key from the
//! policy or `--cosign-key`; and simple signing signatures made by real `skopeo copy
//! --sign-by` with real GnuPG into a lookaside store.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use serde_json::json;

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::ocimage::{
    OCI_MANIFEST, init_image, single_image_layout, write_blob, write_index_json,
};
use crate::harness::registry::Registry;

const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

fn run(env: &TestEnv, args: &[&str]) -> Outcome {
    let home = env.scratch("home");
    let runtime = env.scratch("xdg-runtime");
    env.sandbox_with_env(
        args,
        &[("HOME", arg(&home)), ("XDG_RUNTIME_DIR", arg(&runtime))],
    )
}

/// A fresh P-256 key, its PEM public key written to `path`, and the sha256 of its DER SPKI.
fn cosign_key(path: &Path) -> (SigningKey, String) {
    let sk = SigningKey::from_slice(&rand::random::<[u8; 32]>()).expect("a P-256 scalar");
    let public = sk.verifying_key();
    let pem = public
        .to_public_key_pem(LineEnding::LF)
        .expect("PEM encoding");
    std::fs::write(path, pem).expect("writing the public key");
    let der = public.to_public_key_der().expect("DER encoding");
    (
        sk,
        format!("sha256:{}", crate::harness::sha256_hex(der.as_bytes())),
    )
}

/// The payload cosign signs for `digest` in `docker_reference` (its exact field layout).
pub(crate) fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        },
        "optional": null
    }))
    .expect("payload json")
}

/// Pushes a cosign signature image holding `payload` signed by `sk` as `repo:sha256-HEX.sig`
/// of `signed_digest`.
fn push_signature(
    env: &TestEnv,
    registry: &Registry,
    repo: &str,
    signed_digest: &str,
    sk: &SigningKey,
    payload: &[u8],
) {
    let dir = env.scratch("sig-layout");
    let sig: Signature = sk.sign(payload);
    let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
    let layer = write_blob(&dir, payload);
    let config = json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
        "config": {}, "history": [{"created": "0001-01-01T00:00:00Z"}],
        "rootfs": {"type": "layers", "diff_ids": [layer.digest()]}
    });
    let config = write_blob(&dir, &serde_json::to_vec(&config).expect("config json"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest(), "size": config.size},
        "layers": [{
            "mediaType": SIMPLESIGNING, "digest": layer.digest(), "size": layer.size,
            "annotations": {"dev.cosignproject.cosign/signature": sig_b64}
        }]
    });
    let manifest = write_blob(&dir, &serde_json::to_vec(&manifest).expect("manifest json"));
    write_index_json(&dir, OCI_MANIFEST, &manifest, "sig");
    let hex = signed_digest.trim_start_matches("sha256:");
    registry.push(&dir, "sig", &format!("{repo}:sha256-{hex}.sig"));
}

/// A registry holding `init_image` as `team/app:1`, and the manifest digest it serves.
fn signed_setup(env: &TestEnv) -> (Registry, String) {
    let layout = env.scratch("layout");
    single_image_layout(&layout, &init_image(), "t");
    let registry = Registry::start(&env.scratch("registry"), None);
    registry.push(&layout, "t", "team/app:1");
    let (digest, _) = registry.manifest("team/app", "1");
    (registry, digest)
}

/// The image of [`signed_setup`] with a cosign signature by a new key `key_name` pushed next
/// to it: the registry, the manifest digest, the reference, the key's file and fingerprint.
struct Signed {
    registry: Registry,
    digest: String,
    reference: String,
    key_file: PathBuf,
    fingerprint: String,
}

fn signed_by_new_key(env: &TestEnv, key_name: &str) -> Signed {
    let (registry, digest) = signed_setup(env);
    let host = registry.host();
    let reference = registry.reference("team/app:1");
    let key_file = env.scratch("keys").join(format!("{key_name}.pub"));
    let (sk, fingerprint) = cosign_key(&key_file);
    push_signature(
        env,
        &registry,
        "team/app",
        &digest,
        &sk,
        &payload(&format!("{host}/team/app"), &digest),
    );
    Signed {
        registry,
        digest,
        reference,
        key_file,
        fingerprint,
    }
}

fn write_policy(env: &TestEnv, scope: &str, key: &Path) {
    std::fs::create_dir_all(env.sandboxes_dir()).expect("creating the sandboxes dir");
    let mut scopes = serde_json::Map::new();
    scopes.insert(
        scope.to_string(),
        json!([{"type": "sigstoreSigned", "keyPath": key}]),
    );
    let policy = json!({"default": [{"type": "reject"}], "transports": {"docker": scopes}});
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        serde_json::to_vec(&policy).expect("policy json"),
    )
    .expect("writing policy.json");
}

#[test]
fn a_cosign_signature_by_the_policy_key_lets_the_pull_through() {
    let env = TestEnv::new();
    let Signed {
        registry,
        digest,
        key_file,
        fingerprint,
        ..
    } = signed_by_new_key(&env, "cosign");
    let host = registry.host();
    write_policy(&env, &format!("{host}/team"), &key_file);
    let j = run(
        &env,
        &[
            "--json",
            "pull",
            "--tls-verify=false",
            &registry.reference("team/app:1"),
            "app",
        ],
    )
    .success()
    .json();
    assert_eq!(j["manifest_digest"], digest);
    let v = &j["verification"];
    assert_eq!(v["mode"], "signature");
    assert_eq!(v["key_fingerprint"], fingerprint);
    assert_eq!(v["key_origin"], arg(&key_file));
    assert!(
        v["signature_source"]
            .as_str()
            .is_some_and(|s| s.starts_with("cosign:") && s.contains(".sig")),
        "{v}"
    );
    env.assert_machines(&["app"]);

    // Offline, the last pull's record must show the key verified; another key was never seen.
    let reference = registry.reference("team/app:1");
    run(
        &env,
        &[
            "pull",
            "--offline",
            "--force",
            "--tls-verify=false",
            &reference,
            "app",
        ],
    )
    .success();
    let other = env.scratch("keys").join("other.pub");
    cosign_key(&other);
    run(
        &env,
        &[
            "pull",
            "--offline",
            "--force",
            "--tls-verify=false",
            "--cosign-key",
            arg(&other),
            &reference,
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&["--offline", "pull it online"]);
}

#[test]
fn a_cosign_signature_by_another_key_or_for_another_digest_is_refused() {
    let env = TestEnv::new();
    let (registry, digest) = signed_setup(&env);
    let host = registry.host();
    let reference = registry.reference("team/app:1");
    let signer_file = env.scratch("keys").join("signer.pub");
    let (sk, _) = cosign_key(&signer_file);
    let wanted_file = env.scratch("keys").join("wanted.pub");
    let (_, wanted_fpr) = cosign_key(&wanted_file);
    push_signature(
        &env,
        &registry,
        "team/app",
        &digest,
        &sk,
        &payload(&format!("{host}/team/app"), &digest),
    );
    write_policy(&env, &host, &wanted_file);
    run(&env, &["pull", "--tls-verify=false", &reference, "app"])
        .failure()
        .stderr_mentions(&["no cosign signature", &wanted_fpr, "does not verify"]);
    env.assert_machines(&[]);

    // --cosign-key holds whatever the policy says, even one that accepts anything.
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("writing policy.json");
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&wanted_file),
            &reference,
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&["--cosign-key", &wanted_fpr]);
    env.assert_machines(&[]);

    // A good signature by the right key over a payload for another manifest: replayed.
    let other = format!("sha256:{}", "ab".repeat(32));
    push_signature(
        &env,
        &registry,
        "team/app",
        &digest,
        &sk,
        &payload(&format!("{host}/team/app"), &other),
    );
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&signer_file),
            &reference,
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&["not the pulled", &digest]);
    env.assert_machines(&[]);

    // The right digest, but signed for another repository.
    push_signature(
        &env,
        &registry,
        "team/app",
        &digest,
        &sk,
        &payload(&format!("{host}/team/other"), &digest),
    );
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&signer_file),
            &reference,
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&["team/other"]);
    env.assert_machines(&[]);

    // And the signer's key with the payload that names this image: accepted.
    push_signature(
        &env,
        &registry,
        "team/app",
        &digest,
        &sk,
        &payload(&format!("{host}/team/app"), &digest),
    );
    let j = run(
        &env,
        &[
            "--json",
            "pull",
            "--tls-verify=false",
            "--cosign-key",
            arg(&signer_file),
            &reference,
            "app",
        ],
    )
    .success()
    .json();
    assert_eq!(j["verification"]["mode"], "signature");
    env.assert_machines(&["app"]);
}

#[test]
fn a_missing_signature_tag_is_refused_by_name() {
    let env = TestEnv::new();
    let (registry, digest) = signed_setup(&env);
    let key_file: PathBuf = env.scratch("keys").join("k.pub");
    cosign_key(&key_file);
    write_policy(&env, "", &key_file);
    let hex = digest.trim_start_matches("sha256:");
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            &registry.reference("team/app:1"),
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&[&format!("sha256-{hex}.sig"), "404"]);
    env.assert_machines(&[]);
}

/// Writes a registries.d file pointing `host`'s lookaside (and staging) at `store`.
fn registries_d(dir: &Path, host: &str, store: &Path) {
    std::fs::create_dir_all(dir).expect("creating registries.d");
    std::fs::write(
        dir.join("local.yaml"),
        format!(
            "docker:\n  {host}:\n    lookaside-staging: file://{0}\n    lookaside: file://{0}\n",
            store.display()
        ),
    )
    .expect("writing registries.d/local.yaml");
}

#[test]
fn a_simple_signing_signature_made_by_skopeo_and_gnupg_is_verified() {
    let env = TestEnv::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let stranger = Gpg::new(KeyAlgo::Ed25519);
    let layout = env.scratch("layout");
    single_image_layout(&layout, &init_image(), "t");
    let registry = Registry::start(&env.scratch("registry"), None);
    let host = registry.host();
    let store = env.scratch("lookaside");
    let skopeo_d = env.scratch("skopeo-registries.d");
    registries_d(&skopeo_d, &host, &store);
    let mut cmd = std::process::Command::new(crate::harness::require_tool("skopeo"));
    cmd.env("GNUPGHOME", gpg.home())
        .args([
            "--insecure-policy",
            "--registries.d",
            arg(&skopeo_d),
            "copy",
        ])
        .args(["--dest-tls-verify=false", "--sign-by", gpg.fingerprint()])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(registry.reference("team/signed:1"));
    crate::harness::run_tool(&mut cmd, None);
    let (digest, _) = registry.manifest("team/signed", "1");
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        store
            .join(format!("team/signed@sha256={hex}/signature-1"))
            .is_file(),
        "skopeo wrote the signature where containers/image reads it"
    );

    registries_d(&env.sandboxes_dir().join("registries.d"), &host, &store);
    let keyring = gpg.export_to(&env.scratch("keys").join("signer.gpg"), false);
    let other_keyring = stranger.export_to(&env.scratch("keys").join("stranger.gpg"), false);
    let policy = |keyring: &Path| {
        let mut scopes = serde_json::Map::new();
        scopes.insert(
            format!("{host}/team"),
            json!([{"type": "signedBy", "keyType": "GPGKeys", "keyPath": keyring}]),
        );
        std::fs::write(
            env.sandboxes_dir().join("policy.json"),
            serde_json::to_vec(&json!({"default": [{"type": "reject"}],
                                       "transports": {"docker": scopes}}))
            .expect("policy json"),
        )
        .expect("writing policy.json");
    };
    let reference = registry.reference("team/signed:1");

    policy(&other_keyring);
    run(&env, &["pull", "--tls-verify=false", &reference, "signed"])
        .failure()
        .stderr_mentions(&["no simple signing signature", arg(&other_keyring)]);
    env.assert_machines(&[]);

    policy(&keyring);
    let j = run(
        &env,
        &["--json", "pull", "--tls-verify=false", &reference, "signed"],
    )
    .success()
    .json();
    let v = &j["verification"];
    assert_eq!(v["mode"], "signature");
    assert_eq!(v["key_fingerprint"], gpg.fingerprint());
    assert!(
        v["signature_source"]
            .as_str()
            .is_some_and(|s| s.starts_with("simple-signing:") && s.ends_with("signature-1")),
        "{v}"
    );
    env.assert_machines(&["signed"]);

    // The same manifest under a tag nobody signed: the signature vouches for `:1` only.
    registry.push(&layout, "t", "team/signed:2");
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            &registry.reference("team/signed:2"),
            "two",
        ],
    )
    .failure()
    .stderr_mentions(&["not the pulled tag `2`"]);
    // By digest, the repository is what the identity must match; and --lookaside names the
    // store when no registries.d does.
    std::fs::remove_dir_all(env.sandboxes_dir().join("registries.d"))
        .expect("removing registries.d");
    let by_digest = registry.reference(&format!("team/signed@{digest}"));
    run(
        &env,
        &["pull", "--tls-verify=false", &by_digest, "bydigest"],
    )
    .failure()
    .stderr_mentions(&["no lookaside store"]);
    run(
        &env,
        &[
            "pull",
            "--tls-verify=false",
            "--lookaside",
            arg(&store),
            &by_digest,
            "bydigest",
        ],
    )
    .success();
    env.assert_machines(&["bydigest", "signed"]);
}

/// `--cosign-key FILE` names the key that must have signed: without any policy.json, an image
/// signed by that key is pulled, and only such an image; a policy that rejects still rejects,
/// and no refusal suggests `--verify=no` when a key was given.
#[test]
fn a_cosign_key_alone_admits_only_images_it_signed_when_there_is_no_policy() {
    let env = TestEnv::new();
    let Signed {
        registry: _registry,
        reference,
        key_file,
        fingerprint,
        ..
    } = signed_by_new_key(&env, "cosign");
    let other_file = env.scratch("keys").join("other.pub");
    let (_, other_fpr) = cosign_key(&other_file);
    assert!(!env.sandboxes_dir().join("policy.json").exists());
    let pull = |key: &Path| {
        run(
            &env,
            &[
                "--json",
                "pull",
                "--tls-verify=false",
                "--cosign-key",
                arg(key),
                &reference,
                "app",
            ],
        )
    };

    // Another key: refused, and the advice is not --verify=no.
    let out = pull(&other_file)
        .failure()
        .stderr_mentions(&["no cosign signature", &other_fpr]);
    assert!(!out.stderr.contains("--verify=no"), "{}", out.stderr);
    env.assert_machines(&[]);

    // The signing key: pulled, and the record says which key vouched.
    let j = pull(&key_file).success().json();
    assert_eq!(j["verification"]["mode"], "signature");
    assert_eq!(j["verification"]["key_fingerprint"], fingerprint);
    assert!(
        j["verification"]["notes"].to_string().contains("no "),
        "{}",
        j["verification"]
    );
    env.assert_machines(&["app"]);

    // A policy that exists and rejects is not overridden by the key.
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        r#"{"default":[{"type":"reject"}]}"#,
    )
    .expect("writing policy.json");
    let out = run(
        &env,
        &[
            "pull",
            "--force",
            "--tls-verify=false",
            "--cosign-key",
            arg(&key_file),
            &reference,
            "app",
        ],
    )
    .failure()
    .stderr_mentions(&["policy refuses", "does not override"]);
    assert!(!out.stderr.contains("--verify=no"), "{}", out.stderr);
}
