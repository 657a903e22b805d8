use serde_json::{Value, json};

use super::*;
use crate::digest::Digest;

/// An item as a newer server generation publishes it; its bytes stand for real content.
fn item(ftype: &str, path: &str, content: &[u8]) -> Value {
    let sha256 = Digest::of(content).hex();
    json!({ "ftype": ftype, "path": path, "sha256": sha256, "size": content.len() })
}

/// A products file keyed the Incus way (`rootfs.tar.xz`, `incus.tar.xz`), with the newest build
/// still incomplete (metadata uploaded, rootfs not yet), a malformed version key, and the arch
/// spelled the kernel way.
fn incus_generation() -> Value {
    let path = |v: &str, file: &str| format!("images/alpine/edge/amd64/default/{v}/{file}");
    let build = |v: &str| {
        let meta = item(
            "incus.tar.xz",
            &path(v, "incus.tar.xz"),
            format!("meta {v}").as_bytes(),
        );
        let rootfs = item(
            "root.tar.xz",
            &path(v, "rootfs.tar.xz"),
            format!("rootfs {v}").as_bytes(),
        );
        let squashfs = item("squashfs", &path(v, "rootfs.squashfs"), b"sq");
        json!({ "items": {
            "incus.tar.xz": meta, "rootfs.tar.xz": rootfs, "rootfs.squashfs": squashfs } })
    };
    let incomplete = "20240604_13:00";
    let meta_only = item("incus.tar.xz", &path(incomplete, "incus.tar.xz"), b"m");
    json!({
        "content_id": "images", "datatype": "image-downloads", "format": "products:1.0",
        "products": { "alpine:edge:amd64:default": {
            "aliases": "alpine/edge/default, alpine/edge", "arch": "x86_64", "os": "Alpine",
            "release": "edge", "release_title": "edge", "variant": "default", "requirements": {},
            "versions": {
                "20240601_13:00": build("20240601_13:00"),
                "20240603_13:00": build("20240603_13:00"),
                "20240602_13:00": build("20240602_13:00"),
                incomplete: { "items": { "incus.tar.xz": meta_only } },
                "latest": build("latest"),
            }
        }}
    })
}

#[test]
fn newer_item_keys_and_incomplete_newest_build() {
    let products = parse_products(&incus_generation().to_string()).unwrap();
    let c = choose(&products, &alias("alpine/edge"), "amd64").unwrap();
    assert_eq!(
        c.version, "20240603_13:00",
        "newest complete build, not the incomplete 20240604"
    );
    assert_eq!(c.arch, "amd64");
    assert_eq!(c.rootfs.key, "rootfs.tar.xz");
    assert_eq!(c.rootfs.ftype, "root.tar.xz");
    assert_eq!(c.rootfs.sha256, Digest::of(b"rootfs 20240603_13:00"));
    assert_eq!(c.rootfs.size, "rootfs 20240603_13:00".len() as u64);
    let meta = c.metadata.unwrap();
    assert_eq!(
        (meta.key.as_str(), meta.ftype.as_str()),
        ("incus.tar.xz", "incus.tar.xz")
    );
    assert_eq!(meta.sha256, Digest::of(b"meta 20240603_13:00"));

    let err = choose(&products, &alias("alpine/edge@20240604_13:00"), "amd64").unwrap_err();
    assert_eq!(
        err,
        ChooseError::NoRootfs {
            product: "alpine:edge:amd64:default".into(),
            version: Some("20240604_13:00".into())
        }
    );
    let c = choose(&products, &alias("alpine/edge@20240601_13:00"), "x86_64").unwrap();
    assert_eq!(
        c.rootfs.path,
        "images/alpine/edge/amd64/default/20240601_13:00/rootfs.tar.xz"
    );

    let listed = list_remote(&products, Some("amd64"), None);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0],
        RemoteImage {
            alias: "alpine/edge".into(),
            os: "Alpine".into(),
            release: "edge".into(),
            variant: "default".into(),
            arch: "amd64".into(),
            newest_version: "20240603_13:00".into(),
            size: "rootfs 20240603_13:00".len() as u64,
        }
    );
}

