//! `sandbox cache export FILE [REF…]`: the chosen refs and every blob they use, as a tar
//! written to a temp file next to FILE and renamed over it only when complete.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::archive::{self, Sink};
use super::manifest::{self, FORMAT_VERSION, MANIFEST_NAME, Manifest, ManifestRef};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::digest::HashingReader;

#[derive(Debug, Serialize)]
pub struct ExportReport {
    pub file: PathBuf,
    pub refs: Vec<String>,
    pub blobs: usize,
    pub bytes: u64,
}

/// Writes the refs named by `names` (all when empty) and their blobs to `file`.
///
/// # Errors
/// A name that matches no ref, a blob a ref uses that the cache lacks or whose bytes no longer
/// match its name (run `sandbox cache fsck`, then pull again), or any write error. FILE is
/// left untouched then.
pub fn export(cache: &Cache, file: &Path, names: &[String]) -> Result<ExportReport> {
    let listed: Vec<(&'static str, String, crate::cache::Ref)> = cache
        .list_refs()?
        .into_iter()
        .map(|(kind, path, r)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (kind.dir_name(), name, r)
        })
        .collect();
    let chosen = manifest::select(&listed, names)?;
    let m = Manifest {
        format: FORMAT_VERSION,
        refs: chosen
            .iter()
            .map(|(kind, name, r)| ManifestRef {
                kind: kind.to_string(),
                file: name.clone(),
                reference: r.clone(),
            })
            .collect(),
    };
    let blobs = manifest::blobs_of(chosen.iter().map(|c| &c.2));
    for d in &blobs {
        if cache.blob(d).is_none() {
            let users: Vec<&str> = chosen
                .iter()
                .filter(|c| c.2.blobs.iter().any(|b| b.digest == *d))
                .map(|c| c.2.source.as_str())
                .collect();
            bail!(
                "the cache lacks blob {d}, used by {}; pull it again before exporting",
                users.join(", ")
            );
        }
    }
    let mut json = serde_json::to_vec_pretty(&m).context("encoding the export manifest")?;
    json.push(b'\n');

    if file.file_name().is_none() {
        bail!("{} names no file", file.display());
    }
    let bytes = crate::atomic::write_with(file, 0o644, |out| {
        write_tar(cache, out, archive::wants_zstd(file), &json, &blobs, file)
    })?;
    Ok(ExportReport {
        file: file.to_path_buf(),
        refs: chosen.iter().map(|c| c.2.source.clone()).collect(),
        blobs: blobs.len(),
        bytes,
    })
}

/// Writes the tar (entries in name order: `blobs/…` then `manifest.json`), re-hashing every
/// blob as it is copied so a corrupt cache is not carried to another host. Returns the blob
/// bytes written.
fn write_tar(
    cache: &Cache,
    out: &mut File,
    zstd: bool,
    manifest_json: &[u8],
    blobs: &std::collections::BTreeSet<Digest>,
    dest: &Path,
) -> Result<u64> {
    let out = out
        .try_clone()
        .with_context(|| format!("opening {}", dest.display()))?;
    let mut builder = tar::Builder::new(Sink::new(out, zstd)?);
    let mut total = 0;
    for d in blobs {
        let path = cache.layout().blob(d);
        let f = fs_err::File::open(&path)?;
        let size = f.metadata()?.len();
        let mut reader = HashingReader::new(BufReader::with_capacity(256 * 1024, f));
        let mut header = entry_header(size);
        builder
            .append_data(&mut header, manifest::blob_entry(d), &mut reader)
            .with_context(|| format!("writing {} into {}", path.display(), dest.display()))?;
        let (got, _) = reader.finish();
        if got != *d {
            bail!(
                "cache blob {} is corrupt (its bytes hash to {got}); run `sandbox cache fsck` and pull again",
                path.display()
            );
        }
        total += size;
    }
    let mut header = entry_header(manifest_json.len() as u64);
    builder
        .append_data(&mut header, MANIFEST_NAME, manifest_json)
        .with_context(|| format!("writing the manifest into {}", dest.display()))?;
    let sink = builder
        .into_inner()
        .with_context(|| format!("finishing {}", dest.display()))?;
    sink.finish()
        .with_context(|| format!("finishing {}", dest.display()))?;
    Ok(total)
}

/// A plain regular-file header: fixed owner, mode and time, so the same refs export to the same
/// bytes.
fn entry_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}
