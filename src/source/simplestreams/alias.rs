//! What the user typed after `images:`: an alias such as `debian/bookworm/cloud`, optionally
//! pinned to a build with `@20240601_05:24`, and the build-version format itself.

use std::cmp::Ordering;
use std::fmt;

/// An image alias, optionally pinned to one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// `os/release[/variant]` as typed (case preserved: aliases match case-sensitively).
    pub alias: String,
    /// The pinned build, already validated by [`ImageVersion::parse`].
    pub version: Option<String>,
}

impl Alias {
    /// The `/`-separated parts of the alias (1 to 3, none empty).
    pub fn parts(&self) -> Vec<&str> {
        self.alias.split('/').collect()
    }
}

impl fmt::Display for Alias {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{v}", self.alias),
            None => f.write_str(&self.alias),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AliasError {
    #[error("image alias {0:?} is empty; expected e.g. debian/bookworm or debian/12/cloud")]
    Empty(String),
    #[error(
        "image alias {input:?} has {parts} parts; expected os/release or os/release/variant \
         (e.g. debian/bookworm/cloud)"
    )]
    PartCount { input: String, parts: usize },
    #[error("image alias {input:?} has an empty part (leading, trailing or doubled '/')")]
    EmptyPart { input: String },
    #[error("image alias {input:?}: part {part:?} may hold only letters, digits, '.', '-' and '_'")]
    BadPart { input: String, part: String },
    #[error("image alias {input:?}: {source}")]
    Version {
        input: String,
        #[source]
        source: VersionError,
    },
}

/// Parses `os/release[/variant][@version]`.
///
/// One-part aliases (`xenial`, `16.04`) are accepted because Ubuntu's simplestreams servers
/// publish them; on images.linuxcontainers.org they simply match nothing and [`super::choose`]
/// then suggests the close ones. Parts are restricted to `[A-Za-z0-9._-]` and may not be `.` or
/// `..`, because the default machine name and cache paths are derived from them.
pub fn parse_alias(s: &str) -> Result<Alias, AliasError> {
    let (alias, version) = match s.split_once('@') {
        Some((a, v)) => (a, Some(v)),
        None => (s, None),
    };
    if alias.is_empty() {
        return Err(AliasError::Empty(s.to_string()));
    }
    let parts: Vec<&str> = alias.split('/').collect();
    if parts.len() > 3 {
        return Err(AliasError::PartCount {
            input: s.to_string(),
            parts: parts.len(),
        });
    }
    for part in &parts {
        if part.is_empty() {
            return Err(AliasError::EmptyPart {
                input: s.to_string(),
            });
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if !part.chars().all(allowed) || *part == "." || *part == ".." {
            return Err(AliasError::BadPart {
                input: s.to_string(),
                part: part.to_string(),
            });
        }
    }
    let version = match version {
        Some(v) => {
            ImageVersion::parse(v).map_err(|source| AliasError::Version {
                input: s.to_string(),
                source,
            })?;
            Some(v.to_string())
        }
        None => None,
    };
    Ok(Alias {
        alias: alias.to_string(),
        version,
    })
}

/// `debian/bookworm/cloud` → `debian-bookworm-cloud`. The pinned version is not part of the
/// name: pulling a newer build later replaces the same machine.
pub fn default_machine_name(alias: &Alias) -> String {
    alias.alias.replace('/', "-")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "image version {0:?} is not a build date: expected YYYYMMDD_HH:MM (LXC images) \
     or YYYYMMDD[.N] (Ubuntu images)"
)]
pub struct VersionError(pub String);

/// A validated build version: `YYYYMMDD_HH:MM` (images.linuxcontainers.org, the legacy index)
/// or `YYYYMMDD` with an optional `.N` respin counter (cloud-images.ubuntu.com).
///
/// Both forms are fixed-width from the left, so plain string order is chronological order;
/// validating first is what makes that true (`2024601_5:24` would sort wrongly).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ImageVersion(String);

