//! `sandbox cache ls|fsck|gc|rm|export|import`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Settings;
use crate::airgap::{export, import};
use crate::cache::Cache;
use crate::cache::Verification;
use crate::cache::maintenance;
use crate::digest::Digest;
use crate::machine::host::SystemHost;
use crate::machine::store;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// List refs and blobs with their sizes.
    Ls,
    /// Re-hash every blob; report and remove corrupt ones (exit 1 if any were found).
    Fsck,
    /// Remove blobs that no ref uses (waits for other sandbox processes to finish).
    Gc,
    /// Remove a ref (by its source, as `cache ls` shows it) and the blobs only it used.
    Rm {
        /// The source of the ref.
        reference: String,
    },
    /// Write refs (by their source, as `cache ls` shows it; all when none are named) and every
    /// blob they use to FILE, a tar (zstd-compressed when FILE ends in .zst), for another host.
    Export {
        /// The file to write (a tar; zstd-compressed when it ends in .zst).
        file: PathBuf,
        /// The refs to export, by their source as `cache ls` shows it [default: all].
        references: Vec<String>,
    },
    /// Take the blobs and refs of an export FILE into this cache. Every blob is re-hashed and
    /// every ref verified again with this host's keys; refs that fail are not imported (exit 1).
    Import {
        /// An export file written by `cache export` (plain or zstd-compressed tar).
        file: PathBuf,
        /// A keyring (armored or binary) to trust for re-verifying signatures; may be repeated.
        #[arg(long)]
        keyring: Vec<PathBuf>,
    },
}

#[derive(Serialize)]
struct GcOutput<'a> {
    #[serde(flatten)]
    blobs: &'a maintenance::GcReport,
    /// Staging trees (`.#NAME…`) of processes that died.
    removed_staging: &'a [std::path::PathBuf],
    removed_stored_images: &'a [String],
    kept_stored_images: &'a [String],
}

#[derive(Serialize)]
struct FsckOutput<'a> {
    #[serde(flatten)]
    blobs: &'a maintenance::FsckReport,
    store: &'a store::StoreCheck,
}

/// The image digests the cache's refs name (a tarball's image, an OCI manifest), with how
/// each was verified: what vouches for a stored image.
fn vouched(cache: &Cache) -> Result<Vec<(Digest, Verification)>> {
    Ok(cache
        .list_refs()?
        .into_iter()
        .flat_map(|(_, _, r)| {
            r.blobs
                .iter()
                .filter(|b| b.role == "image" || b.role == "manifest")
                .map(|b| (b.digest, r.verification.clone()))
                .collect::<Vec<_>>()
        })
        .collect())
}

