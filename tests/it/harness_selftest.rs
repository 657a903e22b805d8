//! The harness checked against itself, so a failing pull test points at the binary and not at
//! a broken fixture: nginx serves ranges and 304s and logs them, gpg signatures verify,
//! GNU tar packs the tree as intended, and the raw tar writer produces archives GNU tar reads.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::nginx::{SLOW_RATE, http_get, parse_log_line};
use crate::harness::rawtar::RawTar;
use crate::harness::rootfs::{self, Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle};
use crate::harness::{env::TestEnv, require_tool, run_tool, sha256_hex};

#[test]
fn nginx_serves_ranges_and_not_modified_and_logs_them() {
    let site = Site::new();
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    site.put("img/file.bin", &data);
    let port = site.nginx.port();

    let full = http_get(port, "/img/file.bin", &[]).expect("GET");
    assert_eq!(full.status, 200);
    assert_eq!(full.body, data);
    let etag = full
        .header("ETag")
        .expect("nginx sends an ETag")
        .to_string();

    let part = http_get(port, "/img/file.bin", &[("Range", "bytes=4000-")]).expect("GET range");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &data[4000..]);

    let cached =
        http_get(port, "/img/file.bin", &[("If-None-Match", &etag)]).expect("GET conditional");
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    let log = site.nginx.log_for("/img/file.bin");
    assert_eq!(log.len(), 3, "log:\n{}", site.nginx.log_text());
    assert_eq!(
        (log[0].status, log[0].body_bytes, log[0].range.as_deref()),
        (200, 10_000, None)
    );
    assert_eq!((log[1].status, log[1].body_bytes), (206, 6000));
    assert_eq!(log[1].range.as_deref(), Some("bytes=4000-"));
    assert_eq!((log[2].status, log[2].body_bytes), (304, 0));
    // nginx escapes the quotes of an ETag in the log; compare without them.
    let logged = log[2]
        .if_none_match
        .as_deref()
        .expect("If-None-Match logged");
    assert_eq!(logged.replace("\\x22", "\""), etag);
    assert_eq!(site.nginx.body_bytes_for("/img/file.bin"), 16_000);
}

#[test]
fn nginx_slow_location_is_rate_limited_unless_ranged() {
    let site = Site::new();
    let data = vec![7u8; (SLOW_RATE / 2) as usize * 3];
    site.put("slow/file.bin", &data);
    let port = site.nginx.port();
    let started = std::time::Instant::now();
    let full = http_get(port, "/slow/file.bin", &[]).expect("GET slow");
    let slow = started.elapsed();
    assert_eq!(full.body, data);
    // 1.5 × the per-second rate cannot arrive in well under a second if the limit works.
    assert!(
        slow.as_millis() >= 400,
        "limit_rate had no effect: {slow:?}"
    );
    let started = std::time::Instant::now();
    let ranged = http_get(port, "/slow/file.bin", &[("Range", "bytes=1-")]).expect("GET ranged");
    assert_eq!(ranged.body, &data[1..]);
    assert!(
        started.elapsed() < slow,
        "a ranged request must not be rate limited"
    );
}

#[test]
fn log_lines_parse_absent_headers_as_none() {
    let entry = parse_log_line("GET\t/a\t200\t12\t-\t-\t-").expect("parses");
    assert_eq!(
        (entry.status, entry.body_bytes, entry.range),
        (200, 12, None)
    );
    assert!(parse_log_line("GET /a 200").is_none());
}

#[test]
fn gpg_signatures_verify_and_tampering_is_detected() {
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    assert_eq!(
        gpg.fingerprint().len(),
        40,
        "v4 fingerprint: {}",
        gpg.fingerprint()
    );
    let other = Gpg::new(KeyAlgo::Ed25519);
    assert_ne!(gpg.fingerprint(), other.fingerprint());
    let site = Site::new();
    site.put("d/image.tar", b"not really a tarball");
    let sums = site.sha256sums("d", &["image.tar"], SumStyle::Text);
    let text = std::fs::read_to_string(&sums).expect("reading SHA256SUMS");
    assert_eq!(
        text,
        format!("{}  image.tar\n", sha256_hex(b"not really a tarball"))
    );
    for armor in [false, true] {
        let sig = site.sign(&gpg, "d/SHA256SUMS", armor);
        let head = std::fs::read(&sig).expect("reading the signature");
        assert_eq!(head.starts_with(b"-----BEGIN PGP SIGNATURE-----"), armor);
        assert!(gpg.verifies(&sums, &sig));
    }
    assert!(
        gpg.export(true)
            .starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    );
    assert!(!gpg.export(false).starts_with(b"-----"));
    std::fs::write(&sums, text.replace("image.tar", "other.tar")).expect("tampering");
    assert!(!gpg.verifies(&sums, &site.path("d/SHA256SUMS.gpg")));
}

