//! The byte stream under the tar parser: counts positions (for messages), notices the end of the
//! input and decompressor errors (to tell truncation from corruption), keeps a copy of the
//! header bytes the tar crate consumes for each entry (to re-read PAX records correctly, see
//! `pax.rs`), and can push one block back (to start the next of concatenated archives).
//!
//! Old GNU sparse entries (type `S`) are taken out of the tar crate's hands here: the crate
//! would hand their holes out as zeros, so unpacking would cost time in proportion to the
//! declared size (a 2 KiB archive declaring 1 TiB took 43 s). When the extractor starts reading
//! an entry's headers, the stream reads them ahead; an `S` header with a valid checksum has its
//! sparse map (and the extension blocks that continue it) read and kept in the [`Tracker`],
//! and is handed to the crate as a regular file of the stored data only (type `0`, checksum
//! recomputed, the extension blocks left out). The extractor then writes the data segments
//! at their offsets and sizes the file, as for PAX sparse files (`sparse.rs`).

use std::cell::{Cell, RefCell};
use std::io::{self, Read};

use super::sparse::{self, CopyError};

/// Extended headers (PAX, GNU long names, sparse maps) of one entry larger than this are refused:
/// the tar crate reads them into memory, so without a bound one header could exhaust it.
pub const MAX_HEADER_BYTES: usize = 16 << 20;

const BLOCK: usize = 512;

/// State shared between the reader (owned by the tar crate while it parses) and the extractor.
#[derive(Default)]
pub struct Tracker {
    pos: Cell<u64>,
    eof: Cell<bool>,
    failed: Cell<bool>,
    overflow: Cell<bool>,
    capture: RefCell<Option<Vec<u8>>>,
    capture_start: Cell<u64>,
    /// The next read starts an entry's headers: read them ahead (old GNU sparse entries).
    headers_next: Cell<bool>,
    old_gnu: RefCell<Option<OldGnuSparse>>,
}

/// The sparse map of an old GNU `S` entry, read from its header and extension blocks.
#[derive(Debug)]
pub struct OldGnuSparse {
    /// Stream offset (as the parser counts it) of the entry's header.
    pub header_at: u64,
    /// The map and the file's real size, or why they could not be read.
    pub map: Result<(Vec<(u64, u64)>, u64), CopyError>,
}

impl Tracker {
    /// Bytes handed to the parser so far: the offset of the next byte in the tar stream.
    pub fn pos(&self) -> u64 {
        self.pos.get()
    }

    /// The input ended while more bytes were wanted.
    pub fn hit_eof(&self) -> bool {
        self.eof.get()
    }

    /// The input itself (decompressor, network) returned an error.
    pub fn input_failed(&self) -> bool {
        self.failed.get()
    }

    /// Extended headers exceeded [`MAX_HEADER_BYTES`].
    pub fn overflowed(&self) -> bool {
        self.overflow.get()
    }

    /// Starts recording the bytes read from now on (the header phase of the next entry).
    pub fn begin_capture(&self) {
        self.capture_start.set(self.pos.get());
        *self.capture.borrow_mut() = Some(Vec::new());
        self.headers_next.set(true);
        self.old_gnu.borrow_mut().take();
    }

    /// The old GNU sparse map read for the entry whose header is at `header_at`, if it is one.
    pub fn take_old_gnu_sparse(&self) -> Option<OldGnuSparse> {
        self.old_gnu.borrow_mut().take()
    }

    /// Stops recording; returns the stream offset where recording began and the bytes.
    pub fn end_capture(&self) -> (u64, Vec<u8>) {
        let bytes = self.capture.borrow_mut().take().unwrap_or_default();
        (self.capture_start.get(), bytes)
    }
}

/// The reader given to `tar::Archive`.
pub struct Stream<'t, R> {
    inner: R,
    pushback: Vec<u8>,
    pushback_pos: usize,
    tracker: &'t Tracker,
}

impl<'t, R: Read> Stream<'t, R> {
    pub fn new(inner: R, tracker: &'t Tracker) -> Self {
        Stream {
            inner,
            pushback: Vec::new(),
            pushback_pos: 0,
            tracker,
        }
    }

    /// Makes `bytes` (just read) the next bytes to be read again.
    pub fn push_back(&mut self, bytes: &[u8]) {
        let mut rest = bytes.to_vec();
        rest.extend_from_slice(&self.pushback[self.pushback_pos..]);
        self.pushback = rest;
        self.pushback_pos = 0;
        let pos = self.tracker.pos.get();
        self.tracker.pos.set(pos.saturating_sub(bytes.len() as u64));
    }