#[test]
fn hostile_or_broken_items_are_refused_when_chosen() {
    type Case = (&'static str, Value, fn(&InvalidItem) -> bool);
    let cases: [Case; 6] = [
        (
            "path",
            json!("https://elsewhere.example/rootfs.tar.xz"),
            |e| matches!(e, InvalidItem::Path(_)),
        ),
        ("path", json!("images/../../etc/rootfs.tar.xz"), |e| {
            matches!(e, InvalidItem::Path(_))
        }),
        ("path", json!("/rootfs.tar.xz"), |e| {
            matches!(e, InvalidItem::Path(_))
        }),
        ("sha256", json!("abc"), |e| {
            matches!(e, InvalidItem::BadDigest { .. })
        }),
        ("sha256", Value::Null, |e| *e == InvalidItem::NoSha256),
        ("size", json!(0), |e| *e == InvalidItem::ZeroSize),
    ];
    for (field, value, is_expected) in cases {
        let mut doc = incus_generation();
        let rootfs = &mut doc["products"]["alpine:edge:amd64:default"]["versions"]["20240603_13:00"]
            ["items"]["rootfs.tar.xz"];
        rootfs[field] = value.clone();
        let products = parse_products(&doc.to_string()).expect("a bad item must not break parsing");
        match choose(&products, &alias("alpine/edge"), "amd64") {
            Err(ChooseError::InvalidItem {
                product,
                version,
                key,
                source,
            }) => {
                assert_eq!(
                    (product.as_str(), version.as_str(), key.as_str()),
                    (
                        "alpine:edge:amd64:default",
                        "20240603_13:00",
                        "rootfs.tar.xz"
                    )
                );
                assert!(is_expected(&source), "{field}={value}: {source:?}");
            }
            other => panic!("{field}={value}: {other:?}"),
        }
    }
}

#[test]
fn relative_paths() {
    let ok = [
        "images/debian/bookworm/amd64/cloud/20230424_07:54/rootfs.tar.xz",
        "streams/v1/images.json",
        "a",
    ];
    for p in ok {
        assert_eq!(check_relative_path(p), Ok(()), "{p}");
    }
    let bad = [
        "",
        "/etc/passwd",
        "//evil.example/x",
        "http://evil.example/x",
        "c:/x",
        "a/../b",
        "../a",
        "a/./b",
        "a//b",
        "a/",
        "a\\b",
        "a?b",
        "a#b",
        "a%2e%2e/b",
        "a\nb",
    ];
    for p in bad {
        assert!(check_relative_path(p).is_err(), "{p:?} must be refused");
    }
}

#[test]
fn same_fields_twice_is_ambiguous() {
    let product = |arch: &str| {
        json!({ "os": "Debian", "release": "bookworm", "arch": arch, "versions": {
            "20240601_05:24": { "items": { "root.tar.xz": item("root.tar.xz", "r", b"r") } } } })
    };
    let (a, b, c) = (product("amd64"), product("x86_64"), product("arm64"));
    let doc = json!({ "products": { "a": a, "b": b, "c": c } });
    let products = parse_products(&doc.to_string()).unwrap();
    let err = choose(&products, &alias("debian/bookworm"), "amd64").unwrap_err();
    assert_eq!(
        err,
        ChooseError::Ambiguous {
            alias: "debian/bookworm".into(),
            arch: "amd64".into(),
            products: vec!["a".into(), "b".into()]
        }
    );
    assert_eq!(
        choose(&products, &alias("debian/bookworm"), "aarch64")
            .unwrap()
            .product,
        "c"
    );
}

#[test]
fn index_points_at_products() {
    // The shape images.linuxcontainers.org serves.
    let lxc = json!({ "format": "index:1.0", "index": { "images": {
        "datatype": "image-downloads", "path": "streams/v1/images.json", "format": "products:1.0",
        "products": ["debian:bookworm:amd64:cloud"],
        "updated": "Mon, 24 Apr 2023 10:00:00 +0000" } } });
    assert_eq!(
        products_path(&parse_index(&lxc.to_string()).unwrap()).unwrap(),
        "streams/v1/images.json"
    );

    let entry = |datatype: &str, path: &str| json!({ "datatype": datatype, "path": path });
    let one_download = json!({ "index": {
        "com.ubuntu.cloud:released:aws": entry("image-ids", "streams/v1/aws.json"),
        "com.ubuntu.cloud:released:download":
            entry("image-downloads", "streams/v1/download.json") } });
    assert_eq!(
        products_path(&parse_index(&one_download.to_string()).unwrap()).unwrap(),
        "streams/v1/download.json"
    );

    let two = json!({ "index": {
        "images": entry("image-downloads", "streams/v1/images.json"),
        "older": entry("image-downloads", "streams/v1/older.json") } });
    assert_eq!(
        products_path(&parse_index(&two.to_string()).unwrap()).unwrap(),
        "streams/v1/images.json"
    );

    let (x, y) = (
        entry("image-downloads", "x.json"),
        entry("image-downloads", "y.json"),
    );
    let ambiguous = json!({ "index": { "x": x, "y": y } });
    let err = products_path(&parse_index(&ambiguous.to_string()).unwrap()).unwrap_err();
    assert!(
        matches!(&err, StreamsError::AmbiguousImageDownloads { entries } if entries == &["x", "y"]),
        "{err:?}"
    );

    let none = json!({ "index": { "aws": entry("image-ids", "aws.json") } });
    let err = products_path(&parse_index(&none.to_string()).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "simplestreams index has no entry with datatype \"image-downloads\" \
         (entries: aws (image-ids))"
    );

    let elsewhere = entry("image-downloads", "https://evil.example/images.json");
    let hostile = json!({ "index": { "images": elsewhere } });
    assert!(matches!(
        products_path(&parse_index(&hostile.to_string()).unwrap()),
        Err(StreamsError::IndexPath { .. })
    ));

    assert!(matches!(
        parse_index(r#"{"format": "index:2.0", "index": {}}"#),
        Err(StreamsError::Format { .. })
    ));
    assert!(matches!(
        parse_index("<html>"),
        Err(StreamsError::Json { .. })
    ));
    assert!(matches!(
        parse_products(r#"{"format": "products:2.0"}"#),
        Err(StreamsError::Format { .. })
    ));
    assert!(matches!(
        parse_products(r#"{"products": {"a": {"versions": 3}}}"#),
        Err(StreamsError::Json { .. })
    ));
}
