//! `sandbox ls`: every sandbox in the machines dir and every state record, with its template,
//! base image, verification and whether it runs.
//!
//! A machine that was only pulled has no state record: it is listed with `-` for what only a
//! record knows. A record whose rootfs is gone is listed too (`present: false`), so `rm` can
//! be found for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Settings;
use crate::cache::Verification;
use crate::machine::host::{self, SystemHost};
use crate::machine::name;
use crate::machine::state::{self, RecordView};
use crate::paths::HostPaths;

#[derive(Args, Debug)]
pub struct LsArgs {}

/// One line of `sandbox ls`; the `--json` output is an array of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxRow {
    pub name: String,
    pub path: PathBuf,
    /// The rootfs directory exists.
    pub present: bool,
    pub template: Option<String>,
    /// What it was made from: the base image's source.
    pub source: Option<String>,
    /// As `pull --json` and the state record have it: `{"mode", "key_fingerprint", …}`.
    pub verification: Option<Verification>,
    pub digest: Option<String>,
    pub version: Option<String>,
    pub created_at: Option<String>,
    /// `None` when machinectl could not tell.
    pub running: Option<bool>,
    /// `machines.target.wants/systemd-nspawn@NAME.service` exists (starts at boot).
    pub enabled: bool,
    /// How the rootfs was made: `copy`, `reflink`, `btrfs` or `zfs` (`--storage`).
    pub storage: Option<String>,
    /// The stored image (`<sandboxes_dir>/store/KEY`) whose blocks it shares.
    pub stored_image: Option<String>,
}

