//! `sandbox keys add|ls|rm` on a temporary keys directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::gpg::fixture;
use crate::verify::openpgp::keys::{
    KeyStatus, add_to_dir, list, parse_fingerprint, remove_from_dir,
};
use crate::verify::openpgp::{TrustStore, load_trust_store, verify_detached};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// "ABCD 1234 ..." in lower case: how a person might paste a fingerprint.
fn spaced_lower(fpr: &str) -> String {
    fpr.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn add_ls_rm_round_trip() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("sandboxes/keys");
    let input = tmp.path().join("alice.asc");
    fs_err::write(&input, &f.alice.armored).unwrap();

    assert_eq!(
        add_to_dir(&keys_dir, &input).unwrap(),
        vec![f.alice.fpr.clone()]
    );
    let stored = keys_dir.join(format!("{}.pgp", f.alice.fpr));
    assert_eq!(files_in(&keys_dir), vec![format!("{}.pgp", f.alice.fpr)]);
    let mode = fs_err::metadata(&keys_dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let bytes = fs_err::read(&stored).unwrap();
    assert!(bytes[0] & 0x80 != 0, "binary packets, not armor");

    // Adding the same key again keeps one file.
    assert_eq!(
        add_to_dir(&keys_dir, &input).unwrap(),
        vec![f.alice.fpr.clone()]
    );
    assert_eq!(files_in(&keys_dir).len(), 1);

    let store = load_trust_store(&[], &keys_dir, &[]).unwrap();
    let check = verify_detached(&store, f.data.as_slice(), &f.sig_alice_binary).unwrap();
    assert_eq!(check.origin, stored.display().to_string());

    let rows = list(&store);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.fingerprint, f.alice.fpr);
    assert_eq!(row.user_ids, vec![f.alice.user_id.clone()]);
    assert_eq!(row.origin, stored.display().to_string());
    assert!(row.pinned);
    assert_eq!(row.algorithm, "RSA3072");
    assert_eq!(row.expiry, None);
    assert_eq!(row.status, KeyStatus::Valid);
    assert!(!row.sha1_self_signature);
    let json = serde_json::to_value(row).unwrap();
    assert_eq!(json["status"]["status"], "valid");
    assert!(json["created"].as_str().unwrap().ends_with('Z'));

    let removed = remove_from_dir(&keys_dir, &spaced_lower(&f.alice.fpr)).unwrap();
    assert_eq!(removed, stored);
    assert!(files_in(&keys_dir).is_empty());
    assert!(load_trust_store(&[], &keys_dir, &[]).unwrap().is_empty());
}

#[test]
fn add_a_keyring_with_several_keys_writes_one_file_each() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("both.asc");
    fs_err::write(&input, &f.alice_and_bob_armored).unwrap();
    let keys_dir = tmp.path().join("keys");
    let added = add_to_dir(&keys_dir, &input).unwrap();
    assert_eq!(added, vec![f.alice.fpr.clone(), f.bob.fpr.clone()]);
    let mut expected = vec![format!("{}.pgp", f.alice.fpr), format!("{}.pgp", f.bob.fpr)];
    expected.sort();
    assert_eq!(files_in(&keys_dir), expected);
}

#[test]
fn add_refuses_secret_keys_and_garbage() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("keys");

    let secret = tmp.path().join("secret.gpg");
    fs_err::write(&secret, &f.alice_secret).unwrap();
    let err = add_to_dir(&keys_dir, &secret).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("secret key material") && message.contains(&f.alice.fpr),
        "{message}"
    );
    assert!(!keys_dir.exists(), "nothing written");

    let garbage = tmp.path().join("garbage.asc");
    fs_err::write(&garbage, "hello\n").unwrap();
    let err = add_to_dir(&keys_dir, &garbage).unwrap_err();
    assert!(format!("{err:#}").contains("garbage.asc"), "{err:#}");

    let missing = tmp.path().join("missing.asc");
    let err = add_to_dir(&keys_dir, &missing).unwrap_err();
    assert!(format!("{err:#}").contains("missing.asc"), "{err:#}");
}

