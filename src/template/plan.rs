//! The result of composition: `TemplateSpec` (what to pull, how to verify it, whether to enable
//! the sandbox) and `BuildPlan` (every file a build writes, as bytes). `--dry-run` prints the
//! plan; the I/O side writes it and does nothing else with templates.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use super::compose::Composition;
use super::generate::{self, EXTRA_BRIDGES_VAR, Generator, NvidiaFiles};
use super::library::Content;
use super::{cloudinit, dropin, nspawn, nspawn_rules};
use crate::digest::Digest;
use crate::source::SourceRef;
use crate::verify::mode::VerifyMode;

/// Where cloud-init's NoCloud data source looks for its seed, relative to the rootfs.
pub const SEED_DIR: &str = "var/lib/cloud/seed/nocloud";
/// Present in some images to keep cloud-init from running; the seed would then be ignored.
pub const CLOUD_INIT_DISABLED: &str = "etc/cloud/cloud-init.disabled";

/// A keyring to verify the source with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Keyring {
    /// A file on the host.
    Host(PathBuf),
    /// A file shipped inside a template, e.g. `mydistro/archive-key.asc`.
    Template {
        label: String,
        #[serde(skip)]
        bytes: Vec<u8>,
    },
}

/// The base image and how to verify it, from the last template that sets `source`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSpec {
    #[serde(skip)]
    pub source: SourceRef,
    /// As written in `template.toml`.
    pub raw: String,
    pub from_template: String,
    /// `None`: the caller's default (signature, or checksum when one is pinned).
    #[serde(serialize_with = "ser_verify")]
    pub verify: Option<VerifyMode>,
    pub checksum: Option<Digest>,
    pub keyrings: Vec<Keyring>,
}

fn ser_verify<S: serde::Serializer>(v: &Option<VerifyMode>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(m) => s.serialize_some(m.as_str()),
        None => s.serialize_none(),
    }
}

/// `images_server` from a template: the last template (in composition order) that sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerDecl {
    /// As written (an http(s) URL; checked when the template was parsed).
    pub url: String,
    pub from_template: String,
    /// `file:line` of the key.
    pub place: String,
}

/// What a composition of templates amounts to, before any machine exists.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSpec {
    /// The requested templates joined with `+`, e.g. `debian+docker`.
    pub name: String,
    /// Every template applied, in order (extends resolved).
    pub templates: Vec<String>,
    /// sha256 over the composed inputs: same templates and values, same hash.
    pub content_hash: Digest,
    pub source: SourceSpec,
    /// The simplestreams server for an `images:` source, when a template names one;
    /// `--images-server` and `$SANDBOX_IMAGES_SERVER` override it.
    pub images_server: Option<ServerDecl>,
    /// Final variable values (defaults, then `--set`).
    pub vars: BTreeMap<String, String>,
    /// Enable the sandbox to start at boot (`machinectl enable`).
    pub enable: bool,
    /// The templates' `storage` (the last that sets one); `--storage` overrides it.
    pub storage: Option<crate::machine::storage::Storage>,
}

/// Which tree a planned path is relative to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// The host root (`--root`, normally `/`).
    Host,
    /// The machine's rootfs.
    Rootfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub base: Base,
    /// Relative, `/`-separated, no `.` or `..`.
    pub path: String,
    pub mode: u32,
    pub content: Content,
}

/// Everything a build writes.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildPlan {
    pub machine: String,
    pub spec: TemplateSpec,
    pub files: Vec<PlannedFile>,
    /// Rootfs-relative paths to remove if present, before the files are written.
    pub remove: Vec<String>,
    /// Commands run inside the rootfs after the files are written, in order.
    pub bake: Vec<BakeStep>,
    /// The template files that give cloud-init something to do (`TEMPLATE/user-data`,
    /// `TEMPLATE/network-config`); empty when the seed is only the generated meta-data.
    pub seed_from: Vec<String>,
}

impl BuildPlan {
    pub fn get(&self, base: Base, path: &str) -> Option<&PlannedFile> {
        self.files.iter().find(|f| f.base == base && f.path == path)
    }

    /// The text of a planned file (tests and `--dry-run`).
    pub fn text(&self, base: Base, path: &str) -> Option<&str> {
        match &self.get(base, path)?.content {
            Content::Bytes(b) => std::str::from_utf8(b).ok(),
            Content::Symlink(_) => None,
        }
    }

