//! A real boot: a Debian bookworm minbase made by debootstrap, built into a sandbox by the
//! binary with a test template, booted with systemd-nspawn. A oneshot unit from the template's
//! `files/` checks from inside that the seed, the overlay and the hostname are there, writes
//! what it saw, and powers the guest off; the test then reads the result from the host.
//!
//! debootstrap takes about a minute, so its tarball is kept in `/var/tmp/sandboxes-it-boot/`
//! under the day's date. The mirror is the one this machine's apt uses (debootstrap's default
//! when apt names none). Without debootstrap or the mirror the test fails (it never skips: a
//! build that cannot boot is the thing this test exists to catch).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{read, recorder, write_template};
use crate::harness::apt_mirror;
use crate::harness::env::TestEnv;
use crate::harness::{sha256_hex, token};

const CACHE_DIR: &str = "/var/tmp/sandboxes-it-boot";

/// The day's bookworm minbase tarball, made with debootstrap when missing.
fn bookworm_tarball() -> PathBuf {
    let day = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y%m%d"])
            .output()
            .expect("running date")
            .stdout,
    )
    .expect("date prints ASCII");
    let dir = Path::new(CACHE_DIR);
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {CACHE_DIR}: {e}"));
    let tarball = dir.join(format!("bookworm-minbase-{}.tar.gz", day.trim()));
    if tarball.is_file() {
        return tarball;
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the boot test needs debootstrap: apt-get install -y debootstrap")
        });
    let tree = tempfile::tempdir_in(dir).expect("creating a debootstrap dir");
    let target = tree.path().join("rootfs");
    let mirror = apt_mirror::for_suite("bookworm");
    let shown = mirror.as_deref().unwrap_or("debootstrap's default mirror");
    let out = Command::new(debootstrap)
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus",
            "bookworm",
        ])
        .arg(&target)
        .args(mirror.as_deref())
        .output()
        .expect("running debootstrap");
    assert!(
        out.status.success(),
        "debootstrap bookworm from {shown} failed ({}); the boot test needs the Debian mirror:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let partial = dir.join(format!(".partial-{}.tar.gz", token()));
    let status = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(&target)
        .arg("-czf")
        .arg(&partial)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(status.success(), "packing the debootstrap tree failed");
    std::fs::rename(&partial, &tarball).expect("publishing the tarball");
    tarball
}

const CHECK_UNIT: &str = "[Unit]
Description=sandbox build boot check
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/sandbox-check

[Install]
WantedBy=multi-user.target
";

const CHECK_SCRIPT: &str = r#"#!/bin/sh
mkdir -p /var/lib/sandbox-check
{
  echo "hostname=$(cat /proc/sys/kernel/hostname)"
  echo "marker=$(cat /etc/sandbox-marker)"
  head -n1 /var/lib/cloud/seed/nocloud/user-data | sed 's/^/user-data=/'
  grep '^instance-id' /var/lib/cloud/seed/nocloud/meta-data | sed 's/^instance-id: */meta-instance-id=/'
  echo "machine-id=$(cat /etc/machine-id)"
  echo "pid1=$(cat /proc/1/comm)"
  echo "networkd=$(systemctl is-enabled systemd-networkd.service)"
  echo "baked=$(/usr/bin/hello)"
} > /var/lib/sandbox-check/result.tmp
mv /var/lib/sandbox-check/result.tmp /var/lib/sandbox-check/result
systemctl poweroff --no-block
"#;

/// A bake step that installs packages from the mirror with apt, as CI pre-baking does: it
/// needs the host's resolv.conf, /dev/null and /proc inside the chroot. cloud-init is one of
/// them: a minbase tree has none, and the build refuses a seed that could never apply.
const BAKE: &str = "[build]\nrun = [\"apt-get update -o Acquire::Retries=3 && apt-get install -y --no-install-recommends hello cloud-init && apt-get clean\"]\n";

