//! Verifying an inline-signed OpenPGP message (one that carries its data, as containers simple
//! signing writes them) against the trust store, and returning the data only when it verified.

use std::io::Read as _;

use sequoia_openpgp::parse::Parse as _;
use sequoia_openpgp::parse::stream::VerifierBuilder;

use super::detached::Helper;
use super::{PinnedPolicy, SignatureCheck, SignatureError, TrustStore};

/// Signed messages larger than this are refused before parsing: a simple-signing signature is
/// well under a kilobyte, and the payload is held in memory.
pub const MAX_INLINE_MESSAGE: usize = 1 << 20;

/// Verifies the signed message `msg` (armored or binary) and returns its literal data with
/// what the good signature proved.
///
/// Succeeds when at least one signature over the data is good by a certificate in `store`
/// under [`PinnedPolicy`], like [`super::verify_detached`]. An encrypted message is refused
/// (no decryption helper is given), and so is data with no signature.
///
/// # Errors
/// See [`SignatureError`].
pub fn verify_inline(
    store: &TrustStore,
    msg: &[u8],
) -> Result<(Vec<u8>, SignatureCheck), SignatureError> {
    if store.is_empty() {
        return Err(SignatureError::EmptyTrustStore);
    }
    if msg.len() > MAX_INLINE_MESSAGE {
        return Err(SignatureError::Malformed(format!(
            "{} bytes, more than the {MAX_INLINE_MESSAGE} allowed for a signed message",
            msg.len()
        )));
    }
    let policy = PinnedPolicy::for_store(store);
    let helper = Helper {
        store,
        policy: &policy,
        outcome: None,
    };
    let mut verifier = VerifierBuilder::from_bytes(msg)
        .and_then(|b| b.with_policy(&policy, None, helper))
        .map_err(|e| SignatureError::Malformed(format!("{e:#}")))?;
    let mut data = Vec::new();
    let read = verifier.read_to_end(&mut data);
    let outcome = verifier.into_helper().outcome;
    // The data is only trusted through the outcome: the helper's `check` never fails, so a
    // message whose signatures are all bad still reads to its end.
    match (read, outcome) {
        (Ok(_), Some(Ok(check))) => Ok((data, check)),
        (Ok(_), Some(Err(e))) => Err(e),
        (Err(e), _) => Err(SignatureError::Malformed(e.to_string())),
        (Ok(_), None) => Err(SignatureError::NoSignature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::cert::CertBuilder;
    use openpgp::policy::StandardPolicy;
    use openpgp::serialize::stream::{LiteralWriter, Message, Signer};
    use sequoia_openpgp as openpgp;
    use std::io::Write as _;

    fn signed(cert: &openpgp::Cert, data: &[u8]) -> Vec<u8> {
        let p = StandardPolicy::new();
        let key = cert
            .keys()
            .with_policy(&p, None)
            .secret()
            .for_signing()
            .next()
            .unwrap()
            .key()
            .clone()
            .into_keypair()
            .unwrap();
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let m = Signer::new(m, key).unwrap().build().unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(data).unwrap();
        w.finalize().unwrap();
        out
    }

    #[test]
    fn the_payload_comes_back_only_from_a_trusted_signer() {
        let (signer, _) = CertBuilder::general_purpose(Some("signer@example.org"))
            .generate()
            .unwrap();
        let (other, _) = CertBuilder::general_purpose(Some("other@example.org"))
            .generate()
            .unwrap();
        let msg = signed(&signer, b"{\"payload\":1}");
        let mut store = TrustStore::new();
        store.add_cert(signer.clone().strip_secret_key_material(), "test", false);
        let (data, check) = verify_inline(&store, &msg).unwrap();
        assert_eq!(data, b"{\"payload\":1}");
        assert_eq!(check.primary_fingerprint, signer.fingerprint().to_hex());

        let mut others = TrustStore::new();
        others.add_cert(other.strip_secret_key_material(), "test", false);
        assert!(matches!(
            verify_inline(&others, &msg),
            Err(SignatureError::UnknownSigner { .. })
        ));
        // Flipping a payload byte: the signature no longer matches.
        let pos = msg
            .windows(7)
            .position(|w| w == b"payload")
            .expect("the literal data is stored uncompressed");
        let mut tampered = msg.clone();
        tampered[pos] ^= 0x20;
        assert!(verify_inline(&store, &tampered).is_err());
        assert!(verify_inline(&store, b"not a message").is_err());
    }
}
