//! `verify_detached` and the pinned SHA-1 policy.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use sequoia_openpgp::policy::StandardPolicy;

use super::gpg::{Key, fixture};
use crate::verify::openpgp::{
    LXC_IMAGES_FINGERPRINT, LXC_IMAGES_ORIGIN, PinnedPolicy, SignatureCheck, SignatureError,
    TrustStore, lxc_images_cert, verify_detached,
};

fn store_with(keys: &[(&Key, bool)]) -> TrustStore {
    let mut store = TrustStore::new();
    for (key, pinned) in keys {
        let n = store
            .add_bytes(&key.binary, &format!("test:{}", key.user_id), *pinned)
            .expect("gpg's export parses");
        assert_eq!(n, 1);
    }
    store
}

fn verify(store: &TrustStore, data: &[u8], sig: &[u8]) -> Result<SignatureCheck, SignatureError> {
    verify_detached(store, data, sig)
}

fn assert_good_by(check: &SignatureCheck, key: &Key, origin: &str) {
    assert_eq!(check.primary_fingerprint, key.fpr);
    // `sign` usage only: gpg makes no subkey, so the primary key signs.
    assert_eq!(check.signing_key_fingerprint, key.fpr);
    assert_eq!(check.user_ids, vec![key.user_id.clone()]);
    assert_eq!(check.origin, origin);
    let age = SystemTime::now()
        .duration_since(check.signature_created)
        .expect("signature made before now");
    assert!(
        age < Duration::from_secs(3600),
        "signature made {age:?} ago"
    );
}

#[test]
fn good_binary_signature_with_binary_keyring() {
    let f = fixture();
    let mut store = TrustStore::new();
    assert_eq!(
        store
            .add_bytes(&f.alice.binary, "alice.gpg", false)
            .unwrap(),
        1
    );
    let check = verify(&store, &f.data, &f.sig_alice_binary).unwrap();
    assert_good_by(&check, &f.alice, "alice.gpg");
    assert!(!check.sha1_self_signature_accepted);
}

#[test]
fn good_armored_signature_with_armored_keyring() {
    let f = fixture();
    assert!(
        f.sig_alice_armored
            .starts_with(b"-----BEGIN PGP SIGNATURE-----")
    );
    assert!(
        f.alice
            .armored
            .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );
    let mut store = TrustStore::new();
    assert_eq!(
        store
            .add_bytes(&f.alice.armored, "alice.asc", true)
            .unwrap(),
        1
    );
    let check = verify(&store, &f.data, &f.sig_alice_armored).unwrap();
    assert_good_by(&check, &f.alice, "alice.asc");
    assert!(
        !check.sha1_self_signature_accepted,
        "a SHA-256 self-signature needs no exception"
    );
}

#[test]
fn keyring_with_several_certs_verifies_each_signer() {
    let f = fixture();
    let mut store = TrustStore::new();
    assert_eq!(
        store
            .add_bytes(&f.alice_and_bob_armored, "both.asc", false)
            .unwrap(),
        2
    );
    assert_good_by(
        &verify(&store, &f.data, &f.sig_alice_binary).unwrap(),
        &f.alice,
        "both.asc",
    );
    assert_good_by(
        &verify(&store, &f.data, &f.sig_bob).unwrap(),
        &f.bob,
        "both.asc",
    );
}

#[test]
fn one_good_signature_among_unknown_ones_is_enough() {
    // Release files are often signed by an old and a new key; the store may know only one.
    let f = fixture();
    let store = store_with(&[(&f.alice, false)]);
    let both = [f.sig_bob.as_slice(), f.sig_alice_binary.as_slice()].concat();
    assert_good_by(
        &verify(&store, &f.data, &both).unwrap(),
        &f.alice,
        "test:Alice <alice@example.org>",
    );
}

