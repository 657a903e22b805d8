//! OCI layer rules (`layers.rs`): whiteouts, opaque directories in any stream order, hostile
//! whiteout names, absolute symlinks inside the root; and `Root::lookup_in_root`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::util::{Sandbox, Tar};
use crate::unpack::error::Violation;
use crate::unpack::layers::{LayerSummary, unpack_layer};
use crate::unpack::{Root, UnpackError, unpack_tar};

impl Sandbox {
    fn layer(&self, root: &Root, tar: &Tar) -> Result<LayerSummary, UnpackError> {
        unpack_layer(&tar.finish()[..], root, &Sandbox::opts())
    }
}

/// Every name below `dir` (relative, sorted), symlinks not followed.
fn names(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if fs_err::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn lower(sb: &Sandbox, root: &Root) {
    let mut t = Tar::new();
    t.dir("etc/")
        .file("etc/passwd", b"root")
        .file("etc/group", b"root")
        .dir("opt/")
        .dir("opt/tree/")
        .dir("opt/tree/sub/")
        .file("opt/tree/sub/deep", b"d")
        .file("opt/tree/a", b"a")
        .file("opt/keep", b"k")
        .symlink("opt/out", "../../outside/secret");
    sb.layer(root, &t).unwrap();
}

#[test]
fn whiteouts_remove_files_trees_and_symlinks_of_lower_layers() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    lower(&sb, &root);
    let mut t = Tar::new();
    t.file("etc/.wh.passwd", b"")
        .file("opt/.wh.tree", b"")
        .file("opt/.wh.out", b"")
        .file("opt/.wh.never-existed", b"")
        .file("etc/new", b"n");
    let s = sb.layer(&root, &t).unwrap();
    assert_eq!(s.whiteouts, 4);
    assert_eq!(s.unpack.entries, 5);
    assert_eq!(
        names(&sb.root),
        ["etc", "etc/group", "etc/new", "opt", "opt/keep"]
    );
    sb.assert_outside_untouched();
}

#[test]
fn opaque_directories_drop_lower_content_in_any_stream_order() {
    // The marker first (Docker), last, and in the middle (umoci sorts names: `+` < `.`).
    for marker_at in 0..3 {
        let sb = Sandbox::new();
        let root = Root::open(&sb.root).unwrap();
        lower(&sb, &root);
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("opt/+early", b"e"),
            ("opt/tree/sub/new", b"n"),
            ("opt/zz-late", b"z"),
        ];
        entries.insert(marker_at, ("opt/.wh..wh..opq", b""));
        let mut t = Tar::new();
        t.dir("opt/");
        for (name, data) in entries {
            t.file(name, data);
        }
        let s = sb.layer(&root, &t).unwrap();
        assert_eq!(s.opaque_dirs, 1);
        // `opt/tree` survives only as the way to the layer's own `sub/new`: its lower
        // `a` and `sub/deep` are gone, as are `keep` and the symlink.
        assert_eq!(
            names(&sb.path("opt")),
            ["+early", "tree", "tree/sub", "tree/sub/new", "zz-late"],
            "marker at position {marker_at}"
        );
        assert_eq!(names(&sb.path("etc")), ["group", "passwd"]);
        sb.assert_outside_untouched();
    }
}

#[test]
fn whiteouts_apply_to_lower_layers_only() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    lower(&sb, &root);
    // The layer writes `opt/tree/b` and `etc/passwd`, then whites both parents/names out:
    // only what the lower layers had goes.
    let mut t = Tar::new();
    t.file("opt/tree/b", b"b")
        .file("etc/passwd", b"new")
        .file("opt/.wh.tree", b"")
        .file("etc/.wh.passwd", b"");
    sb.layer(&root, &t).unwrap();
    assert_eq!(names(&sb.path("opt/tree")), ["b"]);
    assert_eq!(fs_err::read(sb.path("etc/passwd")).unwrap(), b"new");
}

#[test]
fn a_top_level_opaque_marker_keeps_the_root_and_the_layer() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    lower(&sb, &root);
    let mut t = Tar::new();
    t.dir("./").file("etc/x", b"x").file(".wh..wh..opq", b"");
    sb.layer(&root, &t).unwrap();
    assert_eq!(names(&sb.root), ["etc", "etc/x"]);
    sb.assert_outside_untouched();
}

