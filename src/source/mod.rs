//! Where bytes come from. `SourceRef` parsing is pure; each source kind has its own module that
//! fetches into the cache, verified, and never touches the machines dir:
//!
//! - `tarball` (+ `site`, `fetch`, `sums`): a rootfs tarball by URL or path, with its checksum
//!   file and signature found next to it.
//! - `images` (+ `simplestreams`, `documents`, `images_verify`, `arch`): `images:ALIAS` from a
//!   simplestreams server or the legacy index.
//! - `oci_pull` (+ `oci_layer_fetch`, `oci_signatures`, `oci_keyless`): `docker://`, `oci-layout:`, `oci-archive:`, every blob
//!   into the cache, the policy and signatures checked; `registry` is the distribution API
//!   client (manifests, blobs with resume, auth, push) on `transport`'s client.
//! - `naming`: the machine name a source gets by default.
//!
//! All network I/O goes through `transport`; what comes out is used by `pull`.

pub mod arch;
pub mod documents;
pub mod fetch;
pub mod images;
mod images_verify;
pub mod naming;
pub mod oci_keyless;
mod oci_layer_fetch;
pub mod oci_pull;
pub mod oci_signatures;
pub mod registry;
pub mod simplestreams;
pub mod site;
pub mod sums;
pub mod tarball;

use std::path::PathBuf;

use anyhow::{Result, bail};
use url::Url;

use crate::transport::{redact, redact_url};

/// What the user asked to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// An `http://` or `https://` URL of a tarball.
    Url(Url),
    /// A local tarball, given as a path or a `file://` URL.
    File(PathBuf),
    /// `images:ALIAS[@VERSION]` on a simplestreams server.
    Images(String),
    /// `docker://…`, `oci-layout:…`, `oci-archive:…`.
    Oci(String),
}

impl SourceRef {
    pub fn parse(s: &str) -> Result<SourceRef> {
        if let Some(alias) = s.strip_prefix("images:") {
            if alias.is_empty() {
                bail!("`images:` needs an alias, e.g. images:debian/bookworm");
            }
            return Ok(SourceRef::Images(alias.to_string()));
        }
        if s.starts_with("docker://")
            || s.starts_with("oci-layout:")
            || s.starts_with("oci-archive:")
        {
            return Ok(SourceRef::Oci(s.to_string()));
        }
        if s.contains("://") {
            let url = Url::parse(s)
                .map_err(|e| anyhow::anyhow!("`{}` is not a valid URL: {e}", redact(s)))?;
            return match url.scheme() {
                "http" | "https" => Ok(SourceRef::Url(url)),
                "file" => {
                    let path = url
                        .to_file_path()
                        .map_err(|_| anyhow::anyhow!("`{s}` is not a local file URL"))?;
                    Ok(SourceRef::File(path))
                }
                other => bail!(
                    "unsupported URL scheme `{other}` in `{}` (use http, https or file)",
                    redact(s)
                ),
            };
        }
        if s.is_empty() {
            bail!("the source is empty");
        }
        Ok(SourceRef::File(PathBuf::from(s)))
    }

    /// The source as shown to people and recorded: URLs without credentials.
    pub fn display(&self) -> String {
        match self {
            SourceRef::Url(u) => redact_url(u),
            SourceRef::File(p) => p.display().to_string(),
            SourceRef::Images(a) => format!("images:{a}"),
            SourceRef::Oci(s) => s.clone(),
        }
    }

    /// The last path component of a tarball source.
    pub fn file_name(&self) -> Option<String> {
        match self {
            SourceRef::Url(u) => u
                .path_segments()
                .and_then(|mut s| s.next_back())
                .filter(|s| !s.is_empty())
                .map(percent_decode),
            SourceRef::File(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            _ => None,
        }
    }
}

/// Tar suffixes stripped to make a default machine name, longest first.
const TAR_SUFFIXES: &[&str] = &[
    ".tar.gz",
    ".tar.xz",
    ".tar.zst",
    ".tar.zstd",
    ".tar.bz2",
    ".tgz",
    ".txz",
    ".tzst",
    ".tbz2",
    ".tbz",
    ".tar",
];

/// `image.tar.xz` → `image`: the default machine name for a tarball file name.
pub fn strip_tar_suffix(file_name: &str) -> &str {
    for suffix in TAR_SUFFIXES {
        if let Some(stem) = file_name.strip_suffix(suffix)
            && !stem.is_empty()
        {
            return stem;
        }
    }
    file_name
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_kind() {
        assert!(matches!(
            SourceRef::parse("https://h/x.tar.xz").unwrap(),
            SourceRef::Url(_)
        ));
        assert_eq!(
            SourceRef::parse("file:///tmp/a.tar").unwrap(),
            SourceRef::File("/tmp/a.tar".into())
        );
        assert_eq!(
            SourceRef::parse("./a.tar").unwrap(),
            SourceRef::File("./a.tar".into())
        );
        assert_eq!(
            SourceRef::parse("images:debian/bookworm").unwrap(),
            SourceRef::Images("debian/bookworm".into())
        );
        assert!(matches!(
            SourceRef::parse("docker://debian:bookworm").unwrap(),
            SourceRef::Oci(_)
        ));
        assert!(
            SourceRef::parse("ftp://h/x.tar")
                .unwrap_err()
                .to_string()
                .contains("unsupported URL scheme")
        );
        assert!(SourceRef::parse("images:").is_err());
        assert!(SourceRef::parse("").is_err());
    }

    #[test]
    fn default_names_drop_tar_suffixes() {
        for (url, name) in [
            ("https://h/d/image.tar.xz", "image"),
            ("https://h/d/rootfs.tgz", "rootfs"),
            ("https://h/d/a.b.tar.zst", "a.b"),
            ("https://h/d/plain", "plain"),
            ("https://h/d/my%20image.tar", "my image"),
        ] {
            let s = SourceRef::parse(url).unwrap();
            assert_eq!(strip_tar_suffix(&s.file_name().unwrap()), name, "{url}");
        }
        assert_eq!(SourceRef::parse("https://h/").unwrap().file_name(), None);
        assert_eq!(strip_tar_suffix(".tar"), ".tar");
    }

    #[test]
    fn credentials_never_show() {
        let s = SourceRef::parse("https://user:secret@h/x.tar").unwrap();
        assert!(!s.display().contains("secret"));
        assert!(!s.display().contains("user"));
        let err = SourceRef::parse("ftp://user:secret@h/x").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
