//! Pushing to a registry (distribution spec v2): blob existence checks, cross-repository
//! mounts, monolithic blob uploads streamed from files or sent from memory, manifests by tag
//! or digest, and [`push_image`], which puts them together.
//!
//! A client made with [`Registry::for_push`] asks token servers for `pull,push`; a registry
//! that grants less refuses the first write, and that refusal is reported as "no push access
//! to REPO at REGISTRY". Layers can be gigabytes: a file is streamed in bounded chunks with an
//! exact `Content-Length`, never read whole. The registry verifies each blob against the digest
//! in the upload's `?digest=`; we check the `Docker-Content-Digest` it answers with, and for a
//! manifest that the digest is the sha256 of the bytes we sent.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use tokio::io::AsyncReadExt as _;

use super::{Registry, error_detail, shown, shown_url, status_message};
use crate::digest::Digest;
use crate::oci::manifest::Descriptor;

/// How many blobs [`push_image`] uploads at once.
const PARALLEL_UPLOADS: usize = 3;
/// The read size when streaming a file: large enough for few syscalls, small in memory.
const CHUNK: usize = 256 << 10;

/// Where a blob's bytes come from.
#[derive(Debug, Clone)]
pub enum BlobFrom {
    /// A file, streamed (layers).
    File(PathBuf),
    /// Bytes in memory (configs, small documents).
    Bytes(Vec<u8>),
}

/// The answer to opening an upload session, possibly with a mount request.
enum Started {
    Mounted,
    Session(String),
}

