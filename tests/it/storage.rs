//! Instant sandboxes: the unpacked-image store and its backends on real filesystems (btrfs and
//! XFS on loop files), a stateful `zfs` stand-in for ZFS, and ext4 (the test root) for `copy`.
//! The second sandbox of an image is made from the stored tree and shares its blocks; `rm`,
//! `--force`, `cache gc` and `cache fsck` keep the store consistent.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::env::{Outcome, TestEnv};
use crate::harness::fixture::{Image, arg};
use crate::harness::loopfs::{FsType, LoopFs};
use crate::harness::rootfs::{self, Compression, TreeSpec};
use crate::harness::zfs_fake::FakeZfs;
use crate::harness::{require_tool, run_tool};

/// A test root whose `var/lib` (machines dir and sandboxes dir) is a fresh filesystem.
fn env_on(kind: FsType) -> (TestEnv, LoopFs) {
    let env = TestEnv::new();
    let image = env.scratch("loop").join("fs.img");
    let fs = LoopFs::mount(kind, &image, &env.root().join("var/lib"), 1024);
    std::fs::create_dir_all(env.machines_dir()).expect("creating the machines dir");
    (env, fs)
}

/// An image with an extended attribute and 8 MiB of data, pinned by its digest.
fn image(env: &TestEnv) -> (Image, PathBuf) {
    let spec = TreeSpec::new().with_payload(8 << 20);
    let dir = env.scratch("tree");
    rootfs::build_tree(&dir, &spec);
    run_tool(
        Command::new(require_tool("setfattr"))
            .args(["-n", "user.origin", "-v", "stored"])
            .arg(dir.join("etc/marker")),
        None,
    );
    let bytes = Compression::Gzip.compress(&rootfs::pack(&dir, "."));
    let path = env.scratch("images").join("os.tar.gz");
    std::fs::write(&path, &bytes).expect("writing the image");
    (Image { spec, bytes }, path)
}

fn btrfs_vars() -> Vec<(&'static str, String)> {
    vec![("SANDBOX_BTRFS", arg(&require_tool("btrfs")).to_string())]
}

fn run(env: &TestEnv, args: &[&str], vars: &[(&str, String)]) -> Outcome {
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.sandbox_with_env(args, &vars)
}

fn pull(env: &TestEnv, image: &Image, path: &Path, name: &str, vars: &[(&str, String)]) -> Outcome {
    let pin = format!("sha256:{}", image.hex());
    run(
        env,
        &["--json", "pull", "--checksum", &pin, arg(path), name],
        vars,
    )
}

