//! What a `.nspawn` value may be, per setting, by systemd's own rules (systemd 252:
//! systemd.nspawn(5), systemd-nspawn(1) and the `config_parse_*` functions that
//! `nspawn-gperf.gperf` names for each key).
//!
//! systemd-nspawn does not refuse a bad value: it logs "…, ignoring" to the journal and starts
//! the container without the setting (a `Zone=` too long for `vz-ZONE`, a `Bridge=br 1`), or
//! fails at start (`Inaccessible=` of a missing path). Checked here, a bad value stops the
//! build before anything is pulled, naming the file, the line and the variable that filled it.
//!
//! `check` is pure and keyed by section and key (`RULES`); a key with no rule is accepted as
//! `nspawn::validate` already accepts it. An empty value of a list key is composition's reset
//! (`Bind=`) and never reaches a file, so it is not checked.

/// The shape a value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `parse_boolean`: 1/yes/y/true/t/on, 0/no/n/false/f/off, any case.
    Bool,
    /// `config_parse_tristate`: a boolean, or empty for "not set".
    Tristate,
    /// `config_parse_ifname`: one interface name; empty unsets it.
    Ifname,
    /// `Interface=`, `MACVLAN=`, `IPVLAN=`: a space-separated list of interface names.
    IfnameList,
    /// `VirtualEthernetExtra=HOST[:CONTAINER]`.
    VethExtra,
    /// `Zone=`: `vz-` + the name must be an interface name.
    Zone,
    /// `config_parse_path`: an absolute path; empty unsets it.
    AbsolutePath,
    /// An absolute path, never empty.
    RequiredAbsolutePath,
    /// `PivotRoot=PATH[:PATH]`, both absolute.
    PivotRoot,
    /// `Bind=`/`BindReadOnly=`: `[+]SOURCE[:DEST[:OPTIONS]]`.
    Bind,
    /// `TemporaryFileSystem=PATH[:OPTIONS]`.
    Tmpfs,
    /// `Overlay=`/`OverlayReadOnly=`: `PATH:…:DEST`, at least two paths.
    Overlay,
    /// `PrivateUsers=`: a boolean, `pick`, `identity`, `UID` or `UID:COUNT`.
    PrivateUsers,
    /// `Port=[tcp|udp:]HOST[:CONTAINER]`.
    Port,
    /// `Hostname=`: `hostname_is_valid`; empty unsets it.
    Hostname,
    /// `MachineID=`: 32 hex digits, or a UUID with dashes; not all zero.
    MachineId,
    /// `Volatile=`: a boolean, `state` or `overlay`.
    Volatile,
    /// One of the names; with `true`, a boolean too (systemd's `…_WITH_BOOLEAN` tables).
    OneOf(&'static [&'static str], bool),
}

const LINK_JOURNAL: &[&str] = &["no", "host", "try-host", "guest", "try-guest", "auto"];
const RESOLV_CONF: &[&str] = &[
    "off",
    "copy-host",
    "copy-static",
    "copy-uplink",
    "copy-stub",
    "replace-host",
    "replace-static",
    "replace-uplink",
    "replace-stub",
    "bind-host",
    "bind-static",
    "bind-uplink",
    "bind-stub",
    "delete",
    "auto",
];
const TIMEZONE: &[&str] = &["off", "copy", "bind", "symlink", "delete", "auto"];
const OWNERSHIP: &[&str] = &["off", "chown", "map", "auto"];

