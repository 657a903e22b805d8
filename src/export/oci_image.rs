//! The OCI image a build writes (`--output oci-layout:` / `docker://`): its config and
//! manifest, composed from the base and the new layers. Pure: bytes in, bytes out.
//!
//! - An OCI base keeps its layers exactly (same blobs, same digests: a host that holds the
//!   base fetches only the new layer); Docker layer media types are written as their OCI
//!   equivalents (the same bytes). Its config is kept too, with the new layer's diff_id and
//!   a history entry appended, and `created` set.
//! - A tarball or LXC base becomes one layer of its own (the unpacked base), then the delta.
//!   The config is new: the host's platform, no entry point (the image boots its own init
//!   under systemd-nspawn).
//! - Labels and manifest annotations record the templates, their content hash and the base
//!   (`org.opencontainers.image.base.*` for an OCI base, `org.sandboxes.base.*` always).
//!   The rendered `.nspawn` rides along as the `org.sandboxes.nspawn` label.
//!
//! Same inputs, same bytes: JSON objects are written with sorted keys (serde_json's map), and
//! the time is the build's SOURCE_DATE_EPOCH when set.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::oci::manifest::{Descriptor, ImageManifest};
use crate::oci::media;

pub const LABEL_TEMPLATE: &str = "org.sandboxes.template";
pub const LABEL_TEMPLATE_HASH: &str = "org.sandboxes.template.hash";
pub const LABEL_BASE_SOURCE: &str = "org.sandboxes.base.source";
pub const LABEL_BASE_DIGEST: &str = "org.sandboxes.base.digest";
use crate::oci::LABEL_NSPAWN;
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";

/// A layer this build made: its (gzip) blob and the digest of its tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
}

/// What the image is built on.
#[derive(Debug, Clone)]
pub enum BaseInfo<'a> {
    Oci {
        /// The source as written (`docker://…`).
        source: &'a str,
        /// The base's registry name for `org.opencontainers.image.base.name`, when it has one.
        name: Option<String>,
        manifest_digest: Digest,
        manifest: &'a ImageManifest,
        config: &'a [u8],
    },
    /// A tarball or LXC image: its first new layer is the base tree.
    Tarball {
        source: &'a str,
        digest: Digest,
        /// The OCI platform of this host (`amd64`, `arm64`, …).
        architecture: &'a str,
        variant: Option<&'a str>,
    },
}

/// What the build adds.
#[derive(Debug, Clone)]
pub struct ImageInputs<'a> {
    pub base: BaseInfo<'a>,
    /// Lowest first: the base tree (tarball bases only), then the delta.
    pub layers: &'a [NewLayer],
    /// `debian+docker`.
    pub templates: &'a str,
    pub content_hash: Digest,
    /// RFC 3339.
    pub created: &'a str,
    pub nspawn: &'a str,
}

/// The composed image.
#[derive(Debug, Clone)]
pub struct ComposedImage {
    pub config: Vec<u8>,
    pub config_descriptor: Descriptor,
    pub manifest: Vec<u8>,
    pub manifest_descriptor: Descriptor,
    /// Every layer, lowest first.
    pub layers: Vec<Descriptor>,
}

