//! Images that lie: about digests, sizes, diff_ids, media types and shapes; layers that try to
//! escape through whiteouts; archives with hostile members. Each must fail with a message
//! that says what was wrong, and nothing outside the staging root may change.

use serde_json::json;

use super::util::{Comp, LayoutBuilder, compress};
use crate::digest::Digest;
use crate::oci::manifest::Descriptor;
use crate::oci::{
    BlobError, OciLayout, PlatformSpec, ResolvedImage, apply_image, extract_oci_archive, media,
    resolve_image,
};
use crate::unpack::tests::util::{Sandbox, Tar};
use crate::unpack::{Root, UnpackError};

/// An archive member: name and content.
type Member = (String, Vec<u8>);

fn amd64() -> PlatformSpec {
    PlatformSpec::parse("linux/amd64").unwrap()
}

fn simple_layer() -> Vec<u8> {
    Tar::new()
        .dir("etc/")
        .file("etc/os-release", b"ID=test\n")
        .finish()
}

fn resolve(b: &LayoutBuilder, top: &Descriptor) -> anyhow::Result<ResolvedImage> {
    let layout = OciLayout::open(&b.dir)?;
    resolve_image(&layout, top, &amd64())
}

/// Resolves and applies into a fresh sandbox; the sandbox checks nothing outside changed.
fn apply(b: &LayoutBuilder, top: &Descriptor) -> anyhow::Result<()> {
    let layout = OciLayout::open(&b.dir)?;
    let image = resolve_image(&layout, top, &amd64())?;
    let sb = Sandbox::new();
    let root = Root::open(&sb.root)?;
    let result = apply_image(&root, &layout, &image, &Sandbox::opts()).map(|_| ());
    sb.assert_outside_untouched();
    result
}

fn blob_error(err: &anyhow::Error) -> Option<BlobError> {
    err.chain().find_map(|e| {
        e.downcast_ref::<BlobError>().cloned().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<BlobError>())
                .cloned()
        })
    })
}

fn assert_msg(err: &anyhow::Error, want: &str) {
    let text = format!("{err:#}");
    assert!(text.contains(want), "expected {want:?} in: {text}");
}

#[test]
fn a_diff_id_mismatch_aborts() {
    let b = LayoutBuilder::new();
    let (layer, _) = b.layer(&simple_layer(), Comp::Gzip);
    let wrong = Digest::of(b"another tar");
    let m = b.image("linux/amd64", &[(layer, wrong)]);
    let err = apply(&b, &m).unwrap_err();
    assert_msg(
        &err,
        &format!("the image config says its diff_id is {wrong}"),
    );
    assert_msg(&err, "applying layer 1 of 1");
}

#[test]
fn a_layer_descriptor_whose_size_lies_aborts() {
    for delta in [-1i64, 1] {
        for comp in [Comp::Tar, Comp::Gzip, Comp::Zstd] {
            let b = LayoutBuilder::new();
            let (mut layer, diff_id) = b.layer(&simple_layer(), comp);
            layer.size = (layer.size as i64 + delta) as u64;
            let m = b.image("linux/amd64", &[(layer.clone(), diff_id)]);
            let err = apply(&b, &m).unwrap_err();
            let want = if delta < 0 {
                BlobError::TooLong {
                    digest: layer.digest,
                    size: layer.size,
                }
            } else {
                BlobError::TooShort {
                    digest: layer.digest,
                    got: layer.size - 1,
                    size: layer.size,
                }
            };
            assert_eq!(blob_error(&err), Some(want), "{comp:?} {delta}: {err:#}");
        }
    }
}

#[test]
fn a_blob_whose_digest_lies_aborts() {
    // A layer: under its name lies another valid layer, and the descriptor gives that one's
    // size, so only the digest can tell.
    for comp in [Comp::Tar, Comp::Gzip, Comp::Zstd] {
        let b = LayoutBuilder::new();
        let (mut layer, diff_id) = b.layer(&simple_layer(), comp);
        let evil = compress(&Tar::new().file("evil", b"planted").finish(), comp);
        fs_err::write(b.blob_path(&layer.digest), &evil).unwrap();
        layer.size = evil.len() as u64;
        let m = b.image("linux/amd64", &[(layer.clone(), diff_id)]);
        let err = apply(&b, &m).unwrap_err();
        assert_eq!(
            blob_error(&err),
            Some(BlobError::DigestMismatch {
                expected: layer.digest,
                actual: Digest::of(&evil)
            }),
            "{comp:?}: {err:#}"
        );
    }
    // A config and a manifest: caught before any layer is read.
    let b = LayoutBuilder::new();
    let layer = b.layer(&simple_layer(), Comp::Gzip);
    let m = b.image("linux/amd64", &[layer]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(b.blob_path(&m.digest)).unwrap()).unwrap();
    let config: Descriptor = serde_json::from_value(manifest["config"].clone()).unwrap();
    for digest in [config.digest, m.digest] {
        let path = b.blob_path(&digest);
        let original = fs_err::read(&path).unwrap();
        let mut forged = original.clone();
        *forged.last_mut().unwrap() = b' ';
        fs_err::write(&path, &forged).unwrap();
        let err = resolve(&b, &m).unwrap_err();
        assert!(
            matches!(blob_error(&err), Some(BlobError::DigestMismatch { expected, .. }) if expected == digest),
            "{err:#}"
        );
        fs_err::write(&path, &original).unwrap();
    }
    resolve(&b, &m).unwrap();
}

