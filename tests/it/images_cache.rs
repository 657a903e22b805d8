//! `images:` pulls and the cache: server documents fresh for five minutes and used stale when
//! the server is down, `--offline` with no server at all, no second transfer of a build that is
//! cached, and rollback protection (`--allow-downgrade`).

use crate::harness::simplestreams::{BuildSpec, Published};
use crate::images::{Lxc, V1, V2, V3};

const PULL: [&str; 3] = ["--arch", "amd64", "images:debian/bookworm"];

#[test]
fn documents_are_fresh_for_a_while_then_fetched_again() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    assert_eq!(lxc.server.gets("streams/v1/index.json"), 1);
    assert_eq!(lxc.server.gets("streams/v1/images.json"), 1);

    // A newer build appears; within the fresh window the cached products file still rules.
    let newer = lxc.publish(BuildSpec::new(
        "Debian",
        "bookworm",
        "default",
        "amd64",
        "20240701_00:00",
    ));
    lxc.server.write_streams();
    lxc.pull(
        false,
        &["--force", "--arch", "amd64", "images:debian/bookworm"],
    )
    .success();
    s.default_amd64[2].assert_landed(&lxc.env.machine("debian-bookworm"));
    assert_eq!(
        lxc.server.gets("streams/v1/images.json"),
        1,
        "fresh: not asked again"
    );

    assert_eq!(
        lxc.age_cached_documents(),
        2,
        "index.json and images.json are cached"
    );
    lxc.pull(
        false,
        &["--force", "--arch", "amd64", "images:debian/bookworm"],
    )
    .success();
    newer.assert_landed(&lxc.env.machine("debian-bookworm"));
    assert_eq!(lxc.server.gets("streams/v1/images.json"), 2);
}

#[test]
fn stale_documents_are_used_with_a_warning_when_the_server_is_down() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    assert!(lxc.age_cached_documents() >= 2);
    lxc.server.stop();

    let out = lxc
        .pull(
            false,
            &["--force", "--arch", "amd64", "images:debian/bookworm"],
        )
        .success();
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("stale") || stderr.contains("cached copy"),
        "expected a warning about the stale cached index:\n{}",
        out.stderr
    );
    s.default_amd64[2].assert_landed(&lxc.env.machine("debian-bookworm"));
}

#[test]
fn stale_documents_with_checksum_mode_when_the_server_is_down() {
    // The same with --verify=checksum, which needs nothing from the build directory.
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    assert!(lxc.age_cached_documents() >= 2);
    lxc.server.stop();
    lxc.pull(
        false,
        &[
            "--verify=checksum",
            "--arch",
            "amd64",
            "images:debian/bookworm",
            "again",
        ],
    )
    .success()
    .stderr_mentions(&["cached copy"]);
    s.default_amd64[2].assert_landed(&lxc.env.machine("again"));
}

#[test]
fn without_a_cached_copy_a_dead_server_is_an_error() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.server.stop();
    lxc.pull(false, &PULL)
        .failure()
        .stderr_mentions(&["127.0.0.1"]);
    lxc.env.assert_machines(&[]);
}

#[test]
fn offline_needs_no_server() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    lxc.server.stop();
    let out = lxc
        .pull(
            true,
            &[
                "--offline",
                "--arch",
                "amd64",
                "images:debian/bookworm",
                "offline",
            ],
        )
        .success();
    s.default_amd64[2].assert_landed(&lxc.env.machine("offline"));
    // Offline verification is done again from the cached SHA256SUMS and signature.
    let json = out.json();
    assert_eq!(json["version"], V3);
    assert_eq!(
        json["verification"]["key_fingerprint"],
        lxc.key.fingerprint()
    );
}

#[test]
fn offline_without_a_cached_copy_fails() {
    let mut lxc = Lxc::new();
    lxc.standard();
    lxc.pull(
        false,
        &["--offline", "--arch", "amd64", "images:debian/bookworm"],
    )
    .failure()
    .stderr_mentions(&["--offline"]);
    lxc.env.assert_machines(&[]);
    // An empty $SANDBOX_IMAGES_SERVER is unset (as for build): the default server's cache is
    // asked, not "`` is not a valid URL".
    let out = lxc
        .env
        .sandbox_with_env(
            &[
                "pull",
                "--offline",
                "--arch",
                "amd64",
                "images:debian/bookworm",
            ],
            &[("SANDBOX_IMAGES_SERVER", "")],
        )
        .failure()
        .stderr_mentions(&["--offline", "not in the cache"]);
    assert!(!out.stderr.contains("valid image server"), "{}", out.stderr);
    assert!(
        lxc.server.nginx().log().is_empty(),
        "--offline touched the server:\n{}",
        lxc.server.nginx().log_text()
    );
}

