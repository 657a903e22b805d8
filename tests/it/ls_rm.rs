//! `sandbox ls` and `sandbox rm` against a temp `--root`: machines made by a real pull, state
//! records written by hand in the shape `build` writes them, and recording stand-ins for
//! machinectl and zfs whose exact commands are asserted.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg};
use crate::harness::recorder::Recorder;
use crate::harness::rootfs::Compression;
use crate::harness::{files_under, require_tool, run_tool};

fn run(env: &TestEnv, rec: &Recorder, args: &[&str]) -> crate::harness::env::Outcome {
    let vars = rec.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.sandbox_with_env(args, &vars)
}

/// Pulls a real image from a local file as machine `name`.
fn pull(env: &TestEnv, name: &str) {
    let image = Image::new(env, Compression::Gzip);
    let path = env.scratch("images").join(format!("{name}.tar.gz"));
    std::fs::write(&path, &image.bytes).expect("writing the image");
    env.sandbox(&["pull", "--verify=no", arg(&path), name])
        .success();
}

fn write_record(env: &TestEnv, name: &str, record: serde_json::Value) -> PathBuf {
    let dir = env.sandboxes_dir().join("state");
    std::fs::create_dir_all(&dir).expect("creating the state dir");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&record).unwrap()).expect("writing a record");
    path
}

fn record(name: &str, env: &TestEnv, dataset: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "template": "debian-web",
        "templates": ["debian-base", "debian-web"],
        "content_hash": "sha256:00",
        "vars": {},
        "source": "images:debian/bookworm",
        "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "verification": {"mode": "signature", "key_fingerprint": "E7FB0CAEC8173D669066514CBAEFF88C22F6E216"},
        "version": "20260101_05:24",
        "machines_dir": env.machines_dir(),
        "rootfs": env.machine(name),
        "zfs_dataset": dataset,
        "nspawn_file": env.root().join(format!("etc/systemd/nspawn/{name}.nspawn")),
        "dropin_dir": env.root().join(format!("etc/systemd/system/systemd-nspawn@{name}.service.d")),
        "enabled": true,
        "created_at": "2026-01-01T00:00:00Z"
    })
}

#[test]
fn ls_lists_pulled_and_built_sandboxes_with_their_running_state() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    pull(&env, "pulled");
    pull(&env, "built");
    write_record(&env, "built", record("built", &env, None));
    // A record whose rootfs is gone is still listed; staging trees and files are not.
    write_record(
        &env,
        "gone",
        serde_json::json!({"template": "t", "source": {"reference": "https://x/y.tar.xz"}}),
    );
    std::fs::create_dir(env.machines_dir().join(".#pulled1234abcd")).unwrap();
    std::fs::write(env.machines_dir().join("pulled.nspawn"), "[Exec]\n").unwrap();
    rec.set_machinectl_list(
        "built container systemd-nspawn debian 12 10.0.0.2\nother container systemd-nspawn - - -\n",
    );

    let out = run(&env, &rec, &["--json", "ls"]).success();
    let rows = out.json();
    let rows = rows.as_array().expect("an array");
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["built", "gone", "pulled"], "{}", out.stdout);
    let built = &rows[0];
    assert_eq!(built["template"], "debian-web");
    assert_eq!(built["source"], "images:debian/bookworm");
    // The same object as `pull --json` and the record have.
    assert_eq!(built["verification"]["mode"], "signature");
    assert_eq!(
        built["verification"]["key_fingerprint"],
        "E7FB0CAEC8173D669066514CBAEFF88C22F6E216"
    );
    assert_eq!(built["running"], true);
    assert_eq!(built["present"], true);
    assert_eq!(rows[1]["present"], false);
    assert_eq!(rows[1]["source"], "https://x/y.tar.xz");
    assert_eq!(rows[2]["running"], false);
    assert!(rows[2]["template"].is_null());
    assert!(
        rec.commands()
            .contains(&"machinectl list --no-legend --no-pager".to_string()),
        "{:?}",
        rec.commands()
    );

    let table = run(&env, &rec, &["ls"]).success().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cols(lines[0]),
        [
            "NAME",
            "TEMPLATE",
            "BASE",
            "VERIFICATION",
            "RUNNING",
            "ENABLED",
            "STORAGE",
            "SHARES"
        ]
    );
    assert_eq!(
        cols(lines[1]),
        [
            "built",
            "debian-web",
            "images:debian/bookworm",
            "signature",
            "(BAEFF88C22F6E216)",
            "yes",
            "no",
            "-",
            "-"
        ]
    );
    // A pulled machine has a record too: where it came from and how it was checked.
    let pulled_from = env.scratch("images").join("pulled.tar.gz");
    assert_eq!(
        cols(lines[3]),
        [
            "pulled",
            "-",
            pulled_from.to_str().unwrap(),
            "no",
            "no",
            "no",
            "copy",
            "-"
        ]
    );

    // Without a machinectl that answers, running is unknown, not "no".
    let out = env
        .sandbox_with_env(
            &["--json", "ls"],
            &[("SANDBOX_MACHINECTL", "/nonexistent/machinectl")],
        )
        .success();
    assert!(out.json()[0]["running"].is_null(), "{}", out.stdout);
}

