//! What a `[Unit]` or `[Service]` setting of `systemd-nspawn@NAME.service` may be: the key
//! must be one systemd 252 knows for that section (the table is its own
//! `systemd --dump-configuration-items`, in `systemd-252-unit-items.txt`), and the value must
//! have the shape of the setting's type where that shape is simple to state (booleans,
//! resource limits, sizes, time spans, weights, device rules, command lines, paths). Pure.
//!
//! systemd does not refuse a bad value either: it logs "…, ignoring" and starts the container
//! without the setting, which for `MemoryMax=` or `DeviceAllow=` is the opposite of what was
//! asked. Command lines, paths, strings and environment values are also checked for `%`
//! specifiers, which systemd expands there: a `%` not followed by a known specifier makes it
//! ignore the line (write `%%`).

use std::sync::OnceLock;

use crate::template::nspawn_rules::parse_boolean;

const ITEMS: &str = include_str!("systemd-252-unit-items.txt");

/// `(section, key, type)` for every line of the table.
fn items() -> &'static [(&'static str, &'static str, &'static str)] {
    static TABLE: OnceLock<Vec<(&str, &str, &str)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        ITEMS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (section, rest) = l.split_once(' ')?;
                let (key, kind) = rest.split_once(' ')?;
                Some((section, key, kind))
            })
            .collect()
    })
}

/// The sections a sandbox's drop-in takes.
pub(crate) const SECTIONS: &[&str] = &["Unit", "Service"];

/// The type systemd gives `section`/`key` (`BOOLEAN`, `LIMIT`, …); `None` when it has no
/// such setting.
pub(crate) fn kind(section: &str, key: &str) -> Option<&'static str> {
    items()
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, t)| *t)
}

/// Every key of `section`.
pub(crate) fn keys(section: &str) -> Vec<String> {
    items()
        .iter()
        .filter(|(s, _, _)| *s == section)
        .map(|(_, k, _)| k.to_string())
        .collect()
}

