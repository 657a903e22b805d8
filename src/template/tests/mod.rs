//! Composition tests over whole templates: in-memory ones built here, user directories in temp
//! dirs, and every shipped template.

mod bake;
mod compose;
mod nspawn_rules;
mod render;
mod shipped;
mod yaml;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::Result;

use super::compose::{Composition, resolve};
use super::library::{Content, Origin, Template, TemplateFile};
use super::plan::{BuildPlan, RenderInputs};

/// A template held in memory, as if read from `/t/NAME/`.
pub fn tpl(name: &str, files: &[(&str, &str)]) -> Template {
    let mut map: BTreeMap<String, TemplateFile> = files
        .iter()
        .map(|(p, c)| {
            let file = TemplateFile {
                mode: 0o644,
                content: Content::Bytes(c.as_bytes().to_vec()),
            };
            (p.to_string(), file)
        })
        .collect();
    map.entry("template.toml".into()).or_insert(TemplateFile {
        mode: 0o644,
        content: Content::Bytes(Vec::new()),
    });
    Template {
        name: name.into(),
        origin: Origin::Dir(PathBuf::from(format!("/t/{name}"))),
        files: map,
    }
}

/// A set of in-memory templates to compose from.
#[derive(Default, Clone)]
pub struct Set(pub HashMap<String, Template>);

impl Set {
    pub fn with(mut self, t: Template) -> Set {
        self.0.insert(t.name.clone(), t);
        self
    }

    pub fn compose(&self, names: &[&str], sets: &[(&str, &str)]) -> Result<Composition> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let sets: Vec<(String, String)> = sets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let layers = resolve(&names, &mut |n| {
            self.0
                .get(n)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no template named `{n}`"))
        })?;
        Composition::new(&names, layers, &sets)
    }

    pub fn render(&self, names: &[&str], sets: &[(&str, &str)]) -> Result<BuildPlan> {
        self.compose(names, sets)?.render(&inputs("web"))
    }
}

/// A base template with a source, which every composition needs.
pub fn base() -> Template {
    tpl(
        "base",
        &[(
            "template.toml",
            "source = \"images:debian/bookworm/cloud\"\n",
        )],
    )
}

pub fn inputs(machine: &str) -> RenderInputs {
    RenderInputs {
        machine: machine.into(),
        instance_id: "iid-1".into(),
        nvidia: None,
        omit: Vec::new(),
    }
}

/// The error chain as one line, for matching.
pub fn chain(e: anyhow::Error) -> String {
    format!("{e:#}")
}
