//! `{{name}}` substitution in a template's text files.
//!
//! The rule is narrow on purpose, because the files it runs over are full of other template
//! languages: Docker's Go templates (`{{.Names}}`), cloud-init's Jinja (`{{ v1.hostname }}`).
//! - A reference is `{{`, optional spaces, a name (`[A-Za-z_][A-Za-z0-9_]*`), optional spaces,
//!   `}}`. It is replaced by the variable's value; an undefined name is an error at file:line.
//! - `\{{name}}` is the escape: it renders as `{{name}}` (the backslash is dropped).
//! - Every other `{{` is copied unchanged.
//!
//! Values may not hold control characters: a newline in `--set bridge=…` would otherwise add
//! lines to a `.nspawn` file or a drop-in (a new `[Exec]` section, an `ExecStartPre=`), and it
//! would also shift the line numbers that later errors report.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

pub fn validate_var_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        bail!(
            "`{name}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
        );
    }
    Ok(())
}

pub fn validate_value(name: &str, value: &str) -> Result<()> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        bail!("variable `{name}`: the value may not contain control characters (found {c:?})");
    }
    Ok(())
}

/// Parses `NAME=VALUE` as given to `--set`.
pub fn parse_set(arg: &str) -> Result<(String, String)> {
    let Some((name, value)) = arg.split_once('=') else {
        bail!("--set `{arg}`: expected NAME=VALUE");
    };
    validate_var_name(name).map_err(|e| anyhow::anyhow!("--set `{arg}`: {e}"))?;
    validate_value(name, value).map_err(|e| anyhow::anyhow!("--set `{arg}`: {e}"))?;
    Ok((name.to_string(), value.to_string()))
}

/// A reference starting at byte `at` (which holds `{{`): the name and the end of the reference.
fn reference_at(text: &str, at: usize) -> Option<(&str, usize)> {
    let bytes = text.as_bytes();
    let mut i = at + 2;
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    let start = i;
    while bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        i += 1;
    }
    let name = &text[start..i];
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    while bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    (bytes.get(i..i + 2) == Some(b"}}")).then_some((name, i + 2))
}

/// The variables `text` refers to, each with the 1-based line it is on (escaped ones are not
/// references). Lines are those of `text` before substitution, which are those after it: values
/// hold no newlines.
pub fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut search = 0;
    while let Some(found) = text[search..].find("{{") {
        let at = search + found;
        match reference_at(text, at) {
            Some((name, end)) => {
                if !(at > 0 && text.as_bytes()[at - 1] == b'\\') {
                    let line = text[..at].matches('\n').count() + 1;
                    out.push((line, name.to_string()));
                }
                search = end;
            }
            None => search = at + 1,
        }
    }
    out
}

/// Replaces every reference in `text`; `file` names the file in errors.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>, file: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("{{") {
        let at = search + found;
        let Some((name, end)) = reference_at(text, at) else {
            search = at + 1;
            continue;
        };
        if at > 0 && text.as_bytes()[at - 1] == b'\\' {
            out.push_str(&text[copied..at - 1]);
            out.push_str(&text[at..end]);
        } else {
            let Some(value) = vars.get(name) else {
                let line = text[..at].matches('\n').count() + 1;
                let known: Vec<&str> = vars.keys().map(String::as_str).collect();
                bail!(
                    "{file}:{line}: undefined variable `{name}` (defined: {}); declare it under [vars] or pass --set {name}=VALUE",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            out.push_str(&text[copied..at]);
            out.push_str(value);
        }
        copied = end;
        search = end;
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitution_table() {
        let v = vars(&[("bridge", "br1"), ("zone", "lab"), ("_x1", "X")]);
        let cases: &[(&str, &str)] = &[
            ("Bridge={{bridge}}", "Bridge=br1"),
            ("Bridge={{ bridge }}", "Bridge=br1"),
            ("{{bridge}}{{zone}}", "br1lab"),
            ("{{_x1}}", "X"),
            ("{{{bridge}}}", "{br1}"),
            // Other template languages pass through.
            (
                "docker ps --format '{{.Names}}'",
                "docker ps --format '{{.Names}}'",
            ),
            ("{{ v1.local_hostname }}", "{{ v1.local_hostname }}"),
            ("{{json .}}", "{{json .}}"),
            ("{{1abc}}", "{{1abc}}"),
            ("{{bridge", "{{bridge"),
            ("{{}}", "{{}}"),
            // The escape.
            ("\\{{bridge}} is {{bridge}}", "{{bridge}} is br1"),
            ("\\{{undefined}}", "{{undefined}}"),
            ("a\\{b", "a\\{b"),
            ("no refs at all\n", "no refs at all\n"),
            ("é{{zone}}ü", "élabü"),
        ];
        for (input, want) in cases {
            assert_eq!(substitute(input, &v, "f").unwrap(), *want, "{input:?}");
        }
    }

    #[test]
    fn references_name_their_lines() {
        assert_eq!(
            references("[Network]\nZone={{zone}}\n\\{{esc}} {{ a }}{{b}}\n{{.Go}}"),
            vec![
                (2, "zone".to_string()),
                (3, "a".to_string()),
                (3, "b".to_string())
            ]
        );
    }

    #[test]
    fn undefined_names_file_and_line() {
        let e = substitute(
            "a\nb\n  x={{nope}}\n",
            &vars(&[("a", "1")]),
            "docker/user-data",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("docker/user-data:3: undefined variable `nope`"),
            "{e}"
        );
        assert!(e.contains("defined: a"), "{e}");
    }

    #[test]
    fn names_and_values_are_checked() {
        for ok in ["a", "_", "bridge_2", "Zone"] {
            validate_var_name(ok).unwrap();
        }
        for bad in ["", "2a", "a-b", "a b", "é"] {
            assert!(validate_var_name(bad).is_err(), "{bad:?}");
        }
        validate_value("x", "br0 br1").unwrap();
        assert!(validate_value("x", "br0\n[Exec]").is_err());
        assert!(validate_value("x", "a\rb").is_err());
        assert_eq!(
            parse_set("bridge=br1").unwrap(),
            ("bridge".into(), "br1".into())
        );
        assert_eq!(parse_set("x=a=b").unwrap(), ("x".into(), "a=b".into()));
        assert_eq!(parse_set("x=").unwrap(), ("x".into(), String::new()));
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("-x=1").is_err());
    }
}
