//! One record, one JSON shape: what `pull --json` says about an image is what `ls --json`,
//! the state record and `images --json` say about it, for tarballs and OCI images alike; a
//! dry run speaks JSON too.

use crate::build::{BaseImage, recorder, testbase};
use crate::harness::env::TestEnv;
use crate::harness::fixture::{Image, arg};
use crate::harness::ocimage::{init_image, single_image_layout};
use crate::harness::rootfs::Compression;

#[test]
fn pull_ls_images_and_the_state_record_agree() {
    let env = TestEnv::new();
    // A tarball pinned by checksum: verified, so ls must not show `-`.
    let image = Image::new(&env, Compression::Gzip);
    let path = env.scratch("images").join("tar.tar.gz");
    std::fs::write(&path, &image.bytes).unwrap();
    let checksum = format!("sha256:{}", crate::harness::sha256_hex(&image.bytes));
    let pulled = env
        .sandbox(&["--json", "pull", "--checksum", &checksum, arg(&path), "tar"])
        .success()
        .json();
    assert_eq!(pulled["verification"]["mode"], "checksum");

    // An OCI layout.
    let layout = env.scratch("layout");
    single_image_layout(&layout, &init_image(), "v1");
    let source = format!("oci-layout:{}:v1", layout.display());
    let oci = env
        .sandbox(&["--json", "pull", &source, "app"])
        .success()
        .json();
    assert_eq!(oci["verification"]["mode"], "digest");

    let rows = env.sandbox(&["--json", "ls"]).success().json();
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not listed: {rows}"))
            .clone()
    };
    for (name, pull) in [("tar", &pulled), ("app", &oci)] {
        let r = row(name);
        assert_eq!(r["verification"], pull["verification"], "{name}: {r}");
        assert_eq!(r["digest"], pull["digest"], "{name}: {r}");
        assert_eq!(r["source"], pull["source"], "{name}: {r}");
        assert!(r["template"].is_null(), "{r}");
        // The record on disk is the one ls read.
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.sandboxes_dir().join(format!("state/{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["verification"], pull["verification"]);
    }
    let table = env.sandbox(&["ls"]).success().stdout;
    let tar_line = table.lines().find(|l| l.starts_with("tar ")).unwrap();
    assert!(tar_line.contains("checksum"), "{table}");

    // `images` lists every cached image, OCI ones too, with the same verification word.
    let images = env.sandbox(&["--json", "images"]).success().json();
    let kinds: Vec<&str> = images
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"oci") && kinds.contains(&"tarball"),
        "{images}"
    );
    let oci_row = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "oci")
        .unwrap();
    assert_eq!(oci_row["verification"], "digest");
    assert!(oci_row["size"].as_u64().unwrap() > 0, "{oci_row}");

    // rm takes the pulled machine's record with it.
    env.sandbox(&["rm", "--yes", "tar"]).success();
    assert!(!env.sandboxes_dir().join("state/tar.json").exists());
}

#[test]
fn a_dry_run_speaks_json_without_file_contents() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let out = crate::build::build(&env, &machinectl, &["--dry-run", "testbase", "web"]);
    let text = out.success().stdout;
    assert!(text.starts_with("# dry run"), "{text}");
    let out = env.sandbox_with_env(
        &[
            "--json",
            "build",
            "--dry-run",
            "--enable",
            "testbase",
            "web",
        ],
        &[("SANDBOX_MACHINECTL", arg(&machinectl))],
    );
    let j = out.success().json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["name"], "web");
    assert_eq!(
        j["handoff"],
        serde_json::json!(["machinectl enable web", "machinectl start web"])
    );
    let files = j["files"].as_array().unwrap();
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "/var/lib/cloud/seed/nocloud/user-data" && f["mode"] == 0o600),
        "{j}"
    );
    // Seed files may hold secrets: no contents in JSON.
    assert!(!j.to_string().contains("runcmd"), "{j}");
    assert!(std::fs::read_to_string(&log).unwrap_or_default().is_empty());
    env.assert_machines(&[]);
}
