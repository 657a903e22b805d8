//! What extraction keeps: owners, special modes, device nodes, xattrs, ACLs, times, long names,
//! hardlinks, the root entry. Archives are built in code; results are read back with std and
//! with the `attr`/`acl` tools.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use tar::{EntryType, Header};

use super::util::{MTIME, Sandbox, Tar, run};

/// The raw value of one xattr, read with getfattr (None when absent).
fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = Command::new("getfattr")
        .args(["-h", "--absolute-names", "--only-values", "-n", name])
        .arg(path)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// A ustar header for `name` with owner, mode and type set.
fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

fn named(mut h: Header, name: &str) -> Header {
    h.set_path(name).unwrap();
    h
}

#[test]
fn owners_and_setuid_survive() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .owned(
            b"shared/",
            EntryType::Directory,
            b"",
            0o2775,
            (1234, 1234),
            b"",
        )
        .owned(
            b"shared/suid",
            EntryType::Regular,
            b"",
            0o4755,
            (1234, 1234),
            b"#!",
        )
        .owned(b"sgid", EntryType::Regular, b"", 0o2711, (0, 1234), b"")
        .owned(b"sticky", EntryType::Regular, b"", 0o1777, (99, 98), b"")
        .owned(
            b"link",
            EntryType::Symlink,
            b"suid!",
            0o777,
            (1234, 4321),
            b"",
        )
        .finish();
    sb.unpack(&archive).unwrap();
    let m = fs_err::metadata(sb.path("shared/suid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 1234, 0o4755));
    let m = fs_err::metadata(sb.path("sgid")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 1234, 0o2711));
    let m = fs_err::metadata(sb.path("sticky")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (99, 98, 0o1777));
    let m = fs_err::metadata(sb.path("shared")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 1234, 0o2775));
    let m = fs_err::symlink_metadata(sb.path("link")).unwrap();
    assert!(m.is_symlink());
    assert_eq!((m.uid(), m.gid()), (1234, 4321));
    assert_eq!(
        fs_err::read_link(sb.path("link")).unwrap(),
        Path::new("suid!")
    );
}

#[test]
fn device_nodes_and_fifos() {
    let sb = Sandbox::new();
    let mut null = named(header(EntryType::Char, 0o666, 0, 0, 0), "dev/null");
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    let mut loop0 = named(header(EntryType::Block, 0o660, 0, 6, 0), "dev/loop0");
    loop0.set_device_major(7).unwrap();
    loop0.set_device_minor(0).unwrap();
    let archive = Tar::new()
        .header(&mut null, b"")
        .header(&mut loop0, b"")
        .header(
            &mut named(header(EntryType::Fifo, 0o620, 1234, 5, 0), "run/fifo"),
            b"",
        )
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.warnings, 0);
    let m = fs_err::symlink_metadata(sb.path("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(
        (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
        (1, 3)
    );
    assert_eq!(m.mode() & 0o7777, 0o666);
    let m = fs_err::symlink_metadata(sb.path("dev/loop0")).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(
        (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
        (7, 0)
    );
    assert_eq!((m.gid(), m.mode() & 0o7777), (6, 0o660));
    let m = fs_err::symlink_metadata(sb.path("run/fifo")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 5, 0o620));
    assert_eq!(m.mtime(), MTIME as i64);
}

/// cap_net_raw+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: &[u8] =
    b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

#[test]
fn xattrs_and_capabilities_are_kept_selinux_labels_dropped() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .pax(&[
            ("SCHILY.xattr.user.foo", b"bar\nbaz\0"),
            ("SCHILY.xattr.security.capability", CAP_NET_RAW),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:bin_t:s0\0",
            ),
            ("LIBARCHIVE.xattr.user.from%20libarchive", b"aGVsbG8"),
        ])
        .header(
            &mut named(header(EntryType::Regular, 0o755, 1234, 1234, 4), "bin/ping"),
            b"ELF!",
        )
        .pax(&[("SCHILY.xattr.user.dir", b"d")])
        .header(
            &mut named(header(EntryType::Directory, 0o755, 0, 0, 0), "etc/"),
            b"",
        )
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.warnings, 0);
    let ping = sb.path("bin/ping");
    assert_eq!(xattr(&ping, "user.foo").unwrap(), b"bar\nbaz\0");
    // Set after the chown to 1234, which would have cleared it.
    assert_eq!(xattr(&ping, "security.capability").unwrap(), CAP_NET_RAW);
    let getcap = run(Command::new("getcap").arg(&ping));
    assert!(getcap.contains("cap_net_raw=ep"), "{getcap}");
    assert_eq!(xattr(&ping, "user.from libarchive").unwrap(), b"hello");
    assert_eq!(xattr(&ping, "security.selinux"), None);
    assert_eq!(xattr(&sb.path("etc"), "user.dir").unwrap(), b"d");
}

