//! The trust store: certificates, where each came from, and whether it is pinned.
//!
//! Pinned: `--keyring` files, the keys directory, the built-in LXC key (chosen explicitly by the
//! user or the binary). Not pinned: systemd-importd's keyrings (trusted, but nobody here chose
//! them, so they get no policy exception).

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::cert::CertParser;
use openpgp::packet::Signature;
use openpgp::parse::Parse;

use super::policy::self_signatures_of;

/// A certificate in the trust store.
#[derive(Debug, Clone)]
pub struct TrustedCert {
    /// The public certificate (secret key material is always stripped).
    pub cert: Cert,
    /// Where it came from: a file path, or "built-in LXC image key".
    pub origin: String,
    /// Explicitly chosen by the user or the binary; see the module docs of `openpgp`.
    pub pinned: bool,
}

/// The certificates a signature may be made by, one entry per primary fingerprint.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    certs: Vec<TrustedCert>,
    /// Self-signatures as they appeared in pinned sources, for `PinnedPolicy`. Kept apart from
    /// the (merged) certificates so that material from an unpinned copy of a pinned key never
    /// gains the pinned exception.
    pinned_self_signatures: Vec<Signature>,
}

impl TrustStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a keyring file, armored or binary, one or many certificates.
    ///
    /// # Errors
    /// When the file cannot be read, does not parse, or holds no certificate; the error names
    /// the file. Nothing is added from a file that fails.
    pub fn add_file(&mut self, path: &Path, pinned: bool) -> Result<usize> {
        let bytes =
            fs_err::read(path).with_context(|| format!("reading keyring {}", path.display()))?;
        self.add_bytes(&bytes, &path.display().to_string(), pinned)
    }

    /// Adds every certificate in `bytes` (armored or binary keyring), recorded as from `origin`.
    ///
    /// # Errors
    /// When the bytes do not parse as certificates or hold none; nothing is added then.
    pub fn add_bytes(&mut self, bytes: &[u8], origin: &str, pinned: bool) -> Result<usize> {
        let certs = parse_keyring(bytes).with_context(|| format!("reading keyring {origin}"))?;
        let count = certs.len();
        for cert in certs {
            self.add_cert(cert, origin, pinned);
        }
        Ok(count)
    }

    /// Adds one certificate. A certificate already present (same primary fingerprint) is merged
    /// with it, so that e.g. a newer revocation from importd's keyring is not lost; the entry is
    /// pinned if any source pinned it, and then its origin is the first pinned source.
    pub fn add_cert(&mut self, cert: Cert, origin: &str, pinned: bool) {
        let cert = cert.strip_secret_key_material();
        if pinned {
            self.pinned_self_signatures
                .extend(self_signatures_of(&cert));
        }
        let fpr = cert.fingerprint();
        if let Some(entry) = self.certs.iter_mut().find(|e| e.cert.fingerprint() == fpr) {
            // merge_public fails only for different fingerprints, excluded above.
            if let Ok(merged) = entry.cert.clone().merge_public(cert) {
                entry.cert = merged;
            }
            if pinned && !entry.pinned {
                entry.pinned = true;
                entry.origin = origin.to_string();
            }
        } else {
            self.certs.push(TrustedCert {
                cert,
                origin: origin.to_string(),
                pinned,
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    pub fn certs(&self) -> &[TrustedCert] {
        &self.certs
    }

    /// The entry whose primary key has this fingerprint.
    pub fn get(&self, fpr: &openpgp::Fingerprint) -> Option<&TrustedCert> {
        self.certs.iter().find(|e| &e.cert.fingerprint() == fpr)
    }

    pub(crate) fn pinned_self_signatures(&self) -> &[Signature] {
        &self.pinned_self_signatures
    }
}

/// Parses a keyring, armored or binary. Secret key material is kept here; callers decide.
///
/// # Errors
/// On any packet that does not parse, or when no certificate is found at all (an empty file,
/// a signature, text that is not OpenPGP).
pub(crate) fn parse_keyring(bytes: &[u8]) -> Result<Vec<Cert>> {
    let parser = CertParser::from_bytes(bytes).context("not an OpenPGP keyring")?;
    let mut certs = Vec::new();
    for (n, cert) in parser.enumerate() {
        let cert = cert.with_context(|| format!("certificate #{} does not parse", n + 1))?;
        certs.push(cert);
    }
    if certs.is_empty() {
        bail!("contains no OpenPGP certificate");
    }
    Ok(certs)
}

/// The keyring files of a keys directory (`*.asc`, `*.gpg`, `*.pgp`; no hidden files), sorted.
/// A missing directory has none.
///
/// # Errors
/// When the directory exists but cannot be listed.
pub fn keyring_files_in_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("listing keys directory {}", dir.display()));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing keys directory {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !is_keyring_name(name) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks on purpose: a link to a keyring elsewhere is a keyring the user
        // placed here. Directories and other odd things are skipped.
        if fs_err::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

pub(crate) fn is_keyring_name(name: &str) -> bool {
    [".asc", ".gpg", ".pgp"]
        .iter()
        .any(|ext| name.len() > ext.len() && name.ends_with(ext))
}

/// The default trust store: `--keyring` files (pinned), the keys directory (pinned) and
/// systemd-importd's keyrings (not pinned).
///
/// # Errors
/// A missing `--keyring` file is an error (the user named it); a missing importd keyring is
/// skipped silently (most hosts have only some of them). A file that exists but cannot be read
/// or does not parse is an error naming it, wherever it is.
pub fn load_trust_store(
    keyrings: &[PathBuf],
    keys_dir: &Path,
    importd_keyrings: &[PathBuf],
) -> Result<TrustStore> {
    let mut store = TrustStore::new();
    for path in keyrings {
        store.add_file(path, true)?;
    }
    for path in keyring_files_in_dir(keys_dir)? {
        store.add_file(&path, true)?;
    }
    for path in importd_keyrings {
        match fs_err::read(path) {
            Ok(bytes) => {
                store.add_bytes(&bytes, &path.display().to_string(), false)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading keyring {}", path.display()));
            }
        }
    }
    Ok(store)
}