impl ImageVersion {
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let err = || VersionError(s.to_string());
        let b = s.as_bytes();
        if b.len() < 8 || !valid_date(&b[..8]) {
            return Err(err());
        }
        let ok = match &b[8..] {
            [] => true,
            [b'_', h1, h2, b':', m1, m2] => {
                two_digits(*h1, *h2).is_some_and(|h| h < 24)
                    && two_digits(*m1, *m2).is_some_and(|m| m < 60)
            }
            // Ubuntu respins: 20240423.1; the counter has no leading zeros so that string order
            // stays numeric order for the single-digit counters Ubuntu actually uses.
            [b'.', rest @ ..] => {
                !rest.is_empty()
                    && rest.len() <= 3
                    && rest.iter().all(u8::is_ascii_digit)
                    && (rest[0] != b'0' || rest.len() == 1)
            }
            _ => false,
        };
        if ok {
            Ok(ImageVersion(s.to_string()))
        } else {
            Err(err())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    (a.is_ascii_digit() && b.is_ascii_digit())
        .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
}

/// YYYYMMDD with a plausible month and day; the calendar is not checked further (a 31st of
/// February would only ever come from a broken server and sorts correctly anyway).
fn valid_date(d: &[u8]) -> bool {
    d.iter().all(u8::is_ascii_digit)
        && two_digits(d[4], d[5]).is_some_and(|m| (1..=12).contains(&m))
        && two_digits(d[6], d[7]).is_some_and(|day| (1..=31).contains(&day))
}

/// Orders two build versions chronologically; used for "newest" and for the downgrade check.
/// Both must be valid [`ImageVersion`]s: a malformed version from a server or a cache record is
/// an error, not something to order by accident.
pub fn compare_versions(a: &str, b: &str) -> Result<Ordering, VersionError> {
    Ok(ImageVersion::parse(a)?.cmp(&ImageVersion::parse(b)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases() {
        let ok = [
            ("debian/bookworm", "debian/bookworm", None),
            ("debian/12/cloud", "debian/12/cloud", None),
            (
                "ubuntu/noble/cloud@20240601_05:24",
                "ubuntu/noble/cloud",
                Some("20240601_05:24"),
            ),
            ("alpine/3.17", "alpine/3.17", None),
            ("centos/9-Stream", "centos/9-Stream", None),
            ("xenial", "xenial", None),
            ("ubuntu/xenial@20180814", "ubuntu/xenial", Some("20180814")),
        ];
        for (input, alias, version) in ok {
            let a = parse_alias(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(a.alias, alias, "{input:?}");
            assert_eq!(a.version.as_deref(), version, "{input:?}");
            assert_eq!(a.to_string(), input, "Display must round-trip");
        }
    }

    #[test]
    fn rejects_bad_aliases() {
        type Case = (&'static str, fn(&AliasError) -> bool);
        let table: [Case; 11] = [
            ("", |e| matches!(e, AliasError::Empty(_))),
            ("@20240601_05:24", |e| matches!(e, AliasError::Empty(_))),
            ("a/b/c/d", |e| {
                matches!(e, AliasError::PartCount { parts: 4, .. })
            }),
            ("debian//cloud", |e| {
                matches!(e, AliasError::EmptyPart { .. })
            }),
            ("/debian/bookworm", |e| {
                matches!(e, AliasError::EmptyPart { .. })
            }),
            ("debian/bookworm/", |e| {
                matches!(e, AliasError::EmptyPart { .. })
            }),
            ("debian/../etc", |e| matches!(e, AliasError::BadPart { .. })),
            ("debian/book worm", |e| {
                matches!(e, AliasError::BadPart { .. })
            }),
            ("debian/bookworm@", |e| {
                matches!(e, AliasError::Version { .. })
            }),
            ("debian/bookworm@latest", |e| {
                matches!(e, AliasError::Version { .. })
            }),
            ("debian/bookworm@20240601_05:24@x", |e| {
                matches!(e, AliasError::Version { .. })
            }),
        ];
        for (input, is_expected) in table {
            match parse_alias(input) {
                Ok(a) => panic!("{input:?} parsed as {a:?}"),
                Err(e) => assert!(is_expected(&e), "{input:?} gave the wrong error: {e:?}"),
            }
        }
    }

    #[test]
    fn machine_names() {
        let table = [
            ("debian/bookworm/cloud", "debian-bookworm-cloud"),
            ("debian/12", "debian-12"),
            ("ubuntu/noble/cloud@20240601_05:24", "ubuntu-noble-cloud"),
            ("alpine/3.17", "alpine-3.17"),
        ];
        for (input, name) in table {
            assert_eq!(default_machine_name(&parse_alias(input).unwrap()), name);
        }
    }

    #[test]
    fn validates_versions() {
        let good = [
            "20240601_05:24",
            "20230424_07:54",
            "19991231_23:59",
            "20180705",
            "20240423.1",
        ];
        for v in good {
            assert!(ImageVersion::parse(v).is_ok(), "{v:?} should be valid");
        }
        let bad = [
            "",
            "2024060_05:24",
            "20241301_05:24",
            "20240600_05:24",
            "20240632_05:24",
            "20240601_24:00",
            "20240601_05:60",
            "20240601_5:24",
            "20240601-05:24",
            "20240601_05:24:00",
            "20240601.",
            "20240601.01",
            "2024O601",
            "20240601_05:2x",
        ];
        for v in bad {
            assert_eq!(
                ImageVersion::parse(v),
                Err(VersionError(v.to_string())),
                "{v:?}"
            );
        }
    }

    #[test]
    fn compares_versions() {
        use Ordering::*;
        let table = [
            ("20240601_05:24", "20240601_05:24", Equal),
            ("20240601_05:24", "20240601_05:25", Less),
            ("20240601_23:59", "20240602_00:00", Less),
            ("20231231_23:59", "20240101_00:00", Less),
            ("20240601_10:00", "20240601_09:59", Greater),
            ("20180705", "20180814", Less),
            ("20240423", "20240423.1", Less),
            ("20240423.1", "20240423.2", Less),
        ];
        for (a, b, want) in table {
            assert_eq!(compare_versions(a, b), Ok(want), "{a} vs {b}");
            assert_eq!(compare_versions(b, a), Ok(want.reverse()), "{b} vs {a}");
        }
        assert!(compare_versions("20240601_05:24", "latest").is_err());
        assert!(compare_versions("2024-06-01", "20240601_05:24").is_err());
    }
}
