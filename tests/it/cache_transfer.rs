//! `sandbox cache export` / `cache import`: carrying verified blobs and refs to an air-gapped
//! host. The importing host re-hashes every blob and verifies every ref again with its own
//! keys; `pull --offline` then works from the imported cache alone.

use std::path::{Path, PathBuf};

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::rawtar::RawTar;
use crate::harness::rootfs::Compression;
use crate::harness::site::{Site, SumStyle};
use crate::harness::{files_under, sha256_hex, token};

/// Pulls `file` (published signed under `dir`) into `env` as machine `name`; returns its URL.
fn signed_pull(env: &TestEnv, site: &Site, gpg: &Gpg, dir: &str, image: &Image) -> String {
    let url = site.publish_signed(gpg, dir, "os.tar.gz", &image.bytes, false);
    let key = keyring(env, gpg, false);
    env.sandbox(&["pull", "--keyring", arg(&key), &url, &format!("m-{dir}")])
        .success();
    url
}

/// Sources of the refs in `env`'s cache.
fn ref_sources(env: &TestEnv) -> Vec<String> {
    let out = env.sandbox(&["--json", "cache", "ls"]).success();
    let mut v: Vec<String> = out.json()["refs"]
        .as_array()
        .expect("refs is an array")
        .iter()
        .map(|r| {
            r["source"]
                .as_str()
                .expect("source is a string")
                .to_string()
        })
        .collect();
    v.sort();
    v
}

/// The entries of an uncompressed export, in order.
fn entries(file: &Path) -> Vec<(String, Vec<u8>)> {
    crate::harness::rawtar::read_entries(file)
}

fn rebuild(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    entries
        .iter()
        .fold(RawTar::new(), |t, (n, d)| t.file(n, d))
        .finish()
}

#[test]
fn export_import_then_offline_pull_works() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&from, Compression::Gzip);
    let url = signed_pull(&from, &site, &gpg, "a", &image);

    let file = from.scratch("out").join("cache.tar.zst");
    from.sandbox(&["cache", "export", arg(&file)]).success();
    let magic = std::fs::read(&file).expect("reading the export");
    assert_eq!(&magic[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not zstd");
    // No temp file is left next to it.
    assert_eq!(files_under(&from.scratch("out")).len(), 1);

    let to = TestEnv::new();
    let key = keyring(&to, &gpg, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&key), arg(&file)])
        .success();
    assert_eq!(ref_sources(&to), vec![url.clone()]);
    assert!(to.blobs().contains(&image.hex()));
    assert_eq!(to.blobs(), from.blobs());

    drop(site);
    let out = to
        .sandbox(&[
            "--json",
            "pull",
            "--offline",
            "--keyring",
            arg(&key),
            &url,
            "box",
        ])
        .success();
    assert_eq!(out.json()["verification"]["mode"], "signature");
    image.assert_materialised(&to.machine("box"));
}

#[test]
fn tampered_blob_is_refused_and_its_ref_not_imported() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&from, Compression::Gzip);
    let url = signed_pull(&from, &site, &gpg, "a", &image);
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();

    let mut list = entries(&file);
    let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted");
    let image_entry = format!("blobs/sha256/{}", image.hex());
    let hit = list
        .iter_mut()
        .find(|(n, _)| *n == image_entry)
        .expect("the export holds the image");
    let last = hit.1.len() - 1;
    hit.1[last] ^= 0xff;
    let evil = hit.1.clone();
    let bad = from.scratch("out").join("bad.tar");
    std::fs::write(&bad, rebuild(&list)).expect("writing the tampered export");

    let to = TestEnv::new();
    let key = keyring(&to, &gpg, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&key), arg(&bad)])
        .failure()
        .stderr_mentions(&[&image.hex(), &url]);
    assert!(ref_sources(&to).is_empty());
    assert!(!to.blobs().contains(&image.hex()));
    assert!(!to.blobs().contains(&sha256_hex(&evil)));
    to.sandbox(&["pull", "--offline", "--keyring", arg(&key), &url, "box"])
        .failure();
    to.assert_machines(&[]);
}

#[test]
fn signature_ref_without_the_key_is_refused() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&from, Compression::Gzip);
    let url = signed_pull(&from, &site, &gpg, "a", &image);
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();

    let to = TestEnv::new();
    to.sandbox(&["cache", "import", arg(&file)])
        .failure()
        .stderr_mentions(&[&url, gpg.fingerprint()]);
    assert!(ref_sources(&to).is_empty());

    // A key that signed nothing here does not help either; the right one does.
    let other = Gpg::new(KeyAlgo::Ed25519);
    let wrong = keyring(&to, &other, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&wrong), arg(&file)])
        .failure()
        .stderr_mentions(&[&url]);
    assert!(ref_sources(&to).is_empty());
    let key = keyring(&to, &gpg, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&key), arg(&file)])
        .success();
    assert_eq!(ref_sources(&to), vec![url]);
}