#[test]
fn pulling_the_same_version_again_transfers_no_rootfs_bytes() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    let build = &s.default_amd64[2];
    lxc.pull(false, &PULL).success();
    assert_eq!(
        lxc.server.bytes_sent(&build.rootfs_rel()),
        build.rootfs.len() as u64
    );

    lxc.pull(
        false,
        &["--force", "--arch", "amd64", "images:debian/bookworm"],
    )
    .success();
    // Also after the fresh window, when the documents are fetched again.
    lxc.age_cached_documents();
    lxc.pull(
        false,
        &["--arch", "amd64", "images:debian/bookworm", "third"],
    )
    .success();
    assert_eq!(
        lxc.server.bytes_sent(&build.rootfs_rel()),
        build.rootfs.len() as u64,
        "the rootfs was sent again:\n{}",
        lxc.server.nginx().log_text()
    );
    build.assert_landed(&lxc.env.machine("debian-bookworm"));
    build.assert_landed(&lxc.env.machine("third"));
}

#[test]
fn an_older_version_than_the_last_pull_is_refused_unless_allowed() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    let older = format!("images:debian/bookworm@{V1}");

    lxc.pull(false, &["--force", "--arch", "amd64", &older])
        .failure()
        .stderr_mentions(&["downgrade", V1, V3, "--allow-downgrade"]);
    // The refused pull left the machine as it was.
    s.default_amd64[2].assert_landed(&lxc.env.machine("debian-bookworm"));
    assert_eq!(lxc.server.gets(&s.default_amd64[0].rootfs_rel()), 0);

    lxc.pull(
        false,
        &["--force", "--allow-downgrade", "--arch", "amd64", &older],
    )
    .success();
    s.default_amd64[0].assert_landed(&lxc.env.machine("debian-bookworm"));
}

#[test]
fn rollback_protection_is_per_arch() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &PULL).success();
    // arm64 was never pulled: its older V1 is no downgrade.
    lxc.pull(
        false,
        &[
            "--arch",
            "arm64",
            &format!("images:debian/bookworm@{V1}"),
            "arm",
        ],
    )
    .success();
    s.default_arm64[0].assert_landed(&lxc.env.machine("arm"));
    // A pin equal to the last pull is no downgrade either.
    lxc.pull(
        false,
        &[
            "--arch",
            "arm64",
            &format!("images:debian/bookworm@{V1}"),
            "arm2",
        ],
    )
    .success();
    // And a newer pin than the last one is fine.
    lxc.pull(
        false,
        &[
            "--arch",
            "arm64",
            &format!("images:debian/bookworm@{V2}"),
            "arm3",
        ],
    )
    .success();
    s.default_arm64[1].assert_landed(&lxc.env.machine("arm3"));
}

#[test]
fn a_legacy_re_pull_transfers_neither_rootfs_nor_metadata() {
    let mut lxc = Lxc::new();
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    lxc.server.write_legacy_index("index-system", &[&b]);
    lxc.pull(false, &PULL).success();
    let meta = format!("{}meta.tar.xz", b.spec.dir());
    let sent = |rel: &str| lxc.server.bytes_sent(rel);
    let first = (sent(&b.rootfs_rel()), sent(&meta));
    assert_eq!(first.0, b.rootfs.len() as u64);

    lxc.pull(
        false,
        &["--arch", "amd64", "images:debian/bookworm", "again"],
    )
    .success();
    b.assert_landed(&lxc.env.machine("again"));
    assert_eq!(
        (sent(&b.rootfs_rel()), sent(&meta)),
        first,
        "the same build was transferred again:\n{}",
        lxc.server.nginx().log_text()
    );
}

/// A legacy server (no streams/) with one build, pulled once.
fn legacy_pulled() -> (Lxc, Published) {
    let mut lxc = Lxc::new();
    let b = lxc.publish(BuildSpec::new("Debian", "bookworm", "default", "amd64", V1));
    lxc.server.write_legacy_index("index-system", &[&b]);
    lxc.pull(false, &PULL).success();
    (lxc, b)
}

#[test]
fn offline_works_for_a_legacy_server() {
    let (mut lxc, b) = legacy_pulled();
    lxc.server.stop();
    lxc.pull(
        false,
        &[
            "--offline",
            "--arch",
            "amd64",
            "images:debian/bookworm",
            "offline",
        ],
    )
    .success();
    b.assert_landed(&lxc.env.machine("offline"));
}

#[test]
fn a_stale_legacy_index_is_used_when_the_server_is_down() {
    let (mut lxc, b) = legacy_pulled();
    assert!(lxc.age_cached_documents() >= 1);
    lxc.server.stop();
    lxc.pull(
        false,
        &[
            "--verify=checksum",
            "--arch",
            "amd64",
            "images:debian/bookworm",
            "stale",
        ],
    )
    .success()
    .stderr_mentions(&["cached copy"]);
    b.assert_landed(&lxc.env.machine("stale"));
}