#[test]
fn opaque_over_a_lower_symlink_replaces_it_without_following() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let mut t = Tar::new();
    t.symlink("data", "../outside/dir");
    sb.layer(&root, &t).unwrap();
    let mut t = Tar::new();
    t.file("data/.wh..wh..opq", b"").file("data/f", b"f");
    sb.layer(&root, &t).unwrap();
    assert!(fs_err::symlink_metadata(sb.path("data")).unwrap().is_dir());
    assert_eq!(names(&sb.path("data")), ["f"]);
    sb.assert_outside_untouched();
}

#[test]
fn whiteout_files_and_aufs_metadata_are_never_created() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let mut t = Tar::new();
    t.dir("a/")
        .file("a/.wh.x", b"")
        .file("a/.wh..wh..opq", b"")
        .dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/1.2", b"aufs")
        .file(".wh..wh.aufs", b"")
        .file("a/y", b"y");
    let s = sb.layer(&root, &t).unwrap();
    assert_eq!((s.whiteouts, s.opaque_dirs, s.aufs_skipped), (1, 1, 3));
    assert_eq!(names(&sb.root), ["a", "a/y"]);
}

#[test]
fn hostile_whiteout_names_abort() {
    let cases: &[(&[u8], &str)] = &[
        (b"a/.wh...", "escape"),
        (b"a/.wh..", "escape"),
        (b"a/.wh.x/file", "escape"),
        (b"../.wh.x", "dotdot"),
        (b"a/../../.wh.x", "dotdot"),
        (b"a/.wh.", "bare"),
        (b".wh.", "bare"),
    ];
    for (name, kind) in cases {
        let sb = Sandbox::new();
        let root = Root::open(&sb.root).unwrap();
        lower(&sb, &root);
        let before = names(&sb.root);
        let mut t = Tar::new();
        t.dir("a/")
            .raw(name, tar::EntryType::Regular, b"", 0o644, b"");
        let err = sb.layer(&root, &t).unwrap_err();
        let shown = String::from_utf8_lossy(name);
        match *kind {
            "escape" => assert!(
                matches!(
                    &err,
                    UnpackError::Unsafe {
                        violation: Violation::WhiteoutEscape { .. },
                        ..
                    }
                ),
                "{shown}: {err:?}"
            ),
            "dotdot" => assert!(
                matches!(
                    &err,
                    UnpackError::Unsafe {
                        violation: Violation::DotDot,
                        ..
                    }
                ),
                "{shown}: {err:?}"
            ),
            _ => {
                assert!(!err.is_safety_violation(), "{shown}: {err:?}");
                assert!(err.to_string().contains("bare `.wh.`"), "{err}");
            }
        }
        assert!(err.to_string().contains(&*shown), "{err}");
        // Nothing of the lower layers was removed; only `a/` may have been created.
        let mut after = names(&sb.root);
        after.retain(|n| n != "a");
        assert_eq!(after, before, "{shown}");
        sb.assert_outside_untouched();
    }
}

#[test]
fn whiteouts_below_a_symlink_that_climbs_out_abort() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let mut t = Tar::new();
    t.symlink("up", "../outside")
        .symlink("deep/up", "../../outside");
    sb.layer(&root, &t).unwrap();
    for name in ["up/.wh.secret", "up/dir/.wh..wh..opq", "deep/up/.wh.dir"] {
        let mut t = Tar::new();
        t.file(name, b"");
        let err = sb.layer(&root, &t).unwrap_err();
        assert!(
            matches!(
                &err,
                UnpackError::Unsafe {
                    violation: Violation::SymlinkParent { .. },
                    ..
                }
            ),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    sb.assert_outside_untouched();
}

#[test]
fn absolute_symlinks_resolve_inside_the_root_for_layers_only() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    // Debian's `var/run -> /run`, and a link naming the host's sentinel by absolute path.
    let outside = sb.outside.display().to_string();
    let mut t = Tar::new();
    t.dir("run/")
        .dir("var/")
        .symlink("var/run", "/run")
        .symlink("evil", &outside);
    sb.layer(&root, &t).unwrap();
    let inside = sb.root.join(sb.outside.strip_prefix("/").unwrap());
    fs_err::create_dir_all(&inside).unwrap();
    let mut t = Tar::new();
    t.file("var/run/pid", b"1")
        .file("evil/secret", b"overwritten?")
        .hardlink("var/run/pid2", "var/run/pid");
    sb.layer(&root, &t).unwrap();
    assert_eq!(fs_err::read(sb.path("run/pid")).unwrap(), b"1");
    assert_eq!(fs_err::metadata(sb.path("run/pid")).unwrap().nlink(), 2);
    // `evil` means the root's own `<outside path>`.
    assert_eq!(
        fs_err::read(inside.join("secret")).unwrap(),
        b"overwritten?"
    );
    sb.assert_outside_untouched();
    // A whiteout through an absolute symlink resolves inside the root too.
    let mut t = Tar::new();
    t.file("var/run/.wh.pid", b"").file("evil/.wh.secret", b"");
    sb.layer(&root, &t).unwrap();
    assert!(!sb.path("run/pid").exists());
    assert!(!inside.join("secret").exists());
    sb.assert_outside_untouched();
    // The setting is the layer's only: a plain tarball still refuses such parents.
    assert!(!root.absolute_symlinks_in_root());
    let err = unpack_tar(
        &Tar::new().file("var/run/x", b"").finish()[..],
        &root,
        &Sandbox::opts(),
    )
    .unwrap_err();
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
    // `..` above the root is refused even in a layer.
    let mut t = Tar::new();
    t.symlink("climb", "/../outside");
    sb.layer(&root, &t).unwrap();
    let err = sb
        .layer(&root, Tar::new().file("climb/secret", b"x"))
        .unwrap_err();
    assert!(err.is_safety_violation(), "{err:?}");
    sb.assert_outside_untouched();
}

