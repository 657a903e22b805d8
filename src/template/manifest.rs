//! `template.toml`: what a template declares besides its native files.
//!
//! Every key is optional, an unknown key is an error (a typo must not be silently ignored),
//! and every error names the file and line. The verification settings (`verify`, `keyring`,
//! `checksum`) belong to the `source` they verify, so they are only accepted next to it: a
//! template that extends `debian` and sets a checksum without a source would otherwise pin a
//! digest to an image it never named. `images_server` is not one of them: it says where
//! `images:` sources are fetched from (a mirror, an air-gapped server), whichever template names
//! the image, so a template that extends `debian` may set it alone.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use toml::Spanned;

use crate::digest::Digest;
use crate::source::SourceRef;
use crate::verify::mode::VerifyMode;

use super::generate::Generator;
use super::vars::validate_var_name;
use crate::machine::storage::Storage;

/// A parsed `template.toml`. Lines are 1-based lines of that file.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub description: Option<String>,
    pub source: Option<SourceDecl>,
    /// `images_server`: the simplestreams server for an `images:` source, as written (checked to
    /// be an http(s) URL), with its line.
    pub images_server: Option<(String, usize)>,
    /// Other templates applied before this one, in order.
    pub extends: Vec<(String, usize)>,
    /// `enable = true`: the sandbox is enabled to start at boot.
    pub enable: Option<bool>,
    /// `storage = "btrfs"`: how the sandbox's tree is made (`--storage` overrides it).
    pub storage: Option<Storage>,
    /// Built-in generators whose output is placed at this template's position.
    pub generate: Vec<(Generator, usize)>,
    /// Variable defaults: name → (value, line).
    pub vars: BTreeMap<String, (String, usize)>,
    /// `[build] run`: shell commands run inside the rootfs at build time, in order, with lines.
    pub bake: Vec<(String, usize)>,
}

/// The base image and how to verify it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceDecl {
    /// As written, for records and messages.
    pub raw: String,
    pub source: SourceRef,
    pub line: usize,
    pub verify: Option<VerifyMode>,
    pub checksum: Option<Digest>,
    /// Keyring paths as written: absolute host paths, or files of the template itself.
    pub keyrings: Vec<(String, usize)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    description: Option<String>,
    source: Option<Spanned<String>>,
    verify: Option<Spanned<String>>,
    keyring: Option<Spanned<OneOrMany>>,
    checksum: Option<Spanned<String>>,
    images_server: Option<Spanned<String>>,
    extends: Option<Vec<Spanned<String>>>,
    enable: Option<bool>,
    storage: Option<Spanned<String>>,
    generate: Option<Vec<Spanned<String>>>,
    vars: Option<BTreeMap<Spanned<String>, Spanned<VarValue>>>,
    build: Option<RawBuild>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    run: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VarValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