pub fn run(settings: &Settings, cmd: CacheCommand) -> Result<ExitCode> {
    let dir = settings.paths.cache_dir();
    match cmd {
        CacheCommand::Ls => {
            let cache = Cache::open(&dir)?;
            let listing = maintenance::list(&cache)?;
            if settings.json {
                super::print_json(&listing)?;
            } else {
                println!(
                    "{:<8} {:<60} {:>12}  {:<10} FETCHED",
                    "KIND", "SOURCE", "SIZE", "VERIFIED"
                );
                for r in &listing.refs {
                    let source = match &r.version {
                        Some(v) => format!("{} ({v})", r.source),
                        None => r.source.clone(),
                    };
                    println!(
                        "{:<8} {:<60} {:>12}  {:<10} {}",
                        r.kind,
                        source,
                        human_size(r.size),
                        r.verification,
                        r.fetched_at
                    );
                }
                println!();
                println!("{:<71} {:>12}  USED BY", "BLOB", "SIZE");
                for b in &listing.blobs {
                    let used = if b.used_by.is_empty() {
                        "(unused)".to_string()
                    } else {
                        b.used_by.join(", ")
                    };
                    println!(
                        "{:<71} {:>12}  {used}",
                        b.digest.to_string(),
                        human_size(b.size)
                    );
                }
                println!(
                    "{} blobs, {} in all",
                    listing.blobs.len(),
                    human_size(listing.total_size)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Fsck => {
            let cache = Cache::open(&dir)?;
            let report = maintenance::fsck(&cache)?;
            let host = SystemHost::for_paths(&settings.paths);
            let store = store::check(&settings.paths, &host, &vouched(&cache)?)?;
            if settings.json {
                super::print_json(&FsckOutput {
                    blobs: &report,
                    store: &store,
                })?;
            } else {
                for c in &store.corrupt {
                    eprintln!("stored image: {c}");
                }
                for u in &store.unvouched {
                    eprintln!("warning: stored image {u}");
                }
                for c in &report.corrupt {
                    eprintln!("corrupt blob removed: {c}");
                }
                for m in &report.missing {
                    eprintln!("missing blob (a pull fetches it again): {m}");
                }
                settings.say(format!(
                    "checked {} blobs: {} corrupt, {} missing",
                    report.checked,
                    report.corrupt.len(),
                    report.missing.len()
                ));
            }
            Ok(if report.corrupt.is_empty() && store.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CacheCommand::Gc => {
            let cache = Cache::open_exclusive(&dir)?;
            let report = maintenance::gc(&cache)?;
            let host = SystemHost::for_paths(&settings.paths);
            let store = store::sweep(&settings.paths, &host, |_| true)?;
            let staging = crate::machine::materialise::sweep_dead_staging(
                &cache,
                &settings.paths.machines_dir,
            )?;
            if settings.json {
                super::print_json(&GcOutput {
                    blobs: &report,
                    removed_staging: &staging,
                    removed_stored_images: &store.removed,
                    kept_stored_images: &store.kept,
                })?;
            } else {
                settings.say(format!(
                    "removed {} unused blobs and {} other files, freed {}",
                    report.removed_blobs.len(),
                    report.removed_other.len(),
                    human_size(report.freed_bytes)
                ));
                for r in &store.removed {
                    settings.say(format!("removed the stored image {r}"));
                }
                for k in &store.kept {
                    settings.say(format!("kept the stored image {k}"));
                }
                for p in &staging {
                    settings.say(format!("removed the unfinished tree {}", p.display()));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Rm { reference } => {
            let cache = Cache::open(&dir)?;
            let mut removed = maintenance::remove_ref(&cache, &reference)?;
            // Stored trees of an image no ref names any more go with it, unless in use.
            let named: Vec<Digest> = vouched(&cache)?.into_iter().map(|(d, _)| d).collect();
            let host = SystemHost::for_paths(&settings.paths);
            let store = store::sweep(&settings.paths, &host, |r| !named.contains(&r.image))?;
            removed.extend(
                store
                    .removed
                    .iter()
                    .map(|r| format!("the stored image {r}")),
            );
            for k in &store.kept {
                tracing::warn!("kept the stored image {k}");
            }
            if settings.json {
                super::print_json(&removed)?;
            } else {
                for r in removed {
                    settings.say(format!("removed {r}"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Export { file, references } => {
            let cache = Cache::open(&dir)?;
            let report = export::export(&cache, &file, &references)?;
            if settings.json {
                super::print_json(&report)?;
            } else {
                settings.say(format!(
                    "exported {} refs and {} blobs ({}) to {}",
                    report.refs.len(),
                    report.blobs,
                    human_size(report.bytes),
                    report.file.display()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Import { file, keyring } => {
            let cache = Cache::open(&dir)?;
            let trust = import::Trust {
                paths: &settings.paths,
                keyrings: &keyring,
            };
            let report = import::import(&cache, &file, &trust)?;
            if settings.json {
                super::print_json(&report)?;
            } else {
                for w in &report.warnings {
                    eprintln!("warning: {w}");
                }
                for b in &report.refused_blobs {
                    eprintln!("refused blob {b}");
                }
                for r in &report.refused_refs {
                    eprintln!("refused ref {r}");
                }
                settings.say(format!(
                    "imported {} refs and {} blobs from {}; refused {} refs and {} blobs",
                    report.imported.len(),
                    report.blobs,
                    file.display(),
                    report.refused_refs.len(),
                    report.refused_blobs.len()
                ));
            }
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// 1536 → "1.5 KiB".
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}
