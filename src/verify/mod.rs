//! Verification: every byte that enters the cache or a machine is checked here first.
//!
//! - `mode`: what is asked for (`VerifyMode`) and what was checked (`Checked`), typed.
//! - `checksums`: parsing SHA256SUMS / `<file>.sha256` (pure).
//! - `openpgp`: the trust store and detached-signature checks (sequoia-openpgp).
//! - `policy`: which `docker://` images may be pulled and which signatures they need (a
//!   containers `policy.json`), fails closed.
//! - `cosign`: cosign key-based signatures, checked without the network.
//! - `sigstore`: Sigstore bundles (keyless cosign), offline, against a trusted root.
//! - `lookaside`: where containers simple signing keeps signatures (registries.d).
//!
//! The typed sha256 `Digest` and the hashing readers and writers are `crate::digest`, below
//! everything else.
//!
//! Everything fails closed: a missing file, an unknown signer or a bad digest is an error,
//! never a warning, unless the user chose `--verify=no`.

pub mod checksums;
pub mod cosign;
pub mod lookaside;
pub mod mode;
pub mod openpgp;
pub mod policy;
pub mod sigstore;
pub mod sigstore_legacy;
