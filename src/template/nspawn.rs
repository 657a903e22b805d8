//! Composing `.nspawn` fragments into one `NAME.nspawn` file.
//!
//! The merged file means what systemd-nspawn would make of all fragments read one after the
//! other: settings it accumulates (the `config_parse_*` functions that append, per systemd's
//! `nspawn-gperf.gperf` and systemd.nspawn(5)) keep every value in order; every other setting
//! keeps the last value, at the place it first appeared. Two additions: an empty assignment
//! (`Bind=`) of an accumulating key drops the values before it, so a later template can take
//! back what an earlier one bound; and a value the key already has is not added twice (except
//! for `Parameters=`, a command line). Sections come out in the order they first appear.
//!
//! Only the three sections and the keys systemd.nspawn(5) defines are accepted: a misspelt key
//! is an error here, where systemd would log a warning nobody reads. `Property=` and
//! `DeviceAllow=` are not `.nspawn` settings at all; they belong in a unit drop-in
//! (`[Service] DeviceAllow=…`).

use anyhow::{Result, bail};

use super::ini::Assignment;

/// Keys systemd-nspawn accumulates when they repeat.
const LIST_KEYS: &[(&str, &str)] = &[
    ("Exec", "Parameters"),
    ("Exec", "Environment"),
    ("Exec", "Capability"),
    ("Exec", "AmbientCapability"),
    ("Exec", "DropCapability"),
    ("Exec", "SystemCallFilter"),
    ("Exec", "CPUAffinity"),
    ("Files", "Bind"),
    ("Files", "BindReadOnly"),
    ("Files", "BindUser"),
    ("Files", "TemporaryFileSystem"),
    ("Files", "Inaccessible"),
    ("Files", "Overlay"),
    ("Files", "OverlayReadOnly"),
    ("Network", "Interface"),
    ("Network", "MACVLAN"),
    ("Network", "IPVLAN"),
    ("Network", "VirtualEthernetExtra"),
    ("Network", "Port"),
];

/// Keys where the last assignment wins.
const SCALAR_KEYS: &[(&str, &str)] = &[
    ("Exec", "Boot"),
    ("Exec", "Ephemeral"),
    ("Exec", "ProcessTwo"),
    ("Exec", "User"),
    ("Exec", "WorkingDirectory"),
    ("Exec", "PivotRoot"),
    ("Exec", "KillSignal"),
    ("Exec", "Personality"),
    ("Exec", "MachineID"),
    ("Exec", "PrivateUsers"),
    ("Exec", "NotifyReady"),
    ("Exec", "NoNewPrivileges"),
    ("Exec", "OOMScoreAdjust"),
    ("Exec", "Hostname"),
    ("Exec", "ResolvConf"),
    ("Exec", "LinkJournal"),
    ("Exec", "Timezone"),
    ("Exec", "SuppressSync"),
    ("Exec", "LimitCPU"),
    ("Exec", "LimitFSIZE"),
    ("Exec", "LimitDATA"),
    ("Exec", "LimitSTACK"),
    ("Exec", "LimitCORE"),
    ("Exec", "LimitRSS"),
    ("Exec", "LimitNOFILE"),
    ("Exec", "LimitAS"),
    ("Exec", "LimitNPROC"),
    ("Exec", "LimitMEMLOCK"),
    ("Exec", "LimitLOCKS"),
    ("Exec", "LimitSIGPENDING"),
    ("Exec", "LimitMSGQUEUE"),
    ("Exec", "LimitNICE"),
    ("Exec", "LimitRTPRIO"),
    ("Exec", "LimitRTTIME"),
    ("Files", "ReadOnly"),
    ("Files", "Volatile"),
    ("Files", "PrivateUsersChown"),
    ("Files", "PrivateUsersOwnership"),
    ("Network", "Private"),
    ("Network", "VirtualEthernet"),
    ("Network", "Bridge"),
    ("Network", "Zone"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    List,
    Scalar,
}

/// How `section`/`key` composes, or `None` when systemd.nspawn(5) has no such setting.
pub fn key_kind(section: &str, key: &str) -> Option<KeyKind> {
    if LIST_KEYS.contains(&(section, key)) {
        Some(KeyKind::List)
    } else if SCALAR_KEYS.contains(&(section, key)) {
        Some(KeyKind::Scalar)
    } else {
        None
    }
}

/// Every key systemd.nspawn(5) defines for `section`.
pub fn keys_of(section: &str) -> Vec<String> {
    LIST_KEYS
        .iter()
        .chain(SCALAR_KEYS)
        .filter(|(s, _)| *s == section)
        .map(|(_, k)| k.to_string())
        .collect()
}

/// Checks every assignment of a fragment against systemd.nspawn(5).
pub fn validate(assignments: &[Assignment], file: &str) -> Result<()> {
    for a in assignments {
        if !matches!(a.section.as_str(), "Exec" | "Files" | "Network") {
            let hint = match a.section.as_str() {
                "Service" | "Unit" | "Install" => {
                    "; unit settings go in a drop-in: a *.conf file in the template becomes \
                     /etc/systemd/system/systemd-nspawn@NAME.service.d/"
                }
                _ => "",
            };
            bail!(
                "{file}:{}: unknown section [{}] (a .nspawn file has [Exec], [Files] and [Network]){hint}",
                a.section_line,
                a.section
            );
        }
        if key_kind(&a.section, &a.key).is_none() {
            let hint = match a.key.as_str() {
                "DeviceAllow" | "Property" | "Delegate" | "ExecStartPre" | "ExecStartPost" => {
                    "; it is a unit setting: put it in a drop-in (*.conf) under [Service]"
                }
                _ => "",
            };
            bail!(
                "{file}:{}: `{}=` is not a setting of [{}] in systemd.nspawn(5){hint}",
                a.line,
                a.key,
                a.section
            );
        }
    }
    Ok(())
}

/// A section's keys in first-seen order, each with its values (one for a scalar key).
type Keys = Vec<(String, Vec<String>)>;

/// The merged settings: sections in first-seen order, each with keys in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    sections: Vec<(String, Keys)>,
}