#[test]
fn a_manifest_descriptor_whose_size_lies_aborts() {
    let b = LayoutBuilder::new();
    let m = b.image("linux/amd64", &[b.layer(&simple_layer(), Comp::Gzip)]);
    for size in [m.size - 1, m.size + 1] {
        let lying = Descriptor { size, ..m.clone() };
        let err = resolve(&b, &lying).unwrap_err();
        assert!(blob_error(&err).is_some(), "{err:#}");
    }
}

#[test]
fn a_5_mib_manifest_is_refused() {
    let b = LayoutBuilder::new();
    let layer = b.layer(&simple_layer(), Comp::Gzip);
    let config = b.config("linux/amd64", &[layer.1], json!({}));
    let doc = json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST, "config": config,
        "layers": [layer.0], "annotations": {"pad": "x".repeat(5 << 20)},
    });
    let m = b.blob(media::OCI_MANIFEST, &serde_json::to_vec(&doc).unwrap());
    let err = resolve(&b, &m).unwrap_err();
    assert_msg(&err, "more than the 4194304 bytes allowed");
    // Even when the descriptor understates it: the reader stops at the declared size.
    let small = Descriptor {
        size: 1000,
        ..m.clone()
    };
    let err = resolve(&b, &small).unwrap_err();
    assert!(
        matches!(blob_error(&err), Some(BlobError::TooLong { .. })),
        "{err:#}"
    );
}

#[test]
fn ambiguous_and_mislabelled_manifests_are_refused() {
    let b = LayoutBuilder::new();
    let layer = b.layer(&simple_layer(), Comp::Gzip);
    let config = b.config("linux/amd64", &[layer.1], json!({}));
    let image = b.manifest(&config, std::slice::from_ref(&layer.0));
    let both = json!({
        "schemaVersion": 2, "config": config, "layers": [layer.0.clone()],
        "manifests": [image.clone()],
    });
    let both = b.blob(media::OCI_MANIFEST, &serde_json::to_vec(&both).unwrap());
    assert_msg(
        &resolve(&b, &both).unwrap_err(),
        "both `manifests` and `layers`",
    );
    // The document says index, it is an image.
    let says_index = json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX, "config": config,
        "layers": [layer.0.clone()],
    });
    let says_index = b.blob(
        media::OCI_MANIFEST,
        &serde_json::to_vec(&says_index).unwrap(),
    );
    assert_msg(
        &resolve(&b, &says_index).unwrap_err(),
        "says image index, but the document is an image manifest",
    );
    // The referring descriptor says Docker, the document says OCI.
    let docker = Descriptor {
        media_type: media::DOCKER_MANIFEST.into(),
        ..image.clone()
    };
    assert_msg(&resolve(&b, &docker).unwrap_err(), "referred to as");
    // The descriptor says index, the document is an image without a mediaType field.
    let plain = json!({"schemaVersion": 2, "config": config, "layers": [layer.0]});
    let plain = b.blob(media::OCI_INDEX, &serde_json::to_vec(&plain).unwrap());
    assert_msg(
        &resolve(&b, &plain).unwrap_err(),
        "but the document is an image manifest",
    );
}

#[test]
fn foreign_layers_and_artifacts_are_refused_before_any_layer_is_read() {
    let b = LayoutBuilder::new();
    let (mut layer, diff_id) = b.layer(&simple_layer(), Comp::Gzip);
    layer.media_type = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into();
    fs_err::remove_file(b.blob_path(&layer.digest)).unwrap();
    let m = b.image("linux/amd64", &[(layer, diff_id)]);
    assert_msg(
        &resolve(&b, &m).unwrap_err(),
        "foreign or non-distributable",
    );

    let (mut layer, diff_id) = b.layer(&simple_layer(), Comp::Gzip);
    layer.media_type = "application/vnd.oci.image.layer.v1.tar+lz4".into();
    let m = b.image("linux/amd64", &[(layer, diff_id)]);
    assert_msg(&resolve(&b, &m).unwrap_err(), "not a filesystem layer");

    let config = b.blob("application/vnd.cncf.helm.config.v1+json", b"{}");
    let m = b.manifest(&config, &[]);
    assert_msg(&resolve(&b, &m).unwrap_err(), "not a container image");
}

