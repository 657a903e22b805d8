//! Bake steps (`[build] run`) end to end: the real binary runs them in a rootfs that has a
//! shell (a static busybox copied in), and the steps report what they saw into files of the
//! built tree. Also `sandbox build --offline`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::build::{BaseImage, build, recorder, write_template};
use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::arg;
use crate::harness::rootfs::{self, Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle};
use crate::harness::{dir_names, require_tool, sha256_hex};

/// busybox applets the steps call, linked next to it in `usr/bin`.
const APPLETS: [&str; 16] = [
    "sh", "mkdir", "cat", "echo", "printf", "chmod", "hostname", "readlink", "tr", "env", "sort",
    "ls", "sleep", "rm", "mv", "true",
];

/// How the image's `/etc/resolv.conf` looks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolv {
    /// A regular file with [`IMAGE_RESOLV`].
    File,
    /// systemd-resolved's dangling stub symlink (kept by the fix-ups: the image has the unit).
    ResolvedStub,
}

const IMAGE_RESOLV: &str = "nameserver 192.0.2.53\n";
const STUB: &str = "../run/systemd/resolve/stub-resolv.conf";

/// An OS tree with a shell, packed by GNU tar; returns the image file.
pub(crate) fn image_with_shell(env: &TestEnv, resolv: Resolv) -> PathBuf {
    let dir = tempfile::tempdir_in(env.scratch("trees")).unwrap();
    let d = dir.path();
    let spec = TreeSpec::new();
    rootfs::build_tree(d, &spec);
    std::fs::copy(require_tool("busybox"), d.join("usr/bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", d.join("usr/bin").join(applet)).unwrap();
    }
    std::fs::write(d.join("etc/hostname"), "buildhost\n").unwrap();
    match resolv {
        Resolv::File => std::fs::write(d.join("etc/resolv.conf"), IMAGE_RESOLV).unwrap(),
        Resolv::ResolvedStub => {
            let units = d.join("usr/lib/systemd/system");
            std::fs::create_dir_all(&units).unwrap();
            std::fs::write(units.join("systemd-resolved.service"), "[Unit]\n").unwrap();
            std::os::unix::fs::symlink(STUB, d.join("etc/resolv.conf")).unwrap();
        }
    }
    let bytes = Compression::Xz.compress(&rootfs::pack(d, "."));
    let path = env
        .scratch("images")
        .join(format!("shell-{}.tar.xz", spec.marker));
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// The template `bakebase`: the image pinned by checksum, and `steps` as its `[build] run`.
pub(crate) fn bakebase(env: &TestEnv, image: &Path, steps: &[&str]) {
    let bytes = std::fs::read(image).unwrap();
    let manifest = format!(
        "source = \"file://{}\"\nchecksum = \"sha256:{}\"\n\n[build]\nrun = {}\n",
        image.display(),
        sha256_hex(&bytes),
        toml_list(steps)
    );
    write_template(
        env,
        "bakebase",
        &[("template.toml", manifest.as_bytes(), 0o644)],
    );
}

/// A template extending `bakebase` with `steps`.
fn snippet(env: &TestEnv, name: &str, steps: &[&str]) {
    let manifest = format!(
        "extends = [\"bakebase\"]\n\n[build]\nrun = {}\n",
        toml_list(steps)
    );
    write_template(env, name, &[("template.toml", manifest.as_bytes(), 0o644)]);
}

fn toml_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Mount points at or below `dir` in this process's mount namespace (the host's).
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    read(Path::new("/proc/self/mountinfo"))
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

/// Host processes whose command line holds `needle` (busybox may run `sleep` inside a forked
/// shell, whose command line is then the step's `sh -c …`, which holds it too).
fn processes_mentioning(needle: &str) -> Vec<String> {
    dir_names(Path::new("/proc"))
        .into_iter()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// Nothing of a failed build anywhere: machine, staging, record, host files, mounts.
#[track_caller]
fn assert_nothing_left(env: &TestEnv, name: &str) {
    crate::build::assert_nothing_left(env, name);
    assert!(
        dir_names(&env.sandboxes_dir().join("tmp")).is_empty(),
        "a staging tree was left behind"
    );
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());
}

