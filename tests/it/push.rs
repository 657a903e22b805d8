//! Pushing through the library's registry client (`sandboxes::source::registry::push`) into a real
//! distribution registry (Debian's docker-registry) on 127.0.0.1, read back by real skopeo.
//! Images are built in test code as layouts (digests from `sha2` in the harness); the
//! registry's access log says what was really transferred.

use std::path::Path;
use std::process::Command;

use sandboxes::digest::Digest;
use sandboxes::oci::{Descriptor, ImageManifest, ImageReference};
use sandboxes::source::registry::Registry as Client;
use sandboxes::source::registry::auth::Credentials;
use sandboxes::source::registry::push::{BlobFrom, push_image};

use crate::harness::ocimage::{BuiltImage, Comp, Entry, ImageSpec, LayerSpec, build_image};
use crate::harness::registry::Registry;
use crate::harness::{random_bytes, require_tool, run_tool, token};

/// Two gzip layers, one with incompressible data larger than a streaming chunk.
fn image(scratch: &Path) -> BuiltImage {
    let spec = ImageSpec {
        arch: "amd64",
        layers: vec![
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![
                    Entry::Dir("etc"),
                    Entry::File("etc/motd", token().into_bytes(), 0o644),
                ],
            },
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![
                    Entry::Dir("data"),
                    Entry::File("data/payload", random_bytes(700 << 10), 0o600),
                ],
            },
        ],
        entrypoint: vec!["/bin/sh"],
        cmd: vec![],
        env: vec!["A=1"],
        last_layer_size_lie: 0,
    };
    build_image(scratch, &spec)
}

fn blob_path(layout: &Path, hex: &str) -> std::path::PathBuf {
    layout.join("blobs/sha256").join(hex)
}

/// The manifest bytes and what `push_image` gets for them: the config from memory, the
/// layers as files.
fn push_inputs(layout: &Path, built: &BuiltImage) -> (Vec<u8>, Vec<(Descriptor, BlobFrom)>) {
    let bytes = std::fs::read(blob_path(layout, &built.manifest.hex)).expect("manifest blob");
    let manifest: ImageManifest = serde_json::from_slice(&bytes).expect("manifest JSON");
    let config = std::fs::read(blob_path(layout, &built.config.hex)).expect("config blob");
    let mut blobs = vec![(manifest.config.clone(), BlobFrom::Bytes(config))];
    for layer in &manifest.layers {
        let path = blob_path(layout, &layer.digest.hex());
        blobs.push((layer.clone(), BlobFrom::File(path)));
    }
    (bytes, blobs)
}

fn client(registry: &Registry, repo_tag: &str, creds: Option<Credentials>) -> Client {
    let reference = ImageReference::parse(&format!("{}/{repo_tag}", registry.host())).unwrap();
    Client::for_push(&reference, creds, false).unwrap()
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn push(
    client: &Client,
    tag: &str,
    manifest: &[u8],
    blobs: &[(Descriptor, BlobFrom)],
) -> anyhow::Result<Digest> {
    run(push_image(
        client,
        tag,
        manifest,
        sandboxes::oci::media::OCI_MANIFEST,
        blobs,
    ))
}

/// `skopeo inspect` of `repo:tag`: the digest the registry serves.
fn skopeo_digest(registry: &Registry, repo_tag: &str, creds: Option<&str>) -> String {
    let mut cmd = Command::new(require_tool("skopeo"));
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg(format!("--creds={c}"));
    }
    cmd.arg(registry.reference(repo_tag));
    let out: serde_json::Value =
        serde_json::from_slice(&run_tool(&mut cmd, None)).expect("skopeo inspect JSON");
    out["Digest"].as_str().expect("a Digest").to_string()
}