#[test]
fn ls_shows_sha1_keys_as_usable_only_when_pinned() {
    let f = fixture();
    let mut store = TrustStore::new();
    store.add_bytes(&f.old.binary, "pinned.gpg", true).unwrap();
    store
        .add_bytes(&f.bob.binary, "importd.gpg", false)
        .unwrap();
    let rows = list(&store);
    assert_eq!(rows[0].status, KeyStatus::Valid);
    assert!(rows[0].sha1_self_signature);
    assert_eq!(rows[1].status, KeyStatus::Valid);
    assert!(!rows[1].sha1_self_signature && !rows[1].pinned);

    let mut unpinned = TrustStore::new();
    unpinned
        .add_bytes(&f.old.binary, "importd.gpg", false)
        .unwrap();
    assert!(
        matches!(&list(&unpinned)[0].status, KeyStatus::Invalid(why) if why.contains("SHA-1")),
        "{:?}",
        list(&unpinned)[0].status
    );

    let mut revoked = TrustStore::new();
    revoked
        .add_bytes(&f.revoked.binary, "gone.gpg", true)
        .unwrap();
    assert_eq!(list(&revoked)[0].status, KeyStatus::Revoked);
}

#[test]
fn rm_errors_are_clear_and_touch_nothing() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let keys_dir = tmp.path().join("keys");
    fs_err::create_dir(&keys_dir).unwrap();

    let err = remove_from_dir(&keys_dir, &f.alice.fpr).unwrap_err();
    assert!(format!("{err:#}").contains("no key"), "{err:#}");

    // Short key IDs are refused: they are not unique enough to delete by.
    let err = remove_from_dir(&keys_dir, &f.alice.fpr[24..]).unwrap_err();
    assert!(
        format!("{err:#}").contains("not a full fingerprint"),
        "{err:#}"
    );

    // The same key in two files: ambiguous.
    fs_err::write(keys_dir.join("alice.asc"), &f.alice.armored).unwrap();
    fs_err::write(keys_dir.join("alice-again.gpg"), &f.alice.binary).unwrap();
    let err = remove_from_dir(&keys_dir, &f.alice.fpr).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("alice.asc") && message.contains("alice-again.gpg"),
        "{message}"
    );
    assert_eq!(files_in(&keys_dir).len(), 2);

    // A file with several keys is not rewritten.
    fs_err::remove_file(keys_dir.join("alice.asc")).unwrap();
    fs_err::remove_file(keys_dir.join("alice-again.gpg")).unwrap();
    fs_err::write(keys_dir.join("both.asc"), &f.alice_and_bob_armored).unwrap();
    let err = remove_from_dir(&keys_dir, &f.bob.fpr).unwrap_err();
    assert!(format!("{err:#}").contains("holds 2 keys"), "{err:#}");
    assert_eq!(files_in(&keys_dir), vec!["both.asc".to_string()]);

    // A file next to the keys directory is never a candidate.
    let outside = tmp.path().join("alice.asc");
    fs_err::write(&outside, &f.alice.armored).unwrap();
    assert!(remove_from_dir(&keys_dir, &f.alice.fpr).is_err());
    assert!(outside.exists());
}

#[test]
fn parse_fingerprint_accepts_what_people_paste() {
    let fpr = "E7FB0CAEC8173D669066514CBAEFF88C22F6E216";
    for input in [
        fpr.to_string(),
        fpr.to_lowercase(),
        format!("0x{fpr}"),
        "E7FB 0CAE C817 3D66 9066  514C BAEF F88C 22F6 E216".to_string(),
        format!(" {fpr}\n"),
    ] {
        assert_eq!(
            parse_fingerprint(&input).unwrap().to_hex(),
            fpr,
            "{input:?}"
        );
    }
    for bad in [
        "",
        "BAEFF88C22F6E216",
        &format!("{fpr}00"),
        &fpr.replace('E', "G"),
    ] {
        assert!(parse_fingerprint(bad).is_err(), "{bad:?}");
    }
}
