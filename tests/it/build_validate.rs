//! Values checked against the settings they fill, and the rendered `.nspawn` against the host,
//! before anything is pulled (#14.5): the real binary, `--root` temp dirs, the recording
//! machinectl of `build`.

use crate::build::{BaseImage, build, recorder, snapshot, testbase};
use crate::harness::env::TestEnv;

/// Nothing was pulled, built or handed off.
fn assert_untouched(env: &TestEnv, log: &std::path::Path) {
    assert!(env.blobs().is_empty(), "pulled: {:?}", env.blobs());
    env.assert_machines(&[]);
    assert!(!log.exists(), "machinectl ran");
    assert!(!env.root().join("etc/systemd/nspawn/web.nspawn").exists());
}

#[test]
fn a_zone_too_long_for_vz_zone_fails_the_dry_run_and_the_build_before_the_pull() {
    let env = TestEnv::new();
    testbase(&env, &BaseImage::new(&env), "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let want = "built-in:zone/zone.nspawn:2: Zone=averyveryverylongzonename (from --set zone=…) \
                is not a valid zone name: at most 12 characters (systemd names the interface vz-ZONE)";
    let before = snapshot(env.root());
    let set = "zone=averyveryverylongzonename";
    build(
        &env,
        &machinectl,
        &["--dry-run", "--set", set, "testbase+zone", "web"],
    )
    .failure()
    .stderr_mentions(&[want]);
    assert_eq!(snapshot(env.root()), before, "--dry-run changed the root");
    build(&env, &machinectl, &["--set", set, "testbase+zone", "web"])
        .failure()
        .stderr_mentions(&[want]);
    assert_untouched(&env, &log);
    // Twelve characters are fine.
    build(
        &env,
        &machinectl,
        &["--set", "zone=twelve-chars", "testbase+zone", "web"],
    )
    .success();
    let nspawn = std::fs::read_to_string(env.root().join("etc/systemd/nspawn/web.nspawn")).unwrap();
    assert!(nspawn.contains("Zone=twelve-chars\n"), "{nspawn}");
}

#[test]
fn a_bridge_name_with_a_space_fails_before_the_pull() {
    let env = TestEnv::new();
    testbase(&env, &BaseImage::new(&env), "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let want = "built-in:bridge/bridge.nspawn:2: Bridge=br 1 (from --set bridge=…) is not a valid \
                network interface name: ' ' is not allowed";
    for dry in [true, false] {
        let mut args = vec!["--set", "bridge=br 1", "testbase+bridge", "web"];
        if dry {
            args.insert(0, "--dry-run");
        }
        build(&env, &machinectl, &args)
            .failure()
            .stderr_mentions(&[want]);
    }
    assert_untouched(&env, &log);
}

#[test]
fn a_missing_bridge_is_named_and_a_root_without_sys_skips_the_check() {
    let env = TestEnv::new();
    testbase(&env, &BaseImage::new(&env), "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    // The --root tree has no /sys: nothing to check there, and the build says so.
    let dry = build(
        &env,
        &machinectl,
        &["--dry-run", "--set", "bridge=br7", "testbase+bridge", "web"],
    )
    .success();
    assert!(
        dry.stdout.contains("# host: Bridge=br7 not checked: ")
            && dry.stdout.contains(" has no /sys/class/net (--root)\n"),
        "{}",
        dry.stdout
    );

    // A root with a sysfs view of its interfaces, without br7.
    let net = env.root().join("sys/class/net");
    std::fs::create_dir_all(net.join("eth0")).unwrap();
    let want = format!(
        "set Bridge=br7, and this host has no interface `br7` ({} is missing)",
        net.join("br7").display()
    );
    for dry in [true, false] {
        let mut args = vec!["--set", "bridge=br7", "testbase+bridge", "web"];
        if dry {
            args.insert(0, "--dry-run");
        }
        build(&env, &machinectl, &args)
            .failure()
            .stderr_mentions(&["templates testbase, bridge", &want]);
    }
    assert_untouched(&env, &log);
    // An interface that is not a bridge.
    build(
        &env,
        &machinectl,
        &["--set", "bridge=eth0", "testbase+bridge", "web"],
    )
    .failure()
    .stderr_mentions(&["`eth0` on this host is not a bridge"]);
    assert_untouched(&env, &log);

    std::fs::create_dir_all(net.join("br7/bridge")).unwrap();
    build(
        &env,
        &machinectl,
        &["--set", "bridge=br7", "testbase+bridge", "web"],
    )
    .success();
    let nspawn = std::fs::read_to_string(env.root().join("etc/systemd/nspawn/web.nspawn")).unwrap();
    assert!(nspawn.contains("Bridge=br7\n"), "{nspawn}");
}

#[test]
fn docker_on_a_host_without_apparmor_leaves_the_apparmor_mask_out() {
    let env = TestEnv::new();
    testbase(&env, &BaseImage::new(&env), "m\n");
    let (machinectl, _log) = recorder(&env, "machinectl", "");
    let nspawn_file = env.root().join("etc/systemd/nspawn/web.nspawn");
    let module = env.root().join("sys/module");
    std::fs::create_dir_all(module.join("overlay")).unwrap();

    let dry = build(&env, &machinectl, &["--dry-run", "testbase+docker", "web"]).success();
    assert!(
        dry.stdout.contains("# host: Inaccessible=/sys/module/apparmor left out: /sys/module/apparmor does not exist on this host (no AppArmor)"),
        "{}",
        dry.stdout
    );
    build(&env, &machinectl, &["testbase+docker", "web"])
        .success()
        .stderr_mentions(&["leaving Inaccessible=/sys/module/apparmor out of the .nspawn file"]);
    let nspawn = std::fs::read_to_string(&nspawn_file).unwrap();
    assert!(
        nspawn.contains("# Left out: Inaccessible=/sys/module/apparmor (/sys/module/apparmor does not exist on this host (no AppArmor): nothing to hide"),
        "{nspawn}"
    );
    assert!(!nspawn.contains("\nInaccessible="), "{nspawn}");
    assert!(nspawn.contains("BindReadOnly=/sys/module\n"), "{nspawn}");

    // With AppArmor the mask stays.
    std::fs::create_dir_all(module.join("apparmor")).unwrap();
    build(&env, &machinectl, &["--force", "testbase+docker", "web"]).success();
    let nspawn = std::fs::read_to_string(&nspawn_file).unwrap();
    assert!(
        nspawn.contains("\nInaccessible=/sys/module/apparmor\n"),
        "{nspawn}"
    );
    assert!(!nspawn.contains("Left out"), "{nspawn}");
}
