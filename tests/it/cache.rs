//! The content-addressed cache as seen from outside: its layout, `cache fsck` finding and
//! removing a corrupted blob, `cache gc` keeping what refs use, `cache ls --json`, and a
//! corrupted blob being treated as a miss by the next pull.

use crate::harness::env::TestEnv;
use crate::harness::fixture::Image;
use crate::harness::rootfs::Compression;
use crate::harness::site::{Site, uri};

/// Pulls a fresh image into the cache only (`-`) and returns it with its site.
fn cached_image(env: &TestEnv) -> (Site, Image, String) {
    let site = Site::new();
    let image = Image::new(env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let url = site.url("img/os.tar.gz");
    env.sandbox(&["pull", "--verify=no", &url, "-"]).success();
    assert!(
        env.blobs().contains(&image.hex()),
        "blob {} not cached: {:?}",
        image.hex(),
        env.blobs()
    );
    (site, image, url)
}

/// Overwrites the first bytes of the image's blob, keeping its length.
fn corrupt_blob(env: &TestEnv, hex: &str) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let path = env.blobs_dir().join(hex);
    // The blob may be read-only on disk; root writes it anyway.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    file.seek(SeekFrom::Start(0)).expect("seek");
    file.write_all(b"CORRUPTED BY THE TEST")
        .expect("overwriting the blob");
}

#[test]
fn cache_is_tagged_and_laid_out_as_documented() {
    let env = TestEnv::new();
    let _ = cached_image(&env);
    let tag = std::fs::read_to_string(env.cache_dir().join("CACHEDIR.TAG"))
        .expect("reading CACHEDIR.TAG");
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "CACHEDIR.TAG lacks the standard signature: {tag:?}"
    );
    for dir in ["v1/blobs/sha256", "v1/refs", "v1/tmp"] {
        assert!(env.cache_dir().join(dir).is_dir(), "no {dir} in the cache");
    }
    // Every blob is named by the digest of its content.
    for hex in env.blobs() {
        let data = std::fs::read(env.blobs_dir().join(&hex)).expect("reading a blob");
        assert_eq!(
            crate::harness::sha256_hex(&data),
            hex,
            "blob named {hex} holds other bytes"
        );
    }
}

#[test]
fn fsck_reports_and_removes_a_corrupted_blob() {
    let env = TestEnv::new();
    let (_site, image, _url) = cached_image(&env);
    env.sandbox(&["cache", "fsck"]).success();

    corrupt_blob(&env, &image.hex());
    let out = env.sandbox(&["cache", "fsck"]).failure();
    assert!(
        out.stdout.contains(&image.hex()) || out.stderr.contains(&image.hex()),
        "fsck does not name blob {}:\nstdout: {}\nstderr: {}",
        image.hex(),
        out.stdout,
        out.stderr
    );
    assert!(
        !env.blobs().contains(&image.hex()),
        "fsck left the corrupted blob in place"
    );

    env.sandbox(&["cache", "fsck"]).success();
}

#[test]
fn corrupted_blob_is_a_miss_for_the_next_pull() {
    let env = TestEnv::new();
    let (site, image, url) = cached_image(&env);
    corrupt_blob(&env, &image.hex());

    env.sandbox(&["pull", "--verify=no", &url, "box"]).success();

    image.assert_materialised(&env.machine("box"));
    assert_eq!(
        site.nginx.body_bytes_for(&uri("img/os.tar.gz")),
        2 * image.len(),
        "the corrupted blob must be fetched again in full:\n{}",
        site.nginx.log_text()
    );
    let blob =
        std::fs::read(env.blobs_dir().join(image.hex())).expect("reading the re-fetched blob");
    assert!(blob == image.bytes, "the cache still holds corrupted bytes");
}

#[test]
fn gc_keeps_blobs_that_refs_use() {
    let env = TestEnv::new();
    let (_site, image, _url) = cached_image(&env);
    // A stray blob no ref names: gc must remove it (and only it).
    let stray = b"nobody refers to me";
    let stray_hex = crate::harness::sha256_hex(stray);
    std::fs::write(env.blobs_dir().join(&stray_hex), stray).expect("writing a stray blob");

    env.sandbox(&["cache", "gc"]).success();

    let blobs = env.blobs();
    assert!(
        blobs.contains(&image.hex()),
        "gc removed a blob in use: {blobs:?}"
    );
    assert!(
        !blobs.contains(&stray_hex),
        "gc kept an unreferenced blob: {blobs:?}"
    );
}

