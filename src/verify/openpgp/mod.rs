//! OpenPGP: the trust store and detached-signature checks (sequoia-openpgp).
//!
//! What "verified by signature" means here:
//!
//! - The signature file holds only detached data signatures (armored or binary); anything else
//!   (an inline-signed message, a certificate, garbage) is refused before the data is read.
//! - At least one signature was made by a certificate in the [`TrustStore`], is cryptographically
//!   good over every byte of the data, and passes [`PinnedPolicy`] at the signature's creation
//!   time: the signing key was bound, alive, not revoked and signing-capable then.
//! - One exception to sequoia's `StandardPolicy`, from the issue: the LXC image key's only
//!   self-signature uses SHA-1. SHA-1 *self-signatures* (and binding signatures, and
//!   revocations) are accepted for certificates that the user (`--keyring`, the keys directory)
//!   or the binary (the built-in LXC key) explicitly *pinned*, and for nothing else. SHA-1 *data*
//!   signatures stay rejected for every key. When that exception is what made a certificate
//!   valid, [`SignatureCheck::sha1_self_signature_accepted`] says so, for the provenance record.
//!
//! Layout: `store` (the certificates and where each came from, loading keyrings), `policy`
//! (the pinned-SHA-1 exception), `detached` (verifying a signature over a stream), `inline`
//! (signed messages that carry their data: containers simple signing), `sign` (making
//! detached signatures and signed messages with a secret key file),
//! `keys` (`sandbox keys add|ls|rm` on the keys directory).
//!
//! Trusting a pinned key "for its source only" (the LXC key for LXC image pulls) is the caller's
//! job: [`SignatureCheck::origin`] says which keyring the signer came from.

mod detached;
mod inline;
pub mod keys;
mod policy;
mod sign;
mod store;

#[cfg(test)]
mod tests;

pub use detached::{SignatureCheck, SignatureError, verify_detached};
pub use inline::{MAX_INLINE_MESSAGE, verify_inline};
pub use policy::PinnedPolicy;
pub use sign::{SigningKey, load_signing_key, sign_detached, sign_message};
pub use store::{TrustStore, TrustedCert, keyring_files_in_dir, load_trust_store};

use sequoia_openpgp::Cert;
use sequoia_openpgp::parse::Parse;

/// Fingerprint of the LXC image signing key ("LXC pre-built images
/// <lxc-devel@lists.linuxcontainers.org>"), which signs images.linuxcontainers.org.
pub const LXC_IMAGES_FINGERPRINT: &str = "E7FB0CAEC8173D669066514CBAEFF88C22F6E216";

/// The origin recorded for the built-in LXC image key.
pub const LXC_IMAGES_ORIGIN: &str = "built-in LXC image key";

/// The armored public LXC image key, embedded at build time.
const LXC_IMAGES_ASC: &[u8] = include_bytes!("../../../keys/lxc-images.asc");

/// The LXC image signing key that the binary ships.
///
/// Callers pin it (`TrustStore::add_cert(lxc_images_cert(), LXC_IMAGES_ORIGIN, true)`) for LXC
/// image pulls only; its SHA-1 self-signature makes it unusable otherwise.
pub fn lxc_images_cert() -> Cert {
    // Why expect: the bytes are compiled in, not read from outside; the unit test
    // `lxc_images_cert_is_the_expected_pinned_key` parses them on every test run.
    Cert::from_bytes(LXC_IMAGES_ASC).expect("keys/lxc-images.asc is a valid OpenPGP certificate")
}

/// A fingerprint as this module prints it: upper-case hex without spaces.
pub(crate) fn fpr_hex(fpr: &sequoia_openpgp::Fingerprint) -> String {
    fpr.to_hex()
}

/// The user IDs of a certificate as text, in the certificate's order, ignoring validity.
pub(crate) fn user_id_strings(cert: &Cert) -> Vec<String> {
    cert.userids()
        .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
        .collect()
}

/// "FPR (first user ID)": how a signer is named in messages.
pub(crate) fn describe_cert(cert: &Cert) -> String {
    let fpr = fpr_hex(&cert.fingerprint());
    match user_id_strings(cert).into_iter().next() {
        Some(uid) => format!("{fpr} ({uid})"),
        None => fpr,
    }
}