fn record(env: &TestEnv, name: &str) -> serde_json::Value {
    let path = env.sandboxes_dir().join(format!("state/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the state record is JSON")
}

/// Runs `cache gc` and asserts it removed exactly one stored image; returns its JSON.
fn gc_removes_one_stored_image(env: &TestEnv, vars: &[(&str, String)]) -> serde_json::Value {
    let gc = run(env, &["--json", "cache", "gc"], vars).success().json();
    assert_eq!(
        gc["removed_stored_images"].as_array().unwrap().len(),
        1,
        "{gc}"
    );
    gc
}

/// The stored image sandbox `name` shares, by its state record.
fn stored_image(env: &TestEnv, name: &str) -> String {
    record(env, name)["stored_image"]
        .as_str()
        .unwrap_or_else(|| panic!("{name} names no stored image"))
        .to_string()
}

fn stored_keys(env: &TestEnv) -> Vec<String> {
    let mut keys: Vec<String> = crate::harness::dir_names(&env.sandboxes_dir().join("store"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    keys.sort();
    keys
}

/// `getfattr -d -m -` of every entry under `root`, paths relative: the xattrs a copy must keep.
fn xattrs(root: &Path) -> String {
    let out = run_tool(
        Command::new(require_tool("getfattr"))
            .args(["-R", "-P", "-d", "-m", "-", "."])
            .current_dir(root),
        None,
    );
    String::from_utf8(out).expect("getfattr prints text")
}

/// Every entry's type, mode, owner, size, mtime, link count and device: what must be equal
/// between a sandbox made from the store and one unpacked.
fn listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let link = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let size = if m.is_dir() { 0 } else { m.len() };
            out.push(format!(
                "{rel} {:o} {}:{} {size} {}.{} n{} r{} {link}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec(),
                m.nlink(),
                m.rdev()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `btrfs filesystem du -s --raw PATH`: (total, exclusive) bytes.
fn btrfs_du(path: &Path) -> (u64, u64) {
    let out = run_tool(
        Command::new(require_tool("btrfs"))
            .args(["filesystem", "du", "-s", "--raw"])
            .arg(path),
        None,
    );
    let text = String::from_utf8(out).unwrap();
    let line = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("btrfs du printed {text}"));
    let cols: Vec<u64> = line
        .split_whitespace()
        .take(2)
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("btrfs du printed {text}"))
        })
        .collect();
    (cols[0], cols[1])
}

#[test]
fn on_btrfs_the_second_sandbox_is_a_snapshot_sharing_every_block() {
    let (env, _fs) = env_on(FsType::Btrfs);
    let (image, path) = image(&env);
    let vars = btrfs_vars();
    pull(&env, &image, &path, "a", &vars).success();
    pull(&env, &image, &path, "b", &vars).success();
    for name in ["a", "b"] {
        image.assert_materialised(&env.machine(name));
        assert_eq!(record(&env, name)["storage"], "btrfs");
    }
    let key = stored_image(&env, "a");
    assert_eq!(record(&env, "b")["stored_image"], key.as_str());
    assert_eq!(stored_keys(&env), vec![key.clone()]);
    let store_tree = env.sandboxes_dir().join("store").join(&key);
    let show = run_tool(
        Command::new(require_tool("btrfs"))
            .args(["subvolume", "show"])
            .arg(env.machine("b")),
        None,
    );
    let show = String::from_utf8(show).unwrap();
    assert!(
        show.contains("Parent UUID:") && !show.contains("Parent UUID: \t\t-"),
        "{show}"
    );
    // The sandbox's data is all shared with the stored tree: (almost) nothing exclusive.
    let (total, exclusive) = btrfs_du(&env.machine("b"));
    assert!(total >= 8 << 20, "btrfs du says {total} bytes");
    assert!(
        exclusive * 100 < total,
        "{exclusive} of {total} bytes are not shared"
    );
    assert_eq!(xattrs(&env.machine("b")), xattrs(&store_tree));
    assert!(xattrs(&env.machine("b")).contains("user.origin=\"stored\""));

    // The store stays read-only and untouched by what a sandbox does.
    std::fs::write(env.machine("b").join("etc/marker"), "changed").unwrap();
    assert!(std::fs::write(store_tree.join("etc/marker"), "x").is_err());
    run(&env, &["cache", "fsck"], &vars).success();

    // --force swaps in a fresh snapshot; rm removes it; the store stays while a uses it.
    pull(&env, &image, &path, "b", &vars).failure();
    run(
        &env,
        &[
            "pull",
            "--force",
            "--checksum",
            &format!("sha256:{}", image.hex()),
            arg(&path),
            "b",
        ],
        &vars,
    )
    .success();
    image.assert_materialised(&env.machine("b"));
    // --read-only marks the snapshot immutable; rm still removes it.
    run(
        &env,
        &[
            "pull",
            "--read-only",
            "--checksum",
            &format!("sha256:{}", image.hex()),
            arg(&path),
            "ro",
        ],
        &vars,
    )
    .success();
    let attrs = run_tool(
        Command::new(require_tool("lsattr"))
            .arg("-d")
            .arg(env.machine("ro")),
        None,
    );
    assert!(
        String::from_utf8_lossy(&attrs)
            .split_whitespace()
            .next()
            .unwrap()
            .contains('i')
    );
    run(&env, &["rm", "--yes", "ro"], &vars).success();
    assert!(!env.machine("ro").exists());
    run(&env, &["rm", "--yes", "b"], &vars).success();
    let gc = run(&env, &["--json", "cache", "gc"], &vars)
        .success()
        .json();
    assert_eq!(gc["removed_stored_images"].as_array().unwrap().len(), 0);
    assert!(
        gc["kept_stored_images"][0]
            .as_str()
            .unwrap()
            .contains("used by a"),
        "{gc}"
    );
    assert!(store_tree.is_dir());
    run(&env, &["rm", "--yes", "a"], &vars).success();
    gc_removes_one_stored_image(&env, &vars);
    assert!(!store_tree.exists());
    assert!(stored_keys(&env).is_empty());
    let list = run_tool(
        Command::new(require_tool("btrfs"))
            .args(["subvolume", "list"])
            .arg(env.root().join("var/lib")),
        None,
    );
    assert!(
        String::from_utf8(list).unwrap().trim().is_empty(),
        "subvolumes left"
    );
    env.assert_machines(&[]);
}

#[test]
fn on_xfs_the_second_sandbox_is_a_reflinked_copy_with_all_metadata() {
    let (env, _fs) = env_on(FsType::XfsReflink);
    let (image, path) = image(&env);
    pull(&env, &image, &path, "a", &[]).success();
    let df_before = df_used(&env.machines_dir());
    pull(&env, &image, &path, "b", &[]).success();
    let df_after = df_used(&env.machines_dir());
    assert_eq!(record(&env, "b")["storage"], "reflink");
    let key = stored_image(&env, "b");
    let store_tree = env.sandboxes_dir().join("store").join(&key);
    image.assert_materialised(&env.machine("b"));
    assert_eq!(listing(&env.machine("b")), listing(&store_tree));
    assert_eq!(listing(&env.machine("a")), listing(&env.machine("b")));
    assert_eq!(xattrs(&env.machine("b")), xattrs(&store_tree));
    assert!(xattrs(&env.machine("b")).contains("user.origin=\"stored\""));
    // The payload's extents are shared, and the second sandbox took (almost) no space.
    let frag = run_tool(
        Command::new(require_tool("filefrag"))
            .arg("-v")
            .arg(env.machine("b").join("usr/share/payload")),
        None,
    );
    assert!(
        String::from_utf8_lossy(&frag).contains("shared"),
        "{}",
        String::from_utf8_lossy(&frag)
    );
    assert!(
        df_after - df_before < (8 << 20) / 10,
        "the second sandbox took {} bytes",
        df_after - df_before
    );

    // ls shows how each sandbox was made and what it shares.
    let ls = run(&env, &["--json", "ls"], &[]).success().json();
    for row in ls.as_array().unwrap() {
        assert_eq!(row["storage"], "reflink", "{ls}");
        assert_eq!(row["stored_image"], key.as_str(), "{ls}");
    }
    let table = run(&env, &["ls"], &[]).success().stdout;
    assert!(
        table.contains("STORAGE") && table.contains(&key[..12]),
        "{table}"
    );

    // A stored tree changed behind the store's back is found by fsck (kept: sandboxes use it).
    run(&env, &["cache", "fsck"], &[]).success();
    run_tool(
        Command::new(require_tool("chattr"))
            .arg("-i")
            .arg(&store_tree),
        None,
    );
    std::fs::write(store_tree.join("etc/marker"), "tampered").unwrap();
    run(&env, &["cache", "fsck"], &[])
        .failure()
        .stderr_mentions(&[&key, "changed since it was stored", "used by a, b"]);

    // cache rm of the image keeps its stored tree while sandboxes use it, then takes it.
    let (a, b) = (env.machine("a"), env.machine("b"));
    run_tool(
        Command::new(require_tool("chattr"))
            .arg("+i")
            .arg(&store_tree),
        None,
    );
    let source = arg(&path).to_string();
    run(&env, &["cache", "rm", &source], &[])
        .success()
        .stderr_mentions(&["kept the stored image", "used by a, b"]);
    assert!(store_tree.is_dir());
    for name in ["a", "b"] {
        run(&env, &["rm", "--yes", name], &[]).success();
    }
    assert!(!a.exists() && !b.exists());
    // The ref is gone already: a gc finds the stored image no ref and no sandbox wants.
    gc_removes_one_stored_image(&env, &[]);
    assert!(!store_tree.exists() && stored_keys(&env).is_empty());
}

fn df_used(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).expect("statvfs");
    (st.f_blocks - st.f_bfree) * st.f_frsize
}

