//! OCI image layers on top of the tar unpacker: whiteouts, opaque directories, and absolute
//! symlinks resolved inside the root. Everything the unpacker guarantees for tarballs holds
//! for each layer; this module adds the layer rules of the OCI image spec (`layer.md`).
//!
//! # Rules
//!
//! - `DIR/.wh.NAME` removes `DIR/NAME` (a file, a symlink — not what it points to — or a whole
//!   tree) as the lower layers left it. `DIR/.wh..wh..opq` empties `DIR` of lower content and
//!   keeps the directory. The whiteout files themselves are never created.
//! - **Whiteouts apply to lower layers only**, wherever they sit in the layer's stream (the
//!   spec does not order them; umoci sorts names, and `-`, `+` and digits sort before `.wh.`).
//!   So every path the layer materialises is remembered, and a whiteout or opaque marker that
//!   comes after some of the layer's own entries removes everything below its target except
//!   those entries (and the directories leading to them). This is what containerd does for
//!   opaque directories; we do it for plain whiteouts too, so the result never depends on
//!   the order of the stream. Memory: one path per entry of the current layer.
//! - **Whiteouts never leave their directory.** The name after `.wh.` is one path component
//!   by construction (the path was split at `/` and normalised, and `../.wh.x` is refused by
//!   normalisation as for any entry); `.wh..` and `.wh...` would name the directory itself or
//!   its parent and are a [`Violation::WhiteoutEscape`]. The removal resolves parents exactly
//!   like an entry does, so a whiteout below a symlink that leads out of the root aborts with
//!   [`Violation::SymlinkParent`].
//! - **A bare `.wh.` is an error.** It names nothing, so it is not a whiteout; but Docker and
//!   containerd read it as "remove `DIR/`", i.e. the directory that holds it (the whole root
//!   for `/.wh.`). Materialising it as a plain file would silently produce a different rootfs
//!   than those tools, and honouring it would delete a directory the layer never named: the
//!   layer is refused instead, with a message naming the entry.
//! - A path that goes *through* a whiteout (`.wh.x/file`) is refused: materialising it would
//!   create the reserved name. AUFS metadata (`.wh..wh.plnk/`, `.wh..wh.aufs`, written by
//!   ancient Docker) is skipped, as Docker does, and never created.
//! - **Absolute symlinks resolve inside the root** while a layer is applied (see
//!   [`Root::set_absolute_symlinks_in_root`]): layers are diffs meant to be read as the
//!   container sees its own filesystem, and Docker (a chroot), containerd and umoci all
//!   resolve `var/run -> /run` that way; tools that write layers from file lists (ko, Bazel,
//!   apko) do write through such links. Resolution still never leaves the root.
//! - Hardlinks may name files of lower layers; they resolve like any entry.
//! - A layer may end right after its last entry's data, without padding or end-of-archive
//!   marker: umoci writes layers that way and Go's archive/tar (Docker, containerd) reads
//!   them. Its exact bytes are held to the image's `diff_id`, so this cannot hide damage;
//!   a stream that ends inside an entry's data is still truncated.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::ops::Bound;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tracing::debug;

use super::error::{UnpackError, Violation, show_bytes};
use super::hook::{EntryAction, EntryHook};
use super::path::EntryPath;
use super::tar::unpack_tar_with;
use super::{Root, UnpackOptions, UnpackSummary};

/// Names starting with this hide the rest of the name in lower layers.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// This name empties its directory of lower content.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`, `.wh..wh.orph`).
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";

/// What a normalised member path of a layer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerPath<'a> {
    /// An ordinary entry: materialise it.
    Plain,
    /// Remove `dir/name` of the lower layers.
    Whiteout { dir: &'a [u8], name: &'a [u8] },
    /// Empty `dir` of the lower layers' content.
    Opaque { dir: &'a [u8] },
    /// AUFS metadata: skip.
    AufsMeta,
}

/// Why a whiteout name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhiteoutNameError {
    /// `.wh.` alone.
    Bare,
    /// `.wh..` or `.wh...`: the directory itself or its parent.
    NotAnEntry { name: Vec<u8> },
    /// A whiteout used as a directory (`.wh.x/file`).
    Inside { component: Vec<u8> },
}