#[test]
fn a_built_debian_sandbox_boots_and_sees_its_seed_and_overlay() {
    let tarball = bookworm_tarball();
    let bytes = std::fs::read(&tarball).unwrap();
    let env = TestEnv::new();
    let marker = token();
    let manifest = format!(
        "description = \"boot test\"\nsource = \"file://{}\"\nchecksum = \"sha256:{}\"\n\n{BAKE}",
        tarball.display(),
        sha256_hex(&bytes)
    );
    write_template(
        &env,
        "boottest",
        &[
            ("template.toml", manifest.as_bytes(), 0o644),
            (
                "user-data",
                b"#cloud-config\npackages:\n  - cloud-guest-utils\n",
                0o644,
            ),
            ("files/etc/sandbox-marker", marker.as_bytes(), 0o644),
            (
                "files/etc/systemd/system/sandbox-check.service",
                CHECK_UNIT.as_bytes(),
                0o644,
            ),
            (
                "files/usr/local/bin/sandbox-check",
                CHECK_SCRIPT.as_bytes(),
                0o755,
            ),
        ],
    );
    let wants = env
        .sandboxes_dir()
        .join("templates/boottest/files/etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/etc/systemd/system/sandbox-check.service",
        wants.join("sandbox-check.service"),
    )
    .unwrap();
    let (machinectl, _) = recorder(&env, "machinectl", "");
    // The step's apt output streams under its label.
    crate::build::build(&env, &machinectl, &["--no-start", "boottest", "boottest1"])
        .success()
        .stderr_mentions(&["[bake 1/1]", "Setting up hello"]);

    let root = env.machine("boottest1");
    // The .nspawn lives in ROOT/etc/systemd/nspawn, which systemd-nspawn does not read under
    // a test root; what it holds for this template (nothing network-related) is given on the
    // command line instead. No -U: booting with user namespacing fails here for cgroup
    // reasons unrelated to the build.
    let log = env.scratch("boot").join("nspawn.log");
    let out = Command::new("timeout")
        .args([
            "120",
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
        ])
        .args(["--private-network", "--link-journal=no", "--console=pipe"])
        .arg("--machine=boottest1")
        .arg("-D")
        .arg(&root)
        .arg("-b")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .status()
        .expect("running systemd-nspawn (apt-get install -y systemd-container)");
    let result_path = root.join("var/lib/sandbox-check/result");
    let result = std::fs::read_to_string(&result_path).unwrap_or_else(|e| {
        panic!(
            "the guest wrote no result ({e}); nspawn exited {out}:\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        )
    });
    assert!(
        out.success(),
        "systemd-nspawn exited {out}; the guest saw:\n{result}"
    );
    let value = |key: &str| {
        result
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in the guest's result:\n{result}"))
            .trim()
            .to_string()
    };
    assert_eq!(value("hostname"), "boottest1");
    assert_eq!(value("marker"), marker);
    assert_eq!(value("user-data"), "#cloud-config");
    assert_eq!(value("pid1"), "systemd");
    assert_eq!(value("baked"), "Hello, world!");
    // The build enabled it (the default drop-in gives the sandbox a veth link).
    assert_eq!(value("networkd"), "enabled");
    let meta = read(&root.join("var/lib/cloud/seed/nocloud/meta-data"));
    let id = crate::build::meta_value(&meta, "instance-id");
    assert!(value("meta-instance-id").contains(&id), "{result}");
    let machine_id = value("machine-id");
    assert!(
        machine_id.len() == 32 && machine_id.chars().all(|c| c.is_ascii_hexdigit()),
        "systemd did not set a machine id from the empty file: {machine_id:?}"
    );

    // User namespacing as the default drop-in asks for it (--private-users=pick with chown),
    // with a plain command: booting with -U fails here for cgroup reasons.
    let dropin = read(
        &env.root()
            .join("etc/systemd/system/systemd-nspawn@boottest1.service.d/10-sandbox.conf"),
    );
    for flag in ["--private-users=pick", "--private-users-ownership=chown"] {
        assert!(
            dropin.contains(flag),
            "the default drop-in lacks {flag}:\n{dropin}"
        );
    }
    let out = Command::new("timeout")
        .args([
            "60",
            "systemd-nspawn",
            "--quiet",
            "--register=no",
            "--keep-unit",
        ])
        .args(["--private-users=pick", "--private-users-ownership=chown"])
        .arg("--machine=boottest1")
        .arg("-D")
        .arg(&root)
        .args(["/bin/sh", "-c", "id -u; stat -c %u /etc/sandbox-marker"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running systemd-nspawn -U");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "systemd-nspawn --private-users=pick failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "inside the user namespace"
    );
    // On the host the tree now belongs to the picked range, not to root.
    use std::os::unix::fs::MetadataExt;
    let host_uid = std::fs::metadata(root.join("etc/sandbox-marker"))
        .unwrap()
        .uid();
    assert!(
        host_uid >= 65536,
        "the tree was not chowned into a picked range (uid {host_uid})"
    );
}
