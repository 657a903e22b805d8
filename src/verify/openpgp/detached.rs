//! Verifying a detached signature over a stream of data against the trust store.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::amalgamation::key::ValidErasedKeyAmalgamation;
use openpgp::cert::amalgamation::{ValidAmalgamation, ValidateAmalgamation};
use openpgp::packet::{Packet, Signature, key};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationError, VerificationHelper,
};
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::types::{HashAlgorithm, SignatureType};
use openpgp::{Cert, KeyHandle, PacketPile};

use super::policy::{PinnedPolicy, SHA1_SELF_SIGNATURE_NOT_PINNED, sha1_accepting_policy};
use super::{TrustStore, describe_cert, fpr_hex};

/// What a good signature proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    /// Primary key fingerprint of the signer's certificate, upper-case hex.
    pub primary_fingerprint: String,
    /// The (sub)key that made the signature, upper-case hex.
    pub signing_key_fingerprint: String,
    /// The signer's user IDs that are valid under the policy.
    pub user_ids: Vec<String>,
    /// Where the signer's certificate came from (`TrustedCert::origin`).
    pub origin: String,
    /// The signer's certificate is valid only because a SHA-1 self-signature of a pinned key
    /// was accepted (sequoia's `StandardPolicy` alone rejects it).
    pub sha1_self_signature_accepted: bool,
    pub signature_created: SystemTime,
}

/// Why a detached signature did not verify. Each message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "no key is trusted for this source, so no signature can be trusted (the built-in LXC \
         image key vouches only for images: from images.linuxcontainers.org); add the signer's \
         key with `sandbox keys add FILE` or `--keyring FILE`"
    )]
    EmptyTrustStore,
    #[error("contains no OpenPGP signature")]
    NoSignature,
    #[error("not a valid OpenPGP signature: {0}")]
    Malformed(String),
    #[error(
        "no key in the trust store signed it ({}); add one with `sandbox keys add`",
        describe_issuers(.issuers)
    )]
    UnknownSigner { issuers: Vec<String> },
    #[error("signature by {signer} does not match the data")]
    Bad { signer: String },
    #[error("signature by {signer} is not accepted: {reason}")]
    Rejected { signer: String, reason: String },
    #[error("reading the signed data: {0}")]
    ReadData(String),
}

fn describe_issuers(issuers: &[String]) -> String {
    if issuers.is_empty() {
        "the signature names no issuer".to_string()
    } else {
        format!("issuer {}", issuers.join(", "))
    }
}

/// Verifies a detached signature (armored or binary, auto-detected) over `data`.
///
/// `data` is read to the end once, in bounded memory. Succeeds when at least one signature is
/// good by a certificate in `store` under [`PinnedPolicy`]; other signatures in the same file
/// (e.g. by a second, unknown release key) do not matter then.
///
/// # Errors
/// See [`SignatureError`]. When several signatures fail, the most telling failure is reported:
/// a mismatch with the data, then a policy rejection, then an unknown signer.
pub fn verify_detached<R: Read + Send + Sync>(
    store: &TrustStore,
    data: R,
    signature: &[u8],
) -> Result<SignatureCheck, SignatureError> {
    if store.is_empty() {
        return Err(SignatureError::EmptyTrustStore);
    }
    check_signature_packets(signature)?;

    let policy = PinnedPolicy::for_store(store);
    let helper = Helper {
        store,
        policy: &policy,
        outcome: None,
    };
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature)
        .and_then(|builder| builder.with_policy(&policy, None, helper))
        .map_err(|e| SignatureError::Malformed(format!("{e:#}")))?;
    let read_error = Arc::new(Mutex::new(None));
    let result = verifier.verify_reader(ErrorRecordingReader {
        inner: data,
        first_error: Arc::clone(&read_error),
    });
    let outcome = verifier.into_helper().outcome;
    // sequoia's hashing stops at a read error as if the data had ended, which would surface
    // as "does not match the data"; the real cause is the read error.
    if let Some(e) = read_error.lock().ok().and_then(|mut e| e.take()) {
        return Err(SignatureError::ReadData(e));
    }
    match (result, outcome) {
        (Ok(()), Some(outcome)) => {
            if let Ok(check) = &outcome {
                tracing::debug!(
                    signer = %check.primary_fingerprint,
                    key = %check.signing_key_fingerprint,
                    origin = %check.origin,
                    sha1_self_signature_accepted = check.sha1_self_signature_accepted,
                    "good signature"
                );
            }
            outcome
        }
        // `check` always records an outcome and returns Ok, so an error means the data or the
        // signature could not be processed at all.
        (Err(e), _) => Err(if e.chain().any(|c| c.is::<std::io::Error>()) {
            SignatureError::ReadData(format!("{e:#}"))
        } else {
            SignatureError::Malformed(format!("{e:#}"))
        }),
        (Ok(()), None) => Err(SignatureError::Malformed(
            "the verifier did not evaluate any signature".to_string(),
        )),
    }
}

