//! The stream as a whole: concatenation, padding, garbage, truncation, input errors, limits.

use std::io::{self, Read};

use tar::EntryType;

use super::util::{Sandbox, Tar};
use crate::unpack::stream::MAX_HEADER_BYTES;
use crate::unpack::{Root, UnpackError, unpack_tar};

#[test]
fn concatenated_archives_and_zero_padding_are_accepted() {
    let sb = Sandbox::new();
    let mut archive = Tar::new().file("one", b"1").finish();
    archive.extend_from_slice(&[0; 10240]);
    archive.extend(Tar::new().file("two", b"2").finish());
    archive.extend(Tar::new().file("three", b"3").finish());
    archive.extend_from_slice(&[0; 100]); // a partial zero block at the very end
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.entries, 3);
    for (name, content) in [("one", "1"), ("two", "2"), ("three", "3")] {
        assert_eq!(fs_err::read_to_string(sb.path(name)).unwrap(), content);
    }
}

#[test]
fn an_archive_without_end_marker_is_accepted_like_gnu_tar_does() {
    let sb = Sandbox::new();
    sb.unpack(&Tar::new().file("a", b"x").unterminated())
        .unwrap();
    assert_eq!(fs_err::read(sb.path("a")).unwrap(), b"x");
}

#[test]
fn trailing_garbage_is_an_error_with_its_offset() {
    let sb = Sandbox::new();
    let mut archive = Tar::new().file("a", b"x").finish();
    let end = archive.len() as u64;
    archive.extend_from_slice(&[0; 512]);
    archive.extend_from_slice(b"\0\0garbage that is no header");
    archive.resize(archive.len() + 700, 0);
    match sb.unpack(&archive) {
        Err(e @ UnpackError::TrailingGarbage { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "trailing garbage after the end of the tar archive at byte {}",
                end + 514
            )
        ),
        other => panic!("expected trailing garbage, got {other:?}"),
    }
    // Everything before the garbage was extracted.
    assert_eq!(fs_err::read(sb.path("a")).unwrap(), b"x");
}

#[test]
fn a_corrupt_header_is_an_error_with_its_offset_and_the_previous_entry() {
    let sb = Sandbox::new();
    let mut archive = Tar::new().file("first", b"1").file("second", b"2").finish();
    archive[1024 + 3] ^= 0x40; // flip a bit in the second header's name
    match sb.unpack(&archive) {
        Err(e @ UnpackError::CorruptHeader { offset: 1024, .. }) => {
            let message = e.to_string();
            assert!(
                message.starts_with("corrupt tar header at byte 1024 after entry `first`: "),
                "{message}"
            );
            assert!(message.contains("checksum"), "{message}");
        }
        other => panic!("expected a corrupt header, got {other:?}"),
    }
    // Not a tar at all.
    let sb = Sandbox::new();
    let err = sb.unpack(&[0x1f; 2000]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("corrupt tar header at byte 0 at the start of the archive"),
        "{err}"
    );
}

#[test]
fn truncation_names_the_entry() {
    let data = vec![7u8; 5000];
    let archive = Tar::new().file("small", b"s").file("big", &data).finish();
    // Cut inside big's data, inside its padding, and inside the next header.
    for (cut, want) in [(1024 + 512 + 100, "big"), (1024 + 512 + 5010, "big")] {
        let sb = Sandbox::new();
        let err = sb.unpack(&archive[..cut]).unwrap_err();
        assert!(
            matches!(&err, UnpackError::Truncated { entry } if entry == want),
            "{cut}: {err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("tar archive truncated in entry `{want}`")
        );
    }
    let sb = Sandbox::new();
    let err = sb.unpack(&archive[..1024 + 200]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tar archive truncated in a header after entry `small`"
    );
    // A PAX header with no entry after it.
    let sb = Sandbox::new();
    let err = sb
        .unpack(&Tar::new().pax(&[("path", b"x")]).unterminated())
        .unwrap_err();
    assert!(
        matches!(err, UnpackError::TruncatedHeader { .. }),
        "{err:?}"
    );
}

