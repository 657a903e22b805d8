//! The registry HTTP API (distribution spec v2), what pulling needs: manifests by tag or
//! digest, blobs by digest, and the two ways registries ask for credentials (Basic, and
//! Bearer tokens from the realm in `WWW-Authenticate`, anonymous or with credentials).
//! Pushing (`push.rs`) shares the request and credential flow here; a client is made for
//! one [`Access`], which decides the token scope it asks for.
//!
//! Nothing here trusts what it receives: callers verify every byte against a digest and a
//! size. This module only bounds what it reads (manifests) and never puts a secret or an
//! `Authorization` header into a message: errors name the method, the URL (which never
//! carries credentials) and the status.

pub mod auth;
pub mod push;

use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::oci::manifest::ImageIndex;
use crate::oci::media;
use crate::oci::reference::ImageReference;
use crate::transport::{self, Tls, describe, read_limited, redact, redact_url};
use auth::{Challenge, Credentials, parse_challenge};

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

/// What a client is for: the Bearer token scope it asks for, and how a refusal is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// The token scope for `access` to `repository` (`repository:REPO:pull` or `…:pull,push`:
/// a push also reads, to check which blobs are already there).
pub fn token_scope(repository: &str, access: Access) -> String {
    match access {
        Access::Pull => format!("repository:{repository}:pull"),
        Access::Push => format!("repository:{repository}:pull,push"),
    }
}

/// A client for one repository of one registry.
pub struct Registry {
    client: reqwest::Client,
    pub(super) reference: ImageReference,
    creds: Option<Credentials>,
    access: Access,
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
    /// A client that pulls.
    pub fn new(
        reference: &ImageReference,
        creds: Option<Credentials>,
        tls_verify: bool,
    ) -> Result<Registry> {
        Registry::with_access(reference, creds, tls_verify, Access::Pull)
    }

    /// A client that pushes (and reads what it needs to: blob existence).
    pub fn for_push(
        reference: &ImageReference,
        creds: Option<Credentials>,
        tls_verify: bool,
    ) -> Result<Registry> {
        Registry::with_access(reference, creds, tls_verify, Access::Push)
    }

    fn with_access(
        reference: &ImageReference,
        creds: Option<Credentials>,
        tls_verify: bool,
        access: Access,
    ) -> Result<Registry> {
        let client = transport::client(Tls::from_verify(tls_verify))?;
        Ok(Registry {
            client,
            reference: reference.clone(),
            creds,
            access,
            scheme: Mutex::new(None),
            auth: Mutex::new(Auth::None),
            tls_verify,
        })
    }

    pub(super) fn url(&self, scheme: &str, kind: &str, what: &str) -> String {
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
        self.send(Method::GET, &url, |req| {
            Ok(match accept {
                Some(a) => req.header(ACCEPT, a),
                None => req,
            })
        })
        .await
    }

