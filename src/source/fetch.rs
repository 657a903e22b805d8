//! Bringing one file of a site into the cache, transferring as little as possible.

use std::io::{self, Write};

use anyhow::{Context, Result, bail};

use super::site::Site;
use crate::cache::lock::LockGuard;
use crate::cache::{Cache, RefBlob};
use crate::digest::Digest;
use crate::progress::{ProgressMode, ProgressReader};
use crate::transport::http::{Download, Validators};
use crate::transport::resume::PartCheck;

/// Fetches `file_name` from `site` into the cache as a blob with `role`:
/// - nothing is transferred when `expected` is already cached;
/// - otherwise a download under the per-URL lock (a concurrent pull of the same URL waits, then
///   finds the blob), conditional on the validators of `previous` (the blob the ref recorded
///   last time, read again under the lock), resuming a partial download;
/// - with `expected`, bytes that do not match are discarded before they reach `blobs/`, and so
///   are new bytes that `check` refuses (it does not run on bytes already cached: callers check
///   those themselves when `fresh` is false).
///
/// The per-URL lock comes back in `FetchedFile::lock`: the caller holds it until it has written
/// the ref that records the blob's validators, so a pull waiting on the lock sees them.
pub async fn fetch_file(
    site: &Site,
    cache: &Cache,
    wanted: Wanted<'_>,
    progress: ProgressMode,
) -> Result<FetchedFile> {
    let Wanted {
        file_name,
        role,
        previous,
        expected,
        check,
    } = wanted;
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
            .map(|p| fs_err::metadata(p).map(|m| m.len()).unwrap_or(0))
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
        return Ok(FetchedFile {
            blob: blob_of(*expected, size, v),
            fresh: false,
            lock: None,
        });
    }
    match site {
        Site::Http { http, .. } => {
            let url = site.url(file_name)?;
            let lock = cache.lock(
                &format!("download-{}", url.as_str()),
                &format!("another pull of {location}"),
            )?;
            // Another process may have finished the same download while we waited.
            if let Some(expected) = expected
                && let Some(size) = cached(expected)
            {
                return Ok(FetchedFile {
                    blob: blob_of(*expected, size, Validators::default()),
                    fresh: false,
                    lock: Some(lock),
                });
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
            let fresh = |digest, size, validators| FetchedFile {
                blob: blob_of(digest, size, validators),
                fresh: true,
                lock: None,
            };
            let mut got = match http
                .download(cache, &url, validators.as_ref(), expected, check, &bar)
                .await?
            {
                Download::Fetched {
                    digest,
                    size,
                    validators,
                } => fresh(digest, size, validators),
                Download::NotModified => {
                    let prev = prev.context("internal: 304 without a cached copy")?;
                    if expected.is_none_or(|e| *e == prev.digest) {
                        tracing::info!("{location}: not modified since the last pull");
                        let v = Validators {
                            etag: prev.etag,
                            last_modified: prev.last_modified,
                        };
                        FetchedFile {
                            blob: blob_of(prev.digest, prev.size, v),
                            fresh: false,
                            lock: None,
                        }
                    } else {
                        // The server claims no change, but the verified checksum names other
                        // bytes: fetch unconditionally and let the digest decide.
                        match http
                            .download(cache, &url, None, expected, check, &bar)
                            .await?
                        {
                            Download::Fetched {
                                digest,
                                size,
                                validators,
                            } => fresh(digest, size, validators),
                            Download::NotModified => {
                                bail!("GET {location}: 304 to an unconditional request")
                            }
                        }
                    }
                }
            };
            got.lock = Some(lock);
            Ok(got)
        }
        Site::Local { dir } => {
            let path = dir.join(file_name);
            let file = fs_err::File::open(&path).map(fs_err::File::into_file)?;
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
            if let Some(check) = check {
                temp.flush().context("writing to the cache")?;
                check(temp.path())?;
            }
            let digest = cache.publish(temp, expected).with_context(|| {
                format!("{}: checksum mismatch; nothing was stored", path.display())
            })?;
            Ok(FetchedFile {
                blob: blob_of(digest, size, Validators::default()),
                fresh: true,
                lock: None,
            })
        }
    }
}

/// What `fetch_file` is asked for.
pub struct Wanted<'a> {
    pub file_name: &'a str,
    /// The blob's role in the ref (`image`, `metadata`, …).
    pub role: &'a str,
    /// The blob the ref recorded last time (read again under the download lock).
    pub previous: &'a dyn Fn(&Cache) -> Option<RefBlob>,
    /// The digest a verified source names for the file.
    pub expected: Option<&'a Digest>,
    /// A check of new bytes before they are published.
    pub check: Option<&'a PartCheck<'a>>,
}

/// A file brought into the cache by `fetch_file`.
pub struct FetchedFile {
    pub blob: RefBlob,
    /// Its bytes were hashed in this run (downloaded or copied), not taken from the cache.
    pub fresh: bool,
    /// The per-URL download lock, to hold until the ref recording `blob` is written.
    pub lock: Option<LockGuard>,
}
