//! Machine names: what systemd-nspawn and machinectl accept (hostname rules, ≤ 64 characters).

use anyhow::{Result, bail};

pub const MAX_LEN: usize = 64;

/// Checks `name` as a machine name: labels of ASCII letters, digits and `-` separated by
/// single dots, no label starting or ending with `-`, at most 64 characters. This is the
/// hostname rule machined applies, so anything accepted here works with `machinectl`.
pub fn validate(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_LEN {
        Some(format!(
            "it is {} characters long (at most {MAX_LEN})",
            name.len()
        ))
    } else {
        name.split('.').find_map(|label| {
            if label.is_empty() {
                Some("it has an empty label (a leading, trailing or double `.`)".to_string())
            } else if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                Some(format!(
                    "it contains `{c}` (allowed: letters, digits, `-`, `.`)"
                ))
            } else if label.starts_with('-') || label.ends_with('-') {
                Some("a label starts or ends with `-`".to_string())
            } else {
                None
            }
        })
    };
    if let Some(why) = why {
        bail!("`{name}` is not a valid machine name: {why}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_rules() {
        for ok in [
            "a",
            "debian-bookworm",
            "web01.example",
            "A1",
            &"x".repeat(64),
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-bad",
            "bad-",
            "a..b",
            ".a",
            "a.",
            "a/b",
            "a_b",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            let err = validate(bad).unwrap_err().to_string();
            assert!(err.contains("not a valid machine name"), "{bad}: {err}");
        }
    }
}