#[test]
fn signature_by_a_key_not_in_the_store_names_the_issuer() {
    let f = fixture();
    let store = store_with(&[(&f.alice, true)]);
    let err = verify(&store, &f.data, &f.sig_bob).unwrap_err();
    let SignatureError::UnknownSigner { issuers } = &err else {
        panic!("expected UnknownSigner, got {err:?}");
    };
    assert!(
        issuers.contains(&f.bob.fpr),
        "issuers {issuers:?} lack {}",
        f.bob.fpr
    );
    assert!(!issuers.contains(&f.alice.fpr));
    let message = err.to_string();
    assert!(
        message.contains(&f.bob.fpr) && message.contains("sandbox keys add"),
        "{message}"
    );
}

#[test]
fn tampered_data_is_a_bad_signature() {
    let f = fixture();
    let store = store_with(&[(&f.alice, false)]);
    let mut tampered = f.data.clone();
    tampered[f.data.len() / 2] ^= 0x01;
    let err = verify(&store, &tampered, &f.sig_alice_binary).unwrap_err();
    assert!(
        matches!(&err, SignatureError::Bad { signer } if signer.contains(&f.alice.fpr)),
        "{err:?}"
    );
    let truncated = &f.data[..f.data.len() - 1];
    let err = verify(&store, truncated, &f.sig_alice_armored).unwrap_err();
    assert!(matches!(err, SignatureError::Bad { .. }), "{err:?}");
}

#[test]
fn sha1_self_signed_key_is_accepted_when_pinned_and_flagged() {
    let f = fixture();
    let store = store_with(&[(&f.old, true)]);
    let check = verify(&store, &f.data, &f.sig_old).unwrap();
    assert_good_by(&check, &f.old, "test:Old <old@example.org>");
    assert!(check.sha1_self_signature_accepted);
}

#[test]
fn sha1_self_signed_key_is_rejected_when_not_pinned() {
    let f = fixture();
    let store = store_with(&[(&f.old, false)]);
    let err = verify(&store, &f.data, &f.sig_old).unwrap_err();
    let SignatureError::Rejected { signer, reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(signer.contains(&f.old.fpr), "{signer}");
    assert!(
        reason.contains("SHA-1") && reason.contains("pinned"),
        "{reason}"
    );
}

#[test]
fn pinning_an_unpinned_key_from_a_second_source_pins_it() {
    // e.g. the key is in importd's keyring and also given with --keyring.
    let f = fixture();
    let mut store = TrustStore::new();
    store
        .add_bytes(&f.old.binary, "importd.gpg", false)
        .unwrap();
    store.add_bytes(&f.old.armored, "mine.asc", true).unwrap();
    assert_eq!(store.certs().len(), 1, "same fingerprint, one entry");
    assert!(store.certs()[0].pinned);
    let check = verify(&store, &f.data, &f.sig_old).unwrap();
    assert_eq!(check.origin, "mine.asc");
    assert!(check.sha1_self_signature_accepted);
}

#[test]
fn sha1_data_signatures_are_rejected_even_for_pinned_keys() {
    let f = fixture();
    for (key, sig) in [(&f.alice, &f.sig_alice_sha1), (&f.old, &f.sig_old_sha1)] {
        let store = store_with(&[(key, true)]);
        let err = verify(&store, &f.data, sig).unwrap_err();
        let SignatureError::Rejected { signer, reason } = &err else {
            panic!("expected Rejected for {}, got {err:?}", key.user_id);
        };
        assert!(signer.contains(&key.fpr), "{signer}");
        assert!(
            reason.contains("SHA-1 data signatures are not accepted"),
            "{reason}"
        );
    }
}

#[test]
fn revoked_key_is_rejected() {
    let f = fixture();
    let store = store_with(&[(&f.revoked, true)]);
    let err = verify(&store, &f.data, &f.sig_revoked).unwrap_err();
    let SignatureError::Rejected { signer, reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(signer.contains(&f.revoked.fpr), "{signer}");
    assert!(reason.contains("revoked"), "{reason}");
}

#[test]
fn empty_store_fails_before_reading_anything() {
    let f = fixture();
    struct MustNotRead;
    impl Read for MustNotRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("the data was read although the trust store is empty");
        }
    }
    let err = verify_detached(&TrustStore::new(), MustNotRead, &f.sig_alice_binary).unwrap_err();
    assert_eq!(err, SignatureError::EmptyTrustStore);
}

