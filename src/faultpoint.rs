//! Named moments of the long operations (download, verify, unpack, fix-ups, bake, publish, host
//! files, removal) where a test can freeze the process to `kill -9` it exactly there, rather
//! than at a moment it was lucky enough to catch.
//!
//! `SANDBOX_FAULT_STOP=POINT[@N][,…]` makes the process stop itself with SIGSTOP the N-th time
//! (default: the first) it reaches POINT; the test sees the process stopped (state `T`) and
//! kills it. Only debug builds (the tests') read the variable: in a release build a point is
//! nothing. Unset, a point costs one load of an initialised cell. Every point is listed in
//! [`POINTS`], so a test can check that it covers each one and that each is really reached.

use std::collections::HashMap;
#[cfg(debug_assertions)]
use std::sync::{Mutex, OnceLock};

/// The environment variable naming where to stop.
pub const VAR: &str = "SANDBOX_FAULT_STOP";

/// Every fault point, with the moment it marks.
pub const POINTS: &[(&str, &str)] = &[
    (
        "download.chunk",
        "a download has written a part of its body to its partial file",
    ),
    (
        "download.received",
        "a download is complete in its partial file, not yet published",
    ),
    (
        "blob.published",
        "a verified blob has just been renamed into blobs/",
    ),
    ("ref.written", "a cache ref has just been written"),
    (
        "sums.verified",
        "a checksum file's signature has just been checked",
    ),
    (
        "images.index",
        "an image server's index has been read and checked",
    ),
    (
        "oci.manifest",
        "an OCI image's manifest and config are verified and cached",
    ),
    (
        "oci.signature",
        "an OCI image's signatures have been checked",
    ),
    ("unpack.staging", "a staging tree has just been made"),
    (
        "unpack.entry",
        "the unpacker is at an archive entry (those before it are written)",
    ),
    (
        "unpack.layer",
        "one OCI layer has been applied to the staging tree",
    ),
    (
        "unpack.done",
        "an archive is unpacked, its tree not yet finished",
    ),
    (
        "publish.ready",
        "a finished tree is about to be renamed to its machine's name",
    ),
    (
        "publish.exchanged",
        "--force has swapped the new tree in; the old one is not yet removed",
    ),
    (
        "publish.renamed",
        "a new tree has its name; its settings file is not yet written",
    ),
    ("remove.entry", "a tree being removed has lost one entry"),
    ("state.written", "a machine's record has just been written"),
    (
        "build.layered",
        "a build's files and fix-ups are in its staging tree",
    ),
    ("bake.step", "a bake step has just run in the staging tree"),
    (
        "build.host_files",
        "a build has written its host files, not yet committed",
    ),
    (
        "build.published",
        "a build's tree has its name; its host files are not yet committed",
    ),
    ("gc.removed", "cache gc has removed one thing"),
    (
        "rm.removed",
        "rm has removed one of a machine's trees or files, not yet all",
    ),
];

#[cfg(debug_assertions)]
/// The points the environment asks to stop at, with the hit on which to stop, and how often
/// each has been reached.
struct Wanted {
    stops: HashMap<String, u64>,
    hits: Mutex<HashMap<&'static str, u64>>,
}

#[cfg(debug_assertions)]
static WANTED: OnceLock<Option<Wanted>> = OnceLock::new();

/// Parses `POINT[@N],…` (N ≥ 1, default 1). Unknown names are kept: a misspelt point is
/// then never reached, which the test that set it sees.
pub fn parse(spec: &str) -> HashMap<String, u64> {
    spec.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('@') {
            Some((p, n)) => (p.to_string(), n.parse::<u64>().unwrap_or(1).max(1)),
            None => (s.to_string(), 1),
        })
        .collect()
}

/// Marks that the process is at `point`: in a debug build (the tests'), stops it there when the
/// environment asks to. A release build, the one people run, carries no test hook: this is
/// empty there.
pub fn reached(point: &'static str) {
    #[cfg(debug_assertions)]
    stop_if_asked(point);
    #[cfg(not(debug_assertions))]
    let _ = point;
}

#[cfg(debug_assertions)]
fn stop_if_asked(point: &'static str) {
    debug_assert!(
        POINTS.iter().any(|(p, _)| *p == point),
        "unlisted fault point {point}"
    );
    let wanted = WANTED.get_or_init(|| {
        let spec = std::env::var(VAR).ok()?;
        Some(Wanted {
            stops: parse(&spec),
            hits: Mutex::new(HashMap::new()),
        })
    });
    let Some(w) = wanted else { return };
    let Some(&at) = w.stops.get(point) else {
        return;
    };
    let hit = {
        let mut hits = w.hits.lock().unwrap_or_else(|e| e.into_inner());
        let n = hits.entry(point).or_default();
        *n += 1;
        *n
    };
    if hit == at {
        eprintln!("fault point {point} reached ({VAR}): stopping");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_list_names_points_and_hits() {
        let p = parse("unpack.entry@50, publish.ready,,x@0");
        assert_eq!(p.get("unpack.entry"), Some(&50));
        assert_eq!(p.get("publish.ready"), Some(&1));
        assert_eq!(p.get("x"), Some(&1));
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn point_names_are_unique() {
        let mut names: Vec<_> = POINTS.iter().map(|(p, _)| *p).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
    }
}
