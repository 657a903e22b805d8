//! `sandbox cache import FILE`: reads an export entry by entry (never unpacking it), keeps
//! each blob only if it hashes to its name, and writes each ref only after it verified again
//! on this host, through the same `pull::fetch_verified` as an `--offline` pull (the ref is
//! its candidate: checked from the cache's blobs, with this host's keys and policy). A refused
//! ref is reported, not written; its blobs stay unreferenced until `cache gc`.

use std::collections::BTreeSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::archive;
use super::manifest::{
    self, EntryName, FORMAT_VERSION, MANIFEST_LIMIT, Manifest, check_ref_file_name, kind_from_name,
};
use super::reverify::{self, Outcome};
use crate::atomic::write_file;
use crate::cache::{Cache, RefKind};
use crate::digest::Digest;
use crate::digest::HashingReader;
use crate::paths::HostPaths;
use crate::progress::ProgressMode;

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Sources of the refs written.
    pub imported: Vec<String>,
    /// Warnings about imported refs (unverified, accepted as recorded).
    pub warnings: Vec<String>,
    /// Refs not written, each with why.
    pub refused_refs: Vec<String>,
    /// Blob entries whose bytes did not hash to their name.
    pub refused_blobs: Vec<String>,
    pub blobs: usize,
}

impl ImportReport {
    pub fn ok(&self) -> bool {
        self.refused_refs.is_empty() && self.refused_blobs.is_empty()
    }
}

/// What refs are verified with: the host's keys, policy and trust files (as `pull` reads
/// them), and the `--keyring` files given.
pub struct Trust<'a> {
    pub paths: &'a HostPaths,
    pub keyrings: &'a [PathBuf],
}

/// Imports `file` into `cache`.
///
/// # Errors
/// An unreadable or malformed export (an entry other than `manifest.json` and
/// `blobs/sha256/<hex>`, a non-file entry, no manifest, an unknown format) is an error; blobs
/// already taken stay in the cache, verified, and `cache gc` removes them. Refused blobs and
/// refs are not errors but are listed in the report.
pub fn import(cache: &Cache, file: &Path, trust: &Trust<'_>) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut hashed = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut found_manifest: Option<Manifest> = None;
    let mut tar = tar::Archive::new(archive::open(file)?);
    let entries = tar
        .entries()
        .with_context(|| format!("reading {}", file.display()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading an entry of {}", file.display()))?;
        let name = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&name).into_owned();
        let what = manifest::classify(&name).with_context(|| format!("in {}", file.display()))?;
        let kind = entry.header().entry_type();
        if what == EntryName::Directory {
            continue;
        }
        if !kind.is_file() {
            bail!(
                "{}: entry `{shown}` is not a regular file ({kind:?})",
                file.display()
            );
        }
        match what {
            EntryName::Directory => {}
            EntryName::Manifest => {
                if found_manifest.is_some() {
                    bail!("{}: more than one {shown}", file.display());
                }
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MANIFEST_LIMIT + 1)
                    .read_to_end(&mut bytes)
                    .with_context(|| format!("reading {shown} in {}", file.display()))?;
                if bytes.len() as u64 > MANIFEST_LIMIT {
                    bail!(
                        "{}: {shown} is larger than {MANIFEST_LIMIT} bytes",
                        file.display()
                    );
                }
                let m: Manifest = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {shown} in {}", file.display()))?;
                if m.format != FORMAT_VERSION {
                    bail!(
                        "{}: export format {} is not the supported {FORMAT_VERSION}",
                        file.display(),
                        m.format
                    );
                }
                found_manifest = Some(m);
            }
            EntryName::Blob(digest) => match take_blob(cache, &mut entry, &digest) {
                Ok(()) => {
                    hashed.insert(digest);
                    refused.remove(&digest);
                    report.blobs += 1;
                }
                Err(e) if e.downcast_ref::<Mismatch>().is_some() => {
                    refused.insert(digest);
                    report.refused_blobs.push(format!("{shown}: {e:#}"));
                }
                Err(e) => {
                    return Err(e.context(format!("importing {shown} from {}", file.display())));
                }
            },
        }
    }
    let m = found_manifest
        .with_context(|| format!("{} holds no {}", file.display(), manifest::MANIFEST_NAME))?;
    for entry in &m.refs {
        let source = &entry.reference.source;
        match check_ref(cache, entry, trust, &mut hashed, &refused) {
            Ok((kind, outcome)) => {
                let path = cache.layout().refs_dir(kind).join(&entry.file);
                let mut json =
                    serde_json::to_vec_pretty(&entry.reference).context("encoding a cache ref")?;
                json.push(b'\n');
                write_file(&path, &json)?;
                match outcome {
                    Outcome::Verified => {}
                    Outcome::AsRecorded(against) => report.warnings.push(format!(
                        "{source}: its checksum ({against}) is not in the cache; accepted as recorded on the exporting host"
                    )),
                    Outcome::Unverified => report.warnings.push(format!(
                        "{source}: was pulled with --verify=no; imported unverified"
                    )),
                }
                report.imported.push(source.clone());
            }
            Err(e) => report.refused_refs.push(format!("{source}: {e:#}")),
        }
    }
    Ok(report)
}

/// A blob entry whose bytes do not hash to its name.
#[derive(Debug, thiserror::Error)]
#[error("its bytes hash to {got}, not to its name; refused")]
struct Mismatch {
    got: Digest,
}

/// Copies one blob entry into a cache temp blob, publishing it only if it hashes to `digest`.
/// The entry is hashed on the way in so a mismatch is told apart from an I/O error (the temp
/// blob is removed when dropped); `publish` checks the digest once more.
fn take_blob(cache: &Cache, entry: &mut impl Read, digest: &Digest) -> Result<()> {
    let mut temp = cache.temp_blob()?;
    let mut reader = HashingReader::new(entry);
    io::copy(&mut reader, &mut temp).context("copying the blob into the cache")?;
    let (got, _) = reader.finish();
    if got != *digest {
        return Err(Mismatch { got }.into());
    }
    cache.publish(temp, Some(digest))?;
    Ok(())
}

fn check_ref(
    cache: &Cache,
    entry: &manifest::ManifestRef,
    trust: &Trust<'_>,
    hashed: &mut BTreeSet<Digest>,
    refused: &BTreeSet<Digest>,
) -> Result<(RefKind, Outcome)> {
    let kind = kind_from_name(&entry.kind)
        .with_context(|| format!("unknown ref kind `{}`", entry.kind))?;
    check_ref_file_name(&entry.file)?;
    let r = &entry.reference;
    if let Some(b) = r.blobs.iter().find(|b| refused.contains(&b.digest)) {
        bail!(
            "its {} blob {} was refused (corrupt in the export)",
            b.role,
            b.digest
        );
    }
    reverify::check_blobs(cache, r, hashed)?;
    let Some(spec) = reverify::candidate_spec(kind, r, trust.keyrings)? else {
        // A cached index or products file: unsigned documents, checked by their digests.
        return Ok((kind, Outcome::Verified));
    };
    crate::pull::fetch_verified(trust.paths, ProgressMode::hidden(), cache, &spec)
        .map_err(|e| reverify::with_signer(e, r))?;
    Ok((kind, reverify::outcome(r)))
}
