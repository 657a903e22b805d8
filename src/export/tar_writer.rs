//! A reproducible tar of a finished rootfs (`sandbox build --output tar:DIR`): the same tree
//! (and the same clamp time) always gives the same bytes.
//!
//! - Entries in bytewise-sorted order, depth first, the top directory as `./` (its mode and
//!   owner), every other path relative without `./` (the `tar` crate drops it).
//! - GNU headers with numeric owners only (no user or group names), no atime or ctime; long
//!   names and link targets as GNU long-name entries (the `tar` crate writes them), ids too
//!   large for octal in GNU base-256.
//! - Extended attributes (security.capability, ACLs, …) as `SCHILY.xattr.*` records in a PAX
//!   header before their entry, names sorted; the only PAX the archive holds.
//! - mtimes clamped to `clamp_mtime` when given (the build's SOURCE_DATE_EPOCH): files the
//!   build wrote carry the time of the build, so without a clamp two builds differ there.
//! - Hard links (same device and inode) as link entries to the first path; symlinks, devices
//!   and FIFOs kept. Sockets cannot be archived and are left out with a warning.
//!
//! Symlinks are never followed: every path is read with `symlink_metadata`/`read_link`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tar::{Builder, EntryType, Header};

use crate::export::delta::Delta;

/// The header's mtime: negative times (before 1970) as 0, later than `clamp` as `clamp`.
pub fn clamped_mtime(mtime: i64, clamp: Option<u64>) -> u64 {
    let t = u64::try_from(mtime).unwrap_or(0);
    match clamp {
        Some(c) => t.min(c),
        None => t,
    }
}

/// A PAX extended header's body: `<len> <key>=<value>\n` records, where `<len>` counts the
/// whole record including its own digits.
pub fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        // " " + key + "=" + value + "\n"
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Writes `root` as a tar stream into `out` and returns `out` (not flushed or finished beyond
/// the tar trailer; the caller finishes its compressor).
pub fn write_tree<W: Write>(root: &Path, out: W, clamp_mtime: Option<u64>) -> Result<W> {
    write_selected(root, out, clamp_mtime, None)
}

/// Writes only what `delta` holds of `root` as an OCI layer: its paths in the same order and
/// form as [`write_tree`], and each removed name as an empty `DIR/.wh.NAME` entry, placed
/// before the directory's other entries.
pub fn write_delta<W: Write>(
    root: &Path,
    out: W,
    clamp_mtime: Option<u64>,
    delta: &Delta,
) -> Result<W> {
    write_selected(root, out, clamp_mtime, Some(delta))
}

fn write_selected<W: Write>(
    root: &Path,
    out: W,
    clamp_mtime: Option<u64>,
    delta: Option<&Delta>,
) -> Result<W> {
    let mut w = TreeWriter {
        builder: Builder::new(out),
        clamp: clamp_mtime,
        links: HashMap::new(),
        delta,
    };
    let meta = fs_err::symlink_metadata(root)?;
    if w.includes(Path::new("")) {
        w.entry(root, Path::new("./"), &meta)?;
    }
    w.dir(root, Path::new(""))?;
    w.builder
        .into_inner()
        .with_context(|| format!("finishing the tar of {}", root.display()))
}

struct TreeWriter<'a, W: Write> {
    builder: Builder<W>,
    clamp: Option<u64>,
    /// (device, inode) of files with more than one link → their first archive path.
    links: HashMap<(u64, u64), PathBuf>,
    /// Only these paths, and these whiteouts, when set.
    delta: Option<&'a Delta>,
}

