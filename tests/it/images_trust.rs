//! What makes an `images:` pull trusted, and every way it must fail closed: a signature by
//! another key, no signature at all, the per-file `rootfs.tar.xz.asc` fallback, a products
//! file and a signed `SHA256SUMS` that disagree, tampered bytes, a SHA-1 data signature, and
//! which keys are trusted for which server (including the built-in LXC key).
//! A refused pull leaves the machines dir empty and the rejected rootfs out of the cache.

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::sha256_hex;
use crate::harness::simplestreams::{BuildSpec, Published, SigningKey};
use crate::images::{Lxc, V1, V2};

/// The real LXC image key, built into the binary.
const LXC_FINGERPRINT: &str = "E7FB0CAEC8173D669066514CBAEFF88C22F6E216";
/// Ubuntu's cloud image key, which signed the real fixture tests/fixtures/openpgp/ubuntu-noble-*.
const UBUNTU_FINGERPRINT: &str = "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81";

/// One debian/bookworm build (amd64, V1) on a simplestreams server.
fn one_build() -> (Lxc, Published) {
    let mut lxc = Lxc::new();
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    lxc.server.write_streams();
    (lxc, b)
}

fn pull_args() -> [&'static str; 3] {
    ["--arch", "amd64", "images:debian/bookworm"]
}

#[track_caller]
fn assert_refused_cleanly(lxc: &Lxc, b: &Published) {
    lxc.env.assert_machines(&[]);
    assert!(
        !lxc.env.blobs().contains(&b.rootfs_hex()),
        "a refused rootfs was cached"
    );
}

#[test]
fn a_signature_by_another_key_fails_naming_the_issuer() {
    let (lxc, b) = one_build();
    let other = SigningKey::sha1_self_signed("other");
    lxc.server
        .sign(&format!("{}SHA256SUMS", b.spec.dir()), &other, "SHA256");
    let out = lxc.pull(false, &pull_args()).failure();
    let stderr = out.stderr.to_uppercase();
    assert!(
        stderr.contains(other.fingerprint()) || stderr.contains(other.key_id()),
        "stderr must name the issuer {}:\n{}",
        other.fingerprint(),
        out.stderr
    );
    assert_refused_cleanly(&lxc, &b);
    assert_eq!(
        lxc.server.gets(&b.rootfs_rel()),
        0,
        "refused before downloading"
    );
}

#[test]
fn a_missing_signature_fails_closed() {
    let (lxc, b) = one_build();
    lxc.server
        .remove(&format!("{}SHA256SUMS.asc", b.spec.dir()));
    lxc.pull(false, &pull_args())
        .failure()
        .stderr_mentions(&["SHA256SUMS.asc", "rootfs.tar.xz.asc"]);
    assert_refused_cleanly(&lxc, &b);
}

#[test]
fn the_per_file_signature_is_the_fallback() {
    let (lxc, b) = one_build();
    let dir = b.spec.dir();
    lxc.server.remove(&format!("{dir}SHA256SUMS.asc"));
    lxc.server.sign(&b.rootfs_rel(), &lxc.key, "SHA256");
    let out = lxc.pull(true, &pull_args()).success();
    b.assert_landed(&lxc.env.machine("debian-bookworm"));
    let v = &out.json()["verification"];
    assert_eq!(v["key_fingerprint"], lxc.key.fingerprint());
    assert!(
        v["signature_source"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!("{dir}rootfs.tar.xz.asc"))),
        "{v}"
    );
}

#[test]
fn a_per_file_signature_by_another_key_is_refused() {
    let (lxc, b) = one_build();
    lxc.server
        .remove(&format!("{}SHA256SUMS.asc", b.spec.dir()));
    let other = SigningKey::sha1_self_signed("other");
    lxc.server.sign(&b.rootfs_rel(), &other, "SHA256");
    let out = lxc.pull(false, &pull_args()).failure();
    let stderr = out.stderr.to_uppercase();
    assert!(
        stderr.contains(other.fingerprint()) || stderr.contains(other.key_id()),
        "stderr must name the issuer {}:\n{}",
        other.fingerprint(),
        out.stderr
    );
    assert_refused_cleanly(&lxc, &b);
}

