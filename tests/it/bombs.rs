//! Decompression bombs, built at test time (streams of zeros compress to almost nothing, and
//! concatenated xz streams and gzip members are one stream to a decoder): one xz expanding to
//! a 16 GiB file, an xz of two million empty entries, and GNU tar's old sparse format
//! declaring terabytes. Each pull must stop fast at the named bound and leave nothing.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::rawtar::RawTar;
use crate::harness::rootfs::Compression;
use crate::harness::{require_tool, run_tool};

/// Hang detection only: each bomb is refused from a header, before its bulk is read.
const FAST: Duration = Duration::from_secs(60);

/// A ustar header of a regular file `name` of `size` bytes (no data follows).
fn file_header(name: &str, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    // Octal, or base-256 (high bit set) for numbers octal cannot hold, as GNU tar writes them.
    let field = |h: &mut [u8], at: usize, len: usize, v: u64| {
        let text = format!("{v:0w$o}", w = len - 1);
        if text.len() < len {
            h[at..at + len - 1].copy_from_slice(text.as_bytes());
        } else {
            h[at] = 0x80;
            h[at + len - 8..at + len].copy_from_slice(&v.to_be_bytes());
        }
    };
    field(&mut h, 100, 8, 0o644);
    field(&mut h, 108, 8, 0);
    field(&mut h, 116, 8, 0);
    field(&mut h, 124, 12, size);
    field(&mut h, 136, 12, 1_600_000_000);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

fn pull(
    env: &TestEnv,
    name: &str,
    bytes: &[u8],
    vars: &[(&str, &str)],
) -> (crate::harness::env::Outcome, Duration) {
    let path = env.scratch("archives").join(name);
    std::fs::write(&path, bytes).unwrap();
    let started = Instant::now();
    let out = env.sandbox_with_env(&["pull", "--verify=no", arg(&path), "box"], vars);
    (out, started.elapsed())
}

#[test]
fn an_xz_expanding_to_a_16_gib_file_stops_at_the_tree_bound() {
    let env = TestEnv::new();
    // 16 GiB of zeros: one 64 MiB xz stream of zeros, 256 times, after the header's stream.
    let zeros = Compression::Xz.compress(&vec![0u8; 64 << 20]);
    let mut bomb = Compression::Xz.compress(&file_header("big", 16 << 30));
    for _ in 0..256 {
        bomb.extend_from_slice(&zeros);
    }
    bomb.extend_from_slice(&Compression::Xz.compress(&[0u8; 1024]));
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    let (out, took) = pull(
        &env,
        "bomb.tar.xz",
        &bomb,
        &[("SANDBOX_MAX_TREE_BYTES", "1073741824")],
    );
    out.failure()
        .stderr_mentions(&["entry `big`", "SANDBOX_MAX_TREE_BYTES", "1073741824"]);
    assert!(took < FAST, "{took:?}");
    env.assert_machines(&[]);
}

#[test]
fn an_xz_of_two_million_empty_entries_stops_at_the_entry_bound() {
    let env = TestEnv::new();
    let mut chunk = Vec::new();
    for i in 0..1000 {
        chunk.extend_from_slice(&file_header(&format!("e{i}"), 0));
    }
    let member = Compression::Xz.compress(&chunk);
    let mut bomb = Vec::new();
    for _ in 0..2002 {
        bomb.extend_from_slice(&member);
    }
    bomb.extend_from_slice(&Compression::Gzip.compress(&[0u8; 1024]));
    assert!(bomb.len() < 8 << 20, "{} bytes", bomb.len());
    let (out, took) = pull(
        &env,
        "many.tar.gz",
        &bomb,
        &[("SANDBOX_MAX_ENTRIES", "5000")],
    );
    out.failure()
        .stderr_mentions(&["SANDBOX_MAX_ENTRIES", "entry 5001", "entry `e0`"]);
    assert!(took < FAST, "{took:?}");
    env.assert_machines(&[]);
    // Bad values are named, before anything is made.
    let path = env.scratch("archives").join("small.tar");
    std::fs::write(
        &path,
        RawTar::new().file("etc/os-release", b"ID=x\n").finish(),
    )
    .unwrap();
    env.sandbox_with_env(
        &["pull", "--verify=no", arg(&path), "box"],
        &[("SANDBOX_MAX_ENTRIES", "lots")],
    )
    .failure()
    .stderr_mentions(&["$SANDBOX_MAX_ENTRIES=`lots`"]);
    env.assert_machines(&[]);
}

/// GNU tar's old sparse format (`--sparse --format=gnu`) of a file of `size` bytes holding a
/// few bytes at its start and its end.
fn gnu_sparse_archive(env: &TestEnv, size: u64) -> Vec<u8> {
    let dir = env.scratch(&format!("sparse-{size}"));
    let file = dir.join("huge");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"end", size - 3).unwrap();
    drop(f);
    let tar = require_tool("tar");
    let out = run_tool(
        Command::new(tar)
            .args(["--sparse", "--format=gnu", "-C"])
            .arg(&dir)
            .args(["-cf", "-", "huge"]),
        None,
    );
    std::fs::remove_file(&file).unwrap();
    out
}

#[test]
fn old_gnu_sparse_files_cost_their_data_and_count_their_declared_size() {
    let env = TestEnv::new();
    // 15 TiB declared, a few KiB stored: the default bound (256 GiB) refuses it at once.
    let archive = gnu_sparse_archive(&env, 15 << 40);
    assert!(archive.len() < 64 << 10, "{} bytes", archive.len());
    assert_eq!(archive[156], b'S', "GNU tar wrote an old sparse header");
    let (out, took) = pull(&env, "sparse15.tar", &archive, &[]);
    out.failure()
        .stderr_mentions(&["entry `huge`", "SANDBOX_MAX_TREE_BYTES"]);
    assert!(took < FAST, "{took:?}");
    env.assert_machines(&[]);
    // 1 TiB with the bound raised: unpacked in moments (expanding its holes took 43 s).
    let archive = gnu_sparse_archive(&env, 1 << 40);
    let (out, took) = pull(
        &env,
        "sparse1.tar",
        &archive,
        &[("SANDBOX_MAX_TREE_BYTES", "2199023255552")],
    );
    out.success();
    assert!(took < FAST, "{took:?}");
    let huge = env.machine("box").join("huge");
    let meta = std::fs::metadata(&huge).unwrap();
    assert_eq!(meta.len(), 1 << 40);
    use std::os::unix::fs::{FileExt, MetadataExt};
    assert!(meta.blocks() < 1024, "{} blocks", meta.blocks());
    let f = std::fs::File::open(&huge).unwrap();
    let mut buf = [0u8; 5];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"start");
    f.read_exact_at(&mut buf[..3], (1 << 40) - 3).unwrap();
    assert_eq!(&buf[..3], b"end");
    env.assert_machines(&["box"]);
}
