//! `sandbox images [--remote]`: what the cache holds, or what an image server offers.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Settings;
use super::cache::human_size;
use crate::cache::{Cache, RefKind};
use crate::source::arch::normalise_arch;
use crate::source::images;
use crate::transport::http::Http;
use crate::verify::mode::Checked;

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// List what the image server offers instead of what the cache holds.
    #[arg(long)]
    pub remote: bool,
    /// The simplestreams server [default: $SANDBOX_IMAGES_SERVER or https://images.linuxcontainers.org].
    #[arg(long, value_name = "URL", env = "SANDBOX_IMAGES_SERVER")]
    pub images_server: Option<String>,
    /// Only this architecture (Debian names) [default with --remote: all].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// Use only cached index files.
    #[arg(long)]
    pub offline: bool,
    /// Only images whose alias, OS or release contains FILTER.
    pub filter: Option<String>,
}

#[derive(Serialize)]
struct CachedRow {
    /// `tarball`, `images` or `oci`, as `cache ls` names them.
    kind: &'static str,
    source: String,
    server: Option<String>,
    arch: Option<String>,
    variant: Option<String>,
    version: Option<String>,
    size: u64,
    verification: Checked,
    key_fingerprint: Option<String>,
    fetched_at: String,
}

pub fn run(settings: &Settings, args: ImagesArgs) -> Result<ExitCode> {
    let cache = Cache::open(&settings.paths.cache_dir())?;
    let arch = args.arch.as_deref().map(normalise_arch);
    if args.remote {
        // An empty `$SANDBOX_IMAGES_SERVER` is unset, as `build` reads it.
        let given = args
            .images_server
            .as_deref()
            .filter(|s| !s.trim().is_empty());
        let server = images::server_url(given)?;
        let http = Http::new()?;
        let rows = crate::runtime::block_on(images::list_remote(
            &server,
            arch.as_deref(),
            args.filter.as_deref(),
            &cache,
            &http,
            args.offline,
        ))??;
        if settings.json {
            super::print_json(&rows)?;
        } else {
            println!(
                "{:<36} {:<8} {:<10} {:<16} {:>10}",
                "ALIAS", "ARCH", "VARIANT", "VERSION", "SIZE"
            );
            for r in rows {
                let size = if r.size == 0 {
                    "-".to_string()
                } else {
                    human_size(r.size)
                };
                println!(
                    "{:<36} {:<8} {:<10} {:<16} {:>10}",
                    r.alias, r.arch, r.variant, r.newest_version, size
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for (kind, _, r) in cache.list_refs()? {
        if !matches!(kind, RefKind::Images | RefKind::Tarball | RefKind::Oci) {
            continue;
        }
        let detail = |k: &str| {
            r.details
                .get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        // An OCI image: its platform's architecture in Debian's spelling, like the others,
        // and the size of its layers (what a pull transfers).
        let (row_arch, size) = match kind {
            RefKind::Oci => (
                detail("platform").and_then(|p| p.split('/').nth(1).map(normalise_arch)),
                r.blobs
                    .iter()
                    .filter(|b| b.role == "layer")
                    .map(|b| b.size)
                    .sum(),
            ),
            _ => (detail("arch"), r.blob("image").map(|b| b.size).unwrap_or(0)),
        };
        let row = CachedRow {
            kind: kind.dir_name(),
            source: r.source.clone(),
            server: detail("server"),
            arch: row_arch,
            variant: detail("variant"),
            version: r.version.clone(),
            size,
            verification: r.verification.mode,
            key_fingerprint: r.verification.key_fingerprint.clone(),
            fetched_at: r.fetched_at.clone(),
        };
        let keep = arch
            .as_deref()
            .is_none_or(|a| row.arch.as_deref().is_none_or(|ra| ra == a))
            && args
                .filter
                .as_deref()
                .is_none_or(|f| row.source.contains(f));
        if keep {
            rows.push(row);
        }
    }
    if settings.json {
        super::print_json(&rows)?;
    } else {
        println!(
            "{:<50} {:<8} {:<16} {:>10}  {:<10} FETCHED",
            "SOURCE", "ARCH", "VERSION", "SIZE", "VERIFIED"
        );
        for r in rows {
            println!(
                "{:<50} {:<8} {:<16} {:>10}  {:<10} {}",
                r.source,
                r.arch.as_deref().unwrap_or("-"),
                r.version.as_deref().unwrap_or("-"),
                human_size(r.size),
                r.verification,
                r.fetched_at
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
