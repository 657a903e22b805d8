//! Choosing one build of one product for an alias and an architecture.
//!
//! An alias matches a product in one of two ways, tried in this order of preference:
//! 1. exactly (case-sensitive) one of the product's published `aliases`;
//! 2. its fields: `os/release` means variant `default`, `os/release/variant` names the variant;
//!    `release` may be the product's `release`, `release_title` (`12` for bookworm in some
//!    generations) or Ubuntu's numeric `version`. This comparison ignores ASCII case, because
//!    images.linuxcontainers.org publishes `os: "Debian"` while every alias says `debian`.

use std::collections::BTreeSet;

use crate::source::arch::normalise_arch;

use super::alias::Alias;
use super::products::{InvalidItem, Item, Product, Products};

/// How many suggestions or available versions an error lists before it stops.
const LIST_LIMIT: usize = 8;

/// What [`choose`] settled on: everything needed to download, verify and describe the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChoice {
    /// Product id, e.g. `debian:bookworm:amd64:cloud`.
    pub product: String,
    pub os: String,
    pub release: String,
    pub variant: String,
    /// Debian spelling, whatever the server wrote.
    pub arch: String,
    pub version: String,
    pub rootfs: Item,
    /// The LXD/Incus metadata tarball, when the build has one. nspawn does not need it, but its
    /// `combined_rootxz_sha256` is the fingerprint LXD and Incus show for the same image.
    pub metadata: Option<Item>,
    pub aliases: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChooseError {
    #[error("no image matches alias {alias:?}{}", suggest(.suggestions))]
    NoSuchAlias {
        alias: String,
        suggestions: Vec<String>,
    },
    #[error(
        "image {alias:?} has no build for architecture {arch} (available: {})",
        .available.join(", ")
    )]
    NoBuildForArch {
        alias: String,
        arch: String,
        available: Vec<String>,
    },
    #[error(
        "image {alias:?} ({arch}) has no version {version} (available, newest first: {})",
        list_or_none(.available)
    )]
    VersionNotFound {
        alias: String,
        arch: String,
        version: String,
        available: Vec<String>,
    },
    #[error(
        "no rootfs tarball (root.tar.xz) in product {product}{}",
        .version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default()
    )]
    NoRootfs {
        product: String,
        version: Option<String>,
    },
    #[error(
        "alias {alias:?} ({arch}) matches several products equally well: {}",
        .products.join(", ")
    )]
    Ambiguous {
        alias: String,
        arch: String,
        products: Vec<String>,
    },
    #[error("product {product} version {version} item {key:?}: {source}")]
    InvalidItem {
        product: String,
        version: String,
        key: String,
        #[source]
        source: InvalidItem,
    },
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; close ones: {}", s.join(", "))
    }
}

pub(super) fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// How well an alias matched a product; lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum MatchKind {
    PublishedAlias,
    Fields,
}

fn match_kind(product: &Product, alias: &str) -> Option<MatchKind> {
    if product.aliases.iter().any(|a| a == alias) {
        return Some(MatchKind::PublishedAlias);
    }
    let fields_match = match alias.split('/').collect::<Vec<_>>().as_slice() {
        [os, release] => fields_match(product, os, release, "default"),
        [os, release, variant] => fields_match(product, os, release, variant),
        _ => false,
    };
    fields_match.then_some(MatchKind::Fields)
}

/// The os/release/variant rule, shared with the legacy index (whose lines have the same fields).
pub(super) fn fields_match(product: &Product, os: &str, release: &str, variant: &str) -> bool {
    let release_matches = [
        Some(&product.release),
        product.release_title.as_ref(),
        product.version.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|r| r.eq_ignore_ascii_case(release));
    product.os.eq_ignore_ascii_case(os)
        && release_matches
        && product.variant.eq_ignore_ascii_case(variant)
}

