//! Interrupted and killed commands: SIGINT, SIGTERM and SIGHUP during an unpack undo the
//! unfinished tree and say so (exit 128 + the signal); a SIGKILL leaves it, and the next
//! command that takes the machine's lock (a pull or build of that name, `rm`, `cache gc`)
//! sweeps it, never touching another live process's work. The name itself is always a whole
//! tree.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::env::{Running, TestEnv};
use crate::harness::fixture::{Image, arg};
use crate::harness::rootfs::{Compression, TreeSpec};

/// A plain tar with a 192 MiB payload: its unpack takes long enough to be caught.
fn big_image(env: &TestEnv) -> (Image, std::path::PathBuf) {
    let image = Image::from_spec(
        env,
        TreeSpec::new().with_payload(192 << 20),
        Compression::None,
    );
    let path = env.scratch("images").join("big.tar");
    std::fs::write(&path, &image.bytes).unwrap();
    (image, path)
}

/// Staging trees (`.#…` directories) in `machines`.
fn staging_dirs(machines: &Path) -> Vec<String> {
    crate::harness::dir_names(machines)
        .into_iter()
        .filter(|n| n.starts_with(".#") && machines.join(n).is_dir())
        .collect()
}

/// Starts `sandbox pull` and returns once its staging tree exists (it is unpacking).
fn pull_until_unpacking(
    env: &TestEnv,
    image: &Image,
    path: &Path,
    name: &str,
    force: bool,
) -> Running {
    let pin = format!("sha256:{}", image.hex());
    let mut args = vec!["pull", "--checksum", &pin];
    if force {
        args.push("--force");
    }
    args.extend([arg(path), name]);
    let mut running = env.spawn(&args);
    let started = Instant::now();
    loop {
        if !staging_dirs(&env.machines_dir()).is_empty() {
            return running;
        }
        assert!(
            running.is_running(),
            "the pull ended before it unpacked anything"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no staging tree after 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn signal(running: &Running, sig: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", sig, &running.pid().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
}

#[test]
fn sigint_sigterm_and_sighup_during_an_unpack_undo_it_and_say_so() {
    let env = TestEnv::new();
    let (image, path) = big_image(&env);
    for (sig, code) in [("INT", 130), ("TERM", 143), ("HUP", 129)] {
        let running = pull_until_unpacking(&env, &image, &path, "box", false);
        signal(&running, sig);
        let out = running.wait();
        assert_eq!(out.status.code(), Some(code), "SIG{sig}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("interrupted by SIG{sig}"))
                && out.stderr.contains("removed the unfinished"),
            "SIG{sig}: {}",
            out.stderr
        );
        assert!(
            staging_dirs(&env.machines_dir()).is_empty(),
            "SIG{sig} left a staging tree"
        );
        env.assert_machines(&[]);
    }
}

#[test]
fn what_a_killed_pull_left_is_swept_by_the_next_pull_gc_and_rm() {
    let env = TestEnv::new();
    let (image, path) = big_image(&env);
    let pin = format!("sha256:{}", image.hex());

    // The next pull of the name sweeps it and succeeds.
    pull_until_unpacking(&env, &image, &path, "box", false).kill();
    assert_eq!(
        staging_dirs(&env.machines_dir()).len(),
        1,
        "kill -9 left nothing to sweep"
    );
    let out = env
        .sandbox(&["pull", "--checksum", &pin, arg(&path), "box"])
        .success();
    assert!(
        out.stderr.contains("a process which died left"),
        "{}",
        out.stderr
    );
    assert!(staging_dirs(&env.machines_dir()).is_empty());
    image.assert_materialised(&env.machine("box"));

    // A killed --force keeps the old tree whole under the name; rm takes both.
    pull_until_unpacking(&env, &image, &path, "box", true).kill();
    assert_eq!(staging_dirs(&env.machines_dir()).len(), 1);
    image.assert_materialised(&env.machine("box"));
    env.sandbox(&["rm", "--yes", "box"]).success();
    assert!(staging_dirs(&env.machines_dir()).is_empty());
    env.assert_machines(&[]);

    // cache gc sweeps a dead process's tree, but not one a live pull is writing (it waits for
    // the live pull to finish, and then takes only trees whose machine lock is free).
    pull_until_unpacking(&env, &image, &path, "other", false).kill();
    let live = pull_until_unpacking(&env, &image, &path, "live", false);
    let gc = env.sandbox(&["--json", "cache", "gc"]).success().json();
    let swept: Vec<String> = gc["removed_staging"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(swept.len(), 1, "{gc}");
    assert!(swept[0].contains(".#other"), "{gc}");
    let out = live.wait();
    assert!(
        out.status.success(),
        "the live pull was disturbed: {}",
        out.stderr
    );
    image.assert_materialised(&env.machine("live"));
    env.assert_machines(&["live"]);
}
