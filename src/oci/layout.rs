//! Reading an OCI image layout directory (`oci-layout:DIR[:TAG]`): the `oci-layout` marker,
//! `index.json`, and blobs at `blobs/sha256/<hex>`. Tags are the
//! `org.opencontainers.image.ref.name` annotations of `index.json`'s entries.
//!
//! Nothing read here is trusted: `index.json` is size-capped and validated like any index,
//! blob names are computed from digests (never taken from the directory), blobs must be
//! regular files (a FIFO would block, a device would never end), and their bytes are checked
//! against the descriptors by [`super::blob`].

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::blob::BlobSource;
use super::manifest::{Descriptor, ImageIndex, MAX_MANIFEST_SIZE, Manifest, parse_manifest};
use crate::digest::Digest;

/// The `oci-layout` marker is a few dozen bytes.
const MAX_MARKER_SIZE: u64 = 64 << 10;

/// An image layout directory.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Marker {
    image_layout_version: String,
}

impl OciLayout {
    /// Opens `dir` after checking its `oci-layout` marker (version 1.x).
    pub fn open(dir: &Path) -> Result<OciLayout> {
        let marker_path = dir.join("oci-layout");
        let bytes = read_capped(&marker_path, MAX_MARKER_SIZE).with_context(|| {
            format!(
                "`{}` is not an OCI image layout (reading its oci-layout file)",
                dir.display()
            )
        })?;
        let marker: Marker = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing `{}`", marker_path.display()))?;
        if !marker.image_layout_version.starts_with("1.") {
            bail!(
                "`{}` has imageLayoutVersion {:?}; only 1.x is supported",
                marker_path.display(),
                marker.image_layout_version
            );
        }
        Ok(OciLayout {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads and validates `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.dir.join("index.json");
        let bytes = read_capped(&path, MAX_MANIFEST_SIZE)?;
        let parsed = parse_manifest(&bytes, None)
            .with_context(|| format!("parsing `{}`", path.display()))?;
        match parsed.manifest {
            Manifest::Index(index) => Ok(index),
            Manifest::Image(_) => bail!("`{}` is an image manifest, not an index", path.display()),
        }
    }

    /// The descriptor `tag` names in `index.json` (see [`select_ref`]).
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        let index = self.index()?;
        select_ref(&index, tag)
            .cloned()
            .with_context(|| format!("in the image layout `{}`", self.dir.display()))
    }

    /// Where the blob `digest` lives (computed from the digest, never read from the disk).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }
}

impl BlobSource for OciLayout {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        Ok(Box::new(open_regular(&path)?))
    }
}

/// Picks the entry of a layout's index: the one whose ref name is `tag`, or without a tag the
/// only entry. Pure.
pub fn select_ref<'a>(index: &'a ImageIndex, tag: Option<&str>) -> Result<&'a Descriptor> {
    let names = || {
        let mut names: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|d| d.ref_name())
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    match tag {
        None => match index.manifests.as_slice() {
            [only] => Ok(only),
            [] => bail!("the image layout has no images"),
            many => bail!(
                "the image layout has {} images; choose one with :TAG (names: {})",
                many.len(),
                names()
            ),
        },
        Some(tag) => {
            let mut found = index.manifests.iter().filter(|d| d.ref_name() == Some(tag));
            let Some(first) = found.next() else {
                bail!("no image named `{tag}` (names: {})", names());
            };
            if found.any(|d| d.digest != first.digest) {
                bail!("more than one image is named `{tag}`, with different digests");
            }
            Ok(first)
        }
    }
}

/// Opens `path` for reading only if it is a regular file. `O_NONBLOCK` keeps a FIFO planted
/// there from blocking the open; it has no effect on regular files.
fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .with_context(|| format!("opening `{}`", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("inspecting `{}`", path.display()))?;
    if !meta.is_file() {
        bail!("`{}` is not a regular file", path.display());
    }
    Ok(file)
}

fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut out = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading `{}`", path.display()))?;
    if out.len() as u64 > max {
        bail!("`{}` is larger than {max} bytes", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media;

    fn entry(name: Option<&str>, data: &[u8]) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::of(data), data.len() as u64);
        if let Some(n) = name {
            d.annotations
                .insert(crate::oci::manifest::REF_NAME_ANNOTATION.into(), n.into());
        }
        d
    }

    fn index(entries: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            manifests: entries,
            subject: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn selecting_by_ref_name() {
        let ix = index(vec![
            entry(Some("v1"), b"1"),
            entry(Some("latest"), b"2"),
            entry(Some("latest"), b"2"),
            entry(None, b"3"),
        ]);
        assert_eq!(
            select_ref(&ix, Some("v1")).unwrap().digest,
            Digest::of(b"1")
        );
        assert_eq!(
            select_ref(&ix, Some("latest")).unwrap().digest,
            Digest::of(b"2")
        );
        let err = select_ref(&ix, Some("v2")).unwrap_err().to_string();
        assert!(
            err.contains("no image named `v2` (names: latest, v1)"),
            "{err}"
        );
        let err = select_ref(&ix, None).unwrap_err().to_string();
        assert!(err.contains("has 4 images; choose one with :TAG"), "{err}");
        let one = index(vec![entry(None, b"x")]);
        assert_eq!(select_ref(&one, None).unwrap().digest, Digest::of(b"x"));
        assert!(select_ref(&index(vec![]), None).is_err());
        let clash = index(vec![entry(Some("t"), b"a"), entry(Some("t"), b"b")]);
        assert!(select_ref(&clash, Some("t")).is_err());
    }
}
