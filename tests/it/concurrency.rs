//! Many users at once, as cron jobs and people on one NAS are: eight pulls of one image into
//! eight names download it once and all succeed; pulls of one name race and exactly one wins,
//! the others say why and nothing is mixed; `cache gc` during a pull waits for it and never
//! removes what it uses.

use std::time::Duration;

use crate::harness::env::{Running, TestEnv};
use crate::harness::fixture::Image;
use crate::harness::ocimage::host_arch;
use crate::harness::rootfs::{Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle, uri};
use crate::oci::{allow_all, assert_rich_tree, registry_with, rich_image};

const NAMES: [&str; 8] = ["n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"];

#[test]
fn eight_pulls_of_one_tarball_download_it_once() {
    let env = TestEnv::new();
    let site = Site::new();
    // Rate limited: every pull starts while the first is still downloading.
    let image = Image::from_spec(
        &env,
        TreeSpec::new().with_payload(128 * 1024),
        Compression::Gzip,
    );
    site.put("slow/os.tar.gz", &image.bytes);
    site.sha256_file("slow", "os.tar.gz", SumStyle::Text);
    let url = site.url("slow/os.tar.gz");
    let running: Vec<Running> = NAMES
        .iter()
        .map(|n| env.spawn(&["pull", "--verify=checksum", &url, n]))
        .collect();
    for r in running {
        r.wait().success();
    }
    for n in NAMES {
        image.assert_materialised(&env.machine(n));
    }
    env.assert_machines(&NAMES);
    assert_eq!(
        site.nginx.body_bytes_for(&uri("slow/os.tar.gz")),
        image.len(),
        "image bytes must cross the wire once:\n{}",
        site.nginx.log_text()
    );
}

#[test]
fn eight_pulls_of_one_oci_image_fetch_each_layer_once() {
    let env = TestEnv::new();
    allow_all(&env);
    let (registry, _) = registry_with(&env, &rich_image(host_arch()), "many:1", None);
    let reference = registry.reference("many:1");
    let running: Vec<Running> = NAMES
        .iter()
        .map(|n| env.spawn(&["pull", "--tls-verify=false", &reference, n]))
        .collect();
    for r in running {
        r.wait().success();
    }
    let (_, manifest) = registry.manifest("many", "1");
    for l in manifest["layers"].as_array().unwrap() {
        let path = format!("/v2/many/blobs/{}", l["digest"].as_str().unwrap());
        assert_eq!(registry.gets(&path), 1, "{path} fetched once");
    }
    for n in NAMES {
        assert_rich_tree(&env.machine(n), host_arch());
    }
}

#[test]
fn racing_pulls_of_one_name_have_one_winner_and_no_mix() {
    let env = TestEnv::new();
    let site = Site::new();
    let images: Vec<Image> = (0..3)
        .map(|_| {
            Image::from_spec(
                &env,
                TreeSpec::new().with_payload(64 * 1024),
                Compression::Gzip,
            )
        })
        .collect();
    let urls: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let rel = format!("slow/{i}/os.tar.gz");
            site.put(&rel, &image.bytes);
            site.url(&rel)
        })
        .collect();
    let running: Vec<Running> = urls
        .iter()
        .map(|u| env.spawn(&["pull", "--verify=no", u, "box"]))
        .collect();
    let outcomes: Vec<_> = running.into_iter().map(Running::wait).collect();
    let winners: Vec<usize> = (0..3).filter(|&i| outcomes[i].status.success()).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        outcomes.iter().map(|o| &o.stderr).collect::<Vec<_>>()
    );
    for (i, o) in outcomes.iter().enumerate() {
        if i != winners[0] {
            assert!(
                o.stderr.contains("machine `box` already exists") && o.stderr.contains("--force"),
                "{}",
                o.stderr
            );
        }
    }
    images[winners[0]].assert_materialised(&env.machine("box"));
    env.assert_machines(&["box"]);
}

#[test]
fn cache_gc_during_a_pull_waits_and_keeps_what_the_pull_uses() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    site.sha256_file("img", "os.tar.gz", SumStyle::Text);
    let url = site.url("img/os.tar.gz");
    // The image is in the cache with no ref yet: what gc would take from a careless pull.
    let pull = env.spawn_stopped_at(
        &["pull", "--verify=checksum", &url, "box"],
        &[],
        "blob.published@2",
    );
    let mut gc = env.spawn(&["cache", "gc"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(gc.is_running(), "gc did not wait for the pull");
    pull.resume();
    pull.wait().success();
    gc.wait().success();
    image.assert_materialised(&env.machine("box"));
    assert!(
        env.blobs().contains(&image.hex()),
        "gc took the pull's image"
    );
    env.sandbox(&["cache", "fsck"]).success();
}

#[test]
fn a_build_and_a_pull_of_one_name_have_one_winner() {
    let env = TestEnv::new();
    let site = Site::new();
    let pulled = Image::from_spec(
        &env,
        TreeSpec::new().with_payload(64 * 1024),
        Compression::Gzip,
    );
    site.put("slow/os.tar.gz", &pulled.bytes);
    let url = site.url("slow/os.tar.gz");
    let base = Image::new(&env, Compression::Gzip);
    let file = env.scratch("images").join("base.tar.gz");
    std::fs::write(&file, &base.bytes).unwrap();
    let manifest = format!(
        "source = \"file://{}\"\nchecksum = \"sha256:{}\"\n",
        file.display(),
        base.hex()
    );
    crate::build::write_template(&env, "t", &[("template.toml", manifest.as_bytes(), 0o644)]);
    let (machinectl, _) = crate::build::recorder(&env, "machinectl", "");
    let machinectl = machinectl.display().to_string();
    let pull = env.spawn(&["pull", "--verify=no", &url, "box"]);
    let build = env.spawn_with_env(
        &["build", "--no-start", "t", "box"],
        &[("SANDBOX_MACHINECTL", &machinectl)],
    );
    let (pull, build) = (pull.wait(), build.wait());
    assert_ne!(
        pull.status.success(),
        build.status.success(),
        "exactly one wins:\n{}\n{}",
        pull.stderr,
        build.stderr
    );
    let loser = if pull.status.success() { &build } else { &pull };
    assert!(loser.stderr.contains("already exists"), "{}", loser.stderr);
    if pull.status.success() {
        pulled.assert_materialised(&env.machine("box"));
    } else {
        base.assert_materialised(&env.machine("box"));
    }
    env.assert_machines(&["box"]);
}

#[test]
fn a_pull_waiting_for_a_lock_says_so_unless_quiet() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let url = site.url("img/os.tar.gz");
    for (quiet, name) in [(false, "loud"), (true, "quiet")] {
        // The first pull holds the machine's lock, stopped while it unpacks.
        let first =
            env.spawn_stopped_at(&["pull", "--verify=no", &url, name], &[], "unpack.staging");
        let mut args = vec!["pull", "--verify=no", &url, name];
        if quiet {
            args.insert(0, "-q");
        }
        let second = env.spawn(&args);
        std::thread::sleep(Duration::from_secs(1));
        first.resume();
        first.wait().success();
        let second = second.wait().failure();
        assert!(
            second.stderr.contains("already exists"),
            "{}",
            second.stderr
        );
        assert_eq!(
            second
                .stderr
                .contains("waiting for another pull into machine"),
            !quiet,
            "quiet={quiet}: {}",
            second.stderr
        );
        image.assert_materialised(&env.machine(name));
    }
}
