//! The signing side of OCI image signatures against independent producers and consumers:
//! a cosign key file written by Python (pynacl + cryptography + hashlib.scrypt, cosign's
//! format) opened by our loader, our ECDSA signature checked by Python's `cryptography`; keys
//! `openssl` writes (SEC1 with its EC PARAMETERS block, PKCS#8) loaded and our signatures
//! checked by `openssl dgst -verify`; a cosign signature image we render, pushed by real
//! skopeo into the real registry, read back over the registry API and verified by Python and
//! by the binary's own pull; and a simple signing signature we write into a lookaside store,
//! read by real GnuPG and accepted by skopeo's own `signedBy` policy check.
//!
//! Debian's skopeo is built with sigstore disabled ("Debian-local change: sigstore
//! disabled"), for signing and for `sigstoreSigned` policy checks alike, so it can neither
//! sign with the Python-written key nor judge our cosign signatures. What cosign itself wrote
//! is checked by the unit tests instead: a key from `cosign generate-key-pair` opens with our
//! loader, and our payload equals one cosign signed, byte for byte (tests/fixtures/cosign/).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use sandboxes::digest::Digest;
use sandboxes::export::sign::cosign_key::load_cosign_signing_key;
use sandboxes::export::sign::cosign_sign::sign_image;
use sandboxes::export::sign::simple_sign::{
    sign_simple, simple_signing_identity, write_lookaside_signature,
};
use sandboxes::oci::ImageReference;
use sandboxes::verify::cosign::CosignKey;
use sandboxes::verify::openpgp::load_signing_key;

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::ocimage::{
    OCI_MANIFEST, init_image, single_image_layout, write_blob, write_index_json,
};
use crate::harness::registry::Registry;

/// Writes a cosign encrypted private key and its PEM public key, the way
/// go-securesystemslib's `encrypted.Encrypt` (which cosign calls) lays them out: scrypt
/// N=32768 r=8 p=1 over a 32-byte salt, NaCl secretbox with a 24-byte nonce, compact JSON,
/// base64 in 64-column PEM lines.
const PY_WRITE_KEY: &str = r#"
import base64, hashlib, json, os, sys
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

out_key, out_pub, password = sys.argv[1], sys.argv[2], sys.argv[3].encode()
key = ec.generate_private_key(ec.SECP256R1())
der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption())
salt = os.urandom(32)
n, r, p = 32768, 8, 1
box_key = hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 << 20)
nonce = os.urandom(24)
sealed = nacl.secret.SecretBox(box_key).encrypt(der, nonce).ciphertext
b64 = lambda b: base64.b64encode(b).decode()
body = json.dumps({"kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": b64(salt)},
                   "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
                   "ciphertext": b64(sealed)}, separators=(",", ":")).encode()
text = base64.b64encode(body).decode()
lines = [text[i:i + 64] for i in range(0, len(text), 64)]
label = "ENCRYPTED SIGSTORE PRIVATE KEY"
with open(out_key, "w") as f:
    f.write(f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n")
with open(out_pub, "wb") as f:
    f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

/// Verifies a base64 DER ECDSA P-256/SHA-256 signature over a file with a PEM public key;
/// exits non-zero when it does not verify.
const PY_VERIFY: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

pub = serialization.load_pem_public_key(open(sys.argv[1], "rb").read())
payload = open(sys.argv[2], "rb").read()
sig = base64.b64decode(open(sys.argv[3]).read())
pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
print("verified")
"#;

/// Debian's python3 with pynacl and cryptography, or a panic naming the packages.
fn python() -> PathBuf {
    let python = PathBuf::from("/usr/bin/python3");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import nacl.secret, cryptography, hashlib; hashlib.scrypt",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests need /usr/bin/python3 with the Debian packages python3-nacl and \
         python3-cryptography (the project's test script installs them)"
    );
    python
}

/// A Python-written cosign key pair in `dir`: (private key, public key).
pub fn python_cosign_key(dir: &Path, name: &str, password: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).expect("creating the key dir");
    let key = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    crate::harness::run_tool(
        Command::new(python())
            .args(["-c", PY_WRITE_KEY])
            .arg(&key)
            .arg(&public)
            .arg(password),
        None,
    );
    (key, public)
}