/// Checks `value` for `section`/`key` (which must exist). The error completes
/// "`Key=value` …". An empty value resets a setting to its default and is always accepted.
pub(crate) fn check(section: &str, key: &str, value: &str) -> Result<(), String> {
    let Some(kind) = kind(section, key) else {
        return Ok(());
    };
    if EXPANDS_SPECIFIERS.contains(&kind) {
        specifiers(value)?;
    }
    if value.is_empty() {
        return Ok(());
    }
    match (key, kind) {
        ("CPUQuota", _) => percent(value, false).map_err(|_| {
            "is not a CPU quota: a percentage above 0 (`50%`, `200%` for two CPUs)".to_string()
        }),
        ("TasksMax", _) => {
            if value == "infinity" || percent(value, true).is_ok() || number(value) {
                Ok(())
            } else {
                Err("is not a task limit: a number, a percentage or `infinity`".into())
            }
        }
        (_, "BOOLEAN") => parse_boolean(value)
            .map(drop)
            .ok_or_else(|| "is not a boolean (yes/no, true/false, on/off, 1/0)".to_string()),
        (k, "LIMIT") if k.starts_with("Limit") => rlimit(value),
        (_, "LIMIT") => {
            if value == "infinity" || percent(value, true).is_ok() || size(value) {
                Ok(())
            } else {
                Err(
                    "is not a size: bytes with an optional K, M, G, T, P or E suffix (base \
                     1024), a percentage of physical memory, or `infinity`"
                        .into(),
                )
            }
        }
        (_, "UNSIGNED") => {
            if number(value) {
                Ok(())
            } else {
                Err("is not a non-negative whole number".into())
            }
        }
        (_, "SECONDS") => timespan(value),
        (_, "WEIGHT") | (_, "CPUWEIGHT") => {
            if kind == "CPUWEIGHT" && value == "idle" {
                return Ok(());
            }
            match value.parse::<u32>() {
                Ok(n) if (1..=10000).contains(&n) => Ok(()),
                _ => Err(format!(
                    "is not a weight: a number from 1 to 10000{}",
                    if kind == "CPUWEIGHT" {
                        " or `idle`"
                    } else {
                        ""
                    }
                )),
            }
        }
        (_, "DEVICE") => device(value),
        (_, "PATH [ARGUMENT [...]]") => command(value),
        (_, "PATH") => absolute(value.trim_start_matches(['-', '+'])),
        (_, "PATH [...]") => {
            for word in value.split_whitespace() {
                absolute(word.trim_start_matches(['-', '+']))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The types whose settings systemd reads through its specifier expansion: command lines,
/// environment, strings, paths, unit names. (Sizes and percentages, `MemoryMax=50%`, are not.)
const EXPANDS_SPECIFIERS: &[&str] = &[
    "PATH [ARGUMENT [...]]",
    "ENVIRON",
    "STRING",
    "PATH",
    "PATH [...]",
    "FILE",
    "UNIT [...]",
    "PATH[:PATH[:OPTIONS]] [...]",
];

/// systemd's unit specifiers (systemd.unit(5), "Specifiers").
const SPECIFIERS: &str = "aAbBCdEfgGhHiIjJlLmMnNopPqsStTuUvVwWyY%";

fn specifiers(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(s) if SPECIFIERS.contains(s) => {}
                Some(s) => {
                    return Err(format!(
                        "has `%{s}`, which is not a unit specifier (write `%%` for a literal `%`)"
                    ));
                }
                None => return Err("ends in `%` (write `%%` for a literal `%`)".into()),
            }
        }
    }
    Ok(())
}

fn number(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
}

/// `N%` (or `N.M%`); with `zero`, 0% is allowed.
fn percent(v: &str, zero: bool) -> Result<(), ()> {
    let n = v.strip_suffix('%').ok_or(())?;
    let f: f64 = decimal(n).ok_or(())?;
    if f > 0.0 || (zero && f == 0.0) {
        Ok(())
    } else {
        Err(())
    }
}

fn decimal(v: &str) -> Option<f64> {
    let ok = !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && v.bytes().filter(|b| *b == b'.').count() <= 1
        && !v.starts_with('.')
        && !v.ends_with('.');
    if ok { v.parse().ok() } else { None }
}

/// `parse_size` with base 1024: `512`, `1.5G`, `64K`.
fn size(v: &str) -> bool {
    let body = v.strip_suffix(['K', 'M', 'G', 'T', 'P', 'E']).unwrap_or(v);
    decimal(body).is_some()
}

/// `LimitX=`: one value or `SOFT:HARD`, each a number (with a unit where the limit has one),
/// or `infinity`.
fn rlimit(v: &str) -> Result<(), String> {
    for part in v.split(':') {
        let ok = part == "infinity"
            || part
                .char_indices()
                .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
                .map_or(decimal(part).is_some(), |(i, _)| {
                    decimal(&part[..i]).is_some()
                        && part[i..].chars().all(|c| c.is_ascii_alphabetic())
                });
        if !ok || v.split(':').count() > 2 {
            return Err(
                "is not a resource limit: a number (with a unit such as K, M, G or s where the \
                 limit has one) or `infinity`, optionally SOFT:HARD"
                    .into(),
            );
        }
    }
    Ok(())
}

/// A time span: `90`, `5min 20s`, `1.5h`, `infinity`.
fn timespan(v: &str) -> Result<(), String> {
    const UNITS: &[&str] = &[
        "", "us", "usec", "µs", "ms", "msec", "s", "sec", "second", "seconds", "m", "min",
        "minute", "minutes", "h", "hr", "hour", "hours", "d", "day", "days", "w", "week", "weeks",
        "M", "month", "months", "y", "year", "years",
    ];
    if v == "infinity" {
        return Ok(());
    }
    let bad = || {
        "is not a time span: a number with an optional unit (`90`, `5min 20s`, `1.5h`) or `infinity`".to_string()
    };
    let mut rest = v.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if decimal(&rest[..num_end]).is_none() {
            return Err(bad());
        }
        rest = rest[num_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(rest.len());
        if !UNITS.contains(&&rest[..unit_end]) {
            return Err(bad());
        }
        rest = rest[unit_end..].trim_start();
    }
    Ok(())
}

/// `DeviceAllow=PATH [rwm]`: a `/dev/` or `/run/systemd/inaccessible/` node, or a group
/// `char-NAME` / `block-NAME` (from /proc/devices).
fn device(v: &str) -> Result<(), String> {
    let (node, access) = match v.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (v, ""),
    };
    let node_ok = node.starts_with("/dev/")
        || node.starts_with("/run/systemd/inaccessible/")
        || node.strip_prefix("char-").is_some_and(|n| !n.is_empty())
        || node.strip_prefix("block-").is_some_and(|n| !n.is_empty());
    if !node_ok {
        return Err(format!(
            "is not a device rule: `{node}` is neither a /dev/ path nor char-NAME or block-NAME"
        ));
    }
    if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(format!(
            "is not a device rule: access `{access}` is not a combination of r, w and m"
        ));
    }
    Ok(())
}

