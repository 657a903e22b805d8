//! `sandbox templates`: the templates a build can use, where each comes from.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Settings;
use crate::template::{Library, TemplateInfo};

#[derive(Args, Debug)]
pub struct TemplatesArgs {}

/// A plain table: name, origin, description (problems instead of a description when a
/// template does not parse).
pub fn table(list: &[TemplateInfo]) -> String {
    let name_w = list.iter().map(|t| t.name.len()).max().unwrap_or(0).max(4);
    let origin = |t: &TemplateInfo| {
        if t.overrides_builtin {
            format!("{} (overrides built-in)", t.origin)
        } else {
            t.origin.clone()
        }
    };
    let origin_w = list
        .iter()
        .map(|t| origin(t).len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("{:name_w$}  {:origin_w$}  DESCRIPTION\n", "NAME", "ORIGIN");
    for t in list {
        let text = match &t.problem {
            Some(p) => format!("BROKEN: {p}"),
            None => t.description.clone(),
        };
        out.push_str(&format!(
            "{:name_w$}  {:origin_w$}  {text}\n",
            t.name,
            origin(t)
        ));
    }
    out
}

pub fn run(settings: &Settings, _args: TemplatesArgs) -> Result<ExitCode> {
    let list = Library::standard(&settings.paths.sandboxes_dir).list()?;
    if settings.json {
        super::print_json(&list)?;
    } else {
        print!("{}", table(&list));
    }
    Ok(ExitCode::SUCCESS)
}