/// Passes reads through and remembers the first error, which sequoia does not propagate.
struct ErrorRecordingReader<R> {
    inner: R,
    first_error: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Read for ErrorRecordingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        if let Err(e) = &result {
            if e.kind() != std::io::ErrorKind::Interrupted {
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        result
    }
}

/// Refuses anything but a sequence of data signatures before the (possibly large) data is read.
fn check_signature_packets(signature: &[u8]) -> Result<(), SignatureError> {
    if signature.iter().all(u8::is_ascii_whitespace) {
        return Err(SignatureError::NoSignature);
    }
    let pile = PacketPile::from_bytes(signature)
        .map_err(|e| SignatureError::Malformed(format!("{e:#}")))?;
    let mut signatures = 0;
    for packet in pile.descendants() {
        match packet {
            Packet::Signature(sig)
                if matches!(sig.typ(), SignatureType::Binary | SignatureType::Text) =>
            {
                signatures += 1;
            }
            Packet::Signature(sig) => {
                return Err(SignatureError::Malformed(format!(
                    "a {} signature is not a signature over data",
                    sig.typ()
                )));
            }
            // An unparsable signature (e.g. an unknown version) still counts as one: the
            // verifier reports it, and a good signature next to it may still succeed.
            Packet::Unknown(u) if u.tag() == openpgp::packet::Tag::Signature => signatures += 1,
            Packet::Marker(_) | Packet::Padding(_) => {}
            other => {
                return Err(SignatureError::Malformed(format!(
                    "it holds a {}, not only signatures",
                    other.tag()
                )));
            }
        }
    }
    if signatures == 0 {
        return Err(SignatureError::NoSignature);
    }
    Ok(())
}

/// The verification helper shared with [`super::inline`]: certificates from the store, and
/// the outcome of the signature groups (`check` itself never fails, so callers must look at
/// `outcome`).
pub(super) struct Helper<'s> {
    pub(super) store: &'s TrustStore,
    pub(super) policy: &'s PinnedPolicy<'s>,
    pub(super) outcome: Option<Result<SignatureCheck, SignatureError>>,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self
            .store
            .certs()
            .iter()
            .filter(|e| e.cert.keys().key_handles(ids.iter()).next().is_some())
            .map(|e| e.cert.clone())
            .collect())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        self.outcome = Some(self.evaluate(structure));
        Ok(())
    }
}

/// Failures seen so far, ranked by what the user most needs to hear.
#[derive(Default)]
struct Failures {
    bad: Option<SignatureError>,
    rejected: Option<SignatureError>,
    unknown_issuers: Vec<String>,
    any_unknown: bool,
    malformed: Option<SignatureError>,
}

impl Failures {
    fn into_error(self) -> SignatureError {
        let unknown = self.any_unknown.then_some(SignatureError::UnknownSigner {
            issuers: self.unknown_issuers,
        });
        self.bad
            .or(self.rejected)
            .or(unknown)
            .or(self.malformed)
            .unwrap_or(SignatureError::NoSignature)
    }
}

