//! Image-server documents (simplestreams index and products files, the legacy index), cached
//! with their fetch time: fresh for five minutes, used stale (with a warning) when the server
//! cannot be reached, and used whatever their age with `--offline`.

use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use url::Url;

use crate::cache::refs::now_rfc3339;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::transport::http::Http;
use crate::transport::redact_url;
use crate::verify::mode::Checked;

/// How long a cached document is used without asking the server again.
pub const FRESH_FOR: Duration = Duration::from_secs(300);
/// The largest document accepted (images.linuxcontainers.org's products file is a few MiB).
const LIMIT: u64 = 64 << 20;

/// Where a document's bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fetched,
    /// From the cache, younger than `FRESH_FOR`.
    Fresh,
    /// From the cache because the server could not be reached.
    Stale,
    /// From the cache because of `--offline`.
    Offline,
}

/// The document at `url`: `Ok(None)` when the server says it does not exist (404). A 404 is
/// cached like a document (a ref without blobs), so a legacy server without simplestreams
/// works stale and offline too.
pub async fn get(
    cache: &Cache,
    http: &Http,
    url: &Url,
    offline: bool,
) -> Result<Option<(Vec<u8>, Freshness)>> {
    let key = redact_url(url);
    let cached = cache.read_ref(RefKind::Index, &key)?;
    let absent = |r: &Ref| r.details.get("absent").and_then(|v| v.as_bool()) == Some(true);
    let cached_bytes = |r: &Ref| -> Option<Vec<u8>> {
        r.blob("index")
            .and_then(|b| cache.read_blob(&b.digest).ok())
    };
    let age = |r: &Ref| {
        humantime::parse_rfc3339(&r.fetched_at)
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::MAX)
    };
    if offline {
        let r = cached.as_ref().with_context(|| {
            format!("--offline: {key} is not in the cache; run once without --offline")
        })?;
        if absent(r) {
            return Ok(None);
        }
        let bytes = cached_bytes(r).with_context(|| {
            format!("--offline: the cached copy of {key} is gone; run once without --offline")
        })?;
        return Ok(Some((bytes, Freshness::Offline)));
    }
    if let Some(r) = &cached
        && age(r) < FRESH_FOR
    {
        if absent(r) {
            return Ok(None);
        }
        if let Some(bytes) = cached_bytes(r) {
            return Ok(Some((bytes, Freshness::Fresh)));
        }
    }
    match http.get_small(url, LIMIT).await {
        Ok(Some(fetched)) => {
            let digest = cache.put_bytes(&fetched.bytes)?;
            let record = Ref {
                source: key.clone(),
                blobs: vec![RefBlob {
                    role: "index".into(),
                    digest,
                    size: fetched.bytes.len() as u64,
                    url: Some(key.clone()),
                    etag: fetched.validators.etag,
                    last_modified: fetched.validators.last_modified,
                }],
                // Index documents are not signed; what they name is checked when it is fetched.
                verification: Verification {
                    mode: Checked::No,
                    ..Default::default()
                },
                version: None,
                details: Default::default(),
                fetched_at: now_rfc3339(),
            };
            cache.write_ref(RefKind::Index, &key, &record)?;
            Ok(Some((fetched.bytes, Freshness::Fetched)))
        }
        Ok(None) => {
            let mut details = serde_json::Map::new();
            details.insert("absent".into(), true.into());
            let record = Ref {
                source: key.clone(),
                blobs: Vec::new(),
                verification: Verification {
                    mode: Checked::No,
                    ..Default::default()
                },
                version: None,
                details,
                fetched_at: now_rfc3339(),
            };
            cache.write_ref(RefKind::Index, &key, &record)?;
            Ok(None)
        }
        Err(e) if cached.as_ref().is_some_and(absent) => {
            tracing::warn!("{key} could not be fetched ({e:#}); it was absent (404) last time");
            Ok(None)
        }
        Err(e) => match cached
            .as_ref()
            .and_then(|r| cached_bytes(r).map(|b| (b, age(r))))
        {
            Some((bytes, age)) => {
                tracing::warn!(
                    "{key} could not be fetched ({e:#}); using the cached copy from {} ago",
                    humantime::format_duration(Duration::from_secs(age.as_secs()))
                );
                Ok(Some((bytes, Freshness::Stale)))
            }
            None => Err(e),
        },
    }
}

/// Like `get`, but a missing document is an error.
pub async fn get_required(
    cache: &Cache,
    http: &Http,
    url: &Url,
    offline: bool,
) -> Result<(Vec<u8>, Freshness)> {
    match get(cache, http, url, offline).await? {
        Some(d) => Ok(d),
        None => bail!("{}: not found (404)", redact_url(url)),
    }
}