/// `ExecStartPre=` and friends: optional prefixes `-@:+!`, then a command.
fn command(v: &str) -> Result<(), String> {
    let cmd = v.trim_start_matches(['-', '@', ':', '+', '!']);
    let first = cmd.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return Err("is not a command line: no program after the prefixes".into());
    }
    Ok(())
}

fn absolute(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        Ok(())
    } else {
        Err(format!("is not an absolute path (`{p}`)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_the_settings_people_change() {
        for (s, k, t) in [
            ("Service", "DeviceAllow", "DEVICE"),
            ("Service", "LimitNOFILE", "LIMIT"),
            ("Service", "MemoryMax", "LIMIT"),
            ("Service", "CPUQuota", "OTHER"),
            ("Service", "ExecStartPre", "PATH [ARGUMENT [...]]"),
            ("Service", "Environment", "ENVIRON"),
            ("Unit", "After", "UNIT [...]"),
            ("Unit", "Description", "STRING"),
        ] {
            assert_eq!(kind(s, k), Some(t), "{s}.{k}");
        }
        assert_eq!(kind("Service", "MemoryMaximum"), None);
        assert_eq!(kind("Exec", "Boot"), None);
        assert!(keys("Service").len() > 200);
    }

    #[test]
    fn values_are_checked_by_type() {
        let ok = [
            ("LimitNOFILE", "1048576"),
            ("LimitNOFILE", "1024:524288"),
            ("LimitNOFILE", "infinity"),
            ("LimitCPU", "10s"),
            ("MemoryMax", "2G"),
            ("MemoryMax", "1.5G"),
            ("MemoryMax", "50%"),
            ("MemoryMax", "infinity"),
            ("CPUQuota", "150%"),
            ("TasksMax", "512"),
            ("CPUWeight", "idle"),
            ("IOWeight", "500"),
            ("DeviceAllow", "/dev/dri rw"),
            ("DeviceAllow", "char-drm rwm"),
            ("DeviceAllow", "/dev/fuse"),
            ("ExecStartPre", "-/sbin/modprobe overlay"),
            ("ExecStartPre", "modprobe br_netfilter"),
            ("TimeoutStartSec", "5min 20s"),
            ("Delegate", "yes"),
            ("Environment", "A=%i"),
            ("MemoryMax", ""),
        ];
        for (k, v) in ok {
            assert_eq!(check("Service", k, v), Ok(()), "{k}={v}");
        }
        let bad = [
            ("LimitNOFILE", "lots", "resource limit"),
            ("LimitNOFILE", "1:2:3", "resource limit"),
            ("MemoryMax", "2 GB", "is not a size"),
            ("CPUQuota", "150", "CPU quota"),
            ("CPUQuota", "0%", "CPU quota"),
            ("CPUWeight", "0", "1 to 10000 or `idle`"),
            ("DeviceAllow", "dri rw", "neither a /dev/ path"),
            ("DeviceAllow", "/dev/dri rx", "combination of r, w and m"),
            ("ExecStartPre", "-", "no program"),
            ("TimeoutStartSec", "soon", "time span"),
            ("MemoryDenyWriteExecute", "maybe", "boolean"),
        ];
        for (k, v, want) in bad {
            let got = check("Service", k, v).unwrap_err();
            assert!(got.contains(want), "{k}={v}: {got}");
        }
        assert!(
            check("Service", "Environment", "RATE=50%")
                .unwrap_err()
                .contains("ends in `%`")
        );
        assert!(
            check("Service", "Environment", "A=%z")
                .unwrap_err()
                .contains("`%z`")
        );
        assert_eq!(check("Service", "Environment", "A=100%%"), Ok(()));
    }
}
