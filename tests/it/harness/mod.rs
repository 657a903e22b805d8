//! The test harness: real parts only, each started per test and torn down on drop.
//!
//! - `env`: a throw-away host (`--root` temp dir) and a runner for the real `sandbox` binary
//!   with a timeout, so a hang fails one test instead of the whole suite.
//! - `nginx`: Debian's nginx on a free 127.0.0.1 port, its access log parsed into entries so
//!   tests can assert what the server actually sent (status, body bytes, Range, validators).
//! - `gpg`: real GnuPG in a temporary home, producing keys and detached signatures.
//! - `rootfs`: a small OS tree (symlink, setuid, hardlink, fifo, device, foreign owner) packed
//!   by GNU tar and compressed by the real gzip/xz/zstd/bzip2.
//! - `rawtar`: hand-built tar headers for hostile archives GNU tar refuses to produce.
//! - `site`: a docroot served by nginx with helpers to publish images, checksums and signatures.
//! - `fixture`: an image with the tree it must become, and keyring files.
//! - `registry`: Debian's docker-registry on a free port (optionally with htpasswd auth),
//!   images pushed by real skopeo; `ocimage`: OCI layouts built in code; `cutproxy`: a loopback
//!   proxy in front of it that cuts one blob's body short and counts the bytes it passes.
//! - `simplestreams`: an LXC image server (simplestreams or legacy index) with generated builds,
//!   signed by a GnuPG key whose self-signature is SHA-1, like the real LXC image key.
//!
//! Every external tool is looked up before use; a missing one fails with a message naming the
//! Debian package to install, never with an obscure spawn error deep inside a test.

pub mod apt_mirror;
pub mod cutproxy;
pub mod env;
pub mod fixture;
pub mod gpg;
pub mod loopfs;
pub mod nginx;
pub mod ocimage;
pub mod rawtar;
pub mod recorder;
pub mod registry;
pub mod rootfs;
pub mod simplestreams;
pub mod site;
pub mod zfs_fake;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

/// Absolute path of `tool`, or a panic naming the package that provides it.
pub fn require_tool(tool: &str) -> PathBuf {
    let package = match tool {
        "nginx" => "nginx-light",
        "gpg" | "gpgconf" => "gnupg",
        "xz" => "xz-utils",
        "lsattr" | "chattr" => "e2fsprogs",
        "tar" | "gzip" | "zstd" | "bzip2" | "skopeo" | "docker-registry" | "openssl" => tool,
        "htpasswd" => "apache2-utils",
        "busybox" => "busybox-static",
        "setpriv" | "mount" | "script" => "util-linux",
        "groff" => "groff-base",
        "mkfs.btrfs" | "btrfs" => "btrfs-progs",
        "mkfs.xfs" => "xfsprogs",
        "filefrag" => "e2fsprogs",
        _ => "coreutils",
    };
    let candidates = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    for dir in candidates {
        let path = Path::new(dir).join(tool);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "integration tests need `{tool}` (Debian package `{package}`), not found in {candidates:?}; \
         install it with `apt-get install -y {package}` (the project's test script does this)"
    );
}

/// Runs `cmd` to completion, feeding `stdin`; panics with its stderr when it fails.
pub fn run_tool(cmd: &mut Command, stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write as _;
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {description}: {e}"));
    // Why a thread: a large stdin written while stdout fills its pipe would deadlock.
    let writer = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin was piped");
        std::thread::spawn(move || pipe.write_all(&data))
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {description}: {e}"));
    if let Some(writer) = writer {
        writer
            .join()
            .expect("stdin writer thread")
            .unwrap_or_else(|e| panic!("writing stdin of {description}: {e}"));
    }
    assert!(
        output.status.success(),
        "{description} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// 64 lowercase hex digits of sha256(data), computed independently of the crate under test.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// `n` bytes that no compressor can shrink, so sizes on the wire are predictable.
pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore as _;
    let mut out = vec![0u8; n];
    rand::rng().fill_bytes(&mut out);
    out
}

/// A short random token, to make every test's image distinct.
pub fn token() -> String {
    hex::encode(random_bytes(8))
}

/// Sorted names of the entries of `dir`; empty when `dir` does not exist.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    };
    names.sort();
    names
}

/// Every regular file under `dir` (recursively) with its size; empty when `dir` is absent.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// A TCP port on 127.0.0.1 that nobody listens on right now (racy: servers retry on a clash).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of a bound listener")
        .port()
}
