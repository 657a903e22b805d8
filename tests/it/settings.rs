//! Where the binary puts things and how much it says: `--sandboxes-dir` over `$SANDBOXES_DIR`
//! over `ROOT/var/lib/sandboxes`, `--machines-dir`, `-q`, and the `sandbox-pull` entry point.

use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg};
use crate::harness::rootfs::Compression;
use crate::harness::{dir_names, site::Site};

const SANDBOX: &str = env!("CARGO_BIN_EXE_sandbox");

/// A local gzip image in the test's scratch space.
fn local_image(env: &TestEnv) -> (Image, std::path::PathBuf) {
    let image = Image::new(env, Compression::Gzip);
    let path = env.scratch("local").join("os.tar.gz");
    std::fs::write(&path, &image.bytes).expect("writing the local tarball");
    (image, path)
}

#[test]
fn sandboxes_dir_env_is_used_and_the_flag_overrides_it() {
    let env = TestEnv::new();
    let (image, path) = local_image(&env);
    let from_env = env.scratch("from-env");
    let from_flag = env.scratch("from-flag");

    env.run_with(
        SANDBOX,
        &[("SANDBOXES_DIR", arg(&from_env))],
        &["pull", "--verify=no", arg(&path), "-"],
    )
    .success();
    assert!(
        dir_names(&from_env.join("cache/v1/blobs/sha256")).contains(&image.hex()),
        "$SANDBOXES_DIR was not used"
    );
    assert!(
        env.blobs().is_empty(),
        "ROOT/var/lib/sandboxes was used despite $SANDBOXES_DIR"
    );

    let other = Image::new(&env, Compression::Gzip);
    let other_path = env.scratch("local").join("other.tar.gz");
    std::fs::write(&other_path, &other.bytes).expect("writing the local tarball");
    env.run_with(
        SANDBOX,
        &[("SANDBOXES_DIR", arg(&from_env))],
        &[
            "--sandboxes-dir",
            arg(&from_flag),
            "pull",
            "--verify=no",
            arg(&other_path),
            "-",
        ],
    )
    .success();
    assert!(dir_names(&from_flag.join("cache/v1/blobs/sha256")).contains(&other.hex()));
    assert!(!dir_names(&from_env.join("cache/v1/blobs/sha256")).contains(&other.hex()));
}

#[test]
fn machines_dir_flag_moves_the_machine() {
    let env = TestEnv::new();
    let (image, path) = local_image(&env);
    let machines = env.scratch("machines");
    env.sandbox(&[
        "--machines-dir",
        arg(&machines),
        "pull",
        "--verify=no",
        arg(&path),
        "box",
    ])
    .success();
    image.assert_materialised(&machines.join("box"));
    env.assert_machines(&[]);
}

#[test]
fn quiet_success_prints_nothing() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let pin = format!("sha256:{}", image.hex());
    let out = env
        .sandbox(&[
            "-q",
            "pull",
            "--verify=checksum",
            "--checksum",
            &pin,
            &site.url("img/os.tar.gz"),
            "box",
        ])
        .success();
    assert_eq!(out.stderr, "", "-q must print only errors");
    assert_eq!(out.stdout, "", "without --json stdout carries nothing");
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn sandbox_pull_entry_point_is_sandbox_pull() {
    let env = TestEnv::new();
    let (image, path) = local_image(&env);
    env.run_with(
        env!("CARGO_BIN_EXE_sandbox-pull"),
        &[],
        &["--verify=no", arg(&path), "box"],
    )
    .success();
    image.assert_materialised(&env.machine("box"));
}
