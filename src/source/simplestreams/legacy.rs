//! The legacy LXC index, `meta/1.0/index-system` (servers without simplestreams; the LXC
//! `download` template reads `index-system.7` first, then `index-system`).
//!
//! One image build per line, `distro;release;arch;variant;build;path`, where `path` is the
//! build's directory from the server root (`/images/debian/bookworm/amd64/default/<build>/`)
//! holding `rootfs.tar.xz` and `meta.tar.xz`. The index carries no digests: integrity comes
//! from the signed `SHA256SUMS` or the per-file `.asc` next to the tarballs.

use std::collections::{BTreeMap, BTreeSet};

use crate::source::arch::normalise_arch;

use super::alias::{Alias, ImageVersion};
use super::choose::{ChooseError, suggestions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyEntry {
    pub distro: String,
    pub release: String,
    /// As published (Debian names on the LXC servers); compare through `normalise_arch`.
    pub arch: String,
    pub variant: String,
    /// A validated [`ImageVersion`] (`YYYYMMDD_HH:MM`).
    pub build: String,
    /// The build's directory from the server root, always ending in `/`.
    pub path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("legacy image index line {line}: {reason}")]
pub struct LegacyIndexError {
    /// 1-based, as an editor shows it.
    pub line: usize,
    pub reason: String,
}

/// Parses the whole index. Blank lines are skipped (the file ends with a newline); anything
/// else that is not six non-empty fields with a valid build and a safe path is an error naming
/// the line, because a half-read index would silently hide images.
pub fn parse_legacy_index(text: &str) -> Result<Vec<LegacyEntry>, LegacyIndexError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| LegacyIndexError {
            line: n + 1,
            reason,
        };
        let fields: Vec<&str> = line.split(';').collect();
        let [distro, release, arch, variant, build, path] = fields.as_slice() else {
            return Err(err(format!(
                "expected 6 fields distro;release;arch;variant;build;path, found {} in {line:?}",
                fields.len()
            )));
        };
        let names = ["distro", "release", "arch", "variant", "build", "path"];
        let values = [distro, release, arch, variant, build, path];
        if let Some(i) = values.iter().position(|v| v.trim().is_empty()) {
            return Err(err(format!("field {} is empty in {line:?}", names[i])));
        }
        ImageVersion::parse(build).map_err(|e| err(e.to_string()))?;
        check_build_dir(path).map_err(|reason| err(format!("path {path:?} {reason}")))?;
        let path = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        entries.push(LegacyEntry {
            distro: distro.to_string(),
            release: release.to_string(),
            arch: arch.to_string(),
            variant: variant.to_string(),
            build: build.to_string(),
            path,
        });
    }
    Ok(entries)
}

/// The build directory is absolute from the server root here (unlike simplestreams paths), but
/// must not climb (`..`), name another host (`//host`) or carry URL syntax.
fn check_build_dir(path: &str) -> Result<(), &'static str> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err("does not start with '/'");
    };
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '?' | '#' | '%'))
    {
        return Err("contains a control character, '\\', '?', '#' or '%'");
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, '.' or '..' component");
    }
    Ok(())
}

/// What [`choose_legacy`] settled on. Paths are from the server root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyChoice {
    pub distro: String,
    pub release: String,
    pub variant: String,
    pub arch: String,
    pub build: String,
    /// `<path>rootfs.tar.xz`
    pub rootfs_path: String,
    /// `<path>meta.tar.xz`
    pub meta_path: String,
}

fn entry_matches(e: &LegacyEntry, alias: &str) -> bool {
    let (os, release, variant) = match alias.split('/').collect::<Vec<_>>().as_slice() {
        [os, release] => (*os, *release, "default"),
        [os, release, variant] => (*os, *release, *variant),
        _ => return false,
    };
    e.distro.eq_ignore_ascii_case(os)
        && e.release.eq_ignore_ascii_case(release)
        && e.variant.eq_ignore_ascii_case(variant)
}

/// Chooses from the legacy index with the os/release[/variant] rule (it has no alias lists):
/// the pinned build, or else the newest.
pub fn choose_legacy(
    entries: &[LegacyEntry],
    alias: &Alias,
    arch: &str,
) -> Result<LegacyChoice, ChooseError> {
    let arch = normalise_arch(arch);
    let matching: Vec<&LegacyEntry> = entries
        .iter()
        .filter(|e| entry_matches(e, &alias.alias))
        .collect();
    if matching.is_empty() {
        let names: BTreeSet<String> = entries.iter().flat_map(legacy_names).collect();
        return Err(ChooseError::NoSuchAlias {
            alias: alias.alias.clone(),
            suggestions: suggestions(&alias.alias, names),
        });
    }
    let mut for_arch: Vec<&LegacyEntry> = matching
        .iter()
        .copied()
        .filter(|e| normalise_arch(&e.arch) == arch)
        .collect();
    if for_arch.is_empty() {
        let available: BTreeSet<String> =
            matching.iter().map(|e| normalise_arch(&e.arch)).collect();
        return Err(ChooseError::NoBuildForArch {
            alias: alias.alias.clone(),
            arch,
            available: available.into_iter().collect(),
        });
    }
    // Builds were validated at parse time, so string order is chronological order.
    for_arch.sort_by(|a, b| b.build.cmp(&a.build));
    let chosen = match &alias.version {
        Some(pin) => for_arch.iter().find(|e| &e.build == pin).ok_or_else(|| {
            ChooseError::VersionNotFound {
                alias: alias.alias.clone(),
                arch: arch.clone(),
                version: pin.clone(),
                available: for_arch.iter().take(8).map(|e| e.build.clone()).collect(),
            }
        })?,
        None => for_arch[0],
    };
    Ok(LegacyChoice {
        distro: chosen.distro.clone(),
        release: chosen.release.clone(),
        variant: chosen.variant.clone(),
        arch,
        build: chosen.build.clone(),
        rootfs_path: format!("{}rootfs.tar.xz", chosen.path),
        meta_path: format!("{}meta.tar.xz", chosen.path),
    })
}

/// The aliases a legacy entry answers to: `distro/release/variant`, and `distro/release` for the
/// default variant.
pub(super) fn legacy_names(e: &LegacyEntry) -> Vec<String> {
    let base = format!("{}/{}", e.distro, e.release);
    let full = format!("{base}/{}", e.variant);
    if e.variant == "default" {
        vec![base, full]
    } else {
        vec![full]
    }
}

/// Latest build per (distro, release, variant, arch), for listings.
pub(super) fn newest_builds(
    entries: &[LegacyEntry],
) -> BTreeMap<(String, String, String, String), &LegacyEntry> {
    let mut newest: BTreeMap<(String, String, String, String), &LegacyEntry> = BTreeMap::new();
    for e in entries {
        let key = (
            e.distro.clone(),
            e.release.clone(),
            e.variant.clone(),
            normalise_arch(&e.arch),
        );
        let slot = newest.entry(key).or_insert(e);
        if e.build > slot.build {
            *slot = e;
        }
    }
    newest
}
