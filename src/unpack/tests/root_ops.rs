//! `Root::remove_all` and `Root::clear_dir` (what OCI whiteouts will use), and a `Root` reused
//! across several archives as layers will be.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use super::util::{Sandbox, Tar};
use crate::unpack::error::Violation;
use crate::unpack::{Root, UnpackError, unpack_tar};

fn tree(sb: &Sandbox) {
    fs_err::create_dir_all(sb.path("a/b/c")).unwrap();
    fs_err::write(sb.path("a/b/c/f"), "f").unwrap();
    fs_err::write(sb.path("a/g"), "g").unwrap();
    symlink(sb.outside.join("dir"), sb.path("a/out-dir")).unwrap();
    symlink(sb.outside.join("secret"), sb.path("a/b/out-file")).unwrap();
    fs_err::write(sb.outside.join("dir/keep"), "keep").unwrap();
}

#[test]
fn remove_all_removes_trees_files_and_symlinks_without_following() {
    let sb = Sandbox::new();
    tree(&sb);
    let root = Root::open(&sb.root).unwrap();
    root.remove_all(Path::new("a/out-dir")).unwrap();
    assert!(fs_err::symlink_metadata(sb.path("a/out-dir")).is_err());
    assert_eq!(fs_err::read(sb.outside.join("dir/keep")).unwrap(), b"keep");
    root.remove_all(Path::new("/a/g")).unwrap();
    assert!(!sb.path("a/g").exists());
    root.remove_all(Path::new("a")).unwrap();
    assert!(!sb.path("a").exists());
    assert_eq!(
        fs_err::read(sb.outside.join("secret")).unwrap(),
        b"sentinel"
    );
    // Nothing there: fine (a whiteout for something no lower layer had).
    root.remove_all(Path::new("a/never/was")).unwrap();
    root.remove_all(Path::new("gone")).unwrap();
    assert_eq!(fs_err::read_dir(&sb.root).unwrap().count(), 0);
}

#[test]
fn remove_all_refuses_to_leave_the_root() {
    let sb = Sandbox::new();
    tree(&sb);
    let root = Root::open(&sb.root).unwrap();
    let err = root.remove_all(Path::new("../outside/secret")).unwrap_err();
    assert!(
        matches!(
            &err,
            UnpackError::Unsafe {
                violation: Violation::DotDot,
                ..
            }
        ),
        "{err:?}"
    );
    let err = root.remove_all(Path::new("a/out-dir/keep")).unwrap_err();
    assert!(
        matches!(
            &err,
            UnpackError::Unsafe {
                violation: Violation::SymlinkParent { .. },
                ..
            }
        ),
        "{err:?}"
    );
    for whole in ["", "/", "."] {
        let err = root.remove_all(Path::new(whole)).unwrap_err();
        assert!(
            matches!(
                &err,
                UnpackError::Unsafe {
                    violation: Violation::RemoveRoot,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    sb.assert_outside_untouched_except_keep();
}

impl Sandbox {
    /// `tree` adds `outside/dir/keep`; everything else outside must be as it was.
    fn assert_outside_untouched_except_keep(&self) {
        assert_eq!(
            fs_err::read(self.outside.join("dir/keep")).unwrap(),
            b"keep"
        );
        assert_eq!(
            fs_err::read(self.outside.join("secret")).unwrap(),
            b"sentinel"
        );
        assert_eq!(
            fs_err::metadata(self.outside.join("secret"))
                .unwrap()
                .nlink(),
            1
        );
    }
}

#[test]
fn clear_dir_empties_and_keeps_the_directory() {
    let sb = Sandbox::new();
    tree(&sb);
    fs_err::set_permissions(
        sb.path("a"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )
    .unwrap();
    let root = Root::open(&sb.root).unwrap();
    root.clear_dir(Path::new("a")).unwrap();
    assert_eq!(fs_err::read_dir(sb.path("a")).unwrap().count(), 0);
    assert_eq!(
        fs_err::metadata(sb.path("a")).unwrap().mode() & 0o7777,
        0o751
    );
    sb.assert_outside_untouched_except_keep();
    // A symlink in the directory's place is not followed.
    symlink(sb.outside.join("dir"), sb.path("link")).unwrap();
    let err = root.clear_dir(Path::new("link")).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(fs_err::read(sb.outside.join("dir/keep")).unwrap(), b"keep");
    // Missing: nothing to clear. The root itself: allowed (an opaque whiteout at the top).
    root.clear_dir(Path::new("missing/dir")).unwrap();
    root.clear_dir(Path::new("/")).unwrap();
    assert_eq!(fs_err::read_dir(&sb.root).unwrap().count(), 0);
    sb.assert_outside_untouched_except_keep();
}

#[test]
fn very_deep_trees_are_removed_without_recursion_or_many_fds() {
    let sb = Sandbox::new();
    // Deeper than the default fd limit (1024) and than a path can be, so built relative to
    // each directory.
    use rustix::fs::{Mode, OFlags, mkdirat, openat};
    let mut dir = openat(rustix::fs::CWD, &sb.root, OFlags::DIRECTORY, Mode::empty()).unwrap();
    for name in std::iter::once("deep").chain(std::iter::repeat_n("d", 3000)) {
        mkdirat(&dir, name, Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(&dir, name, OFlags::DIRECTORY, Mode::empty()).unwrap();
        drop(
            openat(
                &dir,
                "f",
                OFlags::CREATE | OFlags::WRONLY,
                Mode::from_raw_mode(0o644),
            )
            .unwrap(),
        );
    }
    let root = Root::open(&sb.root).unwrap();
    root.remove_all(Path::new("deep")).unwrap();
    assert!(!sb.path("deep").exists());
}

#[test]
fn a_root_reused_across_archives_and_removals_resolves_fresh_paths() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let opts = Sandbox::opts();
    let layer1 = Tar::new()
        .dir("usr/")
        .dir("usr/lib/")
        .file("usr/lib/one", b"1")
        .finish();
    unpack_tar(&layer1[..], &root, &opts).unwrap();
    // The directory the last entry went into is removed and recreated as a symlink elsewhere.
    root.remove_all(Path::new("usr/lib")).unwrap();
    fs_err::create_dir(sb.path("lib2")).unwrap();
    symlink("../lib2", sb.path("usr/lib")).unwrap();
    let layer2 = Tar::new().file("usr/lib/two", b"2").finish();
    unpack_tar(&layer2[..], &root, &opts).unwrap();
    assert_eq!(fs_err::read(sb.path("lib2/two")).unwrap(), b"2");
    assert!(!sb.path("lib2/one").exists());
    // An opaque directory: lower contents go, the layer's own stay.
    root.clear_dir(Path::new("lib2")).unwrap();
    let layer3 = Tar::new().file("usr/lib/three", b"3").finish();
    unpack_tar(&layer3[..], &root, &opts).unwrap();
    let names: Vec<_> = fs_err::read_dir(sb.path("lib2"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["three"]);
    sb.assert_outside_untouched();
}
