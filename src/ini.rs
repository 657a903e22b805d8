//! The systemd configuration syntax (systemd.syntax(7)) shared by `.nspawn` files and unit
//! drop-ins: `[Section]` headers, `Key=Value` assignments, `#`/`;` comments, and lines ending
//! in `\` continued on the next (the backslash becomes a space, as systemd reads it).
//!
//! A line that is none of these, or an assignment before any section, is an error naming the
//! file and line: systemd would log and skip it, and a sandbox quietly missing a `Bind=` is
//! worse than a build that stops.

use anyhow::{Result, bail};

/// One assignment, with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
    /// The line of the `[Section]` header this assignment is under.
    pub section_line: usize,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Parses `text`, naming `file` in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Assignment>> {
    let mut out = Vec::new();
    let mut section: Option<(String, usize)> = None;
    let mut pending: Option<(String, usize)> = None;

    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = raw.trim();
        // A comment line is skipped before anything else, as systemd does: inside a
        // continuation it neither ends nor continues it, and a comment ending in `\` does
        // not continue onto the next line (found by fuzzing against the editor).
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let (mut logical, start) = match pending.take() {
            Some((mut acc, start)) => {
                acc.push_str(trimmed);
                (acc, start)
            }
            None => (trimmed.to_string(), n),
        };
        if logical.ends_with('\\') {
            logical.pop();
            logical.push(' ');
            pending = Some((logical, start));
            continue;
        }
        let line = logical.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                bail!("{file}:{start}: malformed section header `{line}`");
            };
            if !valid_name(name) {
                bail!("{file}:{start}: `{name}` is not a valid section name");
            }
            section = Some((name.to_string(), start));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{file}:{start}: expected `Key=Value`, `[Section]` or a comment, found `{line}`");
        };
        let key = key.trim();
        if !valid_name(key) {
            bail!("{file}:{start}: `{key}` is not a valid key name");
        }
        let Some((section, section_line)) = &section else {
            bail!("{file}:{start}: `{key}=` comes before any [Section] header");
        };
        out.push(Assignment {
            section: section.clone(),
            key: key.to_string(),
            value: value.trim().to_string(),
            line: start,
            section_line: *section_line,
        });
    }
    if let Some((_, start)) = pending {
        bail!("{file}:{start}: the file ends inside a line continued with `\\`");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(section: &str, key: &str, value: &str, line: usize, section_line: usize) -> Assignment {
        Assignment {
            section: section.into(),
            key: key.into(),
            value: value.into(),
            line,
            section_line,
        }
    }

    #[test]
    fn a_comment_ending_in_a_backslash_continues_nothing() {
        let text = "[Exec]\nA=1 \\\n\n# c \\\nB=2\n";
        let got = parse(text, "t").unwrap();
        let pairs: Vec<(&str, &str)> = got
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(pairs, [("A", "1"), ("B", "2")]);
    }

    #[test]
    fn reads_sections_keys_comments_and_continuations() {
        let text = "# comment\n; also\n\n[Exec]\nBoot = yes\nSystemCallFilter=add_key \\\n# skipped\n  keyctl bpf\n[Files]\nBind=/a:/b\nEnvironment=A=B\nEmpty=\n";
        assert_eq!(
            parse(text, "f").unwrap(),
            vec![
                a("Exec", "Boot", "yes", 5, 4),
                a("Exec", "SystemCallFilter", "add_key  keyctl bpf", 6, 4),
                a("Files", "Bind", "/a:/b", 10, 9),
                a("Files", "Environment", "A=B", 11, 9),
                a("Files", "Empty", "", 12, 9),
            ]
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("[Exec]\nBoot yes\n", "x.nspawn:2: expected `Key=Value`"),
            (
                "Boot=yes\n",
                "x.nspawn:1: `Boot=` comes before any [Section]",
            ),
            ("[Exec\n", "x.nspawn:1: malformed section header"),
            (
                "[Ex ec]\n",
                "x.nspawn:1: `Ex ec` is not a valid section name",
            ),
            ("[Exec]\n\n=yes\n", "x.nspawn:3: `` is not a valid key name"),
            (
                "[Exec]\nBo ot=yes\n",
                "x.nspawn:2: `Bo ot` is not a valid key name",
            ),
            (
                "[Exec]\nA=b \\\n",
                "x.nspawn:2: the file ends inside a line continued",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text, "x.nspawn").unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }
}
