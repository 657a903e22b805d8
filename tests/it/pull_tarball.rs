//! `sandbox pull` of rootfs tarballs: every compression, every kind of source, names,
//! flattening, `--force`, `--read-only`, `--json`, the cache-only name `-`, and `.nspawn` files.
//! Verification modes have their own module (`verify`); these tests use `--verify=no` unless
//! the feature under test needs a signature.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::rootfs::{self, Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle, uri};
use crate::harness::{require_tool, run_tool};

/// Publishes one image in `compression`, pulls it over HTTP, checks tree and server log.
fn pull_compressed(compression: Compression) {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, compression);
    let rel = format!("img/os.{}", compression.suffix());
    site.put(&rel, &image.bytes);

    env.sandbox(&["pull", "--verify=no", &site.url(&rel), "box"])
        .success();

    image.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
    let sent: Vec<_> = site
        .nginx
        .log_for(&uri(&rel))
        .into_iter()
        .filter(|e| e.status == 200)
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "one full GET of the image:\n{}",
        site.nginx.log_text()
    );
    assert_eq!(sent[0].body_bytes, image.len());
}

#[test]
fn pulls_uncompressed_tar() {
    pull_compressed(Compression::None);
}

#[test]
fn pulls_gzip() {
    pull_compressed(Compression::Gzip);
}

#[test]
fn pulls_xz() {
    pull_compressed(Compression::Xz);
}

#[test]
fn pulls_zstd() {
    pull_compressed(Compression::Zstd);
}

#[test]
fn pulls_bzip2() {
    pull_compressed(Compression::Bzip2);
}

#[test]
fn compression_is_detected_by_magic_not_by_suffix() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/lying.tar.xz", &image.bytes);
    env.sandbox(&["pull", "--verify=no", &site.url("img/lying.tar.xz"), "box"])
        .success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn pulls_a_local_path() {
    let env = TestEnv::new();
    let image = Image::new(&env, Compression::Zstd);
    let path = env.scratch("local").join("os.tar.zst");
    std::fs::write(&path, &image.bytes).expect("writing the local tarball");
    env.sandbox(&["pull", "--verify=no", arg(&path), "box"])
        .success();
    image.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
}

#[test]
fn pulls_a_file_url_with_its_checksum_file() {
    let env = TestEnv::new();
    let image = Image::new(&env, Compression::Xz);
    let dir = env.scratch("local");
    std::fs::write(dir.join("os.tar.xz"), &image.bytes).expect("writing the local tarball");
    let sums = run_tool(
        Command::new(require_tool("sha256sum"))
            .current_dir(&dir)
            .arg("os.tar.xz"),
        None,
    );
    std::fs::write(dir.join("os.tar.xz.sha256"), sums).expect("writing os.tar.xz.sha256");
    let url = format!("file://{}/os.tar.xz", dir.display());
    env.sandbox(&["pull", "--verify=checksum", &url, "box"])
        .success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn default_name_is_the_file_name_without_tar_suffix() {
    let env = TestEnv::new();
    let site = Site::new();
    let cases = [
        ("img/debian-12.tar.xz", Compression::Xz, "debian-12"),
        ("img/alpine.tar.gz", Compression::Gzip, "alpine"),
        ("img/plain.tar", Compression::None, "plain"),
    ];
    let mut names = Vec::new();
    for (rel, compression, name) in cases {
        let image = Image::new(&env, compression);
        site.put(rel, &image.bytes);
        env.sandbox(&["pull", "--verify=no", &site.url(rel)])
            .success();
        image.assert_materialised(&env.machine(name));
        names.push(name);
    }
    env.assert_machines(&names);
}

#[test]
fn single_top_directory_is_flattened() {
    let env = TestEnv::new();
    let site = Site::new();
    let spec = TreeSpec::new();
    let parent = env.scratch("nested");
    rootfs::build_tree(&parent.join("rootfs"), &spec);
    let tarball = Compression::Gzip.compress(&rootfs::pack(&parent, "rootfs"));
    site.put("img/nested.tar.gz", &tarball);

    env.sandbox(&["pull", "--verify=no", &site.url("img/nested.tar.gz"), "box"])
        .success();

    rootfs::assert_tree(&env.machine("box"), &spec);
    assert!(
        !env.machine("box/rootfs").exists(),
        "the wrapper directory must not survive"
    );
}

#[test]
fn json_output_describes_the_pull() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, false);
    let key = keyring(&env, &gpg, true);

    let out = env
        .sandbox(&["--json", "pull", "--keyring", arg(&key), &url, "box"])
        .success();

    let json = out.json();
    assert!(json.is_object(), "stdout must be one object: {json}");
    assert_eq!(json["name"], "box");
    assert_eq!(json["path"], arg(&env.machine("box")));
    assert_eq!(json["source"], url.as_str());
    assert_eq!(json["digest"], format!("sha256:{}", image.hex()));
    assert_eq!(json["verification"]["mode"], "signature");
    let fpr = json["verification"]["key_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no key_fingerprint string in {json}"));
    assert!(
        fpr.eq_ignore_ascii_case(gpg.fingerprint()),
        "{fpr} is not {}",
        gpg.fingerprint()
    );
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn dash_name_stores_in_the_cache_only() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Xz);
    site.put("img/os.tar.xz", &image.bytes);

    env.sandbox(&["pull", "--verify=no", &site.url("img/os.tar.xz"), "-"])
        .success();

    env.assert_machines(&[]);
    let blob = env.blobs_dir().join(image.hex());
    let stored =
        std::fs::read(&blob).unwrap_or_else(|e| panic!("reading blob {}: {e}", blob.display()));
    assert!(
        stored == image.bytes,
        "the cached blob must hold the tarball's bytes"
    );
}

