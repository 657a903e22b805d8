//! Sigstore's conformance suite (sigstore/sigstore-conformance, its bundle verification cases,
//! vendored under tests/fixtures/sigstore-conformance with their provenance) run through
//! `sandbox verify --bundle` as the suite's CLI protocol describes: every case passes or fails
//! as its name says. And what is ours around the verifier: which trusted root is used, cosign's
//! regular-expression flags, and messages that say which identity was found.

use std::path::{Path, PathBuf};

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigstore-conformance/bundle-verify")
}

/// The `sandbox verify` arguments for one case directory, as the suite's protocol builds them.
fn case_args(dir: &Path) -> Vec<String> {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let mut args = vec![
        "verify".to_string(),
        "--bundle".to_string(),
        arg(&dir.join("bundle.sigstore.json")).to_string(),
    ];
    if dir.join("key.pub").is_file() {
        args.extend(["--key".to_string(), arg(&dir.join("key.pub")).to_string()]);
    } else {
        let identity = read("identity").unwrap_or_else(|| DEFAULT_IDENTITY.to_string());
        let issuer = read("issuer").unwrap_or_else(|| DEFAULT_ISSUER.to_string());
        args.extend([
            "--certificate-identity".to_string(),
            identity.trim().to_string(),
            "--certificate-oidc-issuer".to_string(),
            issuer.trim().to_string(),
        ]);
    }
    if dir.join("trusted_root.json").is_file() {
        args.extend([
            "--trusted-root".to_string(),
            arg(&dir.join("trusted_root.json")).to_string(),
        ]);
    }
    let artifact = if dir.join("artifact").is_file() {
        dir.join("artifact")
    } else {
        cases_dir().join("a.txt")
    };
    args.push(arg(&artifact).to_string());
    args
}

#[test]
fn every_bundle_verification_case_of_the_conformance_suite_passes() {
    let env = TestEnv::new();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("bundle.sigstore.json").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 70, "only {} cases vendored", cases.len());
    let mut wrong = Vec::new();
    let (mut passes, mut fails) = (0, 0);
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let args = case_args(dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = env.sandbox(&args);
        let should_fail = name.ends_with("_fail");
        let code = out.status.code();
        if should_fail {
            fails += 1;
            // Refused with an error of ours (exit 1 and a message), never a crash.
            if code != Some(1) || !out.stderr.contains("Error: ") {
                wrong.push(format!(
                    "{name}: expected a refusal, got {code:?}: {}",
                    out.stderr
                ));
            }
        } else {
            passes += 1;
            if code != Some(0) || !out.stderr.contains("Good Sigstore bundle") {
                wrong.push(format!(
                    "{name}: expected to verify, got {code:?}: {}",
                    out.stderr
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases went wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert!(
        passes >= 20 && fails >= 40,
        "{passes} passing and {fails} failing cases"
    );
}

/// A case the built-in public-good root does not trust, with the trusted root it needs.
fn custom_root_case() -> PathBuf {
    cases_dir().join("intoto-with-custom-trust-root")
}

#[test]
fn a_trusted_root_under_the_sandboxes_dir_replaces_the_built_in_one() {
    let env = TestEnv::new();
    let dir = custom_root_case();
    let mut args = case_args(&dir);
    // Without --trusted-root the built-in root is used, and refuses.
    let at = args
        .iter()
        .position(|a| a == "--trusted-root")
        .expect("the case has its own root");
    args.drain(at..at + 2);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    env.sandbox(&argv).failure();
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    std::fs::copy(
        dir.join("trusted_root.json"),
        env.sandboxes_dir().join("trusted_root.json"),
    )
    .unwrap();
    let out = env.sandbox(&argv).success();
    assert!(out.stderr.contains("trusted_root.json"), "{}", out.stderr);
    let mut json = vec!["--json"];
    json.extend(&argv);
    let v = env.sandbox(&json).success().json();
    assert_eq!(v["identity"], DEFAULT_IDENTITY);
    assert_eq!(v["issuer"], DEFAULT_ISSUER);
    assert!(
        v["trusted_root"]
            .as_str()
            .unwrap()
            .ends_with("trusted_root.json"),
        "{v}"
    );
}

fn happy(env: &TestEnv, signer: &[&str]) -> crate::harness::env::Outcome {
    let dir = cases_dir().join("happy-path-v0.3");
    let bundle = dir.join("bundle.sigstore.json");
    let artifact = cases_dir().join("a.txt");
    let mut args = vec!["verify", "--bundle", arg(&bundle)];
    args.extend(signer);
    args.push(arg(&artifact));
    env.sandbox(&args)
}

#[test]
fn identities_and_issuers_match_exactly_or_by_regular_expression_as_cosign_spells_them() {
    let env = TestEnv::new();
    happy(
        &env,
        &[
            "--certificate-identity-regexp",
            "^https://github.com/sigstore-conformance/",
            "--certificate-oidc-issuer-regexp",
            "githubusercontent",
        ],
    )
    .success();
    happy(
        &env,
        &[
            "--certificate-identity-regexp",
            "^https://github.com/someone-else/",
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
        ],
    )
    .failure()
    .stderr_mentions(&[
        "identity is `https://github.com/sigstore-conformance/",
        "matching /^https://github.com/someone-else//",
    ]);
    happy(&env, &["--certificate-identity", DEFAULT_IDENTITY, "--certificate-oidc-issuer", "https://accounts.google.com"])
        .failure()
        .stderr_mentions(&["OIDC issuer is `https://token.actions.githubusercontent.com`, not `https://accounts.google.com`"]);
    // An identity without an issuer is not enough: cosign refuses that too.
    happy(&env, &["--certificate-identity", DEFAULT_IDENTITY])
        .failure()
        .stderr_mentions(&["--certificate-oidc-issuer"]);
    happy(&env, &[])
        .failure()
        .stderr_mentions(&["--bundle needs who may have signed"]);
    happy(
        &env,
        &[
            "--certificate-identity-regexp",
            "(",
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
        ],
    )
    .failure()
    .stderr_mentions(&["is not a regular expression"]);
}

#[test]
fn a_digest_stands_for_the_artifact_and_a_wrong_one_is_refused() {
    let env = TestEnv::new();
    let data = std::fs::read(cases_dir().join("a.txt")).unwrap();
    let hex = crate::harness::sha256_hex(&data);
    let right = format!("sha256:{hex}");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bundle = cases_dir().join("happy-path-v0.3/bundle.sigstore.json");
    for (digest, ok) in [(&right, true), (&wrong, false)] {
        let out = env.sandbox(&[
            "verify",
            "--bundle",
            arg(&bundle),
            "--certificate-identity",
            DEFAULT_IDENTITY,
            "--certificate-oidc-issuer",
            DEFAULT_ISSUER,
            digest,
        ]);
        if ok {
            out.success();
        } else {
            out.failure();
        }
    }
}