#[test]
fn on_ext4_sandboxes_are_unpacked_each_time_and_nothing_is_stored() {
    let env = TestEnv::new();
    let (image, path) = image(&env);
    pull(&env, &image, &path, "a", &[]).success();
    pull(&env, &image, &path, "b", &[]).success();
    assert_eq!(record(&env, "b")["storage"], "copy");
    assert!(record(&env, "b").get("stored_image").is_none());
    assert!(stored_keys(&env).is_empty());
    // A backend the filesystem cannot serve is refused before anything is made.
    run(
        &env,
        &[
            "pull",
            "--storage=btrfs",
            "--checksum",
            &format!("sha256:{}", image.hex()),
            arg(&path),
            "c",
        ],
        &btrfs_vars(),
    )
    .failure()
    .stderr_mentions(&["--storage=btrfs", "not on btrfs"]);
    run(
        &env,
        &[
            "pull",
            "--storage=reflink",
            "--checksum",
            &format!("sha256:{}", image.hex()),
            arg(&path),
            "c",
        ],
        &[],
    )
    .failure()
    .stderr_mentions(&["--storage=reflink", "cannot be reflinked"]);
    env.assert_machines(&["a", "b"]);
}

#[test]
fn on_zfs_sandboxes_are_clones_of_a_stored_snapshot() {
    let env = TestEnv::new();
    let (image, path) = image(&env);
    let zfs = FakeZfs::new(&env.scratch("zfs"), "tank/machines");
    let vars = vec![
        ("SANDBOX_ZFS", arg(&zfs.script).to_string()),
        ("SANDBOX_ASSUME_ZFS", "1".to_string()),
    ];
    pull(&env, &image, &path, "a", &vars).success();
    let key = stored_image(&env, "a");
    let images = format!("tank/machines/sandbox-images/{key}");
    let store_tree = env.sandboxes_dir().join("store").join(&key);
    let machines = env.machines_dir();
    let list = format!("list -H -o name {}", machines.display());
    assert_eq!(
        zfs.calls(),
        [
            list.clone(),
            // No dataset a dead process left for this image.
            format!("list -H -o name {images}"),
            "list -H -o name tank/machines/sandbox-images".to_string(),
            "create -o canmount=off -o mountpoint=none tank/machines/sandbox-images".to_string(),
            format!("create -o mountpoint={} {images}", store_tree.display()),
            format!("snapshot {images}@sandbox"),
            format!("set readonly=on {images}"),
            format!(
                "clone -o mountpoint={} {images}@sandbox tank/machines/a",
                machines.join("a").display()
            ),
        ]
    );
    zfs.clear_log();
    pull(&env, &image, &path, "b", &vars).success();
    assert_eq!(
        zfs.calls(),
        [
            list.clone(),
            format!(
                "clone -o mountpoint={} {images}@sandbox tank/machines/b",
                machines.join("b").display()
            ),
        ]
    );
    for name in ["a", "b"] {
        image.assert_materialised(&env.machine(name));
        let r = record(&env, name);
        assert_eq!(r["storage"], "zfs");
        assert_eq!(r["zfs_dataset"], format!("tank/machines/{name}"));
    }

    // rm destroys the clone; gc keeps the image while b's clone depends on it.
    zfs.clear_log();
    run(&env, &["rm", "--yes", "a"], &vars).success();
    assert!(
        zfs.calls()
            .contains(&"destroy -r tank/machines/a".to_string()),
        "{:?}",
        zfs.calls()
    );
    zfs.clear_log();
    let gc = run(&env, &["--json", "cache", "gc"], &vars)
        .success()
        .json();
    assert!(
        gc["kept_stored_images"][0]
            .as_str()
            .unwrap()
            .contains("used by b"),
        "{gc}"
    );
    assert!(
        !zfs.calls().iter().any(|c| c.starts_with("destroy")),
        "{:?}",
        zfs.calls()
    );
    // A clone the records do not know of (its state record lost) still keeps the image.
    std::fs::remove_file(env.sandboxes_dir().join("state/b.json")).unwrap();
    let gc = run(&env, &["--json", "cache", "gc"], &vars)
        .success()
        .json();
    assert!(
        gc["kept_stored_images"][0]
            .as_str()
            .unwrap()
            .contains("the clone tank/machines/b"),
        "{gc}"
    );
    assert!(zfs.datasets().contains(&images));
    // Once the clone is gone, the image dataset goes too.
    run_tool(
        Command::new(&zfs.script).args(["destroy", "-r", "tank/machines/b"]),
        None,
    );
    std::fs::remove_dir_all(env.machine("b")).ok();
    zfs.clear_log();
    gc_removes_one_stored_image(&env, &vars);
    assert!(
        zfs.calls().contains(&format!("destroy -r {images}")),
        "{:?}",
        zfs.calls()
    );
    assert!(!zfs.datasets().contains(&images));
    assert!(stored_keys(&env).is_empty());
}

