//! The transport: how bytes cross the network, done once for every source that fetches.
//!
//! Tarballs, simplestreams servers and OCI registries all go through here:
//!
//! - **One client** ([`client`]): the user agent, a bound on redirects, connect and read timeouts,
//!   and the TLS choice. A registry with `--tls-verify=false` also accepts invalid certificates
//!   and, when it does not speak TLS at all, plain http ([`registry_scheme`] probes once).
//! - **One bounded read** ([`read_limited`]): a body read whole (a checksum file, a signature, a
//!   manifest, a token answer, an error body) is refused as soon as it passes its limit, announced
//!   or not; nothing is buffered past it.
//! - **One resumable download** ([`resume`]): a body streams network → sha256 → a partial file in
//!   the cache's tmp dir; it is capped at the size it must have, and published under its digest
//!   only when the digest matches what was expected. An interrupted download leaves the partial
//!   file, and the next pull asks for `Range: bytes=N-` and re-hashes the N bytes it already has.
//!   What names the partial file and what the caller may resume with differ per source:
//!   [`http::Http::download`] keys a URL's partial by the URL and resumes only with `If-Range`
//!   (the URL's content can change), a registry blob's partial is keyed by its digest (its content
//!   cannot), see `source::oci_pull`.
//! - **No secrets in messages** ([`redact`]): URLs lose their user and password, a transport error
//!   is described by its kind and causes only (reqwest's own message repeats the URL with its
//!   credentials), and registries additionally drop queries (a CDN's signature) before showing a
//!   URL. `Authorization` headers are never formatted.
//!
//! Nothing here decides what is trusted: callers pass the digest and size a verified document
//! gave them, and this module refuses bytes that do not match.

pub mod http;
pub mod limits;
pub mod redact;
pub mod resume;
#[cfg(test)]
pub(crate) mod test_server;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt as _;

pub use redact::{describe, redact, redact_url};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 10;

/// Whether a client checks the server's TLS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// The default: a certificate must verify.
    Verify,
    /// `--tls-verify=false` for a registry: any certificate is accepted, and plain http is
    /// tried when the registry does not speak TLS.
    Insecure,
}

impl Tls {
    pub fn from_verify(tls_verify: bool) -> Tls {
        if tls_verify {
            Tls::Verify
        } else {
            Tls::Insecure
        }
    }
}

/// Where each request's redirects led last, by the URL first asked for: an error after a
/// redirect carries only the first URL, and a message should name where it was sent.
static REDIRECTED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Follows at most [`MAX_REDIRECTS`] redirects, and only to http(s) (a redirect elsewhere is
/// returned as the 3xx it is, for the caller to refuse by name); records where each led.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error("too many redirects");
        }
        if !matches!(attempt.url().scheme(), "http" | "https") {
            return attempt.stop();
        }
        if let Some(first) = attempt.previous().first() {
            let mut seen = REDIRECTED.lock().unwrap_or_else(|e| e.into_inner());
            let (first, to) = (first.to_string(), attempt.url().to_string());
            seen.retain(|(f, _)| *f != first);
            // A bounded memory: one pull makes a few requests.
            if seen.len() >= 64 {
                seen.remove(0);
            }
            seen.push((first, to));
        }
        attempt.follow()
    })
}

/// Where a request for `first` was last redirected to, if it was.
pub(crate) fn redirected_to(first: &str) -> Option<String> {
    let seen = REDIRECTED.lock().unwrap_or_else(|e| e.into_inner());
    seen.iter()
        .rev()
        .find(|(f, _)| f == first)
        .map(|(_, to)| to.clone())
}

/// The HTTP client every fetch uses: user agent, redirect bound, timeouts, TLS choice.
pub fn client(tls: Tls) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("sandboxes/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect_policy())
        .connect_timeout(Duration::from_secs(30))
        // Why a read timeout and no total one: a large layer may take long, a stalled one not.
        .read_timeout(Duration::from_secs(60))
        .danger_accept_invalid_certs(tls == Tls::Insecure)
        .build()
        .context("setting up the HTTP client")
}

/// `https`, or — with [`Tls::Insecure`] and a registry at `host` that does not speak TLS — `http`.
pub async fn registry_scheme(client: &reqwest::Client, host: &str, tls: Tls) -> &'static str {
    if tls == Tls::Verify {
        return "https";
    }
    let probe = format!("https://{host}/v2/");
    match client.get(&probe).send().await {
        Ok(_) => "https",
        Err(e) => {
            tracing::debug!(
                "{probe}: {}; trying plain http (--tls-verify=false)",
                describe(e, &probe)
            );
            "http"
        }
    }
}

/// Reads a response body of at most `limit` bytes; larger bodies are refused as they arrive.
/// `url` is the URL as it may be shown (see [`redact`]).
pub async fn read_limited(resp: reqwest::Response, limit: u64, url: &str) -> Result<Vec<u8>> {
    if let Some(len) = resp.content_length()
        && len > limit
    {
        bail!("GET {url}: {len} bytes, more than the {limit} bytes allowed");
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| describe(e, url))?;
        if (out.len() + chunk.len()) as u64 > limit {
            bail!("GET {url}: more than the {limit} bytes allowed");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
