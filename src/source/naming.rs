//! The machine name a source gets when none is given; pure.

use anyhow::Result;

use super::simplestreams as ss;
use super::{SourceRef, strip_tar_suffix};
use crate::oci::OciSource;

/// A tarball's file name minus its tar suffixes, an `images:` alias with `/` → `-`, or an OCI
/// repository's last component (a layout directory's name, an archive's file name without
/// `.tar`). `None` when the source names nothing usable.
pub fn default_name(source: &SourceRef) -> Result<Option<String>> {
    let name = match source {
        SourceRef::Url(_) | SourceRef::File(_) => {
            source.file_name().map(|f| strip_tar_suffix(&f).to_string())
        }
        SourceRef::Images(a) => Some(ss::default_machine_name(&ss::parse_alias(a)?)),
        SourceRef::Oci(s) => match OciSource::parse(s)? {
            OciSource::Registry(r) => r.repository.rsplit('/').next().map(str::to_string),
            OciSource::Layout { dir, .. } => {
                dir.file_name().map(|n| n.to_string_lossy().into_owned())
            }
            OciSource::Archive { file, .. } => file
                .file_name()
                .map(|n| strip_tar_suffix(&n.to_string_lossy()).to_string()),
        },
    };
    Ok(name.filter(|n| !n.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(s: &str) -> Option<String> {
        default_name(&SourceRef::parse(s).unwrap()).unwrap()
    }

    #[test]
    fn each_kind_of_source_gives_a_name() {
        for (source, want) in [
            ("https://example.org/images/fedora.tar.zst", "fedora"),
            ("/srv/x/alpine.tar", "alpine"),
            ("images:debian/bookworm/cloud", "debian-bookworm-cloud"),
            ("docker://registry.example/library/debian:12", "debian"),
            ("oci-layout:/srv/layouts/web:v1", "web"),
            ("oci-archive:/srv/app.tar", "app"),
        ] {
            assert_eq!(name_of(source).as_deref(), Some(want), "{source}");
        }
    }
}
