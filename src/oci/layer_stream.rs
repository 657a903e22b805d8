//! One layer's bytes, from the blob to the tar stream the unpacker reads, as a pipeline of
//! threads (`unpack::chunks`), each stage bounded to a few chunks:
//!
//! ```text
//! blob ─▶ [layer-read: VerifiedReader: size + sha256] ─▶ [inflate: per media type]
//!      ─▶ [diff-id: sha256 of the tar] ─▶ unpacker (the caller's thread: writing files)
//! ```
//!
//! Before, the blob's hash, inflation and the diff_id hash shared one thread while the caller
//! wrote files; now the two hashes run beside inflation, so the inflater (gzip cannot be split
//! across threads) only inflates, and the writer always finds decoded bytes waiting. A blob
//! this run already hashed (it was verified as it streamed into the cache, or re-hashed there
//! by the fetch) is only held to its size ([`BlobCheck::SizeOnly`]) and read by the inflater
//! itself. The declared compression must match the blob's magic bytes, checked before the
//! inflater starts.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

use super::blob::VerifiedReader;
use super::manifest::Descriptor;
use super::media::{LayerCompression, layer_compression};
use crate::digest::{Digest, Hasher};
use crate::unpack::chunks::{Chunks, Tap, ThreadedReader};
use crate::unpack::decompress::{self, Compression};

/// How much of a blob's check is left to do while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCheck {
    /// Size and sha256 (a blob of the cache as found, or of any other source).
    Full,
    /// Size only: this run hashed exactly these bytes already.
    SizeOnly,
}

/// A layer's tar stream, with its diff_id computed on the way.
pub struct LayerStream {
    reader: ThreadedReader,
    diff_id: Arc<Mutex<Option<(Digest, u64)>>>,
}

impl LayerStream {
    /// Starts the pipeline for the blob `reader` described by `descriptor`. The stages run
    /// ahead of the consumer as far as their buffers allow.
    pub fn open<R: Read + Send + 'static>(
        descriptor: &Descriptor,
        reader: R,
        check: BlobCheck,
    ) -> Result<LayerStream> {
        let compression = layer_compression(&descriptor.media_type)?;
        let blob: Box<dyn Read + Send> = match check {
            BlobCheck::Full => Box::new(
                Chunks::spawn(
                    "layer-read",
                    Box::new(VerifiedReader::new(reader, descriptor)),
                )
                .context("starting the layer reader")?
                .into_reader(),
            ),
            BlobCheck::SizeOnly => Box::new(VerifiedReader::size_only(reader, descriptor)),
        };
        let mut compressed = BufReader::with_capacity(256 << 10, blob);
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
        let diff_id = Arc::new(Mutex::new(None));
        let reader = Chunks::spawn("inflate", decoded)
            .and_then(|c| {
                c.tap(
                    "diff-id",
                    DiffIdTap {
                        hasher: Hasher::new(),
                        result: diff_id.clone(),
                    },
                )
            })
            .context("starting the decoder")?
            .into_reader();
        Ok(LayerStream { reader, diff_id })
    }

    /// Reads what is left (the unpacker stops after the end-of-archive marker; both digests
    /// are only known at the very end) and returns the tar's sha256 and size.
    pub fn finish(mut self) -> Result<(Digest, u64)> {
        io::copy(&mut self.reader, &mut io::sink()).context("reading the end of the layer")?;
        let finished = self
            .diff_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(finished) = finished else {
            bail!("the layer stream ended without reaching its end");
        };
        Ok(finished)
    }
}

impl Read for LayerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Hashes the decompressed stream on a stage of its own and hands the digest over once the
/// stream ended cleanly.
struct DiffIdTap {
    hasher: Hasher,
    result: Arc<Mutex<Option<(Digest, u64)>>>,
}

impl Tap for DiffIdTap {
    fn bytes(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    fn end(&mut self) {
        let hasher = std::mem::take(&mut self.hasher);
        let len = hasher.len();
        *self
            .result
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((hasher.finish(), len));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media;
    use std::io::Write as _;

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

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn read_through(blob: Vec<u8>, desc: &Descriptor, check: BlobCheck) -> Result<Vec<u8>> {
        let mut stream = LayerStream::open(desc, io::Cursor::new(blob), check)?;
        let mut head = vec![0u8; 1000];
        stream.read_exact(&mut head)?;
        let (diff_id, len) = stream.finish()?;
        assert_eq!(len as usize, TAR_LEN);
        assert_eq!(diff_id, Digest::of(&tar_bytes()));
        Ok(head)
    }

    const TAR_LEN: usize = 3 << 20;

    fn tar_bytes() -> Vec<u8> {
        (0..TAR_LEN).map(|i| (i % 253) as u8).collect()
    }

    #[test]
    fn the_diff_id_covers_the_whole_stream_whatever_the_consumer_read() {
        let tar = tar_bytes();
        let blob = gzip(&tar);
        let desc = Descriptor::new(media::OCI_LAYER_GZIP, Digest::of(&blob), blob.len() as u64);
        for check in [BlobCheck::Full, BlobCheck::SizeOnly] {
            let head = read_through(blob.clone(), &desc, check).unwrap();
            assert_eq!(head, tar[..1000], "{check:?}");
        }
    }

    #[test]
    fn a_lying_blob_fails_fully_checked_and_size_only_keeps_the_size() {
        let blob = gzip(&tar_bytes());
        let size = blob.len() as u64;
        let wrong = Descriptor::new(media::OCI_LAYER_GZIP, Digest::of(b"other"), size);
        let err = read_through(blob.clone(), &wrong, BlobCheck::Full).unwrap_err();
        assert!(format!("{err:#}").contains("wrong content"), "{err:#}");
        // The caller vouches for the digest, but not for a length that changed.
        let short = Descriptor::new(media::OCI_LAYER_GZIP, Digest::of(&blob), size + 1);
        let err = read_through(blob, &short, BlobCheck::SizeOnly).unwrap_err();
        assert!(format!("{err:#}").contains("ends after"), "{err:#}");
    }
}
