//! Test helpers: archives built byte by byte (hostile ones the tar crate's `Builder` refuses to
//! write), a sandbox with a sentinel directory outside the root, and snapshots of that sentinel.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tar::{EntryType, Header};

use crate::unpack::{Root, UnpackError, UnpackOptions, UnpackSummary, unpack_tar};

/// One PAX record, `"%d %s=%s\n"` with the length counting itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// An old GNU sparse header block, built by hand: `slots` in the header (at most 4; more go
/// to extension blocks, returned too), `real_size`, the stored data size.
pub fn old_gnu_blocks(name: &str, slots: &[(u64, u64)], real_size: u64) -> Vec<[u8; 512]> {
    fn num(field: &mut [u8], v: u64) {
        let digits = field.len() - 1;
        let text = format!("{v:0digits$o}");
        if text.len() <= digits {
            field[..digits].copy_from_slice(text.as_bytes());
            field[digits] = 0;
        } else {
            // base-256, as GNU tar writes numbers too big for octal
            field.fill(0);
            field[0] = 0x80;
            let n = field.len();
            field[n - 8..].copy_from_slice(&v.to_be_bytes());
        }
    }
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(slots.iter().map(|s| s.1).sum());
    h.set_entry_type(tar::EntryType::GNUSparse);
    let mut blocks = Vec::new();
    {
        let gnu = h.as_gnu_mut().unwrap();
        num(&mut gnu.realsize, real_size);
        for (slot, &(o, l)) in gnu.sparse.iter_mut().zip(slots) {
            num(&mut slot.offset, o);
            num(&mut slot.numbytes, l);
        }
        gnu.isextended[0] = u8::from(slots.len() > 4);
    }
    h.set_cksum();
    blocks.push(*h.as_bytes());
    let rest: Vec<_> = slots.iter().skip(4).collect();
    let chunks: Vec<_> = rest.chunks(21).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut ext = tar::GnuExtSparseHeader::new();
        for (slot, &&(o, l)) in ext.sparse.iter_mut().zip(chunk.iter()) {
            num(&mut slot.offset, o);
            num(&mut slot.numbytes, l);
        }
        ext.isextended[0] = u8::from(i + 1 < chunks.len());
        blocks.push(*ext.as_bytes());
    }
    blocks
}

/// Writes tar entries with exactly the bytes given.
#[derive(Default)]
pub struct Tar {
    out: Vec<u8>,
}

/// Fixed so tests can compare times.
pub const MTIME: u64 = 1_600_000_000;

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }

    /// Appends a ustar header (name and link name as raw bytes, at most 100 each) and data.
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: &[u8],
        mode: u32,
        data: &[u8],
    ) -> &mut Tar {
        self.owned(name, kind, link, mode, (0, 0), data)
    }

    /// [`Tar::raw`] with an owner.
    pub fn owned(
        &mut self,
        name: &[u8],
        kind: EntryType,
        link: &[u8],
        mode: u32,
        (uid, gid): (u64, u64),
        data: &[u8],
    ) -> &mut Tar {
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        self.header(&mut h, data)
    }

    /// Appends a header (checksum recomputed) and its data, padded to 512 bytes.
    pub fn header(&mut self, h: &mut Header, data: &[u8]) -> &mut Tar {
        h.set_cksum();
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
        self
    }

    /// Appends header blocks exactly as given (old GNU sparse ones) and data, padded.
    pub fn blocks(&mut self, blocks: &[[u8; 512]], data: &[u8]) -> &mut Tar {
        for b in blocks {
            self.out.extend_from_slice(b);
        }
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.raw(name.as_bytes(), EntryType::Regular, b"", 0o644, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Tar {
        self.raw(name.as_bytes(), EntryType::Directory, b"", 0o755, b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Symlink,
            target.as_bytes(),
            0o777,
            b"",
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            EntryType::Link,
            target.as_bytes(),
            0o644,
            b"",
        )
    }

    /// A PAX `x` header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.raw(b"PaxHeaders/x", EntryType::XHeader, b"", 0o644, &data)
    }

    /// A GNU `L` header: the long name of the next entry.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Tar {
        let mut h = Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(EntryType::GNULongName);
        h.set_mode(0o644);
        let mut data = name.to_vec();
        data.push(0);
        h.set_size(data.len() as u64);
        self.header(&mut h, &data)
    }

    /// The archive with its end-of-archive marker (two zero blocks).
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.out.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }

    /// The archive without an end-of-archive marker.
    pub fn unterminated(&self) -> Vec<u8> {
        self.out.clone()
    }
}

/// A temporary directory holding `root/` (extraction target) and `outside/` (a sentinel the
/// archives attack), next to each other as a real staging directory and the host would be.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    pub top: PathBuf,
    pub root: PathBuf,
    pub outside: PathBuf,
    before: BTreeMap<PathBuf, String>,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().to_owned();
        let root = top.join("root");
        let outside = top.join("outside");
        fs_err::create_dir(&root).unwrap();
        fs_err::create_dir(&outside).unwrap();
        fs_err::write(outside.join("secret"), "sentinel").unwrap();
        fs_err::create_dir(outside.join("dir")).unwrap();
        let before = snapshot(&top, &root);
        Sandbox {
            _dir: dir,
            top,
            root,
            outside,
            before,
        }
    }

    pub fn opts() -> UnpackOptions {
        UnpackOptions {
            preserve_owner: true,
            keep_selinux: false,
            ..Default::default()
        }
    }

    pub fn unpack(&self, archive: &[u8]) -> Result<UnpackSummary, UnpackError> {
        let root = Root::open(&self.root).expect("open root");
        unpack_tar(archive, &root, &Self::opts())
    }

    /// Everything outside `root/` is as it was: names, types, contents, modes, link counts.
    pub fn assert_outside_untouched(&self) {
        assert_eq!(
            snapshot(&self.top, &self.root),
            self.before,
            "something changed outside the root"
        );
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Every object under `top` except `skip`, described by type, mode, link count and content.
fn snapshot(top: &Path, skip: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![top.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == skip {
                continue;
            }
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let desc = if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", meta.mode())
            } else if meta.file_type().is_symlink() {
                format!("symlink {:?}", fs_err::read_link(&path).unwrap())
            } else {
                format!(
                    "file {:o} nlink {} {:?}",
                    meta.mode(),
                    meta.nlink(),
                    fs_err::read(&path).unwrap()
                )
            };
            out.insert(path, desc);
        }
    }
    out
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
