//! The framing of the .xz container (stream header and footer, index, stream padding), read
//! from the end of a seekable file so that every block's position and size is known before
//! any of them is decoded; and the framing of a one-block stream, so that a single block can be
//! handed to liblzma's ordinary stream decoder (which then verifies the block header, the
//! block's own check and its sizes against the index).
//!
//! Facts from the .xz file format specification 1.2.1 (tukaani.org/xz/xz-file-format.txt).
//! The parsers take bytes; [`locate_blocks`] does the reading through a callback.
//!
//! Every byte of the file is accounted for: headers, footers and indexes are CRC32-checked,
//! padding must be NUL, blocks must tile the space between a header and its index exactly, and
//! the blocks themselves are checked by liblzma when decoded. Anything that does not fit is
//! [`LayoutError::Unusable`], and the caller falls back to the sequential decoder, which
//! reports real corruption with its own message.

use std::io;

pub const STREAM_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
const FOOTER_MAGIC: [u8; 2] = *b"YZ";
pub const STREAM_HEADER_LEN: u64 = 12;
const STREAM_FOOTER_LEN: u64 = 12;

/// liblzma's limits: a variable-length integer holds at most 63 bits in at most 9 bytes.
const VLI_MAX: u64 = u64::MAX / 2;
const VLI_BYTES_MAX: usize = 9;
/// The bounds liblzma puts on an Index Record's unpadded size (`UNPADDED_SIZE_MIN`/`_MAX`).
const UNPADDED_SIZE_MIN: u64 = 5;
const UNPADDED_SIZE_MAX: u64 = VLI_MAX & !3;
/// An index larger than this is not read into memory (that is about a million blocks): such a
/// file goes to the sequential decoder instead.
const INDEX_SIZE_MAX: u64 = 16 << 20;

/// Why a file cannot be decoded block by block.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// Reading the file failed: a real error.
    #[error("reading the xz index: {0}")]
    Io(#[from] io::Error),
    /// The file is not a plain sequence of well-formed xz streams (or uses something this
    /// reader does not handle): the sequential decoder should decide what is wrong with it.
    #[error("{0}")]
    Unusable(String),
}

fn unusable(why: impl Into<String>) -> LayoutError {
    LayoutError::Unusable(why.into())
}

/// The two Stream Flags bytes, kept as found: they are copied into each synthesized stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFlags([u8; 2]);

impl StreamFlags {
    fn parse(bytes: [u8; 2]) -> Result<StreamFlags, LayoutError> {
        // The first byte and the high nibble of the second are reserved: a non-zero value means
        // a format version this reader does not know.
        if bytes[0] != 0 || bytes[1] & 0xF0 != 0 {
            return Err(unusable(format!("unsupported stream flags {bytes:02x?}")));
        }
        // Only the checks liblzma verifies: with any other, the sequential decoder decides.
        match bytes[1] {
            0x00 | 0x01 | 0x04 | 0x0A => Ok(StreamFlags(bytes)),
            id => Err(unusable(format!("unsupported check type {id:#04x}"))),
        }
    }
}

/// One block of the file: where its bytes are and how much it decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Byte offset of the block header in the file.
    pub offset: u64,
    /// Block header + compressed data + check, without the block padding.
    pub unpadded_size: u64,
    pub uncompressed_size: u64,
    /// The flags of the stream the block belongs to (they say which check it carries).
    pub flags: StreamFlags,
}

impl BlockInfo {
    /// The block's bytes in the file, including the padding to a multiple of four.
    pub fn total_size(&self) -> u64 {
        round_up4(self.unpadded_size)
    }
}

fn round_up4(n: u64) -> u64 {
    // Cannot overflow: unpadded sizes are bounded by UNPADDED_SIZE_MAX.
    (n + 3) & !3
}

fn crc32(bytes: &[u8]) -> [u8; 4] {
    crc32fast::hash(bytes).to_le_bytes()
}