const INSTALL: &str = "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho hello\\n' > /usr/local/bin/hello && chmod 755 /usr/local/bin/hello && echo baked > /etc/baked && echo snippet >> /etc/order";
const PROBE: &str = "mkdir /probe && hostname > /probe/hostname && echo $$ > /probe/pid \
    && readlink /proc/self > /probe/self && tr '\\0' ' ' < /proc/1/cmdline > /probe/cmdline \
    && echo data > /dev/null && echo ok > /probe/devnull && cat /etc/resolv.conf > /probe/resolv \
    && env | sort > /probe/env && ls -a /dev | sort > /probe/dev \
    && { (echo evil > /etc/resolv.conf) 2>/dev/null || echo refused > /probe/resolv-write; } \
    && echo to-stdout && echo to-stderr >&2";

#[test]
fn bake_steps_run_in_the_rootfs_in_namespaces_of_their_own() {
    let env = TestEnv::new();
    bakebase(
        &env,
        &image_with_shell(&env, Resolv::File),
        &["echo base >> /etc/order"],
    );
    snippet(&env, "probe", &[INSTALL, PROBE]);
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let hostname = read(Path::new("/proc/sys/kernel/hostname"));

    let dry = build(&env, &machinectl, &["--dry-run", "probe", "web"]).success();
    assert!(dry.stdout.contains("== bake 1/3 ("), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains(&format!("template probe)\n{INSTALL}\n")),
        "{}",
        dry.stdout
    );
    env.assert_machines(&[]);

    let out = build(&env, &machinectl, &["probe", "web"]).success();
    let root = env.machine("web");
    let hello = root.join("usr/local/bin/hello");
    assert_eq!(read(&hello), "#!/bin/sh\necho hello\n");
    assert_eq!(
        hello.metadata().unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(read(&root.join("etc/baked")), "baked\n");
    assert_eq!(
        read(&root.join("etc/order")),
        "base\nsnippet\n",
        "base template's steps first"
    );

    let probe = |name: &str| read(&root.join("probe").join(name));
    assert_eq!(probe("hostname"), "web\n");
    assert_eq!(read(Path::new("/proc/sys/kernel/hostname")), hostname);
    assert_eq!(
        probe("pid"),
        "1\n",
        "the step's shell is PID 1 of its namespace"
    );
    let own: u32 = probe("self").trim().parse().unwrap();
    assert!(
        own < 10,
        "a fresh PID namespace gives small pids, not {own}"
    );
    assert!(
        probe("cmdline").starts_with("/bin/sh -c mkdir /probe"),
        "{}",
        probe("cmdline")
    );
    assert_eq!(probe("devnull"), "ok\n");
    assert_eq!(
        probe("resolv"),
        read(Path::new("/etc/resolv.conf")),
        "the host's resolv.conf"
    );
    assert_eq!(
        read(&root.join("etc/resolv.conf")),
        IMAGE_RESOLV,
        "the image's is back"
    );
    let step_env = probe("env");
    for want in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        "DEBIAN_FRONTEND=noninteractive",
        "SANDBOX_NAME=web",
    ] {
        assert!(
            step_env.lines().any(|l| l == want),
            "{want} missing:\n{step_env}"
        );
    }
    assert!(
        !step_env.contains("SANDBOX_MACHINECTL"),
        "the build's environment leaked:\n{step_env}"
    );
    let dev = probe("dev");
    let dev: Vec<&str> = dev.lines().collect();
    for want in [
        "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
        "pts", "shm",
    ] {
        assert!(dev.contains(&want), "/dev/{want} missing: {dev:?}");
    }
    // The rootfs's own /dev is as the image had it, and no /proc was left behind.
    assert_eq!(dir_names(&root.join("dev")), ["null"]);
    assert!(!root.join("proc").exists());
    assert!(
        out.stderr.contains("[bake 3/3] to-stdout\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("[bake 3/3] to-stderr\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("[bake 1/3] $ echo base >> /etc/order\n"),
        "{}",
        out.stderr
    );
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());
    assert_eq!(read(&log), "start web\n");

    // The same steps on the ZFS path (a stateful `zfs` stand-in: the clone of the stored image
    // is a plain directory holding a copy of its origin's files).
    let zfs = crate::harness::zfs_fake::FakeZfs::new(&env.scratch("zfs"), "tank/machines");
    env.sandbox_with_env(
        &["build", "--no-start", "probe", "zweb"],
        &[
            ("SANDBOX_ZFS", arg(&zfs.script)),
            ("SANDBOX_ASSUME_ZFS", "1"),
        ],
    )
    .success();
    assert!(zfs.datasets().contains(&"tank/machines/zweb".to_string()));
    assert_eq!(read(&env.machine("zweb").join("probe/hostname")), "zweb\n");
    assert_eq!(read(&env.machine("zweb").join("etc/baked")), "baked\n");
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());

    // And in an export: the tarball holds what the steps installed.
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("tar:{}", out_dir.path().display());
    env.sandbox(&["build", "--output", &output, "probe", "exported"])
        .success();
    let unpacked = tempfile::tempdir().unwrap();
    crate::harness::run_tool(
        Command::new(require_tool("tar"))
            .arg("-xf")
            .arg(out_dir.path().join("exported.tar.xz"))
            .arg("-C")
            .arg(unpacked.path()),
        None,
    );
    assert_eq!(read(&unpacked.path().join("etc/baked")), "baked\n");
    assert_eq!(read(&unpacked.path().join("probe/hostname")), "exported\n");
    assert_eq!(
        read(&unpacked.path().join("usr/local/bin/hello")),
        "#!/bin/sh\necho hello\n"
    );
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());
}