#[test]
fn existing_name_is_kept_without_force_and_replaced_with_it() {
    let env = TestEnv::new();
    let site = Site::new();
    let old = Image::new(&env, Compression::Gzip);
    let new = Image::new(&env, Compression::Gzip);
    site.put("img/old.tar.gz", &old.bytes);
    site.put("img/new.tar.gz", &new.bytes);
    env.sandbox(&["pull", "--verify=no", &site.url("img/old.tar.gz"), "box"])
        .success();

    env.sandbox(&["pull", "--verify=no", &site.url("img/new.tar.gz"), "box"])
        .failure()
        .stderr_mentions(&["box"]);
    old.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);

    env.sandbox(&[
        "pull",
        "--verify=no",
        "--force",
        &site.url("img/new.tar.gz"),
        "box",
    ])
    .success();
    new.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
}

/// Clears the immutable bit even when the test panics, so the temp dir can be removed.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn read_only_sets_the_immutable_attribute() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let machine = env.machine("box");
    let _cleanup = Immutable(machine.clone());

    env.sandbox(&[
        "pull",
        "--verify=no",
        "--read-only",
        &site.url("img/os.tar.gz"),
        "box",
    ])
    .success();

    let lsattr = run_tool(
        Command::new(require_tool("lsattr")).arg("-d").arg(&machine),
        None,
    );
    let lsattr = String::from_utf8_lossy(&lsattr);
    let flags = lsattr.split_whitespace().next().unwrap_or_default();
    assert!(
        flags.contains('i'),
        "lsattr -d shows no immutable flag: {lsattr}"
    );
    let err = std::fs::write(machine.join("new-file"), b"x")
        .expect_err("an immutable dir refuses new entries");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    image.assert_materialised(&machine);
}

#[test]
fn nspawn_file_listed_in_signed_sums_lands_next_to_the_machine() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    let settings = b"[Exec]\nBoot=yes\n\n[Network]\nVirtualEthernet=yes\n";
    site.put("img/os.tar.gz", &image.bytes);
    site.put("img/os.nspawn", settings);
    site.sha256sums("img", &["os.tar.gz", "os.nspawn"], SumStyle::Text);
    site.sign(&gpg, "img/SHA256SUMS", false);
    let key = keyring(&env, &gpg, false);

    env.sandbox(&[
        "pull",
        "--keyring",
        arg(&key),
        &site.url("img/os.tar.gz"),
        "box",
    ])
    .success();

    image.assert_materialised(&env.machine("box"));
    let landed = env.machines_dir().join("box.nspawn");
    assert_eq!(
        std::fs::read(&landed).unwrap_or_else(|e| panic!("reading {}: {e}", landed.display())),
        settings
    );
    env.assert_machines(&["box", "box.nspawn"]);
}

#[test]
fn nspawn_file_missing_from_signed_sums_is_refused() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.nspawn", b"[Exec]\nPrivileged=yes\n");
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, false);
    let key = keyring(&env, &gpg, false);

    env.sandbox(&["pull", "--keyring", arg(&key), &url, "box"])
        .failure()
        .stderr_mentions(&["os.nspawn"]);
    env.assert_machines(&[]);
}

