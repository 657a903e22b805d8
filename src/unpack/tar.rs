//! Extracting one tar stream into a [`Root`], entry by entry, with a fixed buffer.
//!
//! The tar crate parses headers (ustar, GNU long names, PAX) and hands out entries; it never
//! writes anything (`unpack` is not used). Old GNU sparse entries are read by `stream.rs`
//! before the crate sees them (it would expand their holes into zeros). The tree's bounds
//! (`limits.rs`) are checked per entry and, from the header, per file before it is written. What each entry becomes is decided here and
//! done through `Root`. Metadata order per object: data, owner (chown clears setuid/setgid and
//! file capabilities), mode, xattrs and ACLs, times. Directories get their times (and a mode
//! without owner rwx, which would lock us out) after the whole stream, deepest first.

use std::collections::BTreeMap;
use std::io::Read;

use rustix::fs::Timespec;
use tracing::{debug, warn};

use super::acl;
use super::entry_meta::Meta;
use super::error::{UnpackError, Violation, show_bytes};
use super::hook::{EntryAction, EntryHook, UnpackAll};
use super::path::EntryPath;
use super::pax::{PaxMeta, PaxSparse};
use super::root::{Node, Root, Special};
use super::sparse::{self, CopyError};
use super::stream::{Stream, Tracker, is_valid_header, walk_extension_headers};

/// An old GNU sparse entry's map and real size, as `stream.rs` read them.
type OldGnuMap = Result<(Vec<(u64, u64)>, u64), CopyError>;
use super::{UnpackOptions, UnpackSummary};

/// Large enough that big files go through in few syscalls, small enough to stay in cache.
const BUF_SIZE: usize = 256 << 10;
/// Repeated warnings of one kind are logged this many times, then counted.
const WARN_REPEAT: u64 = 3;

/// Extracts a tar stream (already decompressed) into `root`, one entry at a time.
pub fn unpack_tar<R: Read>(
    reader: R,
    root: &Root,
    opts: &UnpackOptions,
) -> Result<UnpackSummary, UnpackError> {
    unpack_tar_with(reader, root, opts, &mut UnpackAll)
}

/// [`unpack_tar`] with a hook deciding, member by member, what is materialised.
pub(crate) fn unpack_tar_with<R: Read>(
    reader: R,
    root: &Root,
    opts: &UnpackOptions,
    hook: &mut dyn EntryHook,
) -> Result<UnpackSummary, UnpackError> {
    let tracker = Tracker::default();
    let mut stream = Stream::new(reader, &tracker);
    let mut ex = Extractor {
        root,
        opts,
        hook,
        tracker: &tracker,
        buf: vec![0; BUF_SIZE],
        deferred: Vec::new(),
        summary: UnpackSummary::default(),
        warnings: BTreeMap::new(),
        last: None,
        data_end: 0,
    };
    // Concatenated archives: the tar crate stops at the first zero block; whatever follows is
    // more zeros, another archive, or garbage.
    loop {
        let base = tracker.pos();
        let mut archive = tar::Archive::new(stream);
        ex.run(&mut archive, base)?;
        stream = archive.into_inner();
        if !ex.more_after_end(&mut stream)? {
            break;
        }
    }
    ex.finish()
}

struct Extractor<'a> {
    root: &'a Root,
    opts: &'a UnpackOptions,
    hook: &'a mut dyn EntryHook,
    tracker: &'a Tracker,
    buf: Vec<u8>,
    deferred: Vec<Deferred>,
    summary: UnpackSummary,
    warnings: BTreeMap<&'static str, u64>,
    /// The last entry seen, for messages about what follows it.
    last: Option<String>,
    /// Stream offset where the last entry's data ended.
    data_end: u64,
}

/// A directory's metadata applied after the whole stream (creating entries inside it would
/// change its mtime; a mode without owner rwx would stop us creating them).
struct Deferred {
    path: EntryPath,
    depth: usize,
    mode: Option<u32>,
    atime: Timespec,
    mtime: Timespec,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Special,
}

/// What an entry becomes; `None` from [`What::of`] for types that are skipped.
enum What {
    Dir,
    File,
    Symlink,
    Hardlink,
    Special(Special),
}

