//! OCI image layouts built in test code: layers as tars (the `tar` crate) compressed with
//! gzip, zstd or not at all, a config with entrypoint/cmd/env and diff_ids, a manifest, and
//! `index.json` naming it (or a two-platform index) by tag. The digests are computed here
//! with `sha2` independently of the crate under test; skopeo then pushes or archives these
//! layouts, so a bad layout would be refused by a real tool first.

use std::io::Write as _;
use std::path::Path;

use serde_json::json;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One member of a layer.
pub enum Entry {
    Dir(&'static str),
    File(&'static str, Vec<u8>, u32),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// Deletes `path` of a lower layer (`dir/.wh.name`).
    Whiteout(&'static str),
    /// Hides everything lower layers put in the directory (`dir/.wh..wh..opq`).
    Opaque(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub struct LayerSpec {
    pub entries: Vec<Entry>,
    pub comp: Comp,
}

pub struct ImageSpec {
    pub arch: &'static str,
    pub layers: Vec<LayerSpec>,
    pub entrypoint: Vec<&'static str>,
    pub cmd: Vec<&'static str>,
    pub env: Vec<&'static str>,
    /// Adds this to the last layer's descriptor size: a manifest that lies.
    pub last_layer_size_lie: u64,
}

/// A blob written into a layout.
#[derive(Clone, Debug)]
pub struct Blob {
    pub hex: String,
    pub size: u64,
}

impl Blob {
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.hex)
    }
}

pub struct BuiltImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// Writes `data` as a blob of the layout `dir`.
pub fn write_blob(dir: &Path, data: &[u8]) -> Blob {
    let hex = super::sha256_hex(data);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("creating blobs/sha256");
    std::fs::write(blobs.join(&hex), data).expect("writing a blob");
    Blob {
        hex,
        size: data.len() as u64,
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// The uncompressed tar of a layer.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(p) => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, p, &[][..]).expect("tar dir");
            }
            Entry::File(p, data, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, p, &data[..]).expect("tar file");
            }
            Entry::Symlink(p, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, p, target).expect("tar symlink");
            }
            Entry::Hardlink(p, target) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                b.append_link(&mut h, p, target).expect("tar hardlink");
            }
            Entry::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
                let path = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, path, &[][..]).expect("tar whiteout");
            }
            Entry::Opaque(dir) => {
                let mut h = header(tar::EntryType::Regular, 0o644, 0);
                b.append_data(&mut h, format!("{dir}/.wh..wh..opq"), &[][..])
                    .expect("tar opaque marker");
            }
        }
    }
    b.into_inner().expect("finishing the tar")
}

fn compress(tar: &[u8], comp: Comp) -> (Vec<u8>, &'static str) {
    match comp {
        Comp::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(tar).expect("gzip");
            (
                enc.finish().expect("gzip"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(tar, 3).expect("zstd"),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    }
}

/// Writes the blobs of one image (layers, config, manifest) into the layout `dir`.
pub fn build_image(dir: &Path, spec: &ImageSpec) -> BuiltImage {
    let mut layers = Vec::new();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (i, l) in spec.layers.iter().enumerate() {
        let tar = layer_tar(&l.entries);
        diff_ids.push(format!("sha256:{}", super::sha256_hex(&tar)));
        let (bytes, media_type) = compress(&tar, l.comp);
        let blob = write_blob(dir, &bytes);
        let lie = if i + 1 == spec.layers.len() {
            spec.last_layer_size_lie
        } else {
            0
        };
        descriptors.push(json!({
            "mediaType": media_type, "digest": blob.digest(), "size": blob.size + lie
        }));
        layers.push(blob);
    }
    let config = json!({
        "architecture": spec.arch,
        "os": "linux",
        "config": {"Entrypoint": spec.entrypoint, "Cmd": spec.cmd, "Env": spec.env},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = write_blob(dir, &serde_json::to_vec(&config).expect("config json"));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest(), "size": config.size
        },
        "layers": descriptors,
    });
    let manifest = write_blob(dir, &serde_json::to_vec(&manifest).expect("manifest json"));
    BuiltImage {
        manifest,
        config,
        layers,
    }
}

/// Writes `oci-layout` and an `index.json` naming `top` (of `media_type`) as `tag`.
pub fn write_index_json(dir: &Path, media_type: &str, top: &Blob, tag: &str) {
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": media_type, "digest": top.digest(), "size": top.size,
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("index json"),
    )
    .expect("writing index.json");
}

/// A layout holding one image tagged `tag`.
pub fn single_image_layout(dir: &Path, spec: &ImageSpec, tag: &str) -> BuiltImage {
    let image = build_image(dir, spec);
    write_index_json(dir, OCI_MANIFEST, &image.manifest, tag);
    image
}

/// A layout whose `tag` names an image index over `specs` (one per architecture).
pub fn multi_platform_layout(
    dir: &Path,
    specs: &[ImageSpec],
    tag: &str,
) -> (Blob, Vec<BuiltImage>) {
    let images: Vec<BuiltImage> = specs.iter().map(|s| build_image(dir, s)).collect();
    let manifests: Vec<serde_json::Value> = specs
        .iter()
        .zip(&images)
        .map(|(s, i)| {
            json!({
                "mediaType": OCI_MANIFEST, "digest": i.manifest.digest(), "size": i.manifest.size,
                "platform": {"architecture": s.arch, "os": "linux"}
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let index = write_blob(dir, &serde_json::to_vec(&index).expect("index json"));
    write_index_json(dir, OCI_INDEX, &index, tag);
    (index, images)
}

/// The host's architecture in OCI spelling, as the binary picks by default.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("these tests know no OCI name for {other}"),
    }
}

/// One gzip layer with an executable `/sbin/init`: an image that boots, so no `.nspawn`.
pub fn init_image() -> ImageSpec {
    ImageSpec {
        arch: host_arch(),
        layers: vec![LayerSpec {
            comp: Comp::Gzip,
            entries: vec![
                Entry::Dir("sbin"),
                Entry::File("sbin/init", b"#!/bin/sh\n".to_vec(), 0o755),
            ],
        }],
        entrypoint: vec![],
        cmd: vec!["/sbin/init"],
        env: vec![],
        last_layer_size_lie: 0,
    }
}
