//! Resolving `extends` into an ordered list of templates, and checking and parsing everything
//! they hold, once, into a `Composition` that `render` turns into files.
//!
//! Order: a template's `extends` are applied first, in the order listed, then the template
//! itself; each template is applied once, at its first position (so a diamond, `a` and `b` both
//! extending `base`, applies `base` once). Templates requested together (`debian docker`) behave
//! like one template extending them in that order. A cycle is an error showing the loop and the
//! `extends` line that closes it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};

use super::generate::{EXTRA_BRIDGES_VAR, Generator};
use super::library::{Content, Library, MANIFEST, Template, TemplateFile};
use super::manifest::{self, Manifest, is_plain_relative};
use super::plan::BakeStep;
use super::plan::{Keyring, ServerDecl, SourceSpec, TemplateSpec};
use super::yaml::Node;
use super::{cloudinit, dropin, ini, nspawn, vars};
use crate::digest::Hasher;
use crate::source::SourceRef;

/// A template with its parsed `template.toml`.
#[derive(Debug, Clone)]
pub struct Layer {
    pub template: Template,
    pub manifest: Manifest,
}

/// Loads `requested` and everything they extend, in application order.
pub fn resolve(
    requested: &[String],
    load: &mut dyn FnMut(&str) -> Result<Template>,
) -> Result<Vec<Layer>> {
    if requested.is_empty() {
        bail!("no template given");
    }
    let mut done: Vec<Layer> = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    for name in requested {
        visit(name, None, load, &mut stack, &mut done)?;
    }
    Ok(done)
}

fn visit(
    name: &str,
    via: Option<&str>,
    load: &mut dyn FnMut(&str) -> Result<Template>,
    stack: &mut Vec<String>,
    done: &mut Vec<Layer>,
) -> Result<()> {
    if done.iter().any(|l| l.template.name == name) {
        return Ok(());
    }
    if let Some(pos) = stack.iter().position(|s| s == name) {
        let mut chain: Vec<&str> = stack[pos..].iter().map(String::as_str).collect();
        chain.push(name);
        bail!(
            "{}: `extends` makes a cycle: {}",
            via.unwrap_or(name),
            chain.join(" → ")
        );
    }
    let template = load(name).with_context(|| match via {
        Some(place) => format!("{place}: extends `{name}`"),
        None => format!("template `{name}`"),
    })?;
    let text = template.text(MANIFEST)?.unwrap_or_default();
    let manifest = manifest::parse(text, &template.display_path(MANIFEST))?;
    stack.push(name.to_string());
    for (parent, line) in &manifest.extends {
        let place = format!("{}:{line}", template.display_path(MANIFEST));
        visit(parent, Some(&place), load, stack, done)?;
    }
    stack.pop();
    done.push(Layer { template, manifest });
    Ok(())
}

/// What one template contributes, parsed and with variables substituted.
#[derive(Debug, Clone, Default)]
pub(super) struct Parts {
    pub name: String,
    pub user_data: Option<Node>,
    pub network_config: Option<Node>,
    pub nspawn: Vec<NspawnFile>,
    /// Per `*.conf` file: its label and text.
    pub dropins: Vec<(String, String)>,
    pub generators: Vec<(Generator, String)>,
    /// `[build] run`, in the template's order.
    pub bake: Vec<BakeStep>,
}

/// One `.nspawn` file of a template, parsed after substitution.
#[derive(Debug, Clone, Default)]
pub(super) struct NspawnFile {
    /// The file as errors name it, e.g. `built-in:zone/zone.nspawn`.
    pub shown: String,
    pub assignments: Vec<ini::Assignment>,
    /// Per assignment: where each variable that filled its value was set, e.g.
    /// `--set zone=…` (see `var_origins`).
    pub filled_by: Vec<Vec<String>>,
}

/// Templates resolved, checked and parsed: everything `render` needs except the machine.
#[derive(Debug, Clone)]
pub struct Composition {
    pub(super) spec: TemplateSpec,
    pub(super) parts: Vec<Parts>,
    /// The `files/` overlay: rootfs-relative path → file and the template it came from.
    pub(super) files: BTreeMap<String, (TemplateFile, String)>,
}