/// Every path `rm web` must remove, created in a temp root.
fn make_sandbox(env: &TestEnv, name: &str) -> Vec<PathBuf> {
    let root = env.root();
    pull(env, name);
    let nspawn_etc = root.join(format!("etc/systemd/nspawn/{name}.nspawn"));
    let nspawn_machines = env.machines_dir().join(format!("{name}.nspawn"));
    let dropin = root.join(format!(
        "etc/systemd/system/systemd-nspawn@{name}.service.d"
    ));
    let wants = root.join(format!(
        "etc/systemd/system/machines.target.wants/systemd-nspawn@{name}.service"
    ));
    for dir in [
        nspawn_etc.parent().unwrap(),
        &dropin,
        wants.parent().unwrap(),
    ] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&nspawn_etc, "[Network]\nVirtualEthernet=yes\n").unwrap();
    std::fs::write(&nspawn_machines, "[Exec]\nBoot=yes\n").unwrap();
    std::fs::write(dropin.join("override.conf"), "[Service]\nMemoryMax=1G\n").unwrap();
    symlink("/lib/systemd/system/systemd-nspawn@.service", &wants).unwrap();
    vec![
        env.machine(name),
        nspawn_etc,
        nspawn_machines,
        dropin,
        wants,
    ]
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[test]
fn rm_removes_every_artifact_and_nothing_else() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    let mut doomed = make_sandbox(&env, "web");
    doomed.push(write_record(
        &env,
        "web",
        record("web", &env, Some("tank/sandboxes/web")),
    ));
    let kept = make_sandbox(&env, "web2");
    write_record(&env, "web2", record("web2", &env, None));
    // The template-wide drop-in belongs to every sandbox, not to `web`.
    let template_dropin = env
        .root()
        .join("etc/systemd/system/systemd-nspawn@.service.d");
    std::fs::create_dir_all(&template_dropin).unwrap();
    std::fs::write(template_dropin.join("all.conf"), "[Service]\n").unwrap();
    // An immutable rootfs, as `pull --read-only` leaves it.
    run_tool(
        std::process::Command::new(require_tool("chattr"))
            .arg("+i")
            .arg(env.machine("web")),
        None,
    );
    rec.set_machinectl_list("web container systemd-nspawn debian 12 -\n");

    // The harness's own files (run logs, the recorder's log) change with every run.
    let ours = |p: &Path| {
        p.starts_with(env.root().join("runs")) || p.starts_with(env.root().join("scratch"))
    };
    let survivors_before: Vec<_> = files_under(env.root())
        .into_iter()
        .filter(|(p, _)| !doomed.iter().any(|d| p.starts_with(d)) && !ours(p))
        .collect();

    let out = run(&env, &rec, &["--json", "rm", "--yes", "web"]).success();
    assert!(
        rec.commands()
            .contains(&"machinectl list --no-legend --no-pager".to_string())
    );
    assert_eq!(
        rec.changes(),
        [
            "machinectl stop web",
            "machinectl disable web",
            "zfs destroy -r tank/sandboxes/web",
        ]
    );
    for p in &doomed {
        assert!(!exists(p), "{} was not removed", p.display());
    }
    let survivors_after: Vec<_> = files_under(env.root())
        .into_iter()
        .filter(|(p, _)| !ours(p))
        .collect();
    assert_eq!(
        survivors_before, survivors_after,
        "rm removed or changed something else"
    );
    for p in &kept {
        assert!(exists(p), "{} of another sandbox was removed", p.display());
    }
    assert!(exists(&template_dropin));
    let report = out.json();
    assert_eq!(report["stopped"], true);
    assert_eq!(report["zfs_dataset"], "tank/sandboxes/web");
    assert_eq!(
        report["removed"].as_array().unwrap().len(),
        doomed.len(),
        "{}",
        out.stdout
    );

    // Gone now: a second rm says so.
    run(&env, &rec, &["rm", "--yes", "web"])
        .failure()
        .stderr_mentions(&["no sandbox named `web`"]);
}

