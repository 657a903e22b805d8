//! The edits `sandbox config NAME` takes, parsed and checked before any file is read. Pure.
//!
//! `Section.Key=VALUE` sets a key (given more than once, a list key gets every value, in
//! order), `Section.Key+=VALUE` adds one value to a list key, `Section.Key-=VALUE` removes
//! one, `--unset Section.Key` removes the key. `[Exec]`, `[Files]` and `[Network]` keys go
//! into the sandbox's `.nspawn` file and are checked by systemd 252's rules for them
//! (`template::nspawn`, `template::nspawn_rules`); `[Unit]` and `[Service]` keys go into the
//! sandbox's own drop-in and are checked by `unit_rules`. An unknown key is an error naming
//! its section and the nearest known key.

use std::fmt;

use anyhow::{Result, bail};

use super::unit_rules;
use crate::machine::state::EditedFile;
use crate::template::library::closest;
use crate::template::nspawn::{self, KeyKind};
use crate::template::nspawn_rules;

/// `Section.Key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyName {
    pub section: String,
    pub key: String,
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.section, self.key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Set(String),
    Add(String),
    Remove(String),
    Unset,
}

/// One edit as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub key: KeyName,
    pub op: Op,
}

const NSPAWN_SECTIONS: &[&str] = &["Exec", "Files", "Network"];

/// `Section.Key`, with the section and key checked and the file they belong in.
pub(crate) fn parse_key(text: &str) -> Result<(KeyName, EditedFile)> {
    let Some((section, key)) = text.split_once('.') else {
        bail!(
            "`{text}`: name a setting as Section.Key (`Exec.Boot`, `Network.Zone`, \
             `Service.MemoryMax`)"
        );
    };
    let name = KeyName {
        section: section.to_string(),
        key: key.to_string(),
    };
    let file = check_key(&name)?;
    Ok((name, file))
}

/// `Section.Key=VALUE`, `Section.Key+=VALUE` or `Section.Key-=VALUE`.
pub(crate) fn parse_change(text: &str) -> Result<(Change, EditedFile)> {
    let Some((lhs, value)) = text.split_once('=') else {
        bail!(
            "`{text}`: expected Section.Key=VALUE (or Section.Key+=VALUE, Section.Key-=VALUE; \
             --unset Section.Key removes a key)"
        );
    };
    let (lhs, op) = if let Some(k) = lhs.strip_suffix('+') {
        (k, Op::Add(value.trim().to_string()))
    } else if let Some(k) = lhs.strip_suffix('-') {
        (k, Op::Remove(value.trim().to_string()))
    } else {
        (lhs, Op::Set(value.trim().to_string()))
    };
    let (key, file) = parse_key(lhs.trim())?;
    Ok((Change { key, op }, file))
}

/// Which file `name` belongs in; an error when its section or key is unknown there.
pub(crate) fn check_key(name: &KeyName) -> Result<EditedFile> {
    let KeyName { section, key } = name;
    if NSPAWN_SECTIONS.contains(&section.as_str()) {
        if nspawn::key_kind(section, key).is_some() {
            return Ok(EditedFile::Nspawn);
        }
        let mut hint = nearest(key, &nspawn::keys_of(section));
        if let Some(other) = NSPAWN_SECTIONS
            .iter()
            .find(|s| nspawn::key_kind(s, key).is_some())
        {
            hint = format!("; it is a setting of [{other}]: {other}.{key}");
        } else if unit_rules::kind("Service", key).is_some() {
            hint = format!("; it is a unit setting: Service.{key}");
        }
        bail!("`{key}=` is not a setting of [{section}] in systemd.nspawn(5){hint}");
    }
    if unit_rules::SECTIONS.contains(&section.as_str()) {
        if unit_rules::kind(section, key).is_some() {
            return Ok(EditedFile::Dropin);
        }
        let mut hint = nearest(key, &unit_rules::keys(section));
        if let Some(other) = NSPAWN_SECTIONS
            .iter()
            .find(|s| nspawn::key_kind(s, key).is_some())
        {
            hint = format!("; it is a .nspawn setting: {other}.{key}");
        } else if let Some(other) = unit_rules::SECTIONS
            .iter()
            .find(|s| unit_rules::kind(s, key).is_some())
        {
            hint = format!("; it is a setting of [{other}]: {other}.{key}");
        }
        bail!("`{key}=` is not a setting of [{section}] in systemd 252's units{hint}");
    }
    let known: Vec<String> = NSPAWN_SECTIONS
        .iter()
        .chain(unit_rules::SECTIONS)
        .map(|s| s.to_string())
        .collect();
    bail!(
        "unknown section [{section}]{}: the .nspawn file has [Exec], [Files] and [Network], \
         the sandbox's drop-in [Unit] and [Service]",
        match closest(section, &known) {
            Some(k) => format!(" (did you mean [{k}]?)"),
            None => String::new(),
        }
    )
}

