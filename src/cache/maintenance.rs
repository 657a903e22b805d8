//! `cache ls`, `cache fsck`, `cache gc`, `cache rm`: reading and pruning the cache.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::layout::LAYOUT_VERSION;
use super::store::{Cache, hash_file, read_dir_sorted};
use crate::digest::Digest;
use crate::verify::mode::Checked;

#[derive(Debug, Serialize)]
pub struct RefRow {
    pub kind: &'static str,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub digests: Vec<Digest>,
    pub size: u64,
    pub verification: Checked,
    pub fetched_at: String,
}

#[derive(Debug, Serialize)]
pub struct BlobRow {
    pub digest: Digest,
    pub size: u64,
    /// Sources of the refs that use the blob; empty means `cache gc` would remove it.
    pub used_by: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub refs: Vec<RefRow>,
    pub blobs: Vec<BlobRow>,
    pub total_size: u64,
}

/// Blobs on disk, by digest; files whose name is not a digest are reported by fsck.
fn blobs_on_disk(cache: &Cache) -> Result<Vec<(Option<Digest>, PathBuf)>> {
    Ok(read_dir_sorted(&cache.layout().blobs_dir())?
        .into_iter()
        .map(|p| {
            let d = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| Digest::from_hex(n).ok());
            (d, p)
        })
        .collect())
}

pub fn list(cache: &Cache) -> Result<Listing> {
    let refs = cache.list_refs()?;
    let mut used: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    let mut ref_rows = Vec::new();
    for (kind, _, r) in &refs {
        for b in &r.blobs {
            used.entry(b.digest).or_default().push(r.source.clone());
        }
        ref_rows.push(RefRow {
            kind: kind.dir_name(),
            source: r.source.clone(),
            version: r.version.clone(),
            digests: r.blobs.iter().map(|b| b.digest).collect(),
            size: r.blobs.iter().map(|b| b.size).sum(),
            verification: r.verification.mode,
            fetched_at: r.fetched_at.clone(),
        });
    }
    let mut blob_rows = Vec::new();
    let mut total = 0;
    for (digest, path) in blobs_on_disk(cache)? {
        let Some(digest) = digest else { continue };
        let size = fs_err::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        total += size;
        blob_rows.push(BlobRow {
            digest,
            size,
            used_by: used.remove(&digest).unwrap_or_default(),
        });
    }
    Ok(Listing {
        refs: ref_rows,
        blobs: blob_rows,
        total_size: total,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct FsckReport {
    pub checked: u64,
    /// Blobs whose bytes did not match their name; removed.
    pub corrupt: Vec<String>,
    /// Refs that name a blob the cache does not hold (a later pull fetches it again).
    pub missing: Vec<String>,
}

/// Re-hashes every blob; removes the corrupt ones.
pub fn fsck(cache: &Cache) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    for (digest, path) in blobs_on_disk(cache)? {
        report.checked += 1;
        let ok = match digest {
            Some(d) => hash_file(&path)
                .map(|(actual, _)| actual == d)
                .unwrap_or(false),
            None => false,
        };
        if !ok {
            fs_err::remove_file(&path)
                .with_context(|| format!("removing corrupt blob {}", path.display()))?;
            report.corrupt.push(path.display().to_string());
        }
    }
    for (_, file, r) in cache.list_refs()? {
        for b in &r.blobs {
            if cache.blob(&b.digest).is_none() {
                report.missing.push(format!(
                    "{} ({} {}, ref {})",
                    r.source,
                    b.role,
                    b.digest,
                    file.display()
                ));
            }
        }
    }
    Ok(report)
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub removed_blobs: Vec<Digest>,
    pub freed_bytes: u64,
    pub removed_other: Vec<String>,
}

/// Removes blobs no ref uses, stale temp files and other layout versions. Needs the exclusive
/// lock (`Cache::open_exclusive`), so no pull is in flight.
pub fn gc(cache: &Cache) -> Result<GcReport> {
    let used: BTreeSet<Digest> = cache
        .list_refs()?
        .iter()
        .flat_map(|(_, _, r)| r.blobs.iter().map(|b| b.digest))
        .collect();
    let mut report = GcReport::default();
    for (digest, path) in blobs_on_disk(cache)? {
        if digest.is_some_and(|d| used.contains(&d)) {
            continue;
        }
        let size = fs_err::symlink_metadata(&path)
            .map(|m| m.len())
            .unwrap_or(0);
        fs_err::remove_file(&path)?;
        crate::faultpoint::reached("gc.removed");
        report.freed_bytes += size;
        if let Some(d) = digest {
            report.removed_blobs.push(d);
        } else {
            report.removed_other.push(path.display().to_string());
        }
    }
    // Partial downloads are kept for a day so an interrupted pull can resume. Anything else in
    // tmp/ (a temp blob, an atomic write's temp file, an extracted oci-archive) is what a dead
    // process left: with the exclusive lock held no live one is writing it, so it goes now.
    let day = Duration::from_secs(24 * 3600);
    for path in read_dir_sorted(&cache.layout().tmp_dir())? {
        let meta = fs_err::symlink_metadata(&path).ok();
        let old = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > day)
            .unwrap_or(true);
        if old || !is_resumable(&path) {
            report.freed_bytes += meta.as_ref().map(|m| m.len()).unwrap_or(0);
            if meta.as_ref().is_some_and(|m| m.is_dir()) {
                fs_err::remove_dir_all(&path)?;
            } else {
                fs_err::remove_file(&path)?;
            }
            report.removed_other.push(path.display().to_string());
        }
    }
    for path in read_dir_sorted(cache.layout().root())? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_other_version = path.is_dir() && name.starts_with('v') && name != LAYOUT_VERSION;
        if is_other_version {
            fs_err::remove_dir_all(&path)
                .with_context(|| format!("removing old cache layout {}", path.display()))?;
            report.removed_other.push(path.display().to_string());
        }
    }
    Ok(report)
}

/// A partial download a later pull may resume (`download-<id>.part|json`, `partial-<hex>.part`).
fn is_resumable(path: &std::path::Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.starts_with("download-") && (name.ends_with(".part") || name.ends_with(".json")))
        || (name.starts_with("partial-") && name.ends_with(".part"))
}

/// Removes the ref(s) whose source is `source` (or whose file key is), and the blobs that only
/// they used. Returns the removed ref sources.
pub fn remove_ref(cache: &Cache, source: &str) -> Result<Vec<String>> {
    let refs = cache.list_refs()?;
    let (matching, others): (Vec<_>, Vec<_>) = refs.into_iter().partition(|(_, file, r)| {
        r.source == source || file.file_stem().and_then(|s| s.to_str()) == Some(source)
    });
    if matching.is_empty() {
        bail!("no cache ref for `{source}`; `sandbox cache ls` lists them");
    }
    let still_used: BTreeSet<Digest> = others
        .iter()
        .flat_map(|(_, _, r)| r.blobs.iter().map(|b| b.digest))
        .collect();
    let mut removed = Vec::new();
    for (_, file, r) in matching {
        fs_err::remove_file(&file)?;
        for b in &r.blobs {
            if !still_used.contains(&b.digest)
                && let Some(path) = cache.blob(&b.digest)
            {
                fs_err::remove_file(&path)?;
            }
        }
        removed.push(r.source);
    }
    Ok(removed)
}
