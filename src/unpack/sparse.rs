//! Copying entry data into a file with a fixed buffer: plain files, and sparse files whose
//! holes are left unwritten (never filled with zeros), then sized with `set_len`.
//!
//! Sparse data comes in three shapes: GNU's old `S` entries, whose map is in the header and the
//! extension blocks after it (read by `stream.rs` before the tar crate sees the entry, so the
//! holes are never expanded into zeros: the cost follows the stored data, not the declared
//! size); PAX 0.0/0.1, whose map is in the records; PAX 1.0, whose map leads the data as
//! decimal lines padded to 512 bytes. A map is checked before any byte is written: segments in
//! order, inside the real size, their lengths adding up to the data that follows.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;

use super::stream::fill;

/// A map longer than this (16 MiB of offsets) is refused rather than held in memory.
pub const MAX_SEGMENTS: u64 = 1 << 20;

#[derive(Debug)]
pub enum CopyError {
    /// Reading the archive failed.
    Read(io::Error),
    /// Writing the file failed.
    Write(io::Error),
    /// The archive ended before the entry's data did.
    Short,
    /// The sparse map is malformed.
    Map(String),
}

/// The error a copy stops with once a signal asked the process to stop.
fn stopped() -> CopyError {
    CopyError::Write(io::Error::new(
        io::ErrorKind::Interrupted,
        "stopped: the process was asked to stop by a signal",
    ))
}

/// Copies exactly `size` bytes.
pub fn copy_plain(r: &mut impl Read, f: &File, buf: &mut [u8], size: u64) -> Result<(), CopyError> {
    let mut left = size;
    let mut out = f;
    while left > 0 {
        if crate::cleanup::stopping() {
            return Err(stopped());
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = fill(r, &mut buf[..want]).map_err(CopyError::Read)?;
        if n == 0 {
            return Err(CopyError::Short);
        }
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        left -= n as u64;
    }
    Ok(())
}

/// Copies the data segments of a sparse map (read back to back from `r`) to their offsets.
pub fn copy_segments(
    r: &mut impl Read,
    f: &File,
    buf: &mut [u8],
    map: &[(u64, u64)],
    real_size: u64,
) -> Result<(), CopyError> {
    for &(offset, len) in map {
        let mut done = 0u64;
        while done < len {
            if crate::cleanup::stopping() {
                return Err(stopped());
            }
            let want = buf
                .len()
                .min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let n = fill(r, &mut buf[..want]).map_err(CopyError::Read)?;
            if n == 0 {
                return Err(CopyError::Short);
            }
            f.write_all_at(&buf[..n], offset + done)
                .map_err(CopyError::Write)?;
            done += n as u64;
        }
    }
    f.set_len(real_size).map_err(CopyError::Write)
}

/// Reads the map at the start of a PAX 1.0 sparse entry's data: the number of segments, then an
/// offset and a length per segment, each on its own line, padded with zeros to 512 bytes.
/// Returns the map and the bytes it took.
pub fn read_data_map(
    r: &mut impl Read,
    entry_size: u64,
) -> Result<(Vec<(u64, u64)>, u64), CopyError> {
    let mut numbers: Vec<u64> = Vec::new();
    let mut wanted: Option<u64> = None;
    let mut current: Option<u64> = None;
    let mut consumed = 0u64;
    let mut block = [0u8; 512];
    loop {
        if consumed + 512 > entry_size {
            return Err(CopyError::Map(
                "the sparse map runs past the entry's data".into(),
            ));
        }
        let n = fill(r, &mut block).map_err(CopyError::Read)?;
        if n < block.len() {
            return Err(CopyError::Short);
        }
        consumed += 512;
        for &b in &block {
            match b {
                b'0'..=b'9' => {
                    let digit = u64::from(b - b'0');
                    let value = current
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(digit))
                        .ok_or_else(|| CopyError::Map("a sparse map number overflows".into()))?;
                    current = Some(value);
                }
                b'\n' => {
                    let value = current
                        .take()
                        .ok_or_else(|| CopyError::Map("empty line in the sparse map".into()))?;
                    numbers.push(value);
                    if wanted.is_none() {
                        if value > MAX_SEGMENTS {
                            return Err(CopyError::Map(format!(
                                "sparse map of {value} segments (more than {MAX_SEGMENTS})"
                            )));
                        }
                        wanted = Some(1 + 2 * value);
                    }
                }
                _ => {
                    return Err(CopyError::Map(format!(
                        "unexpected byte 0x{b:02x} in the sparse map"
                    )));
                }
            }
            if wanted == Some(numbers.len() as u64) {
                let map = numbers[1..].chunks(2).map(|c| (c[0], c[1])).collect();
                // The rest of this block is padding.
                return Ok((map, consumed));
            }
        }
    }
}

