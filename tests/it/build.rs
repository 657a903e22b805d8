//! `sandbox build` end to end: the real binary, a test template in `<sandboxes_dir>/templates`
//! over an image GNU tar packed, shipped snippets on top. machinectl and zfs cannot run here
//! (no systemd as PID 1, no ZFS module): recording stand-ins named by `$SANDBOX_MACHINECTL`
//! and `$SANDBOX_ZFS` log their arguments and the tests assert the exact commands. `boot`
//! boots a real Debian sandbox with systemd-nspawn.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::gpg::{Gpg, KeyAlgo};
use crate::harness::rootfs::{self, Compression, TreeSpec};
use crate::harness::site::Site;
use crate::harness::{dir_names, sha256_hex};

/// An image with what the fix-ups act on: a filled machine-id, a dangling resolv.conf
/// symlink, a securetty without pseudo-terminals, cloud-init disabled, a networkd unit.
pub struct BaseImage {
    pub spec: TreeSpec,
    pub bytes: Vec<u8>,
}

impl BaseImage {
    pub fn new(env: &TestEnv) -> BaseImage {
        BaseImage::made(env, true)
    }

    /// The same image without cloud-init (a minbase tree, an application image).
    pub fn without_cloud_init(env: &TestEnv) -> BaseImage {
        BaseImage::made(env, false)
    }

    fn made(env: &TestEnv, cloud_init: bool) -> BaseImage {
        let spec = TreeSpec::new();
        let dir = tempfile::tempdir_in(env.scratch("trees")).unwrap();
        let d = dir.path();
        rootfs::build_tree(d, &spec);
        let put = |rel: &str, data: &[u8]| {
            let p = d.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        };
        put("etc/machine-id", b"0123456789abcdef0123456789abcdef\n");
        put("etc/hostname", b"buildhost\n");
        put("etc/securetty", b"console\ntty1\npts/0\n");
        put("etc/cloud/cloud-init.disabled", b"disabled by the image\n");
        // A cloud image: the build refuses a seed for an image without cloud-init.
        if cloud_init {
            put("usr/bin/cloud-init", b"#!/bin/sh\n");
        }
        put(
            "usr/lib/systemd/system/systemd-networkd.service",
            b"[Unit]\n",
        );
        put(
            "usr/lib/systemd/system/systemd-networkd.socket",
            b"[Unit]\n",
        );
        std::os::unix::fs::symlink("usr/lib", d.join("lib")).unwrap();
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            d.join("etc/resolv.conf"),
        )
        .unwrap();
        let bytes = Compression::Xz.compress(&rootfs::pack(d, "."));
        BaseImage { spec, bytes }
    }

    /// Writes the image into scratch space and returns its path.
    pub fn file(&self, env: &TestEnv) -> PathBuf {
        let path = env
            .scratch("images")
            .join(format!("base-{}.tar.xz", self.spec.marker));
        std::fs::write(&path, &self.bytes).unwrap();
        path
    }
}