fn nearest(key: &str, known: &[String]) -> String {
    match closest(key, known) {
        Some(k) => format!("; did you mean `{k}=`?"),
        None => String::new(),
    }
}

/// Whether a key takes several values: the .nspawn keys systemd accumulates, and for unit
/// keys every one (which of them accumulate is the unit's business; a drop-in may repeat any).
pub(crate) fn is_list(name: &KeyName, file: EditedFile) -> bool {
    match file {
        EditedFile::Nspawn => nspawn::key_kind(&name.section, &name.key) == Some(KeyKind::List),
        EditedFile::Dropin => true,
    }
}

/// Checks the values a key will have. The error reads `Section.Key=value is not …`.
pub(crate) fn check_values(name: &KeyName, file: EditedFile, values: &[String]) -> Result<()> {
    if !is_list(name, file) && values.len() > 1 {
        bail!(
            "{name} takes one value (systemd.nspawn(5) keeps only the last), and {} were given: {}",
            values.len(),
            values.join(", ")
        );
    }
    for v in values {
        super::ini_edit::check_value(v).map_err(|e| anyhow::anyhow!("{name}={v}: {e}"))?;
        let checked = match file {
            // An empty value of a list key is the reset systemd reads (`Bind=`).
            EditedFile::Nspawn if v.is_empty() && is_list(name, file) => Ok(()),
            EditedFile::Nspawn => nspawn_rules::check(&name.section, &name.key, v),
            EditedFile::Dropin => unit_rules::check(&name.section, &name.key, v),
        };
        if let Err(why) = checked {
            bail!("{name}={v} {why}");
        }
    }
    Ok(())
}

