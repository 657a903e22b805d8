//! Block-parallel xz decoding of a seekable file in bounded memory.
//!
//! `xz -T0` writes independent blocks (24 MiB uncompressed each at the default level) and
//! lists them in an index at the end of the stream. liblzma's own threaded decoder buffers
//! every block in flight whole (150 MB RSS for two threads on a Debian rootfs); this one reads
//! the index first ([`super::xz_index`]), lets `threads` workers decode blocks in turn, and
//! hands the output to one consumer strictly in order, with the decoded-but-unread bytes
//! capped.
//!
//! Memory: at most `buffer_cap` + 2 chunks (1 MiB each) of decoded bytes exist at any time,
//! plus per worker one liblzma decoder (its dictionary: 8 MiB at `xz -6`) and one 256 KiB
//! input buffer. Deadlock freedom: a worker whose block the consumer is reading may always
//! add a chunk when the consumer has nothing of that block queued, so the consumer can always
//! make progress; workers on later blocks wait for room under the cap.
//!
//! Integrity: each block is decoded as a complete one-block xz stream (see
//! [`super::xz_index::single_block_stream`]), so liblzma verifies its header, its check
//! (CRC32/CRC64/SHA-256) and its sizes. As with any streaming decoder, a block's bytes are
//! handed out before its check has been verified at the block's end: a consumer must treat an
//! error as "discard everything" (the unpacker extracts into a staging directory for this).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use liblzma::stream::{Action, Status, Stream};

use super::xz_index::{self, BlockInfo, LayoutError};

/// The default cap on decoded bytes waiting for the consumer: one whole 24 MiB block (what
/// `xz -6 -T0` writes), so that with two workers the second never waits for the first. The
/// whole process then peaks near 60 MiB on a Debian rootfs (the budget is 64 MiB).
pub const DEFAULT_BUFFER_CAP: usize = 24 << 20;

/// Unit of hand-over and of memory accounting: decoded bytes travel in chunks of this size.
const CHUNK: usize = 1 << 20;
/// Compressed bytes are read in pieces of this size rather than a whole block at a time.
const INPUT_PIECE: usize = 256 << 10;

/// Opens `file` (a whole .xz file) for block-parallel decoding with `threads` workers
/// (0: one per core) and at most `buffer_cap` decoded bytes waiting for the reader.
///
/// Returns `Ok(None)` when the file cannot be decoded this way or would not gain from it: not
/// a regular file, fewer than two blocks, an index this reader does not accept (including a
/// corrupt or truncated file), or an unusual check type. The caller then uses the sequential
/// decoder, which reports real corruption. Errors are I/O errors while reading the index.
pub fn open_parallel(
    file: File,
    threads: usize,
    buffer_cap: usize,
) -> io::Result<Option<ParallelXzReader>> {
    open_with_min_blocks(file, threads, buffer_cap, 2)
}

fn open_with_min_blocks(
    file: File,
    threads: usize,
    buffer_cap: usize,
    min_blocks: usize,
) -> io::Result<Option<ParallelXzReader>> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let blocks = match xz_index::locate_blocks(meta.len(), |pos, buf| file.read_exact_at(buf, pos))
    {
        Ok(blocks) => blocks,
        Err(LayoutError::Io(e)) => {
            return Err(io::Error::new(
                e.kind(),
                format!("reading the xz index: {e}"),
            ));
        }
        Err(LayoutError::Unusable(why)) => {
            tracing::debug!(%why, "xz file not decodable block by block");
            return Ok(None);
        }
    };
    if blocks.len() < min_blocks {
        return Ok(None);
    }
    let Some(uncompressed_size) = blocks
        .iter()
        .try_fold(0u64, |sum, b| sum.checked_add(b.uncompressed_size))
    else {
        return Ok(None);
    };
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(blocks.len());

    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            next_block: 0,
            reading: 0,
            slots: (0..blocks.len()).map(|_| Slot::default()).collect(),
            buffered: 0,
            peak_buffered: 0,
            free: Vec::new(),
            first_failure: None,
            dropped: false,
        }),
        changed: Condvar::new(),
        file,
        blocks,
        cap: buffer_cap,
    });
    let mut reader = ParallelXzReader {
        shared: Arc::clone(&shared),
        workers: Vec::with_capacity(threads),
        current: None,
        pos: 0,
        failure: None,
        uncompressed_size,
    };
    for i in 0..threads {
        let shared = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name(format!("xz-block-{i}"))
            .spawn(move || worker(&shared))
            .map_err(|e| io::Error::new(e.kind(), format!("starting an xz worker thread: {e}")))?;
        // On an early return the reader's Drop stops and joins the workers already started.
        reader.workers.push(worker);
    }
    Ok(Some(reader))
}