#[test]
fn a_dangling_resolv_conf_symlink_is_bound_over_and_put_back() {
    let env = TestEnv::new();
    bakebase(
        &env,
        &image_with_shell(&env, Resolv::ResolvedStub),
        &["cat /etc/resolv.conf > /seen && ls -a /run > /run-seen"],
    );
    let (machinectl, _) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["--no-start", "bakebase", "web"]).success();
    let root = env.machine("web");
    assert_eq!(
        read(&root.join("seen")),
        read(Path::new("/etc/resolv.conf"))
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
        Path::new(STUB),
        "the symlink is restored"
    );
    // Nothing was created at the symlink's target, in the step's view or after it.
    assert_eq!(dir_names(&root.join("run")), ["initctl"]);
    assert_eq!(read(&root.join("run-seen")), ".\n..\ninitctl\n");
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());
}

#[test]
fn a_failing_step_stops_the_build_and_leaves_nothing() {
    let env = TestEnv::new();
    bakebase(
        &env,
        &image_with_shell(&env, Resolv::File),
        &["echo first > /etc/first"],
    );
    snippet(
        &env,
        "failing",
        &["echo about to fail; exit 3", "echo never > /etc/never"],
    );
    let (machinectl, log) = recorder(&env, "machinectl", "");
    let out = build(&env, &machinectl, &["failing", "web"]).failure();
    check_failure(&out);
    assert_nothing_left(&env, "web");
    assert!(!log.exists(), "machinectl ran");

    // --force over an existing sandbox: the old one stays as it was.
    build(&env, &machinectl, &["--no-start", "bakebase", "web"]).success();
    let out = build(
        &env,
        &machinectl,
        &["--force", "--no-start", "failing", "web"],
    )
    .failure();
    check_failure(&out);
    env.assert_machines(&["web"]);
    assert_eq!(read(&env.machine("web").join("etc/first")), "first\n");
    assert!(!env.machine("web").join("etc/never").exists());
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());

    // An export writes nothing.
    let other = TestEnv::new();
    bakebase(&other, &image_with_shell(&other, Resolv::File), &["true"]);
    snippet(
        &other,
        "failing",
        &["echo about to fail; exit 3", "echo never"],
    );
    let out_dir = tempfile::tempdir().unwrap();
    let output = format!("tar:{}", out_dir.path().display());
    let out = other
        .sandbox(&["build", "--output", &output, "failing", "web"])
        .failure();
    check_failure(&out);
    assert_eq!(dir_names(out_dir.path()), Vec::<String>::new());
    assert_nothing_left(&other, "web");
}