/// Settings systemd-nspawn ignores in a `.nspawn` file next to the image (untrusted): the ones
/// systemd.nspawn(5) of systemd 252 calls privileged, and those its `merge_settings()` skips for
/// an untrusted file (resource limits, OOM score, CPU affinity, system call allow lists).
pub(crate) fn ignored_when_untrusted(section: &str, key: &str) -> bool {
    const PRIVILEGED: &[(&str, &str)] = &[
        ("Exec", "Capability"),
        ("Exec", "AmbientCapability"),
        ("Exec", "MachineID"),
        ("Exec", "PrivateUsers"),
        ("Exec", "OOMScoreAdjust"),
        ("Exec", "CPUAffinity"),
        ("Exec", "SystemCallFilter"),
        ("Files", "Bind"),
        ("Files", "BindReadOnly"),
        ("Files", "BindUser"),
        ("Files", "TemporaryFileSystem"),
        ("Files", "Inaccessible"),
        ("Files", "Overlay"),
        ("Files", "OverlayReadOnly"),
        ("Files", "PrivateUsersOwnership"),
    ];
    section == "Network"
        || (section == "Exec" && key.starts_with("Limit"))
        || PRIVILEGED.contains(&(section, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        format!("{:#}", parse_change(text).unwrap_err())
    }

    #[test]
    fn changes_parse_into_key_operation_and_file() {
        let (c, f) = parse_change("Network.Zone=web").unwrap();
        assert_eq!(c.key.to_string(), "Network.Zone");
        assert_eq!(c.op, Op::Set("web".into()));
        assert_eq!(f, EditedFile::Nspawn);
        let (c, f) = parse_change("Files.Bind+=/mnt/a:/a").unwrap();
        assert_eq!(c.op, Op::Add("/mnt/a:/a".into()));
        assert_eq!(f, EditedFile::Nspawn);
        let (c, _) = parse_change("Files.Bind-=/mnt/a:/a").unwrap();
        assert_eq!(c.op, Op::Remove("/mnt/a:/a".into()));
        // A value may hold `=`.
        let (c, _) = parse_change("Exec.Environment=A=B").unwrap();
        assert_eq!(c.op, Op::Set("A=B".into()));
        let (c, f) = parse_change("Service.DeviceAllow=/dev/dri rw").unwrap();
        assert_eq!(
            (c.op, f),
            (Op::Set("/dev/dri rw".into()), EditedFile::Dropin)
        );
        assert_eq!(parse_key("Unit.After").unwrap().1, EditedFile::Dropin);
    }

    #[test]
    fn unknown_keys_name_their_section_and_the_nearest_known_key() {
        let cases = [
            (
                "Exec.Bot=yes",
                "`Bot=` is not a setting of [Exec] in systemd.nspawn(5); did you mean `Boot=`?",
            ),
            (
                "Exec.Bridge=br0",
                "`Bridge=` is not a setting of [Exec] in systemd.nspawn(5); it is a setting of [Network]: Network.Bridge",
            ),
            (
                "Exec.DeviceAllow=/dev/x",
                "it is a unit setting: Service.DeviceAllow",
            ),
            (
                "Service.MemoryMaxx=1G",
                "`MemoryMaxx=` is not a setting of [Service] in systemd 252's units; did you mean `MemoryMax=`?",
            ),
            ("Service.Bind=/a", "it is a .nspawn setting: Files.Bind"),
            (
                "Unit.MemoryMax=1G",
                "it is a setting of [Service]: Service.MemoryMax",
            ),
            (
                "Netwrk.Zone=a",
                "unknown section [Netwrk] (did you mean [Network]?)",
            ),
            ("Zone=a", "name a setting as Section.Key"),
            ("Network.Zone", "expected Section.Key=VALUE"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn values_are_checked_by_the_rules_of_their_file() {
        let check = |text: &str, values: &[&str]| {
            let (key, file) = parse_key(text).unwrap();
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            check_values(&key, file, &values).map_err(|e| e.to_string())
        };
        assert_eq!(check("Network.Zone", &["web"]), Ok(()));
        assert_eq!(check("Files.Bind", &["", "/a:/b"]), Ok(()));
        assert_eq!(check("Service.DeviceAllow", &["", "/dev/dri rw"]), Ok(()));
        let e = check("Network.Zone", &["much-too-long-zone"]).unwrap_err();
        assert!(
            e.starts_with("Network.Zone=much-too-long-zone is not a valid zone name: at most 12"),
            "{e}"
        );
        let e = check("Exec.Boot", &["yes", "no"]).unwrap_err();
        assert!(e.contains("takes one value"), "{e}");
        let e = check("Exec.Boot", &[""]).unwrap_err();
        assert!(e.contains("is not a boolean"), "{e}");
        let e = check("Service.MemoryMax", &["lots"]).unwrap_err();
        assert!(e.starts_with("Service.MemoryMax=lots is not a size"), "{e}");
        let e = check("Files.Bind", &["relative:/x"]).unwrap_err();
        assert!(e.contains("is relative"), "{e}");
    }

    #[test]
    fn untrusted_files_lose_their_privileged_settings() {
        assert!(ignored_when_untrusted("Files", "Bind"));
        assert!(ignored_when_untrusted("Network", "Private"));
        assert!(ignored_when_untrusted("Exec", "LimitNOFILE"));
        assert!(!ignored_when_untrusted("Exec", "Boot"));
        assert!(!ignored_when_untrusted("Exec", "Parameters"));
        assert!(!ignored_when_untrusted("Files", "ReadOnly"));
    }
}
