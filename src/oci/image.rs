//! From a top descriptor (a layout's tagged entry, later a registry's manifest) to one image:
//! indexes are walked to the wanted platform, the manifest and config are read, verified and
//! validated, and every layer is checked to be one this tool can apply — all before a single
//! layer byte is read. Works over any [`BlobSource`].

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::blob::{BlobSource, read_verified};
use super::config::{ImageConfig, MAX_CONFIG_SIZE};
use super::manifest::{
    Descriptor, ImageIndex, ImageManifest, MAX_MANIFEST_SIZE, Manifest, parse_manifest,
};
use super::media::{self, LayerCompression};
use super::platform::PlatformSpec;
use crate::digest::Digest;

/// Nested indexes deeper than this are refused (real ones nest once, in layouts).
const MAX_INDEX_DEPTH: usize = 4;

/// A manifest or index as fetched: its descriptor and exact bytes (what the digest covers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

/// One layer to apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub compression: LayerCompression,
    /// The sha256 of the uncompressed tar, from the config.
    pub diff_id: Digest,
}

/// An image resolved down to its layers; every document in it has been verified.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The indexes walked through, outermost first.
    pub indexes: Vec<FetchedManifest>,
    pub manifest: FetchedManifest,
    pub image: ImageManifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
}

/// What a sandbox records about the image it came from.
#[derive(Debug, Clone, Serialize)]
pub struct ImageProvenance {
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub index_digests: Vec<Digest>,
    pub config_digest: Digest,
    pub platform: Option<String>,
    pub layers: Vec<Layer>,
    /// The image config document itself.
    pub config: serde_json::Value,
}

impl ResolvedImage {
    pub fn provenance(&self) -> Result<ImageProvenance> {
        Ok(ImageProvenance {
            manifest_digest: self.manifest.descriptor.digest,
            manifest_media_type: self.manifest.descriptor.media_type.clone(),
            index_digests: self.indexes.iter().map(|i| i.descriptor.digest).collect(),
            config_digest: self.image.config.digest,
            platform: self.config.platform().map(|p| p.to_string()),
            layers: self.layers.clone(),
            config: serde_json::from_slice(&self.config_bytes)
                .context("re-reading the image config")?,
        })
    }
}

/// Resolves `top` to one image for `want` (see the module documentation).
pub fn resolve_image(
    source: &dyn BlobSource,
    top: &Descriptor,
    want: &PlatformSpec,
) -> Result<ResolvedImage> {
    let mut indexes = Vec::new();
    let mut descriptor = top.clone();
    let (manifest, image) = loop {
        let bytes = read_verified(source, &descriptor, MAX_MANIFEST_SIZE, "manifest")?;
        let parsed = parse_manifest(&bytes, Some(&descriptor.media_type))
            .with_context(|| format!("manifest {}", descriptor.digest))?;
        let fetched = FetchedManifest {
            descriptor: Descriptor {
                media_type: parsed.media_type.clone(),
                ..descriptor.clone()
            },
            bytes,
        };
        match parsed.manifest {
            Manifest::Image(image) => break (fetched, image),
            Manifest::Index(index) => {
                if indexes.len() == MAX_INDEX_DEPTH {
                    bail!("indexes nest more than {MAX_INDEX_DEPTH} deep");
                }
                let chosen = choose_manifest(&index, want)
                    .with_context(|| format!("in index {}", descriptor.digest))?
                    .clone();
                indexes.push(fetched);
                descriptor = chosen;
            }
        }
    };
    let digest = manifest.descriptor.digest;
    let (config_bytes, config, layers) =
        check_image(source, &image, want).with_context(|| format!("image manifest {digest}"))?;
    Ok(ResolvedImage {
        indexes,
        manifest,
        image,
        config_bytes,
        config,
        layers,
    })
}