    /// Reads up to one block; fewer bytes only at the end of the input.
    pub fn read_block(&mut self, block: &mut [u8; BLOCK]) -> io::Result<usize> {
        fill(self, block)
    }

    /// Appends up to `n` bytes of the input (the pushback first) to `out`, without counting
    /// them as handed to the parser; false when the input ended first.
    fn take_raw(&mut self, out: &mut Vec<u8>, n: usize) -> io::Result<bool> {
        let from_pushback = n.min(self.pushback.len() - self.pushback_pos);
        out.extend_from_slice(&self.pushback[self.pushback_pos..self.pushback_pos + from_pushback]);
        self.pushback_pos += from_pushback;
        let start = out.len();
        let want = n - from_pushback;
        out.resize(start + want, 0);
        let got = fill(&mut self.inner, &mut out[start..]).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                self.tracker.failed.set(true);
            }
        })?;
        out.truncate(start + got);
        Ok(got == want)
    }

    /// Reads the headers of the next entry ahead (the padding of the previous entry's data,
    /// extension headers, the entry's header), replaces an old GNU sparse header by a regular
    /// one (see the module documentation), and queues the bytes for the parser. Anything it
    /// does not understand is queued as read, for the parser to judge.
    fn read_headers_ahead(&mut self) -> io::Result<()> {
        let start = self.tracker.pos.get();
        let mut ahead = Vec::new();
        let pad = ((BLOCK as u64 - start % BLOCK as u64) % BLOCK as u64) as usize;
        let mut complete = self.take_raw(&mut ahead, pad)?;
        while complete {
            let at = ahead.len();
            if !self.take_raw(&mut ahead, BLOCK)? {
                break;
            }
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(&ahead[at..]);
            let header = tar::Header::from_byte_slice(&block);
            let kind = header.entry_type();
            let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
            if recognized
                && (kind.is_pax_local_extensions()
                    || kind.is_gnu_longname()
                    || kind.is_gnu_longlink())
            {
                match header
                    .entry_size()
                    .ok()
                    .and_then(|s| usize::try_from(s).ok())
                {
                    Some(size) if size <= MAX_HEADER_BYTES => {
                        complete = self.take_raw(&mut ahead, size.div_ceil(BLOCK) * BLOCK)?;
                        continue;
                    }
                    // The parser reports these (and the capture bound stops a huge one).
                    _ => break,
                }
            }
            if kind.is_gnu_sparse() && header.as_gnu().is_some() && is_valid_header(&block) {
                let map = sparse::old_gnu_map(&block, &mut || {
                    let mut ext = Vec::with_capacity(BLOCK);
                    match self.take_raw(&mut ext, BLOCK) {
                        Ok(true) => Ok(ext),
                        Ok(false) => Err(CopyError::Short),
                        Err(e) => Err(CopyError::Read(e)),
                    }
                });
                let mut regular = tar::Header::new_old();
                regular.as_mut_bytes().copy_from_slice(&block);
                regular.set_entry_type(tar::EntryType::Regular);
                regular.set_cksum();
                ahead[at..].copy_from_slice(regular.as_bytes());
                *self.tracker.old_gnu.borrow_mut() = Some(OldGnuSparse {
                    header_at: start + at as u64,
                    map,
                });
            }
            break;
        }
        self.push_back_unread(&ahead);
        Ok(())
    }

    /// Queues `bytes` (read ahead, not yet counted) before the rest of the pushback.
    fn push_back_unread(&mut self, bytes: &[u8]) {
        let mut queue = bytes.to_vec();
        queue.extend_from_slice(&self.pushback[self.pushback_pos..]);
        self.pushback = queue;
        self.pushback_pos = 0;
    }
}

