//! `sandbox images --remote`: what a generated simplestreams server, a legacy server and the
//! real images.linuxcontainers.org products file (fixture) offer; and `sandbox images`: what
//! the cache holds after a pull.

use serde_json::{Value, json};

use crate::harness::simplestreams::ImageServer;
use crate::images::{Lxc, V1, V2, V3};

fn remote(lxc: &Lxc, extra: &[&str]) -> Value {
    let server = lxc.server.server();
    let mut args = vec!["--json", "images", "--remote", "--images-server", &server];
    args.extend(extra);
    lxc.env.sandbox(&args).success().json()
}

fn row(alias: &str, variant: &str, arch: &str, version: &str, size: usize) -> Value {
    json!({
        "alias": alias,
        "os": "Debian",
        "release": "bookworm",
        "variant": variant,
        "arch": arch,
        "newest_version": version,
        "size": size,
    })
}

#[test]
fn lists_what_a_simplestreams_server_offers() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    let size = |b: &crate::harness::simplestreams::Published| b.rootfs.len();
    // The shortest published alias names a product; without aliases, os/release/variant.
    // amd64 default: V4 has no rootfs, so V3 is the newest pullable build.
    let want = json!([
        row(
            "debian/12/cloud",
            "cloud",
            "amd64",
            V2,
            size(&s.cloud_amd64[1])
        ),
        row(
            "debian/12/cloud",
            "cloud",
            "arm64",
            V1,
            size(&s.cloud_arm64[0])
        ),
        row(
            "debian/bookworm/default",
            "default",
            "amd64",
            V3,
            size(&s.default_amd64[2])
        ),
        row(
            "debian/bookworm/default",
            "default",
            "arm64",
            V2,
            size(&s.default_arm64[1])
        ),
    ]);
    assert_eq!(remote(&lxc, &[]), want);

    let arm = remote(&lxc, &["--arch", "aarch64"]);
    assert_eq!(
        arm,
        json!([want[1], want[3]]),
        "--arch filters, in any spelling"
    );
    let filtered = remote(&lxc, &["12/cloud"]);
    assert_eq!(
        filtered,
        json!([want[0], want[1]]),
        "FILTER matches aliases"
    );
}

#[test]
fn lists_as_a_table_without_json() {
    let mut lxc = Lxc::new();
    lxc.standard();
    let server = lxc.server.server();
    let out = lxc
        .env
        .sandbox(&[
            "images",
            "--remote",
            "--images-server",
            &server,
            "--arch",
            "amd64",
        ])
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two rows:\n{}", out.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["ALIAS", "ARCH", "VARIANT", "VERSION", "SIZE"]);
    let cloud: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cloud[..4], ["debian/12/cloud", "amd64", "cloud", V2]);
    let default: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        &default[..4],
        ["debian/bookworm/default", "amd64", "default", V3]
    );
}

#[test]
fn lists_what_a_legacy_server_offers() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    let all: Vec<_> = s
        .default_amd64
        .iter()
        .filter(|b| b.spec.has_rootfs)
        .chain(&s.default_arm64)
        .chain(&s.cloud_amd64)
        .collect();
    // The same builds, listed only by the legacy index: no streams/ on this server.
    lxc.server.remove("streams/v1/index.json");
    lxc.server.write_legacy_index("index-system", &all);
    let got = remote(&lxc, &[]);
    let want = json!([
        {"alias": "debian/bookworm", "os": "debian", "release": "bookworm", "variant": "default",
         "arch": "amd64", "newest_version": V3, "size": 0},
        {"alias": "debian/bookworm", "os": "debian", "release": "bookworm", "variant": "default",
         "arch": "arm64", "newest_version": V2, "size": 0},
        {"alias": "debian/bookworm/cloud", "os": "debian", "release": "bookworm", "variant": "cloud",
         "arch": "amd64", "newest_version": V2, "size": 0},
    ]);
    assert_eq!(got, want);
    assert_eq!(lxc.server.gets("meta/1.0/index-system"), 1);
}

#[test]
fn lists_the_real_linuxcontainers_products_file() {
    let lxc = Lxc::with_server(ImageServer::new());
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/simplestreams/linuxcontainers-images-2023-04.json");
    let text = std::fs::read_to_string(&fixture)
        .unwrap_or_else(|e| panic!("reading {}: {e}", fixture.display()));
    let products: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    lxc.server.write_products(&products);
    let rows = remote(&lxc, &["--arch", "amd64"]);
    let rows = rows.as_array().expect("a JSON array");

    // One row per amd64 product of the fixture, every one of them pullable.
    let mut want_products: Vec<(String, String, String)> = products["products"]
        .as_object()
        .expect("products")
        .values()
        .filter(|p| p["arch"] == "amd64")
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("os"), s("release"), s("variant"))
        })
        .collect();
    want_products.sort();
    let mut got_products: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("os"), s("release"), s("variant"))
        })
        .collect();
    got_products.sort();
    assert_eq!(got_products, want_products);
    assert!(rows.iter().all(|r| r["arch"] == "amd64"));

    // Expected values from tests/fixtures/README.md.
    let cloud = rows
        .iter()
        .find(|r| r["os"] == "Debian" && r["release"] == "bookworm" && r["variant"] == "cloud")
        .unwrap_or_else(|| panic!("no debian/bookworm/cloud row: {rows:?}"));
    assert_eq!(cloud["newest_version"], "20230424_07:54");
    assert_eq!(cloud["size"], 113660388);
    assert_eq!(cloud["alias"], "debian/12/cloud");
}

#[test]
fn lists_the_cached_images() {
    let mut lxc = Lxc::new();
    let s = lxc.standard();
    lxc.pull(false, &["--arch", "amd64", "images:debian/12/cloud"])
        .success();
    lxc.pull(false, &["--arch", "arm64", "images:debian/bookworm", "arm"])
        .success();
    let out = lxc.env.sandbox(&["--json", "images"]).success();
    let rows = out.json();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let find = |source: &str, arch: &str| {
        rows.iter()
            .find(|r| r["source"] == source && r["arch"] == arch)
            .unwrap_or_else(|| panic!("no row for {source} {arch}: {rows:?}"))
    };
    let cloud = find("images:debian/12/cloud", "amd64");
    assert_eq!(cloud["version"], V2);
    assert_eq!(cloud["variant"], "cloud");
    assert_eq!(cloud["size"], s.cloud_amd64[1].rootfs.len());
    assert_eq!(cloud["verification"], "signature");
    assert_eq!(cloud["key_fingerprint"], lxc.key.fingerprint());
    assert!(
        cloud["server"]
            .as_str()
            .is_some_and(|u| u.starts_with(&lxc.server.server())),
        "{cloud}"
    );
    let arm = find("images:debian/bookworm", "arm64");
    assert_eq!(arm["version"], V2);
    assert_eq!(arm["size"], s.default_arm64[1].rootfs.len());

    let only_arm = lxc
        .env
        .sandbox(&["--json", "images", "--arch", "arm64"])
        .success()
        .json();
    assert_eq!(only_arm.as_array().map(Vec::len), Some(1), "{only_arm}");
}