impl Settings {
    /// Applies one fragment's assignments on top of what is there.
    pub fn apply<'a>(
        &mut self,
        assignments: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) {
        for (section, key, value) in assignments {
            let kind = key_kind(section, key).unwrap_or(KeyKind::Scalar);
            let idx = match self.sections.iter().position(|(s, _)| s == section) {
                Some(i) => i,
                None => {
                    self.sections.push((section.to_string(), Vec::new()));
                    self.sections.len() - 1
                }
            };
            let keys = &mut self.sections[idx].1;
            let values = match keys.iter().position(|(k, _)| k == key) {
                Some(i) => &mut keys[i].1,
                None => {
                    keys.push((key.to_string(), Vec::new()));
                    &mut keys.last_mut().expect("just pushed").1
                }
            };
            match kind {
                KeyKind::List if value.is_empty() => values.clear(),
                // `docker` and `podman` together would otherwise bind /sys/module twice.
                // Parameters= is a command line, where a repeated word can matter.
                KeyKind::List if key != "Parameters" && values.iter().any(|v| v == value) => {}
                KeyKind::List => values.push(value.to_string()),
                KeyKind::Scalar => *values = vec![value.to_string()],
            }
        }
    }

    /// Removes one value of a key; whether it was there.
    pub fn remove(&mut self, section: &str, key: &str, value: &str) -> bool {
        let Some((_, keys)) = self.sections.iter_mut().find(|(s, _)| s == section) else {
            return false;
        };
        let Some((_, values)) = keys.iter_mut().find(|(k, _)| k == key) else {
            return false;
        };
        let before = values.len();
        values.retain(|v| v != value);
        values.len() != before
    }

    /// The values a key ends up with.
    pub fn get(&self, section: &str, key: &str) -> &[String] {
        self.sections
            .iter()
            .find(|(s, _)| s == section)
            .and_then(|(_, keys)| keys.iter().find(|(k, _)| k == key))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The file text after `header` (comment lines, each starting with `#`).
    pub fn render(&self, header: &str) -> String {
        let mut out = String::from(header);
        for (section, keys) in &self.sections {
            if keys.iter().all(|(_, v)| v.is_empty()) {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{section}]\n"));
            for (key, values) in keys {
                for v in values {
                    out.push_str(&format!("{key}={v}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::ini;
    use super::*;

    fn merged(fragments: &[&str]) -> String {
        let mut s = Settings::default();
        for (i, f) in fragments.iter().enumerate() {
            let file = format!("f{i}.nspawn");
            let a = ini::parse(f, &file).unwrap();
            validate(&a, &file).unwrap();
            s.apply(
                a.iter()
                    .map(|a| (a.section.as_str(), a.key.as_str(), a.value.as_str())),
            );
        }
        s.render("")
    }

    #[test]
    fn list_keys_append_scalar_keys_replace() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "[Files]\nBind=/a\n",
                    "[Files]\nBind=/b\nBindReadOnly=/mnt\n",
                ],
                "[Files]\nBind=/a\nBind=/b\nBindReadOnly=/mnt\n",
            ),
            (
                &[
                    "[Exec]\nSystemCallFilter=add_key keyctl\n",
                    "[Exec]\nSystemCallFilter=bpf\n",
                ],
                "[Exec]\nSystemCallFilter=add_key keyctl\nSystemCallFilter=bpf\n",
            ),
            (
                &["[Network]\nBridge=br0\nZone=a\n", "[Network]\nBridge=br1\n"],
                "[Network]\nBridge=br1\nZone=a\n",
            ),
            (
                &[
                    "[Exec]\nCapability=CAP_NET_ADMIN\nPrivateUsers=pick\n",
                    "[Exec]\nCapability=CAP_SYS_MODULE\nPrivateUsers=no\n",
                ],
                "[Exec]\nCapability=CAP_NET_ADMIN\nCapability=CAP_SYS_MODULE\nPrivateUsers=no\n",
            ),
            (
                &[
                    "[Exec]\nEnvironment=A=1\n",
                    "[Exec]\nEnvironment=B=2\nEnvironment=A=3\n",
                ],
                "[Exec]\nEnvironment=A=1\nEnvironment=B=2\nEnvironment=A=3\n",
            ),
            // The same value twice is kept once, except in a command line.
            (
                &[
                    "[Files]\nBindReadOnly=/sys/module\n",
                    "[Files]\nBindReadOnly=/sys/module\nBindReadOnly=/mnt\n",
                ],
                "[Files]\nBindReadOnly=/sys/module\nBindReadOnly=/mnt\n",
            ),
            (
                &["[Exec]\nParameters=-v\n", "[Exec]\nParameters=-v\n"],
                "[Exec]\nParameters=-v\nParameters=-v\n",
            ),
            // An empty assignment takes back what came before.
            (
                &["[Files]\nBind=/a\nBind=/b\n", "[Files]\nBind=\nBind=/c\n"],
                "[Files]\nBind=/c\n",
            ),
            (
                &["[Files]\nBindReadOnly=/mnt\n", "[Files]\nBindReadOnly=\n"],
                "",
            ),
            // Repeated scalars inside one fragment: the last wins there too.
            (&["[Exec]\nBoot=no\nBoot=yes\n"], "[Exec]\nBoot=yes\n"),
        ];
        for (fragments, want) in cases {
            assert_eq!(merged(fragments), *want, "{fragments:?}");
        }
    }

    #[test]
    fn sections_keep_first_seen_order() {
        assert_eq!(
            merged(&[
                "[Network]\nZone=z\n",
                "[Exec]\nBoot=yes\n[Network]\nPort=80\n",
                "[Files]\nBind=/x\n"
            ]),
            "[Network]\nZone=z\nPort=80\n\n[Exec]\nBoot=yes\n\n[Files]\nBind=/x\n"
        );
    }

    #[test]
    fn unknown_sections_and_keys_are_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "[Service]\nDeviceAllow=/dev/dri rw\n",
                "n.nspawn:1: unknown section [Service] (a .nspawn file has [Exec], [Files] and [Network]); unit settings go in a drop-in",
            ),
            (
                "[Files]\nBindRO=/mnt\n",
                "n.nspawn:2: `BindRO=` is not a setting of [Files]",
            ),
            (
                "[Exec]\nBridge=br0\n",
                "n.nspawn:2: `Bridge=` is not a setting of [Exec]",
            ),
            (
                "[Exec]\nDeviceAllow=x\n",
                "n.nspawn:2: `DeviceAllow=` is not a setting of [Exec] in systemd.nspawn(5); it is a unit setting",
            ),
        ];
        for (text, want) in cases {
            let a = ini::parse(text, "n.nspawn").unwrap();
            let got = validate(&a, "n.nspawn").unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn the_key_tables_do_not_overlap() {
        for k in LIST_KEYS {
            assert!(!SCALAR_KEYS.contains(k), "{k:?}");
        }
        assert_eq!(key_kind("Files", "Bind"), Some(KeyKind::List));
        assert_eq!(key_kind("Network", "Bridge"), Some(KeyKind::Scalar));
        assert_eq!(key_kind("Files", "Bridge"), None);
    }
}