/// Parses a Stream Header: magic, flags, CRC32 of the flags.
pub fn parse_stream_header(bytes: &[u8; 12]) -> Result<StreamFlags, LayoutError> {
    if bytes[..6] != STREAM_MAGIC {
        return Err(unusable(
            "no xz stream header where the index says a stream starts",
        ));
    }
    if crc32(&bytes[6..8]) != bytes[8..12] {
        return Err(unusable("stream header CRC32 mismatch"));
    }
    StreamFlags::parse([bytes[6], bytes[7]])
}

/// Parses a Stream Footer: CRC32, backward size, flags, magic. Returns the flags and the size
/// in bytes of the index that precedes the footer.
pub fn parse_stream_footer(bytes: &[u8; 12]) -> Result<(StreamFlags, u64), LayoutError> {
    if bytes[10..12] != FOOTER_MAGIC {
        return Err(unusable("no xz stream footer at the end of the file"));
    }
    if crc32(&bytes[4..10]) != bytes[0..4] {
        return Err(unusable("stream footer CRC32 mismatch"));
    }
    let stored = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let index_size = (u64::from(stored) + 1) * 4;
    Ok((StreamFlags::parse([bytes[8], bytes[9]])?, index_size))
}

/// Decodes one variable-length integer at the start of `bytes`: the value and its length.
fn read_vli(bytes: &[u8]) -> Result<(u64, usize), LayoutError> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(VLI_BYTES_MAX) {
        value |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // liblzma rejects non-minimal encodings (a final byte of zero after the first).
            if i > 0 && b == 0 {
                return Err(unusable("non-minimal integer in the xz index"));
            }
            return Ok((value, i + 1));
        }
    }
    Err(unusable("truncated or oversized integer in the xz index"))
}

