//! sandboxes: verified Linux root filesystems for systemd-nspawn hosts.
//!
//! Data flows one way, and each module imports only the ones below it:
//!
//! ```text
//! cli           arguments, output, exit codes; the only printing (with progress)
//! airgap        cache export/import for hosts without a network
//! export        what --output writes: tar + SHA256SUMS(.gpg), OCI layouts, pushes, signing
//! assemble      carries a BuildPlan out (`sandbox build`): layering, fix-ups, bake steps,
//!               host files (and, with --force, the settings `config` noted)
//! config        `sandbox config`: a sandbox's effective settings, lossless edits of single
//!               keys of its .nspawn file and drop-in, noted in the state record
//! template      the template language, pure: library, composition, rendering to a BuildPlan
//! machine       the host side: materialise (an image's tree in staging) and publish,
//!               the unpacked-image store and its storage backends (place: zfs, btrfs,
//!               reflink, copy), artifacts, removal, the state record, host setup
//! pull          the one pull: SourceRef + trust settings → a verified FetchedImage
//! source        where bytes come from: tarballs, images:, OCI (registry client included)
//! transport     the one HTTP client, bounded reads, the resumable hashing download
//! cache         content-addressed blobs and refs under <sandboxes_dir>/cache
//! verify        checksums, OpenPGP, cosign, policy.json, simple signing; verification modes
//! oci           OCI/Docker image formats and layer application, no network
//! unpack        safe extraction into a directory handle that never leaves its root
//! digest, atomic, cleanup, ini, paths, progress, runtime
//!               sha256 digests, atomic file writes, what an interrupted command undoes,
//!               systemd's config syntax, host paths, progress bars, the runtime
//! ```
//!
//! A byte enters in `transport` (or `source` for local files), is verified in `verify` (called
//! by `source`) before `cache` stores it, is unpacked by `unpack` (called by
//! `machine::materialise`), and the host is changed only in `machine` and `assemble`.

pub(crate) mod airgap;
pub(crate) mod assemble;
pub(crate) mod atomic;
pub(crate) mod cache;
pub(crate) mod cleanup;
pub mod cli;
pub(crate) mod config;
pub mod digest;
pub mod export;
/// Named points where tests stop the process to kill it (`SANDBOX_FAULT_STOP`); not an API.
#[doc(hidden)]
pub mod faultpoint;
/// Entry points of the fuzz targets (`fuzz/`); not an API.
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod ini;
pub(crate) mod machine;
pub mod oci;
pub(crate) mod paths;
pub(crate) mod progress;
pub(crate) mod pull;
pub(crate) mod runtime;
pub mod source;
pub(crate) mod template;
pub(crate) mod transport;
pub(crate) mod unpack;
pub mod verify;
