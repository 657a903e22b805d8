//! `sandbox build --output oci-layout:DIR[:TAG]`: the image keeps an OCI base's layers as
//! they are and adds one layer with what the build changed (a tarball base becomes a layer of
//! its own first); real skopeo reads the layout; pulling it back gives the tree of a local
//! build; two builds with one SOURCE_DATE_EPOCH give the same digests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::build::{BaseImage, build, recorder, snapshot, testbase, write_template};
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::ocimage::{self, Comp, Entry, ImageSpec, LayerSpec};
use crate::harness::{require_tool, run_tool};
use crate::oci::ALLOW_ALL;

const EPOCH: &str = "1700000000";

/// `sandbox build --output oci-layout:DIR:TAG TEMPLATE NAME` with SOURCE_DATE_EPOCH set.
fn export(env: &TestEnv, layout: &Path, tag: &str, template: &str, name: &str) -> Outcome {
    let output = format!("oci-layout:{}:{tag}", layout.display());
    env.sandbox_with_env(
        &["--json", "build", "--output", &output, template, name],
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    )
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let p = layout.join("blobs/sha256").join(hex);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

/// The manifest `tag` names in the layout's index.json.
fn manifest(layout: &Path, tag: &str) -> (String, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {index}"))
        .clone();
    let digest = entry["digest"].as_str().unwrap().to_string();
    let m = json_blob(layout, &digest);
    (digest, m)
}

/// The paths of a gzip layer, as GNU-style names without `./`.
fn layer_paths(layout: &Path, digest: &str) -> BTreeSet<String> {
    let gz = blob(layout, digest);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            p.trim_start_matches("./").trim_end_matches('/').to_string()
        })
        .collect()
}

/// The tree of a local `sandbox build --no-start TEMPLATE web` (machinectl recorded).
pub fn local_build(env: &TestEnv, template: &str) -> BTreeMap<PathBuf, String> {
    let (machinectl, _log) = recorder(env, "machinectl", "");
    build(env, &machinectl, &["--no-start", template, "web"]).success();
    snapshot(&env.machine("web"))
}

/// `umoci unpack` of the layout's `tag` into `bundle`; returns its rootfs.
fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run_tool(
        Command::new(require_tool("umoci"))
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
        None,
    );
    bundle.join("rootfs")
}

/// A template `name` on `source` with one file of its own, `/etc/motd`.
pub(crate) fn source_template(env: &TestEnv, name: &str, source: &str) {
    let manifest = format!("source = \"{source}\"\n");
    write_template(
        env,
        name,
        &[
            ("template.toml", manifest.as_bytes(), 0o644),
            ("files/etc/motd", b"from the template\n", 0o644),
        ],
    );
}

/// A policy.json that accepts any docker:// image (the tests pin digests themselves).
pub fn allow_all(env: &TestEnv) {
    std::fs::create_dir_all(env.sandboxes_dir()).unwrap();
    std::fs::write(env.sandboxes_dir().join("policy.json"), ALLOW_ALL).unwrap();
}

