//! Archives written by real GNU tar (an independent producer) from a tree built with the real
//! tools (chown, setcap, setfacl, mknod, truncate): extracting them must give back the tree.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::util::{Sandbox, run};

const SPARSE_SIZE: u64 = 64 << 20;

/// Builds the source tree in `src` (which exists).
fn make_tree(src: &Path) {
    let p = |rel: &str| src.join(rel);
    fs_err::create_dir_all(p("d/sub")).unwrap();
    fs_err::create_dir(p("acl-dir")).unwrap();
    fs_err::create_dir(p("private")).unwrap();
    fs_err::write(p("d/file"), "hello\n").unwrap();
    fs_err::hard_link(p("d/file"), p("d/hard")).unwrap();
    symlink("file", p("d/sym")).unwrap();
    symlink("/etc/passwd", p("d/abs")).unwrap();
    symlink("t".repeat(150), p("d/long-target")).unwrap();
    fs_err::write(p("d/ping"), "ELF").unwrap();
    fs_err::write(p("d/acl"), "acl").unwrap();
    fs_err::write(src.join(OsStr::from_bytes(b"d/caf\xe9")), "latin1").unwrap();
    let long_dir = format!("d/{}/{}", "x".repeat(120), "y".repeat(120));
    fs_err::create_dir_all(p(&long_dir)).unwrap();
    fs_err::write(p(&format!("{long_dir}/{}", "z".repeat(110))), "long").unwrap();
    // Sparse: data at the start, in the middle and at the very end, holes between.
    let sparse = fs::File::create(p("sparse")).unwrap();
    sparse.set_len(SPARSE_SIZE).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"start", 0).unwrap();
    sparse.write_all_at(&[0xAB; 10000], 20 << 20).unwrap();
    sparse.write_all_at(b"end", SPARSE_SIZE - 3).unwrap();
    run(Command::new("mkfifo").arg(p("fifo")));
    run(Command::new("mknod").arg(p("null")).args(["c", "1", "3"]));
    run(Command::new("mknod").arg(p("loop0")).args(["b", "7", "0"]));
    run(Command::new("chown")
        .args(["-h", "1234:2345"])
        .arg(p("d/file"))
        .arg(p("d/sym"))
        .arg(p("d")));
    run(Command::new("chown").arg("4242:0").arg(p("fifo")));
    run(Command::new("chmod").arg("4755").arg(p("d/file")));
    run(Command::new("chmod").arg("2775").arg(p("d")));
    run(Command::new("chmod").arg("0700").arg(p("private")));
    run(Command::new("chmod").arg("0620").arg(p("fifo")));
    run(Command::new("setfattr")
        .args(["-n", "user.foo", "-v", "bar"])
        .arg(p("d/file")));
    run(Command::new("setfattr")
        .args(["-n", "user.dir", "-v", "0x00ff0a"])
        .arg(p("d/sub")));
    run(Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(p("d/ping")));
    run(Command::new("setfacl")
        .args(["-m", "u:4242:r-x,g:4343:rw-"])
        .arg(p("d/acl")));
    run(Command::new("setfacl")
        .args(["-d", "-m", "u:4242:rwx,g::r-x"])
        .arg(p("acl-dir")));
    // Times last, deepest first, so creating children does not move the parents' mtimes.
    run(Command::new("find").arg(src).args([
        "-depth",
        "-exec",
        "touch",
        "-h",
        "-d",
        "@1600000000.123456789",
        "{}",
        "+",
    ]));
}