/// Every checked setting. The others (capabilities, limits, `Environment=`, …) pass as they
/// do today.
pub const RULES: &[(&str, &str, Rule)] = &[
    ("Exec", "Boot", Rule::Bool),
    ("Exec", "ProcessTwo", Rule::Bool),
    ("Exec", "Ephemeral", Rule::Tristate),
    ("Exec", "NotifyReady", Rule::Tristate),
    ("Exec", "NoNewPrivileges", Rule::Tristate),
    ("Exec", "SuppressSync", Rule::Tristate),
    ("Exec", "WorkingDirectory", Rule::AbsolutePath),
    ("Exec", "PivotRoot", Rule::PivotRoot),
    ("Exec", "PrivateUsers", Rule::PrivateUsers),
    ("Exec", "Hostname", Rule::Hostname),
    ("Exec", "MachineID", Rule::MachineId),
    ("Exec", "LinkJournal", Rule::OneOf(LINK_JOURNAL, false)),
    ("Exec", "ResolvConf", Rule::OneOf(RESOLV_CONF, true)),
    ("Exec", "Timezone", Rule::OneOf(TIMEZONE, true)),
    ("Files", "ReadOnly", Rule::Tristate),
    ("Files", "Volatile", Rule::Volatile),
    ("Files", "Bind", Rule::Bind),
    ("Files", "BindReadOnly", Rule::Bind),
    ("Files", "TemporaryFileSystem", Rule::Tmpfs),
    ("Files", "Inaccessible", Rule::RequiredAbsolutePath),
    ("Files", "Overlay", Rule::Overlay),
    ("Files", "OverlayReadOnly", Rule::Overlay),
    ("Files", "PrivateUsersChown", Rule::Bool),
    (
        "Files",
        "PrivateUsersOwnership",
        Rule::OneOf(OWNERSHIP, true),
    ),
    ("Network", "Private", Rule::Tristate),
    ("Network", "VirtualEthernet", Rule::Tristate),
    ("Network", "VirtualEthernetExtra", Rule::VethExtra),
    ("Network", "Interface", Rule::IfnameList),
    ("Network", "MACVLAN", Rule::IfnameList),
    ("Network", "IPVLAN", Rule::IfnameList),
    ("Network", "Bridge", Rule::Ifname),
    ("Network", "Zone", Rule::Zone),
    ("Network", "Port", Rule::Port),
];

pub fn rule(section: &str, key: &str) -> Option<Rule> {
    RULES
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, r)| *r)
}

/// Checks `value` of `section`/`key`. The error completes "`Key=value` …": it reads
/// "is not a valid zone name: at most 12 characters (…)".
pub fn check(section: &str, key: &str, value: &str) -> Result<(), String> {
    match rule(section, key) {
        Some(r) => check_rule(r, value),
        None => Ok(()),
    }
}

fn fail<T>(what: &str, why: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("is not {what}: {why}"))
}

pub fn check_rule(rule: Rule, value: &str) -> Result<(), String> {
    match rule {
        Rule::Bool => parse_boolean(value)
            .map(drop)
            .ok_or_else(|| format!("is not a boolean ({BOOLEANS})")),
        Rule::Tristate if value.is_empty() => Ok(()),
        Rule::Tristate => check_rule(Rule::Bool, value),
        Rule::Ifname if value.is_empty() => Ok(()),
        Rule::Ifname => ifname(value).or_else(|why| fail("a valid network interface name", why)),
        Rule::IfnameList => {
            for name in value.split_whitespace() {
                ifname(name).or_else(|why| {
                    fail(
                        "a list of valid network interface names",
                        format!("`{name}`: {why}"),
                    )
                })?;
            }
            Ok(())
        }
        Rule::VethExtra => {
            let (host, guest) = value.split_once(':').unwrap_or((value, value));
            for (side, name) in [("host", host), ("container", guest)] {
                ifname(name).or_else(|why| {
                    fail(
                        "a valid HOST[:CONTAINER] interface pair",
                        format!("the {side} side `{name}`: {why}"),
                    )
                })?;
            }
            Ok(())
        }
        Rule::Zone => zone(value).or_else(|why| fail("a valid zone name", why)),
        Rule::AbsolutePath if value.is_empty() => Ok(()),
        Rule::AbsolutePath | Rule::RequiredAbsolutePath => {
            absolute(value).or_else(|why| fail("an absolute path", why))
        }
        Rule::PivotRoot => {
            for p in split_colons(value) {
                absolute(&p).or_else(|why| fail("PATH[:PATH] with absolute paths", why))?;
            }
            Ok(())
        }
        Rule::Bind => bind(value).or_else(|why| fail("a valid SOURCE[:DEST[:OPTIONS]]", why)),
        Rule::Tmpfs => {
            let path = split_colons(value).into_iter().next().unwrap_or_default();
            absolute(&path).or_else(|why| fail("a valid PATH[:OPTIONS]", why))
        }
        Rule::Overlay => overlay(value).or_else(|why| fail("a valid overlay PATH:…:DEST", why)),
        Rule::PrivateUsers => private_users(value).or_else(|why| {
            fail(
                "a PrivateUsers= value (a boolean, pick, identity, UID or UID:COUNT)",
                why,
            )
        }),
        Rule::Port => port(value).or_else(|why| fail("a valid [tcp|udp:]HOST[:CONTAINER]", why)),
        Rule::Hostname if value.is_empty() => Ok(()),
        Rule::Hostname => hostname(value).or_else(|why| fail("a valid hostname", why)),
        Rule::MachineId => machine_id(value).or_else(|why| fail("a valid machine ID", why)),
        Rule::Volatile => match value {
            "state" | "overlay" => Ok(()),
            _ if parse_boolean(value).is_some() => Ok(()),
            _ => fail("a Volatile= mode", "expected a boolean, state or overlay"),
        },
        Rule::OneOf(names, with_boolean) => {
            if names.contains(&value) || (with_boolean && parse_boolean(value).is_some()) {
                Ok(())
            } else {
                fail(
                    "one of the known values",
                    format!(
                        "expected {}{}",
                        names.join(", "),
                        if with_boolean { " or a boolean" } else { "" }
                    ),
                )
            }
        }
    }
}