impl Registry {
    /// The size of blob `digest` when the repository has it (`HEAD /v2/<repo>/blobs/<digest>`),
    /// `None` when it does not.
    pub async fn blob_exists(&self, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(self.scheme().await?, "blobs", &digest.to_string());
        let resp = self.send(Method::HEAD, &url, Ok).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.failure(resp, "HEAD", "blob").await);
        }
        // A HEAD has no body, so the header is read directly rather than the body's length.
        let size = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .with_context(|| format!("HEAD {url}: {status} without a usable Content-Length"))?;
        Ok(Some(size))
    }

    /// Asks the registry to link blob `digest` from `from_repo` (same registry) into this
    /// repository without uploading it. `false` when it did not (it lacks the blob, or we may
    /// not read `from_repo`); the upload session it opened instead is cancelled.
    pub async fn mount_blob(&self, digest: &Digest, from_repo: &str) -> Result<bool> {
        match self.start_upload(Some((digest, from_repo))).await? {
            Started::Mounted => Ok(true),
            Started::Session(location) => {
                self.cancel_upload(&location).await;
                Ok(false)
            }
        }
    }

    /// Uploads `path` as blob `digest` of `size` bytes: one session, one monolithic PUT with
    /// the file streamed. The file must be exactly `size` bytes; the registry checks the digest.
    pub async fn upload_blob(&self, digest: &Digest, size: u64, path: &Path) -> Result<()> {
        let what = || format!("uploading blob {digest} from {}", path.display());
        let actual = fs_err::metadata(path)
            .with_context(|| format!("reading the size of {}", path.display()))
            .with_context(what)?
            .len();
        if actual != size {
            bail!(
                "{}: the file is {actual} bytes, its descriptor says {size}",
                what()
            );
        }
        let body = |req: reqwest::RequestBuilder| -> Result<reqwest::RequestBuilder> {
            Ok(req
                .header(CONTENT_LENGTH, size)
                .body(file_body(path, size)?))
        };
        self.upload(digest, body).await.with_context(what)
    }

    /// Uploads `bytes` as blob `digest` (for configs and other small blobs).
    pub async fn upload_blob_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let body = |req: reqwest::RequestBuilder| -> Result<reqwest::RequestBuilder> {
            Ok(req.header(CONTENT_LENGTH, bytes.len()).body(bytes.to_vec()))
        };
        self.upload(digest, body)
            .await
            .with_context(|| format!("uploading blob {digest} ({} bytes)", bytes.len()))
    }

    /// PUTs a manifest under `reference` (a tag, or the manifest's own digest) with
    /// `media_type` as its Content-Type; returns its digest, the sha256 of `bytes`.
    pub async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        Ok(self
            .put_manifest_answer(reference, media_type, bytes)
            .await?
            .0)
    }

    /// PUTs a manifest that has a `subject` by its digest; whether the registry indexed it as a
    /// referrer (it answers with `OCI-Subject`, OCI distribution 1.1). When it did not, the
    /// caller keeps the referrers tag schema's index ([`Registry::add_to_referrers_tag`]).
    pub async fn put_referrer(&self, media_type: &str, bytes: &[u8]) -> Result<(Digest, bool)> {
        let digest = Digest::of(bytes);
        self.put_manifest_answer(&digest.to_string(), media_type, bytes)
            .await
    }

    /// Adds `descriptor` to the referrers index of `subject` under the referrers tag schema's
    /// tag `sha256-HEX`, keeping what the index lists already (another tool's referrers).
    pub async fn add_to_referrers_tag(
        &self,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let tag = format!("sha256-{}", subject.hex());
        let existing = self
            .manifest_if_any(&tag, crate::oci::manifest::MAX_MANIFEST_SIZE)
            .await
            .with_context(|| format!("reading the referrers tag {tag}"))?;
        let mut index = match existing {
            Some(raw) => serde_json::from_slice::<crate::oci::manifest::ImageIndex>(&raw.bytes)
                .with_context(|| {
                    format!("the tag {tag} holds something other than a referrers index; not replacing it")
                })?,
            None => {
                crate::oci::manifest::ImageIndex {
                    schema_version: 2,
                    media_type: Some(crate::oci::media::OCI_INDEX.to_string()),
                    artifact_type: None,
                    manifests: Vec::new(),
                    subject: None,
                    annotations: Default::default(),
                }
            }
        };
        if index
            .manifests
            .iter()
            .any(|m| m.digest == descriptor.digest)
        {
            return Ok(());
        }
        index.manifests.push(descriptor.clone());
        let bytes = serde_json::to_vec(&index).context("rendering the referrers index")?;
        self.put_manifest(&tag, crate::oci::media::OCI_INDEX, &bytes)
            .await
            .with_context(|| format!("pushing the referrers index {tag}"))?;
        Ok(())
    }

    async fn put_manifest_answer(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(Digest, bool)> {
        let digest = Digest::of(bytes);
        if let Ok(named) = reference.parse::<Digest>()
            && named != digest
        {
            bail!("pushing a manifest as {reference}: its bytes have digest {digest}");
        }
        let url = self.url(self.scheme().await?, "manifests", reference);
        let resp = self
            .send(Method::PUT, &url, |req| {
                Ok(req
                    .header(CONTENT_TYPE, media_type)
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.to_vec()))
            })
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.failure(resp, "PUT", "manifest").await);
        }
        check_returned_digest(&resp, &digest, "PUT")?;
        Ok((digest, resp.headers().contains_key("oci-subject")))
    }

    /// Opens an upload session (`POST /v2/<repo>/blobs/uploads/`), asking for a mount first
    /// when `mount` is given.
    async fn start_upload(&self, mount: Option<(&Digest, &str)>) -> Result<Started> {
        let mut url = url::Url::parse(&self.url(self.scheme().await?, "blobs", "uploads/"))
            .context("building the upload URL")?;
        if let Some((digest, from)) = mount {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
        }
        let resp = self
            .send(Method::POST, url.as_str(), |req| {
                Ok(req.header(CONTENT_LENGTH, 0))
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount.is_some() => Ok(Started::Mounted),
            StatusCode::ACCEPTED => {
                let location = resp
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .with_context(|| {
                        format!(
                            "POST {}: 202 Accepted without a Location",
                            shown(url.as_str())
                        )
                    })?;
                Ok(Started::Session(resolve_location(resp.url(), location)?))
            }
            _ => Err(self.failure(resp, "POST", "upload session").await),
        }
    }

    /// One upload: a session, then the PUT that completes it with the whole blob. A failed PUT
    /// cancels the session so that the registry does not keep the partial upload around.
    async fn upload(
        &self,
        digest: &Digest,
        body: impl Fn(reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder>,
    ) -> Result<()> {
        let Started::Session(location) = self.start_upload(None).await? else {
            bail!("the registry answered a plain upload request as a mount");
        };
        let put_url = with_digest(&location, digest)?;
        let outcome = async {
            let resp = self
                .send(Method::PUT, &put_url, |req| {
                    body(req.header(CONTENT_TYPE, "application/octet-stream"))
                })
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(self.failure(resp, "PUT", "blob upload").await);
            }
            check_returned_digest(&resp, digest, "PUT")
        }
        .await;
        if outcome.is_err() {
            self.cancel_upload(&location).await;
        }
        outcome
    }

    /// Best effort: an abandoned session only costs the registry some space until its own
    /// clean-up, so a failure here is logged, not reported.
    async fn cancel_upload(&self, location: &str) {
        match self.send(Method::DELETE, location, Ok).await {
            Ok(resp) if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND => {}
            Ok(resp) => tracing::debug!(
                "DELETE {}: {} (cancelling an upload)",
                shown_url(&resp),
                resp.status()
            ),
            Err(e) => tracing::debug!("cancelling an upload: {e:#}"),
        }
    }

    /// The error for an unexpected answer: method, URL, status, and the registry's own error
    /// code and message; refusals of a push say so.
    async fn failure(&self, resp: reqwest::Response, method: &str, what: &str) -> anyhow::Error {
        let url = shown_url(&resp);
        let status = resp.status();
        let detail = error_detail(resp).await;
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return anyhow!(
                "{method} {url}: {status}: {}{detail}",
                self.no_push_access()
            );
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::TOO_MANY_REQUESTS {
            return anyhow!("{method} {url}: {}{detail}", status_message(status, what));
        }
        anyhow!("{method} {url}: the registry answered {status}{detail}")
    }
}