/// Classifies a normalised path (components joined by `/`, no `.`, `..` or empty ones). Pure.
pub fn classify(norm: &[u8]) -> Result<LayerPath<'_>, WhiteoutNameError> {
    let (dir, last) = match norm.iter().rposition(|&b| b == b'/') {
        Some(i) => (&norm[..i], &norm[i + 1..]),
        None => (&norm[..0], norm),
    };
    for component in dir.split(|&b| b == b'/') {
        if component.starts_with(AUFS_META_PREFIX) {
            return Ok(LayerPath::AufsMeta);
        }
        if component.starts_with(WHITEOUT_PREFIX) {
            return Err(WhiteoutNameError::Inside {
                component: component.to_vec(),
            });
        }
    }
    if last == OPAQUE_WHITEOUT {
        return Ok(LayerPath::Opaque { dir });
    }
    if last.starts_with(AUFS_META_PREFIX) {
        return Ok(LayerPath::AufsMeta);
    }
    let Some(name) = last.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(LayerPath::Plain);
    };
    match name {
        b"" => Err(WhiteoutNameError::Bare),
        b"." | b".." => Err(WhiteoutNameError::NotAnEntry {
            name: name.to_vec(),
        }),
        _ => Ok(LayerPath::Whiteout { dir, name }),
    }
}

/// What applying one layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSummary {
    pub unpack: UnpackSummary,
    /// `.wh.NAME` entries honoured (whether or not NAME existed below).
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries honoured.
    pub opaque_dirs: u64,
    /// AUFS metadata entries skipped.
    pub aufs_skipped: u64,
}

/// Applies one layer — a decompressed tar stream — on top of what `root` already holds (the
/// lower layers), with the rules in the module documentation. Absolute symlinks resolve
/// inside the root while it runs; the root's previous setting is restored afterwards.
pub fn unpack_layer<R: Read>(
    reader: R,
    root: &Root,
    opts: &UnpackOptions,
) -> Result<LayerSummary, UnpackError> {
    let previous = root.absolute_symlinks_in_root();
    root.set_absolute_symlinks_in_root(true);
    let mut hook = Whiteouts {
        root,
        written: BTreeSet::new(),
        summary: LayerSummary::default(),
    };
    let result = unpack_tar_with(reader, root, opts, &mut hook);
    root.set_absolute_symlinks_in_root(previous);
    let mut summary = hook.summary;
    summary.unpack = result?;
    Ok(summary)
}

struct Whiteouts<'r> {
    root: &'r Root,
    /// Normalised paths this layer has materialised so far.
    written: BTreeSet<Vec<u8>>,
    summary: LayerSummary,
}

impl EntryHook for Whiteouts<'_> {
    fn entry(&mut self, path: &EntryPath) -> Result<EntryAction, UnpackError> {
        let norm = path.normalized();
        let class = classify(norm).map_err(|e| name_error(path, e))?;
        match class {
            LayerPath::Plain => {
                self.written.insert(norm.to_vec());
                return Ok(EntryAction::Unpack);
            }
            LayerPath::AufsMeta => {
                debug!(entry = %path.show(), "skipping AUFS metadata");
                self.summary.aufs_skipped += 1;
            }
            LayerPath::Whiteout { dir, name } => {
                let target = join(dir, name);
                let result = if self.has_at_or_below(&target) {
                    self.clear_lower(&target)
                } else {
                    self.root.remove_all(as_path(&target))
                };
                result.map_err(|e| relabel(e, path))?;
                self.summary.whiteouts += 1;
            }
            LayerPath::Opaque { dir } => {
                self.clear_lower(dir).map_err(|e| relabel(e, path))?;
                self.summary.opaque_dirs += 1;
            }
        }
        Ok(EntryAction::Skip)
    }

    fn accepts_unpadded_end(&self) -> bool {
        true
    }
}

