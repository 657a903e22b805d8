//! HTTP: small fetches, and resumable, conditional, streaming downloads into the cache.
//!
//! Downloads stream network → sha256 → temp file; nothing is held whole in memory. An
//! interrupted download leaves its partial file and validators in the cache's tmp dir, and the
//! next pull resumes it with `Range` + `If-Range`. Messages name the URL without credentials.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{
    CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE,
    LAST_MODIFIED, RANGE,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::redact_url;
use crate::atomic::write_file;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::digest::Hasher;
use crate::progress::Progress;

/// A check of a complete download before it is published (e.g. a detached signature over it).
pub type PartCheck<'a> = dyn Fn(&Path) -> Result<()> + Sync + 'a;

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

/// Redirects followed at most.
const MAX_REDIRECTS: usize = 10;

impl Http {
    pub fn new() -> Result<Http> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sandboxes/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .context("setting up the HTTP client")?;
        Ok(Http { client })
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
        if !status.is_success() {
            bail!("GET {shown}: the server answered {status}");
        }
        let validators = Validators::from_headers(resp.headers());
        if resp.content_length().is_some_and(|n| n > limit) {
            bail!(
                "GET {shown}: {} bytes is more than the {limit} bytes allowed for this file",
                resp.content_length().unwrap_or(0)
            );
        }
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| describe(e, &shown))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                bail!("GET {shown}: more than the {limit} bytes allowed for this file");
            }
        }
        Ok(Some(Fetched { bytes, validators }))
    }

    /// Downloads `url` into the cache. With `cached`, sends a conditional request and returns
    /// `NotModified` on 304. With `expected`, a digest mismatch discards the bytes. Resumes a
    /// partial download left by an interrupted pull of the same URL. The caller holds the
    /// per-URL lock. `check` runs on the complete file before it is published (a signature over
    /// the file itself); its error discards the bytes.
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
        if !status.is_success() {
            bail!("GET {shown}: the server answered {status}");
        }
        let validators = Validators::from_headers(resp.headers());

        let mut hasher = Hasher::new();
        let mut file;
        let mut offset = 0u64;
        let resuming = status == StatusCode::PARTIAL_CONTENT;
        if resuming {
            let p = partial.as_ref().ok_or_else(|| {
                anyhow!(
                    "GET {shown}: the server sent a partial response (206) that was not asked for"
                )
            })?;
            let start = content_range_start(resp.headers());
            if start != Some(p.len) {
                bail!(
                    "GET {shown}: asked to resume at byte {}, the server answered with range {:?}",
                    p.len,
                    start
                );
            }
            file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&part_path)
                .with_context(|| format!("opening {}", part_path.display()))?;
            // Re-hash what we have: the digest covers the whole file.
            let mut buf = vec![0u8; 256 * 1024];
            let mut reader = (&file).take(p.len);
            loop {
                let n = reader
                    .read(&mut buf)
                    .with_context(|| format!("reading {}", part_path.display()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if hasher.len() != p.len {
                bail!(
                    "partial download {} shrank while resuming",
                    part_path.display()
                );
            }
            file.seek(SeekFrom::Start(p.len))
                .with_context(|| format!("seeking {}", part_path.display()))?;
            offset = p.len;
        } else {
            file = File::create(&part_path)
                .with_context(|| format!("creating {}", part_path.display()))?;
            let meta = PartialMeta {
                url: url.as_str().to_string(),
                validators: validators.clone(),
            };
            write_file(
                &meta_path,
                &serde_json::to_vec(&meta).context("encoding partial download record")?,
            )?;
        }
        let total = resp.content_length().map(|n| n + offset);
        progress.start_bytes(total, offset);

        let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| describe(e, &shown)).with_context(|| {
                format!(
                    "the partial file stays in {} for the next pull to resume",
                    part_path.display()
                )
            })?;
            hasher.update(&chunk);
            out.write_all(&chunk)
                .with_context(|| format!("writing {}", part_path.display()))?;
            progress.inc(chunk.len() as u64);
            if let Some(t) = total
                && hasher.len() > t
            {
                bail!("GET {shown}: the server sent more than the {t} bytes it announced");
            }
        }
        out.flush()
            .with_context(|| format!("writing {}", part_path.display()))?;
        drop(out);
        progress.finish();
        let size = hasher.len();
        if let Some(t) = total
            && size != t
        {
            bail!(
                "GET {shown}: the download ended after {size} of {t} bytes; pull again to resume"
            );
        }
        file.sync_all()
            .with_context(|| format!("syncing {}", part_path.display()))?;
        drop(file);
        let digest = hasher.finish();
        let _ = fs::remove_file(&meta_path);
        if let Some(expected) = expected
            && *expected != digest
        {
            let _ = fs::remove_file(&part_path);
            bail!(
                "{shown}: checksum mismatch: expected {expected}, downloaded bytes have {digest}; nothing was stored"
            );
        }
        if let Some(check) = check
            && let Err(e) = check(&part_path)
        {
            let _ = fs::remove_file(&part_path);
            return Err(e.context(format!("{shown}: nothing was stored")));
        }
        cache.publish_file(&part_path, &digest)?;
        Ok(Download::Fetched {
            digest,
            size,
            validators,
        })
    }
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
        let len = fs::metadata(part).ok()?.len();
        let meta: PartialMeta = serde_json::from_slice(&fs::read(meta).ok()?).ok()?;
        (len > 0 && meta.url == url && !meta.validators.is_empty()).then_some(Partial {
            len,
            validators: meta.validators,
        })
    }
}

fn content_range_start(h: &HeaderMap) -> Option<u64> {
    // `bytes START-END/TOTAL`
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Says what kind of failure a transport error was (DNS, refused, TLS, timeout), for `url`.
pub fn describe(e: reqwest::Error, url: &str) -> anyhow::Error {
    let chain = {
        let mut parts = Vec::new();
        let mut src: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = src {
            parts.push(s.to_string());
            src = s.source();
        }
        parts.join(": ").to_lowercase()
    };
    let kind = if e.is_timeout() {
        "timed out"
    } else if chain.contains("dns error")
        || chain.contains("failed to lookup address")
        || chain.contains("name or service not known")
    {
        "DNS lookup failed"
    } else if chain.contains("connection refused") {
        "connection refused"
    } else if chain.contains("certificate")
        || chain.contains("tls")
        || chain.contains("handshake")
        // A TCP connection was made but the TLS layer failed (e.g. a plain-HTTP server).
        || (url.starts_with("https:") && e.is_connect() && !chain.contains("tcp connect error"))
    {
        "TLS failed"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "transfer failed"
    };
    // reqwest's own message repeats the URL with credentials; keep only the causes.
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    let detail = if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join(": "))
    };
    anyhow!("GET {url}: {kind}{detail}")
}