impl<W: Write> TreeWriter<'_, W> {
    fn includes(&self, rel: &Path) -> bool {
        self.delta.is_none_or(|d| d.include.contains(rel))
    }

    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        if let Some(delta) = self.delta {
            if !delta.reaches(rel) {
                return Ok(());
            }
            for name in delta.whiteouts.get(rel).into_iter().flatten() {
                self.whiteout(&Path::new(".").join(rel), name)?;
            }
        }
        let mut names: Vec<OsString> = fs_err::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let rel = rel.join(&name);
            if self.delta.is_some_and(|d| !d.reaches(&rel)) {
                continue;
            }
            let meta = fs_err::symlink_metadata(&path)?;
            if self.includes(&rel) {
                self.entry(&path, &Path::new(".").join(&rel), &meta)?;
            }
            if meta.file_type().is_dir() {
                self.dir(&path, &rel)?;
            }
        }
        Ok(())
    }

    /// An empty `DIR/.wh.NAME`: NAME of the lower layers is removed.
    fn whiteout(&mut self, dir: &Path, name: &OsStr) -> Result<()> {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.clamp.unwrap_or(0));
        h.set_size(0);
        let mut wh = OsString::from(".wh.");
        wh.push(name);
        let path = dir.join(wh);
        self.builder
            .append_data(&mut h, &path, io::empty())
            .with_context(|| format!("archiving the whiteout {}", path.display()))
    }

    fn entry(&mut self, path: &Path, name: &Path, meta: &fs::Metadata) -> Result<()> {
        let ft = meta.file_type();
        if ft.is_socket() {
            tracing::warn!("{}: a socket cannot be archived; left out", path.display());
            return Ok(());
        }
        let mut h = Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mtime = clamped_mtime(meta.mtime(), self.clamp);
        h.set_mtime(mtime);
        h.set_size(0);
        let what = || format!("archiving {}", path.display());
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                self.xattrs(path, name, mtime)?;
                h.set_entry_type(EntryType::Link);
                return self
                    .builder
                    .append_link(&mut h, name, &first)
                    .with_context(what);
            }
            self.links.insert(key, name.to_path_buf());
        }
        self.xattrs(path, name, mtime)?;
        if ft.is_symlink() {
            let target = fs_err::read_link(path)?;
            h.set_entry_type(EntryType::Symlink);
            self.builder
                .append_link(&mut h, name, &target)
                .with_context(what)
        } else if ft.is_file() {
            let file = fs_err::File::open(path).map(fs_err::File::into_file)?;
            h.set_entry_type(EntryType::Regular);
            h.set_size(meta.len());
            self.builder
                .append_data(&mut h, name, file)
                .with_context(what)
        } else {
            let kind = if ft.is_dir() {
                EntryType::Directory
            } else if ft.is_char_device() || ft.is_block_device() {
                let rdev = meta.rdev();
                h.set_device_major(rustix::fs::major(rdev))
                    .and_then(|()| h.set_device_minor(rustix::fs::minor(rdev)))
                    .with_context(what)?;
                if ft.is_char_device() {
                    EntryType::Char
                } else {
                    EntryType::Block
                }
            } else {
                EntryType::Fifo
            };
            h.set_entry_type(kind);
            self.builder
                .append_data(&mut h, name, io::empty())
                .with_context(what)
        }
    }

    /// The PAX header with `path`'s extended attributes, when it has any.
    fn xattrs(&mut self, path: &Path, name: &Path, mtime: u64) -> Result<()> {
        let attrs = read_xattrs(path)?;
        if attrs.is_empty() {
            return Ok(());
        }
        let records: Vec<(Vec<u8>, Vec<u8>)> = attrs
            .into_iter()
            .map(|(k, v)| ([b"SCHILY.xattr.".as_slice(), &k].concat(), v))
            .collect();
        let body = pax_records(&records);
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_size(body.len() as u64);
        // GNU tar's `%d/PaxHeaders/%f`, kept within the 100-byte name field.
        let base = name.file_name().map(OsStr::as_bytes).unwrap_or(b".");
        let mut pax_name = b"./PaxHeaders/".to_vec();
        pax_name.extend_from_slice(&base[..base.len().min(80)]);
        self.builder
            .append_data(&mut h, OsStr::from_bytes(&pax_name), body.as_slice())
            .with_context(|| format!("archiving the extended attributes of {}", path.display()))
    }
}

