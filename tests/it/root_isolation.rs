//! Under `--root DIR` nothing acts on the running host (issue: a trial `--root` run of `rm` must
//! not disable the real sandbox of that name). Every host-changing program is on PATH here as a
//! tripwire that records its call and fails; with `--root` and no `$SANDBOX_<NAME>` naming a
//! program, none of them may run, and the tool says what it skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::build::{BaseImage, testbase};
use crate::harness::env::TestEnv;

const PROGRAMS: [&str; 7] = [
    "machinectl",
    "zfs",
    "mount",
    "umount",
    "systemctl",
    "mountpoint",
    "btrfs",
];

/// A directory of tripwires and the log they append to.
fn tripwires(env: &TestEnv) -> (PathBuf, PathBuf) {
    let dir = env.scratch("tripwires");
    let log = dir.join("called.log");
    for name in PROGRAMS {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexit 1\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (dir, log)
}

fn run(env: &TestEnv, path: &str, args: &[&str]) -> crate::harness::env::Outcome {
    // Nothing named explicitly: the harness's environment must not lend a stand-in either.
    let mut vars: Vec<(&str, &str)> = vec![
        ("PATH", path),
        ("SANDBOX_ASSUME_ZFS", "1"),
        ("SANDBOX_MACHINECTL", ""),
        ("SANDBOX_ZFS", ""),
        ("SANDBOX_MOUNT", ""),
        ("SANDBOX_UMOUNT", ""),
        ("SANDBOX_SYSTEMCTL", ""),
        ("SANDBOX_MOUNTPOINT", ""),
    ];
    vars.sort();
    env.sandbox_with_env(args, &vars)
}

fn called(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn under_root_no_host_program_runs_and_what_was_skipped_is_said() {
    let env = TestEnv::new();
    let (bin, log) = tripwires(&env);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // The tripwires work: outside the tool, calling one is recorded.
    let status = std::process::Command::new(bin.join("machinectl"))
        .arg("probe")
        .status()
        .unwrap();
    assert!(!status.success());
    assert_eq!(called(&log), "machinectl probe\n");
    std::fs::remove_file(&log).unwrap();

    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    // On "ZFS" (SANDBOX_ASSUME_ZFS), with enable and start asked for.
    let out = run(
        &env,
        &path,
        &["--json", "build", "--enable", "testbase", "web"],
    )
    .success();
    let report = out.json();
    assert_eq!(report["handoff"], serde_json::json!([]), "{}", out.stdout);
    let why = report["handoff_skipped"].as_str().unwrap_or_default();
    assert!(
        why.contains("machinectl is not available under --root"),
        "{why}"
    );
    assert!(report["zfs_dataset"].is_null(), "{}", out.stdout);
    out.stderr_mentions(&["on ZFS", "plain directory"]);
    assert!(env.machine("web").join("etc/motd").is_file());

    let out = run(&env, &path, &["--json", "ls"]).success();
    assert_eq!(out.json()[0]["running"], serde_json::Value::Null);

    let out = run(&env, &path, &["--json", "rm", "--yes", "web"]).success();
    let skipped = out.json()["skipped"].to_string();
    assert!(
        skipped.contains("machinectl stop/disable web")
            && skipped.contains("not available under --root"),
        "{skipped}"
    );
    env.assert_machines(&[]);

    assert_eq!(called(&log), "", "a host program ran under --root");
}
