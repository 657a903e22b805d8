//! Where things live inside the cache. Pure path computation: nothing here touches the disk.
//!
//! ```text
//! <sandboxes_dir>/cache/
//!   CACHEDIR.TAG
//!   v1/                          the layout version; `cache gc` removes any other version
//!     .lock                      shared by every process using the cache, exclusive for gc
//!     blobs/sha256/<hex>         verified bytes only
//!     refs/<kind>/<key>.json     what a source resolved to, with provenance
//!     tmp/                       in-flight downloads (same filesystem: publishing is a rename)
//!     locks/<name>.lock          per-download and per-machine locks
//! ```
//! `cache-layout.md` at the top of the repository explains the same for people; keep both true.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

pub const LAYOUT_VERSION: &str = "v1";

/// The kinds of ref, one directory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RefKind {
    /// A tarball URL or local file (`sandbox pull URL`).
    Tarball,
    /// An LXC image alias on a simplestreams server (`images:ALIAS`).
    Images,
    /// A cached index or products file of an image server, with its fetch time.
    Index,
    /// An OCI image (`docker://`, `oci-layout:`, `oci-archive:`) for one platform: its
    /// manifest, config and layer digests, and the config.
    Oci,
}

impl RefKind {
    pub const ALL: [RefKind; 4] = [
        RefKind::Tarball,
        RefKind::Images,
        RefKind::Index,
        RefKind::Oci,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            RefKind::Tarball => "tarball",
            RefKind::Images => "images",
            RefKind::Index => "index",
            RefKind::Oci => "oci",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheLayout {
    root: PathBuf,
}

impl CacheLayout {
    /// `cache_dir` is `<sandboxes_dir>/cache`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        CacheLayout {
            root: cache_dir.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cachedir_tag(&self) -> PathBuf {
        self.root.join("CACHEDIR.TAG")
    }

    pub fn version_dir(&self) -> PathBuf {
        self.root.join(LAYOUT_VERSION)
    }

    pub fn global_lock(&self) -> PathBuf {
        self.version_dir().join(".lock")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.version_dir().join("blobs").join("sha256")
    }

    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn refs_dir(&self, kind: RefKind) -> PathBuf {
        self.version_dir().join("refs").join(kind.dir_name())
    }

    pub fn ref_file(&self, kind: RefKind, key: &str) -> PathBuf {
        self.refs_dir(kind)
            .join(format!("{}.json", escape_key(key)))
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.version_dir().join("tmp")
    }

    pub fn locks_dir(&self) -> PathBuf {
        self.version_dir().join("locks")
    }

    pub fn lock_file(&self, name: &str) -> PathBuf {
        self.locks_dir().join(format!("{}.lock", escape_key(name)))
    }

    /// The resumable partial download of `url`, and its sidecar with the validators.
    pub fn partial_download(&self, url: &str) -> (PathBuf, PathBuf) {
        let id = short_hash(url);
        let dir = self.tmp_dir();
        (
            dir.join(format!("download-{id}.part")),
            dir.join(format!("download-{id}.json")),
        )
    }

    /// The resumable partial download of the blob `digest` (a registry layer). Keyed by the
    /// digest alone: a blob's content is fixed by it, so no validator record is needed.
    pub fn partial_blob(&self, digest: &Digest) -> PathBuf {
        self.tmp_dir()
            .join(format!("partial-{}.part", digest.hex()))
    }
}

/// The contents of `CACHEDIR.TAG` (https://bford.info/cachedir/).
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by sandboxes.\n\
# Its blobs are verified downloads that `sandbox pull` can fetch again.\n";

/// A file name for `key` that a person can still read: bytes outside `[A-Za-z0-9._-]` become
/// `%XX`; a key too long for one file name is cut and completed by a hash of the whole key.
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    const MAX: usize = 180; // leaves room for `.json`/`.lock` within NAME_MAX (255)
    if out.len() > MAX {
        let mut cut = MAX - 17;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('~');
        out.push_str(&short_hash(key));
    }
    out
}

/// 16 hex digits of the sha256 of `s`: enough to tell keys apart in one cache.
pub fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let l = CacheLayout::new("/s/cache");
        let d = Digest::of(b"x");
        assert_eq!(
            l.blob(&d),
            PathBuf::from(format!("/s/cache/v1/blobs/sha256/{}", d.hex()))
        );
        assert_eq!(
            l.ref_file(RefKind::Tarball, "a"),
            PathBuf::from("/s/cache/v1/refs/tarball/a.json")
        );
        assert_eq!(l.cachedir_tag(), PathBuf::from("/s/cache/CACHEDIR.TAG"));
        assert_eq!(l.global_lock(), PathBuf::from("/s/cache/v1/.lock"));
        let (part, meta) = l.partial_download("http://x/y");
        assert_eq!(part.parent(), meta.parent());
        assert!(part.starts_with("/s/cache/v1/tmp"));
        assert_eq!(
            l.partial_blob(&d),
            PathBuf::from(format!("/s/cache/v1/tmp/partial-{}.part", d.hex()))
        );
    }

    #[test]
    fn escaping_is_readable_injective_and_bounded() {
        assert_eq!(
            escape_key("https://h:1/a/b.tar.xz"),
            "https%3A%2F%2Fh%3A1%2Fa%2Fb.tar.xz"
        );
        // No key can become `.`/`..` or a hidden file.
        assert_eq!(escape_key(".."), "%2E.");
        assert_eq!(escape_key(""), "");
        assert_ne!(escape_key("a/b"), escape_key("a%2Fb"));
        let long = "x".repeat(1000);
        let e = escape_key(&long);
        assert!(e.len() <= 180);
        assert_ne!(e, escape_key(&"x".repeat(999)));
        // Multi-byte characters are escaped byte-wise, so cutting never splits one.
        assert!(escape_key(&"é".repeat(300)).is_ascii());
    }
}
