//! What goes over the wire, asserted from nginx's access log: a re-pull of an unchanged image
//! sends no image bytes, an interrupted download resumes with Range, two concurrent pulls of
//! one URL download it once, and `--offline` needs no server at all.

use std::time::{Duration, Instant};

use crate::harness::env::TestEnv;
use crate::harness::files_under;
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::nginx::LogEntry;
use crate::harness::rootfs::{Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle, uri};

fn gets(entries: Vec<LogEntry>) -> Vec<LogEntry> {
    entries.into_iter().filter(|e| e.method == "GET").collect()
}

#[test]
fn repull_unverified_sends_no_image_bytes() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let url = site.url("img/os.tar.gz");
    let path = uri("img/os.tar.gz");

    env.sandbox(&["pull", "--verify=no", &url, "one"]).success();
    assert_eq!(
        site.nginx.body_bytes_for(&path),
        image.len(),
        "{}",
        site.nginx.log_text()
    );
    let first = site.nginx.log_for(&path).len();

    env.sandbox(&["pull", "--verify=no", &url, "two"]).success();

    let log = site.nginx.log_for(&path);
    assert_eq!(
        site.nginx.body_bytes_for(&path),
        image.len(),
        "the second pull downloaded image bytes again:\n{}",
        site.nginx.log_text()
    );
    // Any request the second pull made must have been conditional and answered 304.
    for entry in &log[first..] {
        assert!(
            entry.method == "HEAD" || (entry.status == 304 && entry.body_bytes == 0),
            "second pull made an unconditional request: {entry:?}"
        );
    }
    image.assert_materialised(&env.machine("one"));
    image.assert_materialised(&env.machine("two"));
}

#[test]
fn repull_signed_sends_no_image_bytes() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let image = Image::new(&env, Compression::Xz);
    let url = site.publish_signed(&gpg, "img", "os.tar.xz", &image.bytes, false);
    let key = keyring(&env, &gpg, false);
    let path = uri("img/os.tar.xz");

    env.sandbox(&["pull", "--keyring", arg(&key), &url, "one"])
        .success();
    assert_eq!(
        site.nginx.body_bytes_for(&path),
        image.len(),
        "{}",
        site.nginx.log_text()
    );

    env.sandbox(&["pull", "--keyring", arg(&key), "--force", &url, "one"])
        .success();

    assert_eq!(
        site.nginx.body_bytes_for(&path),
        image.len(),
        "the second pull downloaded image bytes again:\n{}",
        site.nginx.log_text()
    );
    image.assert_materialised(&env.machine("one"));
}

#[test]
fn changed_image_is_downloaded_again() {
    // The other half of the conditional request: a new image under the same URL must win.
    let env = TestEnv::new();
    let site = Site::new();
    let old = Image::new(&env, Compression::Gzip);
    let new = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &old.bytes);
    let url = site.url("img/os.tar.gz");
    env.sandbox(&["pull", "--verify=no", &url, "one"]).success();
    // nginx's validators have one-second resolution: make sure the mtime moves.
    std::thread::sleep(Duration::from_millis(1100));
    site.put("img/os.tar.gz", &new.bytes);
    env.sandbox(&["pull", "--verify=no", &url, "two"]).success();
    old.assert_materialised(&env.machine("one"));
    new.assert_materialised(&env.machine("two"));
}

