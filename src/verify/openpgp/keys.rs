//! The keys directory behind `sandbox keys add FILE`, `keys ls` and `keys rm FPR`.
//!
//! `add` writes each certificate as `<keys_dir>/<FPR>.pgp` (binary, public parts only),
//! atomically: a temporary file in the same directory, fsync, rename, fsync of the directory.
//! Secret key material is refused, not stripped: someone handing us a secret key probably
//! exported the wrong thing, and should hear so before the file spreads further.
//! `rm` only ever deletes a file it found by listing `keys_dir` itself.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use sequoia_openpgp as openpgp;

use openpgp::crypto::mpi::PublicKey;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::SerializeInto;
use openpgp::types::RevocationStatus;
use openpgp::{Cert, Fingerprint};
use serde::Serialize;

use super::policy::{
    PinnedPolicy, SHA1_SELF_SIGNATURE_NOT_PINNED, self_signatures_of, sha1_accepting_policy,
};
use super::store::{keyring_files_in_dir, parse_keyring};
use super::{TrustStore, fpr_hex, user_id_strings};

/// One line of `sandbox keys ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    pub fingerprint: String,
    pub user_ids: Vec<String>,
    pub origin: String,
    pub pinned: bool,
    /// e.g. "RSA4096", "EdDSA Ed25519".
    pub algorithm: String,
    #[serde(serialize_with = "serialize_time")]
    pub created: SystemTime,
    /// When the certificate expires, if it does (under the store's policy).
    #[serde(serialize_with = "serialize_optional_time")]
    pub expiry: Option<SystemTime>,
    pub status: KeyStatus,
    /// Usable only thanks to the pinned-key SHA-1 exception.
    pub sha1_self_signature: bool,
}

/// Whether a key in the store can verify anything today.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum KeyStatus {
    Valid,
    Expired,
    Revoked,
    /// No self-signature acceptable under the policy (e.g. SHA-1 on an unpinned key).
    Invalid(String),
}

impl std::fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyStatus::Valid => f.write_str("valid"),
            KeyStatus::Expired => f.write_str("expired"),
            KeyStatus::Revoked => f.write_str("revoked"),
            KeyStatus::Invalid(reason) => write!(f, "invalid: {reason}"),
        }
    }
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_seconds(*t))
}

fn serialize_optional_time<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

/// The rows of `sandbox keys ls`, in the store's order (keyrings, keys directory, importd).
pub fn list(store: &TrustStore) -> Vec<KeyRow> {
    let policy = PinnedPolicy::for_store(store);
    let standard = StandardPolicy::new();
    store
        .certs()
        .iter()
        .map(|entry| {
            let cert = &entry.cert;
            let primary = cert.primary_key().key();
            let mut row = KeyRow {
                fingerprint: fpr_hex(&cert.fingerprint()),
                user_ids: user_id_strings(cert),
                origin: entry.origin.clone(),
                pinned: entry.pinned,
                algorithm: algorithm_name(primary.mpis(), primary.pk_algo()),
                created: primary.creation_time(),
                expiry: None,
                status: KeyStatus::Valid,
                sha1_self_signature: false,
            };
            match cert.with_policy(&policy, None) {
                Err(e) => {
                    let sha1_only = cert.with_policy(&sha1_accepting_policy(), None).is_ok();
                    row.status = KeyStatus::Invalid(if sha1_only {
                        SHA1_SELF_SIGNATURE_NOT_PINNED.to_string()
                    } else {
                        format!("{e:#}")
                    });
                }
                Ok(valid) => {
                    row.user_ids = valid
                        .userids()
                        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                        .collect();
                    row.expiry = valid.primary_key().key_expiration_time();
                    row.sha1_self_signature = cert.with_policy(&standard, None).is_err();
                    row.status = if let RevocationStatus::Revoked(_) = valid.revocation_status() {
                        KeyStatus::Revoked
                    } else if valid.alive().is_err() {
                        KeyStatus::Expired
                    } else {
                        KeyStatus::Valid
                    };
                }
            }
            row
        })
        .collect()
}

/// A short algorithm name in the spirit of `gpg --list-keys`.
fn algorithm_name(mpis: &PublicKey, algo: openpgp::types::PublicKeyAlgorithm) -> String {
    match mpis {
        PublicKey::RSA { .. } | PublicKey::DSA { .. } | PublicKey::ElGamal { .. } => {
            match mpis.bits() {
                Some(bits) => format!("{algo}{bits}"),
                None => algo.to_string(),
            }
        }
        PublicKey::EdDSA { curve, .. }
        | PublicKey::ECDSA { curve, .. }
        | PublicKey::ECDH { curve, .. } => format!("{algo} {curve}"),
        _ => algo.to_string(),
    }
}

/// The certificates of a file given to `sandbox keys add`, checked: public only, and each one
/// usable as a pinned key. Pure: `origin` only names the input in errors.
///
/// # Errors
/// When the bytes are not a keyring, contain secret key material, or hold a certificate that
/// has no acceptable self-signature even with the pinned SHA-1 exception.
pub fn certs_to_add(bytes: &[u8], origin: &str) -> Result<Vec<Cert>> {
    let certs = parse_keyring(bytes).with_context(|| format!("reading {origin}"))?;
    for cert in &certs {
        let fpr = fpr_hex(&cert.fingerprint());
        if cert.is_tsk() {
            bail!(
                "{origin} contains secret key material (key {fpr}); refusing to store it. \
                 Export only the public key, e.g. `gpg --export {fpr} > key.pgp`"
            );
        }
        let own_sigs = self_signatures_of(cert);
        let policy = PinnedPolicy::with_pinned_self_signatures(&own_sigs);
        if let Err(e) = cert.with_policy(&policy, None) {
            bail!("{origin}: key {fpr} cannot verify anything: {e:#}");
        }
    }
    Ok(certs)
}

