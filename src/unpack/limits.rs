//! How big a tree may grow while it is unpacked: a decompression bomb (a few MiB of xz that
//! expand to one 16 GiB file, or to millions of empty entries) stops at a bound, with a message
//! that names the bound, the variable that raises it and the entry that reached it.
//!
//! - `SANDBOX_MAX_TREE_BYTES`: bytes of file content, counted as apparent sizes (a sparse
//!   file's declared size, holes included), checked from each entry's header before anything
//!   of it is written. Default 274877906944 (256 GiB): four times `SANDBOX_MAX_DOWNLOAD`
//!   (64 GiB), because root filesystems compress by about that much, so no download the
//!   transport accepts is refused here by its size alone; the largest real images (CUDA/ML
//!   containers) unpack to a few tens of GiB.
//! - `SANDBOX_MAX_ENTRIES`: archive members (PAX global headers not counted). Default
//!   10000000: a full Debian desktop has about half a million entries, big ML images one or
//!   two million; what grows with entries (directory records, a layer's path set) stays in the
//!   low GiB of memory at this bound.
//!
//! For an OCI image the bounds hold for the whole tree, over all its layers: each layer starts
//! with what the layers below it used ([`TreeLimits::after`]).
//!
//! The variables are read once per process ([`TreeLimits::from_env`]); [`TreeLimits::parse`]
//! is the pure parser.

use std::sync::OnceLock;

/// The variable bounding the bytes of file content.
pub const MAX_TREE_BYTES_VAR: &str = "SANDBOX_MAX_TREE_BYTES";
/// The variable bounding the number of entries.
pub const MAX_ENTRIES_VAR: &str = "SANDBOX_MAX_ENTRIES";

/// The bounds of one tree, and what earlier streams into it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    pub max_bytes: u64,
    pub max_entries: u64,
    /// Bytes of file content earlier streams (lower layers) wrote into the same tree.
    pub used_bytes: u64,
    /// Entries of earlier streams into the same tree.
    pub used_entries: u64,
}

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits {
            max_bytes: 256 << 30,
            max_entries: 10_000_000,
            used_bytes: 0,
            used_entries: 0,
        }
    }
}

impl TreeLimits {
    /// From the process environment, read once; a bad value is an error every time it is
    /// asked for.
    pub fn from_env() -> Result<TreeLimits, String> {
        static PARSED: OnceLock<Result<TreeLimits, String>> = OnceLock::new();
        PARSED
            .get_or_init(|| TreeLimits::parse(|k| std::env::var(k).ok()))
            .clone()
    }

    /// From `get` (a variable's value by name); unset or empty means the default. Pure.
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<TreeLimits, String> {
        let d = TreeLimits::default();
        let num = |name: &str, default: u64| -> Result<u64, String> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("${name}=`{v}` is not a whole number")),
            }
        };
        Ok(TreeLimits {
            max_bytes: num(MAX_TREE_BYTES_VAR, d.max_bytes)?,
            max_entries: num(MAX_ENTRIES_VAR, d.max_entries)?,
            ..d
        })
    }

    /// The same bounds for the next stream into the tree, after one that wrote `bytes` of
    /// file content in `entries` entries.
    pub fn after(self, bytes: u64, entries: u64) -> TreeLimits {
        TreeLimits {
            used_bytes: self.used_bytes.saturating_add(bytes),
            used_entries: self.used_entries.saturating_add(entries),
            ..self
        }
    }

    /// Checks the `n`th entry of this stream (counting from 1). Pure.
    pub fn check_entry(&self, n: u64) -> Result<(), String> {
        let total = self.used_entries.saturating_add(n);
        if total > self.max_entries {
            return Err(format!(
                "the tree would have more than {} entries (this is entry {total}): the limit \
                 ${MAX_ENTRIES_VAR} (raise it if the image really has this many)",
                self.max_entries
            ));
        }
        Ok(())
    }

    /// Checks a file of `size` bytes (its apparent size) after `written` bytes of file content
    /// in this stream. Pure.
    pub fn check_bytes(&self, written: u64, size: u64) -> Result<(), String> {
        let before = self.used_bytes.saturating_add(written);
        if before.saturating_add(size) > self.max_bytes {
            return Err(format!(
                "the tree would hold more than {} bytes of file content (this file declares \
                 {size} bytes, after {before}): the limit ${MAX_TREE_BYTES_VAR} (raise it if \
                 the image is really this big)",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn variables_set_the_bounds_and_bad_values_are_named() {
        assert_eq!(TreeLimits::parse(vars(&[])).unwrap(), TreeLimits::default());
        assert_eq!(
            TreeLimits::parse(vars(&[(MAX_TREE_BYTES_VAR, " ")])).unwrap(),
            TreeLimits::default()
        );
        let l = TreeLimits::parse(vars(&[
            ("SANDBOX_MAX_TREE_BYTES", "1000"),
            ("SANDBOX_MAX_ENTRIES", " 20 "),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!((l.max_bytes, l.max_entries), (1000, 20));
        let e = TreeLimits::parse(vars(&[("SANDBOX_MAX_ENTRIES", "1e6")])).unwrap_err();
        assert!(e.contains("$SANDBOX_MAX_ENTRIES=`1e6`"), "{e}");
        let e = TreeLimits::parse(vars(&[("SANDBOX_MAX_TREE_BYTES", "-1")])).unwrap_err();
        assert!(e.contains("$SANDBOX_MAX_TREE_BYTES"), "{e}");
    }

    #[test]
    fn bounds_hold_over_streams_and_name_the_variable() {
        let l = TreeLimits {
            max_bytes: 100,
            max_entries: 3,
            ..TreeLimits::default()
        };
        assert!(l.check_entry(3).is_ok());
        let e = l.check_entry(4).unwrap_err();
        assert!(
            e.contains("SANDBOX_MAX_ENTRIES") && e.contains("entry 4"),
            "{e}"
        );
        assert!(l.check_bytes(40, 60).is_ok());
        let e = l.check_bytes(40, 61).unwrap_err();
        assert!(
            e.contains("SANDBOX_MAX_TREE_BYTES") && e.contains("61"),
            "{e}"
        );
        // A declared size near u64::MAX does not wrap around.
        assert!(l.check_bytes(1, u64::MAX).is_err());
        // The next layer starts where the lower ones stopped.
        let upper = l.after(90, 2);
        assert!(upper.check_entry(1).is_ok());
        assert!(upper.check_entry(2).is_err());
        assert!(upper.check_bytes(0, 10).is_ok());
        assert!(upper.check_bytes(0, 11).is_err());
    }
}
