//! Signing what `sandbox build --output oci-layout:|docker://` publishes.
//!
//! - `--cosign-key FILE` (cosign's encrypted PEM with `COSIGN_PASSWORD`, or an unencrypted
//!   PKCS#8/SEC1 P-256 key): a cosign signature image tagged `sha256-<hex>.sig` next to the
//!   image (pushed to the same repository, or written into the same layout). It names the
//!   repository only, as cosign's payload does.
//! - `--sign-key FILE --lookaside DIR` (an unencrypted OpenPGP secret key): a containers
//!   simple-signing signature naming the exact `registry/repo:tag`, written to the lookaside
//!   store DIR as `repo@sha256=<hex>/signature-N`, where a registries.d `lookaside:` points.
//!
//! The identity is the docker:// destination, or for a layout `--sign-identity
//! REGISTRY/REPO[:TAG]` (where the image will be copied to). Keys are loaded before anything
//! is pulled, so a wrong password costs nothing. A cosign `.sig` tag that already exists for
//! the digest is replaced: a rebuild with the same key makes the same signature (ECDSA with
//! RFC 6979 nonces), so nothing is lost then; other signers' signatures would be.

pub mod cosign_key;
pub mod cosign_sign;
pub mod simple_sign;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::Digest;
use crate::export::layout_write::LayoutWriter;
use crate::export::sign::cosign_key::{
    CosignSigningKey, load_cosign_signing_key, password_from_env,
};
use crate::export::sign::cosign_sign::{SignatureImage, render_referrer, sign_image};
use crate::export::sign::simple_sign::{
    sign_simple, simple_signing_identity, write_lookaside_signature,
};
use crate::oci::media;
use crate::oci::{Descriptor, ImageReference};
use crate::source::registry::Registry;
use crate::source::registry::push::{BlobFrom, push_image};
use crate::verify::openpgp::{SigningKey, load_signing_key};

/// What the user asked to sign with.
#[derive(Debug, Clone, Default)]
pub struct SigningOptions {
    pub cosign_key: Option<PathBuf>,
    pub sign_key: Option<PathBuf>,
    pub lookaside: Option<PathBuf>,
    /// The reference a layout's signatures name.
    pub identity: Option<ImageReference>,
}

/// Loaded keys, ready to sign.
pub struct Signers {
    cosign: Option<CosignSigningKey>,
    simple: Option<(SigningKey, PathBuf)>,
    identity: Option<ImageReference>,
}

/// What was signed, for the report.
#[derive(Debug, Clone)]
pub struct SignatureRecord {
    /// `cosign` or `simple-signing`.
    pub kind: &'static str,
    /// The key's fingerprint (cosign: sha256 of the public key).
    pub signer: String,
    /// Where it went: the `.sig` tag, or the lookaside file.
    pub location: String,
}

impl Signers {
    /// Loads the keys; `destination` is the docker:// reference pushed to, if any.
    pub fn load(opts: &SigningOptions, destination: Option<&ImageReference>) -> Result<Signers> {
        if opts.lookaside.is_some() != opts.sign_key.is_some() {
            bail!(
                "--sign-key and --lookaside go together for OCI outputs: the simple-signing signature is written to the lookaside directory"
            );
        }
        if destination.is_some() && opts.identity.is_some() {
            bail!(
                "--sign-identity is for oci-layout: outputs; a push is signed as its destination"
            );
        }
        let identity = destination.cloned().or_else(|| opts.identity.clone());
        let signing = opts.cosign_key.is_some() || opts.sign_key.is_some();
        if signing && identity.is_none() {
            bail!(
                "signing a layout needs --sign-identity REGISTRY/REPO[:TAG]: the signature names the reference the image will be pulled as"
            );
        }
        let cosign = opts
            .cosign_key
            .as_deref()
            .map(|p| load_cosign_signing_key(p, &password_from_env()))
            .transpose()?;
        let simple = match (&opts.sign_key, &opts.lookaside) {
            (Some(key), Some(dir)) => Some((load_signing_key(key)?, dir.clone())),
            _ => None,
        };
        Ok(Signers {
            cosign,
            simple,
            identity,
        })
    }

