//! Image layouts built in test code: blobs written under their digests, manifests, configs and
//! indexes serialised from the crate's own types (or hand-written JSON for hostile ones).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::digest::Digest;
use crate::oci::manifest::{Descriptor, REF_NAME_ANNOTATION};
use crate::oci::media;
use crate::oci::platform::Platform;

#[derive(Debug, Clone, Copy)]
pub enum Comp {
    Tar,
    Gzip,
    Zstd,
}

pub fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::Tar => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 3).unwrap(),
    }
}

/// A layout directory under construction.
pub struct LayoutBuilder {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    entries: Vec<Descriptor>,
}

impl LayoutBuilder {
    pub fn new() -> LayoutBuilder {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        fs_err::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs_err::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        LayoutBuilder {
            _tmp: tmp,
            dir,
            entries: Vec::new(),
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    /// Writes `bytes` under their digest; returns a descriptor of `media_type`.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        let d = Digest::of(bytes);
        fs_err::write(self.blob_path(&d), bytes).unwrap();
        Descriptor::new(media_type, d, bytes.len() as u64)
    }

    /// A layer from an uncompressed tar: its descriptor and diff_id.
    pub fn layer(&self, tar: &[u8], comp: Comp) -> (Descriptor, Digest) {
        let mt = match comp {
            Comp::Tar => media::OCI_LAYER_TAR,
            Comp::Gzip => media::OCI_LAYER_GZIP,
            Comp::Zstd => media::OCI_LAYER_ZSTD,
        };
        (self.blob(mt, &compress(tar, comp)), Digest::of(tar))
    }

    /// An image config for `platform` ("linux/amd64") with `run` as its `config` object.
    pub fn config(
        &self,
        platform: &str,
        diff_ids: &[Digest],
        run: serde_json::Value,
    ) -> Descriptor {
        let mut parts = platform.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        let mut doc = json!({
            "architecture": arch, "os": os, "config": run,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": "test"}],
        });
        if let Some(v) = variant {
            doc["variant"] = json!(v);
        }
        self.blob(media::OCI_CONFIG, &serde_json::to_vec(&doc).unwrap())
    }

    /// An OCI image manifest.
    pub fn manifest(&self, config: &Descriptor, layers: &[Descriptor]) -> Descriptor {
        let doc = json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": config, "layers": layers,
        });
        self.blob(media::OCI_MANIFEST, &serde_json::to_vec(&doc).unwrap())
    }

    /// A whole single-platform image from layers: returns the manifest descriptor.
    pub fn image(&self, platform: &str, layers: &[(Descriptor, Digest)]) -> Descriptor {
        self.image_with(platform, layers, json!({"Cmd": ["/bin/sh"]}))
    }

    pub fn image_with(
        &self,
        platform: &str,
        layers: &[(Descriptor, Digest)],
        run: serde_json::Value,
    ) -> Descriptor {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.1).collect();
        let descs: Vec<Descriptor> = layers.iter().map(|l| l.0.clone()).collect();
        let config = self.config(platform, &diff_ids, run);
        self.manifest(&config, &descs)
    }

    /// An OCI index of `manifests`, each with its platform.
    pub fn index(&self, manifests: &[(&str, Descriptor)]) -> Descriptor {
        let entries: Vec<Descriptor> = manifests
            .iter()
            .map(|(platform, d)| {
                let mut parts = platform.split('/');
                let mut d = d.clone();
                d.platform = Some(Platform {
                    os: parts.next().unwrap().into(),
                    architecture: parts.next().unwrap().into(),
                    variant: parts.next().map(Into::into),
                    os_version: None,
                    os_features: None,
                    features: None,
                });
                d
            })
            .collect();
        let doc = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": entries});
        self.blob(media::OCI_INDEX, &serde_json::to_vec(&doc).unwrap())
    }

    /// Adds `desc` to `index.json` under `name` and rewrites it.
    pub fn tag(&mut self, desc: &Descriptor, name: &str) {
        let mut d = desc.clone();
        d.annotations = BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), name.to_string())]);
        self.entries.push(d);
        let doc = json!({"schemaVersion": 2, "manifests": self.entries});
        fs_err::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
    }
}

/// Every path below `dir` with its type and content (symlinks not followed), for comparing
/// trees; directories' contents are listed, their metadata is not.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let m = fs_err::symlink_metadata(&p).unwrap();
            let desc = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", fs_err::read_link(&p).unwrap().display())
            } else {
                format!(
                    "file {:o} {:?}",
                    m.mode() & 0o7777,
                    String::from_utf8_lossy(&fs_err::read(&p).unwrap())
                )
            };
            out.insert(rel, desc);
        }
    }
    out
}
