//! Tests of the block-parallel xz reader against the real `xz` tool as producer and as the
//! reference decoder.

use super::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `xz` with `args` on `input` and returns its stdout.
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

/// Text-like data that compresses somewhat (like a tarball), different for each `seed`.
fn sample(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"usr/",
        b"lib/",
        b"share ",
        b"doc\n",
        b"\x00\x00",
        b"x86_64",
        b"-linux-",
        b"gnu ",
    ];
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = state >> 33;
        if r % 4 == 0 {
            out.extend_from_slice(&r.to_le_bytes()[..3]);
        } else {
            out.extend_from_slice(words[(r % 8) as usize]);
        }
    }
    out.truncate(len);
    out
}

fn file_with(bytes: &[u8]) -> File {
    let mut f = tempfile::tempfile().expect("temp file");
    f.write_all(bytes).expect("writing temp file");
    f
}

fn open(bytes: &[u8], threads: usize, cap: usize) -> Option<ParallelXzReader> {
    open_parallel(file_with(bytes), threads, cap).expect("opening")
}

fn read_all(mut reader: ParallelXzReader) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    // Odd-sized reads cross chunk boundaries at changing offsets.
    let mut buf = vec![0u8; 100_003];
    loop {
        match reader.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Asserts that the reader decodes `compressed` to exactly what `xz -dc` makes of it.
fn assert_same_as_xz(compressed: &[u8], threads: usize, cap: usize, blocks: usize) {
    let expected = xz(&["-dc"], compressed);
    let reader = open(compressed, threads, cap).expect("a multi-block file is accepted");
    assert_eq!(reader.blocks(), blocks);
    assert_eq!(reader.uncompressed_size(), expected.len() as u64);
    let got = read_all(reader).expect("decoding");
    assert!(got == expected, "decoded bytes differ from xz -dc");
}

#[test]
fn multi_block_file_matches_xz() {
    let data = sample(5 << 20, 1);
    let compressed = xz(&["-c", "-T2", "--block-size=1MiB"], &data);
    for (threads, cap) in [(1, DEFAULT_BUFFER_CAP), (2, 4 << 20), (4, 2 << 20), (0, 0)] {
        assert_same_as_xz(&compressed, threads, cap, 5);
    }
}

#[test]
fn many_small_blocks_with_caps_below_one_chunk() {
    let data = sample(1 << 20, 2);
    let compressed = xz(&["-c", "-T2", "--block-size=4KiB"], &data);
    // A cap of zero only lets the block being read proceed: slow but no deadlock. A deadlock
    // would hang the test run: fail it instead, with a bound far above the normal second.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for cap in [0, 64 << 10, 4 << 20] {
            assert_same_as_xz(&compressed, 3, cap, 256);
        }
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(Duration::from_secs(120)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("decoding deadlocked"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("decoding failed"),
    }
}

#[test]
fn every_check_type() {
    let data = sample(3 << 20, 3);
    for check in ["none", "crc32", "crc64", "sha256"] {
        let compressed = xz(&["-c", "-T2", "--block-size=1MiB", "-C", check], &data);
        assert_same_as_xz(&compressed, 2, 2 << 20, 3);
    }
}

#[test]
fn single_block_and_empty_files_are_left_to_the_sequential_decoder() {
    let data = sample(2 << 20, 4);
    let single = xz(&["-c"], &data);
    let empty = xz(&["-c"], b"");
    assert!(open(&single, 2, DEFAULT_BUFFER_CAP).is_none());
    assert!(open(&empty, 2, DEFAULT_BUFFER_CAP).is_none());

    // They decode correctly all the same when asked to.
    for (compressed, expected) in [(single, data), (empty, Vec::new())] {
        let reader = open_with_min_blocks(file_with(&compressed), 2, 1 << 20, 0)
            .expect("opening")
            .expect("accepted");
        assert!(read_all(reader).expect("decoding") == expected);
    }
}

#[test]
fn concatenated_streams_with_padding_and_mixed_checks() {
    let first = xz(
        &["-c", "-T2", "--block-size=1MiB", "-C", "crc32"],
        &sample(2 << 20, 5),
    );
    let second = xz(&["-c", "-C", "sha256"], &sample(100_000, 6));
    let empty = xz(&["-c"], b"");
    let mut all = first.clone();
    all.extend([0u8; 8]); // stream padding between streams
    all.extend(&empty);
    all.extend(&second);
    all.extend([0u8; 4]); // and after the last one
    assert_same_as_xz(&all, 2, 4 << 20, 3);

    let mut plain = first;
    plain.extend(&second);
    assert_same_as_xz(&plain, 2, 4 << 20, 3);
}

#[test]
fn a_flipped_byte_in_any_block_is_an_error_naming_the_block() {
    let data = sample(4 << 20, 7);
    let compressed = xz(&["-c", "-T2", "--block-size=1MiB"], &data);
    let blocks = open(&compressed, 1, 1 << 20)
        .expect("accepted")
        .shared
        .blocks
        .clone();
    for (i, block) in blocks.iter().enumerate() {
        // Inside the compressed data, and near the end where the check is.
        for at in [block.total_size() / 2, block.unpadded_size - 2] {
            let mut bad = compressed.clone();
            bad[(block.offset + at) as usize] ^= 0x55;
            let reader = open(&bad, 2, 2 << 20).expect("the index is intact");
            let err = read_all(reader).expect_err("corruption must not pass");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("xz block {} of 4 at byte {}", i + 1, block.offset)),
                "{msg}"
            );
        }
    }
}