impl What {
    fn of(kind: tar::EntryType, raw_path: &[u8], size: u64) -> Option<What> {
        use tar::EntryType as T;
        Some(match kind {
            T::Directory => What::Dir,
            // Pre-POSIX archives mark directories with a trailing slash on a regular entry.
            T::Regular if raw_path.ends_with(b"/") && size == 0 => What::Dir,
            // Old GNU sparse entries reach the parser as regular ones (`stream.rs`); an `S`
            // without a GNU header is refused by the tar crate.
            T::Regular | T::Continuous => What::File,
            T::Symlink => What::Symlink,
            T::Link => What::Hardlink,
            T::Char => What::Special(Special::Char),
            T::Block => What::Special(Special::Block),
            T::Fifo => What::Special(Special::Fifo),
            _ => return None,
        })
    }
}

impl<'a> Extractor<'a> {
    fn run<R: Read>(
        &mut self,
        archive: &mut tar::Archive<Stream<'a, R>>,
        base: u64,
    ) -> Result<(), UnpackError> {
        let mut entries = archive.entries().map_err(|e| UnpackError::Read {
            after: self.after(),
            source: e,
        })?;
        loop {
            if crate::cleanup::stopping() {
                return Err(UnpackError::Read {
                    after: self.after(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::Interrupted,
                        "stopped: the process was asked to stop by a signal",
                    ),
                });
            }
            self.tracker.begin_capture();
            let next = entries.next();
            let (start, captured) = self.tracker.end_capture();
            let mut entry = match next {
                None => return Ok(()),
                Some(Err(_)) if self.hook.accepts_unpadded_end() && self.ended_in_padding() => {
                    debug!(after = %self.after(), "the stream ends without the padding of its last entry");
                    return Ok(());
                }
                Some(Err(e)) => return Err(self.stream_error(e)),
                Some(Ok(entry)) => entry,
            };
            let (pax, header_at) = walk_extension_headers(start, &captured);
            if header_at != base + entry.raw_header_position() {
                // Should not happen; if it does, PAX records could be attributed to the wrong
                // entry, so stop rather than guess.
                return Err(UnpackError::CorruptHeader {
                    offset: header_at,
                    after: self.after(),
                    reason: "cannot locate the extended headers of the next entry".into(),
                });
            }
            let old_gnu = match self.tracker.take_old_gnu_sparse() {
                Some(s) if s.header_at == header_at => Some(s.map),
                Some(_) => {
                    return Err(UnpackError::CorruptHeader {
                        offset: header_at,
                        after: self.after(),
                        reason: "cannot locate the header of a sparse entry".into(),
                    });
                }
                None => None,
            };
            self.entry(&mut entry, pax, old_gnu)?;
            self.drain(&mut entry)?;
        }
    }

    /// "after entry `x`" or "at the start of the archive", for stream-level messages.
    fn after(&self) -> String {
        match &self.last {
            Some(last) => format!("after entry `{last}`"),
            None => "at the start of the archive".into(),
        }
    }

    /// The input ended cleanly inside the zero padding that follows the last entry's data:
    /// that data is complete, only the padding (and the end-of-archive marker) are missing.
    fn ended_in_padding(&self) -> bool {
        let t = self.tracker;
        t.hit_eof()
            && !t.input_failed()
            && !t.overflowed()
            && self.last.is_some()
            && t.pos() >= self.data_end
            && t.pos() < self.data_end.next_multiple_of(512)
    }

    fn stream_error(&self, e: std::io::Error) -> UnpackError {
        let t = self.tracker;
        if t.overflowed() {
            return UnpackError::CorruptHeader {
                offset: t.pos(),
                after: self.after(),
                reason: e.to_string(),
            };
        }
        if t.input_failed() {
            return UnpackError::Read {
                after: self.after(),
                source: e,
            };
        }
        if t.hit_eof() {
            // Still inside the padding of the last entry's data: that entry is cut short.
            if let Some(last) = self
                .last
                .as_ref()
                .filter(|_| t.pos() < self.data_end.next_multiple_of(512))
            {
                return UnpackError::Truncated {
                    entry: last.clone(),
                };
            }
            return UnpackError::TruncatedHeader {
                after: self.after(),
            };
        }
        UnpackError::CorruptHeader {
            offset: t.pos().saturating_sub(512) / 512 * 512,
            after: self.after(),
            reason: e.to_string(),
        }
    }

