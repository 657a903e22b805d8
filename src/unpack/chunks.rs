//! Byte streams handed between threads in bounded chunks: a pipeline of stages, each on a
//! thread of its own, so that reading a blob, decompressing it, hashing what comes out and
//! writing files use every core (as `curl | gzip -d | tar -x` does with processes).
//!
//! ```text
//! Chunks::spawn(source) ─▶ [DEPTH chunks] ─▶ .tap(hasher) ─▶ [DEPTH chunks] ─▶ .into_reader()
//!   reads whole chunks       bounded          sees every byte,    bounded        Read for the
//!   on its thread                             passes it on                       consumer
//! ```
//!
//! Memory is bounded: at most `DEPTH` chunks of `CHUNK` bytes wait between two stages, so a
//! fast producer blocks instead of running ahead. A chunk is moved, never copied, from stage
//! to stage. The end of a stream is an explicit message: a stage whose thread died (a panic in
//! a decoder) is an error downstream, never a clean end. Dropping the reader stops every
//! stage: each one's next send fails, it returns and drops its own input.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Bytes per chunk: large enough that hand-overs are rare.
pub const CHUNK: usize = 256 * 1024;
/// Chunks waiting between two stages: about 2 MiB.
pub const DEPTH: usize = 8;

/// What one stage hands the next.
enum Msg {
    Data(Vec<u8>),
    /// The stream ended cleanly; nothing follows.
    End,
    /// The stream failed; nothing follows.
    Failed(io::Error),
}

/// Something that sees every byte of a stream as it passes (a hash of it), on a stage of its
/// own: [`Tap::bytes`] for each chunk in order, then [`Tap::end`] once, only if the stream
/// ended cleanly.
pub trait Tap: Send + 'static {
    fn bytes(&mut self, chunk: &[u8]);
    fn end(&mut self);
}

/// The output of the last stage of a pipeline, with every stage's thread.
pub struct Chunks {
    rx: Receiver<Msg>,
    threads: Vec<JoinHandle<()>>,
}

impl Chunks {
    /// Runs `source` on a thread named `name`, reading it in whole chunks.
    pub fn spawn(name: &str, mut source: Box<dyn Read + Send>) -> io::Result<Chunks> {
        let (tx, rx) = sync_channel(DEPTH);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || read_into(&mut *source, &tx))?;
        Ok(Chunks {
            rx,
            threads: vec![thread],
        })
    }

    /// Adds a stage, on a thread named `name`, that shows every chunk to `tap` and passes it
    /// on unchanged.
    pub fn tap(self, name: &str, mut tap: impl Tap) -> io::Result<Chunks> {
        let Chunks { rx: input, threads } = self;
        let (tx, rx) = sync_channel(DEPTH);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    let msg = input.recv().unwrap_or_else(|_| Msg::Failed(died()));
                    let last = !matches!(msg, Msg::Data(_));
                    match &msg {
                        Msg::Data(chunk) => tap.bytes(chunk),
                        Msg::End => tap.end(),
                        Msg::Failed(_) => {}
                    }
                    if tx.send(msg).is_err() || last {
                        return; // consumer gone, or nothing follows
                    }
                }
            })?;
        let mut threads = threads;
        threads.push(thread);
        Ok(Chunks { rx, threads })
    }

    /// The stream for the consumer.
    pub fn into_reader(self) -> ThreadedReader {
        ThreadedReader {
            rx: self.rx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
            threads: self.threads,
        }
    }
}

/// The error a consumer sees when a stage's thread ended without a last message.
fn died() -> io::Error {
    io::Error::other("a stage of the decoding pipeline stopped unexpectedly")
}

