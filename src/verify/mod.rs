//! Verification: every byte that enters the cache or a machine is checked here first.
//!
//! - `digest`: the typed sha256 `Digest` and hashing readers/writers.
//! - `checksums`: parsing SHA256SUMS / `<file>.sha256` (pure).
//! - `openpgp`: the trust store and detached-signature checks (sequoia-openpgp).
//!
//! Everything fails closed: a missing file, an unknown signer or a bad digest is an error,
//! never a warning, unless the user chose `--verify=no`.

pub mod checksums;
pub mod digest;
pub mod openpgp;

pub use digest::Digest;