/// `skopeo inspect` of the layout: its digest and layers, read by a real tool.
fn skopeo_inspect(layout: &Path, tag: &str) -> Value {
    let skopeo = require_tool("skopeo");
    let out = run_tool(
        Command::new(skopeo)
            .arg("inspect")
            .arg(format!("oci:{}:{tag}", layout.display())),
        None,
    );
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn a_tarball_base_becomes_a_layer_and_the_image_pulls_back_as_the_local_build() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "oci export\n");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");

    // A directory that is not a layout is refused before anything is pulled, and kept.
    let notes = out.path().join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), "mine").unwrap();
    export(&env, &notes, "v1", "testbase", "web")
        .failure()
        .stderr_mentions(&["not empty and not an OCI image layout"]);
    assert_eq!(crate::harness::dir_names(&notes), ["todo.txt"]);
    assert!(
        !env.cache_dir().join("v1/blobs").exists(),
        "it pulled first"
    );

    let report = export(&env, &layout, "v1", "testbase", "web")
        .success()
        .json();
    env.assert_machines(&[]);
    let (digest, m) = manifest(&layout, "v1");
    assert_eq!(report["manifest_digest"], digest.as_str());
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{m}");
    assert_eq!(report["new_layers"], 2);
    // The annotations say what it was built from.
    assert_eq!(m["annotations"]["org.sandboxes.template"], "testbase");
    assert_eq!(
        m["annotations"]["org.sandboxes.base.digest"],
        format!("sha256:{}", crate::harness::sha256_hex(&image.bytes))
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    // The delta holds what the template wrote, not the base's files.
    let delta = layer_paths(&layout, layers[1]["digest"].as_str().unwrap());
    for wanted in ["etc/motd", "usr/local/bin/tool", "etc/hostname"] {
        assert!(delta.contains(wanted), "{wanted} missing from {delta:?}");
    }
    let base = layer_paths(&layout, layers[0]["digest"].as_str().unwrap());
    let untouched: Vec<&String> = base.iter().filter(|p| !delta.contains(*p)).collect();
    assert!(
        untouched.len() > 10,
        "the delta repeats the base: {delta:?}"
    );

    // skopeo reads the layout: same digest, same layers.
    let inspected = skopeo_inspect(&layout, "v1");
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);

    // Pulled on another host: the tree of a local build, and the build's .nspawn.
    let other = TestEnv::new();
    let source = format!("oci-layout:{}:v1", layout.display());
    other.sandbox(&["pull", &source, "web"]).success();
    let local = local_build(&env, "testbase");
    assert_eq!(
        snapshot(&other.machine("web")),
        local,
        "the pulled image differs from a local build"
    );
    assert_eq!(
        std::fs::read(other.machines_dir().join("web.nspawn")).unwrap(),
        std::fs::read(env.root().join("etc/systemd/nspawn/web.nspawn")).unwrap(),
    );

    // umoci, applying the layers its own way, makes the same tree.
    let bundle = umoci_unpack(&layout, "v1", &out.path().join("bundle"));
    assert_eq!(
        snapshot(&bundle),
        local,
        "umoci unpacks the image differently"
    );

    // A second build with the same epoch: the same digests, into the same layout.
    let again = export(&env, &layout, "v2", "testbase", "web")
        .success()
        .json();
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);
    assert_eq!(manifest(&layout, "v2").0, digest);
}

/// An OCI base in a layout: `/sbin/init`, an `/etc` with a file the template removes.
pub(crate) fn oci_base(dir: &Path) -> ocimage::BuiltImage {
    let spec = ImageSpec {
        arch: ocimage::host_arch(),
        layers: vec![
            LayerSpec {
                comp: Comp::Gzip,
                entries: vec![
                    Entry::Dir("sbin"),
                    Entry::File("sbin/init", b"#!/bin/sh\n".to_vec(), 0o755),
                    Entry::Dir("etc"),
                    Entry::File("etc/os-release", b"ID=test\n".to_vec(), 0o644),
                    Entry::File(
                        "etc/machine-id",
                        b"0123456789abcdef0123456789abcdef\n".to_vec(),
                        0o444,
                    ),
                ],
            },
            LayerSpec {
                comp: Comp::Zstd,
                entries: vec![
                    Entry::Dir("usr"),
                    Entry::Dir("usr/share"),
                    Entry::File("usr/share/big", vec![7u8; 100_000], 0o644),
                    Entry::File("etc/obsolete", b"old\n".to_vec(), 0o644),
                ],
            },
        ],
        entrypoint: vec![],
        cmd: vec!["/sbin/init"],
        env: vec![],
        last_layer_size_lie: 0,
    };
    let built = ocimage::build_image(dir, &spec);
    ocimage::write_index_json(dir, ocimage::OCI_MANIFEST, &built.manifest, "base");
    built
}