/// `sandbox keys add FILE`: stores every certificate of `file` as `<keys_dir>/<FPR>.pgp`,
/// merging with a copy already there (so a refreshed key keeps, e.g., its revocations).
/// Returns the primary fingerprints added, in file order.
///
/// # Errors
/// See [`certs_to_add`]; also when `keys_dir` cannot be created or written, or an existing
/// `<FPR>.pgp` does not parse. Certificates written before a failure stay (each is complete).
pub fn add_to_dir(keys_dir: &Path, file: &Path) -> Result<Vec<String>> {
    let bytes = fs_err::read(file)?;
    let certs = certs_to_add(&bytes, &file.display().to_string())?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(keys_dir)
        .with_context(|| format!("creating keys directory {}", keys_dir.display()))?;
    let mut added = Vec::new();
    for cert in certs {
        let fpr = fpr_hex(&cert.fingerprint());
        let name = format!("{fpr}.pgp");
        let target = keys_dir.join(&name);
        let cert = match fs_err::read(&target) {
            Ok(existing) => merge_with_existing(cert, &existing, &target)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cert,
            Err(e) => return Err(e.into()),
        };
        let serialized = cert
            .to_vec()
            .with_context(|| format!("serializing key {fpr}"))?;
        crate::atomic::write_file(&keys_dir.join(&name), &serialized)?;
        added.push(fpr);
    }
    Ok(added)
}

fn merge_with_existing(cert: Cert, existing: &[u8], path: &Path) -> Result<Cert> {
    let fpr = cert.fingerprint();
    let old = parse_keyring(existing)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .find(|c| c.fingerprint() == fpr)
        .with_context(|| format!("{} does not hold key {}", path.display(), fpr_hex(&fpr)))?;
    old.merge_public(cert)
        .with_context(|| format!("merging key {} with {}", fpr_hex(&fpr), path.display()))
}

/// A full fingerprint as typed by a person: any case, spaces allowed, optional `0x`.
///
/// # Errors
/// When it is not 40 (v4) or 64 (v6) hex digits, e.g. a short key ID.
pub fn parse_fingerprint(arg: &str) -> Result<Fingerprint> {
    let compact: String = arg.chars().filter(|c| !c.is_whitespace()).collect();
    let hex = compact
        .strip_prefix("0x")
        .or_else(|| compact.strip_prefix("0X"))
        .unwrap_or(&compact)
        .to_ascii_uppercase();
    if !(hex.len() == 40 || hex.len() == 64) || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "{arg:?} is not a full fingerprint (40 or 64 hex digits); \
             `sandbox keys ls` shows the fingerprints"
        );
    }
    Fingerprint::from_hex(&hex).with_context(|| format!("{arg:?} is not a fingerprint"))
}

/// `sandbox keys rm FPR`: deletes the one file of `keys_dir` that holds that key and nothing
/// else. Returns the path deleted.
///
/// # Errors
/// When the fingerprint is malformed, no file holds it, several do, the one holding it also
/// holds other keys (it is not rewritten), or a keyring file there does not parse.
pub fn remove_from_dir(keys_dir: &Path, fpr: &str) -> Result<PathBuf> {
    let fpr = parse_fingerprint(fpr)?;
    let mut holders = Vec::new();
    for path in keyring_files_in_dir(keys_dir)? {
        let bytes = fs_err::read(&path)?;
        let certs = parse_keyring(&bytes).with_context(|| format!("reading {}", path.display()))?;
        if certs.iter().any(|c| c.fingerprint() == fpr) {
            holders.push((path, certs.len()));
        }
    }
    let path = choose_file_to_remove(&fpr, keys_dir, &holders)?.to_path_buf();
    // Defence in depth: the path came from listing keys_dir, so its parent is keys_dir.
    if path.parent() != Some(keys_dir) {
        bail!(
            "refusing to remove {}: not directly inside {}",
            path.display(),
            keys_dir.display()
        );
    }
    fs_err::remove_file(&path)?;
    fs_err::File::open(keys_dir)?.sync_all()?;
    Ok(path)
}

/// Which file `keys rm` may delete, given the files holding the key and how many keys each
/// holds. Pure.
fn choose_file_to_remove<'a>(
    fpr: &Fingerprint,
    keys_dir: &Path,
    holders: &'a [(PathBuf, usize)],
) -> Result<&'a Path> {
    let fpr = fpr_hex(fpr);
    match holders {
        [] => bail!(
            "no key {fpr} in {}; `sandbox keys ls` lists the keys (keys from --keyring or \
             systemd-importd's keyrings are not managed by `sandbox keys rm`)",
            keys_dir.display()
        ),
        [(path, 1)] => Ok(path),
        [(path, count)] => bail!(
            "{} holds {count} keys, {fpr} among them; it is not rewritten: remove the key \
             from it by hand, or delete the file",
            path.display()
        ),
        several => bail!(
            "key {fpr} is in several files, {}; remove the one you mean by hand",
            several
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
