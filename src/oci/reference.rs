//! OCI sources as the user writes them, parsed and normalised (pure):
//!
//! - `docker://[HOST[:PORT]/]REPO[:TAG][@sha256:HEX]`, with Docker's rules: the first path
//!   component is a registry host when it contains `.` or `:`, is `localhost`, or has
//!   upper-case letters (a repository never does); otherwise the host is Docker Hub
//!   (`docker.io`, also spelled `index.docker.io`), where a one-component repository lives
//!   under `library/`. Without a tag or digest the tag is `latest`. With a digest the digest
//!   decides and the tag is only informative.
//! - `oci-layout:DIR[:TAG]` and `oci-archive:FILE[:TAG]`, split at the first `:` as skopeo
//!   does (so DIR cannot contain `:`, while a TAG may be a full reference name).
//!
//! The grammar is the distribution spec's: repository components `[a-z0-9]+` joined by `.`,
//! `_`, `__` or runs of `-`; tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`; a repository name of at
//! most 255 characters; digests sha256 only.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API is actually served.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const MAX_NAME_LEN: usize = 255;

/// A normalised image reference in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/debian`, `user/repo`, `a/b/c`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Where an OCI image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciSource {
    Registry(ImageReference),
    /// An OCI image layout directory, and the `org.opencontainers.image.ref.name` to pick.
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// A tar of an image layout.
    Archive {
        file: PathBuf,
        tag: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

fn err(input: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError {
        input: input.to_string(),
        reason: reason.into(),
    }
}

impl OciSource {
    /// Parses `docker://…`, `oci-layout:…` or `oci-archive:…`.
    pub fn parse(s: &str) -> Result<OciSource, ReferenceError> {
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(OciSource::Registry(ImageReference::parse(rest)?));
        }
        let local = |rest: &str| -> Result<(PathBuf, Option<String>), ReferenceError> {
            let (path, tag) = match rest.split_once(':') {
                Some((path, tag)) => (path, Some(tag)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(err(s, "the path is empty"));
            }
            if let Some(tag) = tag
                && !is_layout_ref_name(tag)
            {
                return Err(err(
                    s,
                    format!("`{tag}` is not a valid reference name (letters, digits and -._:@/+)"),
                ));
            }
            Ok((PathBuf::from(path), tag.map(str::to_string)))
        };
        if let Some(rest) = s.strip_prefix("oci-layout:") {
            let (dir, tag) = local(rest)?;
            return Ok(OciSource::Layout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (file, tag) = local(rest)?;
            return Ok(OciSource::Archive { file, tag });
        }
        Err(err(
            s,
            "expected docker://REF, oci-layout:DIR[:TAG] or oci-archive:FILE[:TAG]",
        ))
    }
}

impl fmt::Display for OciSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local =
            |f: &mut fmt::Formatter<'_>, kind: &str, path: &PathBuf, tag: &Option<String>| {
                write!(f, "{kind}:{}", path.display())?;
                match tag {
                    Some(t) => write!(f, ":{t}"),
                    None => Ok(()),
                }
            };
        match self {
            OciSource::Registry(r) => write!(f, "docker://{r}"),
            OciSource::Layout { dir, tag } => local(f, "oci-layout", dir, tag),
            OciSource::Archive { file, tag } => local(f, "oci-archive", file, tag),
        }
    }
}

