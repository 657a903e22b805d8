//! The layer pipeline (the next layer decoding while the current one is written, blobs the
//! fetch hashed held to their size only) against the plain sequential way: the same tree, and
//! every lie still refused.

use super::util::{Comp, LayoutBuilder, tree};
use crate::digest::Digest;
use crate::oci::manifest::Descriptor;
use crate::oci::{
    AppliedLayer, BlobError, OciLayout, PlatformSpec, ResolvedImage, apply_image,
    apply_image_hashed, resolve_image,
};
use crate::unpack::layers::unpack_layer;
use crate::unpack::tests::util::{Sandbox, Tar};
use crate::unpack::{Root, UnpackOptions};

/// Bytes that do not compress: a blob several pipeline chunks long even after gzip.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Five layers that only give the right tree when applied in order: overrides, a whiteout of
/// a lower file and of a lower tree, an opaque directory, a path whited out and then brought
/// back, a symlink replaced by a directory; the base is large (many chunks), the rest small.
fn layers() -> Vec<Vec<u8>> {
    let base = Tar::new()
        .dir("etc/")
        .file("etc/motd", b"base\n")
        .file("etc/hostname", b"base\n")
        .dir("opt/")
        .dir("opt/tree/")
        .file("opt/tree/a", b"a")
        .dir("opt/tree/sub/")
        .file("opt/tree/sub/b", b"b")
        .dir("srv/")
        .file("srv/keep", b"keep")
        .file("srv/drop", b"drop")
        .file("big", &noise(3 << 20, 1))
        .symlink("link", "etc")
        .finish();
    let second = Tar::new()
        .file("etc/motd", b"second\n")
        .file("etc/.wh.hostname", b"")
        .file(".wh.opt", b"")
        .file("srv/.wh..wh..opq", b"")
        .file("srv/new", b"new")
        .finish();
    let third = Tar::new()
        .file("etc/hostname", b"back\n")
        .dir("opt/")
        .file("opt/again", b"again")
        .file("big", &noise(1 << 20, 2))
        .finish();
    let fourth = Tar::new()
        .file(".wh.link", b"")
        .dir("link/")
        .file("link/inside", b"dir now")
        .finish();
    let fifth = Tar::new().file("etc/motd", b"fifth\n").finish();
    vec![base, second, third, fourth, fifth]
}

fn image_of(b: &LayoutBuilder, tars: &[Vec<u8>], comps: &[Comp]) -> Descriptor {
    let layers: Vec<(Descriptor, Digest)> = tars
        .iter()
        .zip(comps.iter().cycle())
        .map(|(tar, comp)| b.layer(tar, *comp))
        .collect();
    b.image("linux/amd64", &layers)
}

fn resolve(b: &LayoutBuilder, top: &Descriptor) -> (OciLayout, ResolvedImage) {
    let layout = OciLayout::open(&b.dir).unwrap();
    let want = PlatformSpec::parse("linux/amd64").unwrap();
    let image = resolve_image(&layout, top, &want).unwrap();
    (layout, image)
}

fn opts() -> UnpackOptions {
    Sandbox::opts()
}

/// The reference: each uncompressed tar unpacked straight into the root, one after another,
/// no threads, no blobs.
fn sequential(tars: &[Vec<u8>]) -> Sandbox {
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    for tar in tars {
        unpack_layer(&tar[..], &root, &opts()).unwrap();
    }
    sb
}

#[test]
fn pipelined_layers_give_the_tree_a_sequential_apply_gives() {
    let tars = layers();
    let want = tree(&sequential(&tars).root);
    assert_eq!(want["etc/motd"], "file 644 \"fifth\\n\"");
    assert_eq!(want["etc/hostname"], "file 644 \"back\\n\"");
    assert_eq!(want["link/inside"], "file 644 \"dir now\"");
    assert!(!want.contains_key("opt/tree") && want.contains_key("opt/again"));
    assert!(!want.contains_key("srv/keep") && want.contains_key("srv/new"));

    for comps in [&[Comp::Gzip][..], &[Comp::Zstd, Comp::Tar, Comp::Gzip][..]] {
        let b = LayoutBuilder::new();
        let top = image_of(&b, &tars, comps);
        let (layout, image) = resolve(&b, &top);
        let hashed: Vec<Digest> = image.layers.iter().map(|l| l.descriptor.digest).collect();
        for vouched in [&[][..], &hashed[..]] {
            let sb = Sandbox::new();
            let root = Root::open(&sb.root).unwrap();
            let applied = apply_image_hashed(&root, &layout, &image, vouched, &opts()).unwrap();
            let counts: Vec<(u64, u64)> = applied
                .iter()
                .map(|l: &AppliedLayer| (l.whiteouts, l.opaque_dirs))
                .collect();
            assert_eq!(counts, [(0, 0), (2, 1), (0, 0), (1, 0), (0, 0)]);
            assert_eq!(tree(&sb.root), want, "{comps:?}, {} vouched", vouched.len());
            sb.assert_outside_untouched();
        }
    }
}

