//! What a build pulls: the pull spec made from the composed templates and the request (the
//! template's source, verification and keyrings, `--keyring`, the OCI and offline options),
//! and which simplestreams server an `images:` base comes from, with `sandbox pull`'s
//! precedence. Pure.

use anyhow::{Context, Result};

use super::execute::BuildRequest;
use crate::pull::PullSpec;
use crate::source::SourceRef;
use crate::template::plan::{Keyring, TemplateSpec};
use crate::verify::mode::VerifyMode;

/// `--images-server URL` or `$SANDBOX_IMAGES_SERVER`, as the command line gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOverride {
    pub url: String,
    /// Given by `$SANDBOX_IMAGES_SERVER`, not by the flag.
    pub from_env: bool,
}

/// The simplestreams server an `images:` base is fetched from, and what chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesServer {
    /// Normalised (ends in `/`), as the cache keys it.
    pub url: url::Url,
    pub chosen_by: ServerOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOrigin {
    Flag,
    Env,
    /// A template's `images_server` (`file:line`).
    Template(String),
    Default,
}

impl std::fmt::Display for ServerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerOrigin::Flag => f.write_str("--images-server"),
            ServerOrigin::Env => f.write_str("$SANDBOX_IMAGES_SERVER"),
            ServerOrigin::Template(place) => write!(f, "images_server at {place}"),
            ServerOrigin::Default => f.write_str("the default"),
        }
    }
}

/// The server for an `images:` base, with `sandbox pull`'s precedence: the flag (or the
/// variable) over the templates' `images_server` over the default. `None` for other sources,
/// which ignore the flag and the variable as `sandbox pull` does (a template's key with another
/// source is refused when composing). Pure.
pub fn images_server(
    spec: &TemplateSpec,
    given: Option<&ServerOverride>,
) -> Result<Option<ImagesServer>> {
    if !matches!(spec.source.source, SourceRef::Images(_)) {
        return Ok(None);
    }
    let (url, chosen_by) = match (given, &spec.images_server) {
        (Some(g), _) => (
            Some(g.url.as_str()),
            if g.from_env {
                ServerOrigin::Env
            } else {
                ServerOrigin::Flag
            },
        ),
        (None, Some(t)) => (
            Some(t.url.as_str()),
            ServerOrigin::Template(t.place.clone()),
        ),
        (None, None) => (None, ServerOrigin::Default),
    };
    let url = crate::source::images::server_url(url).with_context(|| chosen_by.to_string())?;
    Ok(Some(ImagesServer { url, chosen_by }))
}

/// How the template's source is pulled: its verification settings, its keyrings (host files
/// and `--keyring` as `sandbox pull --keyring`, template files as pinned keys for this pull),
/// the image server (`images_server`), and the request's OCI and offline options. The trust
/// store is `sandbox pull`'s: the built-in LXC key counts for the default server only.
pub fn pull_spec(spec: &TemplateSpec, req: &BuildRequest) -> Result<PullSpec> {
    let mut pull = PullSpec::new(spec.source.source.clone());
    pull.verify = spec.source.verify.unwrap_or(VerifyMode::Signature);
    pull.checksum = spec.source.checksum;
    pull.images_server =
        images_server(spec, req.images_server.as_ref())?.map(|s| s.url.to_string());
    pull.keyrings = req.keyrings.clone();
    pull.oci = req.oci.clone();
    pull.offline = req.offline;
    for k in &spec.source.keyrings {
        match k {
            Keyring::Host(path) => pull.keyrings.push(path.clone()),
            Keyring::Template { label, bytes } => {
                pull.extra_keys.push((label.clone(), bytes.clone()))
            }
        }
    }
    Ok(pull)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use std::path::PathBuf;

    fn spec(source: &str, template_server: Option<&str>) -> TemplateSpec {
        use crate::template::plan::{ServerDecl, SourceSpec};
        TemplateSpec {
            name: "t".into(),
            templates: vec!["t".into()],
            content_hash: Digest::of(b"t"),
            source: SourceSpec {
                source: SourceRef::parse(source).unwrap(),
                raw: source.into(),
                from_template: "t".into(),
                verify: None,
                checksum: None,
                keyrings: Vec::new(),
            },
            images_server: template_server.map(|url| ServerDecl {
                url: url.into(),
                from_template: "mirror".into(),
                place: "/t/mirror/template.toml:2".into(),
            }),
            vars: Default::default(),
            enable: false,
            storage: None,
        }
    }

    #[test]
    fn the_command_line_wins_over_the_template_over_the_default() {
        let flag = ServerOverride {
            url: "http://flag/x".into(),
            from_env: false,
        };
        let env = ServerOverride {
            url: "http://env/".into(),
            from_env: true,
        };
        let images = spec("images:debian/bookworm/cloud", Some("http://tpl/"));
        let chosen = |spec: &TemplateSpec, given: Option<&ServerOverride>| {
            let s = images_server(spec, given).unwrap().unwrap();
            (s.url.to_string(), s.chosen_by.to_string())
        };
        assert_eq!(
            chosen(&images, Some(&flag)),
            ("http://flag/x/".into(), "--images-server".into())
        );
        assert_eq!(
            chosen(&images, Some(&env)),
            ("http://env/".into(), "$SANDBOX_IMAGES_SERVER".into())
        );
        assert_eq!(
            chosen(&images, None),
            (
                "http://tpl/".into(),
                "images_server at /t/mirror/template.toml:2".into()
            )
        );
        let plain = spec("images:debian/bookworm/cloud", None);
        assert_eq!(
            chosen(&plain, None),
            (
                "https://images.linuxcontainers.org/".into(),
                "the default".into()
            )
        );
        // Other sources take no server, whatever the command line says (as `sandbox pull`).
        let tarball = spec("https://example.org/rootfs.tar.xz", None);
        assert_eq!(images_server(&tarball, Some(&flag)).unwrap(), None);

        let bad = ServerOverride {
            url: "ftp://x/".into(),
            from_env: true,
        };
        let e = format!("{:#}", images_server(&plain, Some(&bad)).unwrap_err());
        assert!(
            e.starts_with("$SANDBOX_IMAGES_SERVER: image server ftp://x/"),
            "{e}"
        );
    }

    #[test]
    fn the_pull_takes_the_server_and_the_keyrings() {
        let req = BuildRequest {
            keyrings: vec!["/k.asc".into()],
            images_server: Some(ServerOverride {
                url: "http://127.0.0.1:1/sub".into(),
                from_env: false,
            }),
            offline: true,
            ..Default::default()
        };
        let pull = pull_spec(&spec("images:debian/bookworm/cloud", None), &req).unwrap();
        assert_eq!(
            pull.images_server.as_deref(),
            Some("http://127.0.0.1:1/sub/")
        );
        assert_eq!(pull.keyrings, vec![PathBuf::from("/k.asc")]);
        assert!(pull.offline);
        let pull = pull_spec(
            &spec("images:debian/bookworm/cloud", None),
            &BuildRequest::default(),
        )
        .unwrap();
        assert_eq!(
            pull.images_server.as_deref(),
            Some("https://images.linuxcontainers.org/")
        );
    }
}
