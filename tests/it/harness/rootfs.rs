//! A small OS tree built on disk, packed by GNU tar, compressed by the real compressors.
//!
//! The tree carries everything a rootfs extractor gets wrong first: a top-level symlink
//! (`bin -> usr/bin`), a setuid binary, a hardlink, a fifo, a character device and files
//! owned by a uid that does not exist on the host. Building it needs root (mknod, chown);
//! the suite runs as root by design.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

/// uid and gid of the files under `home/user`, deliberately absent from the host's passwd.
pub const FOREIGN_ID: u32 = 1234;

/// Compression of a published tarball; detection in the binary is by magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
    Bzip2,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
        Compression::Bzip2,
    ];

    /// The conventional file name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Xz => "tar.xz",
            Compression::Zstd => "tar.zst",
            Compression::Bzip2 => "tar.bz2",
        }
    }

    /// Compresses `tar` with the real tool (`-c`: stdin to stdout).
    pub fn compress(self, tar: &[u8]) -> Vec<u8> {
        let tool = match self {
            Compression::None => return tar.to_vec(),
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        };
        let path = super::require_tool(tool);
        let mut cmd = Command::new(path);
        cmd.arg("-c");
        if self == Compression::Zstd {
            cmd.arg("-q");
        }
        super::run_tool(&mut cmd, Some(tar))
    }
}

/// What a test wants inside the tree beyond the fixed skeleton.
#[derive(Clone, Debug, Default)]
pub struct TreeSpec {
    /// Written to `etc/marker`, so each test's image (and digest) is distinct.
    pub marker: String,
    /// Incompressible bytes written to `usr/share/payload`, to make a download take time.
    pub payload: Vec<u8>,
}

impl TreeSpec {
    pub fn new() -> TreeSpec {
        TreeSpec {
            marker: super::token(),
            payload: Vec::new(),
        }
    }

    pub fn with_payload(mut self, len: usize) -> TreeSpec {
        self.payload = super::random_bytes(len);
        self
    }
}

fn write(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "integration tests must run as root: the fixture tree has device nodes and foreign owners"
    );
}

/// Builds the OS tree at `dir` (created if absent).
pub fn build_tree(dir: &Path, spec: &TreeSpec) {
    require_root();
    write(
        &dir.join("etc/os-release"),
        b"ID=testos\nNAME=\"Test OS\"\nVERSION_ID=1\n",
    );
    write(&dir.join("etc/marker"), spec.marker.as_bytes());
    write(&dir.join("usr/bin/hello"), b"#!/bin/sh\necho hello\n");
    chmod(&dir.join("usr/bin/hello"), 0o755);
    write(&dir.join("usr/bin/su-test"), b"#!/bin/sh\nid\n");
    chmod(&dir.join("usr/bin/su-test"), 0o4755);
    std::fs::hard_link(dir.join("usr/bin/hello"), dir.join("usr/bin/hello-again"))
        .expect("hardlinking usr/bin/hello-again");
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).expect("symlinking bin -> usr/bin");
    std::fs::create_dir_all(dir.join("run")).expect("creating run/");
    std::fs::create_dir_all(dir.join("dev")).expect("creating dev/");
    let status = Command::new("mkfifo")
        .arg(dir.join("run/initctl"))
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo run/initctl failed");
    let status = Command::new("mknod")
        .args(["-m", "666"])
        .arg(dir.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .expect("running mknod");
    assert!(status.success(), "mknod dev/null c 1 3 failed");
    let home = dir.join("home/user");
    write(&home.join("notes.txt"), b"owned by 1234\n");
    chmod(&home, 0o700);
    let id = Some(FOREIGN_ID);
    std::os::unix::fs::chown(&home, id, id).expect("chown home/user");
    std::os::unix::fs::chown(home.join("notes.txt"), id, id).expect("chown home/user/notes.txt");
    if !spec.payload.is_empty() {
        write(&dir.join("usr/share/payload"), &spec.payload);
    }
}