impl ImageReference {
    /// Parses and normalises a reference without the `docker://` prefix.
    pub fn parse(input: &str) -> Result<ImageReference, ReferenceError> {
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| err(input, e.to_string()))?;
                if !d.bytes().skip(7).all(|b| !b.is_ascii_uppercase()) {
                    return Err(err(input, "digest hex must be lower-case"));
                }
                (n, Some(digest))
            }
            None => (input, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => (
                &name_tag[..last_slash + i],
                Some(&name_tag[last_slash + i + 1..]),
            ),
            None => (name_tag, None),
        };
        if let Some(tag) = tag
            && !is_tag(tag)
        {
            return Err(err(input, format!("`{tag}` is not a valid tag")));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first, rest)
            }
            _ => (DOCKER_HUB, name),
        };
        if !is_registry(registry) {
            return Err(err(
                input,
                format!("`{registry}` is not a valid registry host"),
            ));
        }
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        if path.is_empty() || !path.split('/').all(is_path_component) {
            return Err(err(
                input,
                format!(
                    "`{path}` is not a valid repository (lower-case letters, digits and \
                     separators `.`, `_`, `__`, `-` between them, components joined by `/`)"
                ),
            ));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(err(input, "the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(ImageReference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to for the registry API (Docker Hub serves it elsewhere).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(&b[0])
        && b[1..].iter().all(|c| word(c) || *c == b'.' || *c == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// A DNS name or IPv4 address, or a bracketed IPv6 address, with an optional port.
fn is_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if s.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// The characters the image-layout spec allows in `org.opencontainers.image.ref.name`.
fn is_layout_ref_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@/+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_references_are_normalised() {
        let table = [
            ("debian", "docker.io/library/debian:latest"),
            ("debian:bookworm", "docker.io/library/debian:bookworm"),
            ("user/repo", "docker.io/user/repo:latest"),
            ("docker.io/debian:12", "docker.io/library/debian:12"),
            ("index.docker.io/debian", "docker.io/library/debian:latest"),
            ("docker.io/user/repo:v1", "docker.io/user/repo:v1"),
            ("ghcr.io/a/b/c:1.0", "ghcr.io/a/b/c:1.0"),
            ("localhost/img", "localhost/img:latest"),
            ("localhost:5000/img:t", "localhost:5000/img:t"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("[::1]:5000/img:x", "[::1]:5000/img:x"),
            ("Registry/img", "Registry/img:latest"),
            (
                "quay.io/a__b/c-d--e.f_g:Tag_1.2-3",
                "quay.io/a__b/c-d--e.f_g:Tag_1.2-3",
            ),
            (
                &format!("debian@sha256:{HEX}"),
                &format!("docker.io/library/debian@sha256:{HEX}"),
            ),
            (
                &format!("h:1/r:t@sha256:{HEX}"),
                &format!("h:1/r:t@sha256:{HEX}"),
            ),
        ];
        for (input, want) in table {
            let r = ImageReference::parse(input).unwrap();
            assert_eq!(r.to_string(), want, "{input}");
            // Normal forms are fixed points.
            assert_eq!(ImageReference::parse(want).unwrap(), r, "{want}");
        }
        // Without a slash, `host:5000` is Docker Hub's `library/host` at tag 5000 (as Docker
        // reads it).
        assert_eq!(
            ImageReference::parse("host:5000").unwrap().to_string(),
            "docker.io/library/host:5000"
        );
        let r = ImageReference::parse("debian:bookworm").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_reference(), "bookworm");
        let r = ImageReference::parse(&format!("localhost:5000/x:t@sha256:{HEX}")).unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.tag.as_deref(), Some("t"));
    }

    #[test]
    fn bad_references_are_refused() {
        let long = "a".repeat(250);
        let bad = [
            "",
            "Debian",
            "debian:",
            "debian:-x",
            &format!("debian:{}", "t".repeat(129)),
            "a//b",
            "/debian",
            "debian/",
            "a-/b",
            "a..b",
            "a___b",
            "localhost:port/img",
            "ho_st.io/img",
            "[::1/img",
            "[zz]:1/img",
            "debian@sha256:abc",
            "debian@md5:00",
            &format!("debian@sha256:{}", HEX.to_uppercase()),
            &format!("x.io/{long}/{long}"),
        ];
        for input in bad {
            assert!(ImageReference::parse(input).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn sources_of_every_kind() {
        let table = [
            (
                "docker://debian:bookworm",
                "docker://docker.io/library/debian:bookworm",
            ),
            ("oci-layout:./img", "oci-layout:./img"),
            ("oci-layout:/srv/img:v1.0", "oci-layout:/srv/img:v1.0"),
            (
                "oci-layout:/srv/img:example.com/app:1",
                "oci-layout:/srv/img:example.com/app:1",
            ),
            (
                "oci-archive:/tmp/a.tar:latest",
                "oci-archive:/tmp/a.tar:latest",
            ),
        ];
        for (input, want) in table {
            assert_eq!(OciSource::parse(input).unwrap().to_string(), want);
        }
        assert_eq!(
            OciSource::parse("oci-archive:a.tar:t").unwrap(),
            OciSource::Archive {
                file: "a.tar".into(),
                tag: Some("t".into())
            }
        );
        for bad in [
            "oci-layout:",
            "oci-layout::t",
            "oci-layout:d:",
            "oci-layout:d:a b",
            "docker:x",
            "x",
        ] {
            assert!(OciSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
