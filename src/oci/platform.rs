//! Platforms: `os/arch[/variant]` as OCI indexes and `--platform` spell them, in Go's
//! architecture names (amd64, arm64, arm, 386, ppc64le, s390x, riscv64), and the choice of
//! one manifest from an index.
//!
//! Names from elsewhere (`x86_64`, `aarch64`, Debian's `armhf`) are normalised first, as
//! containerd does: `arm64` and `arm64/v8` are the same platform (v8 is the only arm64
//! baseline, so the variant is dropped), `arm` without a variant is `arm/v7`, `amd64/v1` is
//! `amd64`. An `arm/v7` host also runs `arm/v6` and `arm/v5` images, preferred in that order
//! after an exact match.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The `platform` object of an index entry (and the platform fields of an image config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Vec<String>>,
}

/// A normalised `os/arch[/variant]`: what the user wants, or what an image is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform `{0}` is not of the form os/arch[/variant] (e.g. linux/arm64, linux/arm/v7)")]
pub struct PlatformParseError(String);

impl PlatformSpec {
    /// Normalises the three parts (see the module documentation).
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> PlatformSpec {
        let os = os.trim().to_ascii_lowercase();
        let arch = architecture.trim().to_ascii_lowercase();
        let variant = variant
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        let (architecture, variant) = normalise_arch(&arch, variant);
        PlatformSpec {
            os,
            architecture,
            variant,
        }
    }

    /// Parses `os/arch[/variant]` as given to `--platform`.
    pub fn parse(s: &str) -> Result<PlatformSpec, PlatformParseError> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts.as_slice() {
            [os, arch] if [os, arch].iter().all(|p| valid(p)) => {
                Ok(PlatformSpec::new(os, arch, None))
            }
            [os, arch, variant] if [os, arch, variant].iter().all(|p| valid(p)) => {
                Ok(PlatformSpec::new(os, arch, Some(variant)))
            }
            _ => Err(PlatformParseError(s.to_string())),
        }
    }

    /// The platform this binary runs on (see [`PlatformSpec::of_rust`]).
    pub fn host() -> PlatformSpec {
        PlatformSpec::of_rust(std::env::consts::OS, std::env::consts::ARCH)
    }

    /// The platform for Rust's `std::env::consts::{OS, ARCH}`. A 32-bit ARM binary is taken as
    /// armv7 (the hard-float target this project ships for).
    pub fn of_rust(os: &str, arch: &str) -> PlatformSpec {
        let (arch, variant) = match arch {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            other => (other, None),
        };
        PlatformSpec::new(os, arch, variant)
    }

    /// The platform an index entry or a config names.
    pub fn of(platform: &Platform) -> PlatformSpec {
        PlatformSpec::new(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
    }

    /// How well an image for `other` runs here: `Some(0)` for the same platform, higher for
    /// compatible older ARM variants, `None` when it does not run.
    pub fn preference(&self, other: &PlatformSpec) -> Option<u8> {
        if self.os != other.os || self.architecture != other.architecture {
            return None;
        }
        if self.variant == other.variant {
            return Some(0);
        }
        if self.architecture != "arm" {
            return None;
        }
        let level = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse::<u8>().ok())
        };
        match (level(&self.variant), level(&other.variant)) {
            (Some(mine), Some(theirs)) if theirs < mine => Some(mine - theirs),
            _ => None,
        }
    }
}

impl fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Go's name for an architecture (lower-cased input), with its normalised variant.
fn normalise_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let (arch, variant) = match (arch, variant.as_deref()) {
        ("x86_64" | "x86-64" | "amd64", Some("v1")) => ("amd64", None),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", Some("8" | "v8" | "v8.0")) => ("arm64", None),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", Some("v7")),
        ("armel", _) => ("arm", Some("v6")),
        ("arm" | "armv7" | "armv7l", None | Some("7" | "v7")) => ("arm", Some("v7")),
        ("arm", Some(n @ ("5" | "6" | "8"))) => {
            return ("arm".into(), Some(format!("v{n}")));
        }
        ("armv6" | "armv6l", _) => ("arm", Some("v6")),
        ("armv5" | "armv5tel", _) => ("arm", Some("v5")),
        ("i386" | "i486" | "i586" | "i686" | "x86" | "386", _) => ("386", None),
        ("ppc64el" | "ppc64le" | "powerpc64le", v) => ("ppc64le", v),
        ("loongarch64" | "loong64", v) => ("loong64", v),
        (other, v) => (other, v),
    };
    (arch.to_string(), variant.map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> PlatformSpec {
        PlatformSpec::parse(s).unwrap()
    }

    #[test]
    fn parsing_normalises_names() {
        let table = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/arm64", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/v9", "linux/arm64/v9"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("linux/ppc64el", "linux/ppc64le"),
            ("linux/s390x", "linux/s390x"),
            ("linux/riscv64", "linux/riscv64"),
            ("windows/amd64", "windows/amd64"),
        ];
        for (input, want) in table {
            assert_eq!(spec(input).to_string(), want, "{input}");
        }
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/",
            "a/b/c/d",
            "linux/am d64",
        ] {
            assert!(PlatformSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rust_names_map_to_go_names() {
        let table = [
            ("x86_64", "linux/amd64"),
            ("aarch64", "linux/arm64"),
            ("arm", "linux/arm/v7"),
            ("x86", "linux/386"),
            ("s390x", "linux/s390x"),
            ("riscv64", "linux/riscv64"),
        ];
        for (rust, want) in table {
            assert_eq!(PlatformSpec::of_rust("linux", rust).to_string(), want);
        }
        // Whatever the host is, its platform is already normal.
        let host = PlatformSpec::host();
        assert_eq!(spec(&host.to_string()), host);
    }

    #[test]
    fn matching_and_arm_fallbacks() {
        let table = [
            ("linux/amd64", "linux/amd64", Some(0)),
            ("linux/amd64", "linux/arm64", None),
            ("linux/amd64", "windows/amd64", None),
            ("linux/arm64", "linux/arm64/v8", Some(0)),
            ("linux/arm64", "linux/arm/v7", None),
            ("linux/arm/v7", "linux/arm/v7", Some(0)),
            ("linux/arm/v7", "linux/arm/v6", Some(1)),
            ("linux/arm/v7", "linux/arm/v5", Some(2)),
            ("linux/arm/v6", "linux/arm/v7", None),
            ("linux/amd64/v3", "linux/amd64", None),
        ];
        for (host, image, want) in table {
            assert_eq!(
                spec(host).preference(&spec(image)),
                want,
                "{host} runs {image}"
            );
        }
    }

    #[test]
    fn index_platform_objects_deserialise() {
        let p: Platform = serde_json::from_str(
            r#"{"architecture":"arm","os":"linux","variant":"v7","os.features":["x"]}"#,
        )
        .unwrap();
        assert_eq!(PlatformSpec::of(&p).to_string(), "linux/arm/v7");
        assert_eq!(p.os_features.as_deref(), Some(&["x".to_string()][..]));
    }
}