#[test]
fn a_build_layers_its_files_on_a_snapshot_and_leaves_the_store_as_it_was() {
    use crate::build::{BaseImage, read, recorder, testbase};
    let (env, _fs) = env_on(FsType::Btrfs);
    let image = BaseImage::new(&env);
    testbase(&env, &image, "from the template\n");
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let mut vars = btrfs_vars();
    vars.push(("SANDBOX_MACHINECTL", arg(&machinectl).to_string()));
    for name in ["web", "web2"] {
        run(&env, &["build", "--no-start", "testbase", name], &vars).success();
        assert_eq!(
            read(&env.machine(name).join("etc/motd")),
            "from the template\n"
        );
        assert_eq!(record(&env, name)["storage"], "btrfs");
    }
    let key = stored_image(&env, "web");
    assert_eq!(record(&env, "web2")["stored_image"], key.as_str());
    let store_tree = env.sandboxes_dir().join("store").join(&key);
    // The fix-ups and files went into the sandboxes only.
    assert!(!store_tree.join("etc/motd").exists());
    assert_eq!(read(&store_tree.join("etc/hostname")), "buildhost\n");
    assert_eq!(read(&env.machine("web").join("etc/hostname")), "web\n");
    let fsck = run(&env, &["--json", "cache", "fsck"], &vars)
        .success()
        .json();
    assert_eq!(fsck["store"]["checked"], 1, "{fsck}");
    assert!(
        fsck["store"]["corrupt"].as_array().unwrap().is_empty(),
        "{fsck}"
    );
    assert!(
        fsck["store"]["unvouched"].as_array().unwrap().is_empty(),
        "{fsck}"
    );
    // A template may ask for a backend; the flag wins over it.
    crate::build::write_template(
        &env,
        "plain",
        &[(
            "template.toml",
            b"extends = [\"testbase\"]\nstorage = \"copy\"\n",
            0o644,
        )],
    );
    run(&env, &["build", "--no-start", "plain", "p1"], &vars).success();
    assert_eq!(record(&env, "p1")["storage"], "copy");
    run(
        &env,
        &["build", "--no-start", "--storage=btrfs", "plain", "p2"],
        &vars,
    )
    .success();
    assert_eq!(record(&env, "p2")["storage"], "btrfs");
    assert_eq!(record(&env, "p2")["stored_image"], key.as_str());
}