    /// A listing for people: each file with its mode and, when it is text, its contents.
    /// Seed files may hold secrets (passwords in user-data): this is for `--dry-run` on the
    /// user's own terminal, never for logs.
    pub fn dry_run_text(&self) -> String {
        let mut out = format!(
            "# sandbox `{}` from {} ({})\n# source: {}\n# enable: {}\n",
            self.machine,
            self.spec.templates.join(", "),
            self.spec.content_hash,
            self.spec.source.raw,
            self.spec.enable
        );
        for path in &self.remove {
            out.push_str(&format!("\n== remove rootfs:/{path}\n"));
        }
        for f in &self.files {
            let base = match f.base {
                Base::Host => "host",
                Base::Rootfs => "rootfs",
            };
            match &f.content {
                Content::Symlink(t) => out.push_str(&format!("\n== {base}:/{} -> {t}\n", f.path)),
                Content::Bytes(b) => match std::str::from_utf8(b) {
                    Ok(text) => {
                        out.push_str(&format!(
                            "\n== {base}:/{} (mode {:04o})\n{text}",
                            f.path, f.mode
                        ));
                        if !text.ends_with('\n') {
                            out.push('\n');
                        }
                    }
                    Err(_) => out.push_str(&format!(
                        "\n== {base}:/{} (mode {:04o}, {} bytes, binary)\n",
                        f.path,
                        f.mode,
                        b.len()
                    )),
                },
            }
        }
        for (i, step) in self.bake.iter().enumerate() {
            out.push_str(&format!(
                "\n== {} ({}, template {})\n{}\n",
                label(i, self.bake.len()),
                step.place,
                step.template,
                step.command
            ));
        }
        out
    }
}

/// What rendering needs besides the composition.
#[derive(Debug, Clone, Default)]
pub struct RenderInputs {
    /// The machine name (checked as machinectl would).
    pub machine: String,
    /// cloud-init's instance id; the caller derives it (a change makes cloud-init run again).
    pub instance_id: String,
    /// `nvidia-container-cli list`, parsed; needed when a template uses the `nvidia` generator.
    pub nvidia: Option<NvidiaFiles>,
    /// `.nspawn` values the host check found this host cannot serve, left out of the file
    /// with a comment saying why.
    pub omit: Vec<Omission>,
}

/// A composed `.nspawn` value left out for this host (see `build::hostcheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Omission {
    pub section: String,
    pub key: String,
    pub value: String,
    pub why: String,
}

