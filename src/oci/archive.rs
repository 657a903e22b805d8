//! `oci-archive:FILE[:TAG]`: a tar of an image layout, read entry by entry into a directory
//! the caller owns (typically under the cache's `tmp/`), which is then opened as an
//! [`OciLayout`](super::layout::OciLayout).
//!
//! No path from the archive is ever used to create anything. Only three kinds of names are
//! taken, each written under a name this module builds itself: `oci-layout`, `index.json`
//! and `blobs/sha256/<64 lower-case hex>`. Each must be a regular file; blobs are hashed
//! while they are copied and must match their own name, so a blob on disk is always the
//! content its digest says. Everything else (directories, Docker's `manifest.json`, legacy
//! layer symlinks of `docker save`) is skipped. A `..` anywhere, or a second `index.json` or
//! `oci-layout` (tar readers disagree on which copy wins), aborts. A compressed archive
//! (gzip, zstd, xz, bzip2) is decompressed on the way in, recognised by its magic bytes.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use tracing::debug;

use super::manifest::MAX_MANIFEST_SIZE;
use crate::digest::Digest;
use crate::digest::HashingWriter;
use crate::unpack::decompress;
use crate::unpack::show_bytes;

/// What an archive held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Entries that are not part of an image layout (directories included).
    pub skipped: u64,
}

enum Name {
    Marker,
    Index,
    Blob(Digest),
    Other,
}

/// What an archive member's path names (pure). `..` components are an error.
fn classify(raw: &[u8]) -> Result<Name, String> {
    let parts: Vec<&[u8]> = raw
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    if parts.iter().any(|c| *c == b"..") {
        return Err(format!("member `{}` contains `..`", show_bytes(raw)));
    }
    Ok(match parts.as_slice() {
        [b"oci-layout"] => Name::Marker,
        [b"index.json"] => Name::Index,
        [b"blobs", b"sha256", hex]
            if hex.len() == 64
                && hex
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) =>
        {
            let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
            Name::Blob(Digest::from_hex(hex).map_err(|e| e.to_string())?)
        }
        _ => Name::Other,
    })
}

/// Reads the archive from `reader` into `dest`, which must exist and be empty.
pub fn extract_oci_archive<R: Read + Send + 'static>(
    reader: R,
    dest: &Path,
) -> Result<ArchiveSummary> {
    let blobs_dir = dest.join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs_dir)
        .with_context(|| format!("creating `{}`", blobs_dir.display()))?;
    let (_, decoded) = decompress::decoder(reader).context("reading the archive")?;
    let mut archive = tar::Archive::new(decoded);
    let mut summary = ArchiveSummary::default();
    let (mut marker, mut index) = (false, false);
    let entries = archive.entries().context("reading the archive")?;
    for entry in entries {
        let mut entry = entry.context("reading the archive")?;
        let raw = entry.path_bytes().into_owned();
        let shown = show_bytes(&raw);
        let name = classify(&raw).map_err(anyhow::Error::msg)?;
        let regular = entry.header().entry_type().is_file();
        let (seen, target, max) = match name {
            Name::Other => {
                debug!(member = %shown, "skipping a member that is not part of the image layout");
                summary.skipped += 1;
                continue;
            }
            Name::Marker => (&mut marker, dest.join("oci-layout"), 64 << 10),
            Name::Index => (&mut index, dest.join("index.json"), MAX_MANIFEST_SIZE),
            Name::Blob(digest) => {
                if !regular {
                    bail!("member `{shown}` is not a regular file");
                }
                let target = blobs_dir.join(digest.hex());
                if target.exists() {
                    // The same digest twice: the copy already written was checked against it.
                    summary.skipped += 1;
                    continue;
                }
                let size = copy_blob(&mut entry, &target, &digest)
                    .with_context(|| format!("reading member `{shown}`"))?;
                summary.blobs += 1;
                summary.blob_bytes += size;
                continue;
            }
        };
        if !regular {
            bail!("member `{shown}` is not a regular file");
        }
        if std::mem::replace(seen, true) {
            bail!("the archive holds `{shown}` twice");
        }
        if entry.size() > max {
            bail!(
                "member `{shown}` is {} bytes, more than {max}",
                entry.size()
            );
        }
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .with_context(|| format!("reading member `{shown}`"))?;
        write_new(&target, &data)?;
    }
    if !marker || !index {
        bail!("the archive is not an OCI image layout: it has no `oci-layout` or `index.json`");
    }
    Ok(summary)
}

/// Copies one blob to `target` through a temporary name, checking its digest on the way.
fn copy_blob(entry: &mut impl Read, target: &Path, digest: &Digest) -> Result<u64> {
    let partial = target.with_extension("partial");
    let file = create_new(&partial)?;
    let mut writer = HashingWriter::new(io::BufWriter::with_capacity(256 << 10, file));
    let copied = io::copy(entry, &mut writer);
    let (buffered, actual, size) = writer.finish();
    let result = copied
        .map_err(anyhow::Error::from)
        .and_then(|_| buffered.into_inner().map_err(|e| e.into_error().into()))
        .and_then(|file| {
            if actual != *digest {
                bail!("its content has digest {actual}, not the {digest} its name says");
            }
            file.sync_all()?;
            fs_err::rename(&partial, target)
                .with_context(|| format!("renaming to `{}`", target.display()))
        });
    if result.is_err() {
        let _ = fs_err::remove_file(&partial);
    }
    result.map(|()| size)
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating `{}`", path.display()))
}

fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    create_new(path)?
        .write_all(data)
        .with_context(|| format!("writing `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let blob = |p: &str| matches!(classify(p.as_bytes()), Ok(Name::Blob(d)) if d.hex() == hex);
        assert!(blob(&format!("blobs/sha256/{hex}")));
        assert!(blob(&format!("./blobs/sha256/{hex}")));
        assert!(blob(&format!("/blobs//sha256/{hex}")));
        assert!(matches!(classify(b"./index.json"), Ok(Name::Index)));
        assert!(matches!(classify(b"oci-layout"), Ok(Name::Marker)));
        for other in [
            "manifest.json",
            "blobs/",
            "blobs/sha256/",
            "blobs/sha512/abc",
            "x/index.json",
            &format!("blobs/sha256/{}", hex.to_uppercase()),
            &format!("blobs/sha256/{hex}/x"),
            &format!("blobs/sha256/{hex}0"),
        ] {
            assert!(
                matches!(classify(other.as_bytes()), Ok(Name::Other)),
                "{other}"
            );
        }
        assert!(classify(b"blobs/../index.json").is_err());
        assert!(classify(b"../oci-layout").is_err());
    }
}
