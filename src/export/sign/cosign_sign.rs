//! Making cosign key-based signatures: the payload cosign signs, and the signature image
//! cosign pushes as `sha256-HEX.sig` next to the signed manifest (see [`crate::verify::cosign`] for
//! how they are read back).
//!
//! The signature image is an OCI image manifest whose config is a small image config naming
//! the payloads as its `diff_ids` (as cosign writes it, so tools that walk the config are
//! content) and whose layers are the payloads, each of media type
//! [`SIMPLESIGNING_MEDIA_TYPE`] with the base64 signature in [`SIGNATURE_ANNOTATION`].
//! Rendering is pure: the caller pushes or writes the blobs ([`SignatureImage::blobs`]) and
//! then the manifest under [`SignatureImage::tag`].
//!
//! Byte layouts follow what cosign (Go's `encoding/json` over its structs) writes: field
//! order `critical` {`identity`, `image`, `type`}, `optional`; descriptors `mediaType`,
//! `size`, `digest`, `annotations`. Readers do not depend on the order, but matching it keeps
//! our output indistinguishable from cosign's to anyone comparing.

use serde::Serialize;

use crate::digest::Digest;
use crate::export::sign::cosign_key::CosignSigningKey;
use crate::oci::manifest::{Descriptor, REF_NAME_ANNOTATION};
use crate::oci::media::{OCI_CONFIG, OCI_MANIFEST};
use crate::oci::reference::ImageReference;
use crate::verify::cosign::{
    COSIGN_ARTIFACT_TYPE, COSIGN_TYPE, SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE,
    signature_tag,
};

/// The identity cosign puts in its payload: the repository, without tag or digest
/// (`host/repo`).
pub fn cosign_identity(reference: &ImageReference) -> String {
    format!("{}/{}", reference.registry, reference.repository)
}

#[derive(Serialize)]
struct SimplePayload<'a, O: Serialize> {
    critical: Critical<'a>,
    optional: O,
}

#[derive(Serialize)]
struct Critical<'a> {
    identity: Identity<'a>,
    image: Image,
    #[serde(rename = "type")]
    kind: &'a str,
}

#[derive(Serialize)]
struct Identity<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}

#[derive(Serialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// A simple-signing payload of `critical.type` `kind` with `optional` as given.
pub(crate) fn render_payload<O: Serialize>(
    kind: &str,
    docker_reference: &str,
    digest: &Digest,
    optional: O,
) -> Vec<u8> {
    let payload = SimplePayload {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                docker_manifest_digest: digest.to_string(),
            },
            kind,
        },
        optional,
    };
    // Why expect: structs of strings and the callers' `optional` (null, or strings and an
    // integer) always serialize; an empty payload must never be signed instead.
    serde_json::to_vec(&payload).expect("a simple-signing payload serializes")
}

/// The payload cosign signs for manifest `digest` of `docker_reference` (`host/repo`, see
/// [`cosign_identity`]): `{"critical":{…,"type":"cosign container image signature"},
/// "optional":null}`.
pub fn cosign_payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    render_payload(COSIGN_TYPE, docker_reference, digest, None::<()>)
}

/// One signature layer: a payload and the base64 DER signature over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    pub payload: Vec<u8>,
    pub signature: String,
}

/// Signs `payload` with `key`.
pub fn sign_payload(key: &CosignSigningKey, payload: Vec<u8>) -> SignedPayload {
    let signature = key.sign(&payload);
    SignedPayload { payload, signature }
}

/// Everything a pusher or layout writer needs for one cosign signature image.
#[derive(Debug, Clone)]
pub struct SignatureImage {
    /// `sha256-HEX.sig`: the tag the manifest goes under, in the signed image's repository.
    pub tag: String,
    /// The image manifest (media type `application/vnd.oci.image.manifest.v1+json`).
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The config blob (media type `application/vnd.oci.image.config.v1+json`).
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// The payload blobs, in layer order, with their digests.
    pub payloads: Vec<(Digest, Vec<u8>)>,
}

impl SignatureImage {
    /// Every blob the manifest refers to (config first, then the payloads), each once.
    pub fn blobs(&self) -> Vec<(Digest, &[u8])> {
        let mut out: Vec<(Digest, &[u8])> = vec![(self.config_digest, &self.config)];
        for (d, b) in &self.payloads {
            if !out.iter().any(|(seen, _)| seen == d) {
                out.push((*d, b));
            }
        }
        out
    }

    /// The manifest's descriptor; for an image layout's `index.json`, the entry that names it
    /// by [`Self::tag`] (cosign's layouts, and containers' `oci:DIR:sha256-HEX.sig`, find
    /// signatures that way).
    pub fn manifest_descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(
            OCI_MANIFEST,
            self.manifest_digest,
            self.manifest.len() as u64,
        );
        d.annotations
            .insert(REF_NAME_ANNOTATION.to_string(), self.tag.clone());
        d
    }
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    architecture: &'a str,
    created: &'a str,
    history: [History<'a>; 1],
    os: &'a str,
    rootfs: RootFs,
    config: Empty,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DescriptorOut<'a>,
    layers: Vec<DescriptorOut<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorOut<'a> {
    media_type: &'a str,
    size: u64,
    digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<std::collections::BTreeMap<&'a str, &'a str>>,
}