#[test]
fn a_cosign_key_written_by_python_opens_and_our_signatures_verify_in_python() {
    let env = TestEnv::new();
    let keys = env.scratch("keys");
    let (key_file, pub_file) = python_cosign_key(&keys, "cosign", "pass word");
    let key = load_cosign_signing_key(&key_file, b"pass word").expect("our loader opens it");
    let public = CosignKey::from_pem(&std::fs::read_to_string(&pub_file).expect("reading"))
        .expect("python's public key");
    assert_eq!(key.public_key().fingerprint, public.fingerprint);

    let payload = b"{\"critical\":{\"type\":\"cosign container image signature\"}}";
    let signature = key.sign(payload);
    public.verify(payload, &signature).expect("our verifier");
    let payload_file = keys.join("payload");
    let sig_file = keys.join("payload.sig");
    std::fs::write(&payload_file, payload).expect("writing the payload");
    std::fs::write(&sig_file, &signature).expect("writing the signature");
    let out = crate::harness::run_tool(
        Command::new(python())
            .args(["-c", PY_VERIFY])
            .arg(&pub_file)
            .arg(&payload_file)
            .arg(&sig_file),
        None,
    );
    assert_eq!(String::from_utf8_lossy(&out).trim(), "verified");
    // The same check fails for a payload that was not signed: the consumer can say no.
    std::fs::write(&payload_file, b"another payload").expect("writing the payload");
    let refused = Command::new(python())
        .args(["-c", PY_VERIFY])
        .arg(&pub_file)
        .arg(&payload_file)
        .arg(&sig_file)
        .output()
        .expect("running python");
    assert!(!refused.status.success(), "python accepted a wrong payload");

    let e = load_cosign_signing_key(&key_file, b"pass-word").expect_err("a wrong password");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("wrong password (COSIGN_PASSWORD)") && msg.contains(arg(&key_file)),
        "{msg}"
    );
    assert!(!msg.contains("pass-word"), "the password leaks: {msg}");
}

#[test]
fn openssl_keys_load_and_openssl_verifies_our_signatures() {
    let env = TestEnv::new();
    let dir = env.scratch("openssl");
    let openssl = || Command::new(crate::harness::require_tool("openssl"));
    let sec1 = dir.join("sec1.pem");
    let pkcs8 = dir.join("pkcs8.pem");
    let public = dir.join("pub.pem");
    crate::harness::run_tool(
        openssl()
            .args(["ecparam", "-name", "prime256v1", "-genkey", "-out"])
            .arg(&sec1),
        None,
    );
    crate::harness::run_tool(
        openssl()
            .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
            .arg(&sec1)
            .arg("-out")
            .arg(&pkcs8),
        None,
    );
    crate::harness::run_tool(
        openssl()
            .args(["ec", "-pubout", "-in"])
            .arg(&sec1)
            .arg("-out")
            .arg(&public),
        None,
    );
    let payload = dir.join("payload");
    std::fs::write(&payload, b"{\"critical\":{}}").expect("writing the payload");
    for key_file in [&sec1, &pkcs8] {
        let key = load_cosign_signing_key(key_file, b"").expect("loading an openssl key");
        let expected = CosignKey::from_pem(&std::fs::read_to_string(&public).expect("reading"))
            .expect("openssl's public key");
        assert_eq!(key.public_key().fingerprint, expected.fingerprint);
        let signature = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            key.sign(b"{\"critical\":{}}"),
        )
        .expect("base64");
        let sig_file = dir.join("payload.sig");
        std::fs::write(&sig_file, signature).expect("writing the signature");
        let out = crate::harness::run_tool(
            openssl()
                .args(["dgst", "-sha256", "-verify"])
                .arg(&public)
                .arg("-signature")
                .arg(&sig_file)
                .arg(&payload),
            None,
        );
        assert_eq!(String::from_utf8_lossy(&out).trim(), "Verified OK");
    }
}

/// A registry holding `init_image` as `repo:1`, and the manifest digest it serves.
fn registry_with_image(env: &TestEnv, repo: &str) -> (Registry, Digest) {
    let layout = env.scratch("layout");
    single_image_layout(&layout, &init_image(), "t");
    let registry = Registry::start(&env.scratch("registry"), None);
    registry.push(&layout, "t", &format!("{repo}:1"));
    let (digest, _) = registry.manifest(repo, "1");
    (registry, digest.parse().expect("a sha256 digest"))
}

