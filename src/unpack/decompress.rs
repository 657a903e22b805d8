//! Decompression chosen by magic bytes, never by file name, run on its own thread so that
//! decoding and writing files overlap (as `xz -d | tar -x` does with two processes).
//!
//! A cached `.xz` file with several blocks (`xz -T0` output) is decoded block-parallel by
//! `xz_parallel` with bounded memory (liblzma's own threaded decoder buffers every block in
//! flight whole: 150 MB for a Debian rootfs). Everything else decodes on one thread of its own
//! while the caller writes files. Multiple concatenated xz streams and stream padding are handled
//! here too.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;

use liblzma::stream::Stream;

pub use super::chunks::ThreadedReader;
use super::xz_parallel::{DEFAULT_BUFFER_CAP, open_parallel};
use crate::progress::{Progress, ProgressReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Zstd,
    Bzip2,
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::None => "none",
        }
    }
}

const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];

/// The compression of a stream that starts with `head` (at least 6 bytes when available).
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1F, 0x8B]) {
        Compression::Gzip
    } else if head.starts_with(XZ_MAGIC) {
        Compression::Xz
    } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Compression::Zstd
    } else if head.starts_with(b"BZh") {
        Compression::Bzip2
    } else {
        Compression::None
    }
}

/// How many threads decode a multi-block xz file: `$SANDBOX_XZ_THREADS`, else every core.
fn xz_threads() -> usize {
    std::env::var("SANDBOX_XZ_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1)
}

/// Opens a compressed file for unpacking, on threads of its own, advancing `progress`: a
/// multi-block xz file block-parallel (progress in uncompressed bytes), anything else through
/// `decoder` on one thread (progress in compressed bytes).
pub fn open_file(
    file: File,
    progress: &Progress,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let mut head = [0u8; 6];
    let n = file.read_at(&mut head, 0)?;
    if detect(&head[..n]) == Compression::Xz
        && let Some(parallel) = open_parallel(file.try_clone()?, xz_threads(), DEFAULT_BUFFER_CAP)?
    {
        tracing::debug!(
            "decoding {} xz blocks on {} threads",
            parallel.blocks(),
            xz_threads()
        );
        progress.start_bytes(Some(parallel.uncompressed_size()), 0);
        let counted = ProgressReader {
            inner: parallel,
            progress: progress.clone(),
        };
        return Ok((Compression::Xz, Box::new(counted)));
    }
    progress.start_bytes(file.metadata().ok().map(|m| m.len()), 0);
    let counted = ProgressReader {
        inner: file,
        progress: progress.clone(),
    };
    let (compression, reader) = decoder(counted)?;
    Ok((compression, Box::new(ThreadedReader::new(reader)?)))
}

/// Decodes every xz stream in the input, skipping stream padding; anything else after the
/// last stream is an error.
struct MultiStreamXz<R: BufRead> {
    current: Option<liblzma::bufread::XzDecoder<R>>,
    inner: Option<R>,
}

impl<R: BufRead> MultiStreamXz<R> {
    fn new(inner: R) -> Self {
        MultiStreamXz {
            current: None,
            inner: Some(inner),
        }
    }

    fn start_stream(&mut self, inner: R) -> io::Result<()> {
        let stream = Stream::new_stream_decoder(u64::MAX, 0)
            .map_err(|e| io::Error::other(format!("starting the xz decoder: {e}")))?;
        self.current = Some(liblzma::bufread::XzDecoder::new_stream(inner, stream));
        Ok(())
    }
}

impl<R: BufRead> Read for MultiStreamXz<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(dec) = &mut self.current {
                let n = dec.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // End of one stream: look for padding and another stream.
                let dec = self.current.take().expect("checked above");
                self.inner = Some(dec.into_inner());
            }
            let mut inner = self.inner.take().expect("one of current/inner is set");
            // Stream padding: NUL bytes (the format requires multiples of four; be lenient).
            loop {
                let data = inner.fill_buf()?;
                if data.is_empty() {
                    return Ok(0);
                }
                let zeros = data.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                inner.consume(zeros);
            }
            let head = inner.fill_buf()?;
            if !head.starts_with(&XZ_MAGIC[..head.len().min(XZ_MAGIC.len())]) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "trailing garbage after the xz stream",
                ));
            }
            self.start_stream(inner)?;
        }
    }
}

