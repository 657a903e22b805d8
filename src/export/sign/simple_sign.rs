//! Making containers simple signing ("atomic container signature") signatures, as `skopeo
//! copy --sign-by` does: a JSON payload naming the image and manifest digest, signed as a
//! binary OpenPGP signed message (one-pass signature, literal data, signature), stored in a
//! lookaside directory as `DIR/REPO@sha256=HEX/signature-N` (see [`crate::verify::lookaside`]).
//!
//! Readers (containers/image, [`crate::source::oci_signatures`]) read `signature-1`,
//! `signature-2`, … up to the first missing number, so a new signature takes the first free
//! number and must never leave a gap or a half-written file: it is written to a temporary
//! file and hard-linked to its name, which fails instead of replacing when another writer took
//! the number first (then the next one is tried).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::digest::Digest;
use crate::export::sign::cosign_sign::render_payload;
use crate::oci::reference::ImageReference;
use crate::verify::cosign::SIMPLE_SIGNING_TYPE;
use crate::verify::lookaside::signature_path;
use crate::verify::openpgp::{SigningKey, sign_message};

/// Signature numbers tried at most: readers stop at 128 too.
pub const MAX_SIGNATURES: u32 = 128;

/// What `optional.creator` says.
pub fn creator() -> String {
    format!("sandboxes {}", env!("CARGO_PKG_VERSION"))
}

/// The identity containers writes: the full reference the image was pushed as,
/// `host/repo:tag` (or `host/repo@sha256:…` for a push by digest). A reader that pulls by tag
/// requires this exact tag.
pub fn simple_signing_identity(reference: &ImageReference) -> String {
    let base = format!("{}/{}", reference.registry, reference.repository);
    match (&reference.tag, &reference.digest) {
        (Some(tag), _) => format!("{base}:{tag}"),
        (None, Some(digest)) => format!("{base}@{digest}"),
        (None, None) => base,
    }
}

#[derive(Serialize)]
struct Optional<'a> {
    creator: &'a str,
    timestamp: i64,
}

/// The payload for manifest `digest` pushed as `docker_reference`, made by `creator` at
/// `timestamp` (seconds since the epoch): `{"critical":{"identity":…,"image":…,"type":"atomic
/// container signature"},"optional":{"creator":…,"timestamp":…}}`.
pub fn simple_signing_payload(
    docker_reference: &str,
    digest: &Digest,
    creator: &str,
    timestamp: i64,
) -> Vec<u8> {
    render_payload(
        SIMPLE_SIGNING_TYPE,
        docker_reference,
        digest,
        Optional { creator, timestamp },
    )
}

/// The signed message (binary OpenPGP) vouching that `docker_reference` is manifest `digest`,
/// made now by `key`.
pub fn sign_simple(key: &SigningKey, docker_reference: &str, digest: &Digest) -> Result<Vec<u8>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let payload = simple_signing_payload(docker_reference, digest, &creator(), now);
    sign_message(key, &payload)
}

