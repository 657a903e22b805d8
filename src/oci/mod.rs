//! OCI and Docker image formats, without the network: references, manifests, indexes,
//! configs, platform choice, image layouts and archives, and layer application.
//!
//! # Flow
//!
//! ```text
//! OciSource::parse("docker://…" | "oci-layout:DIR[:TAG]" | "oci-archive:FILE[:TAG]")
//!   oci-archive: extract_oci_archive(file, tmp dir) ──▶ an image layout
//!   OciLayout::open(dir)?.resolve(tag)        ──▶ top Descriptor
//!   docker://: verify::policy::Policy::decide, then source::registry::Registry::manifest ──▶ top Descriptor
//!     (then its cosign / simple signing signatures: source::oci_signatures)
//! resolve_image(&dyn BlobSource, &top, &PlatformSpec)
//!   index ─▶ choose_manifest(platform) ─▶ manifest ─▶ config ─▶ layers + diff_ids
//! apply_image(&Root, source, &resolved, opts)  ──▶ staging rootfs
//! has_init(&Root)? else render_exec_section(config) ──▶ NAME.nspawn
//! resolved.provenance()                        ──▶ what the sandbox records
//! ```
//!
//! # What is checked
//!
//! - Every blob through its descriptor: exact size and sha256 ([`blob::VerifiedReader`]);
//!   manifests and indexes over 4 MiB and configs over 8 MiB are refused before reading.
//! - Every manifest's shape against its `mediaType` field and the media type it was referred
//!   to by; both `layers` and `manifests` is refused ([`manifest::parse_manifest`]).
//! - Only container images: the config media type must be an image config, every layer media
//!   type an OCI or Docker tar/tar+gzip/tar+zstd (foreign and non-distributable layers are
//!   refused by name), all before any layer is read.
//! - The platform: an index is resolved to the wanted one (the host's by default), and the
//!   config must agree.
//! - Each layer's uncompressed stream against its `diff_id`, hashed as it is unpacked.
//! - Layer content by `unpack::layers`: the tarball guarantees, plus whiteouts that never
//!   leave their directory.
//!
//! Files: `reference` (sources, pure), `media` (media types), `manifest` (descriptors,
//! manifests, indexes), `config` (image config), `platform` (os/arch/variant, matching),
//! `blob` (verified reading, the `BlobSource` trait), `layout` (image layout directories),
//! `archive` (`oci-archive` tars), `image` (resolution), `layers` (applying, in order),
//! `layer_stream` (one layer's blob to tar stream as a pipeline of threads), `nspawn`
//! (init detection and the `.nspawn` an image needs). Nothing here speaks HTTP: the registry
//! client (manifests, blobs, auth, push) is `source::registry`; signature checks (policy,
//! cosign, simple signing's lookaside) are `verify`'s; signing and layout writing are
//! `export`'s; the cache side of a pull is `source::oci_pull`.

pub mod archive;
pub mod blob;
pub mod config;
pub mod image;
pub mod layer_stream;
pub mod layers;
pub mod layout;
pub mod manifest;
pub mod media;
pub mod nspawn;
pub mod platform;
pub mod reference;

#[cfg(test)]
mod tests;

pub use archive::{ArchiveSummary, extract_oci_archive};
pub use blob::{BlobError, BlobSource, VerifiedReader};
pub use config::{ContainerConfig, ImageConfig};
pub use image::{ImageProvenance, ResolvedImage, choose_manifest, resolve_image};
pub use layers::{
    AppliedLayer, LayerInput, apply_image, apply_image_hashed, apply_image_with_progress,
    apply_layers,
};
pub use layout::OciLayout;
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, parse_manifest};
pub use nspawn::{LABEL_NSPAWN, has_init, render_exec_section, settings_for};
pub use platform::{Platform, PlatformSpec};
pub use reference::{ImageReference, OciSource};
