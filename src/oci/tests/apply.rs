//! Whole images from layouts built in code: a two-platform index, three layers (gzip, zstd,
//! plain tar) with whiteouts, an opaque directory, a hardlink to a lower file and a write
//! through Debian's `var/run -> /run`; then init detection and the `[Exec]` section.

use std::os::unix::fs::MetadataExt;

use serde_json::json;

use super::util::{Comp, LayoutBuilder};
use crate::oci::{
    OciLayout, OciSource, PlatformSpec, apply_image, has_init, render_exec_section, resolve_image,
};
use crate::unpack::tests::util::{Sandbox, Tar};
use crate::unpack::{Root, UnpackOptions};

fn opts() -> UnpackOptions {
    Sandbox::opts()
}

fn base_layer() -> Vec<u8> {
    Tar::new()
        .dir("etc/")
        .file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
        .file("etc/hostname", b"base\n")
        .dir("usr/")
        .dir("usr/bin/")
        .raw(
            b"usr/bin/tool",
            tar::EntryType::Regular,
            b"",
            0o755,
            b"#!/bin/sh\n",
        )
        .dir("opt/")
        .dir("opt/old/")
        .file("opt/old/a", b"a")
        .dir("opt/old/sub/")
        .file("opt/old/sub/b", b"b")
        .dir("run/")
        .dir("var/")
        .symlink("var/run", "/run")
        .finish()
}

fn second_layer() -> Vec<u8> {
    Tar::new()
        .file("etc/.wh.hostname", b"")
        .dir("opt/old/")
        .file("opt/old/.wh..wh..opq", b"")
        .file("opt/old/new", b"new")
        .hardlink("usr/bin/tool-link", "usr/bin/tool")
        .file("var/run/app.pid", b"42")
        .finish()
}

fn third_layer() -> Vec<u8> {
    Tar::new()
        .file(
            "etc/passwd",
            b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        )
        .file("usr/.wh.bin", b"")
        .dir("usr/bin/")
        .file("usr/bin/app", b"app")
        .finish()
}

/// A layout with tag `v1` → index → {amd64: three layers, arm64: one layer}.
fn two_platform_layout() -> LayoutBuilder {
    let mut b = LayoutBuilder::new();
    let layers = [
        b.layer(&base_layer(), Comp::Gzip),
        b.layer(&second_layer(), Comp::Zstd),
        b.layer(&third_layer(), Comp::Tar),
    ];
    let run = json!({
        "Entrypoint": ["/usr/bin/app"], "Cmd": ["--serve", "port 80"],
        "Env": ["PATH=/usr/bin", "GREETING=it's ok"], "WorkingDir": "/srv", "User": "app"
    });
    let amd64 = b.image_with("linux/amd64", &layers, run);
    let arm_layer = b.layer(&Tar::new().file("arm64-only", b"arm").finish(), Comp::Gzip);
    let arm64 = b.image("linux/arm64", &[arm_layer]);
    let index = b.index(&[("linux/arm64/v8", arm64), ("linux/amd64", amd64)]);
    b.tag(&index, "v1");
    b
}

#[test]
fn a_multi_layer_image_is_applied_with_oci_rules() {
    let b = two_platform_layout();
    let source = OciSource::parse(&format!("oci-layout:{}:v1", b.dir.display())).unwrap();
    let OciSource::Layout { dir, tag } = source else {
        panic!("a layout source");
    };
    let layout = OciLayout::open(&dir).unwrap();
    let top = layout.resolve(tag.as_deref()).unwrap();
    let want = PlatformSpec::parse("linux/amd64").unwrap();
    let image = resolve_image(&layout, &top, &want).unwrap();
    assert_eq!(image.indexes.len(), 1);
    assert_eq!(image.layers.len(), 3);

    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let applied = apply_image(&root, &layout, &image, &opts()).unwrap();
    assert_eq!(applied.len(), 3);
    assert_eq!(
        applied
            .iter()
            .map(|l| (l.whiteouts, l.opaque_dirs))
            .collect::<Vec<_>>(),
        [(0, 0), (1, 1), (1, 0)]
    );
    assert_eq!(applied[0].tar_size, base_layer().len() as u64);

    let files = super::util::tree(&sb.root);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/passwd",
            "opt",
            "opt/old",
            "opt/old/new",
            "run",
            "run/app.pid",
            "usr",
            "usr/bin",
            "usr/bin/app",
            "var",
            "var/run",
        ]
    );
    assert!(files["etc/passwd"].contains("app:x:1000"));
    assert_eq!(files["var/run"], "-> /run");
    sb.assert_outside_untouched();
    assert!(!has_init(&root).unwrap());

    let provenance = image.provenance().unwrap();
    assert_eq!(provenance.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(provenance.index_digests, [top.digest]);
    assert_eq!(provenance.config["config"]["User"], "app");
    assert_eq!(
        provenance.layers[1].compression,
        crate::oci::media::LayerCompression::Zstd
    );

    let exec = render_exec_section(image.config.config.as_ref(), &source_name(&b)).unwrap();
    assert!(
        exec.contains("Parameters=/usr/bin/app --serve 'port 80'\n"),
        "{exec}"
    );
    assert!(
        exec.contains("Environment='GREETING=it'\"'\"'s ok'\n"),
        "{exec}"
    );
    assert!(exec.contains("WorkingDirectory=/srv\nUser=app\n"), "{exec}");
}

