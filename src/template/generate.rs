//! Fragments that cannot be static text, produced from inputs by built-in generators.
//!
//! A template asks for one with `generate = ["nvidia"]`; the output is composed at that
//! template's position, exactly as if the template had shipped it as files. The inputs are
//! values (the host's NVIDIA file list, the machine name, variables): finding them on the host
//! is the caller's I/O, so everything here stays pure.
//!
//! - `nvidia`: the files `nvidia-container-cli list` prints. Device nodes (`/dev/…`) are bound
//!   read-write and allowed in the unit's device cgroup; every other file (libraries, firmware,
//!   `nvidia-smi`, the persistenced socket) is bound read-only at the same path, and the library
//!   directories are listed in `/etc/ld.so.conf.d/` so `ldconfig` in the guest finds them.
//! - `extra-bridges`: systemd-nspawn takes one `Bridge=`. For each further bridge in the
//!   variable `extra_bridges` (space-separated), a `VirtualEthernetExtra=` pair is created and an
//!   `ExecStartPost=` on the host attaches its host side to the bridge; the guest side
//!   (`host1`, `host2`, …) gets DHCP in the network-config.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::yaml::{Node, Style};
use crate::digest::Digest;

/// At most this many extra bridges: one digit keeps the host interface name short.
pub const MAX_EXTRA_BRIDGES: usize = 9;
/// The variable `extra-bridges` reads.
pub const EXTRA_BRIDGES_VAR: &str = "extra_bridges";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generator {
    Nvidia,
    ExtraBridges,
}

impl Generator {
    pub fn parse(s: &str) -> Result<Generator> {
        match s {
            "nvidia" => Ok(Generator::Nvidia),
            "extra-bridges" => Ok(Generator::ExtraBridges),
            other => bail!("unknown generator `{other}` (known: nvidia, extra-bridges)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Generator::Nvidia => "nvidia",
            Generator::ExtraBridges => "extra-bridges",
        }
    }
}

/// What the host provides for the `nvidia` generator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NvidiaFiles {
    /// Device nodes, bound read-write and allowed in the device cgroup.
    pub devices: Vec<String>,
    /// Everything else, bound read-only.
    pub files: Vec<String>,
}

/// Parses the output of `nvidia-container-cli list`: one absolute path a line. Paths go into
/// `Bind=` lines, where `:` separates source and target and whitespace would split the value,
/// so such paths (never seen from the real tool) are refused rather than mangled.
pub fn parse_nvidia_list(text: &str) -> Result<NvidiaFiles> {
    let mut out = NvidiaFiles::default();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let path = line.trim();
        if path.is_empty() {
            continue;
        }
        let bad = !path.starts_with('/')
            || path.split('/').any(|c| c == "." || c == "..")
            || path
                .chars()
                .any(|c| c == ':' || c.is_whitespace() || c.is_control() || c == '\\');
        if bad {
            bail!(
                "nvidia-container-cli list, line {}: `{path}` is not a usable absolute path",
                i + 1
            );
        }
        if !seen.insert(path.to_string()) {
            continue;
        }
        if path.starts_with("/dev/") {
            out.devices.push(path.to_string());
        } else {
            out.files.push(path.to_string());
        }
    }
    Ok(out)
}

/// A generator's output, in the same shapes templates ship.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    /// `.nspawn` assignments: (section, key, value).
    pub nspawn: Vec<(String, String, String)>,
    /// Drop-in text for `systemd-nspawn@NAME.service`.
    pub dropin: String,
    /// A network-config fragment.
    pub network_config: Option<Node>,
    /// Files for the rootfs: (relative path, mode, bytes).
    pub rootfs_files: Vec<(String, u32, Vec<u8>)>,
}

