//! `sandbox build --output oci-layout:DIR[:TAG]|docker://REGISTRY/REPO[:TAG]`: the build
//! as an OCI image whose lower layers are the base's and whose top layer is what the build
//! changed (`delta`), composed by `oci_image`, written to a layout or pushed.
//!
//! The steps: pull the base (verified, as any build), unpack it into a staging tree under
//! `<sandboxes_dir>/tmp/`; for a tarball or LXC base archive that tree as the first new
//! layer; snapshot it; layer the plan, the fix-ups and the bake steps; archive what changed
//! as the last layer; compose config and manifest; publish. Layers are gzip (level 6, the
//! format every runtime reads) and, like the tar export, reproducible: the same template,
//! base and SOURCE_DATE_EPOCH give the same layer, config and manifest digests.
//!
//! Nothing on the host changes but the cache (the pull) and the destination; the staging
//! tree and the layer files are removed whatever happens. A layout gets its blobs before the
//! index entry that names them; a registry gets every blob before the manifest.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::write::GzEncoder;

use crate::assemble::execute::{self, BuildRequest, Pulled};
use crate::assemble::fixups::FixupReport;
use crate::cache::Cache;
use crate::digest::Digest;
use crate::digest::HashingWriter;
use crate::export::delta::Snapshot;
use crate::export::layout_write::LayoutWriter;
use crate::export::oci_image::{self, BaseInfo, ComposedImage, ImageInputs, NewLayer};
use crate::export::sign::{SignatureRecord, Signers, SigningOptions};
use crate::export::tar_output::{planned_nspawn, staging_parent};
use crate::export::tar_writer;
use crate::oci::{Descriptor, ImageReference, PlatformSpec};
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::source::registry::Registry;
use crate::source::registry::auth::{Credentials, find_credentials};
use crate::source::registry::push::{BlobFrom, push_image};
use crate::template::compose::Composition;

/// The gzip level of the layers this build writes: fixed, so outputs do not depend on the
/// machine.
pub const GZIP_LEVEL: u32 = 6;

/// Where the image goes.
#[derive(Debug, Clone)]
pub enum OciDestination {
    Layout { dir: PathBuf, tag: String },
    Registry(ImageReference),
}

#[derive(Debug, Clone)]
pub struct OciOutputOptions {
    pub destination: OciDestination,
    /// SOURCE_DATE_EPOCH: later mtimes are clamped to it, and it is the image's `created`.
    pub source_date_epoch: Option<u64>,
    /// `--creds` for the registry pushed to; otherwise the auth files are read.
    pub creds: Option<Credentials>,
    pub tls_verify: bool,
    pub signing: SigningOptions,
}

/// What an OCI output wrote.
#[derive(Debug, Clone)]
pub struct OciExportReport {
    /// The base's digest (its manifest, or its tarball).
    pub base: Digest,
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// How many layers this build made (1, or 2 for a tarball base).
    pub new_layers: usize,
    /// Paths the build changed or removed in the base.
    pub changed_paths: usize,
    /// Where it went, as shown (`oci-layout:DIR:TAG`, `docker://…`).
    pub destination: String,
    pub signatures: Vec<SignatureRecord>,
    pub fixups: FixupReport,
}

/// A layer file this build wrote, with its digests.
struct LayerFile {
    path: PathBuf,
    layer: NewLayer,
}

/// A directory removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs_err::remove_dir_all(&self.0) {
            tracing::warn!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Builds `comp` as `req.name` into an OCI image and publishes it, as the module
