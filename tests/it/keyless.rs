//! Keyless (Fulcio/Rekor) signatures on `docker://` pulls and builds, end to end against the
//! real local registry: a private Sigstore made on the spot (`harness/private_sigstore.py`,
//! written with Python's `cryptography`, independent of the Rust verifier) issues the
//! certificate, logs the entry and writes the trusted root; the signatures are attached as
//! cosign attaches them, a legacy `.sig` layer with its certificate, chain and Rekor bundle
//! annotations (pushed by real skopeo), or a Sigstore bundle as an OCI 1.1 referrer (found
//! through the referrers tag schema, which Debian's registry serves).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::build::{recorder, write_template};
use crate::build_oci::oci_base;
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::ocimage::{OCI_INDEX, OCI_MANIFEST, init_image, single_image_layout};
use crate::harness::ocimage::{write_blob, write_index_json};
use crate::harness::registry::Registry;
use crate::harness::{require_tool, run_tool, sha256_hex};
use crate::oci_signatures::payload;

const IDENTITY: &str = "signer@example.test";
const ISSUER: &str = "https://issuer.example.test";
const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// A private Sigstore deployment in a directory (see the script for what it holds).
struct Sigstore {
    dir: PathBuf,
}

impl Sigstore {
    fn script(args: &[&str]) -> Vec<u8> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/harness/private_sigstore.py"
        );
        run_tool(
            Command::new("/usr/bin/python3").arg(script).args(args),
            None,
        )
    }

    fn init(dir: PathBuf) -> Sigstore {
        Sigstore::script(&[
            "init",
            arg(&dir),
            "--identity",
            IDENTITY,
            "--issuer",
            ISSUER,
        ]);
        Sigstore { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn trusted_root(&self) -> PathBuf {
        self.file("trusted_root.json")
    }

    /// cosign's four `.sig` layer annotations for `payload`, with `extra` script flags.
    fn legacy(&self, scratch: &Path, payload: &[u8], extra: &[&str]) -> Value {
        let input = scratch.join(format!("payload-{}", crate::harness::token()));
        std::fs::write(&input, payload).unwrap();
        let out = input.with_extension("json");
        let mut args = vec!["legacy", arg(&self.dir), arg(&input), arg(&out)];
        args.extend_from_slice(extra);
        Sigstore::script(&args);
        serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
    }

    /// A v0.3 DSSE bundle over `digest`, as cosign v3 attaches it, with `extra` flags.
    fn bundle(&self, scratch: &Path, digest: &str, extra: &[&str]) -> Vec<u8> {
        let out = scratch.join(format!("bundle-{}.json", crate::harness::token()));
        let mut args = vec!["bundle", arg(&self.dir), arg(&out), "--digest", digest];
        args.extend_from_slice(extra);
        Sigstore::script(&args);
        std::fs::read(&out).unwrap()
    }
}

/// Pushes `repo:sha256-HEX.sig` of `digest` holding one simplesigning layer of `payload` with
/// the signature annotations `signed` (from [`Sigstore::legacy`]).
fn push_legacy(
    env: &TestEnv,
    registry: &Registry,
    repo: &str,
    digest: &str,
    payload: &[u8],
    signed: &Value,
) {
    let dir = env.scratch(&format!("sig-{}", crate::harness::token()));
    let layer = write_blob(&dir, payload);
    let config = json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.digest()]}
    });
    let config = write_blob(&dir, &serde_json::to_vec(&config).unwrap());
    let annotations = json!({
        "dev.cosignproject.cosign/signature": signed["signature"],
        "dev.sigstore.cosign/certificate": signed["certificate"],
        "dev.sigstore.cosign/chain": signed["chain"],
        "dev.sigstore.cosign/bundle": signed["bundle"],
    });
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest(), "size": config.size},
        "layers": [{"mediaType": SIMPLESIGNING, "digest": layer.digest(), "size": layer.size,
                    "annotations": annotations}]
    });
    let manifest = write_blob(&dir, &serde_json::to_vec(&manifest).unwrap());
    write_index_json(&dir, OCI_MANIFEST, &manifest, "sig");
    let hex = digest.trim_start_matches("sha256:");
    registry.push(&dir, "sig", &format!("{repo}:sha256-{hex}.sig"));
}

/// curl against the registry's HTTP API.
fn curl(args: &[&str]) -> Vec<u8> {
    run_tool(
        Command::new(require_tool("curl")).args(["-fsS"]).args(args),
        None,
    )
}