    /// Sends a request to `url` (absolute) with the current credentials, answering a 401 once
    /// by authenticating. `build` adds headers and body; it runs again for the retry, so a
    /// streamed body is opened afresh. Credentials go only to this registry's own host: an
    /// upload `Location` elsewhere (a storage backend) gets none.
    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        build: impl Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder>,
    ) -> Result<reqwest::Response> {
        let shown = shown(url);
        let own = self.is_own(url);
        let mut retried = false;
        loop {
            let mut req = build(self.client.request(method.clone(), url))?;
            if own {
                req = self.authorise(req);
            }
            let resp = req.send().await.map_err(|e| {
                let connect = e.is_connect();
                let err = describe(e, &shown);
                if connect && self.tls_verify {
                    anyhow!(
                        "{err}; if this registry speaks plain http (e.g. on localhost), pass \
                         --tls-verify=false"
                    )
                } else {
                    err
                }
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED || !own {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            if retried {
                let detail = error_detail(resp).await;
                bail!("{method} {shown}: {}{detail}", self.refused_message());
            }
            retried = true;
            let challenge = challenge.with_context(|| {
                format!("{method} {shown}: 401 Unauthorized without a Basic or Bearer challenge")
            })?;
            self.authenticate(challenge, &method, &shown).await?;
        }
    }

    /// True when `url` is on this registry's host (and scheme), so it may get credentials.
    fn is_own(&self, url: &str) -> bool {
        let scheme = *self.scheme.lock().unwrap_or_else(|e| e.into_inner());
        scheme.is_some_and(|s| {
            url.strip_prefix(&format!("{s}://{}", self.reference.api_host()))
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    fn refused_message(&self) -> String {
        if self.access == Access::Push {
            return self.no_push_access();
        }
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

    /// Why a push was refused: the registry (or its token server) grants no push here.
    pub(super) fn no_push_access(&self) -> String {
        let who = match &self.creds {
            Some(c) => format!("as user `{}` from {}", c.username, c.origin),
            None => "without credentials".to_string(),
        };
        format!(
            "no push access to {} at {} (check --creds / auth file; tried {who})",
            self.reference.repository, self.reference.registry
        )
    }

    fn authorise(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        match (&*auth, &self.creds) {
            (Auth::Bearer(token), _) => req.bearer_auth(token),
            (Auth::Basic, Some(c)) => req.basic_auth(&c.username, Some(c.secret())),
            _ => req,
        }
    }

    async fn authenticate(&self, challenge: Challenge, method: &Method, url: &str) -> Result<()> {
        let new = match challenge {
            Challenge::Basic => {
                if self.creds.is_none() {
                    bail!("{method} {url}: {}", self.refused_message());
                }
                Auth::Basic
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                // Ours, and the challenge's when it differs (a mount also reads its source).
                let ours = token_scope(&self.reference.repository, self.access);
                let mut scopes = vec![ours.clone()];
                scopes.extend(scope.filter(|s| *s != ours));
                let mut token_url = url::Url::parse(&realm).with_context(|| {
                    format!("{method} {url}: the token realm `{realm}` is not a URL")
                })?;
                if token_url.scheme() != "https" && self.tls_verify {
                    bail!(
                        "{method} {url}: the token realm {realm} is not https (pass \
                         --tls-verify=false for a local registry)"
                    );
                }
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let shown = redact_url(&token_url);
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
    pub(super) async fn scheme(&self) -> Result<&'static str> {
        if let Some(s) = *self.scheme.lock().unwrap_or_else(|e| e.into_inner()) {
            return Ok(s);
        }
        let chosen = transport::registry_scheme(
            &self.client,
            self.reference.api_host(),
            Tls::from_verify(self.tls_verify),
        )
        .await;
        *self.scheme.lock().unwrap_or_else(|e| e.into_inner()) = Some(chosen);
        Ok(chosen)
    }

    /// GETs a manifest or index by tag or digest, refusing bodies over `limit` bytes.
    pub async fn manifest(&self, reference: &str, limit: u64) -> Result<RawManifest> {
        self.manifest_if_any(reference, limit)
            .await?
            .with_context(|| format!("the registry has no manifest {reference} (404)"))
    }

    /// [`Registry::manifest`], `None` when the registry answers 404 (no such tag).
    pub async fn manifest_if_any(
        &self,
        reference: &str,
        limit: u64,
    ) -> Result<Option<RawManifest>> {
        let resp = self
            .get("manifests", reference, Some(MANIFEST_ACCEPT))
            .await?;
        let url = shown_url(&resp);
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            bail!("GET {url}: {}", status_message(status, "manifest"));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_limited(resp, limit, &url).await?;
        Ok(Some(RawManifest {
            bytes,
            content_type,
        }))
    }

    /// The referrers of `digest`: the OCI 1.1 API's list, else the index the referrers tag
    /// schema keeps under the tag `sha256-HEX` (what clients write where the API is missing).
    pub async fn referrers_or_tag(
        &self,
        digest: &crate::digest::Digest,
    ) -> Result<Option<ImageIndex>> {
        if let Some(index) = self.referrers(digest).await? {
            return Ok(Some(index));
        }
        let tag = format!("sha256-{}", digest.hex());
        let Some(raw) = self
            .manifest_if_any(&tag, crate::oci::manifest::MAX_MANIFEST_SIZE)
            .await?
        else {
            return Ok(None);
        };
        // A tag of that name that is not an index is not ours to read as one.
        Ok(serde_json::from_slice::<ImageIndex>(&raw.bytes).ok())
    }

    /// The OCI 1.1 referrers of `digest` (`GET /v2/<repo>/referrers/<digest>`), or `None` when
    /// the registry does not offer that API (404, 400, 405: distribution 2.x, for one).
    pub async fn referrers(&self, digest: &crate::digest::Digest) -> Result<Option<ImageIndex>> {
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
        let bytes = read_limited(resp, crate::oci::manifest::MAX_MANIFEST_SIZE, &url).await?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("GET {url}: the referrers list is not an OCI index"))?;
        Ok(Some(index))
    }

    /// GETs a blob (or, for digests the registry keeps as manifests, the manifest), as a
    /// response whose body the caller streams and verifies.
    pub async fn blob(&self, digest: &crate::digest::Digest) -> Result<reqwest::Response> {
        self.blob_from(digest, 0).await
    }

    /// Like [`Registry::blob`], from byte `from` on: `Range: bytes=FROM-` (with the registry's
    /// credentials, and again on the retry after a 401). The answer is a 206 that the caller
    /// checks starts at `from`, or a 200 with the whole blob from a registry (or storage
    /// redirect) that ignores ranges. A 416 (the partial bytes are not a prefix of anything the
    /// registry has) is answered by asking for the whole blob.
    pub async fn blob_from(
        &self,
        digest: &crate::digest::Digest,
        from: u64,
    ) -> Result<reqwest::Response> {
        let scheme = self.scheme().await?;
        let get = |kind: &'static str, accept: Option<&'static str>, from: u64| {
            let url = self.url(scheme, kind, &digest.to_string());
            async move {
                self.send(Method::GET, &url, |mut req| {
                    if let Some(a) = accept {
                        req = req.header(ACCEPT, a);
                    }
                    if from > 0 {
                        req = req.header(RANGE, format!("bytes={from}-"));
                    }
                    Ok(req)
                })
                .await
            }
        };
        let mut resp = get("blobs", None, from).await?;
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && from > 0 {
            tracing::info!(
                "{}: range from byte {from} refused; asking for all of it",
                shown_url(&resp)
            );
            resp = get("blobs", None, 0).await?;
        }
        if resp.status() == StatusCode::NOT_FOUND {
            // Manifests inside an index live under /manifests/, not /blobs/, on most registries.
            let alt = get("manifests", Some(MANIFEST_ACCEPT), 0).await?;
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
    redact_url(&u)
}

/// A URL for messages: without credentials, query (an upload session's state, a storage
/// backend's signature) or fragment.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            redact_url(&u)
        }
        Err(_) => redact(url),
    }
}

/// `: CODE: message; …` from a registry's JSON error body (read at most 64 KiB), or nothing
/// when the body is not one. Headers are never echoed.
pub(super) async fn error_detail(resp: reqwest::Response) -> String {
    let url = shown_url(&resp);
    match read_limited(resp, 64 << 10, &url).await {
        Ok(body) => parse_error_body(&body).map_or_else(String::new, |d| format!(": {d}")),
        Err(_) => String::new(),
    }
}

/// The `code: message` pairs of distribution's error body `{"errors":[{"code","message"}]}`,
/// joined by `; `. Control characters are dropped and each part is cut at 200 characters: the
/// text comes from the server and ends up on a terminal.
pub fn parse_error_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).take(200).collect() };
    let body: Body = serde_json::from_slice(body).ok()?;
    let parts: Vec<String> = body
        .errors
        .iter()
        .take(5)
        .filter_map(|e| match (&e.code, &e.message) {
            (Some(c), Some(m)) => Some(format!("{}: {}", clean(c), clean(m))),
            (Some(s), None) | (None, Some(s)) => Some(clean(s)),
            (None, None) => None,
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub(super) fn status_message(status: StatusCode, what: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => format!("404 Not Found: the registry has no such {what}"),
        StatusCode::FORBIDDEN => "403 Forbidden: the registry denies access".to_string(),
        StatusCode::TOO_MANY_REQUESTS => "429 Too Many Requests: rate-limited".to_string(),
        s => format!("the registry answered {s}"),
    }
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
mod tests;
