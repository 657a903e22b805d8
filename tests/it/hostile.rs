//! Hostile archives, built header by header: absolute names, `..` escapes, writes through a
//! symlink the archive made, directories reached through such a symlink, hardlinks to files
//! outside the root. Each pull must fail naming the entry, write nothing outside the machine's
//! root (a sentinel directory next to `var/lib/machines` proves it) and leave nothing in the
//! machines dir. A benign raw archive with absolute symlinks proves the checks are not blanket
//! refusals.

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use crate::harness::env::TestEnv;
use crate::harness::fixture::arg;
use crate::harness::rawtar::RawTar;
use crate::harness::rootfs::Compression;
use crate::harness::{dir_names, files_under};

/// The temp root's `outside/` dir, holding `secret`; `..` from the staging dir
/// (`var/lib/machines/.#…`) reaches it in four steps.
const UP: &str = "../../../..";
const SECRET: &[u8] = b"host secret, must stay untouched\n";

struct Hostile {
    env: TestEnv,
    outside: PathBuf,
    before: Vec<(PathBuf, u64)>,
}

impl Hostile {
    fn new() -> Hostile {
        let env = TestEnv::new();
        let outside = env.root().join("outside");
        std::fs::create_dir_all(&outside).expect("creating the sentinel dir");
        std::fs::write(outside.join("secret"), SECRET).expect("writing the sentinel file");
        let before = Hostile::host_files(&env);
        Hostile {
            env,
            outside,
            before,
        }
    }

    /// Every file of the temp root that the binary has no business writing.
    fn host_files(env: &TestEnv) -> Vec<(PathBuf, u64)> {
        let owned = [
            env.machines_dir(),
            env.sandboxes_dir(),
            env.root().join("runs"),
            env.root().join("scratch"),
        ];
        files_under(env.root())
            .into_iter()
            .filter(|(p, _)| !owned.iter().any(|o| p.starts_with(o)))
            .collect()
    }

    /// Absolute path of the sentinel dir, as an archive would name it.
    fn outside(&self) -> String {
        self.outside.display().to_string()
    }

    /// Pulls `archive` (gzip-compressed, from a local file) and asserts it was refused cleanly.
    #[track_caller]
    fn assert_refused(&self, archive: Vec<u8>, entry: &str) {
        let path = self.env.scratch("archives").join("hostile.tar.gz");
        std::fs::write(&path, Compression::Gzip.compress(&archive)).expect("writing the archive");

        self.env
            .sandbox(&["pull", "--verify=no", arg(&path), "box"])
            .failure()
            .stderr_mentions(&[entry]);

        self.env.assert_machines(&[]);
        self.assert_host_untouched();
    }

    /// Nothing outside the machines dir changed, the sentinel least of all.
    #[track_caller]
    fn assert_host_untouched(&self) {
        assert_eq!(
            Hostile::host_files(&self.env),
            self.before,
            "files outside the root changed"
        );
        assert_eq!(
            dir_names(&self.outside),
            vec!["secret".to_string()],
            "the sentinel dir changed"
        );
        let secret = self.outside.join("secret");
        assert_eq!(
            std::fs::read(&secret).expect("reading the sentinel"),
            SECRET
        );
        assert_eq!(
            secret.metadata().expect("stat the sentinel").nlink(),
            1,
            "a hardlink to the sentinel exists"
        );
    }
}

#[test]
fn absolute_path_stays_inside_the_root() {
    // Two safe answers exist: refuse the entry, or take it relative to the new root as GNU tar
    // and importd do (the README documents the latter). Writing to the host path is the bug.
    let h = Hostile::new();
    let name = format!("{}/pwned", h.outside());
    let archive = RawTar::new()
        .dir("etc/")
        .file("etc/os-release", b"ID=x\n")
        .file(&name, b"pwned")
        .finish();
    let path = h.env.scratch("archives").join("absolute.tar");
    std::fs::write(&path, archive).expect("writing the archive");

    let out = h.env.sandbox(&["pull", "--verify=no", arg(&path), "box"]);

    if out.status.success() {
        let inside = h.env.machine("box").join(name.trim_start_matches('/'));
        let data = std::fs::read(&inside).expect("the entry re-rooted inside the machine");
        assert_eq!(data, b"pwned");
        h.env.assert_machines(&["box"]);
    } else {
        let _ = out.failure().stderr_mentions(&[&name]);
        h.env.assert_machines(&[]);
    }
    h.assert_host_untouched();
}

#[test]
fn dotdot_escape_is_refused() {
    let h = Hostile::new();
    let name = format!("{UP}/outside/pwned");
    let archive = RawTar::new().dir("etc/").file(&name, b"pwned").finish();
    h.assert_refused(archive, &name);
}

#[test]
fn dotdot_inside_a_path_is_refused() {
    let h = Hostile::new();
    let name = format!("etc/../{UP}/outside/pwned");
    let archive = RawTar::new().dir("etc/").file(&name, b"pwned").finish();
    h.assert_refused(archive, &name);
}

#[test]
fn dotdot_into_the_machines_dir_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .dir("etc/")
        .file("../planted", b"pwned")
        .finish();
    h.assert_refused(archive, "../planted");
}

#[test]
fn write_through_an_absolute_symlink_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .symlink("link", &h.outside())
        .file("link/pwned", b"pwned")
        .finish();
    h.assert_refused(archive, "link/pwned");
}

#[test]
fn write_through_a_relative_symlink_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .symlink("link", &format!("{UP}/outside"))
        .file("link/pwned", b"pwned")
        .finish();
    h.assert_refused(archive, "link/pwned");
}

