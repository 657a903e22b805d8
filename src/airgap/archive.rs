//! The export file's container: a tar, zstd-compressed when its name ends in `.zst` (on
//! import the zstd magic decides, not the name).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Whether an export to `path` is compressed.
pub fn wants_zstd(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// The sink the tar is written into; `finish` flushes the zstd frame and returns the file.
pub enum Sink {
    Plain(BufWriter<File>),
    Zstd(zstd::Encoder<'static, BufWriter<File>>),
}

impl Sink {
    pub fn new(file: File, zstd: bool) -> Result<Sink> {
        let buf = BufWriter::with_capacity(256 * 1024, file);
        Ok(if zstd {
            Sink::Zstd(zstd::Encoder::new(buf, 3).context("starting zstd compression")?)
        } else {
            Sink::Plain(buf)
        })
    }

    pub fn finish(self) -> io::Result<File> {
        let buf = match self {
            Sink::Plain(b) => b,
            Sink::Zstd(z) => z.finish()?,
        };
        buf.into_inner().map_err(|e| e.into_error())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

/// Opens an export file for reading, decompressing it when it starts with the zstd magic.
pub fn open(path: &Path) -> Result<Box<dyn Read>> {
    let file = fs_err::File::open(path)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = io::BufRead::fill_buf(&mut reader)?;
    if head.starts_with(&ZSTD_MAGIC) {
        let dec = zstd::Decoder::with_buffer(reader)
            .with_context(|| format!("starting zstd decompression of {}", path.display()))?;
        Ok(Box::new(dec))
    } else {
        Ok(Box::new(reader))
    }
}