#[test]
fn rm_of_a_stopped_pulled_machine_runs_no_stop() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    pull(&env, "plain");
    run(&env, &rec, &["rm", "-y", "plain"]).success();
    assert_eq!(rec.changes(), ["machinectl disable plain"]);
    env.assert_machines(&[]);
}

#[test]
fn rm_refuses_missing_escaping_and_unconfirmed() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    run(&env, &rec, &["rm", "--yes", "nosuch"])
        .failure()
        .stderr_mentions(&["nosuch", "no sandbox"]);

    // `../x` would be ROOT/var/lib/x seen from the machines dir.
    let outside = env.root().join("var/lib/x");
    std::fs::create_dir_all(&outside).unwrap();
    run(&env, &rec, &["rm", "--yes", "../x"])
        .failure()
        .stderr_mentions(&["not a valid machine name"]);
    assert!(outside.is_dir());

    pull(&env, "keep");
    // stdin is /dev/null in the harness: no terminal, no --yes.
    run(&env, &rec, &["rm", "keep"])
        .failure()
        .stderr_mentions(&["--yes", "not a terminal"]);
    assert!(env.machine("keep").is_dir());
    assert!(rec.changes().is_empty(), "{:?}", rec.changes());
}

/// `x.nspawn` is a valid machine name and also the path of `x`'s settings file next to its
/// image: `rm x` must remove only what is x's, and nothing may be published over the other.
#[test]
fn rm_of_x_never_touches_the_machine_x_nspawn() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    pull(&env, "x.nspawn");
    pull(&env, "x");
    pull(&env, "y.nspawn");
    let other = env.machine("x.nspawn");
    let other_files = files_under(&other);
    assert!(
        other_files.len() > 3,
        "the image has files: {other_files:?}"
    );

    let rows = run(&env, &rec, &["--json", "ls"]).success().json();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x", "x.nspawn", "y.nspawn"]);

    let out = run(&env, &rec, &["--json", "rm", "--yes", "x"]).success();
    let report = out.json();
    assert!(!exists(&env.machine("x")), "x was not removed");
    assert_eq!(
        files_under(&other),
        other_files,
        "rm x changed the machine x.nspawn"
    );
    let removed: Vec<&str> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let record = env.sandboxes_dir().join("state/x.json");
    assert_eq!(
        removed,
        [env.machine("x").to_str().unwrap(), record.to_str().unwrap()],
        "{}",
        out.stdout
    );
    assert!(
        env.sandboxes_dir().join("state/x.nspawn.json").is_file(),
        "rm x removed the record of x.nspawn"
    );
    assert_eq!(report["kept"][0]["path"], other.to_str().unwrap());
    let reason = report["kept"][0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("is a directory, not a settings file")
            && reason.contains("the machine `x.nspawn`"),
        "{reason}"
    );
    out.stderr_mentions(&["leaving", "x.nspawn"]);

    // Only `y.nspawn` exists: there is no sandbox `y`, and the answer says what is there.
    run(&env, &rec, &["rm", "--yes", "y"])
        .failure()
        .stderr_mentions(&["no sandbox named `y`", "the machine `y.nspawn`"]);
    assert!(env.machine("y.nspawn").is_dir());

    // The other way round: `x`'s settings file is no machine, and no --force replaces it.
    pull(&env, "x");
    let settings = env.machines_dir().join("z.nspawn");
    std::fs::write(&settings, "[Exec]\nBoot=yes\n").unwrap();
    pull(&env, "z");
    let image = Image::new(&env, Compression::Gzip);
    let path = env.scratch("images").join("again.tar.gz");
    std::fs::write(&path, &image.bytes).unwrap();
    env.sandbox(&["pull", "--verify=no", "--force", arg(&path), "z.nspawn"])
        .failure()
        .stderr_mentions(&["z.nspawn", "is a regular file, not a machine directory"]);
    assert_eq!(std::fs::read(&settings).unwrap(), b"[Exec]\nBoot=yes\n");
    run(&env, &rec, &["rm", "--yes", "z.nspawn"])
        .failure()
        .stderr_mentions(&["no sandbox named `z.nspawn`"]);
    assert!(settings.is_file());

    // Each goes with its own rm.
    run(&env, &rec, &["rm", "--yes", "x.nspawn"]).success();
    run(&env, &rec, &["rm", "--yes", "z"]).success();
    assert!(!exists(&settings), "z's settings file stays behind");
    env.assert_machines(&["x", "y.nspawn"]);
}