/// Reads the map of an old GNU sparse entry: the four slots of its `header` block, then, while
/// the last block read says it is extended, 21 slots per extension block (`next_block` reads
/// one). Returns the segments (offset, length) and the file's real size. A slot whose fields
/// start with a NUL is unused, as GNU tar and the tar crate read it.
pub fn old_gnu_map(
    header: &[u8; 512],
    next_block: &mut dyn FnMut() -> Result<Vec<u8>, CopyError>,
) -> Result<(Vec<(u64, u64)>, u64), CopyError> {
    let bad =
        |what: &str, e: io::Error| CopyError::Map(format!("bad {what} in the sparse map: {e}"));
    let gnu = tar::Header::from_byte_slice(header)
        .as_gnu()
        .ok_or_else(|| CopyError::Map("a sparse entry without a GNU header".into()))?;
    let real_size = gnu.real_size().map_err(|e| bad("real size", e))?;
    let mut map = Vec::new();
    let mut add = |slots: &[tar::GnuSparseHeader]| -> Result<(), CopyError> {
        for slot in slots.iter().filter(|s| !s.is_empty()) {
            if map.len() as u64 >= MAX_SEGMENTS {
                return Err(CopyError::Map(format!(
                    "sparse map of more than {MAX_SEGMENTS} segments"
                )));
            }
            let offset = slot.offset().map_err(|e| bad("offset", e))?;
            let len = slot.length().map_err(|e| bad("length", e))?;
            map.push((offset, len));
        }
        Ok(())
    };
    add(&gnu.sparse)?;
    let mut extended = gnu.is_extended();
    while extended {
        let block = next_block()?;
        let mut ext = tar::GnuExtSparseHeader::new();
        ext.as_mut_bytes().copy_from_slice(&block);
        add(&ext.sparse)?;
        extended = ext.is_extended();
    }
    Ok((map, real_size))
}

/// Checks a sparse map against the file's real size and the bytes of data in the archive.
pub fn check_map(map: &[(u64, u64)], real_size: u64, data_len: u64) -> Result<(), String> {
    let mut end = 0u64;
    let mut total = 0u64;
    for &(offset, len) in map {
        if offset < end {
            return Err(format!(
                "sparse segment at {offset} overlaps the previous one"
            ));
        }
        end = offset
            .checked_add(len)
            .filter(|&e| e <= real_size)
            .ok_or_else(|| {
                format!("sparse segment at {offset} (+{len}) ends past the file size {real_size}")
            })?;
        total += len;
    }
    if total != data_len {
        return Err(format!(
            "sparse segments hold {total} bytes but the entry has {data_len} bytes of data"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::tests::util::old_gnu_blocks;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn maps_are_checked() {
        assert!(check_map(&[(0, 10), (100, 5)], 105, 15).is_ok());
        assert!(check_map(&[(0, 10), (5, 5)], 105, 15).is_err(), "overlap");
        assert!(
            check_map(&[(0, 10), (100, 6)], 105, 16).is_err(),
            "past the end"
        );
        assert!(check_map(&[(0, 10)], 105, 11).is_err(), "data length");
        assert!(
            check_map(&[(u64::MAX, 2)], u64::MAX, 2).is_err(),
            "overflow"
        );
        assert!(check_map(&[], 0, 0).is_ok());
    }

    #[test]
    fn reads_a_pax_1_0_map() {
        let mut data = b"2\n4096\n10\n8192\n0\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"0123456789");
        let mut r = &data[..];
        let (map, consumed) = read_data_map(&mut r, data.len() as u64).unwrap();
        assert_eq!(map, vec![(4096, 10), (8192, 0)]);
        assert_eq!(consumed, 512);
        assert_eq!(r, b"0123456789");

        let bad = [
            b"2\n1\nx\n".to_vec(),
            b"\n".to_vec(),
            b"99999999\n".to_vec(),
        ];
        for mut data in bad {
            data.resize(512, 0);
            assert!(matches!(
                read_data_map(&mut &data[..], 512),
                Err(CopyError::Map(_))
            ));
        }
        // A map that never ends within the entry.
        let data = vec![b'1'; 512];
        assert!(read_data_map(&mut &data[..], 512).is_err());
    }

    #[test]
    fn reads_an_old_gnu_map_with_extension_blocks() {
        let slots: Vec<(u64, u64)> = (0..30).map(|i| (i * (1 << 40), 512)).collect();
        let blocks = old_gnu_blocks("s", &slots, 1 << 50);
        assert_eq!(blocks.len(), 3, "header + 2 extension blocks (4 + 21 + 5)");
        let mut rest = blocks[1..].iter();
        let (map, real) = old_gnu_map(&blocks[0], &mut || {
            rest.next().map(|b| b.to_vec()).ok_or(CopyError::Short)
        })
        .unwrap();
        assert_eq!((map, real), (slots, 1 << 50));
        // The extension blocks end early: the archive is short.
        let mut none = || Err(CopyError::Short);
        assert!(matches!(
            old_gnu_map(&blocks[0], &mut none),
            Err(CopyError::Short)
        ));
    }

    #[test]
    fn segments_land_at_their_offsets_and_holes_stay_holes() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        let size = 4u64 << 20;
        let data = [b"abc".to_vec(), b"de".to_vec()].concat();
        let mut buf = vec![0u8; 256 << 10];
        let map = [(1 << 20, 3), (size - 2, 2)];
        copy_segments(&mut &data[..], &f, &mut buf, &map, size).unwrap();
        let back = fs_err::read(dir.path().join("f")).unwrap();
        assert_eq!(back.len() as u64, size);
        assert_eq!(&back[1 << 20..(1 << 20) + 3], b"abc");
        assert_eq!(&back[back.len() - 2..], b"de");
        let blocks = f.metadata().unwrap().blocks();
        assert!(blocks <= 32, "{blocks} blocks of 512 bytes allocated");
        // The stream ending early is reported, not padded.
        let f2 = File::create(dir.path().join("g")).unwrap();
        assert!(matches!(
            copy_segments(&mut &data[..2], &f2, &mut buf, &map, size),
            Err(CopyError::Short)
        ));
        assert!(matches!(
            copy_plain(&mut &data[..2], &f2, &mut buf, 3),
            Err(CopyError::Short)
        ));
    }
}