fn error_text(err: &anyhow::Error) -> String {
    format!("{err:#}")
}

#[test]
fn a_diff_id_mismatch_in_a_middle_layer_is_refused_before_the_next_is_applied() {
    let tars = layers();
    let b = LayoutBuilder::new();
    let mut layers: Vec<(Descriptor, Digest)> =
        tars.iter().map(|t| b.layer(t, Comp::Gzip)).collect();
    let wrong = Digest::of(b"another tar");
    layers[2].1 = wrong;
    let top = b.image("linux/amd64", &layers);
    let (layout, image) = resolve(&b, &top);
    let hashed: Vec<Digest> = image.layers.iter().map(|l| l.descriptor.digest).collect();
    for vouched in [&[][..], &hashed[..]] {
        let sb = Sandbox::new();
        let root = Root::open(&sb.root).unwrap();
        let err = apply_image_hashed(&root, &layout, &image, vouched, &opts()).unwrap_err();
        let text = error_text(&err);
        assert!(text.contains("applying layer 3 of 5"), "{text}");
        assert!(
            text.contains(&format!("the image config says its diff_id is {wrong}")),
            "{text}"
        );
        // Layer 4 was already decoding; it never reached the tree.
        assert!(!sb.root.join("link/inside").exists());
        assert!(sb.root.join("link").is_symlink());
        sb.assert_outside_untouched();
    }
}

fn blob_error(err: &anyhow::Error) -> Option<BlobError> {
    err.chain().find_map(|e| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<BlobError>())
            .cloned()
    })
}

#[test]
fn a_blob_that_changed_after_the_fetch_is_still_caught() {
    let tars = layers();
    let b = LayoutBuilder::new();
    let layers: Vec<(Descriptor, Digest)> = tars.iter().map(|t| b.layer(t, Comp::Tar)).collect();
    let top = b.image("linux/amd64", &layers);
    let (layout, image) = resolve(&b, &top);
    // Layer 2's cached bytes change after the fetch: same length, other content.
    let second = &image.layers[1].descriptor;
    let path = b.blob_path(&second.digest);
    let mut bytes = fs_err::read(&path).unwrap();
    let at = bytes.windows(7).position(|w| w == b"second\n").unwrap();
    bytes[at] = b'S';
    fs_err::write(&path, &bytes).unwrap();

    // Not vouched for: its sha256 is checked, and fails.
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let err = apply_image(&root, &layout, &image, &opts()).unwrap_err();
    assert!(
        matches!(blob_error(&err), Some(BlobError::DigestMismatch { .. })),
        "{err:#}"
    );
    assert!(
        error_text(&err).contains("applying layer 2 of 5"),
        "{err:#}"
    );

    // Vouched for: the blob is held to its size only, and the diff_id still catches it.
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let err = apply_image_hashed(&root, &layout, &image, &[second.digest], &opts()).unwrap_err();
    let text = error_text(&err);
    assert!(text.contains("applying layer 2 of 5"), "{text}");
    assert!(
        text.contains("the image config says its diff_id is"),
        "{text}"
    );

    // One byte longer: refused by its size even when vouched for.
    bytes.push(0);
    fs_err::write(&path, &bytes).unwrap();
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let err = apply_image_hashed(&root, &layout, &image, &[second.digest], &opts()).unwrap_err();
    assert!(
        matches!(blob_error(&err), Some(BlobError::TooLong { .. })),
        "{err:#}"
    );
}

#[test]
fn a_missing_upper_blob_is_reported_after_the_layers_below_it() {
    let tars = layers();
    let b = LayoutBuilder::new();
    let layers: Vec<(Descriptor, Digest)> = tars.iter().map(|t| b.layer(t, Comp::Gzip)).collect();
    let top = b.image("linux/amd64", &layers);
    let (layout, image) = resolve(&b, &top);
    fs_err::remove_file(b.blob_path(&image.layers[4].descriptor.digest)).unwrap();
    let sb = Sandbox::new();
    let root = Root::open(&sb.root).unwrap();
    let err = apply_image(&root, &layout, &image, &opts()).unwrap_err();
    assert!(error_text(&err).contains("opening layer 5"), "{err:#}");
    // Layers 1 to 4 were applied before the error.
    assert!(sb.root.join("link/inside").exists());
}