#[test]
fn hostile_entries_are_errors_and_nothing_lands_outside() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&from, Compression::Gzip);
    signed_pull(&from, &site, &gpg, "a", &image);
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();
    let good = entries(&file);

    let outside: PathBuf = std::env::temp_dir().join(format!("sandbox-it-abs-{}", token()));
    for name in ["../x".to_string(), format!("{}/x", outside.display())] {
        let to = TestEnv::new();
        let mut list = vec![(name.clone(), b"payload".to_vec())];
        list.extend(good.iter().cloned());
        let bad = to.scratch("in").join("bad.tar");
        std::fs::write(&bad, rebuild(&list)).expect("writing the hostile export");
        to.sandbox(&["cache", "import", arg(&bad)])
            .failure()
            .stderr_mentions(&[&name]);
        assert!(!outside.exists(), "{} was created", outside.display());
        for dir in [
            to.root().to_path_buf(),
            to.cache_dir(),
            to.cache_dir().join("v1"),
        ] {
            assert!(!dir.join("x").exists());
            assert!(!dir.parent().expect("has a parent").join("x").exists());
        }
        let payloads: Vec<_> = files_under(to.root())
            .into_iter()
            .filter(|(p, _)| std::fs::read(p).is_ok_and(|d| d == b"payload"))
            .collect();
        assert!(payloads.is_empty(), "payload written: {payloads:?}");
        assert!(ref_sources(&to).is_empty());
    }
}

#[test]
fn export_of_named_refs_only() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let a = Image::new(&from, Compression::Gzip);
    let b = Image::new(&from, Compression::Gzip);
    let url_a = signed_pull(&from, &site, &gpg, "a", &a);
    let url_b = signed_pull(&from, &site, &gpg, "b", &b);
    assert_eq!(ref_sources(&from), {
        let mut v = vec![url_a.clone(), url_b.clone()];
        v.sort();
        v
    });

    let file = from.scratch("out").join("a.tar");
    from.sandbox(&["cache", "export", arg(&file), &url_a])
        .success();
    let names: Vec<String> = entries(&file).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&format!("blobs/sha256/{}", a.hex())));
    assert!(!names.contains(&format!("blobs/sha256/{}", b.hex())));

    from.sandbox(&["cache", "export", arg(&file), "https://nowhere.invalid/x"])
        .failure()
        .stderr_mentions(&["nowhere.invalid"]);

    let to = TestEnv::new();
    let key = keyring(&to, &gpg, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&key), arg(&file)])
        .success();
    assert_eq!(ref_sources(&to), vec![url_a]);
    to.sandbox(&["pull", "--offline", "--keyring", arg(&key), &url_b, "b"])
        .failure();
}

#[test]
fn checksum_refs_verify_again_and_unverified_refs_warn() {
    let from = TestEnv::new();
    let site = Site::new();
    let a = Image::new(&from, Compression::Xz);
    let b = Image::new(&from, Compression::Gzip);
    site.put("a/os.tar.xz", &a.bytes);
    site.sha256_file("a", "os.tar.xz", SumStyle::Text);
    site.put("b/os.tar.gz", &b.bytes);
    let url_a = site.url("a/os.tar.xz");
    let url_b = site.url("b/os.tar.gz");
    from.sandbox(&["pull", "--verify=checksum", &url_a, "a"])
        .success();
    from.sandbox(&["pull", "--verify=no", &url_b, "b"])
        .success();
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();

    // No keys are needed for either; the unverified one is imported with a warning.
    let to = TestEnv::new();
    let out = to
        .sandbox(&["cache", "import", arg(&file)])
        .success()
        .stderr_mentions(&["--verify=no", &url_b]);
    assert!(
        !out.stderr.contains(&format!("warning: {url_a}")),
        "the checksum ref was not verified:\n{}",
        out.stderr
    );
    let mut both = vec![url_a.clone(), url_b];
    both.sort();
    assert_eq!(ref_sources(&to), both);

    drop(site);
    let out = to
        .sandbox(&[
            "--json",
            "pull",
            "--offline",
            "--verify=checksum",
            &url_a,
            "a",
        ])
        .success();
    assert_eq!(out.json()["verification"]["mode"], "checksum");
    a.assert_materialised(&to.machine("a"));
}

#[test]
fn swapped_image_with_a_consistent_manifest_is_refused() {
    let from = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&from, Compression::Gzip);
    let url = signed_pull(&from, &site, &gpg, "a", &image);
    let file = from.scratch("out").join("cache.tar");
    from.sandbox(&["cache", "export", arg(&file)]).success();

    // The attacker ships other bytes under their own (correct) name and points the ref at
    // them: every blob hashes right, only the signed checksum file can tell.
    let evil = Image::new(&from, Compression::Gzip);
    let mut list: Vec<(String, Vec<u8>)> = entries(&file)
        .into_iter()
        .filter(|(n, _)| *n != format!("blobs/sha256/{}", image.hex()))
        .map(|(n, d)| {
            if n == "manifest.json" {
                let text = String::from_utf8(d).expect("the manifest is UTF-8");
                assert!(text.contains(&image.hex()));
                let text = text.replace(&image.hex(), &evil.hex()).replace(
                    &format!("\"size\": {}", image.len()),
                    &format!("\"size\": {}", evil.len()),
                );
                (n, text.into_bytes())
            } else {
                (n, d)
            }
        })
        .collect();
    list.push((format!("blobs/sha256/{}", evil.hex()), evil.bytes.clone()));
    list.sort();
    let bad = from.scratch("out").join("swapped.tar");
    std::fs::write(&bad, rebuild(&list)).expect("writing the swapped export");

    let to = TestEnv::new();
    let key = keyring(&to, &gpg, false);
    to.sandbox(&["cache", "import", "--keyring", arg(&key), arg(&bad)])
        .failure()
        .stderr_mentions(&[&url, &evil.hex()]);
    assert!(ref_sources(&to).is_empty());
    to.sandbox(&["pull", "--offline", "--keyring", arg(&key), &url, "box"])
        .failure();
    to.assert_machines(&[]);
}
