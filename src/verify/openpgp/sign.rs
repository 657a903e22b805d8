//! Making OpenPGP signatures with a secret key from a file: detached signatures (the
//! `SHA256SUMS.gpg` / `.asc` of `sandbox build --output tar:`) and signed messages that carry
//! their data (containers simple signing of OCI images).
//!
//! Only unencrypted secret keys are read: there is no passphrase prompt, and a key that needs
//! one is refused with a message that says so. The secret material stays inside sequoia's
//! `KeyPair` (which keeps it encrypted in memory and zeroes it on drop) and never reaches an
//! error message.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use sequoia_openpgp as openpgp;

/// A secret signing key, ready to sign.
pub struct SigningKey {
    keypair: openpgp::crypto::KeyPair,
    /// The certificate's (primary key's) fingerprint, upper-case hex.
    pub fingerprint: String,
}

/// Reads an OpenPGP secret key file (armored or binary) and picks its signing-capable secret
/// (sub)key valid now under the standard policy. The key must not be encrypted.
pub fn load_signing_key(path: &Path) -> Result<SigningKey> {
    use openpgp::parse::Parse as _;
    use openpgp::policy::StandardPolicy;
    let cert = openpgp::Cert::from_file(path)
        .with_context(|| format!("reading the OpenPGP key {}", path.display()))?;
    let policy = StandardPolicy::new();
    let Some(ka) = cert
        .keys()
        .with_policy(&policy, None)
        .alive()
        .revoked(false)
        .secret()
        .for_signing()
        .next()
    else {
        bail!(
            "{}: no usable secret signing key (a public key, or every signing key expired or revoked?)",
            path.display()
        );
    };
    let keypair = ka.key().clone().into_keypair().with_context(|| {
        format!(
            "{}: the signing key is encrypted or unusable (export it without a passphrase)",
            path.display()
        )
    })?;
    Ok(SigningKey {
        keypair,
        fingerprint: cert.fingerprint().to_hex(),
    })
}

/// A detached SHA-256 signature over `data`, binary or ASCII-armored.
pub fn sign_detached(key: &SigningKey, data: &[u8], armor: bool) -> Result<Vec<u8>> {
    use openpgp::serialize::stream::{Armorer, Message, Signer};
    let what = || format!("signing with {}", key.fingerprint);
    let mut out = Vec::new();
    {
        let mut message = Message::new(&mut out);
        if armor {
            message = Armorer::new(message)
                .kind(openpgp::armor::Kind::Signature)
                .build()
                .with_context(what)?;
        }
        let mut signer = Signer::new(message, key.keypair.clone())
            .with_context(what)?
            .detached()
            .hash_algo(openpgp::types::HashAlgorithm::SHA256)
            .with_context(what)?
            .build()
            .with_context(what)?;
        signer.write_all(data).with_context(what)?;
        signer.finalize().with_context(what)?;
    }
    Ok(out)
}

/// A binary signed message carrying `data`: one-pass signature, literal data packet (binary,
/// no file name, no date), signature (SHA-256). This is what `gpg --sign` writes and what
/// containers simple signing stores; `gpg --decrypt` prints `data` back and checks it.
pub fn sign_message(key: &SigningKey, data: &[u8]) -> Result<Vec<u8>> {
    use openpgp::serialize::stream::{LiteralWriter, Message, Signer};
    let what = || format!("signing with {}", key.fingerprint);
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let signer = Signer::new(message, key.keypair.clone())
            .with_context(what)?
            .hash_algo(openpgp::types::HashAlgorithm::SHA256)
            .with_context(what)?
            .build()
            .with_context(what)?;
        let mut literal = LiteralWriter::new(signer).build().with_context(what)?;
        literal.write_all(data).with_context(what)?;
        literal.finalize().with_context(what)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new signing-capable certificate, written as a secret key file and loaded from it.
    fn generated_key(key_file: &std::path::Path) -> (openpgp::Cert, SigningKey) {
        use openpgp::cert::CertBuilder;
        use openpgp::serialize::Serialize as _;
        let (cert, _) = CertBuilder::general_purpose(Some("ci@example.org"))
            .generate()
            .unwrap();
        let mut bytes = Vec::new();
        cert.as_tsk().serialize(&mut bytes).unwrap();
        fs_err::write(key_file, &bytes).unwrap();
        let key = load_signing_key(key_file).unwrap();
        (cert, key)
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        use openpgp::parse::Parse as _;
        use openpgp::serialize::Serialize as _;
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.pgp");
        let (cert, key) = generated_key(&key_file);
        for armor in [false, true] {
            let sig = sign_detached(&key, b"data\n", armor).unwrap();
            assert_eq!(sig.starts_with(b"-----BEGIN PGP SIGNATURE-----"), armor);
            let parsed = openpgp::Packet::from_bytes(&sig).unwrap();
            let openpgp::Packet::Signature(s) = parsed else {
                panic!("not a signature: {parsed:?}");
            };
            let signer = cert
                .keys()
                .subkeys()
                .find(|k| {
                    s.get_issuers()
                        .iter()
                        .any(|i| i.aliases(k.key().key_handle()))
                })
                .unwrap();
            s.verify_message(signer.key(), b"data\n").unwrap();
            assert_eq!(s.hash_algo(), openpgp::types::HashAlgorithm::SHA256);
        }
        // A public key alone cannot sign.
        let mut public = Vec::new();
        cert.serialize(&mut public).unwrap();
        fs_err::write(&key_file, &public).unwrap();
        assert!(load_signing_key(&key_file).is_err());
    }

    #[test]
    fn signed_messages_carry_their_data_and_verify() {
        use crate::verify::openpgp::{TrustStore, verify_inline};
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("key.pgp");
        let (cert, key) = generated_key(&key_file);
        let msg = sign_message(&key, b"{\"payload\":1}").unwrap();
        let mut store = TrustStore::new();
        store.add_cert(cert.clone().strip_secret_key_material(), "test", false);
        let (data, check) = verify_inline(&store, &msg).unwrap();
        assert_eq!(data, b"{\"payload\":1}");
        assert_eq!(check.primary_fingerprint, key.fingerprint);
        let pos = msg.windows(7).position(|w| w == b"payload").unwrap();
        let mut tampered = msg.clone();
        tampered[pos] ^= 0x20;
        assert!(verify_inline(&store, &tampered).is_err());
    }
}
