//! Descriptors, image manifests and image indexes (OCI and Docker v2 schema 2), parsed from
//! bytes and validated before anything trusts them.
//!
//! What is refused, and why:
//! - documents over [`MAX_MANIFEST_SIZE`] (4 MiB, the limit registries apply): a manifest is
//!   read into memory whole, and a hostile one must not make us allocate without bound;
//! - a document with both `manifests` and `layers` (or `config`): it reads as an index to one
//!   tool and as an image to another, so what gets verified need not be what gets run;
//! - a `mediaType` field that disagrees with the document's shape, or with the media type the
//!   referring descriptor (or the registry's Content-Type) declared: same confusion;
//! - duplicate keys (serde refuses them), `schemaVersion` other than 2, Docker schema 1.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::media::{self, ManifestKind};
use super::platform::Platform;
use crate::digest::Digest;

/// Manifests and indexes larger than this are refused before parsing.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The annotation of `index.json` entries that names them (`oci-layout:DIR:TAG`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A reference to content: its media type, digest and exact size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The `org.opencontainers.image.ref.name` annotation.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(REF_NAME_ANNOTATION)
            .map(String::as_str)
    }
}

/// One image: its config and its layers, lowest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A list of manifests (one per platform, or the tags of an image layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed and validated manifest document.
// One or two exist at a time, briefly: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    Image(ImageManifest),
    Index(ImageIndex),
}

/// A manifest with the media type it was validated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The field's value, else the declared one, else the OCI type of the document's shape.
    pub media_type: String,
    pub manifest: Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {size} bytes, more than the {max} bytes allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("manifest is not valid JSON for its kind: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "Docker schema 1 manifests are deprecated and not supported; push the image again with a current client"
    )]
    Schema1,
    #[error("manifest has schemaVersion {0}, expected 2")]
    SchemaVersion(i64),
    #[error("manifest has both `manifests` and `{0}`: it is neither an index nor an image")]
    Ambiguous(&'static str),
    #[error("document has neither `manifests` nor `config`/`layers`: it is not a manifest")]
    Shapeless,
    #[error("media type `{0}` is not a manifest or index this tool reads")]
    UnknownMediaType(String),
    #[error("mediaType `{media_type}` says {says}, but the document is an {is}")]
    ShapeMismatch {
        media_type: String,
        says: &'static str,
        is: &'static str,
    },
    #[error("the manifest's mediaType is `{field}`, but it was referred to as `{declared}`")]
    DeclaredMismatch { field: String, declared: String },
}

/// Only the keys that decide what a document is; their values are not looked at here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    manifests: Option<IgnoredAny>,
    fs_layers: Option<IgnoredAny>,
}

