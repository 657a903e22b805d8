//! `sandbox templates`: the templates a build can use, where each comes from;
//! `sandbox templates show NAME`: one template's files, shipped ones included, so that a user
//! with only the binary can read and copy them.

use std::process::ExitCode;

use anyhow::Result;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::Settings;
use crate::template::library::{Content, Origin, Template};
use crate::template::{Library, TemplateInfo};

#[derive(Args, Debug)]
pub struct TemplatesArgs {
    #[command(subcommand)]
    pub command: Option<TemplatesCommand>,
}

#[derive(Subcommand, Debug)]
pub enum TemplatesCommand {
    /// Print a template's files (a built-in one as shipped in the binary).
    Show {
        /// The template, as `sandbox build` finds it (a user template over a built-in one).
        name: String,
    },
}

/// `templates show --json`: the template, where it is, and each file.
#[derive(Serialize)]
struct ShownTemplate {
    name: String,
    /// `built-in` or the template's directory.
    origin: String,
    files: Vec<ShownFile>,
}

#[derive(Serialize)]
struct ShownFile {
    /// Relative to the template, `/`-separated.
    path: String,
    /// Octal permission bits, `0644`.
    mode: String,
    /// UTF-8 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    /// Any other bytes (a binary keyring).
    #[serde(skip_serializing_if = "Option::is_none")]
    content_base64: Option<String>,
    /// A symlink under `files/`: its target.
    #[serde(skip_serializing_if = "Option::is_none")]
    symlink: Option<String>,
}

fn shown(t: &Template) -> ShownTemplate {
    let files = t
        .files
        .iter()
        .map(|(path, f)| {
            let (content, content_base64, symlink) = match &f.content {
                Content::Symlink(target) => (None, None, Some(target.clone())),
                Content::Bytes(b) => match std::str::from_utf8(b) {
                    Ok(text) => (Some(text.to_string()), None, None),
                    Err(_) => (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(b)),
                        None,
                    ),
                },
            };
            ShownFile {
                path: path.clone(),
                mode: format!("{:04o}", f.mode),
                content,
                content_base64,
                symlink,
            }
        })
        .collect();
    ShownTemplate {
        name: t.name.clone(),
        origin: match &t.origin {
            Origin::Embedded => "built-in".to_string(),
            Origin::Dir(d) => d.display().to_string(),
        },
        files,
    }
}

/// For people: a heading per file (path, mode), then its text. Pure.
fn show_text(t: &ShownTemplate) -> String {
    let mut out = format!("# template {} ({})\n", t.name, t.origin);
    for f in &t.files {
        out.push('\n');
        match (&f.content, &f.symlink) {
            (_, Some(target)) => {
                out.push_str(&format!("==> {}/{} -> {target} <==\n", t.name, f.path));
            }
            (Some(text), _) => {
                out.push_str(&format!(
                    "==> {}/{} (mode {}) <==\n",
                    t.name, f.path, f.mode
                ));
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
            (None, None) => out.push_str(&format!(
                "==> {}/{} (mode {}) <==\n(binary; --json gives it in base64)\n",
                t.name, f.path, f.mode
            )),
        }
    }
    out
}

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

pub fn run(settings: &Settings, args: TemplatesArgs) -> Result<ExitCode> {
    if let Some(TemplatesCommand::Show { name }) = &args.command {
        let t = shown(&Library::standard(&settings.paths.sandboxes_dir).load(name)?);
        if settings.json {
            super::print_json(&t)?;
        } else {
            print!("{}", show_text(&t));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let list = Library::standard(&settings.paths.sandboxes_dir).list()?;
    if settings.json {
        super::print_json(&list)?;
    } else {
        print!("{}", table(&list));
    }
    Ok(ExitCode::SUCCESS)
}