/// Writes `<sandboxes_dir>/templates/NAME/…` from (relative path, content, mode).
pub fn write_template(env: &TestEnv, name: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
    let dir = env.sandboxes_dir().join("templates").join(name);
    for (rel, data, mode) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

/// A script that appends its arguments (one line per call) to `log` and prints `stdout`.
pub fn recorder(env: &TestEnv, name: &str, stdout: &str) -> (PathBuf, PathBuf) {
    let dir = env.scratch("bin");
    let log = dir.join(format!("{name}.log"));
    let script = dir.join(name);
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nprintf '%s' '{stdout}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .map(|t| t.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

const USER_DATA: &str = "#cloud-config\npackages:\n  - curl\nruncmd:\n  - [touch, /run/base-ran]\n";
const NETWORK: &str = "version: 2\nethernets:\n  host0:\n    dhcp4: true\n";

/// The test template `testbase`: the image pinned by checksum, a user-data, a network-config,
/// a `files/` overlay with a marker and an executable.
pub fn testbase(env: &TestEnv, image: &BaseImage, overlay_marker: &str) {
    let path = image.file(env);
    let manifest = format!(
        "description = \"test base\"\nsource = \"file://{}\"\nchecksum = \"sha256:{}\"\n",
        path.display(),
        sha256_hex(&image.bytes)
    );
    write_template(
        env,
        "testbase",
        &[
            ("template.toml", manifest.as_bytes(), 0o644),
            ("user-data", USER_DATA.as_bytes(), 0o644),
            ("network-config", NETWORK.as_bytes(), 0o644),
            ("files/etc/motd", overlay_marker.as_bytes(), 0o644),
            ("files/usr/local/bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        ],
    );
}

pub fn build(env: &TestEnv, machinectl: &Path, args: &[&str]) -> Outcome {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    env.sandbox_with_env(&full, &[("SANDBOX_MACHINECTL", arg(machinectl))])
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn meta_value(meta_data: &str, key: &str) -> String {
    meta_data
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in meta-data:\n{meta_data}"))
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_string()
}

#[test]
fn builds_a_template_with_a_snippet_and_hands_off() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "overlay-1\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["testbase+docker", "web"]).success();

    let root = env.machine("web");
    rootfs::assert_tree(&root, &image.spec);
    let seed = root.join("var/lib/cloud/seed/nocloud");
    let meta = read(&seed.join("meta-data"));
    let id = meta_value(&meta, "instance-id");
    assert!(
        id.len() == 24
            && id.starts_with("sandbox-")
            && id[8..].chars().all(|c| c.is_ascii_hexdigit()),
        "instance-id {id:?}"
    );
    assert_eq!(meta_value(&meta, "local-hostname"), "web");
    let user_data = read(&seed.join("user-data"));
    assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
    let curl = user_data.find("- curl").expect("curl from testbase");
    let docker = user_data
        .find("- docker.io")
        .expect("docker.io from docker");
    assert!(
        curl < docker,
        "testbase's packages come first:\n{user_data}"
    );
    assert!(read(&seed.join("network-config")).contains("dhcp4: true"));
    assert_eq!(
        std::fs::metadata(seed.join("user-data")).unwrap().mode() & 0o777,
        0o600
    );
    assert!(!root.join("etc/cloud/cloud-init.disabled").exists());

    // Fix-ups.
    assert_eq!(std::fs::read(root.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(read(&root.join("etc/hostname")), "web\n");
    let resolv = root.join("etc/resolv.conf").symlink_metadata().unwrap();
    assert!(
        resolv.is_file() && resolv.len() == 0,
        "resolv.conf: {resolv:?}"
    );
    let securetty = read(&root.join("etc/securetty"));
    for i in 0..10 {
        assert_eq!(
            securetty
                .lines()
                .filter(|l| *l == format!("pts/{i}"))
                .count(),
            1,
            "{securetty}"
        );
    }
    assert_eq!(
        std::fs::read_link(
            root.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        )
        .unwrap(),
        Path::new("/usr/lib/systemd/system/systemd-networkd.service")
    );
    // The overlay.
    assert_eq!(read(&root.join("etc/motd")), "overlay-1\n");
    let tool = std::fs::metadata(root.join("usr/local/bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o755);

    // Host side.
    let nspawn = read(&env.root().join("etc/systemd/nspawn/web.nspawn"));
    assert!(
        nspawn.contains("SystemCallFilter=add_key keyctl bpf"),
        "{nspawn}"
    );
    assert!(
        nspawn.contains("Inaccessible=/sys/module/apparmor"),
        "{nspawn}"
    );
    let dropins = env
        .root()
        .join("etc/systemd/system/systemd-nspawn@web.service.d");
    assert_eq!(
        dir_names(&dropins),
        ["10-sandbox.conf", "20-sandbox-templates.conf"]
    );
    assert!(read(&dropins.join("10-sandbox.conf")).contains("--machine=%i"));
    assert!(
        read(&dropins.join("20-sandbox-templates.conf"))
            .contains("modprobe -abq br_netfilter overlay")
    );

    // Provenance.
    let state: serde_json::Value =
        serde_json::from_str(&read(&env.sandboxes_dir().join("state/web.json"))).unwrap();
    assert_eq!(state["name"], "web");
    assert_eq!(state["template"], "testbase+docker");
    assert_eq!(
        state["templates"],
        serde_json::json!(["testbase", "docker"])
    );
    assert_eq!(
        state["digest"],
        format!("sha256:{}", sha256_hex(&image.bytes))
    );
    assert_eq!(state["verification"]["mode"], "checksum");
    assert_eq!(state["rootfs"], arg(&root));
    assert_eq!(state["enabled"], false);
    assert!(state.get("zfs_dataset").is_none() || state["zfs_dataset"].is_null());

    assert_eq!(log_lines(&log), ["start web"]);
    env.assert_machines(&["web"]);

    // The same inputs give the same instance id; --force replaces the sandbox, and the
    // drop-in only the docker snippet wrote goes with it.
    testbase(&env, &image, "overlay-2\n");
    build(&env, &machinectl, &["testbase", "web"])
        .failure()
        .stderr_mentions(&["already exists", "--force"]);
    build(
        &env,
        &machinectl,
        &["--force", "--no-start", "testbase", "web"],
    )
    .success();
    assert_eq!(read(&root.join("etc/motd")), "overlay-2\n");
    assert_eq!(dir_names(&dropins), ["10-sandbox.conf"]);
    let meta2 = read(&seed.join("meta-data"));
    assert_ne!(
        meta_value(&meta2, "instance-id"),
        id,
        "other templates, other id"
    );
    let state: serde_json::Value =
        serde_json::from_str(&read(&env.sandboxes_dir().join("state/web.json"))).unwrap();
    assert_eq!(state["template"], "testbase");
    assert_eq!(log_lines(&log), ["start web"], "--no-start ran machinectl");
    env.assert_machines(&["web"]);
}

#[test]
fn enable_runs_before_start_and_a_missing_machinectl_is_a_warning() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["--enable", "testbase", "a"]).success();
    assert_eq!(log_lines(&log), ["enable a", "start a"]);
    // autostart sets enable = true.
    build(
        &env,
        &machinectl,
        &["--no-start", "testbase+autostart", "b"],
    )
    .success();
    assert_eq!(log_lines(&log), ["enable a", "start a", "enable b"]);

    let out = env
        .run_with(
            env!("CARGO_BIN_EXE_sandbox"),
            &[("PATH", "/nonexistent"), ("SANDBOX_MACHINECTL", "")],
            &["build", "testbase", "c"],
        )
        .success()
        .stderr_mentions(&["machinectl is not available"]);
    drop(out);
    assert!(env.machine("c").join("etc/motd").is_file());
    env.assert_machines(&["a", "b", "c"]);
}

/// Every path under `dir` with its type, mode, owner and content (the harness's `runs/` logs
/// excluded: they are written by the test runner, not the binary).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if rel.starts_with("runs") {
                continue;
            }
            let m = p.symlink_metadata().unwrap();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                sha256_hex(&std::fs::read(&p).unwrap())
            } else {
                "special".to_string()
            };
            out.insert(
                rel,
                format!("{:o} {}:{} {what}", m.mode(), m.uid(), m.gid()),
            );
        }
    }
    out
}

#[test]
fn dry_run_prints_the_plan_and_changes_nothing() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "dry\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let before = snapshot(env.root());
    let out = build(
        &env,
        &machinectl,
        &["--dry-run", "--enable", "testbase+docker", "web"],
    )
    .success();
    assert_eq!(snapshot(env.root()), before, "--dry-run changed the root");
    let text = out.stdout;
    for needle in [
        "not cached yet",
        "# run: machinectl enable web",
        "# run: machinectl start web",
        "host:/etc/systemd/nspawn/web.nspawn",
        "SystemCallFilter=add_key keyctl bpf",
        "rootfs:/var/lib/cloud/seed/nocloud/user-data",
        "- docker.io",
        "rootfs:/etc/motd",
        "remove rootfs:/etc/cloud/cloud-init.disabled",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(log_lines(&log).is_empty());

    // Once the image is cached, the dry run names its digest and the instance id the
    // build will use.
    build(&env, &machinectl, &["--no-start", "testbase", "web"]).success();
    let before = snapshot(env.root());
    let out = build(
        &env,
        &machinectl,
        &["--dry-run", "--force", "testbase", "web"],
    )
    .success();
    assert_eq!(snapshot(env.root()), before, "--dry-run changed the root");
    assert!(
        out.stdout
            .contains(&format!("sha256:{} (cached", sha256_hex(&image.bytes))),
        "{}",
        out.stdout
    );
    let meta = read(
        &env.machine("web")
            .join("var/lib/cloud/seed/nocloud/meta-data"),
    );
    let id = meta_value(&meta, "instance-id");
    assert!(
        out.stdout.contains(&id),
        "the dry run shows another instance id:\n{}",
        out.stdout
    );
}

/// Asserts a failed build left nothing: no machine, no staging dir, no host file, no record.
#[track_caller]
pub fn assert_nothing_left(env: &TestEnv, name: &str) {
    env.assert_machines(&[]);
    assert!(
        !env.root()
            .join(format!("etc/systemd/nspawn/{name}.nspawn"))
            .exists()
    );
    assert!(
        !env.root().join("etc/systemd/system").exists(),
        "drop-ins left behind"
    );
    assert!(
        !env.sandboxes_dir()
            .join(format!("state/{name}.json"))
            .exists()
    );
}

#[test]
fn a_bad_signature_leaves_nothing_anywhere() {
    let env = TestEnv::new();
    let site = Site::new();
    let signer = Gpg::new(KeyAlgo::Ed25519);
    let trusted = Gpg::new(KeyAlgo::Ed25519);
    let image = BaseImage::new(&env);
    let url = site.publish_signed(&signer, "img", "base.tar.xz", &image.bytes, true);
    let manifest = format!("source = \"{url}\"\nkeyring = \"archive-key.asc\"\n");
    write_template(
        &env,
        "signed",
        &[
            ("template.toml", manifest.as_bytes(), 0o644),
            ("archive-key.asc", &trusted.export(true), 0o644),
        ],
    );
    let (machinectl, log) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["signed", "web"]).failure();
    assert_nothing_left(&env, "web");
    assert!(log_lines(&log).is_empty());

    // The key the template ships is what makes the same image verify.
    write_template(
        &env,
        "signed",
        &[("archive-key.asc", &signer.export(true), 0o644)],
    );
    build(&env, &machinectl, &["signed", "web"]).success();
    let state: serde_json::Value =
        serde_json::from_str(&read(&env.sandboxes_dir().join("state/web.json"))).unwrap();
    assert_eq!(state["verification"]["mode"], "signature");
    assert_eq!(
        state["verification"]["key_fingerprint"],
        signer.fingerprint()
    );
}

