//! Recording stand-ins for the host-changing programs (`machinectl`, `zfs`, `mount`, `umount`,
//! `systemctl`, `mountpoint`), for hosts without systemd as PID 1 and without ZFS.
//!
//! Each is a small shell script that appends `PROGRAM ARGS…` to one log and keeps just enough
//! state for the binary's own checks to see the effect of its commands: `mount --bind A B` adds
//! B to a list of mount points that `mountpoint -q` consults and `umount B` takes out again (no
//! real mount ever happens), `systemctl enable` makes `is-enabled` answer `enabled`, and
//! `machinectl list` prints a canned listing. The binary finds them through `$SANDBOX_<NAME>`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Recorder {
    dir: PathBuf,
}

const PROGRAMS: [(&str, &str); 6] = [
    ("machinectl", "SANDBOX_MACHINECTL"),
    ("zfs", "SANDBOX_ZFS"),
    ("mount", "SANDBOX_MOUNT"),
    ("umount", "SANDBOX_UMOUNT"),
    ("systemctl", "SANDBOX_SYSTEMCTL"),
    ("mountpoint", "SANDBOX_MOUNTPOINT"),
];

impl Recorder {
    /// Writes the scripts into `dir` (created), which must lie outside every path the binary
    /// owns (a `TestEnv::scratch` dir).
    pub fn new(dir: &Path) -> Recorder {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("creating {}: {e}", bin.display()));
        let r = Recorder {
            dir: dir.to_path_buf(),
        };
        let log = r.log_path();
        let mounts = r.dir.join("mounts");
        let listing = r.dir.join("machinectl-list");
        let enabled = r.dir.join("systemctl-enabled");
        std::fs::write(&mounts, "").expect("creating the mounts list");
        std::fs::write(&listing, "").expect("creating the machinectl listing");
        let record = format!("echo \"$(basename \"$0\") $*\" >> '{}'\n", log.display());
        let body = |name: &str| -> String {
            match name {
                "machinectl" => format!(
                    "if [ \"$1\" = list ]; then cat '{}'; fi\n",
                    listing.display()
                ),
                "mount" => format!(
                    "if [ \"$1\" = --bind ]; then echo \"$3\" >> '{m}'; fi\n",
                    m = mounts.display()
                ),
                "umount" => format!(
                    "grep -vxF \"$1\" '{m}' > '{m}.new'; mv '{m}.new' '{m}'\n",
                    m = mounts.display()
                ),
                "mountpoint" => format!("grep -qxF \"$2\" '{}'\n", mounts.display()),
                "systemctl" => format!(
                    "for a in \"$@\"; do case \"$a\" in\n\
                     enable) touch '{e}'; exit 0;;\n\
                     is-enabled) if [ -e '{e}' ]; then echo enabled; exit 0; fi; echo disabled; exit 1;;\n\
                     esac; done\n",
                    e = enabled.display()
                ),
                _ => String::new(),
            }
        };
        for (name, _) in PROGRAMS {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{record}{}", body(name)))
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        }
        r
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("commands.log")
    }

    /// `$SANDBOX_<NAME>` for every program.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        PROGRAMS
            .iter()
            .map(|(name, var)| (*var, self.dir.join("bin").join(name).display().to_string()))
            .collect()
    }

    /// What `machinectl list --no-legend` prints.
    pub fn set_machinectl_list(&self, text: &str) {
        std::fs::write(self.dir.join("machinectl-list"), text).expect("writing the listing");
    }

    /// Every command run so far, one `PROGRAM ARGS…` per entry.
    pub fn commands(&self) -> Vec<String> {
        match std::fs::read_to_string(self.log_path()) {
            Ok(text) => text.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading the command log: {e}"),
        }
    }

    /// The commands that change something: queries (`list`, `is-enabled`, `mountpoint`) left out.
    pub fn changes(&self) -> Vec<String> {
        self.commands()
            .into_iter()
            .filter(|c| {
                !(c.starts_with("mountpoint ")
                    || c.starts_with("machinectl list")
                    || c.contains(" is-enabled "))
            })
            .collect()
    }

    /// Forgets the commands recorded so far.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(self.log_path());
    }

    /// The paths the fake `mount` has bound and `umount` not yet released.
    pub fn mounted(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("mounts"))
            .expect("reading the mounts list")
            .lines()
            .map(str::to_string)
            .collect()
    }
}
