use serde_json::Value;

use super::*;
use crate::digest::Digest;

#[test]
fn every_real_product_and_item_parses() {
    for (file, json) in [
        ("linuxcontainers", LXC_IMAGES),
        ("ubuntu-minimal", UBUNTU_MINIMAL),
    ] {
        let products = parse_products(json).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(!products.products.is_empty(), "{file}: no products");
        let mut items = 0;
        for (id, p) in &products.products {
            assert!(
                !p.os.is_empty() && !p.release.is_empty() && !p.arch.is_empty(),
                "{file} {id}: {p:?}"
            );
            assert!(!p.aliases.is_empty(), "{file} {id}: no aliases");
            assert!(!p.versions.is_empty(), "{file} {id}: no versions");
            for (v, build) in &p.versions {
                ImageVersion::parse(v).unwrap_or_else(|e| panic!("{file} {id}: {e}"));
                for (key, raw) in &build.items {
                    let item = raw
                        .to_item(key)
                        .unwrap_or_else(|e| panic!("{file} {id} {v} {key}: {e}"));
                    assert_eq!(item.sha256.hex().len(), 64);
                    assert_eq!(
                        Some(item.sha256.hex()),
                        raw.sha256.as_ref().map(|s| s.to_ascii_lowercase())
                    );
                    assert!(item.size > 0);
                    items += 1;
                }
            }
        }
        // Counted independently of serde: every item has exactly one "ftype" key.
        assert_eq!(
            items,
            json.matches("\"ftype\"").count(),
            "{file}: items lost in parsing"
        );
    }
}

#[test]
fn real_products_keep_their_fields() {
    let products = lxc();
    assert_eq!(products.products.len(), 7);
    let cloud = &products.products["debian:bookworm:amd64:cloud"];
    assert_eq!(cloud.aliases, ["debian/bookworm/cloud", "debian/12/cloud"]);
    assert_eq!(
        (
            cloud.os.as_str(),
            cloud.release.as_str(),
            cloud.variant.as_str()
        ),
        ("Debian", "bookworm", "cloud")
    );
    assert_eq!(cloud.release_title.as_deref(), Some("bookworm"));
    let build = &cloud.versions["20230424_07:54"];
    let (key, rootfs) = build.rootfs().expect("rootfs item");
    let rootfs = rootfs.to_item(key).unwrap();
    assert_eq!(rootfs.key, "root.tar.xz");
    assert_eq!(
        rootfs.sha256,
        Digest::from_hex("cad33e525169bebfad1ca0473f9054fa08700826aefc8e7478c58ca377e14299")
            .unwrap()
    );
    assert_eq!(rootfs.size, 113660388);
    assert_eq!(
        rootfs.path,
        "images/debian/bookworm/amd64/cloud/20230424_07:54/rootfs.tar.xz"
    );
    let (key, meta) = build.metadata().expect("metadata item");
    assert_eq!(key, "lxd.tar.xz");
    assert_eq!(
        meta.to_item(key)
            .unwrap()
            .combined_rootxz_sha256
            .map(|d| d.hex())
            .as_deref(),
        Some("f71bd3dd801377399a0f00580a042fe515691c4500301a12fcbf45ebd17acf7a")
    );

    let ubuntu = parse_products(UBUNTU_MINIMAL).unwrap();
    let xenial = &ubuntu.products["com.ubuntu.cloud:minimal:16.04:amd64"];
    assert_eq!(xenial.aliases, ["16.04", "x", "xenial"]);
    assert_eq!(
        xenial.variant, "default",
        "products without a variant are the default variant"
    );
    assert_eq!(xenial.version.as_deref(), Some("16.04"));
}