#[test]
fn a_failure_while_layering_removes_the_staging_tree() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    // The image has a directory at /home/user: a file there is refused, not written over it.
    write_template(
        &env,
        "clash",
        &[
            ("template.toml", b"extends = [\"testbase\"]\n", 0o644),
            ("files/home/user", b"not a dir\n", 0o644),
        ],
    );
    let (machinectl, log) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["clash", "web"])
        .failure()
        .stderr_mentions(&["home/user"]);
    assert_nothing_left(&env, "web");
    assert!(log_lines(&log).is_empty());
}

/// A seed that cannot take effect is refused (a user believing they have Docker, silently
/// without it): the templates' user-data on an image without cloud-init fails and leaves
/// nothing; without user-data it builds; a bake step that installs cloud-init is enough.
#[test]
fn a_seed_for_an_image_without_cloud_init_is_refused() {
    let env = TestEnv::new();
    let image = BaseImage::without_cloud_init(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, log) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["testbase", "web"])
        .failure()
        .stderr_mentions(&[
            "testbase/user-data",
            "testbase/network-config",
            "has no cloud-init",
            "/usr/bin/cloud-init",
            "the seed would never apply",
        ]);
    assert_nothing_left(&env, "web");
    assert!(log_lines(&log).is_empty());

    // The same image with no seed of the templates' own builds.
    let path = image.file(&env);
    let manifest = format!(
        "source = \"file://{}\"\nchecksum = \"sha256:{}\"\n",
        path.display(),
        sha256_hex(&image.bytes)
    );
    write_template(
        &env,
        "plain",
        &[("template.toml", manifest.as_bytes(), 0o644)],
    );
    build(&env, &machinectl, &["--no-start", "plain", "bare"]).success();
    assert!(env.machine("bare").join("etc/hostname").is_file());

    // An image with a shell and no cloud-init: a bake step that provides it makes the seed apply.
    let shell = crate::build_bake::image_with_shell(&env, crate::build_bake::Resolv::File);
    crate::build_bake::bakebase(&env, &shell, &["echo '#!/bin/sh' > /usr/bin/cloud-init"]);
    write_template(
        &env,
        "bakedseed",
        &[
            ("template.toml", b"extends = [\"bakebase\"]\n", 0o644),
            ("user-data", b"#cloud-config\nruncmd:\n  - [true]\n", 0o644),
        ],
    );
    build(&env, &machinectl, &["--no-start", "bakedseed", "seeded"]).success();
    assert!(env.machine("seeded").join("usr/bin/cloud-init").is_file());
}