impl Helper<'_> {
    fn evaluate(&self, structure: MessageStructure) -> Result<SignatureCheck, SignatureError> {
        let mut failures = Failures::default();
        for layer in structure {
            let MessageLayer::SignatureGroup { results } = layer else {
                continue;
            };
            for result in results {
                match result {
                    Ok(good) => return Ok(self.describe_good(good.sig, &good.ka)),
                    Err(err) => self.record_failure(err, &mut failures),
                }
            }
        }
        Err(failures.into_error())
    }

    fn describe_good(
        &self,
        sig: &Signature,
        ka: &ValidErasedKeyAmalgamation<key::PublicParts>,
    ) -> SignatureCheck {
        let cert = ka.cert();
        let signing_fpr = ka.key().fingerprint();
        // The verifier demands a creation time; the fallback is never used in practice.
        let created = sig
            .signature_creation_time()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // Was the exception decisive? Evaluate the same key under the plain standard policy.
        let standard = StandardPolicy::new();
        let valid_under_standard = cert
            .keys()
            .key_handle(signing_fpr.clone())
            .next()
            .is_some_and(|k| k.with_policy(&standard, created).is_ok());
        let primary = cert.fingerprint();
        SignatureCheck {
            primary_fingerprint: fpr_hex(&primary),
            signing_key_fingerprint: fpr_hex(&signing_fpr),
            user_ids: ka
                .valid_cert()
                .userids()
                .map(|u| String::from_utf8_lossy(u.userid().value()).into_owned())
                .collect(),
            origin: self
                .store
                .get(&primary)
                .map(|e| e.origin.clone())
                .unwrap_or_default(),
            sha1_self_signature_accepted: !valid_under_standard,
            signature_created: created,
        }
    }

    fn record_failure(&self, err: VerificationError, failures: &mut Failures) {
        match err {
            VerificationError::MissingKey { sig } => {
                failures.any_unknown = true;
                for issuer in issuer_strings(sig) {
                    if !failures.unknown_issuers.contains(&issuer) {
                        failures.unknown_issuers.push(issuer);
                    }
                }
            }
            VerificationError::UnboundKey { sig, cert, error } => {
                let reason = self.unbound_reason(sig, cert, &error);
                failures.rejected.get_or_insert(SignatureError::Rejected {
                    signer: describe_cert(cert),
                    reason,
                });
            }
            VerificationError::BadKey { ka, error, .. } => {
                failures.rejected.get_or_insert(SignatureError::Rejected {
                    signer: describe_cert(ka.cert()),
                    reason: key_problem(&error),
                });
            }
            VerificationError::BadSignature { sig, ka, error } => {
                let signer = describe_cert(ka.cert());
                if is_policy_or_time_error(&error) {
                    let reason = if sig.hash_algo() == HashAlgorithm::SHA1 {
                        "SHA-1 data signatures are not accepted; the data must be signed with \
                         SHA-256 or stronger"
                            .to_string()
                    } else {
                        format!("{error:#}")
                    };
                    failures
                        .rejected
                        .get_or_insert(SignatureError::Rejected { signer, reason });
                } else {
                    failures.bad.get_or_insert(SignatureError::Bad { signer });
                }
            }
            other => {
                failures
                    .malformed
                    .get_or_insert(SignatureError::Malformed(format!("{other:#}")));
            }
        }
    }

    /// Why the verifier found no valid binding for the signer's key, in words a person can act
    /// on. The common case is an unpinned key whose self-signatures use SHA-1.
    fn unbound_reason(&self, sig: &Signature, cert: &Cert, error: &anyhow::Error) -> String {
        let at = sig.signature_creation_time();
        let valid_with_sha1 = cert.with_policy(&sha1_accepting_policy(), at).is_ok();
        let valid_with_ours = cert.with_policy(self.policy as &dyn Policy, at).is_ok();
        if valid_with_sha1 && !valid_with_ours {
            SHA1_SELF_SIGNATURE_NOT_PINNED.to_string()
        } else {
            format!("the key is not validly bound to its certificate: {error:#}")
        }
    }
}

/// The issuers a signature names, fingerprints first; a key ID that is the tail of a listed
/// fingerprint is left out.
fn issuer_strings(sig: &Signature) -> Vec<String> {
    let issuers = sig.get_issuers();
    let fingerprints: Vec<&KeyHandle> = issuers
        .iter()
        .filter(|h| matches!(h, KeyHandle::Fingerprint(_)))
        .collect();
    let mut out: Vec<String> = fingerprints.iter().map(|h| h.to_hex()).collect();
    for handle in &issuers {
        if let KeyHandle::KeyID(_) = handle {
            let covered = fingerprints.iter().any(|f| f.aliases(handle));
            let hex = handle.to_hex();
            if !covered && !out.contains(&hex) {
                out.push(hex);
            }
        }
    }
    out
}

/// A key that cannot sign (revoked, expired, not signing-capable), in plain words.
fn key_problem(error: &anyhow::Error) -> String {
    match error.downcast_ref::<openpgp::Error>() {
        Some(openpgp::Error::InvalidKey(what)) => what.clone(),
        Some(openpgp::Error::Expired(at)) => format!(
            "the key had expired ({}) when the signature was made",
            humantime::format_rfc3339_seconds(*at)
        ),
        Some(openpgp::Error::NotYetLive(at)) => format!(
            "the key was not valid yet ({}) when the signature was made",
            humantime::format_rfc3339_seconds(*at)
        ),
        _ => format!("{error:#}"),
    }
}

/// Policy rejections and signature lifetime problems, as opposed to a signature that does not
/// match the data.
fn is_policy_or_time_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<openpgp::Error>(),
            Some(
                openpgp::Error::PolicyViolation(..)
                    | openpgp::Error::Expired(_)
                    | openpgp::Error::NotYetLive(_)
            )
        )
    })
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn an_empty_trust_store_says_where_the_built_in_key_counts() {
        let m = SignatureError::EmptyTrustStore.to_string();
        assert!(m.contains("no key is trusted for this source"), "{m}");
        assert!(m.contains("built-in LXC image key vouches only for"), "{m}");
        assert!(m.contains("sandbox keys add"), "{m}");
    }
}