/// 1-based line of byte offset `at` in `text`.
pub fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses `template.toml`; `file` is how the file is named in errors.
pub fn parse(text: &str, file: &str) -> Result<Manifest> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        anyhow!("{file}:{line}: {}", e.message().trim_end())
    })?;
    let at = |s: &std::ops::Range<usize>| line_of(text, s.start);

    let source = match raw.source {
        None => {
            for (key, span) in [
                ("verify", raw.verify.as_ref().map(Spanned::span)),
                ("keyring", raw.keyring.as_ref().map(Spanned::span)),
                ("checksum", raw.checksum.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    bail!(
                        "{file}:{}: `{key}` without `source`: verification settings belong to the source they verify",
                        at(&span)
                    );
                }
            }
            None
        }
        Some(src) => {
            let line = at(&src.span());
            let raw_source = src.into_inner();
            let source = SourceRef::parse(&raw_source)
                .map_err(|e| anyhow!("{file}:{line}: source `{raw_source}`: {e:#}"))?;
            if let SourceRef::File(p) = &source
                && !p.is_absolute()
            {
                bail!("{file}:{line}: a local source must be an absolute path, not `{raw_source}`");
            }
            let verify = match raw.verify {
                None => None,
                Some(v) => Some(match v.get_ref().as_str() {
                    "no" => VerifyMode::No,
                    "checksum" => VerifyMode::Checksum,
                    "signature" => VerifyMode::Signature,
                    other => bail!(
                        "{file}:{}: verify = `{other}`: expected `signature`, `checksum` or `no`",
                        at(&v.span())
                    ),
                }),
            };
            let checksum = match raw.checksum {
                None => None,
                Some(c) => Some(
                    c.get_ref()
                        .parse::<Digest>()
                        .map_err(|e| anyhow!("{file}:{}: checksum: {e}", at(&c.span())))?,
                ),
            };
            // Untagged enums cannot carry spans inside, so every entry gets the key's line.
            let (keyrings, keyring_line) = match raw.keyring {
                None => (Vec::new(), 0),
                Some(k) => {
                    let line = at(&k.span());
                    match k.into_inner() {
                        OneOrMany::One(k) => (vec![k], line),
                        OneOrMany::Many(ks) => (ks, line),
                    }
                }
            };
            let mut checked = Vec::new();
            for path in keyrings {
                if path.is_empty() || (!path.starts_with('/') && !is_plain_relative(&path)) {
                    bail!(
                        "{file}:{keyring_line}: keyring `{path}` must be an absolute path or a file inside the template"
                    );
                }
                checked.push((path, keyring_line));
            }
            Some(SourceDecl {
                raw: raw_source,
                source,
                line,
                verify,
                checksum,
                keyrings: checked,
            })
        }
    };

    let images_server = match raw.images_server {
        None => None,
        Some(s) => {
            let line = at(&s.span());
            let url = s.into_inner();
            crate::source::images::server_url(Some(&url))
                .map_err(|e| anyhow!("{file}:{line}: images_server: {e:#}"))?;
            Some((url, line))
        }
    };

    let storage = match raw.storage {
        None => None,
        Some(s) => {
            let line = at(&s.span());
            Some(Storage::parse(s.get_ref()).map_err(|e| anyhow!("{file}:{line}: storage: {e}"))?)
        }
    };

    let mut extends = Vec::new();
    for e in raw.extends.unwrap_or_default() {
        let line = at(&e.span());
        let name = e.into_inner();
        super::library::validate_name(&name)
            .map_err(|err| anyhow!("{file}:{line}: extends: {err}"))?;
        extends.push((name, line));
    }

    let mut generate = Vec::new();
    for g in raw.generate.unwrap_or_default() {
        let line = at(&g.span());
        let generator =
            Generator::parse(g.get_ref()).map_err(|e| anyhow!("{file}:{line}: generate: {e}"))?;
        generate.push((generator, line));
    }

    let mut vars = BTreeMap::new();
    for (name, value) in raw.vars.unwrap_or_default() {
        let line = at(&name.span());
        let name = name.into_inner();
        validate_var_name(&name).map_err(|e| anyhow!("{file}:{line}: {e}"))?;
        let value = match value.into_inner() {
            VarValue::String(s) => s,
            VarValue::Integer(i) => i.to_string(),
            VarValue::Bool(b) => b.to_string(),
        };
        super::vars::validate_value(&name, &value).map_err(|e| anyhow!("{file}:{line}: {e}"))?;
        vars.insert(name, (value, line));
    }

    let mut bake = Vec::new();
    for step in raw.build.and_then(|b| b.run).unwrap_or_default() {
        let line = at(&step.span());
        let command = step.into_inner();
        validate_step(&command).map_err(|e| anyhow!("{file}:{line}: [build] run: {e}"))?;
        bake.push((command, line));
    }

    Ok(Manifest {
        description: raw.description,
        source,
        images_server,
        extends,
        enable: raw.enable,
        storage,
        generate,
        vars,
        bake,
    })
}

/// A bake step is handed to `/bin/sh -c` as one argument: it must say something, and a NUL
/// byte cannot be passed to a program at all.
fn validate_step(command: &str) -> Result<()> {
    if command.trim().is_empty() {
        bail!("an empty command");
    }
    if command.contains('\0') {
        bail!("a command may not contain a NUL character");
    }
    Ok(())
}

