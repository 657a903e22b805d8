//! Loading the trust store from keyring files, the keys directory and importd's keyrings.

use std::path::PathBuf;

use super::gpg::fixture;
use crate::verify::openpgp::{TrustStore, load_trust_store, verify_detached};

#[test]
fn garbled_keyring_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbled.gpg");
    fs_err::write(&path, b"\x99\x01\x0dthis is no key packet at all").unwrap();
    let mut store = TrustStore::new();
    let err = store.add_file(&path, true).unwrap_err();
    assert!(
        format!("{err:#}").contains(&path.display().to_string()),
        "{err:#}"
    );
    assert!(store.is_empty(), "nothing added from a failing file");

    let text = dir.path().join("notes.asc");
    fs_err::write(&text, "just some text\n").unwrap();
    let err = store.add_file(&text, true).unwrap_err();
    assert!(format!("{err:#}").contains("notes.asc"), "{err:#}");
}

#[test]
fn a_keyring_whose_tail_is_cut_off_adds_nothing() {
    let f = fixture();
    let mut cut = f.alice.binary.clone();
    cut.truncate(cut.len() - 10);
    let both = [f.bob.binary.as_slice(), cut.as_slice()].concat();
    let mut store = TrustStore::new();
    let err = store.add_bytes(&both, "cut.gpg", true).unwrap_err();
    assert!(format!("{err:#}").contains("cut.gpg"), "{err:#}");
    assert!(store.is_empty());
}

#[test]
fn secret_keys_in_a_keyring_are_stored_without_secrets() {
    let f = fixture();
    let mut store = TrustStore::new();
    store.add_bytes(&f.alice_secret, "secring", false).unwrap();
    assert_eq!(store.certs()[0].cert.fingerprint().to_hex(), f.alice.fpr);
    assert!(!store.certs()[0].cert.is_tsk());
}

#[test]
fn load_trust_store_combines_keyrings_keys_dir_and_importd() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let keyring = dir.path().join("alice.asc");
    fs_err::write(&keyring, &f.alice.armored).unwrap();
    let keys_dir = dir.path().join("keys");
    fs_err::create_dir(&keys_dir).unwrap();
    fs_err::write(keys_dir.join("bob.pgp"), &f.bob.binary).unwrap();
    // Not keyrings by name: ignored, even though garbled or a real key.
    fs_err::write(keys_dir.join("README"), b"not a key").unwrap();
    fs_err::write(keys_dir.join(".bob.pgp.tmp-0123"), b"half a key").unwrap();
    fs_err::write(keys_dir.join("old.txt"), &f.old.armored).unwrap();
    let importd = dir.path().join("import-pubring.gpg");
    fs_err::write(&importd, &f.old.binary).unwrap();
    let missing_importd = dir.path().join("no-such-pubring.pgp");

    let store = load_trust_store(
        std::slice::from_ref(&keyring),
        &keys_dir,
        &[missing_importd, importd.clone()],
    )
    .unwrap();
    let rows: Vec<(String, String, bool)> = store
        .certs()
        .iter()
        .map(|e| (e.cert.fingerprint().to_hex(), e.origin.clone(), e.pinned))
        .collect();
    assert_eq!(
        rows,
        vec![
            (f.alice.fpr.clone(), keyring.display().to_string(), true),
            (
                f.bob.fpr.clone(),
                keys_dir.join("bob.pgp").display().to_string(),
                true
            ),
            (f.old.fpr.clone(), importd.display().to_string(), false),
        ]
    );
    // And the unpinned SHA-1 key from importd cannot verify.
    assert!(verify_detached(&store, f.data.as_slice(), &f.sig_old).is_err());
    assert!(verify_detached(&store, f.data.as_slice(), &f.sig_bob).is_ok());
}

#[test]
fn load_trust_store_errors() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.asc");
    let no_keys_dir = dir.path().join("keys");

    // A missing --keyring is an error naming it; a missing keys dir is simply empty.
    let err = load_trust_store(std::slice::from_ref(&missing), &no_keys_dir, &[]).unwrap_err();
    assert!(
        format!("{err:#}").contains(&missing.display().to_string()),
        "{err:#}"
    );
    assert!(
        load_trust_store(&[], &no_keys_dir, std::slice::from_ref(&missing))
            .unwrap()
            .is_empty()
    );

    // Garbled files are errors wherever they are.
    fs_err::create_dir(&no_keys_dir).unwrap();
    let garbled = no_keys_dir.join("broken.asc");
    fs_err::write(&garbled, b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxx\n").unwrap();
    let err = load_trust_store(&[], &no_keys_dir, &[]).unwrap_err();
    assert!(
        format!("{err:#}").contains(&garbled.display().to_string()),
        "{err:#}"
    );
    fs_err::remove_file(&garbled).unwrap();

    let importd = dir.path().join("import-pubring.gpg");
    fs_err::write(&importd, &f.alice.binary[..40]).unwrap();
    let err = load_trust_store(&[], &no_keys_dir, std::slice::from_ref(&importd)).unwrap_err();
    assert!(
        format!("{err:#}").contains(&importd.display().to_string()),
        "{err:#}"
    );

    // An importd keyring that exists but cannot be read (a directory here) is not "missing".
    let unreadable: PathBuf = dir.path().join("pubring-dir.gpg");
    fs_err::create_dir(&unreadable).unwrap();
    let err = load_trust_store(&[], &no_keys_dir, std::slice::from_ref(&unreadable)).unwrap_err();
    assert!(
        format!("{err:#}").contains(&unreadable.display().to_string()),
        "{err:#}"
    );
}