/// The decoded bytes of a seekable .xz file, in order, decoded by several threads.
pub struct ParallelXzReader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// The chunk being read (still counted in `State::buffered` until drained).
    current: Option<Vec<u8>>,
    pos: usize,
    /// A failure already reported: every later read reports it again.
    failure: Option<(io::ErrorKind, String)>,
    uncompressed_size: u64,
}

// The reader is handed to the thread that unpacks the tarball: keep it movable.
const _: fn() = || {
    fn movable<T: Read + Send + 'static>() {}
    movable::<ParallelXzReader>();
};

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `State` that anybody might wait for.
    changed: Condvar,
    file: File,
    blocks: Vec<BlockInfo>,
    cap: usize,
}

struct State {
    /// The next block a free worker takes: blocks are started in order.
    next_block: usize,
    /// The block the consumer reads.
    reading: usize,
    slots: Vec<Slot>,
    /// Bytes of chunk capacity that hold (or are reserved for) decoded data not yet read:
    /// chunks being filled, queued, or being read.
    buffered: usize,
    peak_buffered: usize,
    /// Drained chunks for reuse: allocations stay bounded by the peak of `buffered`.
    free: Vec<Vec<u8>>,
    /// The lowest block that failed: no block after it is started, or continued.
    first_failure: Option<usize>,
    /// The reader is gone: every worker stops.
    dropped: bool,
}

#[derive(Default)]
struct Slot {
    chunks: VecDeque<Vec<u8>>,
    /// `None` while being decoded; then success, or the error for the consumer.
    end: Option<Result<(), (io::ErrorKind, String)>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking worker cannot leave the state half-updated in a way that matters more
        // than the panic itself; keep going so that Drop can still join.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// A chunk for block `block` to fill, waiting for room under the cap; `None` when the
    /// worker should stop.
    fn reserve_chunk(&self, block: usize) -> Option<Vec<u8>> {
        let mut st = self.lock();
        loop {
            if st.should_stop(block) {
                return None;
            }
            let room = st.buffered + CHUNK <= self.cap;
            // Never block the consumer's own block while the consumer has nothing of it
            // queued: otherwise later blocks filling the cap would stall everybody.
            let starving = st.reading == block && st.slots[block].chunks.is_empty();
            if room || starving {
                break;
            }
            st = self.wait(st);
        }
        st.buffered += CHUNK;
        st.peak_buffered = st.peak_buffered.max(st.buffered);
        let mut chunk = st.free.pop().unwrap_or_else(|| Vec::with_capacity(CHUNK));
        chunk.clear();
        Some(chunk)
    }

    /// Queues a filled chunk of `block` for the consumer (an empty one just gives back its
    /// reservation).
    fn push_chunk(&self, block: usize, chunk: Vec<u8>) {
        let mut st = self.lock();
        if chunk.is_empty() {
            st.release(chunk);
        } else {
            st.slots[block].chunks.push_back(chunk);
        }
        drop(st);
        self.changed.notify_all();
    }