#[test]
fn a_build_on_zfs_clones_the_stored_image_and_a_failed_force_leaves_no_sandbox() {
    use crate::build::{BaseImage, read, recorder, testbase, write_template};
    let env = TestEnv::new();
    let image = BaseImage::new(&env);
    testbase(&env, &image, "m\n");
    let (machinectl, _) = recorder(&env, "machinectl", "");
    let zfs = FakeZfs::new(&env.scratch("zfs"), "tank/machines");
    let vars = vec![
        ("SANDBOX_ZFS", arg(&zfs.script).to_string()),
        ("SANDBOX_ASSUME_ZFS", "1".to_string()),
        ("SANDBOX_MACHINECTL", arg(&machinectl).to_string()),
    ];
    run(&env, &["build", "--no-start", "testbase", "web"], &vars).success();
    assert_eq!(read(&env.machine("web").join("etc/motd")), "m\n");
    let r = record(&env, "web");
    assert_eq!(
        (r["storage"].as_str(), r["zfs_dataset"].as_str()),
        (Some("zfs"), Some("tank/machines/web"))
    );
    let images = format!(
        "tank/machines/sandbox-images/{}",
        r["stored_image"].as_str().unwrap()
    );
    assert!(
        zfs.calls()
            .iter()
            .any(|c| c.starts_with("clone ") && c.ends_with(" tank/machines/web"))
    );

    // --force destroys the old clone first (not atomic, as the README says); a build that
    // fails then destroys the clone it made. The stored image stays.
    write_template(
        &env,
        "clash",
        &[
            ("template.toml", b"extends = [\"testbase\"]\n", 0o644),
            ("files/home/user", b"not a dir\n", 0o644),
        ],
    );
    zfs.clear_log();
    run(
        &env,
        &["build", "--force", "--no-start", "clash", "web"],
        &vars,
    )
    .failure();
    let calls = zfs.calls();
    let destroys: Vec<&String> = calls.iter().filter(|c| c.starts_with("destroy")).collect();
    assert_eq!(
        destroys,
        [
            "destroy -r tank/machines/web",
            "destroy -r tank/machines/web"
        ],
        "{calls:?}"
    );
    assert!(calls.iter().any(|c| c.starts_with("clone ")), "{calls:?}");
    env.assert_machines(&[]);
    assert!(zfs.datasets().contains(&images));
    assert!(!zfs.datasets().contains(&"tank/machines/web".to_string()));
}

