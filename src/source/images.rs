//! `images:ALIAS[@VERSION]`: LXC images from a simplestreams server (or a legacy
//! `meta/1.0/index-system` server), verified with the signed `SHA256SUMS` of their build.
//!
//! Trust chain: the products file (unsigned) names the build and the rootfs digest; the build's
//! `SHA256SUMS` must carry a good signature (`SHA256SUMS.asc`, or a per-file `rootfs.tar.xz.asc`)
//! by a trusted key, and must name the same digest; the downloaded bytes must match it. The
//! built-in LXC key is trusted for the default server only. A version older than the one last
//! pulled for the same alias, server and arch is refused (rollback protection).

use anyhow::{Context, Result, bail};
use url::Url;

use super::documents::{self, Freshness};
use super::fetch::fetch_file;
use super::http::Http;
use super::redact_url;
use super::simplestreams::{self as ss, Alias};
use super::site::Site;
use super::sums::{self, VerifyMode};
use crate::cache::refs::now_rfc3339;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::progress::ProgressMode;
use crate::verify::Digest;
use crate::verify::openpgp::{TrustStore, verify_detached};

pub const DEFAULT_SERVER: &str = "https://images.linuxcontainers.org";

pub struct ImagesRequest<'a> {
    pub alias: Alias,
    pub arch: String,
    /// The server root, with a trailing `/`.
    pub server: Url,
    pub mode: VerifyMode,
    pub trust: Option<&'a TrustStore>,
    pub offline: bool,
    pub allow_downgrade: bool,
}

