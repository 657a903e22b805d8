//! Verification modes of `sandbox pull`: none, checksum (`<file>.sha256`, `SHA256SUMS` in all
//! three line forms, `--checksum` pins) and signature (binary and armored signatures and
//! keyrings), and every way of failing closed: tampered tarball, tampered sums, wrong key,
//! missing signature, missing checksums. A failure must leave the machines dir empty and must
//! not put the rejected bytes into the cache.

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::rootfs::Compression;
use crate::harness::site::{Site, SumStyle, uri};
use crate::harness::{files_under, sha256_hex};

/// Asserts that no blob in the cache holds `bytes` (under its own name or any other).
#[track_caller]
fn assert_not_cached(env: &TestEnv, bytes: &[u8]) {
    let hex = sha256_hex(bytes);
    assert!(
        !env.blobs().contains(&hex),
        "rejected bytes were cached as blob {hex}"
    );
    for (path, len) in files_under(&env.blobs_dir()) {
        if len == bytes.len() as u64 {
            let held = std::fs::read(&path).unwrap_or_default();
            assert!(
                held != bytes,
                "rejected bytes were cached as {}",
                path.display()
            );
        }
    }
}

#[test]
fn verify_no_needs_no_checksum_files() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let out = env
        .sandbox(&[
            "--json",
            "pull",
            "--verify=no",
            &site.url("img/os.tar.gz"),
            "box",
        ])
        .success();
    assert_eq!(out.json()["verification"]["mode"], "no");
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn default_mode_fails_closed_without_checksums() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    env.sandbox(&["pull", &site.url("img/os.tar.gz"), "box"])
        .failure()
        .stderr_mentions(&["SHA256SUMS"]);
    env.assert_machines(&[]);
    assert_not_cached(&env, &image.bytes);
}

#[test]
fn checksum_mode_uses_the_sha256_file() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Xz);
    site.put("img/os.tar.xz", &image.bytes);
    site.sha256_file("img", "os.tar.xz", SumStyle::Text);

    let out = env
        .sandbox(&[
            "--json",
            "pull",
            "--verify=checksum",
            &site.url("img/os.tar.xz"),
            "box",
        ])
        .success();

    assert_eq!(out.json()["verification"]["mode"], "checksum");
    image.assert_materialised(&env.machine("box"));
    let fetched = site.nginx.log_for(&uri("img/os.tar.xz.sha256"));
    assert!(
        fetched.iter().any(|e| e.status == 200),
        "the .sha256 file was never fetched:\n{}",
        site.nginx.log_text()
    );
}

/// SHA256SUMS listing a decoy before the image, in the given line form.
fn checksum_mode_with_sums(style: SumStyle) {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Zstd);
    let decoy = Image::new(&env, Compression::Zstd);
    site.put("img/decoy.tar.zst", &decoy.bytes);
    site.put("img/os.tar.zst", &image.bytes);
    site.sha256sums("img", &["decoy.tar.zst", "os.tar.zst"], style);
    env.sandbox(&[
        "pull",
        "--verify=checksum",
        &site.url("img/os.tar.zst"),
        "box",
    ])
    .success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn checksum_mode_uses_sha256sums_text_lines() {
    checksum_mode_with_sums(SumStyle::Text);
}

#[test]
fn checksum_mode_uses_sha256sums_binary_lines() {
    checksum_mode_with_sums(SumStyle::Binary);
}

#[test]
fn checksum_mode_uses_sha256sums_single_space_lines() {
    checksum_mode_with_sums(SumStyle::SingleSpace);
}

#[test]
fn checksum_pin_accepts_the_right_digest() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let pin = format!("sha256:{}", image.hex());
    env.sandbox(&[
        "pull",
        "--verify=checksum",
        "--checksum",
        &pin,
        &site.url("img/os.tar.gz"),
        "box",
    ])
    .success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn checksum_pin_rejects_another_digest() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let pin = format!("sha256:{}", sha256_hex(b"something else"));
    env.sandbox(&[
        "pull",
        "--verify=checksum",
        "--checksum",
        &pin,
        &site.url("img/os.tar.gz"),
        "box",
    ])
    .failure()
    .stderr_mentions(&["os.tar.gz"]);
    env.assert_machines(&[]);
    assert_not_cached(&env, &image.bytes);
}

#[test]
fn tampered_tarball_is_rejected_and_not_cached() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, false);
    // A valid tarball, just not the signed one: only the digest can tell.
    let evil = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &evil.bytes);
    let key = keyring(&env, &gpg, false);

    env.sandbox(&["pull", "--keyring", arg(&key), &url, "box"])
        .failure()
        .stderr_mentions(&["os.tar.gz"]);

    env.assert_machines(&[]);
    assert_not_cached(&env, &evil.bytes);
}