#[test]
fn products_and_signed_sums_must_agree_on_the_digest() {
    let (lxc, b) = one_build();
    let dir = b.spec.dir();
    // A validly signed SHA256SUMS naming other bytes than the products file does.
    let sums_path = lxc.server.path(&format!("{dir}SHA256SUMS"));
    let sums = std::fs::read_to_string(&sums_path).expect("reading SHA256SUMS");
    let other = sha256_hex(b"other bytes");
    assert!(sums.contains(&b.rootfs_hex()));
    std::fs::write(&sums_path, sums.replace(&b.rootfs_hex(), &other)).expect("writing SHA256SUMS");
    lxc.server
        .sign(&format!("{dir}SHA256SUMS"), &lxc.key, "SHA256");
    lxc.pull(false, &pull_args())
        .failure()
        .stderr_mentions(&[&b.rootfs_hex(), &other]);
    assert_refused_cleanly(&lxc, &b);
    assert_eq!(
        lxc.server.gets(&b.rootfs_rel()),
        0,
        "refused before downloading"
    );
}

#[test]
fn bytes_that_match_neither_are_refused() {
    let (mut lxc, b) = one_build();
    // The server swaps in another (well-formed) build's tarball; products and sums are honest.
    let intruder = lxc.publish(BuildSpec::new("Debian", "trixie", "default", "amd64", V2));
    lxc.server.put(&b.rootfs_rel(), &intruder.rootfs);
    lxc.pull(false, &pull_args()).failure();
    lxc.env.assert_machines(&[]);
    assert!(
        !lxc.env.blobs().contains(&intruder.rootfs_hex()),
        "the swapped-in bytes were cached"
    );
}

#[test]
fn a_size_that_differs_from_the_products_file_is_refused() {
    let (lxc, b) = one_build();
    let mut products = lxc.server.products();
    let item = &mut products["products"]["debian:bookworm:amd64:default"]["versions"][V1]["items"]
        ["root.tar.xz"];
    assert_eq!(item["size"], b.rootfs.len());
    item["size"] = (b.rootfs.len() + 1).into();
    lxc.server.write_products(&products);
    lxc.pull(false, &pull_args())
        .failure()
        .stderr_mentions(&[&(b.rootfs.len() + 1).to_string()]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn a_sha1_data_signature_is_refused_even_from_a_pinned_key() {
    let (lxc, b) = one_build();
    let sig = lxc
        .server
        .sign(&format!("{}SHA256SUMS", b.spec.dir()), &lxc.key, "SHA1");
    assert_eq!(
        lxc.key.signature_digests(&sig),
        [("0x00".to_string(), 2)],
        "gpg must have made a SHA-1 data signature"
    );
    let out = lxc.pull(false, &pull_args()).failure();
    let stderr = out.stderr.to_uppercase();
    assert!(
        stderr.contains("SHA1") || stderr.contains("SHA-1"),
        "stderr must say why (SHA-1):\n{}",
        out.stderr
    );
    assert_refused_cleanly(&lxc, &b);
}

#[test]
fn keys_dir_trusts_the_key_without_keyring() {
    let (lxc, b) = one_build();
    lxc.env
        .sandbox(&["keys", "add", arg(&lxc.keyring)])
        .success();
    let server = lxc.server.server();
    let out = lxc
        .env
        .sandbox(&[
            "--json",
            "pull",
            "--images-server",
            &server,
            "--arch",
            "amd64",
            "images:debian/bookworm",
        ])
        .success();
    b.assert_landed(&lxc.env.machine("debian-bookworm"));
    let v = &out.json()["verification"];
    assert_eq!(v["key_fingerprint"], lxc.key.fingerprint());
    assert!(
        v["notes"].to_string().contains("SHA-1"),
        "a key in the keys dir is pinned, its SHA-1 self-signature noted: {v}"
    );
}

#[test]
fn another_server_gets_no_trust_from_the_built_in_key() {
    let (lxc, b) = one_build();
    let server = lxc.server.server();
    // No --keyring, no keys dir: the trust store for a non-default server is empty.
    lxc.env
        .sandbox(&[
            "pull",
            "--images-server",
            &server,
            "--arch",
            "amd64",
            "images:debian/bookworm",
        ])
        .failure()
        .stderr_mentions(&["trust"]);
    assert_refused_cleanly(&lxc, &b);
}

#[test]
fn verify_checksum_relies_on_the_products_file() {
    let (lxc, b) = one_build();
    lxc.server
        .remove(&format!("{}SHA256SUMS.asc", b.spec.dir()));
    let out = lxc
        .pull(
            true,
            &[
                "--verify=checksum",
                "--arch",
                "amd64",
                "images:debian/bookworm",
            ],
        )
        .success();
    b.assert_landed(&lxc.env.machine("debian-bookworm"));
    let v = &out.json()["verification"];
    assert_eq!(v["mode"], "checksum");
    assert!(v.get("key_fingerprint").is_none(), "{v}");
}

#[test]
fn the_built_in_lxc_key_is_listed() {
    let env = TestEnv::new();
    let out = env.sandbox(&["--json", "keys", "ls"]).success();
    let rows = out.json();
    let row = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["fingerprint"] == LXC_FINGERPRINT))
        .unwrap_or_else(|| panic!("keys ls does not list {LXC_FINGERPRINT}: {rows}"));
    assert_eq!(row["origin"], "built-in LXC image key");
}

