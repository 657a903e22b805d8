//! Media types: which documents are manifests or indexes, which blobs are configs, and how a
//! layer is compressed. Values are the registered strings of the OCI image spec and of
//! Docker's image manifest v2 schema 2; anything else is refused by name, never guessed.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const OCI_NONDISTRIBUTABLE_PREFIX: &str = "application/vnd.oci.image.layer.nondistributable.";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What a manifest document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// One image: a config and layers.
    Image,
    /// A list of manifests, usually one per platform.
    Index,
}

impl ManifestKind {
    pub fn name(self) -> &'static str {
        match self {
            ManifestKind::Image => "image manifest",
            ManifestKind::Index => "image index",
        }
    }
}

/// The kind of a manifest media type; `None` for anything that is not one we read.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        _ => None,
    }
}

/// True for Docker's deprecated schema 1 manifests, which are refused with their own message.
pub fn is_docker_schema1(media_type: &str) -> bool {
    media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED
}

/// True for the config media types of container images (not of other OCI artifacts).
pub fn is_image_config(media_type: &str) -> bool {
    media_type == OCI_CONFIG || media_type == DOCKER_CONFIG
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// Why a layer media type is not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerTypeError {
    #[error(
        "layer media type `{0}` is a foreign or non-distributable layer (its content lives \
         outside the image, typically Windows base layers): not supported"
    )]
    Foreign(String),
    #[error(
        "layer media type `{0}` is not a filesystem layer this tool can apply (expected an OCI \
         or Docker tar, tar+gzip or tar+zstd layer)"
    )]
    Unknown(String),
}

/// The compression of a layer media type.
pub fn layer_compression(media_type: &str) -> Result<LayerCompression, LayerTypeError> {
    match media_type {
        OCI_LAYER_TAR | DOCKER_LAYER_TAR => Ok(LayerCompression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(LayerCompression::Gzip),
        OCI_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Ok(LayerCompression::Zstd),
        m if m == DOCKER_FOREIGN_LAYER || m.starts_with(OCI_NONDISTRIBUTABLE_PREFIX) => {
            Err(LayerTypeError::Foreign(m.to_string()))
        }
        m => Err(LayerTypeError::Unknown(m.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_kinds() {
        let table = [
            (OCI_MANIFEST, Some(ManifestKind::Image)),
            (DOCKER_MANIFEST, Some(ManifestKind::Image)),
            (OCI_INDEX, Some(ManifestKind::Index)),
            (DOCKER_MANIFEST_LIST, Some(ManifestKind::Index)),
            (DOCKER_SCHEMA1, None),
            (OCI_CONFIG, None),
            ("application/json", None),
            ("", None),
        ];
        for (mt, want) in table {
            assert_eq!(manifest_kind(mt), want, "{mt}");
        }
        assert!(is_docker_schema1(DOCKER_SCHEMA1_SIGNED));
        assert!(!is_docker_schema1(DOCKER_MANIFEST));
    }

    #[test]
    fn layer_compressions() {
        use LayerCompression::*;
        let ok = [
            (OCI_LAYER_TAR, None),
            (OCI_LAYER_GZIP, Gzip),
            (OCI_LAYER_ZSTD, Zstd),
            (DOCKER_LAYER_TAR, None),
            (DOCKER_LAYER_GZIP, Gzip),
            (DOCKER_LAYER_ZSTD, Zstd),
        ];
        for (mt, want) in ok {
            assert_eq!(layer_compression(mt), Ok(want), "{mt}");
        }
        for foreign in [
            DOCKER_FOREIGN_LAYER,
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
        ] {
            let err = layer_compression(foreign).unwrap_err();
            assert!(matches!(err, LayerTypeError::Foreign(_)), "{foreign}");
            assert!(err.to_string().contains(foreign));
        }
        for unknown in [
            "application/vnd.oci.image.layer.v1.tar+xz",
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            OCI_CONFIG,
            "",
        ] {
            assert!(
                matches!(layer_compression(unknown), Err(LayerTypeError::Unknown(_))),
                "{unknown}"
            );
        }
    }
}
