//! What a build writes instead of a machine (`sandbox build --output KIND:DEST`): formats only.
//! Each output runs the same pull, unpack and layering as a build (`assemble::execute`), then
//! reads the finished tree and writes it out; nothing here fetches by itself or changes the
//! host.
//!
//! - `output`: the `--output` argument, parsed (pure).
//! - `tar_output` + `tar_writer`: `tar:DIR`, a reproducible xz tarball with `SHA256SUMS` (and its
//!   OpenPGP signature), consumable by stock `machinectl pull-tar`.
//! - `oci_output` + `oci_image` + `delta` + `layout_write`: `oci-layout:DIR[:TAG]` and
//!   `docker://REGISTRY/REPO[:TAG]`, the base's layers unchanged plus one layer of what the
//!   build changed (`delta`), written as a layout or pushed with the registry client.
//! - `sign`: cosign key-based and containers simple signing signatures of what is published.

pub mod delta;
pub mod layout_write;
pub mod oci_image;
pub mod oci_output;
pub mod output;
pub mod sign;
pub mod tar_output;
pub mod tar_writer;