#[test]
fn acls_from_pax_text() {
    let sb = Sandbox::new();
    let access = b"user::rwx\nuser:4242:r-x\ngroup::r-x\ngroup:4343:rw-\nmask::rwx\nother::r--\n";
    let default = b"user::rwx,user:4242:rwx,group::r-x,mask::rwx,other::---";
    let archive = Tar::new()
        .pax(&[("SCHILY.acl.access", access)])
        .header(
            &mut named(header(EntryType::Regular, 0o774, 0, 0, 0), "f"),
            b"",
        )
        .pax(&[("SCHILY.acl.default", default)])
        .header(
            &mut named(header(EntryType::Directory, 0o755, 0, 0, 0), "d/"),
            b"",
        )
        .pax(&[(
            "SCHILY.acl.access",
            b"user::rwx,user:alice:r-x,group::r-x,mask::r-x,other::r--",
        )])
        .header(
            &mut named(header(EntryType::Regular, 0o754, 0, 0, 0), "named"),
            b"",
        )
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(
        summary.warnings, 1,
        "the ACL naming `alice` without an id is skipped"
    );
    let facl = run(Command::new("getfacl").args(["-n", "-c"]).arg(sb.path("f")));
    assert_eq!(
        facl.lines().collect::<Vec<_>>(),
        [
            "user::rwx",
            "user:4242:r-x",
            "group::r-x",
            "group:4343:rw-",
            "mask::rwx",
            "other::r--",
            ""
        ]
    );
    let facl = run(Command::new("getfacl")
        .args(["-n", "-c", "-d"])
        .arg(sb.path("d")));
    assert!(facl.contains("user:4242:rwx"), "{facl}");
    assert_eq!(
        fs_err::metadata(sb.path("named")).unwrap().mode() & 0o777,
        0o754
    );
}

#[test]
fn file_and_directory_times() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .pax(&[
            ("mtime", b"1500000000.123456789"),
            ("atime", b"1400000000.5"),
        ])
        .header(
            &mut named(header(EntryType::Directory, 0o755, 0, 0, 0), "d/"),
            b"",
        )
        .header(
            &mut named(header(EntryType::Regular, 0o644, 0, 0, 1), "d/f"),
            b"x",
        )
        .header(
            &mut named(header(EntryType::Directory, 0o755, 0, 0, 0), "d/sub/"),
            b"",
        )
        .header(
            &mut named(header(EntryType::Regular, 0o644, 0, 0, 0), "d/sub/g"),
            b"",
        )
        .raw(b"d/l", EntryType::Symlink, b"f", 0o777, b"")
        .finish();
    sb.unpack(&archive).unwrap();
    let d = fs_err::metadata(sb.path("d")).unwrap();
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_500_000_000, 123_456_789));
    assert_eq!((d.atime(), d.atime_nsec()), (1_400_000_000, 500_000_000));
    for p in ["d/f", "d/sub", "d/sub/g"] {
        assert_eq!(
            fs_err::metadata(sb.path(p)).unwrap().mtime(),
            MTIME as i64,
            "{p}"
        );
    }
    assert_eq!(
        fs_err::symlink_metadata(sb.path("d/l")).unwrap().mtime(),
        MTIME as i64
    );
}

#[test]
fn restrictive_directory_modes_are_set_last() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .raw(b"ro/", EntryType::Directory, b"", 0o500, b"")
        .raw(b"ro/inner/", EntryType::Directory, b"", 0o000, b"")
        .raw(b"ro/inner/f", EntryType::Regular, b"", 0o400, b"data")
        .finish();
    sb.unpack(&archive).unwrap();
    assert_eq!(
        fs_err::metadata(sb.path("ro")).unwrap().mode() & 0o7777,
        0o500
    );
    assert_eq!(
        fs_err::metadata(sb.path("ro/inner")).unwrap().mode() & 0o7777,
        0
    );
    assert_eq!(fs_err::read(sb.path("ro/inner/f")).unwrap(), b"data");
}