fn source_name(b: &LayoutBuilder) -> String {
    format!("oci-layout:{}:v1", b.dir.display())
}

#[test]
fn a_hardlink_to_a_lower_layer_file_shares_its_inode() {
    // Stop after the second layer (the third whites `usr/bin` out).
    let mut b = LayoutBuilder::new();
    let layers = [
        b.layer(&base_layer(), Comp::Gzip),
        b.layer(&second_layer(), Comp::Zstd),
    ];
    let m = b.image("linux/amd64", &layers);
    b.tag(&m, "two");
    let layout = OciLayout::open(&b.dir).unwrap();
    let top = layout.resolve(Some("two")).unwrap();
    let image = resolve_image(&layout, &top, &PlatformSpec::parse("linux/amd64").unwrap()).unwrap();
    assert!(image.indexes.is_empty());
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    apply_image(&root, &layout, &image, &opts()).unwrap();
    let tool = fs_err::metadata(sb.path("usr/bin/tool")).unwrap();
    let link = fs_err::metadata(sb.path("usr/bin/tool-link")).unwrap();
    assert_eq!((tool.ino(), tool.nlink()), (link.ino(), 2));
    assert_eq!(tool.mode() & 0o777, 0o755);
    assert_eq!(
        super::util::tree(&sb.path("opt")).len(),
        2,
        "old/ and old/new only"
    );
}

#[test]
fn the_other_platform_of_the_index_is_chosen_with_platform() {
    let b = two_platform_layout();
    let layout = OciLayout::open(&b.dir).unwrap();
    let top = layout.resolve(Some("v1")).unwrap();
    // `arm64` matches the index's `arm64/v8`.
    let image = resolve_image(
        &layout,
        &top,
        &PlatformSpec::parse("linux/aarch64").unwrap(),
    )
    .unwrap();
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    apply_image(&root, &layout, &image, &opts()).unwrap();
    assert_eq!(
        super::util::tree(&sb.root).into_keys().collect::<Vec<_>>(),
        ["arm64-only"]
    );
    let err =
        resolve_image(&layout, &top, &PlatformSpec::parse("linux/s390x").unwrap()).unwrap_err();
    assert!(
        format!("{err:#}")
            .contains("no image for linux/s390x (available: linux/arm64, linux/amd64)"),
        "{err:#}"
    );
}

#[test]
fn images_with_systemd_are_booted() {
    let mut b = LayoutBuilder::new();
    let layer = Tar::new()
        .dir("usr/")
        .dir("usr/lib/")
        .dir("usr/lib/systemd/")
        .raw(
            b"usr/lib/systemd/systemd",
            tar::EntryType::Regular,
            b"",
            0o755,
            b"elf",
        )
        .symlink("lib", "usr/lib")
        .dir("usr/sbin/")
        .symlink("sbin", "usr/sbin")
        .symlink("usr/sbin/init", "/lib/systemd/systemd")
        .finish();
    let m = b.image("linux/amd64", &[b.layer(&layer, Comp::Gzip)]);
    b.tag(&m, "latest");
    let layout = OciLayout::open(&b.dir).unwrap();
    let top = layout.resolve(None).unwrap();
    let image = resolve_image(&layout, &top, &PlatformSpec::parse("linux/amd64").unwrap()).unwrap();
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    apply_image(&root, &layout, &image, &opts()).unwrap();
    assert!(has_init(&root).unwrap());
    // Not executable: not an init.
    fs_err::set_permissions(
        sb.path("usr/lib/systemd/systemd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    assert!(!has_init(&root).unwrap());
}

#[test]
fn the_tree_bounds_hold_over_all_layers() {
    let mut b = LayoutBuilder::new();
    let layers = [
        b.layer(&Tar::new().file("a", &[1; 600]).finish(), Comp::Gzip),
        b.layer(&Tar::new().file("b", &[2; 600]).finish(), Comp::Tar),
    ];
    let amd64 = b.image("linux/amd64", &layers);
    b.tag(&amd64, "v1");
    let layout = OciLayout::open(&b.dir).unwrap();
    let top = layout.resolve(Some("v1")).unwrap();
    let image = resolve_image(&layout, &top, &PlatformSpec::parse("linux/amd64").unwrap()).unwrap();
    let bounded = |max_bytes, max_entries| UnpackOptions {
        limits: crate::unpack::TreeLimits {
            max_bytes,
            max_entries,
            ..Default::default()
        },
        ..opts()
    };
    // Each layer alone fits either bound; together they do not.
    for (opts, var) in [
        (bounded(1000, 10), "SANDBOX_MAX_TREE_BYTES"),
        (bounded(10_000, 1), "SANDBOX_MAX_ENTRIES"),
    ] {
        let sb = Sandbox::new();
        let root = Root::open(&sb.root).unwrap();
        let e = apply_image(&root, &layout, &image, &opts).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("layer 2 of 2") && msg.contains("entry `b`") && msg.contains(var),
            "{msg}"
        );
    }
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let applied = apply_image(&root, &layout, &image, &bounded(1200, 2)).unwrap();
    assert_eq!(applied.iter().map(|l| l.file_bytes).sum::<u64>(), 1200);
}
