//! Writing an OCI image layout (`sandbox build --output oci-layout:DIR[:TAG]`): blobs under
//! `blobs/sha256/<hex>`, the `oci-layout` marker, and `index.json` entries named by the
//! `org.opencontainers.image.ref.name` annotation.
//!
//! Every file is written to a temporary name in its directory and renamed, blobs before the
//! index that names them, so a reader never finds a half-written blob or an entry whose
//! blobs are missing. A blob already present is kept (its name is its digest). Tagging
//! replaces an entry of the same name and keeps every other entry: one layout can hold
//! several images.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::Digest;
use crate::oci::layout::OciLayout;
use crate::oci::manifest::{Descriptor, ImageIndex, REF_NAME_ANNOTATION};
use crate::oci::media;

const MARKER: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout directory being written.
pub struct LayoutWriter {
    dir: PathBuf,
}

impl LayoutWriter {
    /// Opens `dir` as a layout, creating it (and its marker) when it does not exist or is
    /// empty. A directory with other content is refused: it is not ours to add to.
    pub fn create(dir: &Path) -> Result<LayoutWriter> {
        Self::check(dir)?;
        fs_err::create_dir_all(dir)?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            crate::atomic::write_file(&marker, MARKER)?;
        }
        let blobs = dir.join("blobs").join("sha256");
        fs_err::create_dir_all(&blobs)?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
        })
    }

    /// Fails unless `dir` is missing, empty, or an image layout: what [`Self::create`] accepts,
    /// checked without writing (a build checks before it starts).
    pub fn check(dir: &Path) -> Result<()> {
        if dir.join("oci-layout").exists() {
            OciLayout::open(dir)?;
            return Ok(());
        }
        let mut entries = match fs_err::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let Some(first) = entries.next() {
            let first = first?;
            bail!(
                "{} is not empty and not an OCI image layout (it holds {:?}); choose an empty or new directory",
                dir.display(),
                first.file_name()
            );
        }
        Ok(())
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// Adds a blob from bytes.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        crate::atomic::write_file(&path, bytes)
    }

    /// Adds a blob by copying `src` (a verified cache blob or a layer this build wrote);
    /// copy_file_range makes it a reflink where the filesystem can.
    pub fn put_file(&self, digest: &Digest, src: &Path) -> Result<()> {
        let path = self.blob_path(digest);
        if path.exists() {
            return Ok(());
        }
        // io::copy between files is copy_file_range: a reflink where the filesystem can.
        crate::atomic::write_with(&path, 0o644, |file| {
            let mut from = fs_err::File::open(src).map(fs_err::File::into_file)?;
            std::io::copy(&mut from, file)
                .with_context(|| format!("copying {} to {}", src.display(), path.display()))?;
            Ok(())
        })
    }

    /// Names `manifest` `tag` in `index.json` (replacing an entry of that name).
    pub fn tag(&self, manifest: &Descriptor, tag: &str) -> Result<()> {
        let index_path = self.dir.join("index.json");
        let mut index = if index_path.exists() {
            OciLayout::open(&self.dir)?.index()?
        } else {
            ImageIndex {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.to_string()),
                artifact_type: None,
                manifests: Vec::new(),
                subject: None,
                annotations: Default::default(),
            }
        };
        index.manifests = retag(std::mem::take(&mut index.manifests), manifest, tag);
        let mut bytes = serde_json::to_vec(&index).context("encoding index.json")?;
        bytes.push(b'\n');
        crate::atomic::write_file(&index_path, &bytes)
    }
}

/// `entries` without any entry named `tag`, then `manifest` named `tag`. Pure.
pub fn retag(entries: Vec<Descriptor>, manifest: &Descriptor, tag: &str) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = entries
        .into_iter()
        .filter(|d| d.ref_name() != Some(tag))
        .collect();
    let mut named = manifest.clone();
    named
        .annotations
        .insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
    out.push(named);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layout::select_ref;

    #[test]
    fn a_layout_is_created_tagged_retagged_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("layout");
        let w = LayoutWriter::create(&out).unwrap();
        let a = b"{\"a\":1}".to_vec();
        let b = b"{\"b\":2}".to_vec();
        let (da, db) = (Digest::of(&a), Digest::of(&b));
        w.put_bytes(&da, &a).unwrap();
        w.put_bytes(&db, &b).unwrap();
        let ma = Descriptor::new(media::OCI_MANIFEST, da, a.len() as u64);
        let mb = Descriptor::new(media::OCI_MANIFEST, db, b.len() as u64);
        w.tag(&ma, "one").unwrap();
        w.tag(&mb, "two").unwrap();
        // Re-tagging moves the name; the other entry stays.
        w.tag(&mb, "one").unwrap();
        let layout = OciLayout::open(&out).unwrap();
        let index = layout.index().unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(select_ref(&index, Some("one")).unwrap().digest, db);
        assert_eq!(select_ref(&index, Some("two")).unwrap().digest, db);
        assert_eq!(fs_err::read(layout.blob_path(&da)).unwrap(), a);
        // Opening again keeps what is there; no temporary files are left.
        LayoutWriter::create(&out).unwrap();
        let names: Vec<String> = fs_err::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }

    #[test]
    fn a_directory_with_other_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = LayoutWriter::create(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("not empty"), "{err:#}");
    }
}