#[test]
fn truncation_garbage_and_index_damage_never_yield_wrong_data() {
    let data = sample(3 << 20, 8);
    let compressed = xz(&["-c", "-T2", "--block-size=1MiB"], &data);
    let len = compressed.len();

    let mut damaged: Vec<Vec<u8>> = [1, 4, 12, 100, len / 2, len - 13]
        .iter()
        .map(|&cut| compressed[..len - cut].to_vec())
        .collect();
    for tail in [
        &b"garbage!"[..],
        b"\x00\x00\x00",
        b"\x00\x00\x00\x00YZ",
        b"\xfd7zXZ\x00",
    ] {
        let mut g = compressed.clone();
        g.extend_from_slice(tail);
        damaged.push(g);
    }
    // Footer, index and stream header bytes.
    for from_end in [1, 5, 14, 20] {
        let mut g = compressed.clone();
        g[len - from_end] ^= 0x01;
        damaged.push(g);
    }
    let mut g = compressed.clone();
    g[7] ^= 0x01;
    damaged.push(g);

    for (i, bytes) in damaged.iter().enumerate() {
        if let Some(reader) = open(bytes, 2, 2 << 20) {
            assert!(
                read_all(reader).is_err(),
                "damaged file {i} decoded without error"
            );
        }
    }
    // And the undamaged file is accepted, or the cases above would prove nothing.
    assert!(read_all(open(&compressed, 2, 2 << 20).expect("accepted")).expect("decodes") == data);
}

#[test]
fn a_slow_reader_keeps_the_buffered_bytes_under_the_cap() {
    let data = sample(64 << 20, 9);
    let compressed = xz(&["-c", "-1", "-T2", "--block-size=1MiB"], &data);
    let cap = 4 << 20;
    let mut reader = open(&compressed, 3, cap).expect("accepted");
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = reader.read(&mut buf).expect("decoding");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        // Slower than the workers, so that they run into the cap.
        std::thread::sleep(Duration::from_micros(500));
    }
    assert!(got == data, "decoded bytes differ");
    let peak = reader.peak_buffered();
    assert!(peak <= cap + 2 * CHUNK, "peak {peak} over the cap {cap}");
    assert!(
        peak >= cap,
        "peak {peak}: the workers never reached the cap"
    );
}

#[test]
fn dropping_the_reader_midway_stops_every_worker() {
    let data = sample(24 << 20, 10);
    let compressed = xz(&["-c", "-1", "-T2", "--block-size=1MiB"], &data);
    let mut reader = open(&compressed, 3, 4 << 20).expect("accepted");
    let mut buf = vec![0u8; 3 << 20];
    reader.read_exact(&mut buf).expect("decoding");
    assert!(buf[..] == data[..buf.len()]);
    let shared = Arc::downgrade(&reader.shared);

    let started = Instant::now();
    drop(reader);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        started.elapsed()
    );
    // Every worker held a reference: none is left, so every thread has ended.
    assert!(shared.upgrade().is_none(), "a worker outlived the reader");
}

#[test]
fn a_failed_read_keeps_failing() {
    let data = sample(2 << 20, 11);
    let mut bad = xz(&["-c", "-T2", "--block-size=1MiB"], &data);
    // The first block's compressed data starts after the 12-byte header and a block header.
    bad[200] ^= 0xFF;
    let mut reader = open(&bad, 2, 2 << 20).expect("the index is intact");
    let mut sink = Vec::new();
    let first = reader.read_to_end(&mut sink).expect_err("corrupt");
    let again = reader.read(&mut [0u8; 16]).expect_err("still corrupt");
    assert_eq!(first.to_string(), again.to_string());
    assert_eq!(first.kind(), io::ErrorKind::InvalidData);
}