#[test]
fn interrupted_download_resumes_with_range() {
    let env = TestEnv::new();
    let site = Site::new();
    // Incompressible payload: at nginx's 64 KiB/s the download takes ~16 s unless resumed.
    let image = Image::from_spec(
        &env,
        TreeSpec::new().with_payload(1024 * 1024),
        Compression::Gzip,
    );
    site.put("slow/os.tar.gz", &image.bytes);
    site.sha256_file("slow", "os.tar.gz", SumStyle::Text);
    let url = site.url("slow/os.tar.gz");
    let path = uri("slow/os.tar.gz");
    const KILL_AFTER: u64 = 160 * 1024;

    let mut running = env.spawn(&["pull", "--verify=checksum", &url, "box"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let partial = loop {
        let biggest = files_under(&env.cache_tmp_dir())
            .into_iter()
            .map(|(_, len)| len)
            .max();
        if let Some(len) = biggest.filter(|&len| len >= KILL_AFTER) {
            break len;
        }
        assert!(
            running.is_running(),
            "the pull ended before it could be interrupted"
        );
        assert!(
            Instant::now() < deadline,
            "no partial download of {KILL_AFTER} bytes under {} within 30 s",
            env.cache_tmp_dir().display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = running.kill();
    assert!(
        partial < image.len(),
        "the download finished before the kill"
    );
    env.assert_machines(&[]);

    env.sandbox(&["pull", "--verify=checksum", &url, "box"])
        .success();

    image.assert_materialised(&env.machine("box"));
    let log = gets(site.nginx.log_for(&path));
    let resumed = log
        .iter()
        .find(|e| e.status == 206)
        .unwrap_or_else(|| panic!("no 206 response for {path}:\n{}", site.nginx.log_text()));
    let range = resumed
        .range
        .as_deref()
        .expect("a 206 answers a Range header");
    let start: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected Range header {range:?}"));
    // The binary may fall back to its last durable offset, never past what it had on disk.
    assert!(start > 0, "a Range from 0 is no resume: {range}");
    assert_eq!(
        resumed.body_bytes,
        image.len() - start,
        "{}",
        site.nginx.log_text()
    );
    assert!(
        !log.iter()
            .any(|e| e.status == 200 && e.body_bytes == image.len()),
        "the image was downloaded in full again:\n{}",
        site.nginx.log_text()
    );
}

/// Starts two pulls of `url` into `alpha` and `beta` at once and waits for both.
fn pull_twice_at_once(env: &TestEnv, args: &[&str], url: &str) {
    let with = |name: &'static str| {
        let mut all: Vec<&str> = vec!["pull"];
        all.extend_from_slice(args);
        all.extend([url, name]);
        env.spawn(&all)
    };
    let a = with("alpha");
    let b = with("beta");
    a.wait().success();
    b.wait().success();
}

#[test]
fn concurrent_signed_pulls_of_one_url_download_it_once() {
    let env = TestEnv::new();
    let site = Site::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let key = keyring(&env, &gpg, true);
    // ~1.5 s at the slow location's rate: long enough for the two pulls to overlap.
    let image = Image::from_spec(
        &env,
        TreeSpec::new().with_payload(96 * 1024),
        Compression::Gzip,
    );
    let url = site.publish_signed(&gpg, "slow", "os.tar.gz", &image.bytes, false);

    pull_twice_at_once(&env, &["--keyring", arg(&key)], &url);

    image.assert_materialised(&env.machine("alpha"));
    image.assert_materialised(&env.machine("beta"));
    env.assert_machines(&["alpha", "beta"]);
    assert_eq!(
        site.nginx.body_bytes_for(&uri("slow/os.tar.gz")),
        image.len(),
        "image bytes must cross the wire exactly once:\n{}",
        site.nginx.log_text()
    );
}

#[test]
fn concurrent_unverified_pulls_of_one_url_download_it_once() {
    // Without a checksum the waiting pull cannot look the blob up by digest; it must learn what
    // the first pull fetched (or ask conditionally) once the download lock is free. A slow
    // `.nspawn` keeps the first pull busy after the image is in, so the second pull takes the
    // lock while the first has not finished: the window a late ref write leaves open.
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::from_spec(
        &env,
        TreeSpec::new().with_payload(96 * 1024),
        Compression::Gzip,
    );
    site.put("slow/os.tar.gz", &image.bytes);
    let settings = format!(
        "[Exec]\nBoot=yes\n{}",
        "# padding to slow the transfer down\n".repeat(4000)
    );
    site.put("slow/os.nspawn", settings.as_bytes());
    let url = site.url("slow/os.tar.gz");

    pull_twice_at_once(&env, &["--verify=no"], &url);

    image.assert_materialised(&env.machine("alpha"));
    image.assert_materialised(&env.machine("beta"));
    env.assert_machines(&["alpha", "alpha.nspawn", "beta", "beta.nspawn"]);
    assert_eq!(
        site.nginx.body_bytes_for(&uri("slow/os.tar.gz")),
        image.len(),
        "image bytes must cross the wire exactly once:\n{}",
        site.nginx.log_text()
    );
}

#[test]
fn offline_pull_uses_the_cache_only() {
    let env = TestEnv::new();
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let key = keyring(&env, &gpg, true);
    let image = Image::new(&env, Compression::Zstd);
    let url = {
        let site = Site::new();
        let url = site.publish_signed(&gpg, "img", "os.tar.zst", &image.bytes, true);
        env.sandbox(&["pull", "--keyring", arg(&key), &url, "-"])
            .success();
        url
        // The site (and its nginx) is gone from here on: any request would fail.
    };

    env.sandbox(&["pull", "--offline", "--keyring", arg(&key), &url, "box"])
        .success();
    image.assert_materialised(&env.machine("box"));

    let never = url.replace("os.tar.zst", "never-pulled.tar.zst");
    env.sandbox(&["pull", "--offline", "--keyring", arg(&key), &never, "other"])
        .failure()
        .stderr_mentions(&["never-pulled.tar.zst"]);
    env.assert_machines(&["box"]);
}
