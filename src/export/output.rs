//! `sandbox build --output KIND:DEST`: where a build goes instead of the machines dir. Pure.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::oci::{ImageReference, OciSource};

/// The tag an `oci-layout:DIR` output gets when none is given.
pub const DEFAULT_LAYOUT_TAG: &str = "latest";

/// A build output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `tar:DIR`: a tarball, its `.nspawn` and SHA256SUMS.
    Tar(PathBuf),
    /// `oci-layout:DIR[:TAG]`.
    Layout { dir: PathBuf, tag: String },
    /// `docker://REGISTRY/REPO[:TAG]` (the tag defaults to `latest`, as for `docker push`).
    Registry(ImageReference),
}

impl Output {
    pub fn parse(s: &str) -> Result<Output> {
        if let Some(dir) = s.strip_prefix("tar:") {
            if dir.is_empty() {
                bail!("`{s}`: the directory is empty (write tar:DIR)");
            }
            return Ok(Output::Tar(PathBuf::from(dir)));
        }
        if s.starts_with("oci-archive:") {
            bail!(
                "`{s}`: write an image layout (oci-layout:DIR[:TAG]); an archive of it is `tar -C DIR -cf FILE .`"
            );
        }
        if s.starts_with("docker://") || s.starts_with("oci-layout:") {
            return match OciSource::parse(s)? {
                OciSource::Registry(r) => {
                    if r.digest.is_some() {
                        bail!("`{s}`: a push names a tag, not a digest (the digest is the result)");
                    }
                    Ok(Output::Registry(r))
                }
                OciSource::Layout { dir, tag } => Ok(Output::Layout {
                    dir,
                    tag: tag.unwrap_or_else(|| DEFAULT_LAYOUT_TAG.to_string()),
                }),
                OciSource::Archive { .. } => bail!("internal: `{s}` parsed as an archive"),
            };
        }
        bail!(
            "`{s}`: unknown output (write tar:DIR, oci-layout:DIR[:TAG] or docker://REGISTRY/REPO:TAG)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_mistakes_are_named() {
        assert_eq!(Output::parse("tar:out").unwrap(), Output::Tar("out".into()));
        assert_eq!(
            Output::parse("oci-layout:/srv/img").unwrap(),
            Output::Layout {
                dir: "/srv/img".into(),
                tag: "latest".into()
            }
        );
        assert_eq!(
            Output::parse("oci-layout:img:v2").unwrap(),
            Output::Layout {
                dir: "img".into(),
                tag: "v2".into()
            }
        );
        let Output::Registry(r) = Output::parse("docker://127.0.0.1:5000/team/web:1").unwrap()
        else {
            panic!("not a registry output");
        };
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/web", Some("1"))
        );
        for (bad, says) in [
            ("tar:", "empty"),
            ("dir", "unknown output"),
            ("oci-archive:x.tar", "image layout"),
            (
                "docker://example.org/web@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "not a digest",
            ),
        ] {
            let e = format!("{:#}", Output::parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
