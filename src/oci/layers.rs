//! Applying an image's layers, lowest first, into a staging root. Per layer, one streaming
//! pass:
//!
//! ```text
//! blob ─▶ VerifiedReader (size, digest) ─▶ decompress (per media type) ─▶ diff_id hash
//!      ─▶ [decompress thread] ─▶ unpack_layer (tar rules + whiteouts) ─▶ root
//! ```
//!
//! Both digests are only known at the end of the stream, so a layer that lies has already
//! been partly written when its mismatch aborts: callers apply into a staging directory and
//! throw it away on any error (as for tarballs). The declared compression must match the
//! blob's magic bytes, so a mislabelled layer is named as such instead of failing somewhere
//! in a decoder.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::blob::{BlobSource, VerifiedReader};
use super::image::ResolvedImage;
use super::manifest::Descriptor;
use super::media::{LayerCompression, layer_compression};
use crate::digest::Digest;
use crate::digest::Hasher;
use crate::unpack::decompress::{self, Compression, ThreadedReader};
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
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    pub warnings: u64,
}

/// Applies `layers` (descriptor and raw blob stream, lowest first) into `root`; layer `i` must
/// decompress to `diff_ids[i]`, and there must be exactly as many layers as diff_ids.
pub fn apply_layers<I, R>(
    root: &Root,
    layers: I,
    diff_ids: &[Digest],
    opts: &UnpackOptions,
) -> Result<Vec<AppliedLayer>>
where
    I: IntoIterator<Item = Result<(Descriptor, R)>>,
    R: Read + Send + 'static,
{
    let total = diff_ids.len();
    let mut applied = Vec::with_capacity(total);
    for (i, item) in layers.into_iter().enumerate() {
        let (descriptor, reader) = item.with_context(|| format!("opening layer {}", i + 1))?;
        let Some(diff_id) = diff_ids.get(i) else {
            bail!("more layers than the {total} diff_ids of the image config");
        };
        let layer = apply_layer(root, &descriptor, reader, *diff_id, opts).with_context(|| {
            format!(
                "applying layer {} of {total} ({})",
                i + 1,
                descriptor.digest
            )
        })?;
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

/// Applies every layer of a resolved image, reading the blobs from `source`.
pub fn apply_image(
    root: &Root,
    source: &dyn BlobSource,
    image: &ResolvedImage,
    opts: &UnpackOptions,
) -> Result<Vec<AppliedLayer>> {
    let layers = image.layers.iter().map(|layer| {
        // Verified again in `apply_layer`; opening here only finds the bytes.
        let reader = source
            .open_blob(&layer.descriptor.digest)
            .with_context(|| format!("opening layer {}", layer.descriptor.digest))?;
        Ok((layer.descriptor.clone(), reader))
    });
    let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id).collect();
    apply_layers(root, layers, &diff_ids, opts)
}

fn apply_layer<R: Read + Send + 'static>(
    root: &Root,
    descriptor: &Descriptor,
    reader: R,
    diff_id: Digest,
    opts: &UnpackOptions,
) -> Result<AppliedLayer> {
    let compression = layer_compression(&descriptor.media_type)?;
    let mut compressed =
        BufReader::with_capacity(256 << 10, VerifiedReader::new(reader, descriptor));
    let head = compressed.fill_buf().context("reading the layer")?;
    check_magic(compression, decompress::detect(head))?;
    let decoded: Box<dyn Read + Send> = match compression {
        LayerCompression::None => Box::new(compressed),
        LayerCompression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(compressed)),
        LayerCompression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(compressed)
                .context("starting the zstd decoder")?,
        ),
    };
    let result = Arc::new(Mutex::new(None));
    let hashing = DiffIdReader {
        inner: decoded,
        hasher: Hasher::new(),
        result: result.clone(),
    };
    let mut stream = ThreadedReader::new(Box::new(hashing)).context("starting the decoder")?;
    let summary: LayerSummary = unpack_layer(&mut stream, root, opts)?;
    // The unpacker reads to the end (it checks what follows the end-of-archive marker); make
    // sure, since both digests are only checked there.
    io::copy(&mut stream, &mut io::sink()).context("reading the end of the layer")?;
    let finished = result
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let Some((actual, tar_size)) = finished else {
        bail!("the layer stream ended without reaching its end");
    };
    if actual != diff_id {
        bail!(
            "the uncompressed layer has digest {actual}, but the image config says its diff_id \
             is {diff_id}"
        );
    }
    Ok(AppliedLayer {
        digest: descriptor.digest,
        diff_id,
        tar_size,
        entries: summary.unpack.entries,
        whiteouts: summary.whiteouts,
        opaque_dirs: summary.opaque_dirs,
        warnings: summary.unpack.warnings,
    })
}

/// The declared compression must be what the bytes are (an uncompressed tar starts with a
/// file name, which no compressor's magic looks like in practice; `BZh` could, so bzip2 is
/// not held against a plain tar).
fn check_magic(declared: LayerCompression, found: Compression) -> Result<()> {
    let ok = match declared {
        LayerCompression::Gzip => found == Compression::Gzip,
        LayerCompression::Zstd => found == Compression::Zstd,
        LayerCompression::None => {
            matches!(found, Compression::None | Compression::Bzip2)
        }
    };
    if !ok {
        bail!(
            "the layer's media type says {}, but its content is {}",
            match declared {
                LayerCompression::None => "uncompressed tar",
                LayerCompression::Gzip => "gzip",
                LayerCompression::Zstd => "zstd",
            },
            match found {
                Compression::None => "not compressed".to_string(),
                other => format!("{}-compressed", other.name()),
            }
        );
    }
    Ok(())
}

/// Hashes the decompressed stream and hands the digest over once it reaches its end (the
/// reader lives on the decompression thread).
struct DiffIdReader {
    inner: Box<dyn Read + Send>,
    hasher: Hasher,
    result: Arc<Mutex<Option<(Digest, u64)>>>,
}

impl Read for DiffIdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let hasher = std::mem::take(&mut self.hasher);
            let len = hasher.len();
            let mut slot = self
                .result
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if slot.is_none() {
                *slot = Some((hasher.finish(), len));
            }
        } else {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_must_match_the_media_type() {
        use Compression as C;
        use LayerCompression as L;
        let ok = [
            (L::Gzip, C::Gzip),
            (L::Zstd, C::Zstd),
            (L::None, C::None),
            (L::None, C::Bzip2),
        ];
        for (declared, found) in ok {
            assert!(
                check_magic(declared, found).is_ok(),
                "{declared:?} {found:?}"
            );
        }
        let bad = [
            (
                L::Gzip,
                C::Zstd,
                "says gzip, but its content is zstd-compressed",
            ),
            (
                L::Gzip,
                C::None,
                "says gzip, but its content is not compressed",
            ),
            (L::Zstd, C::Gzip, "says zstd"),
            (
                L::None,
                C::Gzip,
                "says uncompressed tar, but its content is gzip",
            ),
            (L::None, C::Xz, "xz-compressed"),
        ];
        for (declared, found, want) in bad {
            let err = check_magic(declared, found).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }
}