#[test]
/// `--storage=copy` on ZFS: a dataset per sandbox, unpacked into (no store).
fn on_zfs_with_copy_each_sandbox_gets_a_dataset_unpacked_into() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let (zfs, zlog) = recorder(&env, "zfs", "tank/machines\n");
    let vars = [
        ("SANDBOX_MACHINECTL", arg(&machinectl)),
        ("SANDBOX_ZFS", arg(&zfs)),
        ("SANDBOX_ASSUME_ZFS", "1"),
    ];
    let machines = env.machines_dir();
    env.sandbox_with_env(
        &["build", "--storage=copy", "--no-start", "testbase", "web"],
        &vars,
    )
    .success();
    assert_eq!(
        log_lines(&zlog),
        [
            format!("list -H -o name {}", machines.display()),
            format!(
                "create -o mountpoint={} tank/machines/web",
                machines.join("web").display()
            ),
        ]
    );
    rootfs::assert_tree(&env.machine("web"), &image.spec);
    assert_eq!(read(&env.machine("web").join("etc/motd")), "m\n");
    let state: serde_json::Value =
        serde_json::from_str(&read(&env.sandboxes_dir().join("state/web.json"))).unwrap();
    assert_eq!(state["zfs_dataset"], "tank/machines/web");
    env.assert_machines(&["web"]);

    // --force destroys the old dataset first; a failed build destroys the one it made.
    std::fs::remove_file(&zlog).unwrap();
    write_template(
        &env,
        "clash",
        &[
            ("template.toml", b"extends = [\"testbase\"]\n", 0o644),
            ("files/home/user", b"not a dir\n", 0o644),
        ],
    );
    env.sandbox_with_env(
        &[
            "build",
            "--storage=copy",
            "--force",
            "--no-start",
            "clash",
            "web",
        ],
        &vars,
    )
    .failure();
    assert_eq!(
        log_lines(&zlog),
        [
            format!("list -H -o name {}", machines.display()),
            "destroy -r tank/machines/web".to_string(),
            format!(
                "create -o mountpoint={} tank/machines/web",
                machines.join("web").display()
            ),
            "destroy -r tank/machines/web".to_string(),
        ]
    );
    env.assert_machines(&[]);
}

