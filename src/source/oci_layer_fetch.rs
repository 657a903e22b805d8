//! Getting an OCI image's layers into the cache (step 3 of `oci_pull`): which are missing
//! (cached ones re-hashed first), a lock per layer so concurrent pulls fetch each once, and
//! the copy from a local layout or the resumable download from a registry, three at a time,
//! each hashed and held to its descriptor before it is published.

use std::io;

use anyhow::{Context, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};

use crate::cache::Cache;
use crate::cache::lock::LockGuard;
use crate::cache::store::hash_file;
use crate::digest::Digest;
use crate::oci::Descriptor;
use crate::oci::blob::BlobSource;
use crate::oci::image::Layer;
use crate::progress::{Progress, ProgressMode, ProgressReader};
use crate::source::registry::{Registry, shown_url};
use crate::transport::resume;

/// Registry layer downloads in flight at once.
const PARALLEL_LAYERS: usize = 3;

/// The layers not in the cache, each digest once, and the cached ones this re-hashed and
/// found right. Cached layers are re-hashed first, as a cached tarball is: one that rotted
/// since it was verified is removed and counts as missing (otherwise it would fail every
/// materialisation until `cache fsck`).
pub(super) fn missing_layers(cache: &Cache, layers: &[Layer]) -> Result<(Vec<Layer>, Vec<Digest>)> {
    let mut out: Vec<Layer> = Vec::new();
    let mut checked: Vec<Digest> = Vec::new();
    for l in layers {
        let d = &l.descriptor.digest;
        if checked.contains(d) || out.iter().any(|o| o.descriptor.digest == *d) {
            continue;
        }
        if let Some(path) = cache.blob(d) {
            let (actual, _) = hash_file(&path)?;
            if actual == *d {
                checked.push(*d);
                continue;
            }
            tracing::warn!(
                "the cached layer {d} is corrupt (its bytes hash to {actual}); fetching it again"
            );
            fs_err::remove_file(&path)
                .with_context(|| format!("removing corrupt blob {}", path.display()))?;
        }
        out.push(l.clone());
    }
    Ok((out, checked))
}

/// Locks every missing layer against concurrent pulls of the same blob, then drops those
/// another process stored while this one waited: each layer is downloaded once. The locks
/// are taken in digest order, so two pulls sharing layers cannot each hold one the other
/// waits for.
pub(super) fn lock_layers(
    cache: &Cache,
    missing: Vec<Layer>,
) -> Result<(Vec<LockGuard>, Vec<Layer>)> {
    let mut digests: Vec<Digest> = missing.iter().map(|l| l.descriptor.digest).collect();
    digests.sort();
    let locks = digests
        .iter()
        .map(|d| {
            cache.lock(
                &format!("blob-{d}"),
                &format!("another pull downloading layer {d}"),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let still = missing
        .into_iter()
        .filter(|l| cache.blob(&l.descriptor.digest).is_none())
        .collect();
    Ok((locks, still))
}

/// Copies layers from a local source into the cache, each checked against its descriptor.
pub(super) fn fetch_layers_local(
    source: &dyn BlobSource,
    cache: &Cache,
    layers: &[Layer],
    progress: ProgressMode,
) -> Result<u64> {
    let mut total = 0;
    for layer in layers {
        let d = &layer.descriptor;
        let inner = source
            .open_blob(&d.digest)
            .with_context(|| format!("opening layer {}", d.digest))?;
        let bar = progress.task(&layer_label("Copying", &d.digest));
        bar.start_bytes(Some(d.size), 0);
        let inner = ProgressReader {
            inner,
            progress: bar.clone(),
        };
        let mut reader = crate::oci::VerifiedReader::new(inner, d);
        let mut temp = cache.temp_blob()?;
        // VerifiedReader fails on the read that proves a lie (too long, too short, wrong
        // sha256), so a bad layer never reaches `publish`; the temp file is removed on drop.
        io::copy(&mut reader, &mut temp).with_context(|| format!("reading layer {}", d.digest))?;
        cache
            .publish(temp, Some(&d.digest))
            .with_context(|| format!("storing layer {}", d.digest))?;
        bar.finish();
        total += d.size;
    }
    Ok(total)
}

/// Downloads layers from the registry into the cache, [`PARALLEL_LAYERS`] at once.
pub(super) async fn fetch_layers_registry(
    reg: &Registry,
    cache: &Cache,
    layers: &[Layer],
    progress: ProgressMode,
) -> Result<u64> {
    let sizes: Vec<u64> = futures_util::stream::iter(layers)
        .map(|l| {
            let bar = progress.task(&layer_label("Downloading", &l.descriptor.digest));
            download_layer(reg, cache, &l.descriptor, bar)
        })
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect()
        .await?;
    Ok(sizes.iter().sum())
}

/// Downloads one layer into the cache, resuming the partial file an interrupted pull left
/// (keyed by the digest, so any earlier pull's bytes of this blob are good to continue from).
/// Returns the bytes transferred now.
async fn download_layer(
    reg: &Registry,
    cache: &Cache,
    d: &Descriptor,
    progress: Progress,
) -> Result<u64> {
    let part = cache.layout().partial_blob(&d.digest);
    // A partial file already the descriptor's size is a whole download whose process died
    // before publishing it: published if it hashes to the digest, nothing fetched.
    if fs_err::metadata(&part).is_ok_and(|m| m.len() == d.size) {
        let got = resume::complete(&part)?;
        if got.digest == d.digest {
            tracing::info!("layer {}: the partial download is complete", d.digest);
            resume::publish(cache, &part, &got, Some(&d.digest), None, "a partial layer")?;
            return Ok(0);
        }
    }
    let from = resume::resumable_len(&part, Some(d.size));
    if from > 0 {
        tracing::info!("resuming layer {} at byte {from} of {}", d.digest, d.size);
    }
    let resp = reg.blob_from(&d.digest, from).await?;
    let url = shown_url(&resp);
    let what = format!("layer {} from {url}", d.digest);
    let body = resume::Body {
        part: &part,
        asked_from: from,
        size: Some(d.size),
        shown: &url,
    };
    // The size cap is the descriptor's: a registry sending more is refused before the excess
    // is written, and the digest is checked before the blob is published.
    let got = resume::receive(resp, &body, &progress)
        .await
        .with_context(|| what.clone())?;
    resume::publish(cache, &part, &got, Some(&d.digest), None, &what)?;
    Ok(got.transferred())
}

/// `Downloading layer 0123456789ab`: the label of one layer's bar.
fn layer_label(verb: &str, digest: &Digest) -> String {
    format!("{verb} layer {}", &digest.hex()[..12])
}