/// documentation says.
pub fn export_oci(
    paths: &HostPaths,
    progress: ProgressMode,
    comp: &Composition,
    req: &BuildRequest,
    opts: &OciOutputOptions,
) -> Result<OciExportReport> {
    crate::machine::name::validate(&req.name)?;
    let spec = comp.spec();
    // Keys that cannot sign fail before anything is pulled.
    let destination_ref = match &opts.destination {
        OciDestination::Registry(r) => Some(r),
        OciDestination::Layout { dir, .. } => {
            LayoutWriter::check(dir)?;
            None
        }
    };
    let signers = Signers::load(&opts.signing, destination_ref)?;
    let Pulled {
        cache,
        fetched,
        plan,
        ..
    } = execute::pull_and_render(paths, progress, comp, req, false)?;
    let nspawn = String::from_utf8_lossy(planned_nspawn(&plan, &req.name)?).into_owned();
    let tmp = staging_parent(paths)?;
    let work = tmp.join(format!("oci-{}-{:08x}", req.name, rand::random::<u32>()));
    fs_err::create_dir(&work)?;
    let work = WorkDir(work);
    let clamp = opts.source_date_epoch;

    let staging = execute::unpack_base(progress, &cache, &fetched, &tmp, &req.name)
        .with_context(|| format!("unpacking {}", spec.source.source.display()))?;
    let mut layers = Vec::new();
    if fetched.oci().is_none() {
        let bar = progress.task("Archiving the base as a layer");
        layers.push(write_layer(&work.0.join("base.tar.gz"), |w| {
            tar_writer::write_tree(staging.path(), w, clamp)
        })?);
        bar.finish();
    }
    let snapshot = Snapshot::take(staging.path())?;
    snapshot.settle(&tmp)?;
    let fixups = execute::layer_into(staging.path(), &plan, progress)?;
    let delta = snapshot.delta(staging.path())?;
    let bar = progress.task("Archiving the template's changes as a layer");
    layers.push(write_layer(&work.0.join("delta.tar.gz"), |w| {
        tar_writer::write_delta(staging.path(), w, clamp, &delta)
    })?);
    bar.finish();
    drop(staging);

    let created = oci_image::rfc3339(clamp.unwrap_or_else(now_secs));
    let source = spec.source.source.display();
    let new: Vec<NewLayer> = layers.iter().map(|l| l.layer.clone()).collect();
    let host = PlatformSpec::host();
    let base = match fetched.oci() {
        Some(oci) => BaseInfo::Oci {
            source: &source,
            name: match crate::oci::OciSource::parse(&source) {
                Ok(crate::oci::OciSource::Registry(r)) => Some(r.to_string()),
                _ => None,
            },
            manifest_digest: oci.resolved.manifest.descriptor.digest,
            manifest: &oci.resolved.image,
            config: &oci.resolved.config_bytes,
        },
        None => BaseInfo::Tarball {
            source: &source,
            digest: fetched.image.digest,
            architecture: &host.architecture,
            variant: host.variant.as_deref(),
        },
    };
    let image = oci_image::compose(&ImageInputs {
        base,
        layers: &new,
        templates: &spec.templates.join("+"),
        content_hash: spec.content_hash,
        created: &created,
        nspawn: &nspawn,
    })?;
    let blobs = image_blobs(&cache, &image, &layers)?;
    let (destination, signatures) = match &opts.destination {
        OciDestination::Layout { dir, tag } => {
            write_layout(dir, tag, &image, &blobs)?;
            let signatures = signers.sign_layout(dir, &image.manifest_descriptor.digest)?;
            (format!("oci-layout:{}:{tag}", dir.display()), signatures)
        }
        OciDestination::Registry(reference) => {
            let (digest, signatures) = push(reference, opts, &signers, &image, &blobs)?;
            (format!("docker://{reference}@{digest}"), signatures)
        }
    };
    Ok(OciExportReport {
        base: fetched.image.digest,
        manifest: image.manifest_descriptor.clone(),
        config: image.config_descriptor.clone(),
        layers: image.layers.clone(),
        new_layers: new.len(),
        changed_paths: delta.changed,
        destination,
        signatures,
        fixups,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes a gzip layer to `path` from a tar writer, hashing the tar (diff_id) and the blob.
fn write_layer(
    path: &Path,
    fill: impl FnOnce(
        HashingWriter<GzEncoder<HashingWriter<BufWriter<File>>>>,
    ) -> Result<HashingWriter<GzEncoder<HashingWriter<BufWriter<File>>>>>,
) -> Result<LayerFile> {
    let what = || format!("writing the layer {}", path.display());
    let file = fs_err::File::create(path)?.into_file();
    let blob = HashingWriter::new(BufWriter::new(file));
    let gz = GzEncoder::new(blob, flate2::Compression::new(GZIP_LEVEL));
    let tar = fill(HashingWriter::new(gz))?;
    let (gz, diff_id, _) = tar.finish();
    let blob = gz.finish().with_context(what)?;
    let (buf, digest, size) = blob.finish();
    let file = buf
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(what)?;
    file.sync_all().with_context(what)?;
    Ok(LayerFile {
        path: path.to_path_buf(),
        layer: NewLayer {
            digest,
            size,
            diff_id,
        },
    })
}

/// Where each blob of the image is: every layer a file (the base's in the cache, the new
/// ones in the work directory); config and manifest are in `image`.
fn image_blobs(
    cache: &Cache,
    image: &ComposedImage,
    made: &[LayerFile],
) -> Result<Vec<(Descriptor, PathBuf)>> {
    image
        .layers
        .iter()
        .map(|d| {
            let path = match made.iter().find(|l| l.layer.digest == d.digest) {
                Some(l) => l.path.clone(),
                None => cache
                    .blob(&d.digest)
                    .with_context(|| format!("the base layer {} is not in the cache", d.digest))?,
            };
            Ok((d.clone(), path))
        })
        .collect()
}

/// Blobs first, then the index entry.
fn write_layout(
    dir: &Path,
    tag: &str,
    image: &ComposedImage,
    layers: &[(Descriptor, PathBuf)],
) -> Result<()> {
    let layout = LayoutWriter::create(dir)?;
    for (d, path) in layers {
        layout.put_file(&d.digest, path)?;
    }
    layout.put_bytes(&image.config_descriptor.digest, &image.config)?;
    layout.put_bytes(&image.manifest_descriptor.digest, &image.manifest)?;
    layout.tag(&image.manifest_descriptor, tag)
}

/// Every blob the registry lacks, then the manifest by tag, then the signatures.
fn push(
    reference: &ImageReference,
    opts: &OciOutputOptions,
    signers: &Signers,
    image: &ComposedImage,
    layers: &[(Descriptor, PathBuf)],
) -> Result<(Digest, Vec<SignatureRecord>)> {
    let creds = match &opts.creds {
        Some(c) => Some(c.clone()),
        None => find_credentials(reference)?,
    };
    let registry = Registry::for_push(reference, creds, opts.tls_verify)?;
    let mut blobs: Vec<(Descriptor, BlobFrom)> = layers
        .iter()
        .map(|(d, p)| (d.clone(), BlobFrom::File(p.clone())))
        .collect();
    blobs.push((
        image.config_descriptor.clone(),
        BlobFrom::Bytes(image.config.clone()),
    ));
    let tag = reference.manifest_reference();
    let digest = crate::runtime::block_on(push_image(
        &registry,
        &tag,
        &image.manifest,
        &image.manifest_descriptor.media_type,
        &blobs,
    ))?
    .with_context(|| format!("pushing to docker://{reference}"))?;
    if digest != image.manifest_descriptor.digest {
        anyhow::bail!(
            "docker://{reference}: the registry stored the manifest as {digest}, not {}",
            image.manifest_descriptor.digest
        );
    }
    let signatures =
        crate::runtime::block_on(signers.sign_pushed(&registry, &image.manifest_descriptor))??;
    Ok((digest, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_layer_file_carries_the_digests_of_its_tar_and_its_blob() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.tar.gz");
        let l = write_layer(&path, |mut w| {
            w.write_all(b"tar bytes").unwrap();
            Ok(w)
        })
        .unwrap();
        let blob = fs_err::read(&path).unwrap();
        assert_eq!(l.layer.digest, Digest::of(&blob));
        assert_eq!(l.layer.size, blob.len() as u64);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut tar).unwrap();
        assert_eq!(tar, b"tar bytes");
        assert_eq!(l.layer.diff_id, Digest::of(b"tar bytes"));
    }
}