/// Stores `signature` (a signed message) as the first free `signature-N` of manifest `digest`
/// of `reference`'s repository under the lookaside directory `dir`; returns its path.
pub fn write_lookaside_signature(
    dir: &Path,
    reference: &ImageReference,
    digest: &Digest,
    signature: &[u8],
) -> Result<PathBuf> {
    let first = signature_path(dir, reference, digest, 1);
    let parent = first
        .parent()
        .context("internal: a signature path has a parent")?;
    fs_err::create_dir_all(parent)?;
    let tmp = parent.join(format!(
        ".signature-tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = write_then_link(&tmp, signature, dir, reference, digest);
    // The temporary name goes whether or not a link was made.
    let _ = fs_err::remove_file(&tmp);
    result
}

fn write_then_link(
    tmp: &Path,
    signature: &[u8],
    dir: &Path,
    reference: &ImageReference,
    digest: &Digest,
) -> Result<PathBuf> {
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(signature)?;
    file.sync_all()?;
    drop(file);
    for n in 1..=MAX_SIGNATURES {
        let path = signature_path(dir, reference, digest, n);
        match fs_err::hard_link(tmp, &path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!(
        "{} already holds {MAX_SIGNATURES} signatures, as many as readers look at",
        signature_path(dir, reference, digest, 1)
            .parent()
            .unwrap_or(dir)
            .display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::cosign::{check_exact_tag, check_payload};
    use crate::verify::openpgp::{TrustStore, load_signing_key, verify_inline};
    use sequoia_openpgp as openpgp;

    fn signer(dir: &Path) -> (SigningKey, openpgp::Cert) {
        use openpgp::serialize::Serialize as _;
        let (cert, _) = openpgp::cert::CertBuilder::general_purpose(Some("ci@example.org"))
            .generate()
            .unwrap();
        let path = dir.join("key.pgp");
        let mut bytes = Vec::new();
        cert.as_tsk().serialize(&mut bytes).unwrap();
        fs_err::write(&path, bytes).unwrap();
        (load_signing_key(&path).unwrap(), cert)
    }

    #[test]
    fn payload_layout_and_identity() {
        let d = Digest::of(b"m");
        let r = ImageReference::parse("reg.io:5000/team/app:1").unwrap();
        assert_eq!(simple_signing_identity(&r), "reg.io:5000/team/app:1");
        let by_digest = ImageReference::parse(&format!("reg.io:5000/team/app@{d}")).unwrap();
        assert_eq!(
            simple_signing_identity(&by_digest),
            format!("reg.io:5000/team/app@{d}")
        );
        let p = simple_signing_payload("reg.io:5000/team/app:1", &d, "sandboxes 9", 1700000000);
        assert_eq!(
            String::from_utf8(p).unwrap(),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"reg.io:5000/team/app:1\"}},\
                 \"image\":{{\"docker-manifest-digest\":\"{d}\"}},\
                 \"type\":\"atomic container signature\"}},\
                 \"optional\":{{\"creator\":\"sandboxes 9\",\"timestamp\":1700000000}}}}"
            )
        );
    }

    /// The payload of containers/image's `signature/fixtures/image.signature` (made by
    /// skopeo's signing code, printed by `gpg --decrypt`): ours for the same values is the
    /// same bytes.
    #[test]
    fn the_payload_matches_one_containers_signed() {
        let real = r#"{"critical":{"identity":{"docker-reference":"testing/manifest"},"image":{"docker-manifest-digest":"sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"},"type":"atomic container signature"},"optional":{"creator":"atomic ","timestamp":1458239713}}"#;
        let d: Digest = "sha256:20bf21ed457b390829cdbeec8795a7bea1626991fda603e0d01b4e7f60427e55"
            .parse()
            .unwrap();
        let ours = simple_signing_payload("testing/manifest", &d, "atomic ", 1458239713);
        assert_eq!(String::from_utf8(ours).unwrap(), real);
    }

    #[test]
    fn signatures_land_in_the_lookaside_and_verify_with_the_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let (key, cert) = signer(tmp.path());
        let store_dir = tmp.path().join("lookaside");
        let d = Digest::of(b"manifest");
        let r = ImageReference::parse("reg.io/team/app:1").unwrap();
        let msg = sign_simple(&key, &simple_signing_identity(&r), &d).unwrap();
        let one = write_lookaside_signature(&store_dir, &r, &d, &msg).unwrap();
        assert_eq!(one, signature_path(&store_dir, &r, &d, 1));
        let two = write_lookaside_signature(&store_dir, &r, &d, b"second").unwrap();
        assert_eq!(two, signature_path(&store_dir, &r, &d, 2));
        assert_eq!(fs_err::read(&two).unwrap(), b"second");
        // No temporary file is left behind.
        let names: Vec<_> = fs_err::read_dir(one.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let mut trust = TrustStore::new();
        trust.add_cert(cert.strip_secret_key_material(), "test", false);
        let (payload, check) = verify_inline(&trust, &fs_err::read(&one).unwrap()).unwrap();
        assert_eq!(check.primary_fingerprint, key.fingerprint);
        let identity = check_payload(&payload, SIMPLE_SIGNING_TYPE, &d, &r).unwrap();
        check_exact_tag(&identity, &r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["optional"]["creator"], creator());
        assert!(v["optional"]["timestamp"].as_i64().unwrap() > 1_600_000_000);
        // Another tag of the same repository is not vouched for.
        let other_tag = ImageReference::parse("reg.io/team/app:2").unwrap();
        assert!(check_exact_tag(&identity, &other_tag).is_err());
    }
}