impl Composition {
    /// Every file of the build, purely from the composition and `inputs`.
    pub fn render(&self, inputs: &RenderInputs) -> Result<BuildPlan> {
        let machine = inputs.machine.as_str();
        crate::machine::name::validate(machine)?;
        if inputs.instance_id.is_empty() || inputs.instance_id.chars().any(char::is_control) {
            bail!("the cloud-init instance id must be non-empty text without control characters");
        }
        let header = format!(
            "# Written by sandbox build from templates {} ({}).\n# A rebuild replaces this file.\n",
            self.spec.templates.join(", "),
            self.spec.content_hash
        );
        let mut nspawn_header = header.clone();

        let mut user_data = None;
        let mut network = None;
        let mut settings = nspawn::Settings::default();
        let mut dropins: Vec<(String, String)> = Vec::new();
        let mut generated_files: Vec<(String, u32, Vec<u8>)> = Vec::new();
        let mut seed_from = Vec::new();
        for part in &self.parts {
            if let Some(n) = &part.user_data {
                cloudinit::merge(&mut user_data, n.clone())?;
                seed_from.push(format!("{}/user-data", part.name));
            }
            if let Some(n) = &part.network_config {
                cloudinit::merge(&mut network, n.clone())?;
                seed_from.push(format!("{}/network-config", part.name));
            }
            for file in &part.nspawn {
                // Every value is checked where it was written, before composition picks.
                for (a, from) in file.assignments.iter().zip(&file.filled_by) {
                    let place = format!("{}:{}", file.shown, a.line);
                    nspawn_rules::check_at(&place, &a.section, &a.key, &a.value, from)?;
                }
                settings.apply(
                    file.assignments
                        .iter()
                        .map(|a| (a.section.as_str(), a.key.as_str(), a.value.as_str())),
                );
            }
            dropins.extend(part.dropins.iter().cloned());
            for (generator, place) in &part.generators {
                let g = match generator {
                    Generator::Nvidia => match &inputs.nvidia {
                        Some(files) => generate::nvidia(files),
                        None => bail!(
                            "{place}: template `{}` needs the host's NVIDIA driver files (`nvidia-container-cli list`), and none were given",
                            part.name
                        ),
                    },
                    Generator::ExtraBridges => {
                        let value = self
                            .spec
                            .vars
                            .get(EXTRA_BRIDGES_VAR)
                            .map_or("", String::as_str);
                        generate::extra_bridges(
                            machine,
                            value,
                            &format!("variable `{EXTRA_BRIDGES_VAR}`"),
                        )?
                    }
                };
                for (s, k, v) in &g.nspawn {
                    let place = format!("{place} (generator `{}`)", generator.name());
                    nspawn_rules::check_at(&place, s, k, v, &[])?;
                }
                settings.apply(
                    g.nspawn
                        .iter()
                        .map(|(s, k, v)| (s.as_str(), k.as_str(), v.as_str())),
                );
                if !g.dropin.is_empty() {
                    dropins.push((
                        format!("{} (generated: {})", part.name, generator.name()),
                        g.dropin,
                    ));
                }
                if let Some(n) = g.network_config {
                    cloudinit::merge(&mut network, n)?;
                }
                generated_files.extend(g.rootfs_files);
            }
        }

        // systemd-nspawn refuses the two together at every start; say so at build time.
        if let ([bridge, ..], [zone, ..]) = (
            settings.get("Network", "Bridge"),
            settings.get("Network", "Zone"),
        ) && !bridge.is_empty()
            && !zone.is_empty()
        {
            bail!(
                "the templates {} set both Bridge={bridge} and Zone={zone}; systemd-nspawn takes one (drop `bridge` or `zone`)",
                self.spec.templates.join(", ")
            );
        }

        for o in &inputs.omit {
            if settings.remove(&o.section, &o.key, &o.value) {
                nspawn_header.push_str(&format!("# Left out: {}={} ({})\n", o.key, o.value, o.why));
            }
        }

        let mut files = Vec::new();
        let host = |path: String, text: String| PlannedFile {
            base: Base::Host,
            path,
            mode: 0o644,
            content: Content::Bytes(text.into_bytes()),
        };
        files.push(host(
            format!("etc/systemd/nspawn/{machine}.nspawn"),
            settings.render(&nspawn_header),
        ));
        let dir = dropin::dropin_dir(machine);
        files.push(host(
            format!("{dir}/{}", dropin::DEFAULT_DROPIN),
            dropin::render_default(&header),
        ));
        if let Some(text) = dropin::concatenate(&header, &dropins)? {
            files.push(host(format!("{dir}/{}", dropin::TEMPLATES_DROPIN), text));
        }

        // Seed files are root's alone: user-data may carry password hashes and keys.
        let seed = |name: &str, text: String| PlannedFile {
            base: Base::Rootfs,
            path: format!("{SEED_DIR}/{name}"),
            mode: 0o600,
            content: Content::Bytes(text.into_bytes()),
        };
        files.push(seed(
            "meta-data",
            cloudinit::render_meta_data(&inputs.instance_id, machine),
        ));
        files.push(seed(
            "user-data",
            cloudinit::render_user_data(user_data.as_ref()),
        ));
        if let Some(n) = &network {
            files.push(seed("network-config", cloudinit::render_network_config(n)));
        }

        let mut rootfs: Vec<PlannedFile> = Vec::new();
        for (path, (file, _)) in &self.files {
            rootfs.push(PlannedFile {
                base: Base::Rootfs,
                path: path.clone(),
                mode: file.mode,
                content: file.content.clone(),
            });
        }
        for (path, mode, bytes) in generated_files {
            rootfs.push(PlannedFile {
                base: Base::Rootfs,
                path,
                mode,
                content: Content::Bytes(bytes),
            });
        }
        for f in &rootfs {
            let clash = files
                .iter()
                .chain(rootfs.iter().filter(|o| !std::ptr::eq(*o, f)))
                .find(|o| {
                    o.base == Base::Rootfs
                        && (o.path == f.path
                            || o.path.starts_with(&format!("{}/", f.path))
                            || f.path.starts_with(&format!("{}/", o.path)))
                });
            if let Some(o) = clash {
                let from = self
                    .files
                    .get(&f.path)
                    .map_or("a generator", |(_, from)| from.as_str());
                bail!(
                    "{from}: /{} collides with /{} that the build writes",
                    f.path,
                    o.path
                );
            }
        }
        files.extend(rootfs);
        Ok(BuildPlan {
            machine: machine.to_string(),
            spec: self.spec.clone(),
            files,
            remove: vec![CLOUD_INIT_DISABLED.to_string()],
            bake: self.bake_steps(),
            seed_from,
        })
    }
}

/// One `[build] run` entry and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BakeStep {
    /// Passed to `/bin/sh -c` as written (never substituted).
    pub command: String,
    /// The template it belongs to.
    pub template: String,
    /// `file:line` of the entry.
    pub place: String,
}

/// `bake 2/3`. Pure.
pub fn label(index: usize, count: usize) -> String {
    format!("bake {}/{count}", index + 1)
}
