//! What a build changed in the base's tree: the one layer an OCI output adds on top of the
//! base's layers (`--output oci-layout:`/`docker://`).
//!
//! A [`Snapshot`] of the unpacked base records each path's inode and change time (ctime);
//! after the template's files, the fix-ups and the bake steps, a path is changed when it is
//! new, or its inode or ctime differ. ctime is the right witness: the kernel sets it on every
//! write, chmod, chown, xattr change, link and rename of an inode, and nothing in userspace
//! can set it back (mtime can be, with `touch -d`). A hard-link group shares its inode, so
//! every path of a group that changed is in the delta, and the layer links them again.
//!
//! Two rules keep this exact:
//! - The clock must move past the snapshot before the build writes: ctime has the kernel's
//!   coarse granularity (a few ms), so a write in the same tick as the unpack could leave an
//!   equal ctime. [`Snapshot::settle`] waits until a new file's ctime is later than every
//!   ctime in the snapshot.
//! - A path of the base that is gone becomes a whiteout in its parent, unless the parent is
//!   gone too (its own whiteout removes the subtree).
//!
//! The parents of every changed path and whiteout are in the layer as well (with their
//! current metadata), as Docker and umoci write layers: a layer applied on its own still
//! creates the directories its files need.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// What identifies an inode's state: a new inode or a later ctime is a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub ctime: (i64, i64),
    /// The file type bits (`st_mode & S_IFMT`).
    pub kind: u32,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            kind: meta.mode() & 0o170000,
        }
    }

    fn is_dir(&self) -> bool {
        self.kind == 0o040000
    }
}

/// Every path of a tree (relative, the top directory as the empty path) and its stamp.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entries: HashMap<PathBuf, Stamp>,
}

/// The layer's content: which paths to archive and which whiteouts to add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Paths archived with their current content and metadata (the top directory as the
    /// empty path), changed ones and their parents.
    pub include: BTreeSet<PathBuf>,
    /// Directory → names removed from it (archived as `.wh.NAME`).
    pub whiteouts: BTreeMap<PathBuf, Vec<OsString>>,
    /// How many paths are new, changed or removed (parents archived only as parents are not
    /// counted).
    pub changed: usize,
}

impl Delta {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.whiteouts.is_empty()
    }

    /// Is `rel` or anything below it in the layer?
    pub fn reaches(&self, rel: &Path) -> bool {
        self.include.contains(rel) || self.whiteouts.contains_key(rel)
    }
}

impl Snapshot {
    /// Walks `root` without following symlinks.
    pub fn take(root: &Path) -> Result<Snapshot> {
        let mut entries = HashMap::new();
        walk(root, &mut |rel, meta| {
            entries.insert(rel.to_path_buf(), Stamp::of(meta));
        })?;
        Ok(Snapshot { entries })
    }