#[test]
fn the_root_entry_applies_to_the_root() {
    for name in ["./", "/", ""] {
        let sb = Sandbox::new();
        let mut h = header(EntryType::Directory, 0o750, 1234, 4321, 0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let archive = Tar::new().header(&mut h, b"").file("./x", b"x").finish();
        let summary = sb.unpack(&archive).unwrap();
        assert!(summary.root_entry_seen, "{name:?}");
        let m = fs_err::metadata(&sb.root).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777, m.mtime()),
            (1234, 4321, 0o750, MTIME as i64)
        );
    }
    let sb = Sandbox::new();
    assert!(
        !sb.unpack(&Tar::new().file("x", b"").finish())
            .unwrap()
            .root_entry_seen
    );
}

#[test]
fn long_names_and_deep_paths() {
    let sb = Sandbox::new();
    let long = format!("dir/{}", "n".repeat(200));
    // Components of 250 bytes, 20 levels deep: over PATH_MAX (4096) in total.
    let deep: String = (0..20).map(|i| format!("{i:0>250}/")).collect();
    let deep_file = format!("{deep}leaf");
    let pax_name = "p\n".repeat(60) + "end";
    let link_target = "t".repeat(300);
    let archive = Tar::new()
        .gnu_long_name(long.as_bytes())
        .raw(b"truncated-name", EntryType::Regular, b"", 0o644, b"gnu")
        .pax(&[("path", deep_file.as_bytes())])
        .raw(b"short", EntryType::Regular, b"", 0o644, b"deep")
        .pax(&[("path", pax_name.as_bytes())])
        .raw(b"short2", EntryType::Regular, b"", 0o644, b"newlines")
        .pax(&[("linkpath", link_target.as_bytes())])
        .raw(b"longlink", EntryType::Symlink, b"", 0o777, b"")
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.entries, 4);
    assert_eq!(fs_err::read(sb.path(&long)).unwrap(), b"gnu");
    // Read back with find, which walks down instead of passing the whole path to the kernel.
    let out = run(Command::new("find")
        .arg(".")
        .args([
            "-name", "leaf", "-execdir", "cat", "{}", ";", "-printf", " %p",
        ])
        .current_dir(&sb.root));
    assert_eq!(out, format!("deep ./{deep_file}"));
    assert_eq!(
        fs_err::read(
            sb.root
                .join(std::ffi::OsStr::from_bytes(pax_name.as_bytes()))
        )
        .unwrap(),
        b"newlines"
    );
    assert_eq!(
        fs_err::read_link(sb.path("longlink"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        link_target.as_bytes()
    );
}

#[test]
fn hardlinks_share_an_inode() {
    let sb = Sandbox::new();
    fs_err::write(sb.path("lower"), "from a lower layer").unwrap();
    let archive = Tar::new()
        .file("a/orig", b"content")
        .hardlink("b/link", "a/orig")
        .hardlink("/abs", "/a/orig")
        .hardlink("lower-link", "lower")
        .hardlink("a/orig", "a/orig")
        .finish();
    sb.unpack(&archive).unwrap();
    let orig = fs_err::metadata(sb.path("a/orig")).unwrap();
    assert_eq!(orig.nlink(), 3);
    for p in ["b/link", "abs"] {
        assert_eq!(
            fs_err::metadata(sb.path(p)).unwrap().ino(),
            orig.ino(),
            "{p}"
        );
    }
    assert_eq!(
        fs_err::metadata(sb.path("lower-link")).unwrap().ino(),
        fs_err::metadata(sb.path("lower")).unwrap().ino()
    );
    assert_eq!(fs_err::read(sb.path("a/orig")).unwrap(), b"content");
}

#[test]
fn replacing_objects_keeps_later_entries_in_the_right_place() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .dir("a/b/")
        .file("a/b/old", b"old")
        // A directory replaced by a file, then by a directory again.
        .file("a", b"now a file")
        .dir("a/")
        .dir("a/b/")
        .file("a/b/new", b"new")
        // A directory over an existing directory keeps its contents.
        .dir("a/")
        .file("a/b/newer", b"newer")
        // A symlink replaced by a directory, through which a later entry would have gone.
        .dir("t/")
        .symlink("s", "t")
        .file("s/via-link", b"1")
        .dir("s/")
        .file("s/in-dir", b"2")
        .finish();
    sb.unpack(&archive).unwrap();
    assert!(!sb.path("a/b/old").exists());
    assert_eq!(fs_err::read(sb.path("a/b/new")).unwrap(), b"new");
    assert_eq!(fs_err::read(sb.path("a/b/newer")).unwrap(), b"newer");
    assert_eq!(fs_err::read(sb.path("t/via-link")).unwrap(), b"1");
    assert!(fs_err::symlink_metadata(sb.path("s")).unwrap().is_dir());
    assert_eq!(fs_err::read(sb.path("s/in-dir")).unwrap(), b"2");
    assert!(!sb.path("t/in-dir").exists());
}

