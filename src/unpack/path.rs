//! Lexical normalisation of archive paths (pure: no filesystem access).
//!
//! An archive path becomes a list of plain components relative to the root: a leading `/` is
//! dropped (GNU tar does the same), empty and `.` components are dropped, and `..` removes the
//! previous component. A `..` with nothing left to remove would leave the root: that is a
//! [`Violation::DotDot`], reported at once, even if a later component would come back in.
//! Symlinks are not considered here; `Root` resolves the normalised path against the disk.

use super::error::{UnpackError, Violation, show_bytes};

/// A normalised archive path: `norm` holds the components joined by `/`, never empty
/// components, `.` or `..`. The empty path is the root itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryPath {
    raw: Vec<u8>,
    norm: Vec<u8>,
}

impl EntryPath {
    /// Normalises `raw`; `..` that climbs above the root and NUL bytes are errors.
    pub fn parse(raw: &[u8]) -> Result<EntryPath, UnpackError> {
        if raw.contains(&0) {
            return Err(UnpackError::invalid(
                &show_bytes(raw),
                "the path contains a NUL byte",
            ));
        }
        let norm = normalize(raw).ok_or_else(|| UnpackError::Unsafe {
            entry: show_bytes(raw),
            violation: Violation::DotDot,
        })?;
        Ok(EntryPath {
            raw: raw.to_vec(),
            norm,
        })
    }

    /// The path as written in the archive, escaped for messages.
    pub fn show(&self) -> String {
        show_bytes(&self.raw)
    }

    /// The normalised path (`a/b/c`, empty for the root).
    pub fn normalized(&self) -> &[u8] {
        &self.norm
    }

    pub fn is_root(&self) -> bool {
        self.norm.is_empty()
    }

    /// The normalised parent and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(&[u8], &[u8])> {
        if self.norm.is_empty() {
            return None;
        }
        Some(match self.norm.iter().rposition(|&b| b == b'/') {
            Some(i) => (&self.norm[..i], &self.norm[i + 1..]),
            None => (&[][..], &self.norm[..]),
        })
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        if self.norm.is_empty() {
            0
        } else {
            self.norm.iter().filter(|&&b| b == b'/').count() + 1
        }
    }
}

/// Lexically normalises `raw`; `None` when a `..` would leave the root.
pub fn normalize(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return None;
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            name => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name);
            }
        }
    }
    Some(out)
}

/// True when `prefix` is `path` or one of its ancestors (component-wise, both normalised).
pub fn is_component_prefix(prefix: &[u8], path: &[u8]) -> bool {
    prefix.is_empty()
        || (path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"usr/bin/ls", Some(b"usr/bin/ls")),
            (b"./usr/bin/", Some(b"usr/bin")),
            (b"/etc/passwd", Some(b"etc/passwd")),
            (b"//etc//./passwd", Some(b"etc/passwd")),
            (b"./", Some(b"")),
            (b"/", Some(b"")),
            (b"", Some(b"")),
            (b"a/b/../c", Some(b"a/c")),
            (b"a/..", Some(b"")),
            (b"a/../..", None),
            (b"../x", None),
            (b"/../x", None),
            (b"a/../../a/x", None),
            (b"..", None),
            (b"a/...", Some(b"a/...")),
            (b"\xff/\xfe", Some(b"\xff/\xfe")),
        ];
        for (raw, want) in cases {
            assert_eq!(
                normalize(raw).as_deref(),
                *want,
                "normalising {:?}",
                show_bytes(raw)
            );
        }
    }

    #[test]
    fn escape_is_a_safety_violation_naming_the_raw_path() {
        let err = EntryPath::parse(b"../../etc/passwd").unwrap_err();
        assert!(err.is_safety_violation());
        assert_eq!(
            err.to_string(),
            "entry `../../etc/passwd`: `..` leaves the root"
        );
    }

    #[test]
    fn nul_bytes_are_rejected() {
        let err = EntryPath::parse(b"a\0b").unwrap_err();
        assert!(!err.is_safety_violation());
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn split_last_and_depth() {
        let p = EntryPath::parse(b"./usr/share/doc/").unwrap();
        assert_eq!(p.split_last(), Some((&b"usr/share"[..], &b"doc"[..])));
        assert_eq!(p.depth(), 3);
        let p = EntryPath::parse(b"etc").unwrap();
        assert_eq!(p.split_last(), Some((&b""[..], &b"etc"[..])));
        assert_eq!(p.depth(), 1);
        let p = EntryPath::parse(b"./").unwrap();
        assert!(p.is_root());
        assert_eq!(p.split_last(), None);
        assert_eq!(p.depth(), 0);
    }

    #[test]
    fn component_prefixes() {
        assert!(is_component_prefix(b"", b"a"));
        assert!(is_component_prefix(b"usr", b"usr/bin"));
        assert!(is_component_prefix(b"usr/bin", b"usr/bin"));
        assert!(!is_component_prefix(b"usr/b", b"usr/bin"));
        assert!(!is_component_prefix(b"usr/bin/x", b"usr/bin"));
    }
}