#[test]
fn an_oci_base_keeps_its_layers_and_the_delta_holds_only_the_changes() {
    let env = TestEnv::new();
    let scratch = tempfile::tempdir().unwrap();
    let base_dir = scratch.path().join("base");
    let base = oci_base(&base_dir);
    source_template(
        &env,
        "ocibase",
        &format!("oci-layout:{}:base", base_dir.display()),
    );
    let layout = scratch.path().join("out");
    let report = export(&env, &layout, "web", "ocibase", "web")
        .success()
        .json();
    assert_eq!(report["new_layers"], 1);
    let (digest, m) = manifest(&layout, "web");
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "{m}");
    // The base's blobs, unchanged (the zstd one too).
    for (i, b) in base.layers.iter().enumerate() {
        assert_eq!(layers[i]["digest"], b.digest().as_str());
        assert_eq!(layers[i]["size"], b.size);
        assert_eq!(blob(&layout, &b.digest()), blob(&base_dir, &b.digest()));
    }
    assert_eq!(
        layers[1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.base.digest"],
        base.manifest.digest().as_str()
    );
    let config = json_blob(&layout, m["config"]["digest"].as_str().unwrap());
    let base_config = json_blob(&base_dir, &base.config.digest());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(
        diff_ids[..2],
        base_config["rootfs"]["diff_ids"].as_array().unwrap()[..]
    );
    assert_eq!(config["config"]["Cmd"], base_config["config"]["Cmd"]);
    let delta = layer_paths(&layout, layers[2]["digest"].as_str().unwrap());
    assert!(delta.contains("etc/motd"), "{delta:?}");
    assert!(!delta.contains("usr/share/big"), "{delta:?}");
    assert!(!delta.contains("sbin/init"), "{delta:?}");

    // Pulled back: the tree of a local build from the same base.
    let other = TestEnv::new();
    other
        .sandbox(&[
            "pull",
            &format!("oci-layout:{}:web", layout.display()),
            "web",
        ])
        .success();
    let local = local_build(&env, "ocibase");
    assert_eq!(
        snapshot(&other.machine("web")),
        local,
        "the pulled image differs from a local build"
    );
    let inspected = skopeo_inspect(&layout, "web");
    assert_eq!(inspected["Digest"], digest.as_str());
}

#[test]
fn a_pushed_build_pulls_back_as_the_local_build_and_a_rebuild_uploads_nothing_new() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "pushed\n");
    let registry = crate::harness::registry::Registry::start(&env.scratch("registry"), None);
    let reference = registry.reference("team/web:1");
    let push = |reference: &str| {
        env.sandbox_with_env(
            &[
                "--json",
                "build",
                "--tls-verify=false",
                "--output",
                reference,
                "testbase",
                "web",
            ],
            &[("SOURCE_DATE_EPOCH", EPOCH)],
        )
        .success()
        .json()
    };
    let report = push(&reference);
    let digest = report["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(
        report["destination"],
        format!("{reference}@{digest}").as_str()
    );
    // Real skopeo reads what the registry holds.
    let skopeo = require_tool("skopeo");
    let inspected: Value = serde_json::from_slice(&run_tool(
        Command::new(&skopeo).args(["inspect", "--tls-verify=false", &reference]),
        None,
    ))
    .unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Labels"]["org.sandboxes.template"], "testbase");

    // The same build under another tag: the same digest, and no layer uploaded again.
    let uploads = registry.requests("PUT", "/v2/team/web/blobs/uploads/");
    assert_eq!(uploads, 3, "two layers and the config were uploaded");
    let again = push(&registry.reference("team/web:2"));
    assert_eq!(again["manifest_digest"], digest.as_str());
    assert_eq!(
        registry.requests("PUT", "/v2/team/web/blobs/uploads/"),
        uploads,
        "a rebuild uploaded blobs the registry already had"
    );

    // Pulled elsewhere: the tree of a local build.
    let other = TestEnv::new();
    allow_all(&other);
    other
        .sandbox(&["pull", "--tls-verify=false", &reference, "web"])
        .success();
    let local = local_build(&env, "testbase");
    assert_eq!(
        snapshot(&other.machine("web")),
        local,
        "the pulled image differs from a local build"
    );
}

