//! `kill -9` at chosen moments of every phase: the binary stops itself at a named fault point
//! (`SANDBOX_FAULT_STOP`, see `src/faultpoint.rs`), the test sees it stopped and kills it, as
//! a power cut or the OOM killer would. After each kill: no half tree under a machine's name,
//! every blob hashes to its name, `cache fsck` is clean; then the same command again succeeds
//! with the right tree, resumes a download where the partial file ends (bytes counted in the
//! server's log), and leaves no staging tree or temp file of the dead process.

use std::path::{Path, PathBuf};

use crate::build::{recorder, write_template};
use crate::build_bake::{Resolv, image_with_shell};
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::{Image, arg, keyring};
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::ocimage::host_arch;
use crate::harness::rootfs::{Compression, TreeSpec};
use crate::harness::site::{Site, uri};
use crate::harness::{dir_names, files_under, sha256_hex};
use crate::oci::{allow_all, assert_rich_tree, registry_with, rich_image};

/// Runs `args` until the process stops itself at `point`, then kills it with SIGKILL.
fn kill_at(env: &TestEnv, args: &[&str], vars: &[(&str, &str)], point: &str) -> Outcome {
    let out = env.spawn_stopped_at(args, vars, point).kill();
    let name = point.split('@').next().unwrap_or(point);
    assert!(
        out.stderr.contains(&format!("fault point {name} reached")),
        "{}",
        out.stderr
    );
    out
}

/// Image bytes the server sent for `path`: bodies of 200 and 206 answers (not error pages).
fn image_bytes_sent(site: &Site, path: &str) -> u64 {
    site.nginx
        .log_for(path)
        .iter()
        .filter(|e| e.status == 200 || e.status == 206)
        .map(|e| e.body_bytes)
        .sum()
}

/// Partial downloads in the cache's tmp dir, with their sizes.
fn partials(env: &TestEnv) -> Vec<(PathBuf, u64)> {
    files_under(&env.cache_tmp_dir())
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "part"))
        .collect()
}

/// What must hold right after a kill: every blob hashes to its name, fsck finds nothing
/// wrong, and each machine name is either absent or a whole tree (`whole` checks one).
fn assert_consistent(env: &TestEnv, point: &str, names: &[&str], whole: &dyn Fn(&str, &Path)) {
    env.assert_cache_consistent(point);
    for name in names {
        let path = env.machine(name);
        if path.exists() {
            whole(name, &path);
        }
    }
}

/// What must hold after the command ran again and succeeded: no staging tree, no temp file.
fn assert_swept(env: &TestEnv, point: &str) {
    let staging: Vec<String> = dir_names(&env.machines_dir())
        .into_iter()
        .filter(|n| n.starts_with(".#"))
        .collect();
    assert!(staging.is_empty(), "{point}: left {staging:?}");
    let tmp = files_under(&env.cache_tmp_dir());
    assert!(tmp.is_empty(), "{point}: left in the cache's tmp: {tmp:?}");
}

#[test]
fn a_signed_tarball_pull_killed_anywhere_recovers_and_resumes() {
    let gpg = Gpg::new(KeyAlgo::Ed25519);
    let site = Site::new();
    let setup = TestEnv::new();
    // Incompressible: the download has hundreds of chunks.
    let image = Image::from_spec(
        &setup,
        TreeSpec::new().with_payload(4 << 20),
        Compression::Gzip,
    );
    let url = site.publish_signed(&gpg, "img", "os.tar.gz", &image.bytes, false);
    let path = uri("img/os.tar.gz");
    let points = [
        "sums.verified",
        "download.chunk@4",
        "download.received",
        "blob.published@2",
        "ref.written",
        "unpack.staging",
        "unpack.entry@5",
        "unpack.done",
        "publish.ready",
        "publish.renamed",
        "state.written",
    ];
    for point in points {
        let env = TestEnv::new();
        let key = keyring(&env, &gpg, false);
        let args = ["pull", "--keyring", arg(&key), &url, "box"];
        let served = image_bytes_sent(&site, &path);
        kill_at(&env, &args, &[], point);
        let served_to_killed = image_bytes_sent(&site, &path) - served;
        assert_consistent(&env, point, &["box"], &|_, p| image.assert_materialised(p));
        let partial: u64 = partials(&env).iter().map(|(_, n)| n).sum();
        let cached = env.blobs().contains(&image.hex());
        if point.starts_with("download.chunk") {
            assert!(partial > 0, "{point}: no partial download to resume");
        }

        let named = env.machine("box").exists();
        let before = image_bytes_sent(&site, &path);
        if named {
            // Killed after the tree got its name: the pull is done but for its record; the
            // same pull says so, and --force makes it again from the cache.
            env.sandbox(&args)
                .failure()
                .stderr_mentions(&["already exists", "--force"]);
            let forced = ["pull", "--force", "--keyring", arg(&key), &url, "box"];
            env.sandbox(&forced).success();
        } else {
            env.sandbox(&args).success();
        }
        let sent = image_bytes_sent(&site, &path) - before;
        image.assert_materialised(&env.machine("box"));
        let expected = if cached { 0 } else { image.len() - partial };
        assert_eq!(
            sent,
            expected,
            "{point}: the killed pull was sent {served_to_killed} bytes and kept {partial}; \
             the next one was sent {sent} of {}\n{}",
            image.len(),
            site.nginx.log_text()
        );
        assert_swept(&env, point);
        assert!(env.sandboxes_dir().join("state/box.json").is_file());
    }
}