/// A decompressing reader over `input`, detecting the compression from its first bytes.
pub fn decoder<R: Read + Send + 'static>(
    input: R,
) -> io::Result<(Compression, Box<dyn Read + Send>)> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let compression = detect(input.fill_buf()?);
    let reader: Box<dyn Read + Send> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Xz => {
            let mut xz = MultiStreamXz::new(input);
            let inner = xz.inner.take().expect("just built");
            xz.start_stream(inner)?;
            Box::new(xz)
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::None => Box::new(input),
    };
    Ok((compression, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn compress_with(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {tool}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let data_owned = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&data_owned));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "{tool} failed");
        out.stdout
    }

    fn sample() -> Vec<u8> {
        (0..3_000_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn decode_all(data: Vec<u8>) -> (Compression, Vec<u8>) {
        let (c, r) = decoder(io::Cursor::new(data)).unwrap();
        let mut out = Vec::new();
        ThreadedReader::new(r)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        (c, out)
    }

    #[test]
    fn every_compression_round_trips_through_real_tools() {
        let data = sample();
        for (tool, args, expected) in [
            ("gzip", &["-c"][..], Compression::Gzip),
            ("xz", &["-c", "-T0"][..], Compression::Xz),
            // Several blocks: exercises the threaded decoder.
            (
                "xz",
                &["-c", "-T2", "--block-size=1MiB"][..],
                Compression::Xz,
            ),
            ("zstd", &["-c", "-q"][..], Compression::Zstd),
            ("bzip2", &["-c"][..], Compression::Bzip2),
            ("cat", &[][..], Compression::None),
        ] {
            let compressed = compress_with(tool, args, &data);
            let (c, out) = decode_all(compressed);
            assert_eq!(c, expected, "{tool}");
            assert!(out == data, "{tool} {args:?}: decoded bytes differ");
        }
    }

    #[test]
    fn concatenated_streams_decode_whole() {
        for (tool, args) in [
            ("xz", &["-c"][..]),
            ("gzip", &["-c"][..]),
            ("zstd", &["-c", "-q"][..]),
            ("bzip2", &["-c"][..]),
        ] {
            let mut both = compress_with(tool, args, b"first ");
            both.extend(compress_with(tool, args, b"second"));
            let (_, out) = decode_all(both);
            assert_eq!(out, b"first second", "{tool}");
        }
    }

    #[test]
    fn xz_padding_is_fine_and_garbage_is_not() {
        let mut padded = compress_with("xz", &["-c"], b"data");
        padded.extend([0u8; 8]);
        assert_eq!(decode_all(padded).1, b"data");

        let mut garbage = compress_with("xz", &["-c"], b"data");
        garbage.extend(b"garbage!");
        let (_, r) = decoder(io::Cursor::new(garbage)).unwrap();
        let err = ThreadedReader::new(r)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("trailing garbage"), "{err}");
    }

    #[test]
    fn truncated_input_is_an_error() {
        for (tool, args) in [
            ("xz", &["-c"][..]),
            ("gzip", &["-c"][..]),
            ("zstd", &["-c", "-q"][..]),
            ("bzip2", &["-c"][..]),
        ] {
            let mut c = compress_with(tool, args, &sample());
            c.truncate(c.len() / 2);
            let (_, r) = decoder(io::Cursor::new(c)).unwrap();
            assert!(
                ThreadedReader::new(r)
                    .unwrap()
                    .read_to_end(&mut Vec::new())
                    .is_err(),
                "{tool}"
            );
        }
    }

    fn open_and_read(path: &std::path::Path) -> (Compression, Vec<u8>) {
        let (c, mut r) = open_file(File::open(path).unwrap(), &Progress::hidden()).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (c, out)
    }

    #[test]
    fn files_decode_the_same_whichever_path_is_taken() {
        let data = sample();
        let dir = tempfile::tempdir().unwrap();
        for (name, tool, args) in [
            // Several blocks: the block-parallel reader.
            ("multi.xz", "xz", &["-c", "-T2", "--block-size=1MiB"][..]),
            // One block: the sequential decoder.
            ("single.xz", "xz", &["-c", "-T1"][..]),
            ("data.zst", "zstd", &["-c", "-q"][..]),
            ("data.gz", "gzip", &["-c"][..]),
        ] {
            let path = dir.path().join(name);
            fs_err::write(&path, compress_with(tool, args, &data)).unwrap();
            let (_, out) = open_and_read(&path);
            assert!(out == data, "{name}: decoded bytes differ");
        }
    }

    #[test]
    fn detects_by_magic() {
        assert_eq!(detect(b"\x1f\x8b\x08"), Compression::Gzip);
        assert_eq!(detect(b"\xfd7zXZ\x00"), Compression::Xz);
        assert_eq!(detect(b"\x28\xb5\x2f\xfd"), Compression::Zstd);
        assert_eq!(detect(b"BZh9"), Compression::Bzip2);
        assert_eq!(detect(b"./\0\0"), Compression::None);
        assert_eq!(detect(b""), Compression::None);
    }
}