#[test]
fn chooses_real_images() {
    let products = lxc();
    // (alias, arch) → (product, newest build with a rootfs, as published)
    let table = [
        (
            "debian/bookworm",
            "amd64",
            "debian:bookworm:amd64:default",
            "20230424_09:22",
        ),
        (
            "debian/12",
            "amd64",
            "debian:bookworm:amd64:default",
            "20230424_09:22",
        ),
        (
            "debian/bookworm/default",
            "x86_64",
            "debian:bookworm:amd64:default",
            "20230424_09:22",
        ),
        (
            "debian/bookworm/cloud",
            "amd64",
            "debian:bookworm:amd64:cloud",
            "20230424_07:54",
        ),
        (
            "debian/12/cloud",
            "amd64",
            "debian:bookworm:amd64:cloud",
            "20230424_07:54",
        ),
        (
            "debian/bookworm",
            "arm64",
            "debian:bookworm:arm64:default",
            "20230424_07:53",
        ),
        (
            "debian/bookworm/cloud",
            "aarch64",
            "debian:bookworm:arm64:cloud",
            "20230424_08:24",
        ),
        // Field rule: `os` is "Debian" on this server, and the rule ignores case.
        (
            "Debian/bookworm",
            "amd64",
            "debian:bookworm:amd64:default",
            "20230424_09:22",
        ),
        (
            "busybox/1.34.1",
            "amd64",
            "busybox:1.34.1:amd64:default",
            "20230424_07:54",
        ),
        (
            "almalinux/8/cloud",
            "amd64",
            "almalinux:8:amd64:cloud",
            "20230423_23:53",
        ),
    ];
    for (a, arch, product, version) in table {
        let c = choose(&products, &alias(a), arch).unwrap_or_else(|e| panic!("{a} {arch}: {e}"));
        assert_eq!(
            (c.product.as_str(), c.version.as_str()),
            (product, version),
            "{a} {arch}"
        );
        assert_eq!(c.arch, crate::source::arch::normalise_arch(arch));
        let raw = &products.products[product].versions[version].items["root.tar.xz"];
        assert_eq!(c.rootfs.sha256.hex(), *raw.sha256.as_ref().unwrap());
        assert_eq!(Some(c.rootfs.size), raw.size);
        assert_eq!(
            c.metadata.as_ref().map(|m| m.key.as_str()),
            Some("lxd.tar.xz")
        );
    }

    let c = choose(&products, &alias("debian/12/cloud"), "amd64").unwrap();
    assert_eq!(
        c.rootfs.path,
        "images/debian/bookworm/amd64/cloud/20230424_07:54/rootfs.tar.xz"
    );
    assert_eq!(c.rootfs.size, 113660388);
    assert_eq!(
        (c.os.as_str(), c.release.as_str(), c.variant.as_str()),
        ("Debian", "bookworm", "cloud")
    );
    assert_eq!(c.aliases, ["debian/bookworm/cloud", "debian/12/cloud"]);
    assert_eq!(
        c.metadata.unwrap().combined_rootxz_sha256.unwrap().hex(),
        "f71bd3dd801377399a0f00580a042fe515691c4500301a12fcbf45ebd17acf7a"
    );
}

#[test]
fn pinned_versions() {
    let products = lxc();
    let c = choose(
        &products,
        &alias("debian/bookworm/cloud@20230422_05:24"),
        "amd64",
    )
    .unwrap();
    assert_eq!(c.version, "20230422_05:24");
    assert_eq!(c.rootfs.size, 113682496);
    assert_eq!(
        c.rootfs.path,
        "images/debian/bookworm/amd64/cloud/20230422_05:24/rootfs.tar.xz"
    );

    let err = choose(
        &products,
        &alias("debian/bookworm/cloud@20240601_05:24"),
        "amd64",
    )
    .unwrap_err();
    assert_eq!(
        err,
        ChooseError::VersionNotFound {
            alias: "debian/bookworm/cloud".into(),
            arch: "amd64".into(),
            version: "20240601_05:24".into(),
            available: vec![
                "20230424_07:54".into(),
                "20230423_06:08".into(),
                "20230422_05:24".into()
            ],
        }
    );
    assert!(
        err.to_string().contains("20230424_07:54, 20230423_06:08"),
        "{err}"
    );
}

