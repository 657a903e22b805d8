//! The unpacker's one extension point: a hook that sees each member's normalised path before
//! it is materialised and may skip it. OCI layers (`layers.rs`) turn whiteouts into removals
//! here. The hook is given exactly the path the unpacker would use (after PAX records, GNU long
//! names and sparse names), so a second tar parser can never disagree with it on a name.

use super::error::UnpackError;
use super::path::EntryPath;

/// What an [`EntryHook`] decides for one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryAction {
    /// Materialise it as usual.
    Unpack,
    /// Do not create anything for it (its data is skipped).
    Skip,
}

/// Decides, member by member, what is materialised (see the module documentation).
pub(crate) trait EntryHook {
    fn entry(&mut self, path: &EntryPath) -> Result<EntryAction, UnpackError>;

    /// Whether a stream that ends right after its last entry's data, without the zero
    /// padding to the block boundary (and without an end-of-archive marker), is complete.
    /// Tarballs: no, that is truncation. OCI layers: yes, because their exact bytes are
    /// checked against the image's `diff_id`, and umoci writes layers that way (Go's
    /// archive/tar, which Docker and containerd use, accepts them).
    fn accepts_unpadded_end(&self) -> bool {
        false
    }
}

/// Plain tarballs: everything is materialised.
pub(crate) struct UnpackAll;

impl EntryHook for UnpackAll {
    fn entry(&mut self, _: &EntryPath) -> Result<EntryAction, UnpackError> {
        Ok(EntryAction::Unpack)
    }
}