#[test]
fn cache_ls_json_lists_the_pulled_image() {
    let env = TestEnv::new();
    let (_site, image, url) = cached_image(&env);
    let out = env.sandbox(&["cache", "ls", "--json"]).success();
    // One JSON document, or one per line: either way every value must parse.
    let text = match serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
        Ok(value) => value.to_string(),
        Err(_) => out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .unwrap_or_else(|e| panic!("cache ls --json printed non-JSON {l:?}: {e}"))
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert!(
        text.contains(&image.hex()),
        "cache ls --json does not list {}: {text}",
        image.hex()
    );
    assert!(
        text.contains(&url),
        "cache ls --json does not name the source {url}: {text}"
    );
}

#[test]
fn cache_rm_removes_the_ref_and_only_its_blobs() {
    let env = TestEnv::new();
    let (site, kept, kept_url) = cached_image(&env);
    let gone = Image::new(&env, Compression::Gzip);
    site.put("img/gone.tar.gz", &gone.bytes);
    let gone_url = site.url("img/gone.tar.gz");
    env.sandbox(&["pull", "--verify=no", &gone_url, "-"])
        .success();

    env.sandbox(&["cache", "rm", &gone_url]).success();

    let blobs = env.blobs();
    assert!(
        !blobs.contains(&gone.hex()),
        "cache rm left the ref's blob: {blobs:?}"
    );
    assert!(
        blobs.contains(&kept.hex()),
        "cache rm removed another ref's blob: {blobs:?}"
    );
    let listing = env.sandbox(&["cache", "ls", "--json"]).success().stdout;
    assert!(
        !listing.contains(&gone_url),
        "cache ls still lists {gone_url}: {listing}"
    );
    assert!(
        listing.contains(&kept_url),
        "cache ls lost {kept_url}: {listing}"
    );

    env.sandbox(&["cache", "rm", &gone_url])
        .failure()
        .stderr_mentions(&[&gone_url]);
}

#[test]
fn gc_removes_stale_partial_downloads_only() {
    let env = TestEnv::new();
    let _ = cached_image(&env);
    let tmp = env.cache_tmp_dir();
    let stale = tmp.join("download-00000000000000aa.part");
    let fresh = tmp.join("download-00000000000000bb.part");
    std::fs::write(&stale, b"old partial").expect("writing a stale partial");
    std::fs::write(&fresh, b"new partial").expect("writing a fresh partial");
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .and_then(|f| f.set_modified(two_days_ago))
        .expect("backdating the stale partial");

    env.sandbox(&["cache", "gc"]).success();

    assert!(
        !stale.exists(),
        "gc kept a partial download older than a day"
    );
    assert!(
        fresh.exists(),
        "gc removed a partial download that may still be resumed"
    );
}

#[test]
fn gc_removes_what_a_dead_process_left_in_tmp_at_once_but_keeps_resumable_partials() {
    let env = TestEnv::new();
    let _ = cached_image(&env);
    let tmp = env.cache_tmp_dir();
    // What a killed pull leaves: a temp blob, an atomic write's temp file, an extracted archive.
    let temp_blob = tmp.join("blob-00000000000000cc.tmp");
    let archive = tmp.join("oci-archive-00000000000000dd");
    std::fs::write(&temp_blob, b"half a blob").unwrap();
    std::fs::create_dir_all(archive.join("blobs/sha256")).unwrap();
    std::fs::write(archive.join("index.json"), b"{}").unwrap();
    let partial =
        tmp.join("partial-0000000000000000000000000000000000000000000000000000000000000000.part");
    let record = tmp.join("download-00000000000000ee.json");
    std::fs::write(&partial, b"resumable").unwrap();
    std::fs::write(&record, b"{}").unwrap();

    env.sandbox(&["cache", "gc"]).success();

    assert!(!temp_blob.exists(), "a dead process's temp blob stays");
    assert!(
        !archive.exists(),
        "a dead process's extracted archive stays"
    );
    assert!(
        partial.exists() && record.exists(),
        "a resumable partial was removed"
    );
    env.sandbox(&["cache", "fsck"]).success();
}