impl<R: Read> Read for Stream<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.tracker.headers_next.replace(false) {
            self.read_headers_ahead()?;
        }
        let n = if self.pushback_pos < self.pushback.len() {
            let n = buf.len().min(self.pushback.len() - self.pushback_pos);
            buf[..n].copy_from_slice(&self.pushback[self.pushback_pos..self.pushback_pos + n]);
            self.pushback_pos += n;
            n
        } else {
            match self.inner.read(buf) {
                Ok(0) => {
                    self.tracker.eof.set(true);
                    0
                }
                Ok(n) => n,
                Err(e) => {
                    if e.kind() != io::ErrorKind::Interrupted {
                        self.tracker.failed.set(true);
                    }
                    return Err(e);
                }
            }
        };
        self.tracker.pos.set(self.tracker.pos.get() + n as u64);
        if let Some(capture) = self.tracker.capture.borrow_mut().as_mut() {
            if capture.len() + n > MAX_HEADER_BYTES {
                self.tracker.overflow.set(true);
                return Err(io::Error::other(format!(
                    "extended headers larger than {MAX_HEADER_BYTES} bytes"
                )));
            }
            capture.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The header blocks the tar crate consumed for one entry, re-walked: returns the data of the
/// PAX `x` header that applies to the entry, if any, and the stream offset of the entry's own
/// header. `start` is the stream offset where `captured` begins (it may begin with the padding
/// of the previous entry's data, which is skipped). Mirrors the tar crate: extension headers
/// count only with a ustar or GNU magic.
pub fn walk_extension_headers(start: u64, captured: &[u8]) -> (Option<&[u8]>, u64) {
    let mut off = ((BLOCK as u64 - start % BLOCK as u64) % BLOCK as u64) as usize;
    let mut pax = None;
    while off + BLOCK <= captured.len() {
        let header = tar::Header::from_byte_slice(&captured[off..off + BLOCK]);
        let kind = header.entry_type();
        let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
        let extension =
            kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink();
        if !recognized || !extension {
            break;
        }
        let Ok(size) = header.entry_size() else { break };
        let Ok(size) = usize::try_from(size) else {
            break;
        };
        let data_start = off + BLOCK;
        let Some(data) = captured.get(data_start..data_start.saturating_add(size)) else {
            break;
        };
        if kind.is_pax_local_extensions() {
            pax = Some(data);
        }
        off = data_start + size.div_ceil(BLOCK) * BLOCK;
    }
    (pax, start + off as u64)
}

/// True when `block` carries a valid (unsigned) header checksum, as the tar crate checks it.
pub fn is_valid_header(block: &[u8; BLOCK]) -> bool {
    let header = tar::Header::from_byte_slice(block);
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let sum: u32 = block[..148]
        .iter()
        .chain(&block[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    sum == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_positions_and_notices_eof() {
        let tracker = Tracker::default();
        let mut s = Stream::new(&b"hello world"[..], &tracker);
        let mut buf = [0u8; 5];
        assert_eq!(fill(&mut s, &mut buf).unwrap(), 5);
        assert_eq!(tracker.pos(), 5);
        s.push_back(b"hello");
        assert_eq!(tracker.pos(), 0);
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"hello world");
        assert_eq!(tracker.pos(), 11);
        assert!(tracker.hit_eof());
    }

    #[test]
    fn input_errors_are_flagged() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("xz: corrupt data"))
            }
        }
        let tracker = Tracker::default();
        let mut s = Stream::new(Failing, &tracker);
        assert!(s.read(&mut [0; 4]).is_err());
        assert!(tracker.input_failed());
        assert!(!tracker.hit_eof());
    }

    #[test]
    fn capture_is_bounded() {
        let tracker = Tracker::default();
        let data = vec![1u8; MAX_HEADER_BYTES + 10];
        let mut s = Stream::new(&data[..], &tracker);
        tracker.begin_capture();
        let mut sink = Vec::new();
        assert!(s.read_to_end(&mut sink).is_err());
        assert!(tracker.overflowed());
    }

    #[test]
    fn finds_the_pax_header_before_an_entry() {
        let mut builder = tar::Builder::new(Vec::new());
        let records = crate::unpack::tests::util::pax_record("SCHILY.xattr.user.x", b"v\nw");
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(records.len() as u64);
        pax.set_path("PaxHeaders/a").unwrap();
        pax.set_cksum();
        builder.append(&pax, &records[..]).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "a".repeat(150), &[][..])
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        // Captured from offset 100 on: as if the previous entry's data ended there.
        let mut captured = vec![0u8; 412];
        captured.extend_from_slice(&bytes);
        let (pax, header_at) = walk_extension_headers(100, &captured);
        let pax = pax.expect("the pax header");
        assert!(pax.windows(3).any(|w| w == b"v\nw"));
        // PAX header + its data block, GNU long name header + its data block, then the entry.
        assert_eq!(header_at, 100 + 412 + 4 * 512);
        let mut block = [0u8; 512];
        block.copy_from_slice(&bytes[..512]);
        assert!(is_valid_header(&block));
        block[0] ^= 1;
        assert!(!is_valid_header(&block));
    }
}