fn put_blob(registry: &Registry, repo: &str, data: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(data));
    let base = format!("http://{}/v2/{repo}/blobs/uploads/", registry.host());
    let headers = curl(&["-D", "-", "-o", "/dev/null", "-X", "POST", &base]);
    let headers = String::from_utf8(headers).unwrap();
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .expect("an upload location");
    let location = if location.starts_with('/') {
        format!("http://{}{location}", registry.host())
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let file = std::env::temp_dir().join(format!("blob-{}", crate::harness::token()));
    std::fs::write(&file, data).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{sep}digest={digest}"),
    ]);
    let _ = std::fs::remove_file(file);
    digest
}

fn put_manifest(
    registry: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    doc: &Value,
) -> (String, u64) {
    let bytes = serde_json::to_vec(doc).unwrap();
    let file = std::env::temp_dir().join(format!("manifest-{}", crate::harness::token()));
    std::fs::write(&file, &bytes).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {media_type}"),
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://{}/v2/{repo}/manifests/{reference}", registry.host()),
    ]);
    let _ = std::fs::remove_file(file);
    (format!("sha256:{}", sha256_hex(&bytes)), bytes.len() as u64)
}

/// Attaches `bundle` to the manifest `subject` (`size` bytes) as cosign v3 does: an artifact
/// manifest with the bundle as its layer and `subject`, listed in the `sha256-HEX` referrers
/// tag (the registry has no referrers API).
fn attach_bundle(
    registry: &Registry,
    repo: &str,
    subject: &str,
    size: u64,
    bundle: &[u8],
) -> String {
    let empty = put_blob(registry, repo, b"{}");
    let layer = put_blob(registry, repo, bundle);
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": BUNDLE_V03,
        "config": {"mediaType": EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": BUNDLE_V03, "digest": layer, "size": bundle.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": size}
    });
    let (digest, len) = put_manifest(registry, repo, "latest-bundle", OCI_MANIFEST, &manifest);
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": len,
                       "artifactType": BUNDLE_V03}]
    });
    let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    put_manifest(registry, repo, &tag, OCI_INDEX, &index);
    digest
}

/// Pushes an `init_image` of its own as `repo:1`; its manifest digest and size.
fn image_in(env: &TestEnv, registry: &Registry, repo: &str) -> (String, u64) {
    let layout = env.scratch(&format!("layout-{}", crate::harness::token()));
    // Distinct per repository, so no two share a digest.
    let mut spec = init_image();
    spec.env = vec![Box::leak(format!("REPO={repo}").into_boxed_str())];
    single_image_layout(&layout, &spec, "t");
    registry.push(&layout, "t", &format!("{repo}:1"));
    let (digest, doc) = registry.manifest(repo, "1");
    (digest, serde_json::to_vec(&doc).unwrap().len() as u64)
}

fn run(env: &TestEnv, args: &[&str]) -> Outcome {
    let home = env.scratch("home");
    env.sandbox_with_env(
        args,
        &[("HOME", arg(&home)), ("XDG_RUNTIME_DIR", arg(&home))],
    )
}

fn keyless_pull(
    env: &TestEnv,
    sigstore: &Sigstore,
    reference: &str,
    name: &str,
    identity: &[&str],
) -> Outcome {
    let root = sigstore.trusted_root();
    let mut args = vec!["--json", "pull", "--tls-verify=false"];
    args.extend_from_slice(identity);
    args.extend_from_slice(&[
        "--certificate-oidc-issuer",
        ISSUER,
        "--trusted-root",
        arg(&root),
        reference,
        name,
    ]);
    run(env, &args)
}

