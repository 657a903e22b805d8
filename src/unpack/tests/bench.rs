//! A side-by-side timing against GNU tar, run by hand (not a pass/fail test: timings flake):
//!
//! ```sh
//! UNPACK_BENCH_TAR=/path/to/rootfs.tar UNPACK_BENCH_DIR=/dev/shm \
//!   cargo test --lib unpack::tests::bench -- --ignored --nocapture
//! ```
//!
//! Reports wall time and CPU time (user + system, from /proc/self/stat; GNU tar's as the
//! children's), which stays meaningful on a loaded machine.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use super::util::run;
use crate::unpack::{Root, UnpackOptions, unpack_tar};

/// (own, children's) user+system CPU seconds so far.
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<f64> = rest.split(' ').map(|x| x.parse().unwrap_or(0.0)).collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 of `rest` (from 1).
    let tick = 100.0;
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

#[test]
#[ignore = "a benchmark; needs UNPACK_BENCH_TAR"]
fn against_gnu_tar() {
    let Some(archive) = std::env::var_os("UNPACK_BENCH_TAR") else {
        eprintln!("UNPACK_BENCH_TAR is not set");
        return;
    };
    let base: PathBuf =
        std::env::var_os("UNPACK_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let opts = UnpackOptions {
        preserve_owner: true,
        keep_selinux: false,
    };
    let mut best = [(f64::MAX, f64::MAX); 2];
    for _ in 0..3 {
        let dir = tempfile::tempdir_in(&base).unwrap();
        let (cpu0, _) = cpu();
        let start = Instant::now();
        let file = std::fs::File::open(&archive).unwrap();
        let root = Root::open(dir.path()).unwrap();
        let summary = unpack_tar(
            std::io::BufReader::with_capacity(1 << 20, file),
            &root,
            &opts,
        )
        .unwrap();
        let (wall, cpu_s) = (start.elapsed().as_secs_f64(), cpu().0 - cpu0);
        eprintln!(
            "ours:    {wall:.2}s wall, {cpu_s:.2}s cpu ({} entries, {} bytes)",
            summary.entries, summary.bytes
        );
        best[0] = (best[0].0.min(wall), best[0].1.min(cpu_s));
        drop(dir);

        let dir = tempfile::tempdir_in(&base).unwrap();
        let (_, child0) = cpu();
        let start = Instant::now();
        run(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(dir.path()));
        let (wall, cpu_s) = (start.elapsed().as_secs_f64(), cpu().1 - child0);
        eprintln!("GNU tar: {wall:.2}s wall, {cpu_s:.2}s cpu");
        best[1] = (best[1].0.min(wall), best[1].1.min(cpu_s));
    }
    eprintln!(
        "best of 3: ours {:.2}s wall / {:.2}s cpu, GNU tar {:.2}s wall / {:.2}s cpu; ratio wall {:.2}, cpu {:.2}",
        best[0].0,
        best[0].1,
        best[1].0,
        best[1].1,
        best[0].0 / best[1].0,
        best[0].1 / best[1].1
    );
}
