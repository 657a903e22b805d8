//! The registry HTTP API (distribution spec v2), just what pulling needs: manifests by tag
//! or digest, blobs by digest, and the two ways registries ask for credentials (Basic, and
//! Bearer tokens from the realm in `WWW-Authenticate`, anonymous or with credentials).
//!
//! Nothing here trusts what it receives: callers verify every byte against a digest and a
//! size. This module only bounds what it reads (manifests) and never puts a secret or an
//! `Authorization` header into a message: errors name the method, the URL (which never
//! carries credentials) and the status.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};

use super::auth::{Challenge, Credentials, parse_challenge};
use super::manifest::ImageIndex;
use super::media;
use super::reference::ImageReference;
use crate::source::http::describe;

/// What a manifest GET accepts: every manifest and index type `parse_manifest` understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The credential state for one repository.
enum Auth {
    None,
    Basic,
    Bearer(String),
}

/// A client for one repository of one registry.
pub struct Registry {
    client: reqwest::Client,
    reference: ImageReference,
    creds: Option<Credentials>,
    /// `https` or, with `--tls-verify=false` and a registry that does not speak TLS, `http`.
    scheme: Mutex<Option<&'static str>>,
    auth: Mutex<Auth>,
    tls_verify: bool,
}

/// A manifest as the registry sent it.
#[derive(Debug)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    /// The `Content-Type`, when the registry sent one.
    pub content_type: Option<String>,
}

impl Registry {
    pub fn new(
        reference: &ImageReference,
        creds: Option<Credentials>,
        tls_verify: bool,
    ) -> Result<Registry> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sandboxes/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(10))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(!tls_verify)
            .build()
            .context("setting up the HTTP client")?;
        Ok(Registry {
            client,
            reference: reference.clone(),
            creds,
            scheme: Mutex::new(None),
            auth: Mutex::new(Auth::None),
            tls_verify,
        })
    }

    fn url(&self, scheme: &str, kind: &str, what: &str) -> String {
        format!(
            "{scheme}://{}/v2/{}/{kind}/{what}",
            self.reference.api_host(),
            self.reference.repository
        )
    }

    /// Sends a GET with the current credentials; answers a 401 once by authenticating.
    async fn get(&self, kind: &str, what: &str, accept: Option<&str>) -> Result<reqwest::Response> {
        let scheme = self.scheme().await?;
        let url = self.url(scheme, kind, what);
        let mut retried = false;
        loop {
            let mut req = self.client.get(&url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            req = self.authorise(req);
            let resp = req.send().await.map_err(|e| {
                let connect = e.is_connect();
                let err = describe(e, &url);
                if connect && self.tls_verify {
                    anyhow!(
                        "{err}; if this registry speaks plain http (e.g. on localhost), pass \
                         --tls-verify=false"
                    )
                } else {
                    err
                }
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if retried {
                bail!("GET {url}: {}", self.refused_message());
            }
            retried = true;
            let challenge = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge)
                .with_context(|| {
                    format!("GET {url}: 401 Unauthorized without a Basic or Bearer challenge")
                })?;
            self.authenticate(challenge, &url).await?;
        }
    }

    fn refused_message(&self) -> String {
        match &self.creds {
            Some(c) => format!(
                "401 Unauthorized: the registry refused the credentials of user `{}` (from {})",
                c.username, c.origin
            ),
            None => "401 Unauthorized: the registry wants credentials; give them with --creds \
                     USER:PASSWORD or in an auth file ($REGISTRY_AUTH_FILE, \
                     $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json)"
                .to_string(),
        }
    }

    fn authorise(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        match (&*auth, &self.creds) {
            (Auth::Bearer(token), _) => req.bearer_auth(token),
            (Auth::Basic, Some(c)) => req.basic_auth(&c.username, Some(c.secret())),
            _ => req,
        }
    }

    async fn authenticate(&self, challenge: Challenge, url: &str) -> Result<()> {
        let new = match challenge {
            Challenge::Basic => {
                if self.creds.is_none() {
                    bail!("GET {url}: {}", self.refused_message());
                }
                Auth::Basic
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .unwrap_or_else(|| format!("repository:{}:pull", self.reference.repository));
                let mut token_url = url::Url::parse(&realm).with_context(|| {
                    format!("GET {url}: the token realm `{realm}` is not a URL")
                })?;
                if token_url.scheme() != "https" && self.tls_verify {
                    bail!(
                        "GET {url}: the token realm {realm} is not https (pass --tls-verify=false \
                         for a local registry)"
                    );
                }
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scope);
                }
                let shown = crate::source::redact_url(&token_url);
                let mut req = self.client.get(token_url.clone());
                if let Some(c) = &self.creds {
                    req = req.basic_auth(&c.username, Some(c.secret()));
                }
                let resp = req.send().await.map_err(|e| describe(e, &shown))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    bail!("GET {shown}: {}", self.refused_message());
                }
                if !status.is_success() {
                    bail!("GET {shown}: the token server answered {status}");
                }
                let body = read_limited(resp, 1 << 20, &shown).await?;
                Auth::Bearer(parse_token(&body).with_context(|| format!("GET {shown}"))?)
            }
        };
        *self.auth.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// `https`, or `http` when TLS is not required and the registry does not speak it.
    async fn scheme(&self) -> Result<&'static str> {
        if let Some(s) = *self.scheme.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(s);
        }
        let chosen = if self.tls_verify {
            "https"
        } else {
            let probe = format!("https://{}/v2/", self.reference.api_host());
            match self.client.get(&probe).send().await {
                Ok(_) => "https",
                Err(e) => {
                    tracing::debug!("{probe}: {e}; trying plain http (--tls-verify=false)");
                    "http"
                }
            }
        };
        *self.scheme.lock().unwrap_or_else(|e| e.into_inner()) = Some(chosen);
        Ok(chosen)
    }

    /// GETs a manifest or index by tag or digest, refusing bodies over `limit` bytes.
    pub async fn manifest(&self, reference: &str, limit: u64) -> Result<RawManifest> {
        let resp = self
            .get("manifests", reference, Some(MANIFEST_ACCEPT))
            .await?;
        let url = shown_url(&resp);
        let status = resp.status();
        if !status.is_success() {
            bail!("GET {url}: {}", status_message(status, "manifest"));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, limit, &url).await?;
        Ok(RawManifest {
            bytes,
            content_type,
        })
    }

    /// The OCI 1.1 referrers of `digest` (`GET /v2/<repo>/referrers/<digest>`), or `None` when
    /// the registry does not offer that API (404, 400, 405: distribution 2.x, for one).
    pub async fn referrers(&self, digest: &crate::verify::Digest) -> Result<Option<ImageIndex>> {
        let resp = self
            .get("referrers", &digest.to_string(), Some(media::OCI_INDEX))
            .await?;
        let url = shown_url(&resp);
        let status = resp.status();
        if matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED
        ) {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("GET {url}: {}", status_message(status, "referrers list"));
        }
        let bytes = read_limited(resp, super::manifest::MAX_MANIFEST_SIZE, &url).await?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {url}: the referrers list is not an OCI index"))?;
        Ok(Some(index))
    }

    /// GETs a blob (or, for digests the registry keeps as manifests, the manifest), as a
    /// response whose body the caller streams and verifies.
    pub async fn blob(&self, digest: &crate::verify::Digest) -> Result<reqwest::Response> {
        let resp = self.get("blobs", &digest.to_string(), None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            // Manifests inside an index live under /manifests/, not /blobs/, on most registries.
            let alt = self
                .get("manifests", &digest.to_string(), Some(MANIFEST_ACCEPT))
                .await?;
            if alt.status().is_success() {
                return Ok(alt);
            }
        }
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "GET {}: {}",
                shown_url(&resp),
                status_message(status, "blob")
            );
        }
        Ok(resp)
    }
}