/// Everything about every object under `root` that extraction must keep (not atime, not ctime,
/// not inode numbers, but which names share an inode).
fn describe(root: &Path, with_nanos: bool, with_xattrs: bool) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta = fs_err::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let mut desc = format!(
            "{:o} {}:{} mtime {}{}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.mtime(),
            if with_nanos {
                format!(".{}", meta.mtime_nsec())
            } else {
                String::new()
            }
        );
        if ft.is_dir() {
            for entry in fs_err::read_dir(&path).unwrap() {
                stack.push(rel.join(entry.unwrap().file_name()));
            }
        } else if ft.is_symlink() {
            desc += &format!(" -> {:?}", fs_err::read_link(&path).unwrap());
        } else if ft.is_file() {
            let first = inodes
                .entry(meta.ino())
                .or_insert_with(|| rel.as_os_str().as_bytes().to_vec());
            let hash = Sha256::digest(fs_err::read(&path).unwrap());
            desc += &format!(
                " size {} sha256 {} nlink {} first {:?}",
                meta.len(),
                hex::encode(hash),
                meta.nlink(),
                String::from_utf8_lossy(first)
            );
        } else {
            desc += &format!(" rdev {}", meta.rdev());
        }
        if with_xattrs {
            let dump = run(Command::new("getfattr")
                .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
                .arg(&path));
            desc += &dump
                .lines()
                .filter(|l| !l.starts_with("# file:"))
                .collect::<Vec<_>>()
                .join(" ");
        }
        out.insert(rel.as_os_str().as_bytes().to_vec(), desc);
    }
    out
}

fn getfacl(path: &Path) -> String {
    let out = run(Command::new("getfacl").args(["-n", "-p"]).arg(path));
    out.lines()
        .filter(|l| !l.starts_with("# file:"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Builds a tree, archives it with GNU tar and `args`, extracts it with us.
fn round_trip(args: &[&str]) -> (tempfile::TempDir, Sandbox) {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let archive = src.path().parent().unwrap().join(format!(
        "{}.tar",
        src.path().file_name().unwrap().to_string_lossy()
    ));
    run(Command::new("tar")
        .args(args)
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(src.path())
        .arg("."));
    let bytes = fs_err::read(&archive).unwrap();
    fs_err::remove_file(&archive).unwrap();
    let sb = Sandbox::new();
    let summary = sb.unpack(&bytes).unwrap();
    assert!(summary.root_entry_seen);
    assert_eq!(summary.warnings, 0);
    (src, sb)
}

#[test]
fn pax_archive_with_xattrs_acls_and_sparse_files() {
    let (src, sb) = round_trip(&["--xattrs", "--xattrs-include=*", "--acls", "--sparse"]);
    assert_eq!(
        describe(&sb.root, true, true),
        describe(src.path(), true, true)
    );
    assert_eq!(
        getfacl(&sb.path("d/acl")),
        getfacl(&src.path().join("d/acl"))
    );
    assert!(getfacl(&sb.path("d/acl")).contains("user:4242:r-x"));
    assert_eq!(
        getfacl(&sb.path("acl-dir")),
        getfacl(&src.path().join("acl-dir"))
    );
    let caps = run(Command::new("getcap").arg(sb.path("d/ping")));
    assert!(caps.contains("cap_net_raw=ep"), "{caps}");
    assert_sparse(&sb.path("sparse"));
    sb.assert_outside_untouched();
}

#[test]
fn acls_as_text_only() {
    // Without --xattrs, GNU tar stores only SCHILY.acl.* text (numeric ids here, as 4242 and
    // 4343 have no names on this host): that path of the converter against the kernel.
    let (src, sb) = round_trip(&["--acls"]);
    assert_eq!(
        getfacl(&sb.path("d/acl")),
        getfacl(&src.path().join("d/acl"))
    );
    assert_eq!(
        getfacl(&sb.path("acl-dir")),
        getfacl(&src.path().join("acl-dir"))
    );
}

#[test]
fn gnu_format_with_old_sparse_headers_and_long_names() {
    let (src, sb) = round_trip(&["--format=gnu", "--sparse"]);
    assert_eq!(
        describe(&sb.root, false, false),
        describe(src.path(), false, false)
    );
    assert_sparse(&sb.path("sparse"));
}

#[test]
fn pax_sparse_versions_0_0_and_0_1() {
    for version in ["0.0", "0.1"] {
        let (src, sb) = round_trip(&[
            "--format=posix",
            "--sparse",
            &format!("--sparse-version={version}"),
        ]);
        assert_eq!(
            describe(&sb.root, true, false),
            describe(src.path(), true, false),
            "{version}"
        );
        assert_sparse(&sb.path("sparse"));
    }
}

/// The holes stayed holes: far fewer blocks than the apparent size.
fn assert_sparse(path: &Path) {
    let meta = fs_err::metadata(path).unwrap();
    assert_eq!(meta.len(), SPARSE_SIZE);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "{allocated} bytes allocated for a file with 10 KB of data"
    );
}
