//! Applying an image's layers, lowest first, into a staging root. Per layer, one streaming
//! pass through a pipeline of threads (`layer_stream`):
//!
//! ```text
//! blob ─▶ [VerifiedReader (size, digest)] ─▶ [decompress (per media type)] ─▶ [diff_id hash]
//!      ─▶ unpack_layer (tar rules + whiteouts) ─▶ root
//! ```
//!
//! Layers are applied strictly one after another, in the manifest's order: later layers win
//! and whiteouts remove what lower layers left, exactly as a sequential apply would. What runs
//! in parallel is everything before the tree: while layer `i` is written, layer `i + 1`'s
//! pipeline already reads, checks, inflates and hashes its first chunks (bounded by the
//! stages' buffers, a few MiB), so small upper layers are decoded while the big base layer is
//! still being written.
//!
//! Both digests are only known at the end of the stream, so a layer that lies has already
//! been partly written when its mismatch aborts: callers apply into a staging directory and
//! throw it away on any error (as for tarballs). The declared compression must match the
//! blob's magic bytes, so a mislabelled layer is named as such instead of failing somewhere
//! in a decoder.

use crate::progress::{Progress, ProgressReader};
use std::io::Read;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::blob::BlobSource;
use super::image::ResolvedImage;
use super::layer_stream::{BlobCheck, LayerStream};
use super::manifest::Descriptor;
use crate::digest::Digest;
use crate::unpack::layers::{LayerSummary, unpack_layer};
use crate::unpack::{Root, UnpackOptions};

/// What applying one layer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedLayer {
    pub digest: Digest,
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    pub entries: u64,
    /// Bytes of file content written (apparent sizes).
    pub file_bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    pub warnings: u64,
}

/// One layer to apply: its descriptor, its raw blob, and what is left to check of the blob.
pub struct LayerInput<R> {
    pub descriptor: Descriptor,
    pub reader: R,
    pub check: BlobCheck,
}

/// Applies `layers` (lowest first) into `root`; layer `i` must decompress to `diff_ids[i]`,
/// and there must be exactly as many layers as diff_ids. The next layer's pipeline is started
/// before the current one is written (see the module documentation).
pub fn apply_layers<I, R>(
    root: &Root,
    layers: I,
    diff_ids: &[Digest],
    opts: &UnpackOptions,
) -> Result<Vec<AppliedLayer>>
where
    I: IntoIterator<Item = Result<LayerInput<R>>>,
    R: Read + Send + 'static,
{
    let total = diff_ids.len();
    let mut applied = Vec::with_capacity(total);
    // The tree's bounds hold over all layers: each starts with what the lower ones used.
    let mut opts = opts.clone();
    let mut layers = layers.into_iter().enumerate().map(|(i, item)| {
        let item = item.with_context(|| format!("opening layer {}", i + 1))?;
        let stream = LayerStream::open(&item.descriptor, item.reader, item.check);
        Ok((i, item.descriptor, stream))
    });
    // An error opening the next layer is reported when its turn comes, after the layers
    // below it: the same message as when layers were opened one at a time.
    let mut next: Option<Result<_>> = layers.next();
    while let Some(current) = next.take() {
        let (i, descriptor, stream) = current?;
        next = layers.next();
        let Some(diff_id) = diff_ids.get(i) else {
            bail!("more layers than the {total} diff_ids of the image config");
        };
        let layer = stream
            .and_then(|stream| apply_layer(root, &descriptor, stream, *diff_id, &opts))
            .with_context(|| {
                format!(
                    "applying layer {} of {total} ({})",
                    i + 1,
                    descriptor.digest
                )
            })?;
        opts.limits = opts.limits.after(layer.file_bytes, layer.entries);
        applied.push(layer);
    }
    if applied.len() != total {
        bail!(
            "{} layers for the {total} diff_ids of the image config",
            applied.len()
        );
    }
    Ok(applied)
}

/// Applies every layer of a resolved image, reading the blobs from `source`, each checked in
/// full (size and sha256) as it is read.
pub fn apply_image(
    root: &Root,
    source: &dyn BlobSource,
    image: &ResolvedImage,
    opts: &UnpackOptions,
) -> Result<Vec<AppliedLayer>> {
    apply_image_hashed(root, source, image, &[], opts)
}

/// [`apply_image`] for blobs the caller already hashed in this run (`hashed`: a pull that
/// verified them as they streamed into the cache, or re-hashed the cached copies): those are
/// held to their size only, every other blob is checked in full. Every layer's uncompressed
/// stream is still checked against its diff_id.
pub fn apply_image_hashed(
    root: &Root,
    source: &dyn BlobSource,
    image: &ResolvedImage,
    hashed: &[Digest],
    opts: &UnpackOptions,
) -> Result<Vec<AppliedLayer>> {
    apply_image_with_progress(root, source, image, hashed, opts, &Progress::hidden())
}

/// [`apply_image_hashed`], advancing `progress` by the layer bytes read (its total: every
/// layer's size).
pub fn apply_image_with_progress(
    root: &Root,
    source: &dyn BlobSource,
    image: &ResolvedImage,
    hashed: &[Digest],
    opts: &UnpackOptions,
    progress: &Progress,
) -> Result<Vec<AppliedLayer>> {
    let total: u64 = image.layers.iter().map(|l| l.descriptor.size).sum();
    progress.start_bytes(Some(total), 0);
    let layers = image.layers.iter().map(|layer| {
        let digest = &layer.descriptor.digest;
        let reader = source
            .open_blob(digest)
            .with_context(|| format!("opening layer {digest}"))?;
        let reader: Box<dyn std::io::Read + Send> = Box::new(ProgressReader {
            inner: reader,
            progress: progress.clone(),
        });
        let check = if hashed.contains(digest) {
            BlobCheck::SizeOnly
        } else {
            BlobCheck::Full
        };
        Ok(LayerInput {
            descriptor: layer.descriptor.clone(),
            reader,
            check,
        })
    });
    let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
    apply_layers(root, layers, &diff_ids, opts)
}

fn apply_layer(
    root: &Root,
    descriptor: &Descriptor,
    mut stream: LayerStream,
    diff_id: Digest,
    opts: &UnpackOptions,
) -> Result<AppliedLayer> {
    let summary: LayerSummary = unpack_layer(&mut stream, root, opts)?;
    // The unpacker reads to the end (it checks what follows the end-of-archive marker); make
    // sure, since both digests are only checked there.
    let (actual, tar_size) = stream.finish()?;
    if actual != diff_id {
        bail!(
            "the uncompressed layer has digest {actual}, but the image config says its diff_id \
             is {diff_id}"
        );
    }
    crate::faultpoint::reached("unpack.layer");
    Ok(AppliedLayer {
        digest: descriptor.digest,
        diff_id,
        tar_size,
        entries: summary.unpack.entries,
        file_bytes: summary.unpack.bytes,
        whiteouts: summary.whiteouts,
        opaque_dirs: summary.opaque_dirs,
        warnings: summary.unpack.warnings,
    })
}