#[test]
fn a_forced_pull_killed_while_swapping_keeps_one_whole_tree() {
    let site = Site::new();
    let setup = TestEnv::new();
    let old = Image::from_spec(&setup, TreeSpec::new(), Compression::Gzip);
    let new = Image::from_spec(
        &setup,
        TreeSpec::new().with_payload(1 << 20),
        Compression::Gzip,
    );
    site.put("a/os.tar.gz", &old.bytes);
    site.put("b/os.tar.gz", &new.bytes);
    let (old_url, new_url) = (site.url("a/os.tar.gz"), site.url("b/os.tar.gz"));
    for point in ["publish.ready", "publish.exchanged", "remove.entry@2"] {
        let env = TestEnv::new();
        env.sandbox(&["pull", "--verify=no", &old_url, "box"])
            .success();
        let args = ["pull", "--verify=no", "--force", &new_url, "box"];
        kill_at(&env, &args, &[], point);
        // The name holds the old tree or the new one, whole, never a mix.
        assert_consistent(&env, point, &["box"], &|_, p| {
            let marker = std::fs::read(p.join("etc/marker")).unwrap_or_default();
            if marker == old.spec.marker.as_bytes() {
                old.assert_materialised(p)
            } else {
                new.assert_materialised(p)
            }
        });
        env.sandbox(&args).success();
        new.assert_materialised(&env.machine("box"));
        assert_swept(&env, point);
    }
}

#[test]
fn an_oci_pull_killed_anywhere_recovers() {
    let setup = TestEnv::new();
    let (registry, _) = registry_with(&setup, &rich_image(host_arch()), "kill/app:1", None);
    let reference = registry.reference("kill/app:1");
    let (_, manifest) = registry.manifest("kill/app", "1");
    let layer_gets = || -> usize {
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                registry.gets(&format!(
                    "/v2/kill/app/blobs/{}",
                    l["digest"].as_str().unwrap()
                ))
            })
            .sum()
    };
    for point in [
        "oci.signature",
        "oci.manifest",
        "download.chunk",
        "download.received",
        "unpack.layer@2",
    ] {
        let env = TestEnv::new();
        allow_all(&env);
        let args = ["pull", "--tls-verify=false", &reference, "app"];
        kill_at(&env, &args, &[], point);
        assert_consistent(&env, point, &["app"], &|_, p| {
            assert_rich_tree(p, host_arch())
        });
        // Every layer whole in its partial file or the cache is not fetched again.
        let whole = files_under(&env.cache_tmp_dir())
            .iter()
            .filter(|(p, n)| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                manifest["layers"].as_array().unwrap().iter().any(|l| {
                    l["size"].as_u64() == Some(*n)
                        && name
                            .contains(l["digest"].as_str().unwrap().trim_start_matches("sha256:"))
                })
            })
            .count();
        if point == "download.received" {
            assert!(whole >= 1, "{point}: no whole partial layer to publish");
        }
        let layers = manifest["layers"].as_array().unwrap().len();
        let cached = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                env.blobs()
                    .contains(&l["digest"].as_str().unwrap()[7..].to_string())
            })
            .count();
        let before = layer_gets();
        env.sandbox(&args).success();
        assert_eq!(
            layer_gets() - before,
            layers - cached - whole,
            "{point}: layers fetched again ({cached} cached, {whole} whole in tmp)"
        );
        assert_rich_tree(&env.machine("app"), host_arch());
        assert_swept(&env, point);
    }
}

#[test]
fn an_images_pull_killed_after_the_index_recovers() {
    let mut lxc = crate::images::Lxc::new();
    let std = lxc.standard();
    let point = "images.index";
    let server = lxc.server.server();
    let args = [
        "pull",
        "--images-server",
        &server,
        "--keyring",
        arg(&lxc.keyring),
        "--arch",
        "amd64",
        "images:debian/bookworm",
        "deb",
    ];
    let env = &lxc.env;
    kill_at(env, &args, &[], point);
    // The newest amd64 build with a rootfs (the one after it has none).
    let latest = &std.default_amd64[2];
    assert_consistent(env, point, &["deb"], &|_, p| latest.assert_landed(p));
    env.sandbox(&args).success();
    latest.assert_landed(&env.machine("deb"));
    assert_swept(env, point);
}