#[test]
fn verify_uses_the_built_in_key_without_keyring() {
    // The real LXC key cannot sign here; a real signature by another distribution's key must
    // be checked against the built-in one and fail naming its real issuer.
    let env = TestEnv::new();
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openpgp");
    let file = fixtures.join("ubuntu-noble-SHA256SUMS");
    let sig = fixtures.join("ubuntu-noble-SHA256SUMS.gpg");
    let out = env
        .sandbox(&["verify", arg(&file), "--signature", arg(&sig)])
        .failure();
    let stderr = out.stderr.to_uppercase();
    assert!(
        stderr.contains(UBUNTU_FINGERPRINT) || stderr.contains(&UBUNTU_FINGERPRINT[24..]),
        "stderr must name the issuer {UBUNTU_FINGERPRINT}:\n{}",
        out.stderr
    );
    // Not the empty-store error: the built-in key is in the store.
    assert!(!stderr.contains("TRUST STORE IS EMPTY"), "{}", out.stderr);
}

/// Replaces `name` in `b`'s build directory with other bytes after SHA256SUMS was signed.
fn tamper(lxc: &Lxc, b: &Published, name: &str) -> Vec<u8> {
    let evil = crate::harness::random_bytes(2048);
    lxc.server.put(&format!("{}{name}", b.spec.dir()), &evil);
    evil
}

#[test]
fn tampered_metadata_never_reaches_the_cache() {
    // nspawn does not need the LXC metadata, so whether the pull goes on is the binary's choice;
    // unverified bytes in the cache are not.
    let (lxc, b) = one_build();
    let evil = tamper(&lxc, &b, "lxd.tar.xz");
    let _ = lxc.pull(false, &pull_args());
    assert!(
        !lxc.env.blobs().contains(&sha256_hex(&evil)),
        "tampered lxd.tar.xz was cached"
    );
}

#[test]
fn tampered_legacy_metadata_never_reaches_the_cache() {
    // The legacy index has no digests, but the signed SHA256SUMS lists meta.tar.xz.
    let mut lxc = Lxc::new();
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    lxc.server.write_legacy_index("index-system", &[&b]);
    let evil = tamper(&lxc, &b, "meta.tar.xz");
    let _ = lxc.pull(false, &pull_args());
    assert!(
        !lxc.env.blobs().contains(&sha256_hex(&evil)),
        "tampered meta.tar.xz was cached"
    );
}

#[test]
fn a_products_path_leaving_the_server_is_refused() {
    let mut lxc = Lxc::with_server(crate::harness::simplestreams::ImageServer::with_prefix(
        "lxc",
    ));
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    // The same honest bytes, reachable outside the server root: only the path is hostile.
    let outside = format!(
        "http://127.0.0.1:{}/elsewhere/rootfs.tar.xz",
        lxc.server.nginx().port()
    );
    let escapes = [outside, "../elsewhere/rootfs.tar.xz".to_string()];
    lxc.server.put("../elsewhere/rootfs.tar.xz", &b.rootfs);
    for path in escapes {
        let mut products = lxc.server.products();
        products["products"]["debian:bookworm:amd64:default"]["versions"][V1]["items"]["root.tar.xz"]
            ["path"] = path.clone().into();
        lxc.server.write_products(&products);
        // The previous round's products file is still fresh in the cache.
        lxc.age_cached_documents();
        lxc.pull(
            false,
            &[
                "--verify=checksum",
                "--arch",
                "amd64",
                "images:debian/bookworm",
            ],
        )
        .failure()
        .stderr_mentions(&[&path, "root.tar.xz"]);
        lxc.env.assert_machines(&[]);
        assert!(
            lxc.server
                .nginx()
                .log_for("/elsewhere/rootfs.tar.xz")
                .is_empty(),
            "{path} was followed:\n{}",
            lxc.server.nginx().log_text()
        );
    }
}