/// `path`'s extended attributes (not following a symlink), sorted by name.
fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let what = || format!("reading the extended attributes of {}", path.display());
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            // A filesystem without xattrs has none to keep.
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(io::Error::from(e)).with_context(what),
        }
    };
    let mut keys: Vec<Vec<u8>> = names[..n]
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let cname = std::ffi::CString::new(key.clone()).with_context(what)?;
        let mut value = vec![0u8; 1024];
        let n = loop {
            match rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value[..]) {
                Ok(n) => break n,
                Err(rustix::io::Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(e) => {
                    return Err(io::Error::from(e)).with_context(|| {
                        format!(
                            "reading the extended attribute {} of {}",
                            String::from_utf8_lossy(&key),
                            path.display()
                        )
                    });
                }
            }
        };
        value.truncate(n);
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        let body = pax_records(&[(b"a".to_vec(), b"b".to_vec())]);
        assert_eq!(body, b"6 a=b\n");
        // 9 bytes of key/value + 3 → 12, whose 2 digits make 14.
        let body = pax_records(&[(b"key".to_vec(), b"value1".to_vec())]);
        assert_eq!(body, b"14 key=value1\n");
        // At the boundary the length's own digit count changes: rest 97 → 99, rest 98 → 101.
        for rest in [96usize, 97, 98, 99] {
            let value = vec![b'v'; rest - 4];
            let body = pax_records(&[(b"k".to_vec(), value)]);
            let text = String::from_utf8(body.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), body.len(), "{text}");
        }
    }

    #[test]
    fn mtimes_clamp_only_when_asked() {
        assert_eq!(clamped_mtime(2000, Some(1000)), 1000);
        assert_eq!(clamped_mtime(500, Some(1000)), 500);
        assert_eq!(clamped_mtime(2000, None), 2000);
        assert_eq!(clamped_mtime(-5, None), 0);
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Created out of order: the archive must not follow creation or readdir order.
        for name in ["zeta", "Alpha", "beta/inner", "beta/a"] {
            let p = d.join(name);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(&p, name.as_bytes()).unwrap();
        }
        fs_err::hard_link(d.join("zeta"), d.join("zz-link")).unwrap();
        std::os::unix::fs::symlink("beta/a", d.join("sym")).unwrap();
        let one = write_tree(d, Vec::new(), Some(1)).unwrap();
        let two = write_tree(d, Vec::new(), Some(1)).unwrap();
        assert_eq!(one, two);
        let mut archive = tar::Archive::new(one.as_slice());
        let entries: Vec<(String, EntryType, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.entry_type(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "./",
                "Alpha",
                "beta",
                "beta/a",
                "beta/inner",
                "sym",
                "zeta",
                "zz-link"
            ]
        );
        assert!(entries.iter().all(|e| e.2 <= 1), "{entries:?}");
        assert_eq!(entries[5].1, EntryType::Symlink);
        assert_eq!(entries[7].1, EntryType::Link);
    }

    #[test]
    fn extended_attributes_go_into_a_pax_header_before_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs_err::write(&file, b"x").unwrap();
        let set = |name: &std::ffi::CStr, value: &[u8]| {
            rustix::fs::lsetxattr(&file, name, value, rustix::fs::XattrFlags::empty())
        };
        if let Err(e) = set(c"user.b", b"2") {
            // A tmpfs without user xattrs (older kernels) cannot run this test.
            assert_eq!(e, rustix::io::Errno::NOTSUP, "{e}");
            return;
        }
        set(c"user.a", b"1").unwrap();
        let bytes = write_tree(dir.path(), Vec::new(), None).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            if let Some(pax) = e.pax_extensions().unwrap() {
                for ext in pax {
                    let ext = ext.unwrap();
                    seen.push((
                        path.clone(),
                        ext.key().unwrap().to_string(),
                        ext.value_bytes().to_vec(),
                    ));
                }
            }
        }
        assert_eq!(
            seen,
            [
                (
                    "f".to_string(),
                    "SCHILY.xattr.user.a".to_string(),
                    b"1".to_vec()
                ),
                (
                    "f".to_string(),
                    "SCHILY.xattr.user.b".to_string(),
                    b"2".to_vec()
                ),
            ]
        );
    }

    /// GNU tar, an independent reader: long names, long link targets and xattrs come back.
    #[test]
    fn gnu_tar_extracts_long_names_and_xattrs() {
        let src = tempfile::tempdir().unwrap();
        let long = format!("{}/{}", "d".repeat(90), "f".repeat(120));
        let file = src.path().join(&long);
        fs_err::create_dir_all(file.parent().unwrap()).unwrap();
        fs_err::write(&file, b"long\n").unwrap();
        std::os::unix::fs::symlink(&long, src.path().join("link")).unwrap();
        let xattrs = rustix::fs::lsetxattr(
            &file,
            c"user.note",
            b"kept",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        let archive = src.path().with_extension("tar");
        fs_err::write(
            &archive,
            write_tree(src.path(), Vec::new(), Some(1)).unwrap(),
        )
        .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(dest.path())
            .status()
            .unwrap();
        fs_err::remove_file(&archive).unwrap();
        assert!(status.success(), "GNU tar failed: {status}");
        let out = dest.path().join(&long);
        assert_eq!(fs_err::read(&out).unwrap(), b"long\n");
        assert_eq!(fs_err::symlink_metadata(&out).unwrap().mtime(), 1);
        assert_eq!(
            fs_err::read_link(dest.path().join("link")).unwrap(),
            PathBuf::from(&long)
        );
        if xattrs {
            let mut value = [0u8; 16];
            let n = rustix::fs::lgetxattr(&out, c"user.note", &mut value[..]).unwrap();
            assert_eq!(&value[..n], b"kept");
        }
    }
}
