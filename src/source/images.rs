//! `images:ALIAS[@VERSION]`: LXC images from a simplestreams server (or a legacy
//! `meta/1.0/index-system` server), verified with the signed `SHA256SUMS` of their build.
//!
//! Trust chain: the products file (unsigned) names the build and the rootfs digest; the build's
//! `SHA256SUMS` must carry a good signature (`SHA256SUMS.asc`, or a per-file `rootfs.tar.xz.asc`)
//! by a trusted key, and must name the same digest; the downloaded bytes must match it. The
//! built-in LXC key is trusted for the default server only. A version older than the one last
//! pulled for the same alias, server and arch is refused (rollback protection).

use std::io::BufReader;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use url::Url;

use super::documents::{self, Freshness};
use super::fetch::{Wanted, fetch_file};
use super::images_verify::{BuildCheck, IMAGE_SIGNATURE, verify_build, verify_from_cache};
use super::simplestreams::{self as ss, Alias};
use super::site::Site;
use super::sums;
use crate::cache::refs::now_rfc3339;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::digest::Digest;
use crate::progress::ProgressMode;
use crate::transport::http::Http;
use crate::transport::redact_url;
use crate::transport::resume::PartCheck;
use crate::verify::checksums;
use crate::verify::mode::VerifyMode;
use crate::verify::openpgp::{SignatureCheck, TrustStore, verify_detached};

pub const DEFAULT_SERVER: &str = "https://images.linuxcontainers.org";

#[derive(Clone)]
pub struct ImagesRequest<'a> {
    pub alias: Alias,
    pub arch: String,
    /// The server root, with a trailing `/`.
    pub server: Url,
    pub mode: VerifyMode,
    pub trust: Option<&'a TrustStore>,
    pub offline: bool,
    pub allow_downgrade: bool,
    /// A ref to verify from the cache in place of the cache's own (`cache import`): the build
    /// it records is checked, nothing is fetched and no ref is written.
    pub candidate: Option<&'a Ref>,
}