#[test]
fn templates_lists_shipped_and_user_templates() {
    let env = TestEnv::new();
    write_template(
        &env,
        "mine",
        &[(
            "template.toml",
            b"description = \"my own\"\nextends = [\"docker\"]\n",
            0o644,
        )],
    );
    write_template(
        &env,
        "docker",
        &[("template.toml", b"description = \"my docker\"\n", 0o644)],
    );
    let out = env.sandbox(&["--json", "templates"]).success();
    let list = out.json();
    let by_name = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("{n} not listed: {list}"))
            .clone()
    };
    assert_eq!(by_name("debian")["origin"], "built-in");
    assert_eq!(by_name("mine")["description"], "my own");
    let docker = by_name("docker");
    assert_eq!(docker["description"], "my docker");
    assert_eq!(docker["overrides_builtin"], true);
    assert!(
        docker["origin"]
            .as_str()
            .unwrap()
            .ends_with("templates/docker")
    );
    let table = env.sandbox(&["templates"]).success().stdout;
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("mine ") && l.contains("my own")),
        "{table}"
    );
}

/// Errors that name their cause: a mistyped template, a bad name said once, a cache blob gone
/// under `--offline`.
#[test]
fn build_errors_say_what_to_do() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, _) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["dokcer", "web"])
        .failure()
        .stderr_mentions(&["no template named `dokcer`", "did you mean `docker`?"]);
    let out = build(&env, &machinectl, &["testbase", "../x"])
        .failure()
        .stderr_mentions(&["is not a valid machine name"]);
    assert!(!out.stderr.contains("sandbox name:"), "{}", out.stderr);

    build(&env, &machinectl, &["--no-start", "testbase", "web"]).success();
    let blobs = env.cache_dir().join("v1/blobs/sha256");
    for entry in std::fs::read_dir(&blobs).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let out = build(
        &env,
        &machinectl,
        &["--offline", "--force", "--no-start", "testbase", "web"],
    )
    .failure()
    .stderr_mentions(&["pull", "again"]);
    assert!(
        !out.stderr
            .trim_end()
            .ends_with("No such file or directory (os error 2)"),
        "{}",
        out.stderr
    );
    assert!(
        env.machine("web").join("etc/motd").is_file(),
        "the old sandbox stays"
    );
}