#[test]
fn a_build_killed_anywhere_recovers() {
    let setup = TestEnv::new();
    let image = image_with_shell(&setup, Resolv::File);
    let bytes = std::fs::read(&image).unwrap();
    let manifest = format!(
        "source = \"file://{}\"\nchecksum = \"sha256:{}\"\n\n[build]\nrun = [\"echo one > /etc/baked\", \"echo two >> /etc/baked\"]\n",
        image.display(),
        sha256_hex(&bytes)
    );
    for point in [
        "unpack.entry@3",
        "build.layered",
        "bake.step",
        "build.host_files",
        "build.published",
    ] {
        let env = TestEnv::new();
        write_template(
            &env,
            "baked",
            &[("template.toml", manifest.as_bytes(), 0o644)],
        );
        let (machinectl, _) = recorder(&env, "machinectl", "");
        let vars = [("SANDBOX_MACHINECTL", arg(&machinectl))];
        let args = ["build", "baked", "web"];
        kill_at(&env, &args, &vars, point);
        let baked = |_: &str, p: &Path| {
            assert_eq!(
                std::fs::read_to_string(p.join("etc/baked")).unwrap(),
                "one\ntwo\n",
                "{point}: a tree under the name that is not the finished build"
            )
        };
        assert_consistent(&env, point, &["web"], &baked);
        let named = env.machine("web").exists();
        let again = env.sandbox_with_env(&args, &vars);
        let again = if named {
            // Killed after the tree got its name: the build is there; --force redoes it.
            again
                .failure()
                .stderr_mentions(&["already exists", "--force"]);
            env.sandbox_with_env(&["build", "--force", "baked", "web"], &vars)
        } else {
            again
        };
        again.success();
        baked("web", &env.machine("web"));
        assert!(
            env.root().join("etc/systemd/nspawn/web.nspawn").is_file(),
            "{point}"
        );
        assert_swept(&env, point);
    }
}

#[test]
fn cache_gc_and_rm_killed_half_way_leave_a_consistent_state() {
    let site = Site::new();
    let env = TestEnv::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("img/os.tar.gz", &image.bytes);
    let url = site.url("img/os.tar.gz");
    env.sandbox(&["pull", "--verify=no", &url, "box"]).success();
    // Three blobs no ref uses (a ref removed by hand): gc removes them one by one.
    for i in 0..3u8 {
        let data = vec![i; 1000 + i as usize];
        std::fs::write(env.blobs_dir().join(sha256_hex(&data)), data).unwrap();
    }
    let before = env.blobs().len();
    kill_at(&env, &["cache", "gc"], &[], "gc.removed@2");
    assert_eq!(env.blobs().len(), before - 2);
    assert_consistent(&env, "gc.removed", &["box"], &|_, p| {
        image.assert_materialised(p)
    });
    env.sandbox(&["cache", "gc"]).success();
    assert_eq!(env.blobs().len(), before - 3);
    image.assert_materialised(&env.machine("box"));

    // rm killed after the tree went: no half tree under the name; rm again finishes.
    kill_at(&env, &["rm", "--yes", "box"], &[], "rm.removed@1");
    assert!(!env.machine("box").exists(), "the tree was removed first");
    assert_consistent(&env, "rm.removed", &["box"], &|_, _| {});
    env.sandbox(&["rm", "--yes", "box"]).success();
    env.assert_machines(&[]);
    assert!(!env.sandboxes_dir().join("state/box.json").exists());
    assert_swept(&env, "rm.removed");

    // rm killed half-way through removing the tree: only a staging tree is left, swept next.
    env.sandbox(&["pull", "--verify=no", &url, "box"]).success();
    kill_at(&env, &["rm", "--yes", "box"], &[], "remove.entry@1");
    assert!(
        !env.machine("box").exists(),
        "a half-removed tree under the name"
    );
    env.sandbox(&["rm", "--yes", "box"]).success();
    assert_swept(&env, "remove.entry");
}

#[test]
fn every_fault_point_is_exercised_by_a_kill_test() {
    let here = include_str!("kill_points.rs");
    let points = sandboxes::faultpoint::POINTS;
    assert!(points.len() >= 20, "{points:?}");
    for (name, _) in points {
        assert!(
            here.contains(&format!("\"{name}\"")) || here.contains(&format!("\"{name}@")),
            "no kill test stops at {name}"
        );
    }
}