#[test]
fn a_legacy_keyless_signature_is_checked_with_cosigns_flags() {
    let env = TestEnv::new();
    let sigstore = Sigstore::init(env.scratch("sigstore"));
    let registry = Registry::start(&env.scratch("registry"), None);
    let (digest, _) = image_in(&env, &registry, "team/app");
    let host = registry.host();
    let body = payload(&format!("{host}/team/app"), &digest);
    let signed = sigstore.legacy(&env.scratch("work"), &body, &[]);
    push_legacy(&env, &registry, "team/app", &digest, &body, &signed);
    let reference = registry.reference("team/app:1");

    let out = keyless_pull(
        &env,
        &sigstore,
        &reference,
        "app",
        &["--certificate-identity", IDENTITY],
    )
    .success();
    let v = &out.json()["verification"];
    assert_eq!(v["mode"], "signature", "{v}");
    assert_eq!(v["signer"], IDENTITY, "{v}");
    assert_eq!(v["oidc_issuer"], ISSUER, "{v}");
    assert!(
        v["signature_source"]
            .as_str()
            .unwrap()
            .starts_with("sigstore:"),
        "{v}"
    );
    assert!(env.machine("app").join("sbin/init").is_file());
    let record: Value =
        serde_json::from_slice(&std::fs::read(env.sandboxes_dir().join("state/app.json")).unwrap())
            .unwrap();
    assert!(record.to_string().contains(IDENTITY), "{record}");

    // cosign's regular expression form (unanchored, as cosign's).
    keyless_pull(
        &env,
        &sigstore,
        &reference,
        "re",
        &["--certificate-identity-regexp", "^signer@example\\."],
    )
    .success();
    // Another identity, another issuer, another trust root: refused, naming what was asked.
    keyless_pull(
        &env,
        &sigstore,
        &reference,
        "x",
        &["--certificate-identity", "other@example.test"],
    )
    .failure()
    .stderr_mentions(&["other@example.test", "no keyless signature"]);
    let other = Sigstore::init(env.scratch("other-sigstore"));
    keyless_pull(
        &env,
        &other,
        &reference,
        "y",
        &["--certificate-identity", IDENTITY],
    )
    .failure()
    .stderr_mentions(&["no keyless signature", "trusted_root.json"]);
    env.assert_machines(&["app", "re"]);

    // The cached image is checked again offline against the record's signer.
    let offline = keyless_pull(
        &env,
        &sigstore,
        &reference,
        "again",
        &["--offline", "--certificate-identity", IDENTITY],
    );
    offline.success();
}

#[test]
fn bad_legacy_signatures_are_refused() {
    let env = TestEnv::new();
    let sigstore = Sigstore::init(env.scratch("sigstore"));
    let registry = Registry::start(&env.scratch("registry"), None);
    let host = registry.host();
    for (repo, flags, why) in [
        ("t/set", vec!["--tamper-set"], "SET"),
        ("t/late", vec!["--outside-validity"], "xpired"),
        ("t/ca", vec!["--other-ca"], "no keyless signature"),
    ] {
        let (digest, _) = image_in(&env, &registry, repo);
        let body = payload(&format!("{host}/{repo}"), &digest);
        let signed = sigstore.legacy(&env.scratch("work"), &body, &flags);
        push_legacy(&env, &registry, repo, &digest, &body, &signed);
        let reference = registry.reference(&format!("{repo}:1"));
        keyless_pull(
            &env,
            &sigstore,
            &reference,
            "bad",
            &["--certificate-identity", IDENTITY],
        )
        .failure()
        .stderr_mentions(&[why]);
    }
    // A good signature over another image's digest does not vouch for this one.
    let (mine, _) = image_in(&env, &registry, "t/mine");
    let (theirs, _) = image_in(&env, &registry, "t/theirs");
    assert_ne!(mine, theirs);
    let body = payload(&format!("{host}/t/theirs"), &theirs);
    let signed = sigstore.legacy(&env.scratch("work"), &body, &[]);
    push_legacy(&env, &registry, "t/mine", &mine, &body, &signed);
    keyless_pull(
        &env,
        &sigstore,
        &registry.reference("t/mine:1"),
        "bad",
        &["--certificate-identity", IDENTITY],
    )
    .failure()
    .stderr_mentions(&["no keyless signature"]);
    // No signature at all.
    image_in(&env, &registry, "t/none");
    keyless_pull(
        &env,
        &sigstore,
        &registry.reference("t/none:1"),
        "bad",
        &["--certificate-identity", IDENTITY],
    )
    .failure()
    .stderr_mentions(&["there is none"]);
    env.assert_machines(&[]);
}