pub fn nvidia(files: &NvidiaFiles) -> Generated {
    let mut g = Generated::default();
    let mut dropin = String::from("[Service]\n");
    for dev in &files.devices {
        g.nspawn.push(("Files".into(), "Bind".into(), dev.clone()));
        dropin.push_str(&format!("DeviceAllow={dev} rw\n"));
    }
    for f in &files.files {
        g.nspawn
            .push(("Files".into(), "BindReadOnly".into(), f.clone()));
    }
    if !files.devices.is_empty() {
        g.dropin = dropin;
    }
    let lib_dirs: BTreeSet<&str> = files
        .files
        .iter()
        .filter(|f| f.rsplit('/').next().is_some_and(|n| n.contains(".so")))
        .filter_map(|f| f.rsplit_once('/').map(|(dir, _)| dir))
        .filter(|d| !d.is_empty())
        .collect();
    if !lib_dirs.is_empty() {
        let mut conf = String::from(
            "# Written by sandbox build: the host's NVIDIA driver libraries, bound in read-only.\n",
        );
        for d in lib_dirs {
            conf.push_str(d);
            conf.push('\n');
        }
        g.rootfs_files.push((
            "etc/ld.so.conf.d/sandbox-nvidia.conf".into(),
            0o644,
            conf.into_bytes(),
        ));
    }
    g
}

/// Checks a host interface name as the kernel does (1–15 bytes, no `/`, `:`, whitespace).
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if !ok {
        bail!(
            "`{name}` is not a valid network interface name (1–15 characters, no `/`, `:` or spaces)"
        );
    }
    Ok(())
}

/// The host side of the `index`th extra veth of `machine` (1-based): `vb1-NAME`, or, when that
/// is over the 15-byte limit, a prefix of the name and 4 hex digits of its hash, so two long
/// names that share a prefix still get different interfaces.
pub fn extra_veth_name(machine: &str, index: usize) -> String {
    let prefix = format!("vb{index}-");
    let full = format!("{prefix}{machine}");
    if full.len() <= 15 {
        return full;
    }
    let hash = Digest::of(machine.as_bytes()).hex();
    let keep: String = machine.chars().take(15 - prefix.len() - 4).collect();
    format!("{prefix}{keep}{}", &hash[..4])
}