/// What a file at the top of a template is.
enum Role {
    Manifest,
    UserData,
    NetworkConfig,
    Nspawn,
    DropIn,
    Tree,
    Docs,
    Keyring,
}

fn role(rel: &str, keyrings: &[String]) -> Option<Role> {
    Some(match rel {
        MANIFEST => Role::Manifest,
        "user-data" => Role::UserData,
        "network-config" => Role::NetworkConfig,
        "README" | "README.md" => Role::Docs,
        _ if rel.starts_with("files/") => Role::Tree,
        _ if keyrings.iter().any(|k| k == rel) => Role::Keyring,
        _ if rel.contains('/') => return None,
        _ if rel.ends_with(".nspawn") => Role::Nspawn,
        _ if rel.ends_with(".conf") => Role::DropIn,
        _ => return None,
    })
}

impl Composition {
    /// Loads `requested` from `library` and composes them.
    pub fn load(
        library: &Library,
        requested: &[String],
        sets: &[(String, String)],
    ) -> Result<Composition> {
        let layers = resolve(requested, &mut |name| library.load(name))?;
        Composition::new(requested, layers, sets)
    }

    /// Composes resolved layers; `sets` are `--set` overrides.
    pub fn new(
        requested: &[String],
        layers: Vec<Layer>,
        sets: &[(String, String)],
    ) -> Result<Composition> {
        let vars = resolve_vars(&layers, sets)?;
        let origins = var_origins(&layers, sets);
        let source = resolve_source(&layers)?;
        let images_server = resolve_images_server(&layers, &source)?;
        let enable = layers
            .iter()
            .filter_map(|l| l.manifest.enable)
            .next_back()
            .unwrap_or(false);
        let storage = layers.iter().filter_map(|l| l.manifest.storage).next_back();

        let mut parts = Vec::new();
        let mut files: BTreeMap<String, (TemplateFile, String)> = BTreeMap::new();
        for layer in &layers {
            parts.push(parse_layer(layer, &vars, &origins)?);
            overlay(&mut files, &layer.template)?;
        }
        let spec = TemplateSpec {
            name: requested.join("+"),
            templates: layers.iter().map(|l| l.template.name.clone()).collect(),
            content_hash: content_hash(&layers, &vars),
            source,
            images_server,
            vars,
            enable,
            storage,
        };
        let composition = Composition { spec, parts, files };
        // Merge once now so that conflicts surface before anything is pulled.
        composition.merge_static()?;
        Ok(composition)
    }

    pub fn spec(&self) -> &TemplateSpec {
        &self.spec
    }

    /// The generators the templates ask for, in order.
    pub fn generators(&self) -> Vec<Generator> {
        self.parts
            .iter()
            .flat_map(|p| p.generators.iter().map(|(g, _)| *g))
            .collect()
    }

    /// Every template's bake steps, in composition order (a base template's first).
    pub fn bake_steps(&self) -> Vec<BakeStep> {
        self.parts
            .iter()
            .flat_map(|p| p.bake.iter().cloned())
            .collect()
    }

    /// Whether rendering needs the host's NVIDIA file list.
    pub fn needs_nvidia(&self) -> bool {
        self.generators().contains(&Generator::Nvidia)
    }

    fn merge_static(&self) -> Result<()> {
        let mut user_data = None;
        let mut network = None;
        for p in &self.parts {
            if let Some(n) = &p.user_data {
                cloudinit::merge(&mut user_data, n.clone())?;
            }
            if let Some(n) = &p.network_config {
                cloudinit::merge(&mut network, n.clone())?;
            }
        }
        Ok(())
    }
}