/// A reader that fails after `ok` bytes, as a decompressor does on corrupt input.
struct FailingAfter<'a> {
    data: &'a [u8],
    ok: usize,
}

impl Read for FailingAfter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "xz: compressed data is corrupt",
            ));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn input_errors_are_reported_as_such_with_their_source() {
    let archive = Tar::new().file("a", b"a").file("b", &[1; 3000]).finish();
    for (ok, context) in [
        (1024 + 512 + 700, "in entry `b`"),
        (1024 + 100, "after entry `a`"),
    ] {
        let sb = Sandbox::new();
        let root = Root::open(&sb.root).unwrap();
        let reader = FailingAfter { data: &archive, ok };
        let err = unpack_tar(reader, &root, &Sandbox::opts()).unwrap_err();
        assert_eq!(err.to_string(), format!("reading the tar stream {context}"));
        let source = std::error::Error::source(&err)
            .expect("a source")
            .to_string();
        assert_eq!(source, "xz: compressed data is corrupt");
    }
}

#[test]
fn oversized_extended_headers_are_refused() {
    let sb = Sandbox::new();
    let huge = vec![b'a'; MAX_HEADER_BYTES];
    let archive = Tar::new()
        .pax(&[("comment", &huge)])
        .file("f", b"")
        .finish();
    let err = sb.unpack(&archive).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(!sb.path("f").exists());
}

#[test]
fn pax_records_the_tar_crate_misreads_are_read_correctly_or_refused() {
    // The tar crate splits PAX data on newlines: a value with a newline hides later records
    // from it. Its view of `size` then differs from ours; that must stop the extraction.
    let sb = Sandbox::new();
    let mut archive = Tar::new()
        .pax(&[("SCHILY.xattr.user.a", b"x\ny"), ("size", b"5")])
        .raw(b"f", EntryType::Regular, b"", 0o644, b"")
        .unterminated();
    archive.extend_from_slice(b"hello");
    archive.resize(archive.len().next_multiple_of(512) + 1024, 0);
    let err = sb.unpack(&archive).unwrap_err();
    assert!(err.to_string().contains("PAX size 5 disagrees"), "{err}");

    // Unparsable PAX data is an error, not silently ignored.
    let sb = Sandbox::new();
    let archive = Tar::new()
        .raw(
            b"PaxHeaders/x",
            EntryType::XHeader,
            b"",
            0o644,
            b"99 path=short\n",
        )
        .file("f", b"")
        .finish();
    let err = sb.unpack(&archive).unwrap_err();
    assert!(err.to_string().contains("PAX record length 99"), "{err}");
}

#[test]
fn global_headers_are_skipped() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .raw(
            b"pax_global_header",
            EntryType::XGlobalHeader,
            b"",
            0o644,
            b"27 comment=from git archive\n",
        )
        .file("f", b"f")
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.entries, 1);
    assert!(!sb.path("pax_global_header").exists());
}

#[test]
fn large_files_through_a_reader_that_returns_small_pieces() {
    // Decompressors return whatever they have: the copy must keep reading until the entry ends.
    struct Trickle<R>(R);
    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(4099);
            self.0.read(&mut buf[..n])
        }
    }
    let size = 16 << 20;
    let mut header = tar::Header::new_ustar();
    header.set_path("big").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(EntryType::Regular);
    header.set_cksum();
    let pattern = (0..=255u8).cycle();
    let stream = io::Cursor::new(header.as_bytes().to_vec())
        .chain(PatternReader(pattern.take(size as usize)))
        .chain(io::repeat(0).take(1024));
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let summary = unpack_tar(Trickle(stream), &root, &Sandbox::opts()).unwrap();
    assert_eq!(summary.bytes, size);
    let written = fs_err::read(sb.path("big")).unwrap();
    assert_eq!(written.len() as u64, size);
    assert!(written.iter().enumerate().all(|(i, &b)| b == i as u8));
}

struct PatternReader<I>(I);

impl<I: Iterator<Item = u8>> Read for PatternReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        for slot in buf.iter_mut() {
            match self.0.next() {
                Some(b) => *slot = b,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}