#[test]
fn what_a_bake_step_removes_becomes_a_whiteout_that_pulls_and_umoci_honour() {
    use crate::build_bake::{Resolv, bakebase, image_with_shell};
    let env = TestEnv::new();
    let image = image_with_shell(&env, Resolv::File);
    bakebase(
        &env,
        &image,
        &["rm /usr/bin/true && echo baked > /etc/baked"],
    );
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    export(&env, &layout, "v1", "bakebase", "web").success();
    let (_, m) = manifest(&layout, "v1");
    let layers = m["layers"].as_array().unwrap();
    let delta = layer_paths(&layout, layers[1]["digest"].as_str().unwrap());
    assert!(delta.contains("usr/bin/.wh.true"), "{delta:?}");
    assert!(delta.contains("etc/baked"), "{delta:?}");
    assert!(!delta.contains("usr/bin/busybox"), "{delta:?}");

    let other = TestEnv::new();
    other
        .sandbox(&[
            "pull",
            &format!("oci-layout:{}:v1", layout.display()),
            "web",
        ])
        .success();
    assert!(!other.machine("web").join("usr/bin/true").exists());
    let bundle = umoci_unpack(&layout, "v1", &out.path().join("bundle"));
    let local = local_build(&env, "bakebase");
    assert!(!env.machine("web").join("usr/bin/true").exists());
    assert_eq!(snapshot(&other.machine("web")), local, "our pull differs");
    assert_eq!(snapshot(&bundle), local, "umoci differs");
}

#[test]
fn a_registry_base_builds_offline_from_the_cache() {
    let env = TestEnv::new();
    allow_all(&env);
    let scratch = tempfile::tempdir().unwrap();
    let base_dir = scratch.path().join("base");
    oci_base(&base_dir);
    let registry = crate::harness::registry::Registry::start(&env.scratch("registry"), None);
    registry.push(&base_dir, "base", "os/base:1");
    source_template(&env, "regbase", &registry.reference("os/base:1"));
    let layout = scratch.path().join("out");
    let output = format!("oci-layout:{}:web", layout.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["--json", "build", "--tls-verify=false"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--output", &output, "regbase", "web"]);
        env.sandbox_with_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)])
    };
    let online = run(&[]).success().json();
    drop(registry);
    run(&[]).failure();
    let offline = run(&["--offline"]).success().json();
    assert_eq!(offline["manifest_digest"], online["manifest_digest"]);
}

#[test]
fn a_push_to_a_registry_with_auth_takes_creds_and_never_shows_them() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "auth\n");
    let registry = crate::harness::registry::Registry::start(
        &env.scratch("registry"),
        Some(("ci", "pushpw-7f3a")),
    );
    let reference = registry.reference("team/web:1");
    let push = |extra: &[&str]| {
        let mut args = vec!["-v", "build", "--tls-verify=false", "--output", &reference];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["testbase", "web"]);
        env.sandbox(&args)
    };
    push(&[])
        .failure()
        .stderr_mentions(&["no push access to team/web", "--creds"]);
    let wrong = push(&["--creds", "ci:wrong-pw-91c2"])
        .failure()
        .stderr_mentions(&["no push access", "`ci`"]);
    assert!(!wrong.stderr.contains("wrong-pw-91c2"), "{}", wrong.stderr);
    let ok = push(&["--creds", "ci:pushpw-7f3a"]).success();
    assert!(
        !ok.stderr.contains("pushpw-7f3a") && !ok.stdout.contains("pushpw-7f3a"),
        "the password reached the output"
    );
    let skopeo = require_tool("skopeo");
    let inspected: Value = serde_json::from_slice(&run_tool(
        Command::new(&skopeo).args([
            "inspect",
            "--tls-verify=false",
            "--creds",
            "ci:pushpw-7f3a",
            &reference,
        ]),
        None,
    ))
    .unwrap();
    assert_eq!(inspected["Labels"]["org.sandboxes.template"], "testbase");
}