/// Parses and validates a manifest or index. `declared` is the media type it was referred to
/// by (a descriptor's, or a registry's Content-Type), if any.
pub fn parse_manifest(
    bytes: &[u8],
    declared: Option<&str>,
) -> Result<ParsedManifest, ManifestError> {
    let size = bytes.len() as u64;
    if size > MAX_MANIFEST_SIZE {
        return Err(ManifestError::TooLarge {
            size,
            max: MAX_MANIFEST_SIZE,
        });
    }
    let shape: Shape = serde_json::from_slice(bytes)?;
    let schema1 = |mt: Option<&str>| mt.is_some_and(media::is_docker_schema1);
    if schema1(shape.media_type.as_deref())
        || schema1(declared)
        || shape.schema_version == Some(1)
        || shape.fs_layers.is_some()
    {
        return Err(ManifestError::Schema1);
    }
    match shape.schema_version {
        Some(2) => {}
        Some(v) => return Err(ManifestError::SchemaVersion(v)),
        None => return Err(ManifestError::SchemaVersion(0)),
    }
    let kind = match (
        shape.manifests.is_some(),
        shape.layers.is_some(),
        shape.config.is_some(),
    ) {
        (true, true, _) => return Err(ManifestError::Ambiguous("layers")),
        (true, false, true) => return Err(ManifestError::Ambiguous("config")),
        (true, false, false) => ManifestKind::Index,
        (false, false, false) => return Err(ManifestError::Shapeless),
        (false, _, _) => ManifestKind::Image,
    };
    let check_shape = |mt: &str| match media::manifest_kind(mt) {
        None => Err(ManifestError::UnknownMediaType(mt.to_string())),
        Some(k) if k != kind => Err(ManifestError::ShapeMismatch {
            media_type: mt.to_string(),
            says: k.name(),
            is: kind.name(),
        }),
        Some(_) => Ok(()),
    };
    if let Some(field) = &shape.media_type {
        check_shape(field)?;
    }
    if let Some(declared) = declared {
        check_shape(declared)?;
        if let Some(field) = &shape.media_type
            && field != declared
        {
            return Err(ManifestError::DeclaredMismatch {
                field: field.clone(),
                declared: declared.to_string(),
            });
        }
    }
    let media_type = shape
        .media_type
        .or(declared.map(str::to_string))
        .unwrap_or_else(|| match kind {
            ManifestKind::Image => media::OCI_MANIFEST.to_string(),
            ManifestKind::Index => media::OCI_INDEX.to_string(),
        });
    let manifest = match kind {
        ManifestKind::Image => Manifest::Image(serde_json::from_slice(bytes)?),
        ManifestKind::Index => Manifest::Index(serde_json::from_slice(bytes)?),
    };
    Ok(ParsedManifest {
        media_type,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(media_type: Option<&str>) -> String {
        let mt = media_type.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"{}","digest":"{D}","size":0}},
            "layers":[{{"mediaType":"{}","digest":"{D}","size":0}}]}}"#,
            media::OCI_CONFIG,
            media::OCI_LAYER_GZIP
        )
    }

    fn index(media_type: Option<&str>) -> String {
        let mt = media_type.map_or(String::new(), |m| format!(r#""mediaType":"{m}","#));
        format!(
            r#"{{"schemaVersion":2,{mt}"manifests":[{{"mediaType":"{}","digest":"{D}","size":7,
            "platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media::OCI_MANIFEST
        )
    }

    #[test]
    fn accepts_consistent_documents_and_infers_the_type() {
        let ok = [
            (image(None), None, media::OCI_MANIFEST),
            (image(Some(media::OCI_MANIFEST)), None, media::OCI_MANIFEST),
            (
                image(None),
                Some(media::DOCKER_MANIFEST),
                media::DOCKER_MANIFEST,
            ),
            (
                image(Some(media::DOCKER_MANIFEST)),
                Some(media::DOCKER_MANIFEST),
                media::DOCKER_MANIFEST,
            ),
            (index(None), None, media::OCI_INDEX),
            (
                index(Some(media::DOCKER_MANIFEST_LIST)),
                None,
                media::DOCKER_MANIFEST_LIST,
            ),
            (index(None), Some(media::OCI_INDEX), media::OCI_INDEX),
        ];
        for (doc, declared, want) in ok {
            let parsed = parse_manifest(doc.as_bytes(), declared).unwrap();
            assert_eq!(parsed.media_type, want, "{doc}");
            match parsed.manifest {
                Manifest::Image(m) => {
                    assert_eq!(m.layers.len(), 1);
                    assert_eq!(m.layers[0].digest.to_string(), D);
                }
                Manifest::Index(i) => {
                    assert_eq!(i.manifests[0].size, 7);
                    assert_eq!(i.manifests[0].platform.as_ref().unwrap().os, "linux");
                }
            }
        }
    }

    #[test]
    fn refuses_disagreements_and_ambiguity() {
        let both = format!(
            r#"{{"schemaVersion":2,"manifests":[],"layers":[],"config":{{"mediaType":"{}","digest":"{D}","size":0}}}}"#,
            media::OCI_CONFIG
        );
        let index_with_config = format!(
            r#"{{"schemaVersion":2,"manifests":[],"config":{{"mediaType":"{}","digest":"{D}","size":0}}}}"#,
            media::OCI_CONFIG
        );
        let cases: Vec<(String, Option<&str>, &str)> = vec![
            (both, None, "both `manifests` and `layers`"),
            (index_with_config, None, "both `manifests` and `config`"),
            (
                image(Some(media::OCI_INDEX)),
                None,
                "says image index, but the document is an image manifest",
            ),
            (
                index(Some(media::OCI_MANIFEST)),
                None,
                "says image manifest, but the document is an image index",
            ),
            (
                image(None),
                Some(media::OCI_INDEX),
                "says image index, but the document is an image manifest",
            ),
            (
                image(Some(media::OCI_MANIFEST)),
                Some(media::DOCKER_MANIFEST),
                "referred to as",
            ),
            (image(Some("application/json")), None, "not a manifest"),
            (r#"{"schemaVersion":2}"#.into(), None, "neither"),
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#.into(),
                None,
                "schema 1",
            ),
            (
                r#"{"schemaVersion":2,"manifests":[],"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#.into(),
                None,
                "schema 1",
            ),
            (r#"{"schemaVersion":3,"manifests":[]}"#.into(), None, "schemaVersion 3"),
            (r#"{"manifests":[]}"#.into(), None, "schemaVersion 0"),
            (
                r#"{"schemaVersion":2,"manifests":[],"manifests":[]}"#.into(),
                None,
                "duplicate field",
            ),
            (
                format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","digest":"{D}","size":-1}}]}}"#),
                None,
                "invalid value",
            ),
            (
                r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#.into(),
                None,
                "only sha256",
            ),
            ("[]".into(), None, "not valid JSON"),
        ];
        for (doc, declared, want) in cases {
            let err = parse_manifest(doc.as_bytes(), declared).unwrap_err();
            assert!(err.to_string().contains(want), "{doc}: {err}");
        }
    }

    #[test]
    fn refuses_documents_over_4_mib_before_parsing() {
        // Valid JSON of 5 MiB: the size alone decides.
        let mut doc = index(None).into_bytes();
        doc.pop();
        doc.extend_from_slice(br#","annotations":{"pad":""#);
        doc.resize(5 << 20, b'x');
        doc.extend_from_slice(br#""}}"#);
        let err = parse_manifest(&doc, None).unwrap_err();
        assert!(
            matches!(err, ManifestError::TooLarge { size, .. } if size > 5 << 20),
            "{err}"
        );
        // Exactly at the limit is fine.
        let mut doc = index(None).into_bytes();
        doc.pop();
        doc.extend_from_slice(br#","annotations":{"pad":""#);
        doc.resize(MAX_MANIFEST_SIZE as usize - 3, b'x');
        doc.extend_from_slice(br#""}}"#);
        assert_eq!(doc.len() as u64, MAX_MANIFEST_SIZE);
        parse_manifest(&doc, None).unwrap();
    }
}