pub fn run(settings: &Settings, _args: LsArgs) -> Result<ExitCode> {
    let running = host::running_machines(&SystemHost::for_paths(&settings.paths));
    let rows = collect(&settings.paths, running.as_ref())?;
    if settings.json {
        super::print_json(&rows)?;
    } else {
        print!("{}", render_table(&rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the machines dir and the state records.
pub fn collect(paths: &HostPaths, running: Option<&BTreeSet<String>>) -> Result<Vec<SandboxRow>> {
    let mut names = BTreeSet::new();
    names.extend(dir_names(&paths.machines_dir, |p, n| {
        // Staging trees (`.#NAME…`) and anything that is not a machine directory are skipped.
        !n.starts_with(".#") && p.is_dir() && name::validate(n).is_ok()
    })?);
    names.extend(
        dir_names(&state::state_dir(&paths.sandboxes_dir), |_, n| {
            n.ends_with(".json")
        })?
        .into_iter()
        .map(|n| n.trim_end_matches(".json").to_string())
        .filter(|n| name::validate(n).is_ok()),
    );
    let wants = paths.host("/etc/systemd/system/machines.target.wants");
    let mut rows = Vec::new();
    for n in names {
        let record = state::read_view(&paths.sandboxes_dir, &n).unwrap_or_else(|e| {
            tracing::warn!("{e:#}");
            None
        });
        let path = paths.machines_dir.join(&n);
        let facts = Facts {
            present: path.is_dir(),
            running: running.map(|r| r.contains(&n)),
            enabled: fs_err::symlink_metadata(wants.join(format!("systemd-nspawn@{n}.service")))
                .is_ok(),
        };
        rows.push(row(&n, path, record.as_ref(), facts));
    }
    Ok(rows)
}

/// What the host says about one sandbox.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub present: bool,
    pub running: Option<bool>,
    pub enabled: bool,
}

/// A row from a name and its record (read leniently: see `RecordView`); pure.
pub fn row(name: &str, path: PathBuf, record: Option<&RecordView>, facts: Facts) -> SandboxRow {
    SandboxRow {
        name: name.to_string(),
        path,
        present: facts.present,
        template: record.and_then(RecordView::template_shown),
        source: record.and_then(|r| r.source.clone()),
        verification: record.and_then(|r| r.verification.clone()),
        digest: record.and_then(|r| r.digest.clone()),
        version: record.and_then(|r| r.version.clone()),
        created_at: record.and_then(|r| r.created_at.clone()),
        running: facts.running,
        enabled: facts.enabled,
        storage: record.and_then(|r| r.storage.clone()),
        stored_image: record.and_then(|r| r.stored_image.clone()),
    }
}

/// `signature (0123…CDEF)`, `checksum`, `no`: the mode, with the key's last 16 digits.
fn verification_text(v: &Verification) -> String {
    match v.key_fingerprint.as_deref() {
        Some(fp) if fp.len() > 16 => format!("{} ({})", v.mode, &fp[fp.len() - 16..]),
        Some(fp) => format!("{} ({fp})", v.mode),
        None => v.mode.to_string(),
    }
}

/// The table people read; `-` for what is not known.
pub fn render_table(rows: &[SandboxRow]) -> String {
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let mut table: Vec<[String; 8]> = vec![[
        "NAME".into(),
        "TEMPLATE".into(),
        "BASE".into(),
        "VERIFICATION".into(),
        "RUNNING".into(),
        "ENABLED".into(),
        "STORAGE".into(),
        "SHARES".into(),
    ]];
    for r in rows {
        let running = match r.running {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        let name = if r.present {
            r.name.clone()
        } else {
            format!("{} (no rootfs)", r.name)
        };
        table.push([
            name,
            dash(&r.template),
            dash(&r.source),
            dash(&r.verification.as_ref().map(verification_text)),
            running.into(),
            if r.enabled { "yes" } else { "no" }.into(),
            dash(&r.storage),
            // The first 12 digits name a stored image well enough to tell them apart.
            dash(
                &r.stored_image
                    .as_ref()
                    .map(|k| k.chars().take(12).collect()),
            ),
        ]);
    }
    let mut widths = [0usize; 8];
    for line in &table {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in &table {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Names of the entries of `dir` that `keep` accepts; empty when `dir` does not exist.
fn dir_names(dir: &Path, keep: impl Fn(&Path, &str) -> bool) -> Result<Vec<String>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if keep(&entry.path(), &name) {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(v: serde_json::Value) -> RecordView {
        serde_json::from_value(v).unwrap()
    }

    const FACTS: Facts = Facts {
        present: true,
        running: Some(true),
        enabled: false,
    };

    #[test]
    fn rows_take_what_the_record_has_in_either_shape() {
        let record = json!({
            "name": "web", "template": "debian-web", "source": "images:debian/bookworm",
            "verification": {"mode": "signature", "key_fingerprint": "E7FB0CAEC8173D669066514CBAEFF88C22F6E216"},
            "digest": "sha256:ab", "version": "20240601_05:24", "created_at": "2026-01-01T00:00:00Z",
            "unknown": 1
        });
        let r = row("web", "/m/web".into(), Some(&view(record)), FACTS);
        assert_eq!(r.template.as_deref(), Some("debian-web"));
        assert_eq!(r.source.as_deref(), Some("images:debian/bookworm"));
        assert_eq!(
            r.verification.as_ref().map(verification_text).as_deref(),
            Some("signature (BAEFF88C22F6E216)")
        );
        let shown = serde_json::to_value(&r).unwrap();
        assert_eq!(shown["verification"]["mode"], "signature");
        assert_eq!(
            shown["verification"]["key_fingerprint"],
            "E7FB0CAEC8173D669066514CBAEFF88C22F6E216"
        );
        assert_eq!(r.version.as_deref(), Some("20240601_05:24"));

        let other = json!({"templates": ["a", "b"], "source": {"reference": "https://x/y.tar.xz"},
                           "verification": "checksum", "template": null});
        let r = row("x", "/m/x".into(), Some(&view(other)), FACTS);
        assert_eq!(r.template.as_deref(), Some("a,b"));
        assert_eq!(r.source.as_deref(), Some("https://x/y.tar.xz"));
        assert_eq!(
            r.verification.as_ref().map(verification_text).as_deref(),
            Some("checksum")
        );

        let pulled = row("p", "/m/p".into(), None, FACTS);
        assert_eq!((pulled.template, pulled.source), (None, None));
    }

    #[test]
    fn table_aligns_and_dashes_the_unknown() {
        let rows = vec![
            row("a", "/m/a".into(), None, FACTS),
            row(
                "longer-name",
                "/m/l".into(),
                Some(&view(json!({"template": "t"}))),
                Facts {
                    present: false,
                    running: None,
                    enabled: true,
                },
            ),
        ];
        let table = render_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        // Columns line up: every cell of a column starts where its header does.
        let template_col = lines[0].find("TEMPLATE").unwrap();
        assert_eq!(lines[1].find('-'), Some(template_col), "{table}");
        assert_eq!(
            lines[2].find(" t ").map(|i| i + 1),
            Some(template_col),
            "{table}"
        );
        let running_col = lines[0].find("RUNNING").unwrap();
        assert_eq!(
            &lines[1][running_col..],
            "yes      no       -        -",
            "{table}"
        );
        assert_eq!(
            &lines[2][running_col..],
            "?        yes      -        -",
            "{table}"
        );
        assert!(lines[2].starts_with("longer-name (no rootfs)"), "{table}");
    }
}