#[test]
fn a_layer_compressed_otherwise_than_declared_is_named() {
    let b = LayoutBuilder::new();
    let tar = simple_layer();
    let zstd = compress(&tar, Comp::Zstd);
    let layer = b.blob(media::OCI_LAYER_GZIP, &zstd);
    let m = b.image("linux/amd64", &[(layer, Digest::of(&tar))]);
    assert_msg(
        &apply(&b, &m).unwrap_err(),
        "says gzip, but its content is zstd-compressed",
    );
}

#[test]
fn an_image_for_another_platform_is_refused() {
    let b = LayoutBuilder::new();
    let m = b.image("linux/arm64", &[b.layer(&simple_layer(), Comp::Gzip)]);
    assert_msg(
        &resolve(&b, &m).unwrap_err(),
        "the image is for linux/arm64, not linux/amd64",
    );
}

#[test]
fn whiteout_escapes_in_a_layer_abort_as_safety_violations() {
    let escapes: &[(&[u8], &[u8])] = &[
        (b"../.wh.secret", b""),
        (b"etc/.wh...", b""),
        (b"link/.wh.secret", b"link"),
    ];
    for (name, link) in escapes {
        let b = LayoutBuilder::new();
        let mut lower = Tar::new();
        lower.dir("etc/");
        if !link.is_empty() {
            lower.symlink("link", "../outside");
        }
        let upper = Tar::new()
            .raw(name, tar::EntryType::Regular, b"", 0o644, b"")
            .finish();
        let layers = [
            b.layer(&lower.finish(), Comp::Gzip),
            b.layer(&upper, Comp::Gzip),
        ];
        let m = b.image("linux/amd64", &layers);
        let err = apply(&b, &m).unwrap_err();
        let unsafe_err = err
            .chain()
            .find_map(|e| e.downcast_ref::<UnpackError>())
            .filter(|u| u.is_safety_violation());
        assert!(
            unsafe_err.is_some(),
            "{}: {err:#}",
            String::from_utf8_lossy(name)
        );
    }
}

#[test]
fn hostile_archives_are_refused() {
    let b = LayoutBuilder::new();
    let m = b.image("linux/amd64", &[b.layer(&simple_layer(), Comp::Gzip)]);
    let blob = fs_err::read(b.blob_path(&m.digest)).unwrap();
    let member = |name: &str, data: &[u8]| (name.to_string(), data.to_vec());
    let good = |extra: Vec<Member>| {
        let mut members = vec![
            member("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            member("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
        ];
        members.extend(extra);
        members
    };
    let cases: Vec<(Vec<Member>, String)> = vec![
        (
            good(vec![member("blobs/../../x", b"")]),
            "contains `..`".into(),
        ),
        (
            good(vec![member(
                &format!("blobs/sha256/{}", m.digest.hex()),
                b"lies",
            )]),
            format!("not the {} its name says", m.digest),
        ),
        (
            good(vec![member("index.json", b"{}")]),
            "the archive holds `index.json` twice".into(),
        ),
        (
            vec![member("index.json", b"{}")],
            "no `oci-layout` or `index.json`".into(),
        ),
    ];
    for (members, want) in cases {
        let mut t = Tar::new();
        for (name, data) in &members {
            t.file(name, data);
        }
        let dest = tempfile::tempdir().unwrap();
        let err = extract_oci_archive(std::io::Cursor::new(t.finish()), dest.path()).unwrap_err();
        assert_msg(&err, &want);
        // A refused blob leaves nothing under its name.
        assert!(
            !dest
                .path()
                .join("blobs/sha256")
                .join(m.digest.hex())
                .exists()
        );
    }
    // A symlink where index.json should be.
    let mut t = Tar::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .symlink("index.json", "/etc/passwd");
    let dest = tempfile::tempdir().unwrap();
    let err = extract_oci_archive(std::io::Cursor::new(t.finish()), dest.path()).unwrap_err();
    assert_msg(&err, "`index.json` is not a regular file");
    // And the good blob is accepted.
    let mut t = Tar::new();
    for (name, data) in good(vec![member(
        &format!("./blobs/sha256/{}", m.digest.hex()),
        &blob,
    )]) {
        t.file(&name, &data);
    }
    let dest = tempfile::tempdir().unwrap();
    let summary = extract_oci_archive(std::io::Cursor::new(t.finish()), dest.path()).unwrap();
    assert_eq!((summary.blobs, summary.blob_bytes), (1, blob.len() as u64));
}

#[test]
fn a_fifo_in_place_of_a_blob_is_refused_without_blocking() {
    let b = LayoutBuilder::new();
    let m = b.image("linux/amd64", &[b.layer(&simple_layer(), Comp::Gzip)]);
    let path = b.blob_path(&m.digest);
    fs_err::remove_file(&path).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert_msg(&resolve(&b, &m).unwrap_err(), "is not a regular file");
}