pub fn extra_bridges(machine: &str, bridges: &str, var_place: &str) -> Result<Generated> {
    let names: Vec<&str> = bridges.split_whitespace().collect();
    if names.len() > MAX_EXTRA_BRIDGES {
        bail!(
            "{var_place}: {} extra bridges; at most {MAX_EXTRA_BRIDGES}",
            names.len()
        );
    }
    let mut g = Generated::default();
    if names.is_empty() {
        return Ok(g);
    }
    let file: Arc<str> = Arc::from("generated:extra-bridges");
    let mut ethernets = Vec::new();
    let mut dropin = String::from("[Service]\n");
    for (i, bridge) in names.iter().enumerate() {
        validate_ifname(bridge).map_err(|e| anyhow::anyhow!("{var_place}: {e}"))?;
        let index = i + 1;
        let host_if = extra_veth_name(machine, index);
        let guest_if = format!("host{index}");
        g.nspawn.push((
            "Network".into(),
            "VirtualEthernetExtra".into(),
            format!("{host_if}:{guest_if}"),
        ));
        dropin.push_str(&format!(
            "ExecStartPost=ip link set dev {host_if} master {bridge} up\n"
        ));
        let dhcp = Node::map(
            vec![(
                Node::scalar("dhcp4", Style::Plain, &file, 1),
                Node::scalar("true", Style::Plain, &file, 1),
            )],
            &file,
            1,
        );
        ethernets.push((Node::scalar(&guest_if, Style::Plain, &file, 1), dhcp));
    }
    g.dropin = dropin;
    g.network_config = Some(Node::map(
        vec![
            (
                Node::scalar("version", Style::Plain, &file, 1),
                Node::scalar("2", Style::Plain, &file, 1),
            ),
            (
                Node::scalar("ethernets", Style::Plain, &file, 1),
                Node::map(ethernets, &file, 1),
            ),
        ],
        &file,
        1,
    ));
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_list_splits_devices_from_files() {
        let text = "/dev/nvidiactl\n/dev/nvidia0\n/usr/bin/nvidia-smi\n\
                    /usr/lib/x86_64-linux-gnu/libcuda.so.535.54.03\n\
                    /usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.535.54.03\n\
                    /lib/firmware/nvidia/535.54.03/gsp_ga10x.bin\n/run/nvidia-persistenced/socket\n\
                    /dev/nvidia0\n\n";
        let list = parse_nvidia_list(text).unwrap();
        assert_eq!(list.devices, vec!["/dev/nvidiactl", "/dev/nvidia0"]);
        assert_eq!(list.files.len(), 5);

        let g = nvidia(&list);
        assert_eq!(
            g.nspawn[0],
            ("Files".into(), "Bind".into(), "/dev/nvidiactl".into())
        );
        assert_eq!(
            g.nspawn[2],
            (
                "Files".into(),
                "BindReadOnly".into(),
                "/usr/bin/nvidia-smi".into()
            )
        );
        assert_eq!(g.nspawn.len(), 7);
        assert_eq!(
            g.dropin,
            "[Service]\nDeviceAllow=/dev/nvidiactl rw\nDeviceAllow=/dev/nvidia0 rw\n"
        );
        let (path, mode, conf) = &g.rootfs_files[0];
        assert_eq!(
            (path.as_str(), *mode),
            ("etc/ld.so.conf.d/sandbox-nvidia.conf", 0o644)
        );
        let conf = String::from_utf8(conf.clone()).unwrap();
        let dirs: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            dirs,
            vec![
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu/nvidia/current"
            ]
        );
    }

    #[test]
    fn nvidia_list_refuses_paths_that_would_break_bind_lines() {
        for bad in [
            "relative/lib.so",
            "/a/../etc/shadow",
            "/a b",
            "/a:b",
            "/a\\b",
        ] {
            let e = parse_nvidia_list(&format!("/dev/nvidia0\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("line 2"), "{bad}: {e}");
        }
    }

    #[test]
    fn extra_veth_names_fit_and_differ() {
        assert_eq!(extra_veth_name("web", 1), "vb1-web");
        assert_eq!(extra_veth_name("abcdefghijk", 2), "vb2-abcdefghijk");
        let a = extra_veth_name("averylongmachine-a", 1);
        let b = extra_veth_name("averylongmachine-b", 1);
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("vb1-averylo"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, extra_veth_name("averylongmachine-a", 1));
    }

    #[test]
    fn extra_bridges_make_veths_hooks_and_dhcp() {
        let g = extra_bridges("web", "br1  br2", "t/template.toml:3").unwrap();
        assert_eq!(
            g.nspawn,
            vec![
                (
                    "Network".into(),
                    "VirtualEthernetExtra".into(),
                    "vb1-web:host1".into()
                ),
                (
                    "Network".into(),
                    "VirtualEthernetExtra".into(),
                    "vb2-web:host2".into()
                ),
            ]
        );
        assert_eq!(
            g.dropin,
            "[Service]\nExecStartPost=ip link set dev vb1-web master br1 up\n\
             ExecStartPost=ip link set dev vb2-web master br2 up\n"
        );
        let yaml = super::super::yaml::emit(g.network_config.as_ref().unwrap());
        assert_eq!(
            yaml,
            "version: 2\nethernets:\n  host1:\n    dhcp4: true\n  host2:\n    dhcp4: true\n"
        );
        assert_eq!(
            extra_bridges("web", " ", "p").unwrap(),
            Generated::default()
        );
        let e = extra_bridges("web", "br1 bad/name", "t/template.toml:3")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t/template.toml:3: `bad/name`"), "{e}");
        assert!(extra_bridges("web", &"b ".repeat(10), "p").is_err());
    }
}
