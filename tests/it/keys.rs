//! The trust store: `sandbox keys add|ls|rm` managing `<sandboxes_dir>/keys/`, keys dropped into
//! that directory by hand, importd's keyrings under `--root`, and `sandbox verify`.

use std::path::Path;

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::rootfs::Compression;
use crate::harness::site::{Site, SumStyle};
use crate::harness::{dir_names, files_under};

/// A signed image on a fresh site; returns (site, signer, image, url).
fn signed_image(env: &TestEnv, armor: bool) -> (Site, Gpg, Image, String) {
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(env, Compression::Gzip);
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, armor);
    (site, gpg, image, url)
}

fn keys_dir_files(env: &TestEnv) -> Vec<String> {
    dir_names(&env.sandboxes_dir().join("keys"))
}

fn keys_add_ls_rm(key_armor: bool) {
    let env = TestEnv::new();
    let (_site, gpg, image, url) = signed_image(&env, false);
    let key = keyring(&env, &gpg, key_armor);

    env.sandbox(&["keys", "add", arg(&key)]).success();
    let stored = keys_dir_files(&env);
    assert!(
        stored
            .iter()
            .any(|f| [".asc", ".gpg", ".pgp"].iter().any(|s| f.ends_with(s))),
        "keys add stored no key file in the keys dir: {stored:?}"
    );
    let listed = env.sandbox(&["keys", "ls"]).success();
    let bare: String = listed
        .stdout
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        bare.to_uppercase().contains(gpg.fingerprint()),
        "keys ls does not show {}:\n{}",
        gpg.fingerprint(),
        listed.stdout
    );

    env.sandbox(&["pull", &url, "box"]).success();
    image.assert_materialised(&env.machine("box"));

    env.sandbox(&["keys", "rm", gpg.fingerprint()]).success();
    let listed = env.sandbox(&["keys", "ls"]).success();
    let bare: String = listed
        .stdout
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    assert!(
        !bare.to_uppercase().contains(gpg.fingerprint()),
        "keys rm left the key:\n{}",
        listed.stdout
    );
    env.sandbox(&["pull", &url, "again"]).failure();
    env.assert_machines(&["box"]);
}

#[test]
fn keys_add_armored_then_pull_then_rm() {
    keys_add_ls_rm(true);
}

#[test]
fn keys_add_binary_then_pull_then_rm() {
    keys_add_ls_rm(false);
}

#[test]
fn keys_add_refuses_a_file_without_a_key() {
    let env = TestEnv::new();
    let junk = env.scratch("junk").join("not-a-key.asc");
    std::fs::write(&junk, b"hello, I am not an OpenPGP key\n").expect("writing junk");
    env.sandbox(&["keys", "add", arg(&junk)])
        .failure()
        .stderr_mentions(&["not-a-key.asc"]);
    assert!(files_under(&env.sandboxes_dir().join("keys")).is_empty());
}

#[test]
fn key_files_placed_in_the_keys_dir_are_trusted() {
    let env = TestEnv::new();
    let (_site, gpg, image, url) = signed_image(&env, true);
    let keys = env.sandboxes_dir().join("keys");
    std::fs::create_dir_all(&keys).expect("creating the keys dir");
    gpg.export_to(&keys.join("vendor.pgp"), false);
    env.sandbox(&["pull", &url, "box"]).success();
    image.assert_materialised(&env.machine("box"));
}

/// Trust through importd's keyring at `rel` under `--root`.
fn importd_keyring(rel: &str, armor: bool) {
    let env = TestEnv::new();
    let (_site, gpg, image, url) = signed_image(&env, false);
    let path = env.root().join(rel);
    std::fs::create_dir_all(path.parent().expect("keyring path has a parent"))
        .expect("creating keyring dir");
    gpg.export_to(&path, armor);
    let out = env.sandbox(&["--json", "pull", &url, "box"]).success();
    let fpr = out.json()["verification"]["key_fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        fpr.eq_ignore_ascii_case(gpg.fingerprint()),
        "{}",
        out.stdout
    );
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn importd_keyring_in_etc_is_trusted() {
    importd_keyring("etc/systemd/import-pubring.gpg", false);
}

#[test]
fn importd_keyring_in_usr_lib_is_trusted() {
    importd_keyring("usr/lib/systemd/import-pubring.pgp", true);
}

#[test]
fn keys_outside_root_are_not_trusted() {
    // The importd keyring of another root must not leak in: only ROOT/etc and ROOT/usr/lib count.
    let env = TestEnv::new();
    let (_site, gpg, _image, url) = signed_image(&env, false);
    let elsewhere = env.scratch("etc/systemd");
    gpg.export_to(&elsewhere.join("import-pubring.gpg"), false);
    env.sandbox(&["pull", &url, "box"]).failure();
    env.assert_machines(&[]);
}

fn verify_cmd(
    env: &TestEnv,
    file: &Path,
    sig: &Path,
    key: Option<&Path>,
) -> std::process::ExitStatus {
    let mut args = vec!["verify", arg(file), "--signature", arg(sig)];
    if let Some(key) = key {
        args.extend(["--keyring", arg(key)]);
    }
    env.sandbox(&args).status
}

#[test]
fn verify_command_accepts_good_and_rejects_bad() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let stranger = Gpg::new(KeyAlgo::Ed25519);
    site.put("d/data.tar", b"payload");
    let sums = site.sha256sums("d", &["data.tar"], SumStyle::Text);
    let bin_sig = site.sign(&gpg, "d/SHA256SUMS", false);
    let asc_sig = site.sign(&gpg, "d/SHA256SUMS", true);
    let key = keyring(&env, &gpg, true);
    let wrong = keyring(&env, &stranger, false);

    assert!(
        verify_cmd(&env, &sums, &bin_sig, Some(&key)).success(),
        "binary signature, right key"
    );
    assert!(
        verify_cmd(&env, &sums, &asc_sig, Some(&key)).success(),
        "armored signature, right key"
    );
    assert!(
        !verify_cmd(&env, &sums, &bin_sig, Some(&wrong)).success(),
        "wrong key must fail"
    );
    assert!(
        !verify_cmd(&env, &sums, &bin_sig, None).success(),
        "empty trust store must fail"
    );

    env.sandbox(&["keys", "add", arg(&key)]).success();
    assert!(
        verify_cmd(&env, &sums, &asc_sig, None).success(),
        "key from the keys dir"
    );

    std::fs::write(&sums, b"0000  data.tar\n").expect("tampering");
    let out = env.sandbox(&[
        "verify",
        arg(&sums),
        "--signature",
        arg(&asc_sig),
        "--keyring",
        arg(&key),
    ]);
    assert!(
        !out.status.success(),
        "tampered file must fail:\n{}",
        out.stderr
    );
}
