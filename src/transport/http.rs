//! A URL's files: small fetches read whole and bounded, and conditional, resumable downloads
//! into the cache (tarballs, simplestreams files).
//!
//! A download of a URL sends `If-None-Match` / `If-Modified-Since` with the validators of the
//! copy the cache has, and resumes a partial file with `Range` + `If-Range`: the partial file is
//! keyed by the URL, and its sidecar record (`download-<id>.json`) keeps the URL and the
//! validators it was started with, so a URL whose content changed restarts from 0 (the server
//! answers 200). The streaming, hashing and publishing are [`super::resume`]'s.

use std::path::Path;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::resume::{self, PartCheck};
use super::{Tls, describe, read_limited, redact_url};
use crate::atomic::write_file;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::progress::Progress;

/// The HTTP validators of a response, used for conditional requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl Validators {
    fn from_headers(h: &HeaderMap) -> Self {
        let get = |name| {
            h.get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        Validators {
            etag: get(ETAG),
            last_modified: get(LAST_MODIFIED),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// A small file fetched whole.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub validators: Validators,
}

#[derive(Debug)]
pub enum Download {
    /// The server said the cached copy is current (304).
    NotModified,
    /// New bytes, published in the cache under `digest`.
    Fetched {
        digest: Digest,
        size: u64,
        validators: Validators,
    },
}

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http> {
        Ok(Http {
            client: super::client(Tls::Verify)?,
        })
    }

    /// GETs a small file (checksums, signatures, `.nspawn`, indexes). `Ok(None)` on 404/410.
    pub async fn get_small(&self, url: &Url, limit: u64) -> Result<Option<Fetched>> {
        let shown = redact_url(url);
        let resp = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| describe(e, &shown))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Ok(None);
        }
        if let Some(why) = super::redact::unfollowed_redirect(status, location(&resp), &shown) {
            bail!(why);
        }
        if !status.is_success() {
            bail!("GET {shown}: the server answered {status}");
        }
        let validators = Validators::from_headers(resp.headers());
        let bytes = read_limited(resp, limit, &shown).await?;
        Ok(Some(Fetched { bytes, validators }))
    }

    /// Whether `url` is there, by a HEAD request: `Some(false)` on 404/410, `Some(true)` on
    /// success, `None` when the server does not say (it refuses HEAD, or fails).
    pub async fn exists(&self, url: &Url) -> Option<bool> {
        let resp = self.client.head(url.clone()).send().await.ok()?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            Some(false)
        } else if status.is_success() {
            Some(true)
        } else {
            None
        }
    }

    /// Downloads `url` into the cache. With `cached`, sends a conditional request and returns
    /// `NotModified` on 304. With `expected`, a digest mismatch discards the bytes. Resumes a
    /// partial download left by an interrupted pull of the same URL, with `If-Range`: a URL's
    /// content can change, and only the validators it had tell whether the partial bytes are
    /// still part of it. The caller holds the per-URL lock. `check` runs on the complete file
    /// before it is published (a signature over the file itself); its error discards the bytes.
    pub async fn download(
        &self,
        cache: &Cache,
        url: &Url,
        cached: Option<&Validators>,
        expected: Option<&Digest>,
        check: Option<&PartCheck<'_>>,
        progress: &Progress,
    ) -> Result<Download> {
        let shown = redact_url(url);
        let (part_path, meta_path) = cache.layout().partial_download(url.as_str());
        let partial = Partial::load(&part_path, &meta_path, url.as_str());

        let mut req = self.client.get(url.clone());
        let mut asked_from = 0;
        if let Some(p) = &partial {
            // Resume only if the server's copy is the one we started (If-Range).
            let validator = p
                .validators
                .etag
                .clone()
                .or_else(|| p.validators.last_modified.clone());
            if let Some(v) = validator {
                req = req
                    .header(RANGE, format!("bytes={}-", p.len))
                    .header(IF_RANGE, v);
                asked_from = p.len;
                tracing::info!("resuming {shown} at byte {}", p.len);
            }
        } else if let Some(v) = cached {
            if let Some(etag) = &v.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &v.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let resp = req.send().await.map_err(|e| describe(e, &shown))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Download::NotModified);
        }
        if let Some(why) = super::redact::unfollowed_redirect(status, location(&resp), &shown) {
            bail!(why);
        }
        let content_range = resp
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok());
        if status == StatusCode::RANGE_NOT_SATISFIABLE
            && asked_from > 0
            && resume::range_total(content_range) == Some(asked_from)
        {
            // The partial file already holds the whole unchanged file (If-Range held): a
            // process died after receiving it, before publishing it. Its bytes are checked as
            // any download's are.
            tracing::info!("{shown}: the partial download is complete; checking it");
            let got = resume::complete(&part_path)?;
            let _ = fs_err::remove_file(&meta_path);
            resume::publish(cache, &part_path, &got, expected, check, &shown)?;
            return Ok(Download::Fetched {
                digest: got.digest,
                size: got.size,
                validators: Validators::from_headers(resp.headers()),
            });
        }
        if !status.is_success() {
            bail!("GET {shown}: the server answered {status}");
        }
        let validators = Validators::from_headers(resp.headers());
        if status != StatusCode::PARTIAL_CONTENT {
            // A fresh start: the record of what the partial file belongs to is written before
            // the file grows again, and the old bytes go first so the record never describes
            // bytes of another version.
            resume::discard(&part_path);
            let meta = PartialMeta {
                url: url.as_str().to_string(),
                validators: validators.clone(),
            };
            write_file(
                &meta_path,
                &serde_json::to_vec(&meta).context("encoding partial download record")?,
            )?;
        }
        let body = resume::Body {
            part: &part_path,
            asked_from,
            size: None,
            shown: &shown,
        };
        let got = match resume::receive(resp, &body, progress).await {
            Ok(got) => got,
            Err(e) => {
                // A partial file that was freed (a full disk, a body too big) has nothing
                // left to describe.
                if !part_path.exists() {
                    let _ = fs_err::remove_file(&meta_path);
                }
                return Err(e);
            }
        };
        let _ = fs_err::remove_file(&meta_path);
        resume::publish(cache, &part_path, &got, expected, check, &shown)?;
        Ok(Download::Fetched {
            digest: got.digest,
            size: got.size,
            validators,
        })
    }
}

/// A response's `Location` header, when it is text.
fn location(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
}

#[derive(Debug, Serialize, Deserialize)]
struct PartialMeta {
    url: String,
    validators: Validators,
}

struct Partial {
    len: u64,
    validators: Validators,
}

impl Partial {
    /// A resumable partial download of `url`, if one is there and can be resumed safely.
    fn load(part: &Path, meta: &Path, url: &str) -> Option<Partial> {
        let len = fs_err::metadata(part).ok()?.len();
        let meta: PartialMeta = serde_json::from_slice(&fs_err::read(meta).ok()?).ok()?;
        (len > 0 && meta.url == url && !meta.validators.is_empty()).then_some(Partial {
            len,
            validators: meta.validators,
        })
    }
}
