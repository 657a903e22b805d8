//! Bringing one file of a site into the cache, transferring as little as possible.

use std::fs::File;
use std::io;

use anyhow::{Context, Result, bail};

use super::http::{Download, Validators};
use super::site::Site;
use crate::cache::{Cache, RefBlob};
use crate::progress::{ProgressMode, ProgressReader};
use crate::verify::Digest;

/// Fetches `file_name` from `site` into the cache as a blob with `role`:
/// - nothing is transferred when `expected` is already cached;
/// - otherwise a download under the per-URL lock (a concurrent pull of the same URL waits, then
///   finds the blob), conditional on the validators of `previous` (the blob the ref recorded
///   last time, read again under the lock), resuming a partial download;
/// - with `expected`, bytes that do not match are discarded before they reach `blobs/`.
pub async fn fetch_file(
    site: &Site,
    file_name: &str,
    role: &str,
    cache: &Cache,
    previous: &dyn Fn(&Cache) -> Option<RefBlob>,
    expected: Option<&Digest>,
    progress: ProgressMode,
) -> Result<RefBlob> {
    let location = site.location(file_name);
    let blob_of = |digest: Digest, size: u64, v: Validators| RefBlob {
        role: role.to_string(),
        digest,
        size,
        url: Some(location.clone()),
        etag: v.etag,
        last_modified: v.last_modified,
    };
    let cached = |digest: &Digest| {
        cache
            .blob(digest)
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
    };
    if let Some(expected) = expected
        && let Some(size) = cached(expected)
    {
        tracing::info!("{location}: {expected} is already in the cache");
        let v = previous(cache)
            .filter(|b| b.digest == *expected)
            .map(|b| Validators {
                etag: b.etag,
                last_modified: b.last_modified,
            })
            .unwrap_or_default();
        return Ok(blob_of(*expected, size, v));
    }
    match site {
        Site::Http { http, .. } => {
            let url = site.url(file_name)?;
            let _lock = cache.lock(
                &format!("download-{}", url.as_str()),
                &format!("another pull of {location}"),
            )?;
            // Another process may have finished the same download while we waited.
            if let Some(expected) = expected
                && let Some(size) = cached(expected)
            {
                return Ok(blob_of(*expected, size, Validators::default()));
            }
            let prev = previous(cache).filter(|b| cache.blob(&b.digest).is_some());
            let validators = prev
                .as_ref()
                .map(|b| Validators {
                    etag: b.etag.clone(),
                    last_modified: b.last_modified.clone(),
                })
                .filter(|v| !v.is_empty());
            let bar = progress.task(&format!("Downloading {file_name}"));
            match http
                .download(cache, &url, validators.as_ref(), expected, &bar)
                .await?
            {
                Download::Fetched {
                    digest,
                    size,
                    validators,
                } => Ok(blob_of(digest, size, validators)),
                Download::NotModified => {
                    let prev = prev.context("internal: 304 without a cached copy")?;
                    if expected.is_none_or(|e| *e == prev.digest) {
                        tracing::info!("{location}: not modified since the last pull");
                        return Ok(blob_of(
                            prev.digest,
                            prev.size,
                            Validators {
                                etag: prev.etag,
                                last_modified: prev.last_modified,
                            },
                        ));
                    }
                    // The server claims no change, but the verified checksum names other bytes:
                    // fetch unconditionally and let the digest decide.
                    match http.download(cache, &url, None, expected, &bar).await? {
                        Download::Fetched {
                            digest,
                            size,
                            validators,
                        } => Ok(blob_of(digest, size, validators)),
                        Download::NotModified => {
                            bail!("GET {location}: 304 to an unconditional request")
                        }
                    }
                }
            }
        }
        Site::Local { dir } => {
            let path = dir.join(file_name);
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = progress.task(&format!("Reading {file_name}"));
            bar.start_bytes(Some(size), 0);
            let mut temp = cache.temp_blob()?;
            let mut reader = ProgressReader {
                inner: io::BufReader::with_capacity(256 * 1024, file),
                progress: bar.clone(),
            };
            io::copy(&mut reader, &mut temp)
                .with_context(|| format!("copying {} into the cache", path.display()))?;
            bar.finish();
            let digest = cache.publish(temp, expected).with_context(|| {
                format!("{}: checksum mismatch; nothing was stored", path.display())
            })?;
            Ok(blob_of(digest, size, Validators::default()))
        }
    }
}
