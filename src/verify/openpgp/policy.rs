//! The one exception to sequoia's `StandardPolicy`: SHA-1 self-signatures of pinned keys.
//!
//! sequoia's `Policy::signature` sees a signature, never the certificate it is being evaluated
//! for, so "accept SHA-1 for pinned certificates" cannot be decided from the signature's claimed
//! issuer (the issuer subpacket usually sits in the unhashed area, which anyone can rewrite).
//! Instead the policy carries the pinned certificates' own self-signatures, taken from the
//! pinned keyrings when they were loaded, and relaxes the hash rule only for a signature that is
//! one of those packets (compared with `normalized_eq`, i.e. ignoring the unhashed area). A SHA-1
//! binding someone appends to a pinned key later, from an unpinned keyring, is not in that list
//! and stays rejected.

use std::fmt;

use sequoia_openpgp as openpgp;

use openpgp::Cert;
use openpgp::packet::{Packet, Signature, key};
use openpgp::policy::{HashAlgoSecurity, Policy, StandardPolicy};
use openpgp::types::{AEADAlgorithm, HashAlgorithm, SignatureType, SymmetricAlgorithm};

use super::TrustStore;
use openpgp::cert::amalgamation::key::ValidErasedKeyAmalgamation;

/// `StandardPolicy`, except that SHA-1 is accepted in the self-signatures, binding signatures
/// and self-revocations of pinned certificates. Data signatures (binary, text) always follow
/// `StandardPolicy`, so SHA-1 data signatures are rejected whoever made them.
pub struct PinnedPolicy<'s> {
    standard: StandardPolicy<'static>,
    sha1_accepted: StandardPolicy<'static>,
    pinned_self_signatures: &'s [Signature],
}

impl<'s> PinnedPolicy<'s> {
    /// The policy for verifying against `store`: its pinned certificates get the exception.
    pub fn for_store(store: &'s TrustStore) -> Self {
        Self::with_pinned_self_signatures(store.pinned_self_signatures())
    }

    pub(crate) fn with_pinned_self_signatures(pinned_self_signatures: &'s [Signature]) -> Self {
        PinnedPolicy {
            standard: StandardPolicy::new(),
            sha1_accepted: sha1_accepting_policy(),
            pinned_self_signatures,
        }
    }
}

/// Why an unpinned certificate whose self-signatures use SHA-1 cannot verify anything.
pub(crate) const SHA1_SELF_SIGNATURE_NOT_PINNED: &str = "its self-signature uses SHA-1, which is \
     accepted only for keys pinned with `--keyring` or `sandbox keys add`";

/// `StandardPolicy` with SHA-1 accepted everywhere. Used only for the pinned exception and to
/// explain a rejection ("would be valid if its SHA-1 self-signature were accepted").
pub(crate) fn sha1_accepting_policy() -> StandardPolicy<'static> {
    let mut policy = StandardPolicy::new();
    policy.accept_hash(HashAlgorithm::SHA1);
    policy
}

/// Signature types that a certificate makes about itself. Data signatures (Binary, Text),
/// third-party-only kinds (Standalone, Timestamp, Confirmation) are deliberately absent.
fn is_self_signature_type(typ: SignatureType) -> bool {
    matches!(
        typ,
        SignatureType::GenericCertification
            | SignatureType::PersonaCertification
            | SignatureType::CasualCertification
            | SignatureType::PositiveCertification
            | SignatureType::SubkeyBinding
            | SignatureType::PrimaryKeyBinding
            | SignatureType::DirectKey
            // Accepting a pinned key's own SHA-1 revocation can only make it *less* usable;
            // rejecting it would silently revive a key its owner revoked.
            | SignatureType::KeyRevocation
            | SignatureType::SubkeyRevocation
            | SignatureType::CertificationRevocation
    )
}

/// Every self-signature, self-revocation and embedded primary-key binding ("back signature") of
/// `cert`: the packets the pinned exception may relax.
pub(crate) fn self_signatures_of(cert: &Cert) -> Vec<Signature> {
    let mut sigs: Vec<Signature> = Vec::new();
    let primary = cert.primary_key();
    sigs.extend(primary.self_signatures().cloned());
    sigs.extend(primary.self_revocations().cloned());
    for uid in cert.userids() {
        sigs.extend(uid.self_signatures().cloned());
        sigs.extend(uid.self_revocations().cloned());
    }
    for ua in cert.user_attributes() {
        sigs.extend(ua.self_signatures().cloned());
        sigs.extend(ua.self_revocations().cloned());
    }
    for subkey in cert.keys().subkeys() {
        for binding in subkey.self_signatures() {
            sigs.push(binding.clone());
            // The back signature is made by the subkey and gets its own policy call.
            sigs.extend(binding.embedded_signatures().cloned());
        }
        sigs.extend(subkey.self_revocations().cloned());
    }
    sigs
}

impl fmt::Debug for PinnedPolicy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedPolicy")
            .field("pinned_self_signatures", &self.pinned_self_signatures.len())
            .finish_non_exhaustive()
    }
}

impl Policy for PinnedPolicy<'_> {
    fn signature(&self, sig: &Signature, sec: HashAlgoSecurity) -> openpgp::Result<()> {
        // Cheap tests first: almost every signature is not SHA-1.
        let relaxed = sig.hash_algo() == HashAlgorithm::SHA1
            && is_self_signature_type(sig.typ())
            && self
                .pinned_self_signatures
                .iter()
                .any(|pinned| pinned.normalized_eq(sig));
        if relaxed {
            // Still the full standard check (critical subpackets etc.), minus the SHA-1 cutoff.
            self.sha1_accepted.signature(sig, sec)
        } else {
            self.standard.signature(sig, sec)
        }
    }

    fn key(&self, ka: &ValidErasedKeyAmalgamation<key::PublicParts>) -> openpgp::Result<()> {
        self.standard.key(ka)
    }

    fn symmetric_algorithm(&self, algo: SymmetricAlgorithm) -> openpgp::Result<()> {
        self.standard.symmetric_algorithm(algo)
    }

    fn aead_algorithm(&self, algo: AEADAlgorithm) -> openpgp::Result<()> {
        self.standard.aead_algorithm(algo)
    }

    fn packet(&self, packet: &Packet) -> openpgp::Result<()> {
        self.standard.packet(packet)
    }
}
