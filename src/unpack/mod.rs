//! Safe, streaming extraction of tar archives into a root filesystem. This is the security
//! boundary of the project: archives come from the network, and even a verified one must not
//! be able to touch anything outside the directory it is extracted into.
//!
//! # What "safe" means here
//!
//! - **One handle type.** Every path of an archive is opened through [`Root`]
//!   (`root.rs`), which holds an `O_PATH` fd of the target directory; nothing in the crate
//!   resolves archive paths as strings against the host.
//! - **Lexical normalisation first.** A leading `/` is relative to the root (as GNU tar does),
//!   `.` and empty components are dropped, and a `..` that would climb above the root aborts at
//!   once with [`Violation::DotDot`] (`path.rs`).
//! - **Parents are walked, not trusted.** Each directory on the way is opened relative to the
//!   previous fd with `O_NOFOLLOW` (or one `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`). A
//!   parent that is a symlink is followed only if its target stays inside the root when
//!   resolved component by component (relative targets such as `bin -> usr/bin`); an absolute
//!   target or a `..` above the root aborts with [`Violation::SymlinkParent`], naming the entry
//!   and the symlink. (Image layers follow absolute targets from the root instead, as a
//!   container sees them: `layers.rs`.)
//! - **The last component is never followed.** Whatever exists at the destination is unlinked
//!   (a directory is kept for a directory entry) and the object is created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, `mkdirat`, `symlinkat`, `mknodat` or `linkat`; metadata of
//!   symlinks and special files is set without following them. A symlink planted by the archive
//!   can therefore never be written through.
//! - **Hardlinks stay inside.** The target is normalised and resolved like any entry, its last
//!   component not followed (`linkat` without `AT_SYMLINK_FOLLOW`); a target outside the root
//!   aborts with [`Violation::HardlinkOutside`] or [`Violation::HardlinkViaSymlink`]. Targets may
//!   be earlier entries or files already in the root (lower OCI layers).
//! - **Symlinks may point anywhere.** They are data: they resolve inside the sandbox at run
//!   time. What matters is that extraction never follows one out.
//! - **Bounded memory.** Data is copied through one 256 KiB buffer; extended headers are capped
//!   (16 MiB per entry); sparse maps are capped. What grows with the archive is one small record
//!   per directory (their times are set at the end, deepest first), like GNU tar.
//! - **Bounded trees.** The bytes of file content (apparent sizes, sparse files by their
//!   declared size) and the number of entries are bounded (`limits.rs`, raised by
//!   `SANDBOX_MAX_TREE_BYTES` and `SANDBOX_MAX_ENTRIES`), checked from each header before
//!   anything of the entry is written; sparse files cost what their stored data costs, never
//!   their declared size (holes are never expanded into zeros).
//! - **Damage is reported, not guessed around.** Truncation, corrupt headers and trailing
//!   garbage after the end-of-archive marker are errors with the entry or byte offset;
//!   concatenated archives and zero padding are accepted.
//!
//! What is kept: numeric owners (when [`UnpackOptions::preserve_owner`]), modes including
//! setuid/setgid/sticky (chown comes before chmod, which it would otherwise clear), mtimes,
//! xattrs (`security.selinux` only with [`UnpackOptions::keep_selinux`]), POSIX ACLs, hardlinks,
//! symlinks, device nodes, fifos and sparse files (holes stay holes).
//!
//! Modules: `root` (the handle, all syscalls), `tar` (the entry loop), `path` (normalisation),
//! `pax` (PAX records), `acl` (ACL text to xattr), `sparse` (copying data, sparse maps),
//! `limits` (the tree's bounds, from the environment),
//! `stream` (byte positions, truncation and header capture), `error`, `hook` (the per-entry
//! extension point), `layers` (OCI layer rules: whiteouts, opaque directories, absolute
//! symlinks resolved inside the root); `decompress` (compression by magic bytes), `chunks`
//! (bounded hand-over of a stream between threads, the stages of a pipeline) and
//! `xz_index`/`xz_parallel` (block-parallel xz with bounded memory).

mod acl;
pub mod chunks;
pub mod decompress;
mod entry_meta;
mod error;
mod hook;
pub mod layers;
pub mod limits;
mod path;
mod pax;
pub mod root;
mod sparse;
mod stream;
pub mod tar;
pub mod xz_index;
pub mod xz_parallel;

#[cfg(test)]
pub(crate) mod tests;

pub use error::{UnpackError, show_bytes};
pub use limits::TreeLimits;
pub use root::Root;
pub use tar::unpack_tar;

/// How to treat ownership and security labels, and how big the tree may grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackOptions {
    /// chown to the archive's numeric uid/gid (true when running as root; names are ignored).
    pub preserve_owner: bool,
    /// keep `security.selinux` xattrs (only when SELinux is enabled on the host); other xattrs
    /// always kept.
    pub keep_selinux: bool,
    /// Bounds on the bytes of file content and the number of entries (`limits.rs`).
    pub limits: TreeLimits,
}

impl UnpackOptions {
    /// The right options for this process: owners kept when running as root, SELinux labels
    /// kept when the host has SELinux enabled (selinuxfs mounted), the tree's bounds from
    /// the environment (an error names a malformed variable).
    pub fn for_this_host() -> anyhow::Result<UnpackOptions> {
        Ok(UnpackOptions {
            preserve_owner: rustix::process::geteuid().is_root(),
            keep_selinux: std::path::Path::new("/sys/fs/selinux/enforce").exists(),
            limits: TreeLimits::from_env().map_err(anyhow::Error::msg)?,
        })
    }
}

/// What an extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Archive members processed (PAX global headers not counted).
    pub entries: u64,
    /// Bytes of regular file content written (apparent sizes, holes included).
    pub bytes: u64,
    /// The archive had an entry for its root (`./`, `/` or empty), whose mode, owner and times
    /// were applied to the root directory itself.
    pub root_entry_seen: bool,
    /// Things skipped or not restored, each logged with `tracing::warn!` (device nodes without
    /// the privilege, xattrs the filesystem refused, unknown entry types).
    pub warnings: u64,
}