/// Chooses the build to pull: the product matching `alias` for `arch` (any spelling), and in it
/// the pinned version or else the newest version that has a rootfs tarball. A newer build that
/// lacks one is being published or was broken, and is skipped rather than failing the pull.
pub fn choose(products: &Products, alias: &Alias, arch: &str) -> Result<ImageChoice, ChooseError> {
    let arch = normalise_arch(arch);
    let matching: Vec<(&String, &Product, MatchKind)> = products
        .products
        .iter()
        .filter_map(|(id, p)| match_kind(p, &alias.alias).map(|k| (id, p, k)))
        .collect();
    if matching.is_empty() {
        return Err(ChooseError::NoSuchAlias {
            alias: alias.alias.clone(),
            suggestions: suggestions(&alias.alias, candidate_names(products)),
        });
    }
    let for_arch: Vec<_> = matching
        .iter()
        .filter(|(_, p, _)| normalise_arch(&p.arch) == arch)
        .collect();
    let Some(best) = for_arch.iter().map(|(_, _, k)| *k).min() else {
        let available: BTreeSet<String> = matching
            .iter()
            .map(|(_, p, _)| normalise_arch(&p.arch))
            .collect();
        return Err(ChooseError::NoBuildForArch {
            alias: alias.alias.clone(),
            arch,
            available: available.into_iter().collect(),
        });
    };
    let (id, product) = match for_arch
        .iter()
        .filter(|(_, _, k)| *k == best)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [(id, p, _)] => (id.as_str(), *p),
        many => {
            return Err(ChooseError::Ambiguous {
                alias: alias.alias.clone(),
                arch,
                products: many.iter().map(|(id, _, _)| id.to_string()).collect(),
            });
        }
    };

    let (version, build) = match &alias.version {
        Some(pin) => {
            let Some(build) = product.versions.get(pin) else {
                return Err(ChooseError::VersionNotFound {
                    alias: alias.alias.clone(),
                    arch,
                    version: pin.clone(),
                    available: product
                        .rootfs_versions()
                        .iter()
                        .take(LIST_LIMIT)
                        .map(|(v, _)| v.to_string())
                        .collect(),
                });
            };
            (pin.as_str(), build)
        }
        None => match product.rootfs_versions().first() {
            Some((v, build)) => (*v, *build),
            None => {
                return Err(ChooseError::NoRootfs {
                    product: id.to_string(),
                    version: None,
                });
            }
        },
    };
    let invalid = |key: &str| {
        let (product, version, key) = (id.to_string(), version.to_string(), key.to_string());
        move |source| ChooseError::InvalidItem {
            product,
            version,
            key,
            source,
        }
    };
    let Some((rootfs_key, rootfs)) = build.rootfs() else {
        return Err(ChooseError::NoRootfs {
            product: id.to_string(),
            version: Some(version.to_string()),
        });
    };
    let rootfs = rootfs.to_item(rootfs_key).map_err(invalid(rootfs_key))?;
    let metadata = match build.metadata() {
        Some((key, item)) => Some(item.to_item(key).map_err(invalid(key))?),
        None => None,
    };
    Ok(ImageChoice {
        product: id.to_string(),
        os: product.os.clone(),
        release: product.release.clone(),
        variant: product.variant.clone(),
        arch,
        version: version.to_string(),
        rootfs,
        metadata,
        aliases: product.aliases.clone(),
    })
}

/// Every name a user could have meant: published aliases and `os/release[/variant]`.
fn candidate_names(products: &Products) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for p in products.products.values() {
        names.extend(p.aliases.iter().cloned());
        if !p.os.is_empty() && !p.release.is_empty() {
            let base = format!("{}/{}", p.os.to_ascii_lowercase(), p.release);
            names.insert(format!("{base}/{}", p.variant));
            if p.variant == "default" {
                names.insert(base);
            }
        }
    }
    names
}

/// The few candidates nearest to what was typed: same distribution first, then by edit
/// distance, so `debian/bokworm` suggests `debian/bookworm` before `devuan/beowulf`.
pub(super) fn suggestions(typed: &str, candidates: BTreeSet<String>) -> Vec<String> {
    let os = |s: &str| s.split('/').next().unwrap_or("").to_ascii_lowercase();
    let typed_os = os(typed);
    let mut ranked: Vec<(bool, usize, String)> = candidates
        .into_iter()
        .map(|c| (os(&c) != typed_os, edit_distance(typed, &c), c))
        .collect();
    ranked.sort();
    ranked.into_iter().take(5).map(|(_, _, c)| c).collect()
}

/// Levenshtein distance over chars; inputs are short aliases, so O(n·m) is nothing.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        let table = [
            ("", "", 0),
            ("abc", "", 3),
            ("", "ab", 2),
            ("kitten", "sitting", 3),
            ("bookworm", "bokworm", 1),
        ];
        for (a, b, d) in table {
            assert_eq!(edit_distance(a, b), d, "{a:?} {b:?}");
            assert_eq!(edit_distance(b, a), d, "{b:?} {a:?}");
        }
    }

    #[test]
    fn suggestions_prefer_same_os_then_distance() {
        let candidates: BTreeSet<String> = [
            "devuan/beowulf",
            "debian/bookworm",
            "debian/bullseye",
            "alpine/3.17",
            "debian/bookworm/cloud",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let got = suggestions("debian/bokworm", candidates);
        // devuan/beowulf is nearer by edit distance than debian/bookworm/cloud, but another os.
        assert_eq!(
            got,
            [
                "debian/bookworm",
                "debian/bookworm/cloud",
                "debian/bullseye",
                "devuan/beowulf",
                "alpine/3.17"
            ]
        );
        let few: BTreeSet<String> = ["a/b".to_string()].into();
        assert_eq!(suggestions("x/y", few), ["a/b"]);
    }
}