fn write_vli(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One Index Record: (unpadded size, uncompressed size).
pub type IndexRecord = (u64, u64);

/// Parses a whole Index field (indicator, count, records, padding, CRC32), which must be
/// exactly `bytes`.
pub fn parse_index(bytes: &[u8]) -> Result<Vec<IndexRecord>, LayoutError> {
    let Some((body, stored_crc)) = bytes.split_last_chunk::<4>() else {
        return Err(unusable("xz index too short"));
    };
    if crc32(body) != *stored_crc {
        return Err(unusable("xz index CRC32 mismatch"));
    }
    if body.first() != Some(&0x00) {
        return Err(unusable(
            "no index indicator where the footer says the index is",
        ));
    }
    let mut pos = 1;
    let (count, n) = read_vli(&body[pos..])?;
    pos += n;
    // Each record takes at least two bytes: refuse a count the index cannot hold before
    // reserving memory for it.
    if count > (body.len() - pos) as u64 / 2 {
        return Err(unusable("xz index claims more records than it holds"));
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (unpadded, n) = read_vli(&body[pos..])?;
        pos += n;
        let (uncompressed, n) = read_vli(&body[pos..])?;
        pos += n;
        if !(UNPADDED_SIZE_MIN..=UNPADDED_SIZE_MAX).contains(&unpadded) {
            return Err(unusable(format!(
                "impossible block size {unpadded} in the xz index"
            )));
        }
        records.push((unpadded, uncompressed));
    }
    // Index Padding: NULs up to a multiple of four, and nothing else before the CRC32.
    let padding = &body[pos..];
    if padding.len() == (4 - pos % 4) % 4 && padding.iter().all(|&b| b == 0) {
        Ok(records)
    } else {
        Err(unusable("xz index padding is wrong"))
    }
}

/// The framing around one block that makes it a complete xz stream: a stream header (with
/// the original flags, so the block's check is verified), and after the block an index of one
/// record and a stream footer. liblzma then checks that the block really has the sizes given.
pub fn single_block_stream(block: &BlockInfo) -> ([u8; 12], Vec<u8>) {
    let flags = block.flags.0;
    let mut header = [0u8; 12];
    header[..6].copy_from_slice(&STREAM_MAGIC);
    header[6..8].copy_from_slice(&flags);
    header[8..12].copy_from_slice(&crc32(&flags));

    let mut index = vec![0x00];
    write_vli(1, &mut index);
    write_vli(block.unpadded_size, &mut index);
    write_vli(block.uncompressed_size, &mut index);
    while index.len() % 4 != 0 {
        index.push(0);
    }
    let index_crc = crc32(&index);
    index.extend_from_slice(&index_crc);

    let mut footer = [0u8; 12];
    // The index of one record is at most 1 + 1 + 9 + 9 + padding + 4 bytes: it fits.
    let backward = (index.len() / 4 - 1) as u32;
    footer[4..8].copy_from_slice(&backward.to_le_bytes());
    footer[8..10].copy_from_slice(&flags);
    let footer_crc = crc32(&footer[4..10]);
    footer[..4].copy_from_slice(&footer_crc);
    footer[10..12].copy_from_slice(&FOOTER_MAGIC);

    let mut suffix = index;
    suffix.extend_from_slice(&footer);
    (header, suffix)
}

/// How many NUL bytes end `bytes`.
fn trailing_nuls(bytes: &[u8]) -> usize {
    bytes.iter().rev().take_while(|&&b| b == 0).count()
}

/// Finds every block of the .xz file of `file_len` bytes, in file order, walking its streams
/// from the end. `read_at(offset, buf)` must fill `buf` from `offset` (within the file).
pub fn locate_blocks<F>(file_len: u64, mut read_at: F) -> Result<Vec<BlockInfo>, LayoutError>
where
    F: FnMut(u64, &mut [u8]) -> io::Result<()>,
{
    // Streams are found last first; each one's blocks are in order.
    let mut streams: Vec<Vec<BlockInfo>> = Vec::new();
    let mut end = file_len;
    while end > 0 {
        // Stream padding (after any stream, so also at the end of the file): NUL bytes in a
        // multiple of four. A footer ends in "YZ", so trailing NULs are always padding.
        let mut padding = 0u64;
        let mut window = [0u8; 4096];
        loop {
            let len = (end - padding).min(window.len() as u64) as usize;
            if len == 0 {
                break;
            }
            let buf = &mut window[..len];
            read_at(end - padding - len as u64, buf)?;
            let nuls = trailing_nuls(buf);
            padding += nuls as u64;
            if nuls < len {
                break;
            }
        }
        if padding % 4 != 0 {
            return Err(unusable("stream padding is not a multiple of four bytes"));
        }
        end -= padding;
        if end < STREAM_HEADER_LEN + STREAM_FOOTER_LEN {
            // Also catches padding before the first stream, which the format does not allow.
            return Err(unusable("the file does not start with an xz stream"));
        }

        let mut footer = [0u8; 12];
        read_at(end - STREAM_FOOTER_LEN, &mut footer)?;
        let (flags, index_size) = parse_stream_footer(&footer)?;
        if index_size > INDEX_SIZE_MAX {
            return Err(unusable(format!(
                "xz index of {index_size} bytes is too large"
            )));
        }
        let index_pos = (end - STREAM_FOOTER_LEN)
            .checked_sub(index_size)
            .filter(|&p| p >= STREAM_HEADER_LEN)
            .ok_or_else(|| unusable("xz index would start before the file"))?;
        let mut index = vec![0u8; index_size as usize];
        read_at(index_pos, &mut index)?;
        let records = parse_index(&index)?;

        let blocks_size = records
            .iter()
            .try_fold(0u64, |sum, &(unpadded, _)| {
                sum.checked_add(round_up4(unpadded))
            })
            .ok_or_else(|| unusable("xz block sizes overflow"))?;
        let stream_pos = (index_pos - STREAM_HEADER_LEN)
            .checked_sub(blocks_size)
            .ok_or_else(|| unusable("xz blocks would start before the file"))?;
        let mut header = [0u8; 12];
        read_at(stream_pos, &mut header)?;
        if parse_stream_header(&header)? != flags {
            return Err(unusable("stream header and footer flags differ"));
        }

        let mut offset = stream_pos + STREAM_HEADER_LEN;
        let mut blocks = Vec::with_capacity(records.len());
        for (unpadded_size, uncompressed_size) in records {
            let block = BlockInfo {
                offset,
                unpadded_size,
                uncompressed_size,
                flags,
            };
            offset += block.total_size();
            blocks.push(block);
        }
        streams.push(blocks);
        end = stream_pos;
    }
    if streams.is_empty() {
        return Err(unusable("empty file"));
    }
    Ok(streams.into_iter().rev().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn xz(args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new("xz")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running xz");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("waiting for xz");
        writer.join().expect("writer thread").expect("feeding xz");
        assert!(out.status.success(), "xz {args:?} failed");
        out.stdout
    }

    fn locate(bytes: &[u8]) -> Result<Vec<BlockInfo>, LayoutError> {
        locate_blocks(bytes.len() as u64, |pos, buf| {
            let start = pos as usize;
            buf.copy_from_slice(&bytes[start..start + buf.len()]);
            Ok(())
        })
    }

    /// (offset, total size, uncompressed size) of every block, as `xz --robot -lvv` lists them.
    fn blocks_listed_by_xz(bytes: &[u8]) -> Vec<(u64, u64, u64)> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("writing temp file");
        let out = Command::new("xz")
            .args(["--robot", "-lvv"])
            .arg(file.path())
            .output()
            .expect("running xz -l");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                // block, stream, block in stream, block in file, compressed offset,
                // uncompressed offset, total size, uncompressed size, ...
                (f[0] == "block").then(|| {
                    let n = |i: usize| f[i].parse::<u64>().expect("a number");
                    (n(4), n(6), n(7))
                })
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        (0..len as u32)
            .flat_map(|i| format!("{} ", i.wrapping_mul(2654435761) % 1000).into_bytes())
            .take(len)
            .collect()
    }

    #[test]
    fn blocks_agree_with_xz_list() {
        let mut file = xz(&["-c", "-T2", "--block-size=256KiB"], &text(1 << 20));
        file.extend([0u8; 12]);
        file.extend(xz(&["-c", "-C", "sha256"], b""));
        file.extend(xz(&["-c", "-C", "none"], &text(5000)));
        file.extend([0u8; 4]);
        let ours: Vec<(u64, u64, u64)> = locate(&file)
            .expect("a valid file")
            .iter()
            .map(|b| (b.offset, b.total_size(), b.uncompressed_size))
            .collect();
        let theirs = blocks_listed_by_xz(&file);
        assert_eq!(theirs.len(), 5);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_synthesized_frame_matches_xz_for_a_single_block() {
        // A one-block stream made by xz is exactly header + block + trailer: the frame built
        // from its own index must reproduce it byte for byte.
        for check in ["none", "crc32", "crc64", "sha256"] {
            let file = xz(&["-c", "-C", check], &text(70_000));
            let blocks = locate(&file).expect("a valid file");
            assert_eq!(blocks.len(), 1);
            let (header, trailer) = single_block_stream(&blocks[0]);
            let block_end = (blocks[0].offset + blocks[0].total_size()) as usize;
            assert_eq!(file[..12], header, "{check}");
            assert_eq!(file[block_end..], trailer[..], "{check}");
        }
    }

    #[test]
    fn integers_round_trip_and_non_minimal_ones_are_refused() {
        for v in [0, 1, 127, 128, 300, 1 << 35, VLI_MAX] {
            let mut buf = Vec::new();
            write_vli(v, &mut buf);
            assert_eq!(read_vli(&buf).expect("valid"), (v, buf.len()));
        }
        assert!(read_vli(&[0x80, 0x00]).is_err());
        assert!(read_vli(&[0x80]).is_err());
        assert!(read_vli(&[0xFF; 10]).is_err());
    }

    #[test]
    fn damaged_framing_is_unusable() {
        let good = xz(&["-c", "-T2", "--block-size=64KiB"], &text(200_000));
        assert!(locate(&good).is_ok());
        let len = good.len();
        // Footer magic and CRC, index CRC and record, stream header flags and CRC.
        for at in [len - 1, len - 12, len - 13, len - 20, 6, 7, 9] {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            assert!(
                matches!(locate(&bad), Err(LayoutError::Unusable(_))),
                "byte {at} of {len}"
            );
        }
        for bad in [&good[1..], &good[..len - 4], b"\0\0\0\0", b""] {
            assert!(matches!(locate(bad), Err(LayoutError::Unusable(_))));
        }
    }
}