/// Composes config and manifest, as the module documentation says.
pub fn compose(inputs: &ImageInputs<'_>) -> Result<ComposedImage> {
    let (mut config, mut layers, base_source, base_digest) = match &inputs.base {
        BaseInfo::Oci {
            source,
            manifest_digest,
            manifest,
            config,
            ..
        } => {
            let config: Value =
                serde_json::from_slice(config).context("reading the base's image config")?;
            let layers = manifest
                .layers
                .iter()
                .map(oci_layer)
                .collect::<Result<Vec<_>>>()?;
            (config, layers, *source, *manifest_digest)
        }
        BaseInfo::Tarball {
            source,
            digest,
            architecture,
            variant,
        } => {
            let mut config = json!({
                "architecture": architecture,
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            });
            if let Some(v) = variant {
                config["variant"] = json!(v);
            }
            (config, Vec::new(), *source, *digest)
        }
    };
    let Some(obj) = config.as_object_mut() else {
        bail!("the base's image config is not a JSON object");
    };
    obj.insert("created".into(), json!(inputs.created));
    let diff_ids = obj
        .get_mut("rootfs")
        .and_then(|r| r.get_mut("diff_ids"))
        .and_then(Value::as_array_mut)
        .context("the base's image config has no rootfs.diff_ids")?;
    if diff_ids.len() != layers.len() {
        bail!(
            "the base's image config lists {} diff_ids for {} layers",
            diff_ids.len(),
            layers.len()
        );
    }
    for layer in inputs.layers {
        diff_ids.push(json!(layer.diff_id.to_string()));
        layers.push(Descriptor::new(
            media::OCI_LAYER_GZIP,
            layer.digest,
            layer.size,
        ));
    }
    let base_layer = matches!(inputs.base, BaseInfo::Tarball { .. }) && inputs.layers.len() > 1;
    if let Some(history) = obj.get_mut("history").and_then(Value::as_array_mut) {
        if base_layer {
            history.push(json!({
                "created": inputs.created,
                "created_by": format!("sandbox build: the base {base_source}"),
            }));
        }
        history.push(json!({
            "created": inputs.created,
            "created_by": format!("sandbox build {}", inputs.templates),
            "comment": format!("templates {} (content {})", inputs.templates, inputs.content_hash),
        }));
    }
    let labels = obj
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .context("the base's image config has a `config` that is not an object")?
        .entry("Labels")
        .or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    let Some(labels) = labels.as_object_mut() else {
        bail!("the base's image config has Labels that are not an object");
    };
    let mut ours = BTreeMap::new();
    ours.insert(LABEL_TEMPLATE, inputs.templates.to_string());
    ours.insert(LABEL_TEMPLATE_HASH, inputs.content_hash.to_string());
    ours.insert(LABEL_BASE_SOURCE, base_source.to_string());
    ours.insert(LABEL_BASE_DIGEST, base_digest.to_string());
    for (k, v) in &ours {
        labels.insert(k.to_string(), json!(v));
    }
    labels.insert(LABEL_NSPAWN.into(), json!(inputs.nspawn));

    let config_bytes = serde_json::to_vec(&config).context("encoding the image config")?;
    let config_descriptor = Descriptor::new(
        media::OCI_CONFIG,
        Digest::of(&config_bytes),
        config_bytes.len() as u64,
    );
    let mut annotations: BTreeMap<String, String> =
        ours.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    annotations.insert(ANNOTATION_CREATED.into(), inputs.created.to_string());
    if let BaseInfo::Oci {
        manifest_digest,
        name,
        ..
    } = &inputs.base
    {
        annotations.insert(ANNOTATION_BASE_DIGEST.into(), manifest_digest.to_string());
        if let Some(n) = name {
            annotations.insert(ANNOTATION_BASE_NAME.into(), n.clone());
        }
    }
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config_descriptor.clone(),
        layers: layers.clone(),
        subject: None,
        annotations,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).context("encoding the image manifest")?;
    let manifest_descriptor = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::of(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    Ok(ComposedImage {
        config: config_bytes,
        config_descriptor,
        manifest: manifest_bytes,
        manifest_descriptor,
        layers,
    })
}

/// A base layer's descriptor for an OCI manifest: Docker's layer types become the OCI types
/// of the same bytes; what has no OCI equivalent is refused.
fn oci_layer(d: &Descriptor) -> Result<Descriptor> {
    let media_type = match d.media_type.as_str() {
        media::OCI_LAYER_TAR | media::DOCKER_LAYER_TAR => media::OCI_LAYER_TAR,
        media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
        media::OCI_LAYER_ZSTD | media::DOCKER_LAYER_ZSTD => media::OCI_LAYER_ZSTD,
        other => bail!(
            "the base layer {} has the media type {other}, which an image built on it cannot carry",
            d.digest
        ),
    };
    let mut out = d.clone();
    out.media_type = media_type.to_string();
    out.urls.clear();
    Ok(out)
}