    /// Reads what is left of an entry's data (skipped types, unused bytes) so the next header
    /// starts clean, and notices a stream that ends inside it.
    fn drain<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        loop {
            match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.copy_error(CopyError::Read(e), "")),
            }
        }
        if self.tracker.hit_eof() {
            return Err(self.copy_error(CopyError::Short, ""));
        }
        self.data_end = self.tracker.pos();
        Ok(())
    }

    /// After the tar crate saw an end-of-archive block: true when another archive follows.
    fn more_after_end<R: Read>(&self, stream: &mut Stream<'_, R>) -> Result<bool, UnpackError> {
        let mut block = [0u8; 512];
        loop {
            let at = self.tracker.pos();
            let n = stream
                .read_block(&mut block)
                .map_err(|e| UnpackError::Read {
                    after: self.after(),
                    source: e,
                })?;
            match block[..n].iter().position(|&b| b != 0) {
                // Zero padding (even a partial block) up to the end of the input is fine.
                None if n < block.len() => return Ok(false),
                None => {}
                Some(_) if n == block.len() && is_valid_header(&block) => {
                    stream.push_back(&block);
                    return Ok(true);
                }
                Some(i) => {
                    return Err(UnpackError::TrailingGarbage {
                        offset: at + i as u64,
                    });
                }
            }
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        pax: Option<&[u8]>,
        old_gnu: Option<OldGnuMap>,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        let crate_path = entry.path_bytes().into_owned();
        if kind.is_pax_global_extensions() {
            debug!(entry = %show_bytes(&crate_path), "ignoring a PAX global header");
            return Ok(());
        }
        self.last = Some(show_bytes(&crate_path));
        let pax = match pax {
            Some(data) => PaxMeta::parse(data)
                .map_err(|r| UnpackError::invalid(&show_bytes(&crate_path), r))?,
            None => PaxMeta::default(),
        };
        let is_regular = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        let mut sparse = pax.sparse.clone().filter(|_| is_regular);
        let raw_path = sparse
            .as_ref()
            .and_then(PaxSparse::name)
            .or(pax.path.as_deref())
            .unwrap_or(&crate_path)
            .to_vec();
        let shown = show_bytes(&raw_path);
        self.last = Some(shown.clone());
        if let Some(map) = old_gnu {
            // An old GNU `S` entry, handed to the parser as a regular file (`stream.rs`).
            let (map, real_size) = map.map_err(|e| self.copy_error(e, &shown))?;
            if sparse.is_some() {
                return Err(UnpackError::invalid(
                    &shown,
                    "both an old GNU sparse map and a PAX one",
                ));
            }
            sparse = Some(PaxSparse::InRecords {
                map,
                real_size,
                name: None,
            });
        }
        self.summary.entries += 1;
        crate::faultpoint::reached("unpack.entry");
        self.opts
            .limits
            .check_entry(self.summary.entries)
            .map_err(|reason| UnpackError::Limit {
                entry: shown.clone(),
                reason,
            })?;
        if let Some(size) = pax.size.filter(|&s| s != entry.size()) {
            return Err(UnpackError::invalid(
                &shown,
                format!(
                    "PAX size {size} disagrees with the parsed entry size {}",
                    entry.size()
                ),
            ));
        }
        let Some(what) = What::of(kind, &raw_path, entry.size()) else {
            // GNU volume labels and multi-volume continuations, Solaris ACL entries, ...: their
            // names are not paths, so they are not even parsed.
            self.warn("type", || {
                format!("skipping entry `{shown}` of unsupported type {kind:?}")
            });
            return Ok(());
        };
        let path = EntryPath::parse(&raw_path)?;
        if self.hook.entry(&path)? == EntryAction::Skip {
            return Ok(());
        }
        let meta = Meta::new(entry.header(), &pax, &shown)?;
        let link = pax
            .linkpath
            .clone()
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        match what {
            What::Dir => self.directory(&path, &meta),
            What::File => self.regular(entry, &path, &meta, sparse),
            What::Symlink => {
                let target = link
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| UnpackError::invalid(&shown, "symlink without a target"))?;
                if target.contains(&0) {
                    return Err(UnpackError::invalid(
                        &shown,
                        "symlink target contains a NUL byte",
                    ));
                }
                let node = self.root.create_symlink(&path, &target)?;
                self.apply(&node, &path, &meta, Kind::Symlink)
            }
            What::Hardlink => {
                let raw = link
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| UnpackError::invalid(&shown, "hardlink without a target"))?;
                let target = EntryPath::parse(&raw).map_err(|e| match e {
                    UnpackError::Unsafe { .. } => UnpackError::Unsafe {
                        entry: shown.clone(),
                        violation: Violation::HardlinkOutside {
                            target: show_bytes(&raw),
                        },
                    },
                    _ => UnpackError::invalid(&shown, "hardlink target contains a NUL byte"),
                })?;
                self.root.create_hardlink(&path, &target)
            }
            What::Special(special) => {
                let number = |n: std::io::Result<Option<u32>>| {
                    n.map(Option::unwrap_or_default).map_err(|e| {
                        UnpackError::invalid(&shown, format!("bad device number: {e}"))
                    })
                };
                // Fifos carry no device number (and writers leave the fields empty).
                let dev = match special {
                    Special::Fifo => 0,
                    _ => rustix::fs::makedev(
                        number(entry.header().device_major())?,
                        number(entry.header().device_minor())?,
                    ),
                };
                match self.root.create_special(&path, special, dev)? {
                    Some(node) => self.apply(&node, &path, &meta, Kind::Special),
                    None => {
                        self.warn("device", || {
                            format!("skipping device node `{shown}`: this process may not create device nodes")
                        });
                        Ok(())
                    }
                }
            }
        }
    }

    fn directory(&mut self, path: &EntryPath, meta: &Meta) -> Result<(), UnpackError> {
        let node = self.root.create_dir(path)?;
        if path.is_root() {
            self.summary.root_entry_seen = true;
        }
        self.apply(&node, path, meta, Kind::Dir)
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &EntryPath,
        meta: &Meta,
        sparse: Option<PaxSparse>,
    ) -> Result<(), UnpackError> {
        let shown = path.show();
        let size = entry.size();
        // A sparse map is read and checked before anything is created.
        let map = match &sparse {
            None => None,
            Some(PaxSparse::InRecords { map, real_size, .. }) => {
                sparse::check_map(map, *real_size, size)
                    .map_err(|r| UnpackError::invalid(&shown, r))?;
                Some((map.clone(), *real_size))
            }
            Some(PaxSparse::InData { real_size, .. }) => {
                let (map, map_len) =
                    sparse::read_data_map(entry, size).map_err(|e| self.copy_error(e, &shown))?;
                sparse::check_map(&map, *real_size, size - map_len)
                    .map_err(|r| UnpackError::invalid(&shown, r))?;
                Some((map, *real_size))
            }
        };
        // Checked from the header, before anything is written: a bomb stops at once.
        let real_size = map.as_ref().map_or(size, |(_, real_size)| *real_size);
        self.opts
            .limits
            .check_bytes(self.summary.bytes, real_size)
            .map_err(|reason| UnpackError::Limit {
                entry: shown.clone(),
                reason,
            })?;
        let file = self.root.create_file(path)?;
        let buf = &mut self.buf;
        let result = match map {
            Some((map, real_size)) => sparse::copy_segments(entry, &file, buf, &map, real_size),
            None => sparse::copy_plain(entry, &file, buf, size),
        };
        result.map_err(|e| self.copy_error(e, &shown))?;
        self.summary.bytes += real_size;
        self.apply(&Node::from_file(file), path, meta, Kind::File)
    }

    fn copy_error(&self, e: CopyError, entry: &str) -> UnpackError {
        let entry = if entry.is_empty() {
            self.last.clone().unwrap_or_default()
        } else {
            entry.to_owned()
        };
        match e {
            CopyError::Short => UnpackError::Truncated { entry },
            CopyError::Read(_) if self.tracker.hit_eof() => UnpackError::Truncated { entry },
            CopyError::Read(source) => UnpackError::Read {
                after: format!("in entry `{entry}`"),
                source,
            },
            CopyError::Write(source) => UnpackError::io(&entry, "writing the file", source),
            CopyError::Map(reason) => UnpackError::invalid(&entry, reason),
        }
    }

    /// Owner, mode, xattrs/ACLs and times, in the order that keeps all of them.
    fn apply(
        &mut self,
        node: &Node,
        path: &EntryPath,
        meta: &Meta,
        kind: Kind,
    ) -> Result<(), UnpackError> {
        let shown = path.show();
        if self.opts.preserve_owner {
            node.chown(meta.uid, meta.gid).map_err(|e| {
                UnpackError::io(
                    &shown,
                    format!("changing the owner to {}:{}", meta.uid, meta.gid),
                    e,
                )
            })?;
        }
        let mut deferred_mode = None;
        match kind {
            Kind::Symlink => {}
            Kind::Dir if meta.mode & 0o700 != 0o700 => deferred_mode = Some(meta.mode),
            _ => node
                .chmod(meta.mode)
                .map_err(|e| UnpackError::io(&shown, format!("setting mode {:o}", meta.mode), e))?,
        }
        self.set_xattrs(node, &shown, meta, kind);
        if kind == Kind::Dir {
            self.deferred.push(Deferred {
                path: path.clone(),
                depth: path.depth(),
                mode: deferred_mode,
                atime: meta.atime,
                mtime: meta.mtime,
            });
            return Ok(());
        }
        node.set_times(meta.atime, meta.mtime)
            .map_err(|e| UnpackError::io(&shown, "setting times", e))
    }

    /// Xattrs and ACLs. Failures are warnings, as with GNU tar: the filesystem may not support
    /// them, or the process may lack the privilege (security.capability, trusted.*).
    fn set_xattrs(&mut self, node: &Node, shown: &str, meta: &Meta, kind: Kind) {
        const ACCESS: &[u8] = b"system.posix_acl_access";
        const DEFAULT: &[u8] = b"system.posix_acl_default";
        for (name, value) in &meta.xattrs {
            if name == b"security.selinux" && !self.opts.keep_selinux {
                continue;
            }
            if let Err(e) = node.set_xattr(name, value) {
                let name = show_bytes(name);
                self.warn("xattr", || {
                    format!("entry `{shown}`: cannot set xattr `{name}`: {e}")
                });
            }
        }
        // GNU tar stores ACLs both as text and (with --xattrs) as the binary xattr, which has
        // exact numeric ids: the text is only used when the binary form is absent.
        let acls = [(&meta.acl_access, ACCESS), (&meta.acl_default, DEFAULT)];
        for (text, xattr) in acls {
            let Some(text) = text else { continue };
            if meta.xattrs.iter().any(|(n, _)| n == xattr)
                || (xattr == DEFAULT && kind != Kind::Dir)
            {
                continue;
            }
            let result = acl::text_to_xattr(text)
                .map_err(|e| e.to_string())
                .and_then(|value| node.set_xattr(xattr, &value).map_err(|e| e.to_string()));
            if let Err(e) = result {
                self.warn("acl", || {
                    format!("entry `{shown}`: cannot restore its ACL: {e}")
                });
            }
        }
    }

    fn warn(&mut self, kind: &'static str, message: impl FnOnce() -> String) {
        self.summary.warnings += 1;
        let count = self.warnings.entry(kind).or_default();
        *count += 1;
        if *count <= WARN_REPEAT {
            warn!("{}", message());
        }
    }

    /// Applies the deferred directory metadata, deepest first.
    fn finish(mut self) -> Result<UnpackSummary, UnpackError> {
        let mut deferred = std::mem::take(&mut self.deferred);
        deferred.sort_by_key(|d| std::cmp::Reverse(d.depth));
        for dir in deferred {
            let Some(node) = self.root.reopen_dir(&dir.path)? else {
                debug!(entry = %dir.path.show(), "directory replaced later in the archive");
                continue;
            };
            let shown = dir.path.show();
            if let Some(mode) = dir.mode {
                node.chmod(mode)
                    .map_err(|e| UnpackError::io(&shown, format!("setting mode {mode:o}"), e))?;
            }
            node.set_times(dir.atime, dir.mtime)
                .map_err(|e| UnpackError::io(&shown, "setting times", e))?;
        }
        for (kind, count) in &self.warnings {
            if *count > WARN_REPEAT {
                warn!(
                    "{} more warnings of kind `{kind}` not shown",
                    count - WARN_REPEAT
                );
            }
        }
        Ok(self.summary)
    }
}