#[test]
fn a_pushed_image_is_read_and_copied_by_skopeo_and_a_second_push_sends_no_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(&tmp.path().join("registry"), None);
    let layout = tmp.path().join("layout");
    let built = image(&layout);
    let (manifest, blobs) = push_inputs(&layout, &built);

    let pusher = client(&registry, "team/app:1", None);
    let digest = push(&pusher, "1", &manifest, &blobs).unwrap();
    assert_eq!(digest.to_string(), built.manifest.digest());
    assert_eq!(
        skopeo_digest(&registry, "team/app:1", None),
        built.manifest.digest()
    );
    let uploads = registry.requests("PUT", "/v2/team/app/blobs/uploads/");
    assert_eq!(
        uploads, 3,
        "the config and two layers are uploaded once each"
    );

    // skopeo copies it out: every blob arrives under the digest we computed.
    let copy = tmp.path().join("copy");
    run_tool(
        Command::new(require_tool("skopeo")).args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            &registry.reference("team/app:1"),
            &format!("oci:{}:out", copy.display()),
        ]),
        None,
    );
    for blob in built.layers.iter().chain([&built.config, &built.manifest]) {
        let copied = std::fs::read(blob_path(&copy, &blob.hex)).expect("a copied blob");
        assert_eq!(crate::harness::sha256_hex(&copied), blob.hex);
        assert_eq!(copied.len() as u64, blob.size);
    }

    // Again under another tag: every blob is found by HEAD, nothing is uploaded.
    let heads = registry.requests("HEAD", "/v2/team/app/blobs/");
    let digest2 = push(&pusher, "2", &manifest, &blobs).unwrap();
    assert_eq!(digest2, digest);
    assert_eq!(
        registry.requests("PUT", "/v2/team/app/blobs/uploads/"),
        uploads
    );
    assert_eq!(
        registry.requests("POST", "/v2/team/app/blobs/uploads/"),
        uploads
    );
    assert_eq!(registry.requests("HEAD", "/v2/team/app/blobs/"), heads + 3);
    assert_eq!(
        skopeo_digest(&registry, "team/app:2", None),
        built.manifest.digest()
    );

    // Another repository of the same registry mounts what it can instead of uploading.
    let other = client(&registry, "team/other:1", None);
    let layer = &blobs[1].0.digest;
    assert_eq!(run(other.blob_exists(layer)).unwrap(), None);
    assert!(run(other.mount_blob(layer, "team/app")).unwrap());
    assert_eq!(
        run(other.blob_exists(layer)).unwrap(),
        Some(blobs[1].0.size)
    );
    let absent = Digest::of(token().as_bytes());
    assert!(!run(other.mount_blob(&absent, "team/app")).unwrap());
    assert_eq!(run(other.blob_exists(&absent)).unwrap(), None);
    assert_eq!(
        registry.requests("PUT", "/v2/team/other/blobs/uploads/"),
        0,
        "a mount transfers nothing"
    );
    // The session the refused mount opened was cancelled, not left behind.
    assert_eq!(
        registry.requests("DELETE", "/v2/team/other/blobs/uploads/"),
        1
    );
}

#[test]
fn pushing_to_a_registry_with_htpasswd_needs_the_right_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(&tmp.path().join("registry"), Some(("pusher", "s3cret-pw")));
    let layout = tmp.path().join("layout");
    let built = image(&layout);
    let (manifest, blobs) = push_inputs(&layout, &built);

    let err = push(
        &client(&registry, "team/app:1", None),
        "1",
        &manifest,
        &blobs,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    let expected = format!(
        "no push access to team/app at {} (check --creds / auth file; tried without credentials)",
        registry.host()
    );
    assert!(msg.contains(&expected), "{msg}");

    let wrong = Credentials::new("pusher", "not-the-pw", "test");
    let err = push(
        &client(&registry, "team/app:1", Some(wrong)),
        "1",
        &manifest,
        &blobs,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no push access to team/app") && msg.contains("user `pusher` from test"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-pw"), "{msg}");
    assert_eq!(registry.requests("PUT", "/v2/team/app/"), 0);

    let right = Credentials::new("pusher", "s3cret-pw", "test");
    let digest = push(
        &client(&registry, "team/app:1", Some(right)),
        "1",
        &manifest,
        &blobs,
    )
    .unwrap();
    assert_eq!(digest.to_string(), built.manifest.digest());
    assert_eq!(
        skopeo_digest(&registry, "team/app:1", Some("pusher:s3cret-pw")),
        built.manifest.digest()
    );
}

#[test]
fn a_blob_whose_bytes_are_not_its_digest_is_refused_by_the_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start(&tmp.path().join("registry"), None);
    let layout = tmp.path().join("layout");
    let built = image(&layout);
    let (manifest, mut blobs) = push_inputs(&layout, &built);

    // Same size, other bytes: only the digest can tell.
    let layer = blobs[2].0.clone();
    let forged = tmp.path().join("forged");
    std::fs::write(&forged, random_bytes(layer.size as usize)).unwrap();
    blobs[2].1 = BlobFrom::File(forged.clone());

    let err = push(
        &client(&registry, "team/app:1", None),
        "1",
        &manifest,
        &blobs,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    let expected_start = format!(
        "uploading blob {} from {}: PUT http://{}/v2/team/app/blobs/uploads/",
        layer.digest,
        forged.display(),
        registry.host()
    );
    assert!(msg.starts_with(&expected_start), "{msg}");
    assert!(
        msg.contains("400 Bad Request") && msg.contains("DIGEST_INVALID"),
        "the registry's status and error code: {msg}"
    );
    assert!(
        !msg.contains("_state="),
        "no session state in the message: {msg}"
    );
    // Nothing is tagged, and the forged upload was not kept under the layer's digest.
    assert_eq!(registry.requests("PUT", "/v2/team/app/manifests/"), 0);
    let pusher = client(&registry, "team/app:1", None);
    assert_eq!(run(pusher.blob_exists(&layer.digest)).unwrap(), None);
}