    fn identity(&self) -> Result<&ImageReference> {
        self.identity
            .as_ref()
            .context("internal: signing without an identity")
    }

    /// The cosign signature image for `digest`, when a cosign key was given.
    fn cosign_image(&self, digest: &Digest) -> Result<Option<(SignatureImage, String)>> {
        let Some(key) = &self.cosign else {
            return Ok(None);
        };
        let image = sign_image(key, self.identity()?, digest);
        Ok(Some((image, key.public_key().fingerprint.clone())))
    }

    /// The simple-signing signature, into its lookaside directory.
    fn simple(&self, digest: &Digest) -> Result<Option<SignatureRecord>> {
        let Some((key, dir)) = &self.simple else {
            return Ok(None);
        };
        let identity = self.identity()?;
        let signature = sign_simple(key, &simple_signing_identity(identity), digest)?;
        let path = write_lookaside_signature(dir, identity, digest, &signature)?;
        Ok(Some(SignatureRecord {
            kind: "simple-signing",
            signer: key.fingerprint.clone(),
            location: path.display().to_string(),
        }))
    }

    /// Signs the image `digest` written into `layout`.
    pub fn sign_layout(&self, layout: &Path, digest: &Digest) -> Result<Vec<SignatureRecord>> {
        let mut out = Vec::new();
        if let Some((image, signer)) = self.cosign_image(digest)? {
            let writer = LayoutWriter::create(layout)?;
            for (d, bytes) in image.blobs() {
                writer.put_bytes(&d, bytes)?;
            }
            writer.put_bytes(&image.manifest_digest, &image.manifest)?;
            writer.tag(&image.manifest_descriptor(), &image.tag)?;
            out.push(SignatureRecord {
                kind: "cosign",
                signer,
                location: format!("oci-layout:{}:{}", layout.display(), image.tag),
            });
        }
        out.extend(self.simple(digest)?);
        Ok(out)
    }

    /// Signs the image `subject` just pushed through `registry`: the cosign signature under
    /// its `.sig` tag (what every cosign reads) and as an OCI 1.1 referrer of the image (the
    /// registry's referrers API, or the referrers tag schema's index where it has none).
    pub async fn sign_pushed(
        &self,
        registry: &Registry,
        subject: &Descriptor,
    ) -> Result<Vec<SignatureRecord>> {
        let digest = &subject.digest;
        let mut out = Vec::new();
        if let Some((image, signer)) = self.cosign_image(digest)? {
            let blobs: Vec<(Descriptor, BlobFrom)> = image
                .blobs()
                .into_iter()
                .map(|(d, bytes)| {
                    (
                        // The upload needs only digest and size; the manifest names the types.
                        Descriptor::new(media::OCI_CONFIG, d, bytes.len() as u64),
                        BlobFrom::Bytes(bytes.to_vec()),
                    )
                })
                .collect();
            push_image(
                registry,
                &image.tag,
                &image.manifest,
                media::OCI_MANIFEST,
                &blobs,
            )
            .await
            .with_context(|| format!("pushing the cosign signature {}", image.tag))?;
            let identity = self.identity()?;
            out.push(SignatureRecord {
                kind: "cosign",
                signer: signer.clone(),
                location: format!(
                    "docker://{}/{}:{}",
                    identity.registry, identity.repository, image.tag
                ),
            });
            let (referrer, descriptor) = render_referrer(&image, subject);
            let (referrer_digest, indexed) = registry
                .put_referrer(media::OCI_MANIFEST, &referrer)
                .await
                .context("pushing the cosign signature as a referrer")?;
            if !indexed {
                registry.add_to_referrers_tag(digest, &descriptor).await?;
            }
            out.push(SignatureRecord {
                kind: "cosign-referrer",
                signer,
                location: format!(
                    "docker://{}/{}@{referrer_digest}{}",
                    identity.registry,
                    identity.repository,
                    if indexed {
                        " (referrers API)".to_string()
                    } else {
                        format!(" (referrers tag sha256-{})", digest.hex())
                    }
                ),
            });
        }
        out.extend(self.simple(digest)?);
        Ok(out)
    }
}
