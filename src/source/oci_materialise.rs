//! Materialising an OCI image the cache holds (`source::oci_pull`) into a machine: a staging
//! directory in the machines dir, [`apply_image`] from the cached blobs (each verified again as
//! it is read, and each layer's diff_id), an `[Exec]` `.nspawn` when the image has no init (or,
//! for an image `sandbox build` made, the `.nspawn` its templates rendered, from the
//! `org.sandboxes.nspawn` label), and an atomic publish.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::machine::materialise::{self, MaterialiseOptions, Staging};
use crate::oci::{OciSource, apply_image, has_init, render_exec_section};
use crate::source::oci_pull::{CacheBlobs, OciFetched};
use crate::unpack::{Root, UnpackOptions};

/// Where a materialised image went.
pub struct Materialised {
    pub path: PathBuf,
    pub nspawn: Option<PathBuf>,
}

/// Applies `fetched`'s layers from the cache into a new machine `name` (see the module
/// documentation). `image_name` names the image in the `.nspawn` comment.
pub fn materialise_oci(
    cache: &Cache,
    fetched: &OciFetched,
    machines_dir: &Path,
    name: &str,
    image_name: &str,
    opts: &MaterialiseOptions,
) -> Result<Materialised> {
    materialise::ensure_machines_dir(machines_dir)?;
    let staging = Staging::create(machines_dir, name)?;
    let nspawn = {
        let root = Root::open(staging.path())
            .with_context(|| format!("opening {}", staging.path().display()))?;
        apply_image(
            &root,
            &CacheBlobs(cache),
            &fetched.resolved,
            &UnpackOptions::for_this_host(),
        )?;
        let init = has_init(&root).context("looking for an init system in the image")?;
        let built = fetched
            .resolved
            .config
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(crate::build::oci_image::LABEL_NSPAWN));
        if let Some(settings) = built {
            // An image `sandbox build` made: the settings its template rendered. In the
            // machines dir, systemd-nspawn trusts only unprivileged settings from it.
            Some(settings.clone().into_bytes())
        } else if init {
            None
        } else {
            let section = render_exec_section(fetched.resolved.config.config.as_ref(), image_name)?;
            Some(section.into_bytes())
        }
    };
    let path = materialise::publish(staging, machines_dir, name, nspawn.as_deref(), opts)?;
    Ok(Materialised {
        path,
        nspawn: nspawn.map(|_| machines_dir.join(format!("{name}.nspawn"))),
    })
}

/// A machine name for `source`: the repository's last component, or the layout directory's
/// or archive's file name (without `.tar`).
pub fn default_name(source: &OciSource) -> Option<String> {
    let name = match source {
        OciSource::Registry(r) => r.repository.rsplit('/').next()?.to_string(),
        OciSource::Layout { dir, .. } => dir.file_name()?.to_string_lossy().into_owned(),
        OciSource::Archive { file, .. } => {
            let n = file.file_name()?.to_string_lossy().into_owned();
            crate::source::strip_tar_suffix(&n).to_string()
        }
    };
    (!name.is_empty()).then_some(name)
}