#[test]
fn unknown_alias_suggests_close_ones() {
    let err = choose(&lxc(), &alias("debian/bokworm"), "amd64").unwrap_err();
    let ChooseError::NoSuchAlias {
        alias: a,
        suggestions,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(a, "debian/bokworm");
    assert_eq!(
        suggestions.first().map(String::as_str),
        Some("debian/bookworm"),
        "{suggestions:?}"
    );
    assert!(
        suggestions.iter().all(|s| s.starts_with("debian/")),
        "{suggestions:?}"
    );
    assert!(
        err.to_string().contains("close ones: debian/bookworm"),
        "{err}"
    );

    // A variant that does not exist is an unknown alias too, not a silent fallback to default.
    let err = choose(&lxc(), &alias("debian/bookworm/desktop"), "amd64").unwrap_err();
    assert!(matches!(err, ChooseError::NoSuchAlias { .. }), "{err:?}");
    // Published aliases are matched exactly: case differs, and no field rule applies to "12".
    let err = choose(&lxc(), &alias("debian/12/Cloud"), "amd64").unwrap_err();
    assert!(matches!(err, ChooseError::NoSuchAlias { .. }), "{err:?}");
}

#[test]
fn unknown_arch_lists_available() {
    let err = choose(&lxc(), &alias("debian/bookworm"), "riscv64").unwrap_err();
    assert_eq!(
        err,
        ChooseError::NoBuildForArch {
            alias: "debian/bookworm".into(),
            arch: "riscv64".into(),
            available: vec!["amd64".into(), "arm64".into()],
        }
    );
    assert_eq!(
        err.to_string(),
        "image \"debian/bookworm\" has no build for architecture riscv64 (available: amd64, arm64)"
    );
}

#[test]
fn ubuntu_minimal_products() {
    let products = parse_products(UBUNTU_MINIMAL).unwrap();
    // Ubuntu publishes one-part aliases, and a release named by number (`version`).
    for a in ["xenial", "16.04", "ubuntu/xenial", "ubuntu/16.04"] {
        let c = choose(&products, &alias(a), "amd64").unwrap_or_else(|e| panic!("{a}: {e}"));
        assert_eq!(c.product, "com.ubuntu.cloud:minimal:16.04:amd64");
        assert_eq!(c.version, "20180814");
        assert_eq!(
            c.rootfs.path,
            "xenial/release-20180814/ubuntu-16.04-minimal-cloudimg-amd64-root.tar.xz"
        );
        assert_eq!(c.rootfs.size, 77714184);
        assert_eq!(
            c.metadata.as_ref().map(|m| m.ftype.as_str()),
            Some("lxd.tar.xz")
        );
    }
    assert_eq!(
        list_remote(&products, None, None)[0].alias,
        "x",
        "shortest published alias"
    );
}

/// The real Ubuntu product with its rootfs tarballs taken out leaves disk images, squashfs and
/// manifests only: choosing must say what is missing instead of picking another file type.
#[test]
fn product_without_rootfs_is_a_clear_error() {
    let mut doc: Value = serde_json::from_str(UBUNTU_MINIMAL).unwrap();
    let versions = doc["products"]["com.ubuntu.cloud:minimal:16.04:amd64"]["versions"]
        .as_object_mut()
        .unwrap();
    for build in versions.values_mut() {
        build["items"]
            .as_object_mut()
            .unwrap()
            .retain(|_, item| item["ftype"] != "root.tar.xz");
    }
    let products = parse_products(&doc.to_string()).unwrap();
    let err = choose(&products, &alias("ubuntu/xenial"), "amd64").unwrap_err();
    assert_eq!(
        err,
        ChooseError::NoRootfs {
            product: "com.ubuntu.cloud:minimal:16.04:amd64".into(),
            version: None
        }
    );
    assert_eq!(
        err.to_string(),
        "no rootfs tarball (root.tar.xz) in product com.ubuntu.cloud:minimal:16.04:amd64"
    );

    let err = choose(&products, &alias("xenial@20180705"), "amd64").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no rootfs tarball (root.tar.xz) in product com.ubuntu.cloud:minimal:16.04:amd64 \
         version 20180705"
    );
    assert!(
        list_remote(&products, None, None).is_empty(),
        "an image nothing can pull is not listed"
    );
}

#[test]
fn lists_real_products() {
    let products = lxc();
    let all = list_remote(&products, None, None);
    assert_eq!(all.len(), products.products.len());
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| (&a.alias, &a.arch).cmp(&(&b.alias, &b.arch)));
    assert_eq!(all, sorted);

    let debian_arm = list_remote(&products, Some("aarch64"), Some("BOOKWORM"));
    let rows: Vec<(&str, &str, &str, u64)> = debian_arm
        .iter()
        .map(|r| {
            (
                r.alias.as_str(),
                r.variant.as_str(),
                r.newest_version.as_str(),
                r.size,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("debian/12", "default", "20230424_07:53", 85339484),
            ("debian/12/cloud", "cloud", "20230424_08:24", 111959620)
        ]
    );
    // Filter matches any published alias, e.g. the numeric one.
    assert_eq!(
        list_remote(&products, Some("amd64"), Some("debian/12/c")).len(),
        1
    );
    assert!(list_remote(&products, Some("s390x"), None).is_empty());
}