#[test]
fn tampered_sums_fail_the_signature() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, false);
    // The attacker swaps the tarball and rewrites SHA256SUMS, but cannot re-sign it.
    let evil = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &evil.bytes);
    site.sha256sums("img", &["os.tar.gz"], SumStyle::Text);
    let key = keyring(&env, &gpg, false);

    env.sandbox(&["pull", "--keyring", arg(&key), &url, "box"])
        .failure()
        .stderr_mentions(&["SHA256SUMS"]);

    env.assert_machines(&[]);
    assert_not_cached(&env, &evil.bytes);
}

/// Signed with `gpg`, trusted through a keyring file of the given form; returns the outcome.
fn signature_roundtrip(algo: KeyAlgo, sig_armor: bool, key_armor: bool) {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(algo);
    let image = Image::new(&env, Compression::Xz);
    let url = site.publish_signed(&gpg, "img", "os.tar.xz", &image.bytes, sig_armor);
    let key = keyring(&env, &gpg, key_armor);

    let out = env
        .sandbox(&["--json", "pull", "--keyring", arg(&key), &url, "box"])
        .success();

    let json = out.json();
    assert_eq!(json["verification"]["mode"], "signature");
    let fpr = json["verification"]["key_fingerprint"]
        .as_str()
        .unwrap_or_default();
    assert!(fpr.eq_ignore_ascii_case(gpg.fingerprint()), "{json}");
    image.assert_materialised(&env.machine("box"));
    let sig = if sig_armor {
        "img/SHA256SUMS.asc"
    } else {
        "img/SHA256SUMS.gpg"
    };
    assert!(
        site.nginx
            .log_for(&uri(sig))
            .iter()
            .any(|e| e.status == 200),
        "{sig} was never fetched:\n{}",
        site.nginx.log_text()
    );
}

#[test]
fn signature_gpg_with_binary_keyring() {
    signature_roundtrip(KeyAlgo::Ed25519, false, false);
}

#[test]
fn signature_asc_with_armored_keyring() {
    signature_roundtrip(KeyAlgo::Ed25519, true, true);
}

#[test]
fn signature_gpg_with_armored_rsa_keyring() {
    signature_roundtrip(KeyAlgo::Rsa3072, false, true);
}

#[test]
fn signature_over_the_sha256_file() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Bzip2);
    site.put("img/os.tar.bz2", &image.bytes);
    site.sha256_file("img", "os.tar.bz2", SumStyle::Text);
    site.sign(&gpg, "img/os.tar.bz2.sha256", true);
    let key = keyring(&env, &gpg, false);
    env.sandbox(&[
        "pull",
        "--keyring",
        arg(&key),
        &site.url("img/os.tar.bz2"),
        "box",
    ])
    .success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn signature_by_an_unknown_key_is_refused_with_advice() {
    let env = TestEnv::new();
    let site = Site::new();
    let signer = Gpg::new(KeyAlgo::Ed25519);
    let trusted = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let url = site.publish_signed(&signer, "img", "os.tar.gz", &image.bytes, false);
    let key = keyring(&env, &trusted, true);

    let out = env
        .sandbox(&["pull", "--keyring", arg(&key), &url, "box"])
        .failure()
        .stderr_mentions(&["SHA256SUMS.gpg"]);

    // The issuer may be printed as fingerprint or key ID, grouped or not: compare bare hex.
    let bare: String = out
        .stderr
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    assert!(
        bare.to_uppercase().contains(signer.key_id()),
        "stderr does not name the issuer {}:\n{}",
        signer.key_id(),
        out.stderr
    );
    assert!(
        out.stderr.contains("keys add") || out.stderr.contains("--keyring"),
        "stderr does not say how to trust a key:\n{}",
        out.stderr
    );
    env.assert_machines(&[]);
    assert_not_cached(&env, &image.bytes);
}

#[test]
fn missing_signature_fails_closed() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    site.sha256sums("img", &["os.tar.gz"], SumStyle::Text);
    let key = keyring(&env, &gpg, false);

    env.sandbox(&[
        "pull",
        "--keyring",
        arg(&key),
        &site.url("img/os.tar.gz"),
        "box",
    ])
    .failure()
    .stderr_mentions(&["SHA256SUMS"]);
    env.assert_machines(&[]);
    assert_not_cached(&env, &image.bytes);
}

#[test]
fn signature_mode_without_any_key_fails_closed() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, true);
    env.sandbox(&["pull", &url, "box"])
        .failure()
        .stderr_mentions(&["SHA256SUMS.asc"]);
    env.assert_machines(&[]);
}