    fn cancelled(&self, block: usize) -> bool {
        self.lock().should_stop(block)
    }
}

impl State {
    fn should_stop(&self, block: usize) -> bool {
        self.dropped || self.first_failure.is_some_and(|f| f < block)
    }

    fn release(&mut self, chunk: Vec<u8>) {
        self.buffered -= CHUNK;
        self.free.push(chunk);
    }
}

fn worker(shared: &Shared) {
    let mut input = vec![0u8; INPUT_PIECE];
    loop {
        let block = {
            let mut st = shared.lock();
            let b = st.next_block;
            if b == shared.blocks.len() || st.should_stop(b) {
                return;
            }
            st.next_block += 1;
            b
        };
        // A panic (liblzma's binding panics on a return code it does not know) must still
        // end the block, or the reader would wait for it forever.
        let decoded =
            std::panic::catch_unwind(AssertUnwindSafe(|| decode_block(shared, block, &mut input)))
                .unwrap_or_else(|_| Err(io::Error::other("the decoding thread panicked")));
        let end = match decoded {
            Ok(Decoded::Complete) => Ok(()),
            Ok(Decoded::Cancelled) => return,
            Err(e) => {
                let info = &shared.blocks[block];
                Err((
                    e.kind(),
                    format!(
                        "xz block {} of {} at byte {}: {e}",
                        block + 1,
                        shared.blocks.len(),
                        info.offset
                    ),
                ))
            }
        };
        let mut st = shared.lock();
        if end.is_err() {
            st.first_failure = Some(st.first_failure.map_or(block, |f| f.min(block)));
        }
        st.slots[block].end = Some(end);
        drop(st);
        shared.changed.notify_all();
    }
}

enum Decoded {
    Complete,
    Cancelled,
}

/// Where one block's decoded bytes go: chunks reserved from, and queued to, the shared state.
struct BlockOutput<'a> {
    shared: &'a Shared,
    block: usize,
    chunk: Option<Vec<u8>>,
}

impl BlockOutput<'_> {
    /// A chunk with free space, queueing the current one first if it is full; `None` when
    /// the worker should stop.
    fn with_space(&mut self) -> Option<&mut Vec<u8>> {
        if self.chunk.as_ref().is_some_and(|c| c.len() == c.capacity()) {
            if let Some(full) = self.chunk.take() {
                self.shared.push_chunk(self.block, full);
            }
        }
        if self.chunk.is_none() {
            self.chunk = Some(self.shared.reserve_chunk(self.block)?);
        }
        self.chunk.as_mut()
    }
}

impl Drop for BlockOutput<'_> {
    /// Queues the last, partly filled chunk (or gives back its reservation on failure paths:
    /// the consumer never reads past a failed block, so queued bytes of it are harmless).
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            self.shared.push_chunk(self.block, chunk);
        }
    }
}

/// What feeding input to the decoder came to.
enum Fed {
    /// All input consumed; the stream continues.
    NeedMore,
    /// The stream ended, with this many input bytes left over.
    End(usize),
    Cancelled,
}

fn feed(stream: &mut Stream, mut input: &[u8], out: &mut BlockOutput<'_>) -> io::Result<Fed> {
    loop {
        let Some(chunk) = out.with_space() else {
            return Ok(Fed::Cancelled);
        };
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream
            .process_vec(input, chunk, Action::Run)
            .map_err(io::Error::from)?;
        let used = (stream.total_in() - in_before) as usize;
        input = &input[used..];
        if status == Status::StreamEnd {
            return Ok(Fed::End(input.len()));
        }
        // liblzma produces all it can while it has room: room left means it needs input.
        if input.is_empty() && chunk.len() < chunk.capacity() {
            return Ok(Fed::NeedMore);
        }
        if used == 0 && stream.total_out() == out_before {
            return Err(io::Error::other("the xz decoder made no progress"));
        }
    }
}