#[test]
fn a_nspawn_answer_that_is_no_settings_file_is_never_installed() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    // A misconfigured server answering every name with an archive (or an HTML page).
    let other = Image::new(&env, Compression::None);
    site.put("img/os.nspawn", &other.bytes);
    let url = site.url("img/os.tar.gz");
    env.sandbox(&["pull", "--verify=no", &url, "box"])
        .failure()
        .stderr_mentions(&["os.nspawn", "not a .nspawn settings file"]);
    site.put("img/os.nspawn", b"<html><body>Not here</body></html>\n");
    env.sandbox(&["pull", "--verify=no", &url, "box"])
        .failure()
        .stderr_mentions(&["os.nspawn", "not a .nspawn settings file"]);
    env.assert_machines(&[]);
}

#[test]
fn invalid_names_are_rejected() {
    let env = TestEnv::new();
    let image = Image::new(&env, Compression::Gzip);
    let path = env.scratch("local").join("os.tar.gz");
    std::fs::write(&path, &image.bytes).expect("writing the local tarball");
    let too_long = "a".repeat(65);
    for name in ["-bad", "a..b", too_long.as_str(), "a/b", "."] {
        // `--` so that `-bad` reaches the name check instead of the option parser.
        env.sandbox(&["pull", "--verify=no", arg(&path), "--", name])
            .failure()
            .stderr_mentions(&[name]);
        env.assert_machines(&[]);
    }
    assert!(
        !env.root().join("var/lib/a").exists(),
        "`a/b` must not create anything"
    );
}

#[test]
fn longest_valid_name_is_accepted() {
    let env = TestEnv::new();
    let image = Image::new(&env, Compression::Gzip);
    let path = env.scratch("local").join("os.tar.gz");
    std::fs::write(&path, &image.bytes).expect("writing the local tarball");
    // 64 characters in two labels of 31 and 32: valid under both hostname and DNS label rules.
    let name = format!("{}.{}", "a".repeat(31), "b".repeat(32));
    assert_eq!(name.len(), 64);
    env.sandbox(&["pull", "--verify=no", arg(&path), &name])
        .success();
    image.assert_materialised(&env.machine(&name));
}

#[test]
fn foreign_owner_and_device_survive_a_second_pull_from_cache() {
    // The cache path (no download) must materialise the same ownership and devices.
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Xz);
    site.put("img/os.tar.xz", &image.bytes);
    let url = site.url("img/os.tar.xz");
    env.sandbox(&["pull", "--verify=no", &url, "one"]).success();
    env.sandbox(&["pull", "--verify=no", &url, "two"]).success();
    for name in ["one", "two"] {
        image.assert_materialised(&env.machine(name));
    }
    let one = env
        .machine("one/usr/bin/hello")
        .metadata()
        .expect("stat one");
    let two = env
        .machine("two/usr/bin/hello")
        .metadata()
        .expect("stat two");
    assert_ne!(
        one.ino(),
        two.ino(),
        "two machines must not share inodes with each other"
    );
}

#[test]
fn failed_forced_pull_keeps_the_old_machine() {
    let env = TestEnv::new();
    let site = Site::new();
    let old = Image::new(&env, Compression::Gzip);
    let new = Image::new(&env, Compression::Gzip);
    site.put("img/old.tar.gz", &old.bytes);
    // Cut mid-stream: the failure comes from unpacking, after staging has begun.
    site.put("img/broken.tar.gz", &new.bytes[..new.bytes.len() / 2]);
    env.sandbox(&["pull", "--verify=no", &site.url("img/old.tar.gz"), "box"])
        .success();

    env.sandbox(&[
        "pull",
        "--verify=no",
        "--force",
        &site.url("img/broken.tar.gz"),
        "box",
    ])
    .failure()
    .stderr_mentions(&["broken.tar.gz"]);

    old.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
}

#[test]
fn force_replaces_a_read_only_machine() {
    let env = TestEnv::new();
    let site = Site::new();
    let old = Image::new(&env, Compression::Gzip);
    let new = Image::new(&env, Compression::Gzip);
    site.put("img/old.tar.gz", &old.bytes);
    site.put("img/new.tar.gz", &new.bytes);
    let _cleanup = Immutable(env.machine("box"));
    env.sandbox(&[
        "pull",
        "--verify=no",
        "--read-only",
        &site.url("img/old.tar.gz"),
        "box",
    ])
    .success();

    env.sandbox(&[
        "pull",
        "--verify=no",
        "--force",
        &site.url("img/new.tar.gz"),
        "box",
    ])
    .success();

    new.assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
}