    /// Waits until the clock of the filesystem holding `probe_dir` (a directory next to the
    /// tree, on the same filesystem, outside it) gives a ctime later than every ctime in the
    /// snapshot; see the module documentation.
    pub fn settle(&self, probe_dir: &Path) -> Result<()> {
        let Some(latest) = self.entries.values().map(|s| s.ctime).max() else {
            return Ok(());
        };
        let probe = probe_dir.join(format!(".ctime-probe-{:08x}", rand::random::<u32>()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let file = fs_err::File::create(&probe)?;
            let meta = file.metadata();
            drop(file);
            let _ = fs_err::remove_file(&probe);
            let meta = meta?;
            if (meta.ctime(), meta.ctime_nsec()) > latest {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the clock of {} does not move past the unpacked tree's change times (is the system clock set back?)",
                    probe_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The delta from this snapshot to the tree now at `root`.
    pub fn delta(&self, root: &Path) -> Result<Delta> {
        let mut now = HashMap::new();
        walk(root, &mut |rel, meta| {
            now.insert(rel.to_path_buf(), Stamp::of(meta));
        })?;
        Ok(compare(&self.entries, &now))
    }
}

/// The delta between two stamp maps. Pure.
pub fn compare(before: &HashMap<PathBuf, Stamp>, after: &HashMap<PathBuf, Stamp>) -> Delta {
    let mut delta = Delta::default();
    for (rel, stamp) in after {
        if before.get(rel) != Some(stamp) {
            delta.changed += 1;
            add_with_parents(&mut delta.include, rel);
        }
    }
    let dirs_now: HashSet<&PathBuf> = after
        .iter()
        .filter(|(_, s)| s.is_dir())
        .map(|(p, _)| p)
        .collect();
    for rel in before.keys() {
        if after.contains_key(rel) {
            continue;
        }
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        if !dirs_now.contains(&parent.to_path_buf()) {
            // Gone with its parent, or its parent is no longer a directory: the parent's own
            // whiteout or replacement covers it.
            continue;
        }
        delta.changed += 1;
        delta
            .whiteouts
            .entry(parent.to_path_buf())
            .or_default()
            .push(name.to_os_string());
        add_with_parents(&mut delta.include, parent);
    }
    for names in delta.whiteouts.values_mut() {
        names.sort();
    }
    delta
}

fn add_with_parents(set: &mut BTreeSet<PathBuf>, rel: &Path) {
    let mut at = Some(rel);
    while let Some(p) = at {
        if !set.insert(p.to_path_buf()) {
            break;
        }
        at = p.parent();
    }
}

/// Calls `f` for `root` (as the empty path) and everything below it, not following symlinks.
fn walk(root: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<()> {
    let meta = fs_err::symlink_metadata(root)?;
    f(Path::new(""), &meta);
    walk_dir(root, Path::new(""), f)
}

fn walk_dir(dir: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) -> Result<()> {
    let names: Vec<OsString> = fs_err::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let meta = fs_err::symlink_metadata(&path)?;
        f(&rel, &meta);
        if meta.file_type().is_dir() {
            walk_dir(&path, &rel, f)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, ctime: i64, dir: bool) -> Stamp {
        Stamp {
            dev: 1,
            ino,
            ctime: (ctime, 0),
            kind: if dir { 0o040000 } else { 0o100000 },
        }
    }

    fn map(entries: &[(&str, Stamp)]) -> HashMap<PathBuf, Stamp> {
        entries
            .iter()
            .map(|(p, s)| (PathBuf::from(p), *s))
            .collect()
    }

    fn paths(set: &BTreeSet<PathBuf>) -> Vec<&str> {
        set.iter().map(|p| p.to_str().unwrap()).collect()
    }

    #[test]
    fn changes_bring_their_parents_and_removals_become_whiteouts() {
        let before = map(&[
            ("", stamp(1, 1, true)),
            ("etc", stamp(2, 1, true)),
            ("etc/hostname", stamp(3, 1, false)),
            ("etc/motd", stamp(4, 1, false)),
            ("usr", stamp(5, 1, true)),
            ("usr/lib", stamp(6, 1, true)),
            ("usr/lib/x", stamp(7, 1, false)),
            ("opt", stamp(8, 1, true)),
            ("opt/a", stamp(9, 1, true)),
            ("opt/a/b", stamp(10, 1, false)),
        ]);
        let after = map(&[
            ("", stamp(1, 2, true)),
            ("etc", stamp(2, 2, true)),
            // Rewritten in place: a new ctime.
            ("etc/hostname", stamp(3, 2, false)),
            ("usr", stamp(5, 1, true)),
            ("usr/lib", stamp(6, 1, true)),
            // Replaced through a rename: a new inode.
            ("usr/lib/x", stamp(11, 1, false)),
            ("srv", stamp(12, 2, true)),
        ]);
        let d = compare(&before, &after);
        assert_eq!(
            paths(&d.include),
            [
                "",
                "etc",
                "etc/hostname",
                "srv",
                "usr",
                "usr/lib",
                "usr/lib/x"
            ]
        );
        // `etc/motd` is gone from a directory that stays; `opt` went with its subtree, so
        // `opt/a` and `opt/a/b` need no whiteouts of their own.
        assert_eq!(
            d.whiteouts,
            BTreeMap::from([
                (PathBuf::from(""), vec![OsString::from("opt")]),
                (PathBuf::from("etc"), vec![OsString::from("motd")]),
            ])
        );
        assert!(d.reaches(Path::new("usr")) && !d.reaches(Path::new("opt")));
    }

    #[test]
    fn an_unchanged_tree_gives_an_empty_delta() {
        let tree = map(&[("", stamp(1, 1, true)), ("a", stamp(2, 1, false))]);
        let d = compare(&tree, &tree);
        assert!(d.is_empty());
        assert_eq!(d.changed, 0);
    }

    #[test]
    fn a_directory_replaced_by_a_file_is_a_change_and_its_children_need_no_whiteouts() {
        let before = map(&[
            ("", stamp(1, 1, true)),
            ("d", stamp(2, 1, true)),
            ("d/f", stamp(3, 1, false)),
        ]);
        let after = map(&[("", stamp(1, 2, true)), ("d", stamp(4, 2, false))]);
        let d = compare(&before, &after);
        assert_eq!(paths(&d.include), ["", "d"]);
        assert!(d.whiteouts.is_empty(), "{:?}", d.whiteouts);
    }

    #[test]
    fn real_writes_after_settle_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs_err::create_dir_all(root.join("etc")).unwrap();
        fs_err::write(root.join("etc/a"), "a").unwrap();
        fs_err::write(root.join("etc/b"), "b").unwrap();
        fs_err::write(root.join("keep"), "k").unwrap();
        let snap = Snapshot::take(&root).unwrap();
        snap.settle(dir.path()).unwrap();
        // Same size, same mtime: only the ctime tells.
        let mtime = fs_err::metadata(root.join("etc/a"))
            .unwrap()
            .modified()
            .unwrap();
        fs_err::write(root.join("etc/a"), "A").unwrap();
        fs::File::options()
            .write(true)
            .open(root.join("etc/a"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        fs_err::remove_file(root.join("etc/b")).unwrap();
        fs_err::hard_link(root.join("keep"), root.join("keep2")).unwrap();
        let d = snap.delta(&root).unwrap();
        assert_eq!(
            paths(&d.include),
            ["", "etc", "etc/a", "keep", "keep2"],
            "a new hard link changes its inode's ctime, so both paths are in the layer"
        );
        assert_eq!(d.whiteouts[Path::new("etc")], vec![OsString::from("b")]);
        let left: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [OsString::from("root")], "the probe was left behind");
    }
}