/// The signature image of manifest `signed` holding `signatures` as its layers, in order. To
/// add a signature to an existing `.sig` image, as cosign does, pass its layers first.
pub fn render_signature_image(signed: &Digest, signatures: &[SignedPayload]) -> SignatureImage {
    // cosign's zero time: Go's zero `time.Time`, which its config marshals as below.
    const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
    let payloads: Vec<(Digest, Vec<u8>)> = signatures
        .iter()
        .map(|s| (Digest::of(&s.payload), s.payload.clone()))
        .collect();
    let config = ConfigFile {
        architecture: "",
        created: ZERO_TIME,
        history: [History { created: ZERO_TIME }],
        os: "",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: payloads.iter().map(|(d, _)| d.to_string()).collect(),
        },
        config: Empty {},
    };
    // Why expect: structs of strings always serialize.
    let config = serde_json::to_vec(&config).expect("the signature config serializes");
    let config_digest = Digest::of(&config);
    let layers = signatures
        .iter()
        .zip(&payloads)
        .map(|(s, (digest, bytes))| DescriptorOut {
            media_type: SIMPLESIGNING_MEDIA_TYPE,
            size: bytes.len() as u64,
            digest: digest.to_string(),
            annotations: Some([(SIGNATURE_ANNOTATION, s.signature.as_str())].into()),
        })
        .collect();
    let manifest = ManifestOut {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: DescriptorOut {
            media_type: OCI_CONFIG,
            size: config.len() as u64,
            digest: config_digest.to_string(),
            annotations: None,
        },
        layers,
    };
    let manifest = serde_json::to_vec(&manifest).expect("the signature manifest serializes");
    SignatureImage {
        tag: signature_tag(signed),
        manifest_digest: Digest::of(&manifest),
        manifest,
        config,
        config_digest,
        payloads,
    }
}

/// Signs manifest `digest` of `reference`'s repository with `key`: the payload, its
/// signature, and the signature image holding it alone.
/// The same signature as an OCI 1.1 referrer of `subject` (cosign's `oci-1-1` mode): the
/// signature image's manifest with `artifactType` [`COSIGN_ARTIFACT_TYPE`] and `subject`, its
/// config and layers unchanged (they are already in the repository). Returns its bytes and a
/// descriptor for a referrers index.
pub fn render_referrer(image: &SignatureImage, subject: &Descriptor) -> (Vec<u8>, Descriptor) {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct SubjectOut<'a> {
        media_type: &'a str,
        size: u64,
        digest: String,
    }
    // Why expect: the manifest was rendered from these structs a moment ago.
    let mut manifest: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&image.manifest).expect("the signature manifest is JSON");
    manifest.insert(
        "artifactType".into(),
        serde_json::Value::from(COSIGN_ARTIFACT_TYPE),
    );
    manifest.insert(
        "subject".into(),
        serde_json::to_value(SubjectOut {
            media_type: &subject.media_type,
            size: subject.size,
            digest: subject.digest.to_string(),
        })
        .expect("a descriptor serializes"),
    );
    let bytes = serde_json::to_vec(&manifest).expect("the referrer manifest serializes");
    let mut descriptor = Descriptor::new(OCI_MANIFEST, Digest::of(&bytes), bytes.len() as u64);
    descriptor.artifact_type = Some(COSIGN_ARTIFACT_TYPE.to_string());
    (bytes, descriptor)
}

