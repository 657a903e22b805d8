//! sandboxes: verified Linux root filesystems for systemd-nspawn hosts.
//!
//! Data flows one way: `source` (where bytes come from) → `verify` (digests, OpenPGP, policy)
//! → `cache` (content-addressed, the only thing both sides share) → `unpack` (safe extraction
//! into a directory handle) → `machine` (staging, atomic publish, host hand-off).
//! `cli` parses arguments and calls into these; nothing below `cli` prints to stdout.

pub mod airgap;
pub mod atomic;
pub mod build;
pub mod cache;
pub mod cli;
pub mod digest;
pub mod export;
pub mod machine;
pub mod oci;
pub mod paths;
pub mod progress;
pub mod pull;
pub mod runtime;
pub mod source;
pub mod template;
pub mod transport;
pub mod unpack;
pub mod verify;