/// `skopeo copy` of `repo:1` out of `registry` under `policy` and `registries_d`; whether it
/// succeeded, and its stderr.
pub fn skopeo_pull(
    env: &TestEnv,
    registry: &Registry,
    repo: &str,
    policy: &serde_json::Value,
    registries_d: &Path,
) -> (bool, String) {
    let policy_file = env.scratch("policy").join("policy.json");
    std::fs::create_dir_all(policy_file.parent().expect("a parent")).expect("creating");
    std::fs::write(&policy_file, policy.to_string()).expect("writing policy.json");
    let out = env.scratch("pulled").join(crate::harness::token());
    let output = Command::new(crate::harness::require_tool("skopeo"))
        .arg("--policy")
        .arg(&policy_file)
        .arg("--registries.d")
        .arg(registries_d)
        .args(["copy", "--src-tls-verify=false"])
        .arg(registry.reference(&format!("{repo}:1")))
        .arg(format!("dir:{}", out.display()))
        .output()
        .expect("running skopeo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// policy.json requiring `requirement` for `scope` and rejecting everything else.
pub fn policy_for(scope: &str, requirement: serde_json::Value) -> serde_json::Value {
    json!({"default": [{"type": "reject"}],
           "transports": {"docker": {scope: [requirement]}}})
}

/// Reads the cosign signature image of a manifest over the registry API as any client would
/// (manifest by tag, then each simplesigning layer's blob), checks each blob's sha256, the
/// ECDSA signature in its annotation with a PEM public key and the payload's digest and
/// repository; prints how many verified, exits non-zero when none did.
const PY_CHECK_REGISTRY: &str = r#"
import base64, hashlib, json, sys, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

host, repo, digest, pub_file = sys.argv[1:5]
pub = serialization.load_pem_public_key(open(pub_file, "rb").read())
def get(path, accept=None):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/{path}")
    if accept:
        req.add_header("Accept", accept)
    return urllib.request.urlopen(req).read()
tag = "sha256-" + digest.split(":")[1] + ".sig"
manifest = json.loads(get("manifests/" + tag, "application/vnd.oci.image.manifest.v1+json"))
assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json", manifest
config = get("blobs/" + manifest["config"]["digest"])
assert "sha256:" + hashlib.sha256(config).hexdigest() == manifest["config"]["digest"]
verified = 0
for layer in manifest["layers"]:
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json", layer
    payload = get("blobs/" + layer["digest"])
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
    assert len(payload) == layer["size"]
    assert layer["digest"] in json.loads(config)["rootfs"]["diff_ids"]
    sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    try:
        pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
    except Exception:
        continue
    critical = json.loads(payload)["critical"]
    assert critical["type"] == "cosign container image signature", critical
    assert critical["image"]["docker-manifest-digest"] == digest, critical
    assert critical["identity"]["docker-reference"] == f"{host}/{repo}", critical
    verified += 1
print(verified)
sys.exit(0 if verified else 1)
"#;

#[test]
fn a_cosign_signature_image_we_push_verifies_over_the_registry_api() {
    let env = TestEnv::new();
    let (registry, digest) = registry_with_image(&env, "team/app");
    let host = registry.host();
    let keys = env.scratch("keys");
    let (key_file, pub_file) = python_cosign_key(&keys, "signer", "pw");
    let (_, stranger_pub) = python_cosign_key(&keys, "stranger", "pw");
    let key = load_cosign_signing_key(&key_file, b"pw").expect("loading the key");

    let reference = ImageReference::parse(&format!("{host}/team/app:1")).expect("a reference");
    let image = sign_image(&key, &reference, &digest);
    let layout = env.scratch("sig-layout");
    for (d, bytes) in image.blobs() {
        assert_eq!(write_blob(&layout, bytes).digest(), d.to_string());
    }
    let manifest = write_blob(&layout, &image.manifest);
    write_index_json(&layout, OCI_MANIFEST, &manifest, "sig");
    registry.push(&layout, "sig", &format!("team/app:{}", image.tag));
    let (served, _) = registry.manifest("team/app", &image.tag);
    assert_eq!(
        served,
        image.manifest_digest.to_string(),
        "skopeo pushed the signature manifest unchanged"
    );

    // An independent client: Python over plain HTTP with its own ECDSA.
    let check = |public: &Path| {
        Command::new(python())
            .args(["-c", PY_CHECK_REGISTRY, &host, "team/app"])
            .arg(digest.to_string())
            .arg(public)
            .output()
            .expect("running python")
    };
    let out = check(&pub_file);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
        "python did not verify the signature:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!check(&stranger_pub).status.success(), "another key passed");

    // And the binary's own pull, requiring the key by policy.
    std::fs::create_dir_all(env.sandboxes_dir()).expect("creating the sandboxes dir");
    let policy = policy_for(
        &format!("{host}/team"),
        json!({"type": "sigstoreSigned", "keyPath": pub_file}),
    );
    std::fs::write(env.sandboxes_dir().join("policy.json"), policy.to_string())
        .expect("writing policy.json");
    let home = env.scratch("home");
    let j = env
        .sandbox_with_env(
            &[
                "--json",
                "pull",
                "--tls-verify=false",
                &registry.reference("team/app:1"),
                "app",
            ],
            &[("HOME", arg(&home))],
        )
        .success()
        .json();
    assert_eq!(j["verification"]["mode"], "signature");
    assert_eq!(
        j["verification"]["key_fingerprint"],
        key.public_key().fingerprint
    );
}

#[test]
fn a_simple_signing_signature_we_write_verifies_with_gnupg_and_skopeo() {
    let env = TestEnv::new();
    let signer = Gpg::new(KeyAlgo::Ed25519);
    let verifier = Gpg::new(KeyAlgo::Ed25519);
    let (registry, digest) = registry_with_image(&env, "team/signed");
    let host = registry.host();
    let key_file = signer.export_secret_to(&env.scratch("keys").join("secret.pgp"), false);
    let key = load_signing_key(&key_file).expect("loading the gpg secret key");
    let reference = ImageReference::parse(&format!("{host}/team/signed:1")).expect("a reference");
    let store = env.scratch("lookaside");
    let message =
        sign_simple(&key, &simple_signing_identity(&reference), &digest).expect("signing");
    let path = write_lookaside_signature(&store, &reference, &digest, &message)
        .expect("writing the signature");
    assert_eq!(
        path,
        store.join(format!("team/signed@sha256={}/signature-1", digest.hex()))
    );

    // GnuPG, holding only the signer's public key: prints the payload, reports a good
    // signature by the signer's fingerprint.
    crate::harness::run_tool(
        verifier.command().arg("--import"),
        Some(&signer.export(false)),
    );
    let output = verifier
        .command()
        .args(["--status-fd", "2", "--decrypt"])
        .arg(&path)
        .output()
        .expect("running gpg");
    let status = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gpg --decrypt failed:\n{status}");
    assert!(
        status.contains(&format!("VALIDSIG {}", signer.fingerprint())),
        "{status}"
    );
    let payload: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("gpg printed the JSON payload");
    assert_eq!(payload["critical"]["type"], "atomic container signature");
    assert_eq!(
        payload["critical"]["image"]["docker-manifest-digest"],
        digest.to_string()
    );
    assert_eq!(
        payload["critical"]["identity"]["docker-reference"],
        format!("{host}/team/signed:1")
    );

    // skopeo's own simple signing check, reading our lookaside store.
    let registries_d = env.scratch("registries.d");
    std::fs::create_dir_all(&registries_d).expect("creating registries.d");
    std::fs::write(
        registries_d.join("local.yaml"),
        format!(
            "docker:\n  {host}:\n    lookaside: file://{}\n",
            store.display()
        ),
    )
    .expect("writing registries.d/local.yaml");
    let keyring = |gpg: &Gpg, name: &str| gpg.export_to(&env.scratch("keys").join(name), false);
    let requirement =
        |ring: &Path| json!({"type": "signedBy", "keyType": "GPGKeys", "keyPath": ring});
    let scope = format!("{host}/team/signed");
    let signer_ring = keyring(&signer, "signer.gpg");
    let (ok, stderr) = skopeo_pull(
        &env,
        &registry,
        "team/signed",
        &policy_for(&scope, requirement(&signer_ring)),
        &registries_d,
    );
    assert!(ok, "skopeo refused our simple signing signature:\n{stderr}");
    let other_ring = keyring(&verifier, "other.gpg");
    let (ok, stderr) = skopeo_pull(
        &env,
        &registry,
        "team/signed",
        &policy_for(&scope, requirement(&other_ring)),
        &registries_d,
    );
    assert!(!ok, "skopeo accepted a signature by another key:\n{stderr}");
}