pub fn sign_image(
    key: &CosignSigningKey,
    reference: &ImageReference,
    digest: &Digest,
) -> SignatureImage {
    let payload = cosign_payload(&cosign_identity(reference), digest);
    render_signature_image(digest, &[sign_payload(key, payload)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{Manifest, parse_manifest};
    use crate::verify::cosign::{CosignKey, check_payload};
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};

    fn key() -> CosignSigningKey {
        let sk = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
        CosignSigningKey::from_pem(pem.as_bytes(), b"", "test").unwrap()
    }

    #[test]
    fn the_payload_is_cosigns_byte_for_byte() {
        let d = Digest::of(b"m");
        let r = ImageReference::parse("reg.io:5000/team/app:1").unwrap();
        assert_eq!(cosign_identity(&r), "reg.io:5000/team/app");
        let expected = format!(
            "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"reg.io:5000/team/app\"}},\
             \"image\":{{\"docker-manifest-digest\":\"sha256:{}\"}},\
             \"type\":\"cosign container image signature\"}},\"optional\":null}}",
            d.hex()
        );
        assert_eq!(
            String::from_utf8(cosign_payload(&cosign_identity(&r), &d)).unwrap(),
            expected
        );
        check_payload(expected.as_bytes(), COSIGN_TYPE, &d, &r).unwrap();
    }

    /// A payload cosign wrote and signed (tests/fixtures/README.md): ours for the same
    /// repository and digest is the same bytes, and its signature checks with the reader.
    #[test]
    fn the_payload_matches_one_cosign_signed() {
        let real = include_bytes!("../../../tests/fixtures/cosign/cosign-signed-payload.json");
        let sig = include_str!("../../../tests/fixtures/cosign/cosign-signed-payload.sig");
        let public = include_str!("../../../tests/fixtures/cosign/cosign-signed-payload.pub");
        let d: Digest = "sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00"
            .parse()
            .unwrap();
        let r = ImageReference::parse("192.168.64.2:5000/cosign-signed-single-sample").unwrap();
        assert_eq!(cosign_payload(&cosign_identity(&r), &d), real.to_vec());
        CosignKey::from_pem(public)
            .unwrap()
            .verify(real, sig)
            .unwrap();
        check_payload(real, COSIGN_TYPE, &d, &r).unwrap();
    }

    #[test]
    fn the_referrer_is_the_signature_image_with_its_subject_and_artifact_type() {
        let d = Digest::of(b"the signed manifest");
        let r = ImageReference::parse("reg.io/team/app:1").unwrap();
        let image = sign_image(&key(), &r, &d);
        let subject = Descriptor::new(OCI_MANIFEST, d, 1234);
        let (bytes, descriptor) = render_referrer(&image, &subject);
        assert_eq!(descriptor.digest, Digest::of(&bytes));
        assert_eq!(descriptor.size, bytes.len() as u64);
        assert_eq!(
            descriptor.artifact_type.as_deref(),
            Some(COSIGN_ARTIFACT_TYPE)
        );
        let Manifest::Image(m) = parse_manifest(&bytes, None).unwrap().manifest else {
            panic!("not an image manifest");
        };
        let Manifest::Image(sig) = parse_manifest(&image.manifest, None).unwrap().manifest else {
            panic!("not an image manifest");
        };
        assert_eq!(m.layers, sig.layers, "the signature layers changed");
        assert_eq!(m.config, sig.config);
        assert_eq!(m.artifact_type.as_deref(), Some(COSIGN_ARTIFACT_TYPE));
        let s = m.subject.expect("a subject");
        assert_eq!(
            (s.digest, s.size, s.media_type.as_str()),
            (d, 1234, OCI_MANIFEST)
        );
    }

    #[test]
    fn signature_images_verify_with_the_cosign_reader() {
        let k = key();
        let d = Digest::of(b"the signed manifest");
        let r = ImageReference::parse("reg.io/team/app:1").unwrap();
        let first = sign_image(&k, &r, &d);
        assert_eq!(first.tag, signature_tag(&d));
        assert_eq!(first.manifest_digest, Digest::of(&first.manifest));
        let entry = first.manifest_descriptor();
        assert_eq!(
            (entry.digest, entry.size, entry.ref_name()),
            (
                Digest::of(&first.manifest),
                first.manifest.len() as u64,
                Some(first.tag.as_str())
            )
        );
        // A second signature appended after the first, as cosign adds to an existing tag.
        let other = key();
        let second = sign_payload(&other, cosign_payload(&cosign_identity(&r), &d));
        let again = sign_payload(
            &k,
            first.payloads[0].1.clone(), // the same payload twice: one blob
        );
        let img = render_signature_image(&d, &[again, second]);
        assert_eq!(img.blobs().len(), 2, "config and one payload blob");

        let Manifest::Image(m) = parse_manifest(&img.manifest, Some(OCI_MANIFEST))
            .unwrap()
            .manifest
        else {
            panic!("not an image manifest");
        };
        assert_eq!(m.config.digest, img.config_digest);
        assert_eq!(m.config.size, img.config.len() as u64);
        assert_eq!(m.layers.len(), 2);
        let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
        for (layer, key) in m.layers.iter().zip([&k, &other]) {
            assert_eq!(layer.media_type, SIMPLESIGNING_MEDIA_TYPE);
            let (_, payload) = img
                .blobs()
                .into_iter()
                .find(|(dg, _)| *dg == layer.digest)
                .unwrap();
            assert_eq!(layer.size, payload.len() as u64);
            assert_eq!(config["rootfs"]["diff_ids"][0], layer.digest.to_string());
            let sig = &layer.annotations[SIGNATURE_ANNOTATION];
            let public = CosignKey::from_pem(&key.public_key_pem().unwrap()).unwrap();
            public.verify(payload, sig).unwrap();
            check_payload(payload, COSIGN_TYPE, &d, &r).unwrap();
            // Another digest's check refuses the payload: it names only `d`.
            assert!(check_payload(payload, COSIGN_TYPE, &Digest::of(b"x"), &r).is_err());
        }
        assert!(
            k.public_key()
                .verify(
                    &first.payloads[0].1,
                    &m.layers[1].annotations[SIGNATURE_ANNOTATION]
                )
                .is_err(),
            "the other key's signature does not pass for this key"
        );
    }
}