#[test]
fn things_that_are_not_signatures() {
    let f = fixture();
    let store = store_with(&[(&f.alice, false)]);
    assert_eq!(
        verify(&store, &f.data, b"").unwrap_err(),
        SignatureError::NoSignature
    );
    assert_eq!(
        verify(&store, &f.data, b" \n").unwrap_err(),
        SignatureError::NoSignature
    );
    // A certificate passed where a signature belongs.
    let err = verify(&store, &f.data, &f.alice.binary).unwrap_err();
    assert!(
        matches!(&err, SignatureError::Malformed(m) if m.contains("Public-Key")),
        "{err:?}"
    );
    let err = verify(&store, &f.data, b"this is not OpenPGP at all\n").unwrap_err();
    assert!(matches!(err, SignatureError::Malformed(_)), "{err:?}");
    // A truncated signature packet.
    let cut = &f.sig_alice_binary[..f.sig_alice_binary.len() / 2];
    let err = verify(&store, &f.data, cut).unwrap_err();
    assert!(matches!(err, SignatureError::Malformed(_)), "{err:?}");
}

#[test]
fn a_failing_data_reader_is_reported_as_such() {
    let f = fixture();
    let store = store_with(&[(&f.alice, false)]);
    struct Broken(usize);
    impl Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let err = verify_detached(&store, Broken(10_000), &f.sig_alice_binary).unwrap_err();
    assert!(
        matches!(&err, SignatureError::ReadData(m) if m.contains("disk on fire")),
        "{err:?}"
    );
}

#[test]
fn ubuntu_release_signature_by_a_key_we_do_not_have() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openpgp");
    let sums = fs_err::read(format!("{dir}/ubuntu-noble-SHA256SUMS")).unwrap();
    let sig = fs_err::read(format!("{dir}/ubuntu-noble-SHA256SUMS.gpg")).unwrap();
    assert!(
        sig.starts_with(b"-----BEGIN PGP SIGNATURE-----"),
        "armored despite .gpg"
    );
    let mut store = TrustStore::new();
    store.add_cert(lxc_images_cert(), LXC_IMAGES_ORIGIN, true);
    let err = verify_detached(&store, sums.as_slice(), &sig).unwrap_err();
    let SignatureError::UnknownSigner { issuers } = &err else {
        panic!("expected UnknownSigner, got {err:?}");
    };
    let ubuntu = "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81";
    assert!(
        issuers
            .iter()
            .any(|i| i == ubuntu || ubuntu.ends_with(i.as_str())),
        "{issuers:?}"
    );
    assert!(!issuers.iter().any(|i| i == LXC_IMAGES_FINGERPRINT));
}

#[test]
fn lxc_images_cert_is_the_expected_pinned_key() {
    let cert = lxc_images_cert();
    assert_eq!(cert.fingerprint().to_hex(), LXC_IMAGES_FINGERPRINT);
    assert!(!cert.is_tsk());
    assert!(
        cert.with_policy(&StandardPolicy::new(), None).is_err(),
        "its SHA-1 self-signature fails the standard policy"
    );

    let mut pinned = TrustStore::new();
    pinned.add_cert(cert.clone(), LXC_IMAGES_ORIGIN, true);
    let policy = PinnedPolicy::for_store(&pinned);
    let valid = cert.with_policy(&policy, None);
    assert!(valid.is_ok(), "valid when pinned: {:?}", valid.err());

    let mut unpinned = TrustStore::new();
    unpinned.add_cert(cert.clone(), "somewhere", false);
    assert!(
        cert.with_policy(&PinnedPolicy::for_store(&unpinned), None)
            .is_err()
    );

    // Pinning some other key does not extend the exception to this one.
    let f = fixture();
    let other_pinned = store_with(&[(&f.old, true)]);
    assert!(
        cert.with_policy(&PinnedPolicy::for_store(&other_pinned), None)
            .is_err()
    );
}
