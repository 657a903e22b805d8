//! Drop-ins for `systemd-nspawn@NAME.service`.
//!
//! Two files are written into `/etc/systemd/system/systemd-nspawn@NAME.service.d/`:
//! - `10-sandbox.conf`, the default: it resets `ExecStart=` and starts systemd-nspawn with user
//!   namespacing that works on TrueNAS SCALE (`--private-users=pick` with `chown` ownership;
//!   the unit's own `-U` settles on `map`, which breaks logins there) and `--settings=override`
//!   so `NAME.nspawn` has the last word;
//! - `20-sandbox-templates.conf`, every template's `*.conf` concatenated in composition order
//!   (within a template, by file name). One file keeps that order: separate files would be
//!   applied in the lexical order of their names instead.
//!
//! Both sort before `override.conf`, so `systemctl edit` still overrides them. Fragments are
//! checked for syntax only (unit files have hundreds of keys), and each must open with a
//! section header so that it cannot continue the previous fragment's section by accident.

use anyhow::{Result, bail};

use super::ini;

pub const DEFAULT_DROPIN: &str = "10-sandbox.conf";
pub const TEMPLATES_DROPIN: &str = "20-sandbox-templates.conf";

/// The command line the default drop-in starts; `%i` is the machine name.
pub const NSPAWN_COMMAND: &str = "systemd-nspawn --quiet --keep-unit --boot --link-journal=try-guest \
--network-veth --private-users=pick --private-users-ownership=chown --settings=override --machine=%i";

/// The directory (relative to the host root) that holds a machine's drop-ins.
pub fn dropin_dir(machine: &str) -> String {
    format!("etc/systemd/system/systemd-nspawn@{machine}.service.d")
}

pub fn render_default(header: &str) -> String {
    let gap = if header.is_empty() { "" } else { "\n" };
    format!("{header}{gap}[Service]\nExecStart=\nExecStart={NSPAWN_COMMAND}\n")
}

/// Checks a drop-in fragment: systemd syntax, and a section header before any assignment.
pub fn validate(text: &str, file: &str) -> Result<()> {
    ini::parse(text, file)?;
    Ok(())
}

/// Concatenates fragments `(label, text)` in order, each preceded by a comment naming it.
pub fn concatenate(header: &str, fragments: &[(String, String)]) -> Result<Option<String>> {
    if fragments.is_empty() {
        return Ok(None);
    }
    let mut out = String::from(header);
    for (label, text) in fragments {
        if label.contains('\n') {
            bail!("drop-in label `{label}` spans lines");
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("# from {label}\n"));
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dropin_resets_then_sets_exec_start() {
        let text = render_default("");
        let a = ini::parse(&text, "d").unwrap();
        let starts: Vec<&str> = a
            .iter()
            .filter(|a| a.key == "ExecStart")
            .map(|a| a.value.as_str())
            .collect();
        assert_eq!(starts[0], "");
        for flag in [
            "--quiet",
            "--keep-unit",
            "--boot",
            "--link-journal=try-guest",
            "--network-veth",
            "--private-users=pick",
            "--private-users-ownership=chown",
            "--settings=override",
            "--machine=%i",
        ] {
            assert!(
                starts[1].split(' ').any(|w| w == flag),
                "{flag} missing from {}",
                starts[1]
            );
        }
        assert!(starts[1].starts_with("systemd-nspawn "));
        assert_eq!(starts.len(), 2);
    }

    #[test]
    fn fragments_concatenate_in_order() {
        let got = concatenate(
            "# header\n",
            &[
                (
                    "docker/docker.conf".into(),
                    "[Service]\nExecStartPre=-modprobe overlay\n".into(),
                ),
                (
                    "nvidia/gpu.conf".into(),
                    "[Service]\nDeviceAllow=/dev/nvidia0 rw".into(),
                ),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            "# header\n\n# from docker/docker.conf\n[Service]\nExecStartPre=-modprobe overlay\n\n# from nvidia/gpu.conf\n[Service]\nDeviceAllow=/dev/nvidia0 rw\n"
        );
        assert_eq!(concatenate("# h\n", &[]).unwrap(), None);
    }

    #[test]
    fn fragments_must_open_with_a_section() {
        let e = validate("# c\nDeviceAllow=/dev/dri rw\n", "t/gpu.conf")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t/gpu.conf:2: `DeviceAllow=` comes before any [Section]"),
            "{e}"
        );
        validate(
            "[Service]\nDeviceAllow=/dev/dri rw\n[Unit]\nAfter=x\n",
            "t/gpu.conf",
        )
        .unwrap();
    }

    #[test]
    fn dropin_dir_is_per_machine() {
        assert_eq!(
            dropin_dir("web"),
            "etc/systemd/system/systemd-nspawn@web.service.d"
        );
    }
}