#[test]
fn a_referrer_bundle_is_a_signature_and_an_attestation_is_not() {
    let env = TestEnv::new();
    let sigstore = Sigstore::init(env.scratch("sigstore"));
    let registry = Registry::start(&env.scratch("registry"), None);
    let work = env.scratch("work");

    let (digest, size) = image_in(&env, &registry, "v3/app");
    let bundle = sigstore.bundle(&work, &digest, &[]);
    let referrer = attach_bundle(&registry, "v3/app", &digest, size, &bundle);
    let out = keyless_pull(
        &env,
        &sigstore,
        &registry.reference("v3/app:1"),
        "app",
        &["--certificate-identity", IDENTITY],
    )
    .success();
    let v = &out.json()["verification"];
    assert_eq!(v["signer"], IDENTITY, "{v}");
    assert!(
        v["signature_source"].as_str().unwrap().contains(&referrer),
        "{v}"
    );

    let (digest, size) = image_in(&env, &registry, "v3/attested");
    let provenance = sigstore.bundle(
        &work,
        &digest,
        &["--predicate-type", "https://slsa.dev/provenance/v1"],
    );
    attach_bundle(&registry, "v3/attested", &digest, size, &provenance);
    keyless_pull(
        &env,
        &sigstore,
        &registry.reference("v3/attested:1"),
        "att",
        &["--certificate-identity", IDENTITY],
    )
    .failure()
    .stderr_mentions(&["an attestation of type `https://slsa.dev/provenance/v1`"]);
    env.assert_machines(&["app"]);
}

/// A policy.json requiring keyless signatures by `email` for the registry, as
/// containers-policy.json(5) writes the `fulcio` form.
fn fulcio_policy(env: &TestEnv, sigstore: &Sigstore, host: &str, email: &str) {
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    let policy = json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {host: [{
            "type": "sigstoreSigned",
            "fulcio": {
                "caPath": sigstore.file("fulcio_chain.pem"),
                "oidcIssuer": ISSUER,
                "subjectEmail": email
            },
            "rekorPublicKeyPath": sigstore.file("rekor.pub"),
            "signedIdentity": {"type": "matchRepository"}
        }]}}
    });
    std::fs::write(
        env.sandboxes_dir().join("policy.json"),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_policy_fulcio_requirement_admits_pulls_and_builds_it_vouches_for() {
    let env = TestEnv::new();
    let sigstore = Sigstore::init(env.scratch("sigstore"));
    let registry = Registry::start(&env.scratch("registry"), None);
    let host = registry.host();

    // A bootable base for the build, signed the legacy way; a plain image signed by bundle.
    let base_dir = env.scratch("base");
    oci_base(&base_dir);
    registry.push(&base_dir, "base", "os/base:1");
    let (base_digest, _) = registry.manifest("os/base", "1");
    let body = payload(&format!("{host}/os/base"), &base_digest);
    let signed = sigstore.legacy(&env.scratch("work"), &body, &[]);
    push_legacy(&env, &registry, "os/base", &base_digest, &body, &signed);
    let (digest, size) = image_in(&env, &registry, "os/app");
    attach_bundle(
        &registry,
        "os/app",
        &digest,
        size,
        &sigstore.bundle(&env.scratch("work"), &digest, &[]),
    );
    image_in(&env, &registry, "os/unsigned");

    fulcio_policy(&env, &sigstore, &host, IDENTITY);
    let pull = |reference: &str, name: &str| {
        run(
            &env,
            &["--json", "pull", "--tls-verify=false", reference, name],
        )
    };
    let out = pull(&registry.reference("os/app:1"), "app").success();
    let v = &out.json()["verification"];
    assert_eq!(v["signer"], IDENTITY, "{v}");
    assert_eq!(v["oidc_issuer"], ISSUER, "{v}");
    pull(&registry.reference("os/unsigned:1"), "unsigned")
        .failure()
        .stderr_mentions(&["no keyless signature", "policy"]);

    let template = format!("source = \"{}\"\n", registry.reference("os/base:1"));
    write_template(
        &env,
        "signed",
        &[("template.toml", template.as_bytes(), 0o644)],
    );
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let build = |name: &str| {
        env.sandbox_with_env(
            &[
                "--json",
                "build",
                "--tls-verify=false",
                "--no-start",
                "signed",
                name,
            ],
            &[("SANDBOX_MACHINECTL", arg(&machinectl))],
        )
    };
    let built = build("web").success().json();
    assert!(built.to_string().contains(IDENTITY), "{built}");

    // The same images under a policy naming someone else: nothing gets through.
    fulcio_policy(&env, &sigstore, &host, "someone-else@example.test");
    pull(&registry.reference("os/app:1"), "app2")
        .failure()
        .stderr_mentions(&["someone-else@example.test"]);
    build("web2")
        .failure()
        .stderr_mentions(&["someone-else@example.test"]);
    env.assert_machines(&["app", "web"]);
}
