//! Errors of the unpacker. Every message names the archive entry (or the byte offset in the
//! stream) and says why; the underlying `io::Error`, if any, is the `source` of the chain.

use std::io;
use std::path::PathBuf;

/// Why extracting an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive tried to reach outside the root. This is the safety boundary of the project:
    /// callers must never retry or downgrade it.
    #[error("entry `{entry}`: {violation}")]
    Unsafe { entry: String, violation: Violation },
    /// A filesystem operation inside the root failed (`action` names the operation and the path).
    #[error("entry `{entry}`: {action}")]
    Io {
        entry: String,
        action: String,
        #[source]
        source: io::Error,
    },
    /// The entry itself is malformed or cannot be represented (bad PAX record, sparse map, ACL,
    /// a parent that is a regular file, ...).
    #[error("entry `{entry}`: {reason}")]
    Invalid { entry: String, reason: String },
    /// The tree would grow past a bound of [`super::limits::TreeLimits`] (a decompression
    /// bomb, or an image bigger than the user allows); `reason` names the bound and its
    /// variable.
    #[error("entry `{entry}`: {reason}")]
    Limit { entry: String, reason: String },
    /// The stream ended inside an entry's data.
    #[error("tar archive truncated in entry `{entry}`")]
    Truncated { entry: String },
    /// The stream ended inside a header (`after` says where: "after entry `x`").
    #[error("tar archive truncated in a header {after}")]
    TruncatedHeader { after: String },
    /// Non-zero bytes after the end-of-archive marker that are not the start of another archive.
    #[error("trailing garbage after the end of the tar archive at byte {offset}")]
    TrailingGarbage { offset: u64 },
    /// A header inside the archive does not parse (bad checksum, bad number, ...).
    #[error("corrupt tar header at byte {offset} {after}: {reason}")]
    CorruptHeader {
        offset: u64,
        after: String,
        reason: String,
    },
    /// Reading the (decompressed) stream failed: the decompressor or the network, not tar.
    #[error("reading the tar stream {after}")]
    Read {
        after: String,
        #[source]
        source: io::Error,
    },
    /// The root directory itself could not be opened.
    #[error("opening the root directory `{}`", path.display())]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the archive tried to leave the root (as opposed to being damaged or the disk
    /// failing). Callers may want to report these differently; they must never ignore them.
    pub fn is_safety_violation(&self) -> bool {
        matches!(self, UnpackError::Unsafe { .. })
    }

    pub(crate) fn io(entry: &str, action: impl Into<String>, source: impl Into<io::Error>) -> Self {
        UnpackError::Io {
            entry: entry.to_owned(),
            action: action.into(),
            source: source.into(),
        }
    }

    pub(crate) fn invalid(entry: &str, reason: impl Into<String>) -> Self {
        UnpackError::Invalid {
            entry: entry.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The ways an archive can try to leave its root. Strings are shown with [`show_bytes`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The entry path climbs above the root with `..`.
    #[error("`..` leaves the root")]
    DotDot,
    /// A directory on the way to the entry is a symlink that points outside the root, either
    /// absolutely or by climbing with `..`.
    #[error("parent `{link}` is a symlink pointing outside the root (`{target}`)")]
    SymlinkParent { link: String, target: String },
    /// A hardlink whose target path climbs above the root with `..`.
    #[error("hardlinks to `{target}`, which is outside the root")]
    HardlinkOutside { target: String },
    /// A hardlink whose target is reached through a symlink pointing outside the root.
    #[error(
        "hardlinks to `{target}`, which is outside the root: `{link}` is a symlink to `{link_target}`"
    )]
    HardlinkViaSymlink {
        target: String,
        link: String,
        link_target: String,
    },
    /// A whiteout or removal would delete the root itself.
    #[error("refusing to remove the root directory itself")]
    RemoveRoot,
    /// An OCI whiteout that names something other than an entry of its own directory
    /// (`.wh..`, `.wh...`), or a path that goes through a whiteout as if it were a directory.
    #[error("whiteout `{name}` does not name an entry of its own directory")]
    WhiteoutEscape { name: String },
}

/// Renders archive bytes (paths, link targets) for messages: valid UTF-8 as is, control
/// characters and invalid bytes escaped, so a hostile name cannot forge log lines.
pub fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_bytes_escapes_invalid_utf8_and_control_characters() {
        assert_eq!(show_bytes(b"usr/bin/ls"), "usr/bin/ls");
        assert_eq!(show_bytes("caf\u{e9}".as_bytes()), "caf\u{e9}");
        assert_eq!(show_bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(show_bytes(b"evil\nline"), "evil\\nline");
    }

    #[test]
    fn messages_name_the_entry_and_the_reason() {
        let e = UnpackError::Unsafe {
            entry: "../../etc/passwd".into(),
            violation: Violation::DotDot,
        };
        assert_eq!(
            e.to_string(),
            "entry `../../etc/passwd`: `..` leaves the root"
        );
        assert!(e.is_safety_violation());
        let e = UnpackError::Unsafe {
            entry: "link/evil".into(),
            violation: Violation::SymlinkParent {
                link: "link".into(),
                target: "/etc".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "entry `link/evil`: parent `link` is a symlink pointing outside the root (`/etc`)"
        );
        let e = UnpackError::Unsafe {
            entry: "x".into(),
            violation: Violation::HardlinkOutside {
                target: "../outside".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "entry `x`: hardlinks to `../outside`, which is outside the root"
        );
        assert!(!UnpackError::TrailingGarbage { offset: 3 }.is_safety_violation());
    }
}