const BOOLEANS: &str = "yes/no, true/false, on/off, 1/0";

/// systemd's `parse_boolean`.
pub fn parse_boolean(v: &str) -> Option<bool> {
    let l = v.to_ascii_lowercase();
    match l.as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => Some(true),
        "0" | "no" | "n" | "false" | "f" | "off" => Some(false),
        _ => None,
    }
}

/// systemd's `ifname_valid`: 1–15 bytes (the kernel's IFNAMSIZ is 16 with the NUL), printable
/// ASCII without space, `/` or `:`, not `.` or `..`, not all digits (the kernel would read a
/// number as an interface index).
pub fn ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".into());
    }
    if name.len() > 15 {
        return Err(format!(
            "{} bytes, at most 15 (the kernel's limit)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not interface names".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '/' || *c == ':')
    {
        return Err(format!(
            "{c:?} is not allowed (no spaces, `/`, `:` or non-ASCII)"
        ));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err("all digits (it would read as an interface index)".into());
    }
    Ok(())
}

/// `Zone=`: systemd names the bridge `vz-ZONE`, which must be an interface name.
pub fn zone(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty (systemd would name the bridge `vz-`)".into());
    }
    if name.len() > 12 {
        return Err(format!(
            "at most 12 characters (systemd names the interface vz-ZONE), this has {}",
            name.len()
        ));
    }
    ifname(&format!("vz-{name}"))
}

fn absolute(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        Ok(())
    } else if path.is_empty() {
        Err("empty".into())
    } else {
        Err(format!(
            "`{path}` is relative; systemd-nspawn wants an absolute path"
        ))
    }
}

/// Splits at `:` as systemd's `extract_many_words(…, ":", …)` does: `\:` is a colon inside a
/// path, `\\` a backslash.
pub fn split_colons(value: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("never empty").push(n);
                }
            }
            ':' => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

/// A host-side source: absolute, or `+`-prefixed absolute (inside the image).
fn source(path: &str) -> Result<(), String> {
    absolute(path.strip_prefix('+').unwrap_or(path)).map_err(|why| format!("source: {why}"))
}

const BIND_OPTIONS: &[&str] = &["rbind", "norbind", "idmap", "noidmap", "rootidmap"];

fn bind(value: &str) -> Result<(), String> {
    let parts = split_colons(value);
    let (src, dest, opts) = match parts.as_slice() {
        [src] => (src, None, None),
        [src, dest] => (src, Some(dest), None),
        [src, dest, opts] => (src, Some(dest), Some(opts)),
        _ => {
            return Err(
                "more than three `:`-separated fields (write `\\:` for a colon in a path)".into(),
            );
        }
    };
    // An empty source is a temporary directory below /var/tmp; it then needs a destination.
    if !(src.is_empty() && dest.is_some()) {
        source(src)?;
    }
    if let Some(dest) = dest {
        absolute(dest).map_err(|why| format!("destination: {why}"))?;
    }
    for opt in opts.iter().flat_map(|o| o.split(',')) {
        if !BIND_OPTIONS.contains(&opt) {
            return Err(format!(
                "unknown option `{opt}` (known: {})",
                BIND_OPTIONS.join(", ")
            ));
        }
    }
    Ok(())
}

