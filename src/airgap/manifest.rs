//! The export file's format: the manifest, the names of its entries, and which refs an export
//! takes. Pure logic; the I/O is in `export` and `import`.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::cache::{Ref, RefKind};
use crate::digest::Digest;

/// Bumped when the manifest or the entry names change incompatibly.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_NAME: &str = "manifest.json";
pub const BLOB_PREFIX: &str = "blobs/sha256/";
/// A manifest holds refs only (blobs are separate entries); more than this is not an export.
pub const MANIFEST_LIMIT: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub refs: Vec<ManifestRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestRef {
    /// `tarball`, `images`, `index` or `oci` (the ref directory).
    pub kind: String,
    /// The ref's file name in that directory (already escaped, ends in `.json`).
    pub file: String,
    #[serde(rename = "ref")]
    pub reference: Ref,
}

/// The kind named by a ref directory name.
pub fn kind_from_name(name: &str) -> Option<RefKind> {
    RefKind::ALL.into_iter().find(|k| k.dir_name() == name)
}

/// Checks that a ref file name from a manifest is one the cache itself could have written:
/// escaped key characters only, so it cannot name another directory.
pub fn check_ref_file_name(name: &str) -> Result<()> {
    let stem = name.strip_suffix(".json").unwrap_or("");
    let ok = !stem.is_empty()
        && !stem.starts_with('.')
        && name.len() <= 255
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'%'));
    if !ok {
        bail!("`{name}` is not a cache ref file name");
    }
    Ok(())
}

/// What an entry of an export file is, judged by its name alone.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryName {
    Manifest,
    Blob(Digest),
    /// `blobs/` or `blobs/sha256/`: directories a hand-made tar may carry; skipped.
    Directory,
}

/// Classifies an entry path. Only exact names are accepted: no `./`, no `..`, no absolute
/// paths, no other files. The bytes are compared, never resolved against a directory.
pub fn classify(path: &[u8]) -> Result<EntryName> {
    let shown = String::from_utf8_lossy(path);
    let Ok(p) = std::str::from_utf8(path) else {
        bail!("unexpected entry `{shown}` (not UTF-8)");
    };
    if p == MANIFEST_NAME {
        return Ok(EntryName::Manifest);
    }
    if p == "blobs" || p == "blobs/" || p == "blobs/sha256" || p == BLOB_PREFIX {
        return Ok(EntryName::Directory);
    }
    if let Some(hex) = p.strip_prefix(BLOB_PREFIX)
        && hex.len() == 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && let Ok(d) = Digest::from_hex(hex)
    {
        return Ok(EntryName::Blob(d));
    }
    bail!(
        "unexpected entry `{shown}`: an export holds only {MANIFEST_NAME} and {BLOB_PREFIX}<64 hex>"
    )
}

/// The entry name of a blob.
pub fn blob_entry(d: &Digest) -> String {
    format!("{BLOB_PREFIX}{}", d.hex())
}

/// Picks the refs to export: all when `names` is empty, else those whose source (as
/// `cache ls` shows it) or file stem is named. A name that matches nothing is an error.
pub fn select<'a, T>(
    refs: &'a [(T, String, Ref)],
    names: &[String],
) -> Result<Vec<&'a (T, String, Ref)>> {
    if names.is_empty() {
        return Ok(refs.iter().collect());
    }
    let matches = |r: &(T, String, Ref), name: &str| {
        r.2.source == name || r.1.strip_suffix(".json") == Some(name)
    };
    if let Some(name) = names.iter().find(|n| !refs.iter().any(|r| matches(r, n))) {
        bail!("no cache ref for `{name}`; `sandbox cache ls` lists them");
    }
    Ok(refs
        .iter()
        .filter(|r| names.iter().any(|n| matches(r, n)))
        .collect())
}

/// Every blob the refs use, sorted and once each.
pub fn blobs_of<'a>(refs: impl IntoIterator<Item = &'a Ref>) -> BTreeSet<Digest> {
    refs.into_iter()
        .flat_map(|r| r.blobs.iter().map(|b| b.digest))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_accepts_only_exact_names() {
        let hex = "ab".repeat(32);
        assert_eq!(classify(b"manifest.json").unwrap(), EntryName::Manifest);
        assert_eq!(
            classify(format!("blobs/sha256/{hex}").as_bytes()).unwrap(),
            EntryName::Blob(Digest::from_hex(&hex).unwrap())
        );
        assert_eq!(classify(b"blobs/sha256/").unwrap(), EntryName::Directory);
        for bad in [
            "../x".to_string(),
            "/etc/passwd".into(),
            "./manifest.json".into(),
            format!("blobs/sha256/../{hex}"),
            format!("blobs/sha256/{}", "AB".repeat(32)),
            format!("blobs/sha256/{hex}/x"),
            format!("/blobs/sha256/{hex}"),
            "blobs/sha256/abc".into(),
        ] {
            assert!(classify(bad.as_bytes()).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn ref_file_names_cannot_leave_the_ref_dir() {
        check_ref_file_name("https%3A%2F%2Fexample.org%2Fa.tar.xz.json").unwrap();
        for bad in [
            "../x.json",
            "a/b.json",
            ".json",
            "%2e.json.x",
            "x",
            ".hidden.json",
        ] {
            assert!(check_ref_file_name(bad).is_err(), "{bad} was accepted");
        }
    }
}