fn check_image(
    source: &dyn BlobSource,
    image: &ImageManifest,
    want: &PlatformSpec,
) -> Result<(Vec<u8>, ImageConfig, Vec<Layer>)> {
    if !media::is_image_config(&image.config.media_type) {
        bail!(
            "not a container image: its config has media type `{}`{}",
            image.config.media_type,
            image
                .artifact_type
                .as_deref()
                .map(|a| format!(" (artifact type `{a}`)"))
                .unwrap_or_default()
        );
    }
    let config_bytes = read_verified(source, &image.config, MAX_CONFIG_SIZE, "image config")?;
    let config = ImageConfig::parse(&config_bytes)
        .with_context(|| format!("image config {}", image.config.digest))?;
    if let Some(platform) = config.platform()
        && want.preference(&platform).is_none()
    {
        bail!("the image is for {platform}, not {want} (choose another with --platform)");
    }
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != image.layers.len() {
        bail!(
            "the manifest lists {} layers but the config has {} diff_ids",
            image.layers.len(),
            diff_ids.len()
        );
    }
    let layers = image
        .layers
        .iter()
        .zip(diff_ids)
        .enumerate()
        .map(|(i, (descriptor, diff_id))| {
            let compression = media::layer_compression(&descriptor.media_type)
                .with_context(|| format!("layer {} ({})", i + 1, descriptor.digest))?;
            Ok(Layer {
                descriptor: descriptor.clone(),
                compression,
                diff_id: *diff_id,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((config_bytes, config, layers))
}

/// The entry of `index` to use on `want`: the best [`PlatformSpec::preference`], the first of
/// equals; an index whose only entry has no platform (a layout's tag list) yields that entry.
/// Pure.
pub fn choose_manifest<'a>(index: &'a ImageIndex, want: &PlatformSpec) -> Result<&'a Descriptor> {
    let best = index
        .manifests
        .iter()
        .filter(|d| media::manifest_kind(&d.media_type).is_some())
        .filter_map(|d| {
            let p = PlatformSpec::of(d.platform.as_ref()?);
            Some((want.preference(&p)?, d))
        })
        .min_by_key(|(rank, _)| *rank);
    if let Some((_, d)) = best {
        return Ok(d);
    }
    if let [only] = index.manifests.as_slice()
        && only.platform.is_none()
    {
        return Ok(only);
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| PlatformSpec::of(p).to_string())
        .filter(|p| p != "unknown/unknown")
        .collect();
    available.dedup();
    bail!(
        "no image for {want} (available: {})",
        if available.is_empty() {
            "none with a platform".to_string()
        } else {
            available.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::platform::Platform;

    fn entry(platform: Option<(&str, &str, Option<&str>)>, tag: u8) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::of(&[tag]), 1);
        d.platform = platform.map(|(os, arch, variant)| Platform {
            architecture: arch.into(),
            os: os.into(),
            os_version: None,
            os_features: None,
            variant: variant.map(Into::into),
            features: None,
        });
        d
    }

    fn index(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: None,
            artifact_type: None,
            manifests,
            subject: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn chooses_by_platform() {
        let ix = index(vec![
            entry(Some(("linux", "amd64", None)), 1),
            entry(Some(("linux", "arm64", Some("v8"))), 2),
            entry(Some(("linux", "arm", Some("v6"))), 3),
            entry(Some(("linux", "arm", Some("v7"))), 4),
            entry(Some(("unknown", "unknown", None)), 5),
            entry(Some(("linux", "arm", Some("v5"))), 6),
        ]);
        let pick =
            |w: &str| choose_manifest(&ix, &PlatformSpec::parse(w).unwrap()).map(|d| d.digest);
        assert_eq!(pick("linux/amd64").unwrap(), Digest::of(&[1]));
        assert_eq!(pick("linux/arm64").unwrap(), Digest::of(&[2]));
        assert_eq!(pick("linux/arm/v7").unwrap(), Digest::of(&[4]));
        assert_eq!(pick("linux/arm/v6").unwrap(), Digest::of(&[3]));
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(
            err.contains("no image for linux/s390x (available: linux/amd64, linux/arm64, linux/arm/v6, linux/arm/v7, linux/arm/v5)"),
            "{err}"
        );
        // Without v7, an arm/v7 host takes the next best.
        let ix = index(vec![
            entry(Some(("linux", "arm", Some("v5"))), 1),
            entry(Some(("linux", "arm", Some("v6"))), 2),
        ]);
        let want = PlatformSpec::parse("linux/arm").unwrap();
        assert_eq!(
            choose_manifest(&ix, &want).unwrap().digest,
            Digest::of(&[2])
        );
    }

    #[test]
    fn a_single_entry_without_platform_is_taken() {
        let want = PlatformSpec::parse("linux/amd64").unwrap();
        let ix = index(vec![entry(None, 1)]);
        assert_eq!(
            choose_manifest(&ix, &want).unwrap().digest,
            Digest::of(&[1])
        );
        let ix = index(vec![entry(None, 1), entry(None, 2)]);
        assert!(choose_manifest(&ix, &want).is_err());
    }
}
