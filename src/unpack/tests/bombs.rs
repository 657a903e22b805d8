//! Archives that expand far beyond their size: old GNU sparse headers declaring terabytes
//! (their cost must follow the stored data, not the declared size), and trees past the bounds
//! of `limits.rs` (refused from the header, before the file is written).

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use super::util::{Sandbox, Tar, old_gnu_blocks};
use crate::unpack::{Root, TreeLimits, UnpackError, UnpackOptions, unpack_tar};

const TIB: u64 = 1 << 40;

fn opts(limits: TreeLimits) -> UnpackOptions {
    UnpackOptions {
        limits,
        ..Sandbox::opts()
    }
}

fn unpack(sb: &Sandbox, archive: &[u8], limits: TreeLimits) -> Result<u64, UnpackError> {
    let root = Root::open(&sb.root).unwrap();
    unpack_tar(archive, &root, &opts(limits)).map(|s| s.bytes)
}

/// A 1 TiB sparse file with data at its start, in the middle (after the header's four slots,
/// so in an extension block) and at its end.
fn terabyte_archive() -> Vec<u8> {
    let mut slots: Vec<(u64, u64)> = (0..6).map(|i| (i * 4096, 512)).collect();
    slots.push((TIB / 2, 1024));
    slots.push((TIB - 512, 512));
    let data: Vec<u8> = slots
        .iter()
        .enumerate()
        .flat_map(|(i, &(_, len))| vec![b'a' + i as u8; len as usize])
        .collect();
    Tar::new()
        .blocks(&old_gnu_blocks("huge", &slots, TIB), &data)
        .file("after", b"next entry\n")
        .finish()
}

#[test]
fn old_gnu_sparse_costs_what_its_data_costs() {
    let sb = Sandbox::new();
    let archive = terabyte_archive();
    assert!(archive.len() < 16 << 10);
    let started = Instant::now();
    let limits = TreeLimits {
        max_bytes: 2 * TIB,
        ..TreeLimits::default()
    };
    let bytes = unpack(&sb, &archive, limits).unwrap();
    // Hang detection only: expanding the holes took 43 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(bytes, TIB + 11, "the declared size counts");
    let path = sb.path("huge");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), TIB);
    assert!(meta.blocks() < 1024, "{} blocks allocated", meta.blocks());
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(&path).unwrap();
    let mut buf = [0u8; 1024];
    f.read_exact_at(&mut buf, TIB / 2).unwrap();
    assert!(buf.iter().all(|&b| b == b'g'));
    f.read_exact_at(&mut buf[..512], TIB - 512).unwrap();
    assert!(buf[..512].iter().all(|&b| b == b'h'));
    f.read_exact_at(&mut buf[..512], 4096 * 5).unwrap();
    assert!(
        buf[..512].iter().all(|&b| b == b'f'),
        "from the extension block"
    );
    f.read_exact_at(&mut buf[..512], 4096 * 5 + 512).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 0), "a hole");
    assert_eq!(std::fs::read(sb.path("after")).unwrap(), b"next entry\n");
}

#[test]
fn a_declared_size_past_the_bound_is_refused_before_writing() {
    let sb = Sandbox::new();
    let started = Instant::now();
    let e = unpack(&sb, &terabyte_archive(), TreeLimits::default()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let msg = e.to_string();
    assert!(
        matches!(e, UnpackError::Limit { .. })
            && msg.contains("entry `huge`")
            && msg.contains("SANDBOX_MAX_TREE_BYTES"),
        "{msg}"
    );
    assert!(!sb.path("huge").exists(), "nothing of it was created");
    sb.assert_outside_untouched();
}

#[test]
fn lying_old_gnu_maps_are_refused() {
    // Overlapping segments; a map whose data is more than the entry holds; a truncated
    // extension block.
    let overlap = old_gnu_blocks("s", &[(0, 512), (256, 512)], 4096);
    let sb = Sandbox::new();
    let e = unpack(
        &sb,
        &Tar::new().blocks(&overlap, &[1; 1024]).finish(),
        TreeLimits::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("overlaps"), "{e}");

    let slots: Vec<(u64, u64)> = (0..10).map(|i| (i * 1024, 512)).collect();
    let blocks = old_gnu_blocks("t", &slots, 1 << 20);
    let mut archive = Vec::new();
    archive.extend_from_slice(&blocks[0]);
    archive.extend_from_slice(&blocks[1][..100]);
    let sb = Sandbox::new();
    let e = unpack(&sb, &archive, TreeLimits::default()).unwrap_err();
    assert!(matches!(e, UnpackError::Truncated { .. }), "{e}");
    // A corrupt checksum is not repaired by the rewrite: the parser still refuses it.
    let mut bad = old_gnu_blocks("u", &[(0, 512)], 512);
    bad[0][0] ^= 1;
    let sb = Sandbox::new();
    let e = unpack(
        &sb,
        &Tar::new().blocks(&bad, &[1; 512]).finish(),
        TreeLimits::default(),
    )
    .unwrap_err();
    assert!(matches!(e, UnpackError::CorruptHeader { .. }), "{e}");
}

#[test]
fn entries_and_bytes_past_their_bounds_name_the_bound_and_the_entry() {
    let mut tar = Tar::new();
    for i in 0..10 {
        tar.file(&format!("f{i}"), &[7; 100]);
    }
    let archive = tar.finish();
    let sb = Sandbox::new();
    let few = TreeLimits {
        max_entries: 5,
        ..TreeLimits::default()
    };
    let e = unpack(&sb, &archive, few).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("entry `f5`")
            && msg.contains("SANDBOX_MAX_ENTRIES")
            && msg.contains("entry 6"),
        "{msg}"
    );
    let sb = Sandbox::new();
    let small = TreeLimits {
        max_bytes: 250,
        ..TreeLimits::default()
    };
    let e = unpack(&sb, &archive, small).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("entry `f2`") && msg.contains("SANDBOX_MAX_TREE_BYTES"),
        "{msg}"
    );
    assert!(sb.path("f1").exists() && !sb.path("f2").exists());
    // Lower layers count: a stream that starts with 200 bytes used has room for 50.
    let sb = Sandbox::new();
    let e = unpack(&sb, &archive, small.after(200, 0)).unwrap_err();
    assert!(e.to_string().contains("entry `f0`"), "{e}");
    assert_eq!(
        unpack(&Sandbox::new(), &archive, TreeLimits::default()).unwrap(),
        1000
    );
}
