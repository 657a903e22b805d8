//! `sandbox cache ls|fsck|gc|rm`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Settings;
use crate::cache::Cache;
use crate::cache::maintenance;

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
            if settings.json {
                super::print_json(&report)?;
            } else {
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
            Ok(if report.corrupt.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        CacheCommand::Gc => {
            let cache = Cache::open_exclusive(&dir)?;
            let report = maintenance::gc(&cache)?;
            if settings.json {
                super::print_json(&report)?;
            } else {
                settings.say(format!(
                    "removed {} unused blobs and {} other files, freed {}",
                    report.removed_blobs.len(),
                    report.removed_other.len(),
                    human_size(report.freed_bytes)
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Rm { reference } => {
            let cache = Cache::open(&dir)?;
            let removed = maintenance::remove_ref(&cache, &reference)?;
            if settings.json {
                super::print_json(&removed)?;
            } else {
                for r in removed {
                    settings.say(format!("removed {r}"));
                }
            }
            Ok(ExitCode::SUCCESS)
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