/// Reads `source` into whole chunks (fewer hand-overs) until its end or an error.
fn read_into(source: &mut dyn Read, tx: &SyncSender<Msg>) {
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        let result = loop {
            match source.read(&mut buf[filled..]) {
                Ok(0) => break Ok(true),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        if !buf.is_empty() && tx.send(Msg::Data(buf)).is_err() {
            return; // consumer gone
        }
        match result {
            Ok(false) => {}
            Ok(true) => {
                let _ = tx.send(Msg::End);
                return;
            }
            Err(e) => {
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        }
    }
}

/// Runs `source` on a thread of its own and hands its bytes over in large chunks, so that the
/// reader's work (decompression) and the consumer's (writing files) use two cores; or, built
/// with [`Chunks::into_reader`], the end of a longer pipeline.
pub struct ThreadedReader {
    rx: Receiver<Msg>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
    threads: Vec<JoinHandle<()>>,
}

impl ThreadedReader {
    pub fn new(source: Box<dyn Read + Send>) -> io::Result<Self> {
        Ok(Chunks::spawn("decompress", source)?.into_reader())
    }
}

impl Read for ThreadedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv().unwrap_or_else(|_| Msg::Failed(died())) {
                Msg::Data(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Msg::End => {
                    self.done = true;
                    return Ok(0);
                }
                Msg::Failed(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for ThreadedReader {
    fn drop(&mut self) {
        // Unblock the last stage (its send fails once the receiver is gone); each stage then
        // returns and drops its own input, which unblocks the one before it.
        let (_tx, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        for t in self.threads.drain(..).rev() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        bytes: Vec<u8>,
        ends: usize,
    }

    struct Record(Arc<Mutex<Seen>>);

    impl Tap for Record {
        fn bytes(&mut self, chunk: &[u8]) {
            self.0.lock().unwrap().bytes.extend_from_slice(chunk);
        }
        fn end(&mut self) {
            self.0.lock().unwrap().ends += 1;
        }
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn stages_pass_every_byte_in_order_and_taps_see_the_end_once() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK * 3 + 17] {
            let data = sample(len);
            let first = Arc::new(Mutex::new(Seen::default()));
            let second = Arc::new(Mutex::new(Seen::default()));
            let mut out = Vec::new();
            Chunks::spawn("test-source", Box::new(io::Cursor::new(data.clone())))
                .unwrap()
                .tap("test-tap-1", Record(first.clone()))
                .unwrap()
                .tap("test-tap-2", Record(second.clone()))
                .unwrap()
                .into_reader()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data, "{len}: bytes differ");
            for seen in [&first, &second] {
                let seen = seen.lock().unwrap();
                assert!(seen.bytes == data, "{len}: the tap saw other bytes");
                assert_eq!(seen.ends, 1, "{len}");
            }
        }
    }

    struct FailsAfter(usize);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "broken input"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn an_error_reaches_the_consumer_and_the_tap_sees_no_end() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut reader = Chunks::spawn("test-source", Box::new(FailsAfter(CHUNK + 5)))
            .unwrap()
            .tap("test-tap", Record(seen.clone()))
            .unwrap()
            .into_reader();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("broken input"), "{err}");
        drop(reader);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.bytes.len(), CHUNK + 5);
        assert_eq!(seen.ends, 0);
    }

    struct Panics;

    impl Read for Panics {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("decoder bug");
        }
    }

    #[test]
    fn a_stage_that_dies_is_an_error_not_an_end() {
        let mut reader = Chunks::spawn("test-panics", Box::new(Panics))
            .unwrap()
            .into_reader();
        let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("stopped unexpectedly"), "{err}");
    }

    #[test]
    fn dropping_the_reader_early_stops_every_stage() {
        // Far more than the stages can buffer: the source must be unblocked by the drop.
        let endless = io::repeat(1).take(1 << 30);
        let mut reader = Chunks::spawn("test-source", Box::new(endless))
            .unwrap()
            .tap("test-tap", Record(Arc::default()))
            .unwrap()
            .into_reader();
        let mut buf = [0u8; 10];
        reader.read_exact(&mut buf).unwrap();
        drop(reader); // joins every thread; would hang if one stayed blocked
    }
}