fn overlay(value: &str) -> Result<(), String> {
    let parts = split_colons(value);
    if parts.len() < 2 {
        return Err("at least two paths (the directory trees, then the mount point)".into());
    }
    let (dest, sources) = parts.split_last().expect("two or more");
    absolute(dest).map_err(|why| format!("destination: {why}"))?;
    for (i, s) in sources.iter().enumerate() {
        // With three or more paths the upper (writable) tree may be empty: a temporary one.
        if s.is_empty() && parts.len() >= 3 && i == sources.len() - 1 {
            continue;
        }
        source(s)?;
    }
    Ok(())
}

fn private_users(value: &str) -> Result<(), String> {
    if matches!(value, "pick" | "identity") || parse_boolean(value).is_some() {
        return Ok(());
    }
    let (shift, count) = match value.split_once(':') {
        Some((s, c)) => (s, Some(c)),
        None => (value, None),
    };
    // parse_uid: a decimal number, not (uid_t)-1 nor the 16-bit -1 (65535).
    let shift: u32 = number(shift).ok_or_else(|| format!("`{shift}` is not a UID"))?;
    if shift == u32::MAX || shift == 65535 {
        return Err(format!("{shift} is not a valid UID"));
    }
    let count: u32 = match count {
        Some(c) => number(c).ok_or_else(|| format!("`{c}` is not a count"))?,
        None => 65536,
    };
    if count == 0 || u64::from(shift) + u64::from(count) > u64::from(u32::MAX) {
        return Err(format!("the range {shift}:{count} does not fit UIDs"));
    }
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn port(value: &str) -> Result<(), String> {
    let rest = value
        .strip_prefix("tcp:")
        .or_else(|| value.strip_prefix("udp:"))
        .unwrap_or(value);
    let (host, container) = rest.split_once(':').unwrap_or((rest, rest));
    for (side, p) in [("host", host), ("container", container)] {
        match number::<u16>(p) {
            Some(n) if n > 0 => {}
            _ => return Err(format!("{side} port `{p}`: a number from 1 to 65535")),
        }
    }
    Ok(())
}

/// systemd's `hostname_is_valid`: at most 64 characters, dot-separated labels of letters,
/// digits and `-`, no empty label.
fn hostname(name: &str) -> Result<(), String> {
    if name.len() > 64 {
        return Err(format!("{} characters, at most 64", name.len()));
    }
    if name.split('.').any(str::is_empty) {
        return Err("an empty label (a leading, trailing or double `.`)".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{c:?} is not allowed (letters, digits, `-` and `.`)"
        ));
    }
    Ok(())
}

fn machine_id(id: &str) -> Result<(), String> {
    let hex: String = if id.len() == 36 {
        let dashes = [8, 13, 18, 23];
        if !id
            .char_indices()
            .all(|(i, c)| (c == '-') == dashes.contains(&i))
        {
            return Err("a UUID has dashes at 8-4-4-4-12".into());
        }
        id.chars().filter(|c| *c != '-').collect()
    } else {
        id.to_string()
    };
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("expected 32 hexadecimal digits, or a UUID".into());
    }
    if hex.bytes().all(|b| b == b'0') {
        return Err("all zero".into());
    }
    Ok(())
}

/// Checks one assignment where it was written: `place` is `file:line` (or the generator), `from`
/// the origins of the variables that filled the value (`compose::var_origins`). The error reads
/// `place: Key=value (from --set key=…) is not …`.
pub fn check_at(
    place: &str,
    section: &str,
    key: &str,
    value: &str,
    from: &[String],
) -> anyhow::Result<()> {
    let list = super::nspawn::key_kind(section, key) == Some(super::nspawn::KeyKind::List);
    if list && value.is_empty() {
        return Ok(());
    }
    let Err(why) = check(section, key, value) else {
        return Ok(());
    };
    let from: Vec<String> = from
        .iter()
        .map(|o| {
            // `--set zone=VALUE` when VALUE is the whole value: said once, not twice.
            match o.strip_suffix(value) {
                Some(head) if o.starts_with("--set ") && head.ends_with('=') => format!("{head}…"),
                _ => o.clone(),
            }
        })
        .collect();
    let from = if from.is_empty() {
        String::new()
    } else {
        format!(" (from {})", from.join("; "))
    };
    anyhow::bail!("{place}: {key}={value}{from} {why}")
}