/// Decodes block `block` into its slot, reading its compressed bytes piece by piece.
fn decode_block(shared: &Shared, block: usize, input: &mut [u8]) -> io::Result<Decoded> {
    let info = &shared.blocks[block];
    let (header, trailer) = xz_index::single_block_stream(info);
    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).map_err(io::Error::from)?;
    let mut out = BlockOutput {
        shared,
        block,
        chunk: None,
    };
    let premature_end = || io::Error::new(io::ErrorKind::InvalidData, "block ended early");

    match feed(&mut stream, &header, &mut out)? {
        Fed::NeedMore => {}
        Fed::End(_) => return Err(premature_end()),
        Fed::Cancelled => return Ok(Decoded::Cancelled),
    }
    let (mut pos, end) = (info.offset, info.offset + info.total_size());
    while pos < end {
        if shared.cancelled(block) {
            return Ok(Decoded::Cancelled);
        }
        let piece = &mut input[..(end - pos).min(INPUT_PIECE as u64) as usize];
        shared.file.read_exact_at(piece, pos).map_err(|e| {
            io::Error::new(e.kind(), format!("reading compressed bytes at {pos}: {e}"))
        })?;
        pos += piece.len() as u64;
        match feed(&mut stream, piece, &mut out)? {
            Fed::NeedMore => {}
            Fed::End(_) => return Err(premature_end()),
            Fed::Cancelled => return Ok(Decoded::Cancelled),
        }
    }
    match feed(&mut stream, &trailer, &mut out)? {
        Fed::End(0) => {}
        Fed::End(_) | Fed::NeedMore => return Err(premature_end()),
        Fed::Cancelled => return Ok(Decoded::Cancelled),
    }
    // liblzma compared the sizes with the synthesized index already; this guards the
    // framing code above as much as the data.
    if stream.total_out() != info.uncompressed_size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "decoded {} bytes where the index says {}",
                stream.total_out(),
                info.uncompressed_size
            ),
        ));
    }
    Ok(Decoded::Complete)
}

impl ParallelXzReader {
    /// The size of the decoded data, from the index.
    pub fn uncompressed_size(&self) -> u64 {
        self.uncompressed_size
    }

    /// How many blocks the file holds (across all its streams).
    pub fn blocks(&self) -> usize {
        self.shared.blocks.len()
    }

    /// The most chunk memory that held decoded bytes at any one time.
    #[cfg(test)]
    fn peak_buffered(&self) -> usize {
        self.shared.lock().peak_buffered
    }

    /// Makes the next chunk current; `false` at the end of the data.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let shared = Arc::clone(&self.shared);
        let mut st = shared.lock();
        if let Some(drained) = self.current.take() {
            st.release(drained);
            shared.changed.notify_all();
        }
        loop {
            let reading = st.reading;
            if reading == shared.blocks.len() {
                return Ok(false);
            }
            let slot = &mut st.slots[reading];
            if let Some(chunk) = slot.chunks.pop_front() {
                self.current = Some(chunk);
                self.pos = 0;
                // The worker of this block may be waiting for its queue to empty.
                shared.changed.notify_all();
                return Ok(true);
            }
            match &slot.end {
                Some(Ok(())) => {
                    st.reading += 1;
                    shared.changed.notify_all();
                }
                Some(Err((kind, msg))) => {
                    self.failure = Some((*kind, msg.clone()));
                    return Err(io::Error::new(*kind, msg.clone()));
                }
                None => st = shared.wait(st),
            }
        }
    }
}

impl Read for ParallelXzReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, msg)) = &self.failure {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(chunk) = &self.current {
                if self.pos < chunk.len() {
                    let n = buf.len().min(chunk.len() - self.pos);
                    buf[..n].copy_from_slice(&chunk[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
    }
}

impl Drop for ParallelXzReader {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.changed.notify_all();
        for worker in self.workers.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
#[path = "xz_parallel_tests.rs"]
mod tests;