#[test]
fn sum_styles_match_the_three_line_forms() {
    let site = Site::new();
    site.put("x/a.tar", b"a");
    let hex = sha256_hex(b"a");
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).expect("reading sums");
    assert_eq!(
        read(site.sha256_file("x", "a.tar", SumStyle::Text)),
        format!("{hex}  a.tar\n")
    );
    assert_eq!(
        read(site.sha256sums("x", &["a.tar"], SumStyle::Binary)),
        format!("{hex} *a.tar\n")
    );
    assert_eq!(
        read(site.sha256sums("x", &["a.tar"], SumStyle::SingleSpace)),
        format!("{hex} a.tar\n")
    );
}

/// Breaks one property of an unpacked tree in place.
type Damage = fn(&std::path::Path);

/// `tar -tvv` listing of an archive, after decompressing with the real tool.
fn gnu_listing(archive: &[u8]) -> String {
    let tar = require_tool("tar");
    String::from_utf8(run_tool(
        Command::new(tar).args(["--numeric-owner", "-tvf", "-"]),
        Some(archive),
    ))
    .expect("tar lists UTF-8")
}

#[test]
fn rootfs_fixture_has_every_special_entry_in_every_compression() {
    let env = TestEnv::new();
    let spec = TreeSpec::new();
    let plain = rootfs::image(&env.scratch("tree"), &spec, Compression::None);
    for compression in Compression::ALL {
        let packed = compression.compress(&plain);
        // GNU tar's -a does not sniff stdin; decompress explicitly by the magic we expect.
        let magic_ok = match compression {
            Compression::None => packed[257..262] == *b"ustar",
            Compression::Gzip => packed.starts_with(&[0x1f, 0x8b]),
            Compression::Xz => packed.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Zstd => packed.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Bzip2 => packed.starts_with(b"BZh"),
        };
        assert!(magic_ok, "{compression:?} output has the wrong magic");
    }
    let listing = gnu_listing(&plain);
    let line = |needle: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in listing:\n{listing}"))
            .to_string()
    };
    assert!(line("./bin -> usr/bin").starts_with('l'));
    assert!(line("./usr/bin/su-test").starts_with("-rwsr-xr-x"));
    // Which of the two names carries the data depends on readdir order.
    assert!(
        listing.lines().any(|l| l.starts_with('h')
            && (l.ends_with("./usr/bin/hello-again link to ./usr/bin/hello")
                || l.ends_with("./usr/bin/hello link to ./usr/bin/hello-again"))),
        "no hardlink between usr/bin/hello and usr/bin/hello-again in listing:\n{listing}"
    );
    assert!(line("./run/initctl").starts_with('p'));
    assert!(line("./dev/null").starts_with("crw-rw-rw-"));
    assert!(line("./home/user/notes.txt").contains(" 1234/1234 "));
    // Unpacking with GNU tar reproduces what assert_tree checks: the fixture is self-consistent.
    let out = env.scratch("unpacked");
    run_tool(
        Command::new(require_tool("tar")).arg("-C").arg(&out).args([
            "--numeric-owner",
            "-xpf",
            "-",
        ]),
        Some(&plain),
    );
    rootfs::assert_tree(&out, &spec);

    // And the check bites: each of these damages is one an extractor could plausibly make.
    let damages: [(&str, Damage); 4] = [
        ("setuid bit dropped", |r| {
            std::fs::set_permissions(
                r.join("usr/bin/su-test"),
                std::fs::Permissions::from_mode(0o755),
            )
            .expect("chmod")
        }),
        ("owner lost", |r| {
            std::os::unix::fs::chown(r.join("home/user/notes.txt"), Some(0), Some(0))
                .expect("chown")
        }),
        ("hardlink copied", |r| {
            std::fs::remove_file(r.join("usr/bin/hello-again")).expect("rm");
            std::fs::copy(r.join("usr/bin/hello"), r.join("usr/bin/hello-again")).expect("cp");
        }),
        ("symlink followed", |r| {
            std::fs::remove_file(r.join("bin")).expect("rm");
            std::fs::create_dir(r.join("bin")).expect("mkdir");
        }),
    ];
    for (what, damage) in damages {
        let copy = env.scratch(&format!("damaged-{}", what.replace(' ', "-")));
        run_tool(
            Command::new(require_tool("tar"))
                .arg("-C")
                .arg(&copy)
                .args(["--numeric-owner", "-xpf", "-"]),
            Some(&plain),
        );
        damage(&copy);
        let caught = std::panic::catch_unwind(|| rootfs::assert_tree(&copy, &spec)).is_err();
        assert!(caught, "assert_tree missed: {what}");
    }
}

#[test]
fn raw_tar_archives_are_readable_by_gnu_tar() {
    let archive = RawTar::new()
        .dir("etc/")
        .file("etc/os-release", b"ID=raw\n")
        .symlink("escape", "/tmp/elsewhere")
        .hardlink("hl", "../outside/secret")
        .file("../../evil", b"x")
        .finish();
    let listing = gnu_listing(&archive);
    for needle in [
        "etc/os-release",
        "escape -> /tmp/elsewhere",
        "hl link to",
        "../../evil",
    ] {
        assert!(
            listing.contains(needle),
            "no {needle:?} in listing:\n{listing}"
        );
    }
    // GNU tar strips `../` from link names when listing; the header itself must keep it.
    assert!(archive.windows(17).any(|w| w == b"../outside/secret"));
}