fn resolve_vars(layers: &[Layer], sets: &[(String, String)]) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for layer in layers {
        for (name, (value, _)) in &layer.manifest.vars {
            vars.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in sets {
        vars::validate_var_name(name).map_err(|e| anyhow!("--set {name}: {e}"))?;
        vars::validate_value(name, value).map_err(|e| anyhow!("--set {name}: {e}"))?;
        if !vars.contains_key(name) {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            bail!(
                "--set {name}: no template declares a variable `{name}` (declared: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
        vars.insert(name.clone(), value.clone());
    }
    Ok(vars)
}

fn resolve_source(layers: &[Layer]) -> Result<SourceSpec> {
    let Some(layer) = layers.iter().rev().find(|l| l.manifest.source.is_some()) else {
        let names: Vec<&str> = layers.iter().map(|l| l.template.name.as_str()).collect();
        bail!(
            "none of the templates ({}) sets `source`: start from one that does, e.g. debian",
            names.join(", ")
        );
    };
    let decl = layer.manifest.source.as_ref().expect("found by is_some");
    let mut keyrings = Vec::new();
    for (path, line) in &decl.keyrings {
        if path.starts_with('/') {
            keyrings.push(Keyring::Host(path.into()));
            continue;
        }
        match layer.template.files.get(path).map(|f| &f.content) {
            Some(Content::Bytes(bytes)) => keyrings.push(Keyring::Template {
                label: format!("{}/{path}", layer.template.name),
                bytes: bytes.clone(),
            }),
            _ => bail!(
                "{}:{line}: keyring `{path}` is not a file of template `{}`",
                layer.template.display_path(MANIFEST),
                layer.template.name
            ),
        }
    }
    Ok(SourceSpec {
        source: decl.source.clone(),
        raw: decl.raw.clone(),
        from_template: layer.template.name.clone(),
        verify: decl.verify,
        checksum: decl.checksum,
        keyrings,
    })
}

/// The last `images_server` in composition order, like every other setting; it is about where
/// `images:` sources come from, so with any other source it would be silently ignored: an error.
fn resolve_images_server(layers: &[Layer], source: &SourceSpec) -> Result<Option<ServerDecl>> {
    let Some((layer, (url, line))) = layers
        .iter()
        .rev()
        .find_map(|l| l.manifest.images_server.as_ref().map(|s| (l, s)))
    else {
        return Ok(None);
    };
    let place = format!("{}:{line}", layer.template.display_path(MANIFEST));
    if !matches!(source.source, SourceRef::Images(_)) {
        bail!(
            "{place}: images_server is for images: sources, and the source (`{}`, from template `{}`) is not one",
            source.raw,
            source.from_template
        );
    }
    Ok(Some(ServerDecl {
        url: url.clone(),
        from_template: layer.template.name.clone(),
        place,
    }))
}

/// Where each variable's final value was set, as errors show it: `--set NAME=VALUE`, or the
/// `[vars]` line of the last template declaring it.
fn var_origins(layers: &[Layer], sets: &[(String, String)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for layer in layers {
        for (name, (_, line)) in &layer.manifest.vars {
            let at = layer.template.display_path(MANIFEST);
            out.insert(name.clone(), format!("variable {name}, {at}:{line}"));
        }
    }
    for (name, value) in sets {
        out.insert(name.clone(), format!("--set {name}={value}"));
    }
    out
}

/// For each assignment, the origins of the variables its (possibly continued) line refers to.
fn filled_by(
    raw: &str,
    assignments: &[ini::Assignment],
    origins: &BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    let lines: Vec<&str> = raw.lines().collect();
    let refs = vars::references(raw);
    assignments
        .iter()
        .map(|a| {
            // The lines the assignment spans: its first, then every continuation (`\`).
            let mut span = vec![a.line];
            let mut n = a.line;
            while lines
                .get(n - 1)
                .is_some_and(|l| l.trim_end().ends_with('\\'))
            {
                n += 1;
                span.push(n);
            }
            let mut out: Vec<String> = Vec::new();
            for (line, name) in &refs {
                if span.contains(line)
                    && let Some(o) = origins.get(name)
                    && !out.contains(o)
                {
                    out.push(o.clone());
                }
            }
            out
        })
        .collect()
}

fn parse_layer(
    layer: &Layer,
    vars: &BTreeMap<String, String>,
    origins: &BTreeMap<String, String>,
) -> Result<Parts> {
    let t = &layer.template;
    let keyrings: Vec<String> = layer
        .manifest
        .source
        .iter()
        .flat_map(|s| s.keyrings.iter().map(|(p, _)| p.clone()))
        .collect();
    let mut parts = Parts {
        name: t.name.clone(),
        ..Parts::default()
    };
    for rel in t.files.keys() {
        let Some(role) = role(rel, &keyrings) else {
            bail!(
                "{}: unexpected file in a template (expected template.toml, user-data, network-config, *.nspawn, *.conf, files/, README.md)",
                t.display_path(rel)
            );
        };
        let shown = t.display_path(rel);
        let label = format!("{}/{rel}", t.name);
        let text = || -> Result<String> {
            let raw = t.text(rel)?.unwrap_or_default();
            vars::substitute(raw, vars, &shown)
        };
        match role {
            Role::Manifest | Role::Docs | Role::Keyring | Role::Tree => {}
            Role::UserData => parts.user_data = cloudinit::parse_user_data(&text()?, &shown)?,
            Role::NetworkConfig => {
                parts.network_config = cloudinit::parse_network_config(&text()?, &shown)?
            }
            Role::Nspawn => {
                let assignments = ini::parse(&text()?, &shown)?;
                nspawn::validate(&assignments, &shown)?;
                let raw = t.text(rel)?.unwrap_or_default();
                parts.nspawn.push(NspawnFile {
                    filled_by: filled_by(raw, &assignments, origins),
                    shown,
                    assignments,
                });
            }
            Role::DropIn => {
                let body = text()?;
                dropin::validate(&body, &shown)?;
                parts.dropins.push((label, body));
            }
        }
    }
    for (generator, line) in &layer.manifest.generate {
        let place = format!("{}:{line}", t.display_path(MANIFEST));
        if *generator == Generator::ExtraBridges && !vars.contains_key(EXTRA_BRIDGES_VAR) {
            bail!(
                "{place}: generator `extra-bridges` reads the variable `{EXTRA_BRIDGES_VAR}`; declare it under [vars]"
            );
        }
        parts.generators.push((*generator, place));
    }
    // Not substituted: like everything in template.toml, a step means what it says.
    for (command, line) in &layer.manifest.bake {
        parts.bake.push(BakeStep {
            command: command.clone(),
            template: t.name.clone(),
            place: format!("{}:{line}", t.display_path(MANIFEST)),
        });
    }
    Ok(parts)
}

/// Lays `t`'s `files/` tree over what earlier templates put there; a later file replaces an
/// earlier one at the same path, and a file where another template has a directory (or the
/// other way round) is an error, since neither could be written without deleting the other.
fn overlay(files: &mut BTreeMap<String, (TemplateFile, String)>, t: &Template) -> Result<()> {
    for (rel, file) in &t.files {
        let Some(path) = rel.strip_prefix("files/") else {
            continue;
        };
        if !is_plain_relative(path) {
            bail!(
                "{}: not a plain path inside the rootfs",
                t.display_path(rel)
            );
        }
        let shown = t.display_path(rel);
        let mut ancestor = path;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if let Some((_, from)) = files.get(parent) {
                bail!(
                    "{shown}: {from} makes /{parent} a file, this template puts a directory there"
                );
            }
            ancestor = parent;
        }
        let below = format!("{path}/");
        if let Some((other, (_, from))) = files
            .range(below.clone()..)
            .next()
            .filter(|(k, _)| k.starts_with(&below))
        {
            bail!("{shown}: {from} puts /{other} below it, so /{path} must stay a directory");
        }
        files.insert(path.to_string(), (file.clone(), shown));
    }
    Ok(())
}

/// sha256 over everything composition reads: each template's name and files in order, then the
/// final variable values. Every field is length-prefixed so no two inputs hash alike by
/// shifting bytes between fields; origin (built-in or user dir) is not part of it.
fn content_hash(layers: &[Layer], vars: &BTreeMap<String, String>) -> crate::digest::Digest {
    let mut h = Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"sandboxes-template-v1");
    for layer in layers {
        field(b"template");
        field(layer.template.name.as_bytes());
        for (rel, file) in &layer.template.files {
            field(rel.as_bytes());
            field(&file.mode.to_le_bytes());
            match &file.content {
                Content::Bytes(b) => {
                    field(b"file");
                    field(b);
                }
                Content::Symlink(target) => {
                    field(b"symlink");
                    field(target.as_bytes());
                }
            }
        }
    }
    field(b"vars");
    for (k, v) in vars {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    h.finish()
}
