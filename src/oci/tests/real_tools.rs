//! Images made by real tools, read by our code and compared with umoci's own unpacking of the
//! same image (an independent implementation of the layer rules):
//!
//! - umoci: `insert` (which writes layers without final padding), `unpack`/`repack` (a
//!   deletion becomes a whiteout, a new symlink and a hardlink), `insert --opaque`,
//!   `insert --whiteout`, `config`;
//! - skopeo: the same image as an `oci-archive:` tar, with zstd layers, and in Docker's v2
//!   schema 2 media types.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::util::tree;
use crate::oci::{
    OciLayout, PlatformSpec, ResolvedImage, apply_image, extract_oci_archive, has_init, media,
    render_exec_section, resolve_image,
};
use crate::unpack::Root;
use crate::unpack::tests::util::{Sandbox, run};

/// Builds `work/L:t` with umoci; returns the layout directory.
fn umoci_image(work: &Path) -> PathBuf {
    let layout = work.join("L");
    let image = format!("{}:t", layout.display());
    let umoci = |args: &[&str]| run(Command::new("umoci").args(args).current_dir(work));
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &image]);
    let base = work.join("base");
    for dir in ["etc", "opt/d/sub", "usr/bin"] {
        fs_err::create_dir_all(base.join(dir)).unwrap();
    }
    fs_err::write(base.join("etc/hostname"), "h\n").unwrap();
    fs_err::write(base.join("opt/d/a"), "a\n").unwrap();
    fs_err::write(base.join("opt/d/sub/b"), "b\n").unwrap();
    fs_err::write(base.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(
        base.join("usr/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    umoci(&["insert", "--image", &image, "base", "/"]);
    // A layer from a changed rootfs: a deletion, a new symlink, a hardlink.
    let bundle = work.join("bundle");
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()]);
    let rootfs = bundle.join("rootfs");
    fs_err::remove_file(rootfs.join("etc/hostname")).unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", rootfs.join("opt/link")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/tool", rootfs.join("opt/abs-link")).unwrap();
    fs_err::hard_link(rootfs.join("usr/bin/tool"), rootfs.join("usr/bin/tool2")).unwrap();
    umoci(&["repack", "--image", &image, &bundle.display().to_string()]);
    fs_err::remove_dir_all(&bundle).unwrap();
    let newd = work.join("newd");
    fs_err::create_dir(&newd).unwrap();
    fs_err::write(newd.join("new"), "n\n").unwrap();
    umoci(&["insert", "--image", &image, "--opaque", "newd", "/opt/d"]);
    umoci(&["insert", "--image", &image, "--whiteout", "/opt/link"]);
    umoci(&["insert", "--image", &image, "--whiteout", "/etc/never-was"]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/usr/bin/tool",
        "--config.env",
        "GREETING=hello world",
        "--config.workingdir",
        "/opt",
        "--os",
        "linux",
        "--architecture",
        &PlatformSpec::host().architecture,
    ]);
    layout
}

/// The rootfs umoci itself makes of `layout:t`.
fn umoci_rootfs(work: &Path, layout: &Path, name: &str) -> PathBuf {
    let bundle = work.join(name);
    run(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:t", layout.display()),
        &bundle.display().to_string(),
    ]));
    bundle.join("rootfs")
}

/// Resolves `dir:t` for the host and applies it into a new sandbox.
fn apply_layout(dir: &Path) -> (Sandbox, ResolvedImage) {
    let layout = OciLayout::open(dir).unwrap();
    let top = layout.resolve(Some("t")).unwrap();
    let image = resolve_image(&layout, &top, &PlatformSpec::host()).unwrap();
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    apply_image(&root, &layout, &image, &Sandbox::opts()).unwrap();
    assert!(!has_init(&root).unwrap());
    sb.assert_outside_untouched();
    (sb, image)
}

fn skopeo(args: &[&str]) {
    run(Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--quiet"])
        .args(args));
}

#[test]
fn umoci_layouts_apply_as_umoci_unpacks_them() {
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path());
    let (sb, image) = apply_layout(&layout);
    let ours = tree(&sb.root);
    assert_eq!(ours, tree(&umoci_rootfs(work.path(), &layout, "ref")));
    // What the image is, independently of umoci's unpacking.
    let names: Vec<&str> = ours.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc",
            "opt",
            "opt/abs-link",
            "opt/d",
            "opt/d/new",
            "usr",
            "usr/bin",
            "usr/bin/tool",
            "usr/bin/tool2",
        ]
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs_err::metadata(sb.path("usr/bin/tool2")).unwrap().nlink(),
        2
    );
    let exec = render_exec_section(image.config.config.as_ref(), "umoci").unwrap();
    assert!(exec.contains("Parameters=/usr/bin/tool\n"), "{exec}");
    assert!(
        exec.contains("Environment='GREETING=hello world'\n"),
        "{exec}"
    );
    assert!(exec.contains("WorkingDirectory=/opt\n"), "{exec}");
}

#[test]
fn skopeo_archives_zstd_layers_and_docker_manifests_apply_the_same() {
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_image(work.path());
    let want = tree(&umoci_rootfs(work.path(), &layout, "ref"));
    let src = format!("oci:{}:t", layout.display());

    // oci-archive, read entry by entry into a directory of our own.
    let archive = work.path().join("image.tar");
    skopeo(&[&src, &format!("oci-archive:{}:t", archive.display())]);
    let extracted = work.path().join("extracted");
    fs_err::create_dir(&extracted).unwrap();
    let summary = extract_oci_archive(fs::File::open(&archive).unwrap(), &extracted).unwrap();
    assert!(summary.blobs >= 7, "{summary:?}");
    assert_eq!(tree(&apply_layout(&extracted).0.root), want);

    // zstd layers.
    let zstd = work.path().join("Z");
    skopeo(&[
        "--dest-compress-format",
        "zstd",
        "--dest-compress",
        &src,
        &format!("oci:{}:t", zstd.display()),
    ]);
    let (sb, image) = apply_layout(&zstd);
    assert!(
        image
            .layers
            .iter()
            .all(|l| l.descriptor.media_type == media::OCI_LAYER_ZSTD)
    );
    assert_eq!(tree(&sb.root), want);

    // Docker v2 schema 2 media types.
    let docker = work.path().join("D");
    skopeo(&[
        "--format",
        "v2s2",
        &src,
        &format!("oci:{}:t", docker.display()),
    ]);
    let (sb, image) = apply_layout(&docker);
    assert_eq!(image.manifest.descriptor.media_type, media::DOCKER_MANIFEST);
    assert_eq!(image.image.config.media_type, media::DOCKER_CONFIG);
    assert!(
        image
            .layers
            .iter()
            .all(|l| l.descriptor.media_type == media::DOCKER_LAYER_GZIP)
    );
    assert_eq!(tree(&sb.root), want);
}
