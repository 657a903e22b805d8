//! Where containers simple signing keeps signatures: a "lookaside" store configured the
//! registries.d way (`<sandboxes_dir>/registries.d/*.yaml`), read minimally:
//!
//! ```yaml
//! default-docker:
//!   lookaside: file:///var/lib/sigs
//! docker:
//!   reg.io:5000/team:
//!     lookaside: file:///srv/sigstore
//! ```
//!
//! Scopes match most specific first (`host/repo`, its parents, `host`), then `default-docker`.
//! `lookaside-staging` is where signers write and is ignored; `sigstore` is the older name of
//! `lookaside`. Only `file://` URLs (and plain absolute paths) are read for now. The signatures
//! of manifest `sha256:HEX` of `host/repo` are `<lookaside>/repo@sha256=HEX/signature-N`,
//! N = 1, 2, … up to the first missing one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::digest::Digest;
use crate::oci::reference::ImageReference;

/// The `lookaside` entries of one registries.d file: (scope, URL), `""` for `default-docker`.
pub fn parse_registries_yaml(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut section: Option<&str> = None;
    let mut scope: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or(raw).trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let (key, value) = match content.split_once(": ") {
            Some((k, v)) => (unquote(k.trim()), unquote(v.trim())),
            None => match content.strip_suffix(':') {
                Some(k) => (unquote(k.trim()), String::new()),
                None => bail!("line {}: not `key:` or `key: value`", n + 1),
            },
        };
        if indent == 0 {
            section = match key.as_str() {
                "docker" => Some("docker"),
                "default-docker" => Some("default-docker"),
                _ => None,
            };
            scope = None;
            continue;
        }
        let is_lookaside = key == "lookaside" || key == "sigstore";
        match section {
            Some("default-docker") if is_lookaside && !value.is_empty() => {
                out.push((String::new(), value))
            }
            Some("docker") if value.is_empty() && !is_lookaside => scope = Some(key),
            Some("docker") if is_lookaside && !value.is_empty() => match &scope {
                Some(s) => out.push((s.clone(), value)),
                None => bail!("line {}: `{key}` outside a registry scope", n + 1),
            },
            _ => {}
        }
    }
    Ok(out)
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// The lookaside directory for `reference` among `entries`: the most specific scope.
pub fn lookaside_for(entries: &[(String, String)], reference: &ImageReference) -> Option<String> {
    let mut path = format!("{}/{}", reference.registry, reference.repository);
    loop {
        if let Some((_, url)) = entries.iter().find(|(s, _)| *s == path) {
            return Some(url.clone());
        }
        match path.rsplit_once('/') {
            Some((parent, _)) => path = parent.to_string(),
            None => break,
        }
    }
    entries
        .iter()
        .find(|(s, _)| s.is_empty())
        .map(|(_, u)| u.clone())
}

/// The local directory of a lookaside URL (`file:///…` or an absolute path).
pub fn lookaside_dir(url: &str) -> Result<PathBuf> {
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if url.starts_with('/') {
        return Ok(PathBuf::from(url));
    }
    bail!("lookaside `{url}`: only file:// lookaside stores are supported for now")
}

/// `<dir>/repo@sha256=HEX/signature-N`.
pub fn signature_path(dir: &Path, reference: &ImageReference, digest: &Digest, n: u32) -> PathBuf {
    dir.join(format!("{}@sha256={}", reference.repository, digest.hex()))
        .join(format!("signature-{n}"))
}

/// Every lookaside entry of the `*.yaml` files in `dir` (none when it does not exist), in
/// file-name order.
pub fn load_registries_d(dir: &Path) -> Result<Vec<(String, String)>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = fs_err::read_to_string(&f)?;
        out.extend(parse_registries_yaml(&text).with_context(|| format!("in {}", f.display()))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_defaults_are_found() {
        let yaml = "# comment\ndefault-docker:\n  lookaside: file:///def\ndocker:\n  \"reg.io:5000/team\":\n    lookaside-staging: file:///stage\n    lookaside: file:///team # trailing\n  reg.io:5000:\n    sigstore: /host\n";
        let e = parse_registries_yaml(yaml).unwrap();
        assert_eq!(
            e,
            vec![
                (String::new(), "file:///def".to_string()),
                ("reg.io:5000/team".to_string(), "file:///team".to_string()),
                ("reg.io:5000".to_string(), "/host".to_string()),
            ]
        );
        let r = |s: &str| ImageReference::parse(s).unwrap();
        assert_eq!(
            lookaside_for(&e, &r("reg.io:5000/team/app:1")).unwrap(),
            "file:///team"
        );
        assert_eq!(lookaside_for(&e, &r("reg.io:5000/x")).unwrap(), "/host");
        assert_eq!(lookaside_for(&e, &r("other.io/x")).unwrap(), "file:///def");
        assert_eq!(
            lookaside_dir("file:///team").unwrap(),
            PathBuf::from("/team")
        );
        assert!(lookaside_dir("https://sigs.example/x").is_err());
        let d = Digest::of(b"m");
        assert_eq!(
            signature_path(Path::new("/s"), &r("reg.io:5000/team/app:1"), &d, 2),
            PathBuf::from(format!("/s/team/app@sha256={}/signature-2", d.hex()))
        );
        assert!(parse_registries_yaml("docker:\n  lookaside: file:///x\n").is_err());
    }
}
