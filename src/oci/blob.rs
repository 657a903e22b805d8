//! Content-addressed reading. Every blob — manifest, config, layer — is read through a
//! [`VerifiedReader`] that holds it to its descriptor: not one byte more than `size`, not one
//! byte fewer, and the sha256 of exactly those bytes equal to `digest`. Where the bytes come
//! from (a layout directory, an archive, later a registry) is a [`BlobSource`], which is
//! never trusted.

use std::io::{self, Read};

use anyhow::{Context, Result, bail};

use super::manifest::Descriptor;
use crate::digest::Digest;
use crate::digest::Hasher;

/// Where blobs come from. Implementations only find bytes by name; checking them is done here.
pub trait BlobSource {
    /// Opens the blob named `digest`.
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>>;
}

/// Why a blob does not match its descriptor. Carried inside the `io::Error` (kind
/// `InvalidData`) a [`VerifiedReader`] returns, so it survives decompressors and the tar
/// reader and can be found again with `downcast_ref` on the error chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("blob {digest} is longer than the {size} bytes its descriptor gives")]
    TooLong { digest: Digest, size: u64 },
    #[error("blob {digest} ends after {got} bytes, but its descriptor gives {size}")]
    TooShort { digest: Digest, got: u64, size: u64 },
    #[error("blob {expected} has the wrong content: its sha256 is {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
}

/// Reads a blob and checks it against its descriptor (see the module documentation). The
/// check completes when the reader returns end-of-file: only a reader drained to its end has
/// been verified. Errors are `io::ErrorKind::InvalidData` wrapping a [`BlobError`].
pub struct VerifiedReader<R> {
    inner: R,
    /// `None` for [`VerifiedReader::size_only`].
    hasher: Option<Hasher>,
    /// Bytes read so far.
    read: u64,
    digest: Digest,
    size: u64,
    verified: bool,
}

impl<R: Read> VerifiedReader<R> {
    pub fn new(inner: R, descriptor: &Descriptor) -> VerifiedReader<R> {
        VerifiedReader {
            inner,
            hasher: Some(Hasher::new()),
            read: 0,
            digest: descriptor.digest,
            size: descriptor.size,
            verified: false,
        }
    }

    /// Holds the blob to its descriptor's size only, for bytes whose sha256 the caller
    /// computed in this same run (a layer hashed as it was downloaded into the cache, or
    /// re-hashed there moments ago): hashing them again would prove nothing new. The size is
    /// still exact, so a file that changed length since is refused.
    pub fn size_only(inner: R, descriptor: &Descriptor) -> VerifiedReader<R> {
        VerifiedReader {
            hasher: None,
            ..VerifiedReader::new(inner, descriptor)
        }
    }

    /// True once the whole blob was read and matched.
    pub fn is_verified(&self) -> bool {
        self.verified
    }

    fn fail(e: BlobError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl<R: Read> Read for VerifiedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.verified || buf.is_empty() {
            return Ok(0);
        }
        // Ask for at most one byte past the declared end: enough to notice a longer blob
        // without reading the rest of it.
        let room = self.size.saturating_sub(self.read).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let got = self.read;
            if got < self.size {
                return Err(Self::fail(BlobError::TooShort {
                    digest: self.digest,
                    got,
                    size: self.size,
                }));
            }
            if let Some(hasher) = self.hasher.take() {
                let actual = hasher.finish();
                if actual != self.digest {
                    return Err(Self::fail(BlobError::DigestMismatch {
                        expected: self.digest,
                        actual,
                    }));
                }
            }
            self.verified = true;
            return Ok(0);
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.read += n as u64;
        if self.read > self.size {
            return Err(Self::fail(BlobError::TooLong {
                digest: self.digest,
                size: self.size,
            }));
        }
        Ok(n)
    }
}