impl Whiteouts<'_> {
    /// True when this layer wrote something strictly below `dir`.
    fn has_below(&self, dir: &[u8]) -> bool {
        if dir.is_empty() {
            let after_root = (Bound::Excluded(&b""[..]), Bound::Unbounded);
            return self.written.range::<[u8], _>(after_root).next().is_some();
        }
        let prefix = join(dir, b"");
        self.written
            .range::<[u8], _>((Bound::Included(prefix.as_slice()), Bound::Unbounded))
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }

    fn has_at_or_below(&self, path: &[u8]) -> bool {
        self.written.contains(path) || self.has_below(path)
    }

    /// Removes what lower layers left below `top`, keeping what this layer wrote and the
    /// directories leading to it. Iterative: a hostile layer can nest paths far deeper than
    /// the stack would allow recursion. Something other than a directory at `top` is lower
    /// content in the way of the directory this layer means (unless the layer wrote it).
    fn clear_lower(&self, top: &[u8]) -> Result<(), UnpackError> {
        let mut pending = vec![top.to_vec()];
        while let Some(dir) = pending.pop() {
            let entry = EntryPath::parse(&dir)?;
            let Some(children) = self.root.list_dir(&entry)? else {
                if dir == top && !dir.is_empty() && !self.written.contains(&dir) {
                    self.root.remove_all(as_path(&dir))?;
                }
                continue;
            };
            if !self.has_below(&dir) {
                self.root.clear_dir(as_path(&dir))?;
                continue;
            }
            for child in children {
                let path = join(&dir, &child.name);
                if !self.has_at_or_below(&path) {
                    self.root.remove_all(as_path(&path))?;
                } else if child.is_dir {
                    pending.push(path);
                }
            }
        }
        Ok(())
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    out.extend_from_slice(dir);
    if !dir.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn name_error(path: &EntryPath, e: WhiteoutNameError) -> UnpackError {
    match e {
        WhiteoutNameError::Bare => UnpackError::invalid(
            &path.show(),
            "a bare `.wh.` names nothing: it is neither a whiteout nor a name a layer may use",
        ),
        WhiteoutNameError::NotAnEntry { name } => UnpackError::Unsafe {
            entry: path.show(),
            violation: Violation::WhiteoutEscape {
                name: format!(".wh.{}", show_bytes(&name)),
            },
        },
        WhiteoutNameError::Inside { component } => UnpackError::Unsafe {
            entry: path.show(),
            violation: Violation::WhiteoutEscape {
                name: show_bytes(&component),
            },
        },
    }
}

/// Errors of a removal name the whiteout entry that caused it, not the removed path.
fn relabel(e: UnpackError, whiteout: &EntryPath) -> UnpackError {
    let shown = whiteout.show();
    match e {
        UnpackError::Unsafe { violation, .. } => UnpackError::Unsafe {
            entry: shown,
            violation,
        },
        UnpackError::Io { action, source, .. } => UnpackError::Io {
            entry: shown,
            action,
            source,
        },
        UnpackError::Invalid { reason, .. } => UnpackError::Invalid {
            entry: shown,
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        use LayerPath::*;
        let ok: &[(&[u8], LayerPath<'_>)] = &[
            (b"etc/passwd", Plain),
            (b"", Plain),
            (b"a/.whiteout", Plain),
            (b"a/wh.x", Plain),
            (b"a/x.wh.y", Plain),
            (
                b"etc/.wh.passwd",
                Whiteout {
                    dir: b"etc",
                    name: b"passwd",
                },
            ),
            (
                b".wh.etc",
                Whiteout {
                    dir: b"",
                    name: b"etc",
                },
            ),
            (
                b"a/.wh....",
                Whiteout {
                    dir: b"a",
                    name: b"...",
                },
            ),
            (b"usr/share/.wh..wh..opq", Opaque { dir: b"usr/share" }),
            (b".wh..wh..opq", Opaque { dir: b"" }),
            (b".wh..wh.plnk", AufsMeta),
            (b".wh..wh.plnk/123.456", AufsMeta),
            (b"a/.wh..wh.aufs", AufsMeta),
        ];
        for (path, want) in ok {
            assert_eq!(classify(path).as_ref(), Ok(want), "{}", show_bytes(path));
        }
        let bad: &[(&[u8], WhiteoutNameError)] = &[
            (b"a/.wh.", WhiteoutNameError::Bare),
            (b".wh.", WhiteoutNameError::Bare),
            (
                b"a/.wh..",
                WhiteoutNameError::NotAnEntry {
                    name: b".".to_vec(),
                },
            ),
            (
                b"a/.wh...",
                WhiteoutNameError::NotAnEntry {
                    name: b"..".to_vec(),
                },
            ),
            (
                b"a/.wh.x/file",
                WhiteoutNameError::Inside {
                    component: b".wh.x".to_vec(),
                },
            ),
            (
                b".wh.../x",
                WhiteoutNameError::Inside {
                    component: b".wh...".to_vec(),
                },
            ),
        ];
        for (path, want) in bad {
            assert_eq!(classify(path), Err(want.clone()), "{}", show_bytes(path));
        }
    }
}
