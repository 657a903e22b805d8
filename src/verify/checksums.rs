//! Checksum files: `SHA256SUMS` and `<file>.sha256`. Pure parsing and lookup.
//!
//! Accepted line forms (GNU coreutils and the common variants): `<hex>  <name>` (text mode),
//! `<hex> *<name>` (binary mode), `<hex> <name>`; a `.sha256` file may also hold a bare `<hex>`.
//! Blank lines and `#` comments are skipped. Names may carry a leading `./`.

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumEntry {
    pub digest: Digest,
    /// The file name, without a binary-mode `*` or a leading `./`; `None` for a bare digest.
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("it lists no checksums")]
    Empty,
    #[error("it has no checksum for `{0}`")]
    NotListed(String),
    #[error("it lists `{name}` twice with different checksums")]
    Conflicting { name: String },
}

/// Parses a whole checksum file.
pub fn parse(text: &str) -> Result<Vec<ChecksumEntry>, ChecksumError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (hex, rest) = match line.find(char::is_whitespace) {
            Some(i) => (&line[..i], Some(&line[i..])),
            None => (line, None),
        };
        let digest = Digest::from_hex(hex).map_err(|_| ChecksumError::Malformed {
            line: line_no,
            reason: format!("`{}` is not a sha256 digest (64 hex digits)", truncate(hex)),
        })?;
        let name = match rest {
            None => None,
            Some(rest) => {
                // One separator space, then an optional `*` (binary) or ` ` (text) mode marker.
                let rest = rest
                    .strip_prefix(' ')
                    .or_else(|| rest.strip_prefix('\t'))
                    .unwrap_or(rest);
                let rest = rest
                    .strip_prefix('*')
                    .or_else(|| rest.strip_prefix(' '))
                    .unwrap_or(rest);
                let rest = rest.strip_prefix("./").unwrap_or(rest);
                if rest.is_empty() {
                    return Err(ChecksumError::Malformed {
                        line: line_no,
                        reason: "a file name is missing after the digest".into(),
                    });
                }
                Some(rest.to_string())
            }
        };
        entries.push(ChecksumEntry { digest, name });
    }
    if entries.is_empty() {
        return Err(ChecksumError::Empty);
    }
    Ok(entries)
}

/// The digest listed for `file_name`. A file with a single bare digest (a `.sha256` file
/// holding only the hash) names the file it sits next to.
pub fn lookup(entries: &[ChecksumEntry], file_name: &str) -> Result<Digest, ChecksumError> {
    let mut found: Option<Digest> = None;
    for entry in entries {
        let matches = match &entry.name {
            Some(name) => name == file_name,
            None => entries.len() == 1,
        };
        if matches {
            if let Some(previous) = found
                && previous != entry.digest
            {
                return Err(ChecksumError::Conflicting {
                    name: file_name.to_string(),
                });
            }
            found = Some(entry.digest);
        }
    }
    found.ok_or_else(|| ChecksumError::NotListed(file_name.to_string()))
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 20 {
        format!("{}…", s.chars().take(20).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Renders `<hex> *<name>` lines, the form `sha256sum --binary` writes and importd reads.
pub fn render(entries: &[(Digest, &str)]) -> String {
    entries
        .iter()
        .map(|(d, name)| format!("{} *{}\n", d.hex(), name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "cad33e525169bebfad1ca0473f9054fa08700826aefc8e7478c58ca377e14299";
    const H2: &str = "f71bd3dd801377399a0f00580a042fe515691c4500301a12fcbf45ebd17acf7a";

    #[test]
    fn accepts_every_line_form() {
        let text = format!(
            "{H1}  text.tar.xz\n{H2} *binary.tar.xz\n\n# comment\n{H1} plain.tar\n{H2}  ./dotted.tar\n"
        );
        let entries = parse(&text).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(lookup(&entries, "text.tar.xz").unwrap().hex(), H1);
        assert_eq!(lookup(&entries, "binary.tar.xz").unwrap().hex(), H2);
        assert_eq!(lookup(&entries, "plain.tar").unwrap().hex(), H1);
        assert_eq!(lookup(&entries, "dotted.tar").unwrap().hex(), H2);
        assert_eq!(
            lookup(&entries, "missing"),
            Err(ChecksumError::NotListed("missing".into()))
        );
    }

    #[test]
    fn names_with_spaces_and_crlf() {
        let text = format!("{H1}  my image.tar\r\n");
        let entries = parse(&text).unwrap();
        assert_eq!(entries[0].name.as_deref(), Some("my image.tar"));
    }

    #[test]
    fn bare_digest_names_its_neighbour() {
        let entries = parse(&format!("{H1}\n")).unwrap();
        assert_eq!(lookup(&entries, "anything.tar").unwrap().hex(), H1);
        // Two bare digests name nothing.
        let entries = parse(&format!("{H1}\n{H2}\n")).unwrap();
        assert!(lookup(&entries, "anything.tar").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse(&format!("{H1}  a\nnot-a-digest  b\n")).unwrap_err();
        assert!(
            matches!(err, ChecksumError::Malformed { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("line 2:"));
        assert_eq!(parse("\n# only comments\n"), Err(ChecksumError::Empty));
        assert!(matches!(
            parse(&format!("{H1} *\n")),
            Err(ChecksumError::Malformed { line: 1, .. })
        ));
    }

    #[test]
    fn conflicting_duplicates_are_refused() {
        let entries = parse(&format!("{H1}  a\n{H2}  a\n")).unwrap();
        assert!(matches!(
            lookup(&entries, "a"),
            Err(ChecksumError::Conflicting { .. })
        ));
        let entries = parse(&format!("{H1}  a\n{H1} *a\n")).unwrap();
        assert_eq!(lookup(&entries, "a").unwrap().hex(), H1);
    }

    #[test]
    fn real_ubuntu_file_parses() {
        let text = include_str!("../../tests/fixtures/openpgp/ubuntu-noble-SHA256SUMS");
        let entries = parse(text).unwrap();
        assert!(entries.len() > 10);
        assert!(entries.iter().all(|e| e.name.is_some()));
    }

    #[test]
    fn render_round_trips() {
        let d = Digest::from_hex(H1).unwrap();
        let text = render(&[(d, "x.tar.xz")]);
        assert_eq!(text, format!("{H1} *x.tar.xz\n"));
        assert_eq!(lookup(&parse(&text).unwrap(), "x.tar.xz").unwrap(), d);
    }
}
