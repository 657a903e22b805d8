//! `sandbox images --remote [FILTER]`: what a server offers, one row per image and arch.

use crate::source::arch::normalise_arch;

use super::legacy::{LegacyEntry, newest_builds};
use super::products::Products;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct RemoteImage {
    /// The name to pull it by: the shortest published alias, or `os/release/variant`.
    pub alias: String,
    pub os: String,
    pub release: String,
    pub variant: String,
    /// Debian spelling.
    pub arch: String,
    /// The newest build that has a rootfs tarball (the one `pull` would choose).
    pub newest_version: String,
    /// Bytes of that build's rootfs tarball; 0 when the server does not say (legacy index).
    pub size: u64,
}

/// Images from a products file, sorted by alias, then arch. Products with no build holding a
/// rootfs tarball are left out: nothing here could pull them. `filter` is a case-insensitive
/// substring of any alias, the os or the release; `arch` takes any spelling.
pub fn list_remote(
    products: &Products,
    arch: Option<&str>,
    filter: Option<&str>,
) -> Vec<RemoteImage> {
    let arch = arch.map(normalise_arch);
    let filter = filter.map(str::to_ascii_lowercase);
    let mut out = Vec::new();
    for p in products.products.values() {
        let p_arch = normalise_arch(&p.arch);
        if arch.as_ref().is_some_and(|a| *a != p_arch) {
            continue;
        }
        if let Some(f) = &filter {
            let mut fields = p
                .aliases
                .iter()
                .chain([&p.os, &p.release])
                .chain(p.release_title.as_ref());
            if !fields.any(|s| s.to_ascii_lowercase().contains(f.as_str())) {
                continue;
            }
        }
        let Some((version, build)) = p.rootfs_versions().first().copied() else {
            continue;
        };
        let size = build.rootfs().and_then(|(_, item)| item.size).unwrap_or(0);
        let alias = p
            .aliases
            .iter()
            .min_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
            .cloned()
            .unwrap_or_else(|| {
                format!("{}/{}/{}", p.os.to_ascii_lowercase(), p.release, p.variant)
            });
        out.push(RemoteImage {
            alias,
            os: p.os.clone(),
            release: p.release.clone(),
            variant: p.variant.clone(),
            arch: p_arch,
            newest_version: version.to_string(),
            size,
        });
    }
    out.sort();
    out
}

/// Images from the legacy index, newest build per image and arch, sorted like [`list_remote`].
/// The alias is `distro/release` for the default variant, `distro/release/variant` otherwise.
pub fn list_remote_legacy(
    entries: &[LegacyEntry],
    arch: Option<&str>,
    filter: Option<&str>,
) -> Vec<RemoteImage> {
    let arch = arch.map(normalise_arch);
    let filter = filter.map(str::to_ascii_lowercase);
    let mut out: Vec<RemoteImage> = newest_builds(entries)
        .into_iter()
        .filter(|((_, _, _, a), _)| arch.as_ref().is_none_or(|want| want == a))
        .map(|((distro, release, variant, arch), e)| {
            let alias = if variant == "default" {
                format!("{distro}/{release}")
            } else {
                format!("{distro}/{release}/{variant}")
            };
            RemoteImage {
                alias,
                os: distro,
                release,
                variant,
                arch,
                newest_version: e.build.clone(),
                size: 0,
            }
        })
        .filter(|img| {
            filter.as_ref().is_none_or(|f| {
                [&img.alias, &img.os, &img.release]
                    .iter()
                    .any(|s| s.to_ascii_lowercase().contains(f.as_str()))
            })
        })
        .collect();
    out.sort();
    out
}
