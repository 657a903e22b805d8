//! Facts about the host side that need no server: what the binary links, and the TrueNAS ZFS
//! property that moves the sandboxes dir. `zfs` cannot run here, so a recording stand-in on
//! PATH answers and the test asserts the exact command it was given.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const SANDBOX: &str = env!("CARGO_BIN_EXE_sandbox");

/// TrueNAS SCALE users cannot install packages: the binary may need nothing beyond glibc.
/// The debug binary links the same native libraries as the release one (static liblzma, zstd,
/// bzip2 and zlib-rs, rustls), so checking it checks the dependency set.
#[test]
fn links_only_glibc() {
    let out = Command::new("ldd")
        .arg(SANDBOX)
        .output()
        .expect("running ldd");
    assert!(
        out.status.success(),
        "ldd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let allowed = [
        "linux-vdso.so",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
    ];
    let libs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        libs.iter().any(|l| l.starts_with("libc.so")),
        "ldd output looks wrong:\n{text}"
    );
    for lib in libs {
        let base = lib.rsplit('/').next().unwrap_or(lib);
        assert!(
            allowed.iter().any(|a| base.starts_with(a)),
            "{base} is linked dynamically:\n{text}"
        );
    }
}

/// A `zfs` stand-in that records its arguments and prints `value`.
fn fake_zfs(dir: &Path, value: &str) -> std::path::PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("zfs.log");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> '{}'\necho '{value}'\n",
        log.display()
    );
    let zfs = bin.join("zfs");
    std::fs::write(&zfs, script).unwrap();
    std::fs::set_permissions(&zfs, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn zfs_property_names_the_sandboxes_dir_when_nothing_else_does() {
    let temp = tempfile::tempdir().unwrap();
    let target = temp.path().join("tank/sandboxes");
    let bin = fake_zfs(temp.path(), &target.display().to_string());
    let out = Command::new(SANDBOX)
        .args(["--json", "cache", "ls"])
        .env("PATH", path_with(&bin))
        .env_remove("SANDBOXES_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        target.join("cache/CACHEDIR.TAG").is_file(),
        "the cache was not made under the ZFS property's dir"
    );
    let log = std::fs::read_to_string(temp.path().join("zfs.log")).unwrap();
    assert_eq!(
        log.trim(),
        "get -H -o value jip-hop:sandboxes_dir boot-pool"
    );
}

#[test]
fn zfs_is_not_asked_when_the_dir_is_given_or_under_root() {
    let temp = tempfile::tempdir().unwrap();
    let bin = fake_zfs(temp.path(), "/must/not/be/used");
    let given = temp.path().join("given");
    for args in [
        vec![
            "--sandboxes-dir".to_string(),
            given.display().to_string(),
            "cache".into(),
            "ls".into(),
        ],
        vec![
            "--root".to_string(),
            temp.path().join("r").display().to_string(),
            "cache".into(),
            "ls".into(),
        ],
    ] {
        let out = Command::new(SANDBOX)
            .args(&args)
            .env("PATH", path_with(&bin))
            .env_remove("SANDBOXES_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(given.join("cache/CACHEDIR.TAG").is_file());
    assert!(
        temp.path()
            .join("r/var/lib/sandboxes/cache/CACHEDIR.TAG")
            .is_file()
    );
    assert!(
        !temp.path().join("zfs.log").exists(),
        "zfs was asked although the dir was given"
    );
}
