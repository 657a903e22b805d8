//! `sandbox host setup|undo|status` on a temp `--root` shaped like a TrueNAS SCALE host, with
//! recording stand-ins for mount, umount, mountpoint and systemctl: nothing is really mounted,
//! and the exact commands are asserted.

use std::os::unix::fs::symlink;
use std::path::Path;

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::recorder::Recorder;

fn run(env: &TestEnv, rec: &Recorder, pool: &Path, args: &[&str]) -> Outcome {
    let vars = rec.vars();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut full = vec!["--sandboxes-dir", arg(pool)];
    full.extend_from_slice(args);
    env.sandbox_with_env(&full, &vars)
}

/// A host with one sandbox's systemd files in /etc and two of the three network files shipped.
fn scale_host(env: &TestEnv) {
    let r = env.root();
    std::fs::create_dir_all(env.machine("web").join("etc")).unwrap();
    std::fs::write(env.machine("web").join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::create_dir_all(r.join("etc/systemd/nspawn")).unwrap();
    std::fs::write(
        r.join("etc/systemd/nspawn/web.nspawn"),
        "[Exec]\nBoot=yes\n",
    )
    .unwrap();
    let wants = r.join("etc/systemd/system/machines.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    symlink(
        "/lib/systemd/system/systemd-nspawn@.service",
        wants.join("systemd-nspawn@web.service"),
    )
    .unwrap();
    let dropin = r.join("etc/systemd/system/systemd-nspawn@web.service.d");
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::write(dropin.join("override.conf"), "[Service]\nMemoryMax=1G\n").unwrap();
    let lib = r.join("usr/lib/systemd/network");
    std::fs::create_dir_all(&lib).unwrap();
    for f in ["80-container-ve.network", "80-container-vz.network"] {
        std::fs::write(lib.join(f), "[Match]\n").unwrap();
    }
}

#[test]
fn setup_persists_binds_and_links_once_and_undo_takes_it_back() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    let pool = env.root().join("mnt/tank/sandboxes");
    let persist = pool.join("persist");
    let r = env.root();
    let root = r.display().to_string();
    scale_host(&env);

    run(&env, &rec, &pool, &["host", "setup"]).success();
    let etc = |p: &str| format!("{root}/etc/systemd/{p}");
    let bind = |from: &str, to: String| format!("mount --bind {}/{from} {to}", persist.display());
    assert_eq!(
        rec.changes(),
        [
            bind("machines", format!("{root}/var/lib/machines")),
            bind("nspawn", etc("nspawn")),
            bind("machines.target.wants", etc("system/machines.target.wants")),
            bind(
                "dropins/systemd-nspawn@.service.d",
                etc("system/systemd-nspawn@.service.d")
            ),
            bind(
                "dropins/systemd-nspawn@web.service.d",
                etc("system/systemd-nspawn@web.service.d")
            ),
            format!("systemctl --root={root} enable systemd-networkd.service"),
        ]
    );
    // The data moved to the pool (the stand-in mount did not bind it back, so the targets are
    // empty now: that shows it was moved, not copied).
    assert!(persist.join("machines/web/etc/os-release").is_file());
    assert!(persist.join("nspawn/web.nspawn").is_file());
    assert!(
        std::fs::read_link(persist.join("machines.target.wants/systemd-nspawn@web.service"))
            .is_ok()
    );
    assert!(
        persist
            .join("dropins/systemd-nspawn@web.service.d/override.conf")
            .is_file()
    );
    assert!(!env.machine("web").exists());
    for f in ["ve", "vz"] {
        let link = r.join(format!("etc/systemd/network/80-container-{f}.network"));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new(&format!(
                "/usr/lib/systemd/network/80-container-{f}.network"
            ))
        );
    }
    assert!(
        !r.join("etc/systemd/network/80-container-vb.network")
            .exists()
    );
    let unit =
        std::fs::read_to_string(r.join("etc/systemd/system/sandboxes-host.service")).unwrap();
    assert!(
        unit.contains(
            "--sandboxes-dir /mnt/tank/sandboxes --machines-dir /var/lib/machines host setup"
        ),
        "{unit}"
    );
    assert_eq!(
        std::fs::read_to_string(persist.join("sandboxes-host.service")).unwrap(),
        unit
    );
    assert!(
        std::fs::read_link(
            r.join("etc/systemd/system/multi-user.target.wants/sandboxes-host.service")
        )
        .is_ok()
    );

    // Again: nothing changes, nothing is mounted twice.
    rec.clear();
    let again = run(&env, &rec, &pool, &["--json", "host", "setup"]).success();
    assert_eq!(
        again.json()["actions"],
        serde_json::json!([]),
        "{}",
        again.stdout
    );
    assert_eq!(rec.changes(), Vec::<String>::new());

    let status = run(&env, &rec, &pool, &["--json", "host", "status"])
        .success()
        .json();
    let items = status["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for item in items {
        assert_eq!(item["bound"], true, "{item}");
        assert_eq!(item["persisted"], true, "{item}");
    }
    let net: Vec<(bool, bool)> = status["network_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["present"].as_bool().unwrap(),
                n["shipped"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(net, [(true, true), (true, true), (false, false)]);
    assert_eq!(status["networkd_enabled"], true);
    assert_eq!(status["unit"]["enabled"], true);
    let table = run(&env, &rec, &pool, &["host", "status"]).success().stdout;
    assert!(table.contains("machines.target.wants"), "{table}");
    assert!(table.contains("80-container-vb.network"), "{table}");

    rec.clear();
    run(&env, &rec, &pool, &["host", "undo"]).success();
    assert_eq!(
        rec.changes(),
        [
            format!("umount {}", etc("system/systemd-nspawn@web.service.d")),
            format!("umount {}", etc("system/systemd-nspawn@.service.d")),
            format!("umount {}", etc("system/machines.target.wants")),
            format!("umount {}", etc("nspawn")),
            format!("umount {root}/var/lib/machines"),
        ]
    );
    assert!(rec.mounted().is_empty());
    assert!(
        !r.join("etc/systemd/network/80-container-ve.network")
            .exists()
    );
    assert!(!r.join("etc/systemd/system/sandboxes-host.service").exists());
    assert!(
        !r.join("etc/systemd/system/multi-user.target.wants/sandboxes-host.service")
            .exists()
    );
    // The persisted data stays.
    assert!(persist.join("machines/web/etc/os-release").is_file());
    let status = run(&env, &rec, &pool, &["--json", "host", "status"])
        .success()
        .json();
    assert!(
        status["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["bound"] == false)
    );
}

#[test]
fn setup_keeps_an_admin_network_file_and_dry_run_changes_nothing() {
    let env = TestEnv::new();
    let rec = Recorder::new(&env.scratch("recorder"));
    let pool = env.root().join("mnt/tank/sandboxes");
    scale_host(&env);
    let own = env
        .root()
        .join("etc/systemd/network/80-container-ve.network");
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::fs::write(&own, "[Match]\nName=ve-*\n# mine\n").unwrap();

    let dry = run(&env, &rec, &pool, &["--json", "host", "setup", "--dry-run"]).success();
    assert!(!dry.json()["actions"].as_array().unwrap().is_empty());
    assert!(rec.changes().is_empty(), "{:?}", rec.changes());
    assert!(env.machine("web").is_dir());
    assert!(!pool.join("persist").exists());

    run(&env, &rec, &pool, &["host", "setup"]).success();
    run(&env, &rec, &pool, &["host", "undo"]).success();
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "[Match]\nName=ve-*\n# mine\n",
        "setup or undo touched the admin's own network file"
    );
}