/// A response's URL for messages: without its query, which on a CDN redirect carries a
/// short-lived signature.
pub fn shown_url(resp: &reqwest::Response) -> String {
    let mut u = resp.url().clone();
    u.set_query(None);
    crate::source::redact_url(&u)
}

fn status_message(status: StatusCode, what: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => format!("404 Not Found: the registry has no such {what}"),
        StatusCode::FORBIDDEN => "403 Forbidden: the registry denies access".to_string(),
        StatusCode::TOO_MANY_REQUESTS => "429 Too Many Requests: rate-limited".to_string(),
        s => format!("the registry answered {s}"),
    }
}

/// Reads a response body of at most `limit` bytes; larger bodies are refused as they arrive.
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

/// The token of a token server's JSON answer (`token`, or OAuth's `access_token`).
pub fn parse_token(body: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct TokenAnswer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: TokenAnswer = serde_json::from_slice(body)
        .map_err(|_| anyhow!("the token server's answer is not the expected JSON"))?;
    t.token
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .context("the token server's answer holds no token")
}

/// The media type to trust for a top-level manifest: its `mediaType` field, else the
/// `Content-Type` the registry sent, else (Docker schema 2 always has the field) OCI manifest.
pub fn top_media_type(bytes: &[u8], content_type: Option<&str>) -> String {
    #[derive(serde::Deserialize)]
    struct Peek {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let peek: Option<Peek> = serde_json::from_slice(bytes).ok();
    if let Some(mt) = peek.as_ref().and_then(|p| p.media_type.clone()) {
        return mt;
    }
    if let Some(ct) = content_type
        && (ct.contains("manifest") || ct.contains("index"))
    {
        return ct.to_string();
    }
    if peek.is_some_and(|p| p.manifests.is_some()) {
        media::OCI_INDEX.to_string()
    } else {
        media::OCI_MANIFEST.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A registry that wants a Bearer token from its own `/token` realm: records each request
    /// line with its `Authorization` header, and serves `manifest` to the right token only,
    /// with or without a `Content-Length`.
    fn token_registry(manifest: Vec<u8>, announce: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut req = Vec::new();
                let mut byte = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        // A TLS ClientHello (the https probe of --tls-verify=false): hang up.
                        Ok(1) if req.is_empty() && byte[0] == 0x16 => break,
                        Ok(1) => req.push(byte[0]),
                        _ => break,
                    }
                }
                let text = String::from_utf8_lossy(&req).to_string();
                let Some(line) = text.lines().next().filter(|l| l.starts_with("GET")) else {
                    continue;
                };
                let auth = text
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: "))
                    .unwrap_or("-")
                    .to_string();
                log.lock().unwrap().push(format!("{line} | {auth}"));
                let (status, headers, body) = if line.contains("/token?") {
                    ("200 OK", String::new(), br#"{"token":"tok-1"}"#.to_vec())
                } else if auth == "Bearer tok-1" {
                    (
                        "200 OK",
                        format!("Content-Type: {}\r\n", media::OCI_MANIFEST),
                        manifest.clone(),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        format!(
                            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"svc\",scope=\"repository:team/app:pull\"\r\n"
                        ),
                        Vec::new(),
                    )
                };
                let length = if announce || status != "200 OK" {
                    format!("Content-Length: {}\r\n", body.len())
                } else {
                    String::new()
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\n{headers}{length}Connection: close\r\n\r\n"
                );
                let _ = conn.write_all(&body);
            }
        });
        (port, seen)
    }

    fn pull_manifest(port: u16, creds: Option<Credentials>) -> Result<RawManifest> {
        let reference = ImageReference::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        let registry = Registry::new(&reference, creds, false).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(registry.manifest("1", 4 << 20))
    }

    #[test]
    fn the_bearer_flow_fetches_a_token_anonymously_or_with_credentials() {
        let (port, seen) = token_registry(b"BODY".to_vec(), true);
        let m = pull_manifest(port, None).unwrap();
        assert_eq!(m.bytes, b"BODY");
        assert_eq!(m.content_type.as_deref(), Some(media::OCI_MANIFEST));
        let log = seen.lock().unwrap().clone();
        assert_eq!(log.len(), 3, "{log:?}");
        assert!(log[0].starts_with("GET /v2/team/app/manifests/1 ") && log[0].ends_with("| -"));
        assert!(
            log[1].starts_with("GET /token?service=svc&scope=repository%3Ateam%2Fapp%3Apull ")
                && log[1].ends_with("| -"),
            "an anonymous token request: {log:?}"
        );
        assert!(log[2].ends_with("| Bearer tok-1"), "{log:?}");

        let (port, seen) = token_registry(b"BODY".to_vec(), true);
        pull_manifest(port, Some(Credentials::new("u", "p", "test"))).unwrap();
        let log = seen.lock().unwrap().clone();
        // base64("u:p") = "dTpw"
        assert!(log[1].ends_with("| Basic dTpw"), "{log:?}");
    }

    #[test]
    fn tokens_and_media_types() {
        assert_eq!(parse_token(br#"{"token":"t1"}"#).unwrap(), "t1");
        assert_eq!(parse_token(br#"{"access_token":"t2"}"#).unwrap(), "t2");
        assert!(parse_token(br#"{"token":""}"#).is_err());
        let err = parse_token(b"secret-ish garbage").unwrap_err();
        assert!(!err.to_string().contains("garbage"));
        assert_eq!(
            top_media_type(br#"{"mediaType":"x/y","layers":[]}"#, Some("a/b")),
            "x/y"
        );
        assert_eq!(
            top_media_type(br#"{"manifests":[]}"#, Some("text/plain")),
            media::OCI_INDEX
        );
        assert_eq!(
            top_media_type(br#"{"layers":[]}"#, Some(media::DOCKER_MANIFEST)),
            media::DOCKER_MANIFEST
        );
    }

    #[test]
    fn manifests_over_the_limit_are_refused_announced_or_not() {
        for announce in [true, false] {
            let (port, _) = token_registry(vec![b' '; (4 << 20) + 1], announce);
            let err = pull_manifest(port, None).unwrap_err();
            assert!(
                err.to_string()
                    .contains("more than the 4194304 bytes allowed"),
                "{err:#}"
            );
        }
    }
}