#[test]
fn pre_posix_directories_and_unknown_types() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .raw(b"old-style/", EntryType::Regular, b"", 0o755, b"")
        .raw(b"../volume label", EntryType::new(b'V'), b"", 0o644, b"")
        .raw(b"old-style/f", EntryType::Regular, b"", 0o644, b"f")
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert!(fs_err::metadata(sb.path("old-style")).unwrap().is_dir());
    assert!(!sb.top.join("volume label").exists());
    assert_eq!(summary.warnings, 1);
    assert_eq!(summary.entries, 3);
    assert_eq!(summary.bytes, 1);
}

#[test]
fn big_ids_from_pax() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .pax(&[("uid", b"100000000"), ("gid", b"3000000000")])
        .file("f", b"")
        .pax(&[("uid", b"4294967295")])
        .file("g", b"")
        .finish();
    let err = sb.unpack(&archive).unwrap_err();
    assert!(
        err.to_string().contains("uid 4294967295 is out of range"),
        "{err}"
    );
    let m = fs_err::metadata(sb.path("f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (100_000_000, 3_000_000_000));
}

#[test]
fn xattrs_on_symlinks_and_fifos_stay_on_them() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .file("target", b"t")
        .pax(&[("SCHILY.xattr.trusted.on-link", b"l")])
        .raw(b"link", EntryType::Symlink, b"target", 0o777, b"")
        .pax(&[("SCHILY.xattr.trusted.on-fifo", b"f")])
        .raw(b"fifo", EntryType::Fifo, b"", 0o600, b"")
        .finish();
    let summary = sb.unpack(&archive).unwrap();
    assert_eq!(summary.warnings, 0);
    assert_eq!(xattr(&sb.path("link"), "trusted.on-link").unwrap(), b"l");
    assert_eq!(xattr(&sb.path("target"), "trusted.on-link"), None);
    assert_eq!(xattr(&sb.path("fifo"), "trusted.on-fifo").unwrap(), b"f");
}

#[test]
fn lying_sparse_maps_are_refused() {
    // (PAX records, entry data, expected message)
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        // 0.1: a segment past the real size.
        (
            vec![
                ("GNU.sparse.size", b"10"),
                ("GNU.sparse.map", b"8,4"),
                ("GNU.sparse.name", b"s"),
            ],
            b"abcd",
            "ends past the file size",
        ),
        // 0.0: segments that overlap.
        (
            vec![
                ("GNU.sparse.size", b"100"),
                ("GNU.sparse.offset", b"10"),
                ("GNU.sparse.numbytes", b"4"),
                ("GNU.sparse.offset", b"12"),
                ("GNU.sparse.numbytes", b"4"),
            ],
            b"abcdefgh",
            "overlaps",
        ),
        // 1.0: the map promises more data than the entry has.
        (
            vec![
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.realsize", b"100000"),
                ("GNU.sparse.name", b"s"),
            ],
            &[],
            "hold 5000 bytes but the entry has 10",
        ),
    ];
    for (i, (records, data, want)) in cases.into_iter().enumerate() {
        let mut data = data.to_vec();
        if i == 2 {
            data = b"1\n0\n5000\n".to_vec();
            data.resize(512 + 10, b'x');
        }
        let sb = Sandbox::new();
        let archive = Tar::new()
            .pax(&records)
            .raw(b"GNUSparseFile.1/s", EntryType::Regular, b"", 0o644, &data)
            .finish();
        let err = sb.unpack(&archive).unwrap_err();
        assert!(err.to_string().contains(want), "case {i}: {err}");
        assert!(!sb.path("GNUSparseFile.1").exists(), "case {i}");
    }
}