/// RFC 3339 (UTC, seconds) of a time in seconds since 1970. Pure.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> NewLayer {
        NewLayer {
            digest: Digest::of(&[n]),
            size: 100 + u64::from(n),
            diff_id: Digest::of(&[n, n]),
        }
    }

    fn tarball_inputs<'a>(layers: &'a [NewLayer]) -> ImageInputs<'a> {
        ImageInputs {
            base: BaseInfo::Tarball {
                source: "https://example.org/rootfs.tar.xz",
                digest: Digest::of(b"tarball"),
                architecture: "amd64",
                variant: None,
            },
            layers,
            templates: "debian+docker",
            content_hash: Digest::of(b"templates"),
            created: "2023-11-14T22:13:20Z",
            nspawn: "[Exec]\nBoot=yes\n",
        }
    }

    #[test]
    fn a_tarball_base_gets_a_fresh_config_with_both_layers() {
        let layers = [layer(1), layer(2)];
        let img = compose(&tarball_inputs(&layers)).unwrap();
        let config: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([layers[0].diff_id.to_string(), layers[1].diff_id.to_string()])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        assert_eq!(
            config["config"]["Labels"][LABEL_NSPAWN],
            "[Exec]\nBoot=yes\n"
        );
        let manifest: ImageManifest = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(manifest.config.digest, Digest::of(&img.config));
        assert_eq!(manifest.layers.len(), 2);
        assert!(
            manifest
                .layers
                .iter()
                .all(|l| l.media_type == media::OCI_LAYER_GZIP)
        );
        assert_eq!(
            manifest.annotations[LABEL_BASE_DIGEST],
            Digest::of(b"tarball").to_string()
        );
        assert_eq!(manifest.annotations[LABEL_TEMPLATE], "debian+docker");
        assert!(!manifest.annotations.contains_key(ANNOTATION_BASE_DIGEST));
        assert_eq!(img.manifest_descriptor.digest, Digest::of(&img.manifest));
        // Same inputs, same bytes.
        let again = compose(&tarball_inputs(&layers)).unwrap();
        assert_eq!(again.manifest, img.manifest);
        assert_eq!(again.config, img.config);
    }

    #[test]
    fn an_oci_base_keeps_its_layers_and_config_fields() {
        let base_layer = Descriptor::new(media::DOCKER_LAYER_GZIP, Digest::of(b"l1"), 7);
        let base_config = json!({
            "architecture": "arm64", "variant": "v8", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Labels": null, "Cmd": ["bash"]},
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"d1").to_string()]},
            "history": [{"created_by": "base"}],
            "custom": {"kept": true}
        });
        let config_bytes = serde_json::to_vec(&base_config).unwrap();
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media::DOCKER_MANIFEST.into()),
            artifact_type: None,
            config: Descriptor::new(media::DOCKER_CONFIG, Digest::of(&config_bytes), 1),
            layers: vec![base_layer.clone()],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let delta = [layer(9)];
        let inputs = ImageInputs {
            base: BaseInfo::Oci {
                source: "docker://example.org/base:1",
                name: Some("example.org/base:1".into()),
                manifest_digest: Digest::of(b"base manifest"),
                manifest: &manifest,
                config: &config_bytes,
            },
            ..tarball_inputs(&delta)
        };
        let img = compose(&inputs).unwrap();
        let config: Value = serde_json::from_slice(&img.config).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["custom"]["kept"], true);
        assert_eq!(config["config"]["Cmd"], json!(["bash"]));
        assert_eq!(config["config"]["Labels"][LABEL_TEMPLATE], "debian+docker");
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([Digest::of(b"d1").to_string(), delta[0].diff_id.to_string()])
        );
        assert_eq!(config["history"].as_array().unwrap().len(), 2);
        let m: ImageManifest = serde_json::from_slice(&img.manifest).unwrap();
        assert_eq!(m.layers[0].digest, base_layer.digest);
        assert_eq!(m.layers[0].size, base_layer.size);
        assert_eq!(m.layers[0].media_type, media::OCI_LAYER_GZIP);
        assert_eq!(m.layers[1].digest, delta[0].digest);
        assert_eq!(
            m.annotations[ANNOTATION_BASE_DIGEST],
            Digest::of(b"base manifest").to_string()
        );
        assert_eq!(m.annotations[ANNOTATION_BASE_NAME], "example.org/base:1");

        // A config whose diff_ids do not match the layers is refused.
        let mut bad = base_config.clone();
        bad["rootfs"]["diff_ids"] = json!([]);
        let bad_bytes = serde_json::to_vec(&bad).unwrap();
        let inputs = ImageInputs {
            base: BaseInfo::Oci {
                source: "docker://example.org/base:1",
                name: None,
                manifest_digest: Digest::of(b"m"),
                manifest: &manifest,
                config: &bad_bytes,
            },
            ..tarball_inputs(&delta)
        };
        assert!(compose(&inputs).is_err());
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