/// The server URL a user gave (or the default), normalised to end in `/`.
pub fn server_url(given: Option<&str>) -> Result<Url> {
    let s = given.unwrap_or(DEFAULT_SERVER);
    let mut url = Url::parse(s).with_context(|| {
        format!(
            "`{}` is not a valid image server URL",
            crate::transport::redact(s)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "image server {} must be an http:// or https:// URL",
            redact_url(&url)
        );
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub fn is_default_server(url: &Url) -> bool {
    server_url(None).is_ok_and(|d| d == *url)
}

/// The build that was chosen, wherever it was listed.
pub(super) struct Build {
    pub(super) version: String,
    /// Directory of the build, relative to the server root, ending in `/`.
    pub(super) dir: String,
    pub(super) rootfs_name: String,
    /// From the products file (legacy servers do not publish digests).
    pub(super) rootfs_digest: Option<Digest>,
    pub(super) rootfs_size: Option<u64>,
    pub(super) metadata: Option<(String, Option<Digest>)>,
    pub(super) variant: String,
    pub(super) details: serde_json::Map<String, serde_json::Value>,
}

/// The cache key of an alias on a server for an arch (without any pinned version).
pub fn ref_key(server: &Url, alias: &str, arch: &str) -> String {
    format!("{}images:{alias}?arch={arch}", redact_url(server))
}

pub struct CachedImage {
    pub image: RefBlob,
    /// The image's bytes were hashed in this run.
    pub image_fresh: bool,
    pub verification: Verification,
    pub version: String,
    pub file_name: String,
}

pub async fn fetch(
    req: &ImagesRequest<'_>,
    cache: &Cache,
    http: &Http,
    progress: ProgressMode,
) -> Result<CachedImage> {
    if let Some(r) = req.candidate {
        return verify_candidate(req, cache, r);
    }
    let key = ref_key(&req.server, &req.alias.alias, &req.arch);
    let previous = cache.read_ref(RefKind::Images, &key)?;
    let build = resolve(req, cache, http).await?;

    if let Some(prev) = previous.as_ref().and_then(|p| p.version.as_deref())
        && !req.allow_downgrade
        && ss::compare_versions(&build.version, prev).is_ok_and(|o| o.is_lt())
    {
        bail!(
            "images:{} {} is older than {prev}, which was pulled before; refusing a downgrade \
             (a server or mirror may be replaying old images). Pass --allow-downgrade if you mean it",
            req.alias.alias,
            build.version
        );
    }

    let site = Site::Http {
        base: req
            .server
            .join(&build.dir)
            .context("joining the build path")?,
        http: http.clone(),
    };
    let BuildCheck {
        expected,
        mut verification,
        mut blobs,
        entries,
        per_file_sig,
    } = verify_build(req, &build, &site, cache).await?;

    // A per-file signature is checked over the downloaded bytes before they are published.
    let signed_by: Mutex<Option<SignatureCheck>> = Mutex::new(None);
    let check_signature = |path: &Path| -> Result<()> {
        let Some((sig_loc, sig)) = &per_file_sig else {
            return Ok(());
        };
        let trust = req
            .trust
            .context("internal: signature mode without a trust store")?;
        let check = verify_image_signature(trust, path, sig).with_context(|| {
            format!(
                "verifying {} with {sig_loc}",
                site.location(&build.rootfs_name)
            )
        })?;
        *signed_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(check);
        Ok(())
    };
    let check: Option<&PartCheck<'_>> = per_file_sig
        .as_ref()
        .map(|_| &check_signature as &PartCheck<'_>);

    let prev_blob = |c: &Cache| {
        c.read_ref(RefKind::Images, &key)
            .ok()
            .flatten()
            .and_then(|r| r.blob("image").cloned())
    };
    let fetched = fetch_file(
        &site,
        cache,
        Wanted {
            file_name: &build.rootfs_name,
            role: "image",
            previous: &prev_blob,
            expected: expected.as_ref(),
            check,
        },
        progress,
    )
    .await?;
    let (image, image_fresh, _download_lock) = (fetched.blob, fetched.fresh, fetched.lock);
    if per_file_sig.is_some() && !image_fresh {
        let path = cache
            .blob(&image.digest)
            .context("internal: the image left the cache")?;
        check_signature(&path)?;
    }
    if let Some(size) = build.rootfs_size
        && size != image.size
    {
        bail!(
            "{}: the products file says {size} bytes, the file has {}",
            site.location(&build.rootfs_name),
            image.size
        );
    }
    if let (Some(check), Some((sig_loc, sig))) = (
        signed_by.lock().unwrap_or_else(|e| e.into_inner()).take(),
        &per_file_sig,
    ) {
        sums::record_signature(&mut verification, &check);
        verification.signature_source = Some(sig_loc.clone());
        blobs.push(RefBlob {
            role: IMAGE_SIGNATURE.into(),
            digest: cache.put_bytes(sig)?,
            size: sig.len() as u64,
            url: Some(sig_loc.clone()),
            etag: None,
            last_modified: None,
        });
    }
    if let Some((meta_name, listed)) = &build.metadata {
        // The metadata tarball is fetched only when something verified vouches for its digest.
        let vouched = listed.or_else(|| {
            entries
                .as_ref()
                .and_then(|e| checksums::lookup(e, meta_name).ok())
        });
        match vouched {
            None => tracing::debug!("skipping {meta_name}: nothing verified names its digest"),
            Some(digest) => {
                let no_prev = |_: &Cache| None;
                match fetch_file(
                    &site,
                    cache,
                    Wanted {
                        file_name: meta_name,
                        role: "metadata",
                        previous: &no_prev,
                        expected: Some(&digest),
                        check: None,
                    },
                    ProgressMode::hidden(),
                )
                .await
                {
                    Ok(f) => blobs.push(f.blob),
                    // nspawn does not need the LXC metadata; a missing one is not worth failing for.
                    Err(e) => {
                        tracing::warn!("could not fetch the image metadata {meta_name}: {e:#}")
                    }
                }
            }
        }
    }
    let mut details = build.details.clone();
    details.insert("server".into(), redact_url(&req.server).into());
    details.insert("alias".into(), req.alias.alias.clone().into());
    details.insert("arch".into(), req.arch.clone().into());
    details.insert("variant".into(), build.variant.clone().into());
    let mut all = vec![image.clone()];
    all.extend(blobs);
    let record = Ref {
        source: format!("images:{}", req.alias.alias),
        blobs: all,
        verification: verification.clone(),
        version: Some(build.version.clone()),
        details,
        fetched_at: now_rfc3339(),
    };
    cache.write_ref(RefKind::Images, &key, &record)?;
    crate::faultpoint::reached("images.index");
    Ok(CachedImage {
        image,
        image_fresh,
        verification,
        version: build.version,
        file_name: build.rootfs_name,
    })
}

/// A signature over the rootfs tarball itself, checked over its bytes at `path`.
fn verify_image_signature(trust: &TrustStore, path: &Path, sig: &[u8]) -> Result<SignatureCheck> {
    let file = fs_err::File::open(path).map(fs_err::File::into_file)?;
    Ok(verify_detached(
        trust,
        BufReader::with_capacity(256 * 1024, file),
        sig,
    )?)
}

/// Verifies `r`, a ref not written to the cache (`cache import`), from the cache's blobs as
/// `req.mode` asks: the build it records, its checksum file and signature (or the signature
/// over the image itself), with this host's trust store.
fn verify_candidate(req: &ImagesRequest<'_>, cache: &Cache, r: &Ref) -> Result<CachedImage> {
    let image = r.blob("image").cloned().context("the ref has no image")?;
    let location = image.url.as_deref().unwrap_or(&r.source);
    let (_, rootfs_name) = split_dir(location.split(['?', '#']).next().unwrap_or(location));
    if rootfs_name.is_empty() {
        bail!("cannot tell the image's file name from {location}");
    }
    let version = r.version.clone().context("the ref names no version")?;
    let build = Build {
        version: version.clone(),
        dir: String::new(),
        rootfs_name: rootfs_name.clone(),
        // A digest from a products file is recorded, not kept as a file: the record stands.
        rootfs_digest: Some(image.digest),
        rootfs_size: Some(image.size),
        metadata: None,
        variant: String::new(),
        details: r.details.clone(),
    };
    let check = verify_from_cache(req, &build, r, cache)?.with_context(|| {
        format!(
            "it holds no checksum file or signature for --verify={}",
            req.mode.as_str()
        )
    })?;
    let mut verification = check.verification;
    if let Some((sig_loc, sig)) = &check.per_file_sig {
        let trust = req
            .trust
            .context("internal: signature mode without a trust store")?;
        let path = cache
            .blob(&image.digest)
            .context("its image is not in the cache")?;
        let signed = verify_image_signature(trust, &path, sig)
            .context("verifying its image with its detached signature")?;
        sums::record_signature(&mut verification, &signed);
        verification.signature_source = Some(sig_loc.clone());
    }
    Ok(CachedImage {
        image,
        image_fresh: false,
        verification,
        version,
        file_name: rootfs_name,
    })
}

/// The build to pull: from the simplestreams products file, or from the legacy index when the
/// server has no `streams/v1/index.json`.
async fn resolve(req: &ImagesRequest<'_>, cache: &Cache, http: &Http) -> Result<Build> {
    let server = &req.server;
    let index_url = server.join("streams/v1/index.json")?;
    if let Some((index, freshness)) = documents::get(cache, http, &index_url, req.offline).await? {
        note(freshness, &index_url);
        let index = ss::parse_index(utf8(&index, &index_url)?)
            .with_context(|| format!("parsing {}", redact_url(&index_url)))?;
        let path = ss::products_path(&index)
            .with_context(|| format!("reading {}", redact_url(&index_url)))?;
        let products_url = server.join(&path)?;
        let (products, freshness) =
            documents::get_required(cache, http, &products_url, req.offline).await?;
        note(freshness, &products_url);
        let products = ss::parse_products(utf8(&products, &products_url)?)
            .with_context(|| format!("parsing {}", redact_url(&products_url)))?;
        let choice = ss::choose(&products, &req.alias, &req.arch)
            .with_context(|| format!("choosing from {}", redact_url(&products_url)))?;
        let (dir, rootfs_name) = split_dir(&choice.rootfs.path);
        let metadata = choice
            .metadata
            .as_ref()
            .map(|m| (split_dir(&m.path).1, Some(m.sha256)));
        let mut details = serde_json::Map::new();
        details.insert("product".into(), choice.product.clone().into());
        details.insert("os".into(), choice.os.clone().into());
        details.insert("release".into(), choice.release.clone().into());
        details.insert("products_url".into(), redact_url(&products_url).into());
        return Ok(Build {
            version: choice.version,
            dir,
            rootfs_name,
            rootfs_digest: Some(choice.rootfs.sha256),
            rootfs_size: Some(choice.rootfs.size),
            metadata,
            variant: choice.variant,
            details,
        });
    }
    // No simplestreams: the legacy index.
    for name in ["meta/1.0/index-system.7", "meta/1.0/index-system"] {
        let url = server.join(name)?;
        let Some((text, freshness)) = documents::get(cache, http, &url, req.offline).await? else {
            continue;
        };
        note(freshness, &url);
        let entries = ss::parse_legacy_index(utf8(&text, &url)?)
            .with_context(|| format!("parsing {}", redact_url(&url)))?;
        let choice = ss::choose_legacy(&entries, &req.alias, &req.arch)
            .with_context(|| format!("choosing from {}", redact_url(&url)))?;
        let (dir, rootfs_name) = split_dir(choice.rootfs_path.trim_start_matches('/'));
        let mut details = serde_json::Map::new();
        details.insert("os".into(), choice.distro.clone().into());
        details.insert("release".into(), choice.release.clone().into());
        details.insert("index_url".into(), redact_url(&url).into());
        return Ok(Build {
            version: choice.build,
            dir,
            rootfs_name,
            rootfs_digest: None,
            rootfs_size: None,
            metadata: Some((split_dir(&choice.meta_path).1, None)),
            variant: choice.variant,
            details,
        });
    }
    bail!(
        "{} is not an image server: it has neither streams/v1/index.json nor meta/1.0/index-system",
        redact_url(server)
    )
}

/// What the server offers (`sandbox images --remote`), from simplestreams or the legacy index.
pub async fn list_remote(
    server: &Url,
    arch: Option<&str>,
    filter: Option<&str>,
    cache: &Cache,
    http: &Http,
    offline: bool,
) -> Result<Vec<ss::RemoteImage>> {
    let index_url = server.join("streams/v1/index.json")?;
    if let Some((index, freshness)) = documents::get(cache, http, &index_url, offline).await? {
        note(freshness, &index_url);
        let index = ss::parse_index(utf8(&index, &index_url)?)
            .with_context(|| format!("parsing {}", redact_url(&index_url)))?;
        let products_url = server.join(&ss::products_path(&index)?)?;
        let (products, freshness) =
            documents::get_required(cache, http, &products_url, offline).await?;
        note(freshness, &products_url);
        let products = ss::parse_products(utf8(&products, &products_url)?)
            .with_context(|| format!("parsing {}", redact_url(&products_url)))?;
        return Ok(ss::list_remote(&products, arch, filter));
    }
    for name in ["meta/1.0/index-system.7", "meta/1.0/index-system"] {
        let url = server.join(name)?;
        if let Some((text, freshness)) = documents::get(cache, http, &url, offline).await? {
            note(freshness, &url);
            let entries = ss::parse_legacy_index(utf8(&text, &url)?)
                .with_context(|| format!("parsing {}", redact_url(&url)))?;
            return Ok(ss::list_remote_legacy(&entries, arch, filter));
        }
    }
    bail!(
        "{} is not an image server: it has neither streams/v1/index.json nor meta/1.0/index-system",
        redact_url(server)
    )
}

fn note(freshness: Freshness, url: &Url) {
    match freshness {
        Freshness::Stale => tracing::warn!("using a stale cached copy of {}", redact_url(url)),
        Freshness::Fresh | Freshness::Offline => {
            tracing::debug!("using the cached copy of {}", redact_url(url))
        }
        Freshness::Fetched => tracing::debug!("fetched {}", redact_url(url)),
    }
}

fn utf8<'a>(bytes: &'a [u8], url: &Url) -> Result<&'a str> {
    std::str::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", redact_url(url)))
}

/// `a/b/c.tar.xz` → (`a/b/`, `c.tar.xz`).
fn split_dir(path: &str) -> (String, String) {
    match path.rfind('/') {
        Some(i) => (path[..=i].to_string(), path[i + 1..].to_string()),
        None => (String::new(), path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        assert_eq!(
            server_url(None).unwrap().as_str(),
            "https://images.linuxcontainers.org/"
        );
        assert_eq!(
            server_url(Some("http://127.0.0.1:8080/mirror"))
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/mirror/"
        );
        assert!(is_default_server(
            &server_url(Some("https://images.linuxcontainers.org/")).unwrap()
        ));
        assert!(!is_default_server(
            &server_url(Some("https://images.linuxcontainers.org.evil.example/")).unwrap()
        ));
        assert!(server_url(Some("ftp://x/")).is_err());
    }

    #[test]
    fn build_paths_split() {
        assert_eq!(
            split_dir("images/debian/bookworm/amd64/cloud/20230424_07:54/rootfs.tar.xz"),
            (
                "images/debian/bookworm/amd64/cloud/20230424_07:54/".into(),
                "rootfs.tar.xz".into()
            )
        );
        assert_eq!(split_dir("x"), (String::new(), "x".into()));
    }

    #[test]
    fn ref_keys_separate_servers_and_arches() {
        let a = server_url(Some("http://a/")).unwrap();
        let b = server_url(Some("http://b/")).unwrap();
        assert_ne!(
            ref_key(&a, "debian/bookworm", "amd64"),
            ref_key(&b, "debian/bookworm", "amd64")
        );
        assert_ne!(
            ref_key(&a, "debian/bookworm", "amd64"),
            ref_key(&a, "debian/bookworm", "arm64")
        );
    }
}