/// The server URL a user gave (or the default), normalised to end in `/`.
pub fn server_url(given: Option<&str>) -> Result<Url> {
    let s = given.unwrap_or(DEFAULT_SERVER);
    let mut url = Url::parse(s)
        .with_context(|| format!("`{}` is not a valid image server URL", super::redact(s)))?;
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
struct Build {
    version: String,
    /// Directory of the build, relative to the server root, ending in `/`.
    dir: String,
    rootfs_name: String,
    /// From the products file (legacy servers do not publish digests).
    rootfs_digest: Option<Digest>,
    rootfs_size: Option<u64>,
    metadata: Option<(String, Option<Digest>)>,
    variant: String,
    details: serde_json::Map<String, serde_json::Value>,
}

/// The cache key of an alias on a server for an arch (without any pinned version).
pub fn ref_key(server: &Url, alias: &str, arch: &str) -> String {
    format!("{}images:{alias}?arch={arch}", redact_url(server))
}

pub struct CachedImage {
    pub image: RefBlob,
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
    let (expected, mut verification, mut blobs, per_file_sig) =
        verify_build(req, &build, &site, cache).await?;

    let prev_blob = |c: &Cache| {
        c.read_ref(RefKind::Images, &key)
            .ok()
            .flatten()
            .and_then(|r| r.blob("image").cloned())
    };
    let image = fetch_file(
        &site,
        &build.rootfs_name,
        "image",
        cache,
        &prev_blob,
        expected.as_ref(),
        progress,
    )
    .await?;
    if let Some(size) = build.rootfs_size
        && size != image.size
    {
        bail!(
            "{}: the products file says {size} bytes, the file has {}",
            site.location(&build.rootfs_name),
            image.size
        );
    }
    if let Some(sig) = per_file_sig {
        // Signature over the tarball itself: check the cached bytes.
        let path = cache
            .blob(&image.digest)
            .context("internal: the image left the cache")?;
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let trust = req
            .trust
            .context("internal: signature mode without a trust store")?;
        let check = verify_detached(
            trust,
            std::io::BufReader::with_capacity(256 * 1024, file),
            &sig.1,
        )
        .with_context(|| {
            format!(
                "verifying {} with {}",
                site.location(&build.rootfs_name),
                sig.0
            )
        })?;
        sums::record_signature(&mut verification, &check);
        verification.signature_source = Some(sig.0.clone());
        blobs.push(RefBlob {
            role: "signature".into(),
            digest: cache.put_bytes(&sig.1)?,
            size: sig.1.len() as u64,
            url: Some(sig.0),
            etag: None,
            last_modified: None,
        });
    }
    if let Some((meta_name, meta_digest)) = &build.metadata {
        let no_prev = |_: &Cache| None;
        match fetch_file(
            &site,
            meta_name,
            "metadata",
            cache,
            &no_prev,
            meta_digest.as_ref(),
            ProgressMode::hidden(),
        )
        .await
        {
            Ok(b) => blobs.push(b),
            // nspawn does not need the LXC metadata; a missing one is not worth failing for.
            Err(e) => tracing::warn!("could not fetch the image metadata {meta_name}: {e:#}"),
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
    Ok(CachedImage {
        image,
        verification,
        version: build.version,
        file_name: build.rootfs_name,
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

type SignatureFile = (String, Vec<u8>);

/// Checks the build's `SHA256SUMS` as the mode asks. Returns the expected rootfs digest, the
/// verification so far, the blobs it stored, and a per-file signature still to check against
/// the downloaded tarball.
async fn verify_build(
    req: &ImagesRequest<'_>,
    build: &Build,
    site: &Site,
    cache: &Cache,
) -> Result<(
    Option<Digest>,
    Verification,
    Vec<RefBlob>,
    Option<SignatureFile>,
)> {
    let listed = build.rootfs_digest;
    let from_products = || Verification {
        mode: req.mode.as_str().into(),
        checksum_source: build
            .details
            .get("products_url")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        ..Default::default()
    };
    if req.offline {
        // Verify again from what the ref stored.
        let key = ref_key(&req.server, &req.alias.alias, &req.arch);
        let r = cache.read_ref(RefKind::Images, &key)?.with_context(|| {
            format!("--offline: images:{} is not in the cache", req.alias.alias)
        })?;
        let image = r.blob("image").context("the cache ref has no image")?;
        if r.version.as_deref() != Some(build.version.as_str()) {
            bail!(
                "--offline: the cache holds {} of images:{}, the cached index names {}",
                r.version.as_deref().unwrap_or("?"),
                req.alias.alias,
                build.version
            );
        }
        if req.mode == VerifyMode::No {
            return Ok((
                Some(image.digest),
                Verification {
                    mode: "no".into(),
                    ..Default::default()
                },
                vec![],
                None,
            ));
        }
        if r.blob("checksums").is_none() {
            // Verified with a per-file signature, or by the products file alone.
            if req.mode == VerifyMode::Signature {
                let sig = r
                    .blob("signature")
                    .context("the cache holds no signature for this image")?;
                let sig_bytes = cache.read_blob(&sig.digest)?;
                return Ok((
                    Some(image.digest),
                    from_products(),
                    vec![],
                    Some((sig.url.clone().unwrap_or_default(), sig_bytes)),
                ));
            }
            return Ok((listed.or(Some(image.digest)), from_products(), vec![], None));
        }
        let s = sums::reverify_cached(cache, &r.blobs, &r.verification, req.mode, req.trust)?;
        let digest = s.digest_of(&build.rootfs_name)?;
        return Ok((Some(digest), s.verification, s.blobs, None));
    }
    match req.mode {
        VerifyMode::No => Ok((
            listed,
            Verification {
                mode: "no".into(),
                ..Default::default()
            },
            vec![],
            None,
        )),
        VerifyMode::Checksum if listed.is_some() => Ok((listed, from_products(), vec![], None)),
        mode => {
            match sums_only(site, mode, req.trust, cache).await? {
                Some(s) => {
                    let signed = s.digest_of(&build.rootfs_name)?;
                    if let Some(listed) = listed
                        && listed != signed
                    {
                        bail!(
                            "{}: the products file says {listed} for {}, the signed checksum file says {signed}; refusing both",
                            site.location("SHA256SUMS"),
                            build.rootfs_name
                        );
                    }
                    Ok((Some(signed), s.verification, s.blobs, None))
                }
                None if mode == VerifyMode::Signature => {
                    // Per-file signature over the tarball itself.
                    let sig_name = format!("{}.asc", build.rootfs_name);
                    let Some(sig) = site.get_small(&sig_name, sums::SIGNATURE_LIMIT).await? else {
                        bail!(
                            "no signature for images:{} {}: neither {} nor {} exists. Pass --verify=checksum to rely on \
                             the products file's digest over HTTPS alone",
                            req.alias.alias,
                            build.version,
                            site.location("SHA256SUMS.asc"),
                            site.location(&sig_name)
                        );
                    };
                    if listed.is_none() {
                        bail!(
                            "{}: a legacy server without SHA256SUMS gives no digest to check before downloading",
                            site.location(&build.rootfs_name)
                        );
                    }
                    Ok((
                        listed,
                        from_products(),
                        vec![],
                        Some((site.location(&sig_name), sig.bytes)),
                    ))
                }
                None => bail!(
                    "no checksum for {}: the legacy index has no digests and there is no SHA256SUMS",
                    site.location(&build.rootfs_name)
                ),
            }
        }
    }
}

/// The build's `SHA256SUMS`, checked as `mode` asks; `None` when the build has none (or, in
/// signature mode, has no signature for it).
async fn sums_only(
    site: &Site,
    mode: VerifyMode,
    trust: Option<&TrustStore>,
    cache: &Cache,
) -> Result<Option<sums::VerifiedSums>> {
    let Some(text) = site.get_small("SHA256SUMS", sums::CHECKSUM_LIMIT).await? else {
        return Ok(None);
    };
    sums::check_named(site, "SHA256SUMS", text.bytes, mode, trust, cache).await
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
