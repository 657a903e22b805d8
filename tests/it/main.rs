//! Integration tests: the real `sandbox` binary against real servers and tools on 127.0.0.1.
//! One test binary (faster to link, shares the harness); each module is one concern.
//! The suite runs as root (device nodes, foreign owners, chattr) and needs nginx-light, gnupg,
//! GNU tar, gzip, xz-utils, zstd, bzip2, e2fsprogs, python3-nacl and python3-cryptography; the
//! harness names whatever is missing.

mod bombs;
mod boot;
mod build;
mod build_bake;
mod build_export;
mod build_images;
mod build_oci;
mod build_oci_signed;
mod build_validate;
mod cache;
mod cache_transfer;
mod cache_transfer_kinds;
mod concurrency;
mod config;
mod disk_full;
mod docs;
mod faults;
mod harness;
mod harness_selftest;
mod host;
mod host_setup;
mod hostile;
mod http;
mod http_errors;
mod images;
mod images_cache;
mod images_listing;
mod images_trust;
mod keyless;
mod keys;
mod kill_points;
mod ls_rm;
mod oci;
mod oci_resume;
mod oci_signatures;
mod oci_signing;
mod pull_tarball;
mod push;
mod records;
mod root_isolation;
mod settings;
mod sigstore_conformance;
mod stalls;
mod storage;
mod verify;