#[test]
fn a_sandbox_from_the_store_never_reads_the_cached_tarball_and_an_unpack_checks_it_first() {
    let (env, _fs) = env_on(FsType::Btrfs);
    let (image, path) = image(&env);
    let vars = btrfs_vars();
    pull(&env, &image, &path, "a", &vars).success();
    // The cached tarball rots (same length, other bytes).
    let blob = env.blobs_dir().join(image.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[..8].copy_from_slice(b"ROTTEN!!");
    std::fs::write(&blob, &bytes).unwrap();
    // From the store: the tarball is not read, so nothing notices, and the tree is right.
    let out = pull(&env, &image, &path, "b", &vars).success();
    assert!(!out.stderr.contains("corrupt"), "{}", out.stderr);
    image.assert_materialised(&env.machine("b"));
    assert_eq!(std::fs::read(&blob).unwrap()[..8], *b"ROTTEN!!");
    // An unpack (--storage=copy) checks the bytes first: a miss, fetched again, then right.
    let pin = format!("sha256:{}", image.hex());
    let out = run(
        &env,
        &[
            "pull",
            "--storage=copy",
            "--checksum",
            &pin,
            arg(&path),
            "c",
        ],
        &vars,
    )
    .success();
    assert!(out.stderr.contains("is corrupt"), "{}", out.stderr);
    image.assert_materialised(&env.machine("c"));
    assert_eq!(std::fs::read(&blob).unwrap(), image.bytes);
}