/// Opens a blob for streaming; it is verified when read to its end.
pub fn open_verified(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
) -> Result<VerifiedReader<Box<dyn Read + Send>>> {
    let inner = source.open_blob(&descriptor.digest)?;
    Ok(VerifiedReader::new(inner, descriptor))
}

/// Reads a whole blob of at most `max` bytes (`what` names it in messages) and verifies it.
/// The descriptor's size is checked against `max` before anything is read.
pub fn read_verified(
    source: &dyn BlobSource,
    descriptor: &Descriptor,
    max: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if descriptor.size > max {
        bail!(
            "{what} {} is {} bytes, more than the {max} bytes allowed",
            descriptor.digest,
            descriptor.size
        );
    }
    let mut reader = open_verified(source, descriptor)
        .with_context(|| format!("opening {what} {}", descriptor.digest))?;
    // The size is bounded by `max` above, so this allocation is too.
    let mut out = Vec::with_capacity(descriptor.size as usize);
    reader
        .read_to_end(&mut out)
        .with_context(|| format!("reading {what} {}", descriptor.digest))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::media;

    fn check(data: &[u8], desc: &Descriptor) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // A tiny buffer exercises the boundary handling.
        let mut r = VerifiedReader::new(data, desc);
        let mut buf = [0u8; 3];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                assert!(r.is_verified());
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn blob_error(e: io::Error) -> BlobError {
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        e.into_inner()
            .and_then(|inner| inner.downcast::<BlobError>().ok())
            .map(|b| *b)
            .expect("a BlobError inside")
    }

    #[test]
    fn good_blobs_pass_and_lies_are_caught() {
        let data = b"hello, layers";
        let d = Digest::of(data);
        let n = data.len() as u64;
        let desc = |digest, size| Descriptor::new(media::OCI_LAYER_TAR, digest, size);
        assert_eq!(check(data, &desc(d, n)).unwrap(), data);
        assert_eq!(check(b"", &desc(Digest::of(b""), 0)).unwrap(), b"");
        assert_eq!(
            blob_error(check(data, &desc(d, n - 1)).unwrap_err()),
            BlobError::TooLong {
                digest: d,
                size: n - 1
            }
        );
        assert_eq!(
            blob_error(check(data, &desc(d, n + 5)).unwrap_err()),
            BlobError::TooShort {
                digest: d,
                got: n,
                size: n + 5
            }
        );
        let other = Digest::of(b"something else");
        assert_eq!(
            blob_error(check(data, &desc(other, n)).unwrap_err()),
            BlobError::DigestMismatch {
                expected: other,
                actual: d
            }
        );
    }

    #[test]
    fn size_only_still_holds_the_size_but_not_the_digest() {
        let data = b"hashed while it was downloaded";
        let n = data.len() as u64;
        let read = |desc: &Descriptor| {
            let mut out = Vec::new();
            VerifiedReader::size_only(&data[..], desc)
                .read_to_end(&mut out)
                .map(|_| out)
        };
        let desc = |size| Descriptor::new(media::OCI_LAYER_TAR, Digest::of(b"other"), size);
        assert_eq!(read(&desc(n)).unwrap(), data);
        assert!(matches!(
            blob_error(read(&desc(n - 1)).unwrap_err()),
            BlobError::TooLong { .. }
        ));
        assert!(matches!(
            blob_error(read(&desc(n + 1)).unwrap_err()),
            BlobError::TooShort { .. }
        ));
    }

    #[test]
    fn read_verified_refuses_oversized_descriptors_without_reading() {
        struct Never;
        impl BlobSource for Never {
            fn open_blob(&self, _: &Digest) -> Result<Box<dyn Read + Send>> {
                panic!("must not be opened");
            }
        }
        let desc = Descriptor::new(media::OCI_MANIFEST, Digest::of(b""), 5 << 20);
        let err = read_verified(&Never, &desc, 4 << 20, "manifest").unwrap_err();
        assert!(
            err.to_string().contains("more than the 4194304 bytes"),
            "{err}"
        );
    }
}