/// A relative path without `.`/`..` components or empty parts: something inside the template.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, "t/template.toml").unwrap_err())
    }

    #[test]
    fn parses_every_key() {
        let m = parse(
            r#"
description = "Debian with extras"
source = "images:debian/bookworm/cloud"
verify = "checksum"
checksum = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
keyring = ["/etc/keys/a.pgp", "keys/b.asc"]
extends = ["docker", "nvidia"]
enable = true
generate = ["nvidia"]
images_server = "https://mirror.example.org/lxc"

[vars]
bridge = "br1"
count = 3
flag = false

[build]
run = ["apt-get update",
  "apt-get install -y curl"]
"#,
            "t/template.toml",
        )
        .unwrap();
        assert_eq!(m.description.as_deref(), Some("Debian with extras"));
        let s = m.source.unwrap();
        assert_eq!(s.raw, "images:debian/bookworm/cloud");
        assert_eq!(s.line, 3);
        assert_eq!(s.verify, Some(VerifyMode::Checksum));
        assert_eq!(s.checksum.unwrap().hex(), format!("{:064}", 1));
        assert_eq!(
            s.keyrings,
            vec![("/etc/keys/a.pgp".into(), 6), ("keys/b.asc".into(), 6)]
        );
        assert_eq!(m.extends, vec![("docker".into(), 7), ("nvidia".into(), 7)]);
        assert_eq!(m.enable, Some(true));
        assert_eq!(m.generate, vec![(Generator::Nvidia, 9)]);
        assert_eq!(
            m.images_server,
            Some(("https://mirror.example.org/lxc".into(), 10))
        );
        assert_eq!(m.vars["bridge"], ("br1".into(), 13));
        assert_eq!(m.vars["count"].0, "3");
        assert_eq!(m.vars["flag"].0, "false");
        assert_eq!(
            m.bake,
            vec![
                ("apt-get update".into(), 18),
                ("apt-get install -y curl".into(), 19)
            ]
        );
    }

    #[test]
    fn a_single_keyring_is_a_string() {
        let m = parse("source = \"images:x/y\"\nkeyring = \"k.pgp\"\n", "f").unwrap();
        assert_eq!(m.source.unwrap().keyrings, vec![("k.pgp".into(), 2)]);
    }

    #[test]
    fn images_server_stands_without_a_source() {
        // A template extending `debian` only moves where its image comes from.
        let m = parse(
            "extends = [\"debian\"]\nimages_server = \"http://127.0.0.1:8080/mirror\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(m.source, None);
        assert_eq!(
            m.images_server,
            Some(("http://127.0.0.1:8080/mirror".into(), 2))
        );
        assert_eq!(parse("", "f").unwrap().images_server, None);
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            (
                "description = \"x\"\nsourec = \"images:a/b\"\n",
                "t/template.toml:2: unknown field `sourec`",
            ),
            (
                "[vars]\nx = \"1\"\n[oops]\n",
                "t/template.toml:3: unknown field `oops`",
            ),
            (
                "source = \"images:a/b\"\nverify = \"maybe\"\n",
                "t/template.toml:2: verify = `maybe`",
            ),
            (
                "source = \"images:a/b\"\n\nchecksum = \"md5:00\"\n",
                "t/template.toml:3: checksum",
            ),
            (
                "checksum = \"sha256:00\"\n",
                "t/template.toml:1: `checksum` without `source`",
            ),
            (
                "\nverify = \"no\"\n",
                "t/template.toml:2: `verify` without `source`",
            ),
            (
                "source = \"ftp://h/x.tar\"\n",
                "t/template.toml:1: source `ftp://h/x.tar`",
            ),
            (
                "source = \"rootfs.tar\"\n",
                "t/template.toml:1: a local source must be an absolute path",
            ),
            (
                "source = \"images:a/b\"\nkeyring = \"../k\"\n",
                "t/template.toml:2: keyring `../k`",
            ),
            (
                "extends = [\"ok\",\n  \"../escape\"]\n",
                "t/template.toml:2: extends: `../escape`",
            ),
            (
                "\nimages_server = \"ftp://mirror.example.org/\"\n",
                "t/template.toml:2: images_server: image server ftp://mirror.example.org/ must be an http:// or https:// URL",
            ),
            (
                "images_server = \"mirror.example.org\"\n",
                "t/template.toml:1: images_server: `mirror.example.org` is not a valid image server URL",
            ),
            ("images_server = [\"http://a/\"]\n", "t/template.toml:1:"),
            (
                "generate = [\"gpu\"]\n",
                "t/template.toml:1: generate: unknown generator `gpu`",
            ),
            (
                "[vars]\n\"bad name\" = \"x\"\n",
                "t/template.toml:2: `bad name` is not a valid variable name",
            ),
            ("[vars]\nx = \"a\\nb\"\n", "t/template.toml:2: variable `x`"),
            ("[vars]\nx = 1.5\n", "t/template.toml:2:"),
            ("description = \n", "t/template.toml:1:"),
            (
                "[build]\nrun = [\"true\",\n  \" \"]\n",
                "t/template.toml:3: [build] run: an empty command",
            ),
            (
                "[build]\nrun = [\"a\\u0000b\"]\n",
                "t/template.toml:2: [build] run: a command may not contain a NUL",
            ),
            ("[build]\nrun = \"apt-get update\"\n", "t/template.toml:2:"),
            (
                "\n[build]\nrun = []\nrnu = [\"x\"]\n",
                "t/template.toml:4: unknown field `rnu`",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(
                got.starts_with(want),
                "{text:?}: got {got:?}, want prefix {want:?}"
            );
        }
    }

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }
}