#[test]
fn directory_through_a_symlink_pointing_out_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .symlink("usr", &h.outside())
        .dir("usr/lib/")
        .file("usr/lib/pwned", b"pwned")
        .finish();
    h.assert_refused(archive, "usr/lib");
}

#[test]
fn symlink_replacing_a_directory_then_write_is_refused() {
    // The directory exists first; a later symlink entry of the same name must not turn the
    // next write into an escape.
    let h = Hostile::new();
    let archive = RawTar::new()
        .dir("etc/")
        .symlink("etc", &format!("{UP}/outside"))
        .file("etc/pwned", b"pwned")
        .finish();
    h.assert_refused(archive, "etc");
}

#[test]
fn hardlink_to_an_absolute_outside_file_is_refused() {
    let h = Hostile::new();
    let target = format!("{}/secret", h.outside());
    // The file entry of the same name would truncate the host file through the link.
    let archive = RawTar::new()
        .hardlink("hl", &target)
        .file("hl", b"pwned")
        .finish();
    h.assert_refused(archive, "hl");
}

#[test]
fn hardlink_with_dotdot_to_an_outside_file_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .hardlink("hl", &format!("{UP}/outside/secret"))
        .file("hl", b"pwned")
        .finish();
    h.assert_refused(archive, "hl");
}

#[test]
fn hardlink_through_a_symlink_pointing_out_is_refused() {
    let h = Hostile::new();
    let archive = RawTar::new()
        .symlink("s", &h.outside())
        .hardlink("hl", "s/secret")
        .file("hl", b"pwned")
        .finish();
    h.assert_refused(archive, "hl");
}

#[test]
fn truncated_archive_leaves_nothing() {
    let h = Hostile::new();
    let image = crate::harness::fixture::Image::new(&h.env, Compression::Gzip);
    let path = h.env.scratch("archives").join("truncated.tar.gz");
    std::fs::write(&path, &image.bytes[..image.bytes.len() / 2]).expect("writing the archive");
    h.env
        .sandbox(&["pull", "--verify=no", arg(&path), "box"])
        .failure()
        .stderr_mentions(&["truncated.tar.gz"]);
    h.env.assert_machines(&[]);
}

#[test]
fn absolute_symlinks_are_kept_verbatim_and_not_followed() {
    // The control case: links that point "outside" as text are normal in a rootfs (they are
    // resolved inside the container). Creating them is fine; only following them is not.
    let h = Hostile::new();
    let archive = RawTar::new()
        .dir("etc/")
        .file("etc/os-release", b"ID=raw\n")
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .symlink("escape", &h.outside())
        .symlink("up", &format!("{UP}/outside"))
        .hardlink("etc/os-release.bak", "etc/os-release")
        .finish();
    let path = h.env.scratch("archives").join("benign.tar");
    std::fs::write(&path, archive).expect("writing the archive");

    h.env
        .sandbox(&["pull", "--verify=no", arg(&path), "box"])
        .success();

    let root = h.env.machine("box");
    let link = |rel: &str| {
        std::fs::read_link(root.join(rel)).unwrap_or_else(|e| panic!("readlink {rel}: {e}"))
    };
    assert_eq!(
        link("etc/localtime"),
        PathBuf::from("/usr/share/zoneinfo/UTC")
    );
    assert_eq!(link("escape"), h.outside);
    assert_eq!(link("up"), PathBuf::from(format!("{UP}/outside")));
    let a = root
        .join("etc/os-release")
        .metadata()
        .expect("stat os-release");
    let b = root
        .join("etc/os-release.bak")
        .metadata()
        .expect("stat os-release.bak");
    assert_eq!(
        a.ino(),
        b.ino(),
        "the in-archive hardlink must be a hardlink"
    );
    assert_eq!(
        std::fs::read(root.join("etc/os-release")).expect("read"),
        b"ID=raw\n"
    );
    assert_eq!(Hostile::host_files(&h.env), h.before);
}

#[test]
fn an_empty_image_with_a_valid_checksum_is_no_root_filesystem() {
    let env = TestEnv::new();
    for (file, bytes) in [("zero.tar", Vec::new()), ("blank.tar", vec![0u8; 10240])] {
        let path = env.scratch("images").join(file);
        std::fs::write(&path, &bytes).unwrap();
        let pin = format!("sha256:{}", crate::harness::sha256_hex(&bytes));
        env.sandbox(&["pull", "--checksum", &pin, arg(&path), "empty"])
            .failure()
            .stderr_mentions(&["holds no files", "no root filesystem"]);
        env.assert_machines(&[]);
    }
}

#[test]
fn escape_sequences_in_a_header_never_reach_the_terminal() {
    let env = TestEnv::new();
    // A tar header whose checksum field holds a clear-screen and a set-title sequence.
    let mut header = vec![0u8; 512];
    header[..5].copy_from_slice(b"etc/x");
    header[148..156].copy_from_slice(b"\x1b[2J\x1b]0;");
    let mut bytes = header;
    bytes.extend(vec![0u8; 1024]);
    let path = env.scratch("images").join("evil.tar");
    std::fs::write(&path, &bytes).unwrap();
    let pin = format!("sha256:{}", crate::harness::sha256_hex(&bytes));
    let out = env
        .sandbox(&["pull", "--checksum", &pin, arg(&path), "evil"])
        .failure();
    assert!(
        !out.stderr.contains('\u{1b}'),
        "an escape reached stderr: {:?}",
        out.stderr
    );
    assert!(out.stderr.contains("\\u{1b}"), "{}", out.stderr);
    env.assert_machines(&[]);
}