/// The message names the step, its number, its template and line, and the status.
#[track_caller]
fn check_failure(out: &Outcome) {
    for want in [
        "failing/template.toml:4: bake step 2/3 of template `failing` failed (exit status 3): echo about to fail; exit 3",
        "[bake 2/3] about to fail\n",
    ] {
        assert!(
            out.stderr.contains(want),
            "{want:?} missing:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("[bake 3/3]"), "{}", out.stderr);
}

#[test]
fn a_rootfs_without_a_shell_is_a_clear_error() {
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    crate::build::testbase(&env, &image, "m\n");
    write_template(
        &env,
        "noshell",
        &[(
            "template.toml",
            b"extends = [\"testbase\"]\n[build]\nrun = [\"true\"]\n",
            0o644,
        )],
    );
    let (machinectl, _) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["noshell", "web"])
        .failure()
        .stderr_mentions(&["bake step 1/1", "/bin/sh", "needs a shell"]);
    assert_nothing_left(&env, "web");
}

#[test]
fn bake_steps_need_root_and_say_so_before_pulling() {
    let env = TestEnv::new();
    bakebase(&env, &image_with_shell(&env, Resolv::File), &["true"]);
    // The test root is root's alone; the unprivileged build must be able to read templates.
    std::fs::set_permissions(env.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let mut args: Vec<&str> = nobody.to_vec();
    args.extend([env!("CARGO_BIN_EXE_sandbox"), "--root"]);
    let root = env.root().display().to_string();
    args.extend([root.as_str(), "build", "--no-start", "bakebase", "web"]);
    let out = Command::new(require_tool("setpriv"))
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bakebase/template.toml:5: template `bakebase` has bake steps")
            && stderr.contains("run sandbox build as root"),
        "{stderr}"
    );
    assert!(!env.cache_dir().exists(), "nothing is pulled");
    env.assert_machines(&[]);
}

#[test]
fn a_background_process_dies_with_its_step() {
    let env = TestEnv::new();
    bakebase(
        &env,
        &image_with_shell(&env, Resolv::File),
        &["sleep 987654 & echo started", "echo second > /etc/second"],
    );
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let started = Instant::now();
    build(&env, &machinectl, &["--no-start", "bakebase", "web"]).success();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the build waited for the sleep"
    );
    assert_eq!(read(&env.machine("web").join("etc/second")), "second\n");
    assert_eq!(processes_mentioning("987654"), Vec::<String>::new());
    assert_eq!(mounts_below(env.root()), Vec::<String>::new());
}

#[test]
fn offline_builds_use_the_cache_alone() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = BaseImage::new(&env);
    let url = site.url("img/base.tar.xz");
    site.put("img/base.tar.xz", &image.bytes);
    // Verified against the site's SHA256SUMS, which an online build always fetches.
    site.sha256sums("img", &["base.tar.xz"], SumStyle::Text);
    let manifest = format!("source = \"{url}\"\nverify = \"checksum\"\n");
    write_template(
        &env,
        "served",
        &[("template.toml", manifest.as_bytes(), 0o644)],
    );
    let (machinectl, _) = recorder(&env, "machinectl", "");
    build(&env, &machinectl, &["--no-start", "served", "web"]).success();

    drop(site);
    // Without --offline the build now fails: the server is gone.
    build(
        &env,
        &machinectl,
        &["--no-start", "--force", "served", "web"],
    )
    .failure();
    build(
        &env,
        &machinectl,
        &["--no-start", "--force", "--offline", "served", "web"],
    )
    .success();
    rootfs::assert_tree(&env.machine("web"), &image.spec);
    env.assert_machines(&["web"]);

    // An empty cache: a clear refusal naming the source.
    let empty = TestEnv::new();
    write_template(
        &empty,
        "served",
        &[("template.toml", manifest.as_bytes(), 0o644)],
    );
    build(
        &empty,
        &machinectl,
        &["--no-start", "--offline", "served", "web"],
    )
    .failure()
    .stderr_mentions(&["--offline", &url, "not in the cache"]);
    empty.assert_machines(&[]);
}