/// Pushes one image: every blob of `blobs` the repository lacks (a few at a time), then the
/// manifest under `tag`. Returns the manifest's digest.
pub async fn push_image(
    registry: &Registry,
    tag: &str,
    manifest_bytes: &[u8],
    media_type: &str,
    blobs: &[(Descriptor, BlobFrom)],
) -> Result<Digest> {
    futures_util::stream::iter(blobs)
        .map(|(desc, from)| ensure_blob(registry, desc, from))
        .buffer_unordered(PARALLEL_UPLOADS)
        .try_collect::<Vec<()>>()
        .await?;
    registry
        .put_manifest(tag, media_type, manifest_bytes)
        .await
        .with_context(|| format!("pushing the manifest of {}:{tag}", registry.reference))
}

/// Uploads the blob of `desc` unless the repository already has it.
async fn ensure_blob(registry: &Registry, desc: &Descriptor, from: &BlobFrom) -> Result<()> {
    match registry.blob_exists(&desc.digest).await? {
        Some(size) if size == desc.size => {
            tracing::debug!("{}: already in the registry", desc.digest);
            return Ok(());
        }
        Some(size) => bail!(
            "the registry has blob {} with {size} bytes, but its descriptor says {}",
            desc.digest,
            desc.size
        ),
        None => {}
    }
    match from {
        BlobFrom::File(path) => registry.upload_blob(&desc.digest, desc.size, path).await,
        BlobFrom::Bytes(bytes) => {
            if bytes.len() as u64 != desc.size {
                bail!(
                    "blob {}: {} bytes in memory, its descriptor says {}",
                    desc.digest,
                    bytes.len(),
                    desc.size
                );
            }
            registry.upload_blob_bytes(&desc.digest, bytes).await
        }
    }
}

/// `size` bytes of `path` as a request body, read in chunks as the connection takes them.
/// A file that turns out shorter fails the request instead of sending a short body.
fn file_body(path: &Path, size: u64) -> Result<reqwest::Body> {
    let file = fs_err::File::open(path).map(fs_err::File::into_file)?;
    let shown_path = path.display().to_string();
    let stream = futures_util::stream::try_unfold(
        (tokio::fs::File::from_std(file), 0u64),
        move |(mut file, sent)| {
            let shown_path = shown_path.clone();
            async move {
                if sent == size {
                    return Ok(None);
                }
                let mut buf = vec![0u8; (size - sent).min(CHUNK as u64) as usize];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{shown_path} ended after {sent} of {size} bytes"),
                    ));
                }
                buf.truncate(n);
                Ok(Some((buf, (file, sent + n as u64))))
            }
        },
    );
    Ok(reqwest::Body::wrap_stream(stream))
}

/// An upload `Location` as an absolute URL: registries send it relative (distribution) or
/// absolute (some behind proxies, or pointing at a storage backend).
pub fn resolve_location(base: &url::Url, location: &str) -> Result<String> {
    let resolved = base.join(location).map_err(|e| {
        anyhow!(
            "the upload Location `{}` is not a URL: {e}",
            shown(location)
        )
    })?;
    if !matches!(resolved.scheme(), "http" | "https") {
        bail!("the upload Location {} is not http(s)", shown(location));
    }
    Ok(resolved.to_string())
}

/// The URL that completes an upload: `location` with `digest=` added to whatever query it
/// already carries (distribution keeps the session's state there).
pub fn with_digest(location: &str, digest: &Digest) -> Result<String> {
    let mut url = url::Url::parse(location)
        .map_err(|e| anyhow!("the upload Location {} is not a URL: {e}", shown(location)))?;
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    Ok(url.to_string())
}

/// Checks the `Docker-Content-Digest` a registry answers with, when it sends one.
fn check_returned_digest(resp: &reqwest::Response, expected: &Digest, method: &str) -> Result<()> {
    let Some(value) = resp.headers().get("docker-content-digest") else {
        return Ok(());
    };
    let url = shown_url(resp);
    let text = value
        .to_str()
        .map_err(|_| anyhow!("{method} {url}: Docker-Content-Digest is not text"))?;
    let got: Digest = text
        .trim()
        .parse()
        .map_err(|_| anyhow!("{method} {url}: Docker-Content-Digest is not a sha256 digest"))?;
    if got != *expected {
        bail!("{method} {url}: the registry stored {got}, but we sent {expected}");
    }
    Ok(())
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