#[test]
fn hardlinks_may_name_files_of_lower_layers() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    lower(&sb, &root);
    let mut t = Tar::new();
    t.hardlink("etc/passwd-", "etc/passwd")
        .hardlink("bad", "../outside/secret");
    let err = sb.layer(&root, &t).unwrap_err();
    assert!(err.is_safety_violation(), "{err:?}");
    assert_eq!(fs_err::metadata(sb.path("etc/passwd")).unwrap().nlink(), 2);
    sb.assert_outside_untouched();
}

#[test]
fn lookup_in_root_follows_symlinks_as_a_chroot_would() {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let outside = sb.outside.join("secret").display().to_string();
    let mut t = Tar::new();
    t.dir("usr/")
        .dir("usr/sbin/")
        .dir("usr/lib/")
        .dir("usr/lib/systemd/")
        .raw(
            b"usr/lib/systemd/systemd",
            tar::EntryType::Regular,
            b"",
            0o755,
            b"elf",
        )
        .symlink("sbin", "usr/sbin")
        .symlink("lib", "usr/lib")
        .symlink("usr/sbin/init", "/lib/systemd/systemd")
        .symlink("up", "../../../../usr/lib/systemd/systemd")
        .symlink("host", &outside)
        .symlink("loop1", "loop2")
        .symlink("loop2", "loop1")
        .symlink("dangling", "/nowhere")
        .file("file", b"");
    sb.layer(&root, &t).unwrap();
    let found = |p: &str| root.lookup_in_root(Path::new(p)).unwrap();
    let init = found("/sbin/init").expect("init found");
    assert!(init.is_file());
    assert_eq!(init.mode() & 0o777, 0o755);
    assert_eq!(
        init.ino(),
        fs_err::metadata(sb.path("usr/lib/systemd/systemd"))
            .unwrap()
            .ino()
    );
    // `..` above the root stays at the root.
    assert!(found("up").is_some());
    assert!(found("usr/../../../sbin/init").is_some());
    // The host's file is not what an absolute link names.
    assert!(found("host").is_none());
    assert!(found("loop1").is_none());
    assert!(found("dangling").is_none());
    assert!(found("file/x").is_none());
    assert!(found("usr/sbin").unwrap().is_dir());
}

#[test]
fn a_layer_may_end_right_after_its_last_data_but_not_inside_it() {
    let full = Tar::new().dir("d/").file("d/f", b"abc").unterminated();
    let unpadded = &full[..1024 + 3];
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    unpack_layer(unpadded, &root, &Sandbox::opts()).unwrap();
    assert_eq!(fs_err::read(sb.path("d/f")).unwrap(), b"abc");
    // Partial padding too.
    unpack_layer(&full[..1024 + 100], &root, &Sandbox::opts()).unwrap();
    // A tarball is held to the format.
    let err = unpack_tar(unpadded, &root, &Sandbox::opts()).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Truncated { entry } if entry == "d/f"),
        "{err:?}"
    );
    // Cut inside the data: truncated, layer or not.
    let err = unpack_layer(&full[..1024 + 2], &root, &Sandbox::opts()).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Truncated { entry } if entry == "d/f"),
        "{err:?}"
    );
    // Cut inside a header: truncated.
    let err = unpack_layer(&full[..700], &root, &Sandbox::opts()).unwrap_err();
    assert!(
        matches!(err, UnpackError::TruncatedHeader { .. }),
        "{err:?}"
    );
}