/// `tar --numeric-owner --xattrs -C dir -cf - <member>`: GNU tar as the independent producer.
pub fn pack(dir: &Path, member: &str) -> Vec<u8> {
    let tar = super::require_tool("tar");
    super::run_tool(
        Command::new(tar)
            .args(["--numeric-owner", "--xattrs", "-C"])
            .arg(dir)
            .args(["-cf", "-", member]),
        None,
    )
}

/// Builds the tree in a fresh dir under `scratch`, packs it as `./…` and compresses it.
pub fn image(scratch: &Path, spec: &TreeSpec, compression: Compression) -> Vec<u8> {
    let dir = tempfile::tempdir_in(scratch).expect("creating a tree dir");
    build_tree(dir.path(), spec);
    compression.compress(&pack(dir.path(), "."))
}

/// Asserts that `root` holds the tree `spec` describes, byte for byte and bit for bit.
#[track_caller]
pub fn assert_tree(root: &Path, spec: &TreeSpec) {
    let read = |rel: &str| {
        std::fs::read(root.join(rel))
            .unwrap_or_else(|e| panic!("reading {rel} in {}: {e}", root.display()))
    };
    let meta = |rel: &str| {
        root.join(rel)
            .symlink_metadata()
            .unwrap_or_else(|e| panic!("stat {rel} in {}: {e}", root.display()))
    };
    assert_eq!(
        read("etc/os-release"),
        b"ID=testos\nNAME=\"Test OS\"\nVERSION_ID=1\n"
    );
    assert_eq!(
        read("etc/marker"),
        spec.marker.as_bytes(),
        "etc/marker is another image's"
    );
    assert_eq!(read("usr/bin/hello"), b"#!/bin/sh\necho hello\n");
    assert_eq!(
        meta("usr/bin/hello").mode() & 0o7777,
        0o755,
        "mode of usr/bin/hello"
    );
    assert_eq!(
        meta("usr/bin/su-test").mode() & 0o7777,
        0o4755,
        "setuid bit of usr/bin/su-test"
    );
    assert_eq!(meta("usr/bin/su-test").uid(), 0, "owner of usr/bin/su-test");

    let hello = meta("usr/bin/hello");
    let again = meta("usr/bin/hello-again");
    assert_eq!(
        (hello.dev(), hello.ino()),
        (again.dev(), again.ino()),
        "usr/bin/hello-again must be a hardlink of usr/bin/hello"
    );
    assert_eq!(hello.nlink(), 2, "link count of usr/bin/hello");

    let bin = meta("bin");
    assert!(bin.file_type().is_symlink(), "bin must be a symlink");
    assert_eq!(
        std::fs::read_link(root.join("bin")).expect("readlink bin"),
        Path::new("usr/bin")
    );

    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        meta("run/initctl").file_type().is_fifo(),
        "run/initctl must be a fifo"
    );
    let null = meta("dev/null");
    assert!(
        null.file_type().is_char_device(),
        "dev/null must be a character device"
    );
    assert_eq!(
        (
            rustix::fs::major(null.rdev()),
            rustix::fs::minor(null.rdev())
        ),
        (1, 3),
        "device number of dev/null"
    );
    assert_eq!(null.mode() & 0o7777, 0o666, "mode of dev/null");

    for rel in ["home/user", "home/user/notes.txt"] {
        let m = meta(rel);
        assert_eq!(
            (m.uid(), m.gid()),
            (FOREIGN_ID, FOREIGN_ID),
            "owner of {rel}"
        );
    }
    assert_eq!(
        meta("home/user").mode() & 0o7777,
        0o700,
        "mode of home/user"
    );
    assert_eq!(read("home/user/notes.txt"), b"owned by 1234\n");
    if !spec.payload.is_empty() {
        assert!(
            read("usr/share/payload") == spec.payload,
            "usr/share/payload differs from the image's"
        );
    }
}
