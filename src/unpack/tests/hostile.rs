//! Archives that try to leave the root. Each must fail with the specific error (or land inside,
//! where GNU tar puts it) and leave everything outside the root as it was.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::util::{Sandbox, Tar};
use crate::unpack::UnpackError;
use crate::unpack::error::Violation;

fn violation(result: Result<crate::unpack::UnpackSummary, UnpackError>) -> (String, Violation) {
    match result {
        Err(e @ UnpackError::Unsafe { .. }) => {
            let message = e.to_string();
            let UnpackError::Unsafe { violation, .. } = e else {
                unreachable!()
            };
            (message, violation)
        }
        other => panic!("expected a safety violation, got {other:?}"),
    }
}

fn invalid(result: Result<crate::unpack::UnpackSummary, UnpackError>) -> String {
    match result {
        Err(e @ UnpackError::Invalid { .. }) => e.to_string(),
        other => panic!("expected an invalid-entry error, got {other:?}"),
    }
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let sb = Sandbox::new();
    let abs = sb.outside.join("secret");
    let archive = Tar::new()
        .raw(
            abs.as_os_str().as_bytes(),
            EntryType::Regular,
            b"",
            0o644,
            b"pwned",
        )
        .raw(
            b"/etc/passwd",
            EntryType::Regular,
            b"",
            0o644,
            b"root:x:0:0::/root:/bin/sh\n",
        )
        .finish();
    sb.unpack(&archive).unwrap();
    let inside = sb.root.join(abs.strip_prefix("/").unwrap());
    assert_eq!(fs_err::read(inside).unwrap(), b"pwned");
    assert_eq!(
        fs_err::read(sb.path("etc/passwd")).unwrap(),
        b"root:x:0:0::/root:/bin/sh\n"
    );
    sb.assert_outside_untouched();
}

#[test]
fn dotdot_that_leaves_the_root_is_refused() {
    for name in [
        "../outside/secret",
        "a/../../outside/secret",
        "/../outside/secret",
        "..",
    ] {
        let sb = Sandbox::new();
        let archive = Tar::new().file(name, b"pwned").finish();
        let (message, v) = violation(sb.unpack(&archive));
        assert_eq!(v, Violation::DotDot);
        assert_eq!(message, format!("entry `{name}`: `..` leaves the root"));
        sb.assert_outside_untouched();
    }
    // `..` that stays inside is only a lexical step.
    let sb = Sandbox::new();
    sb.unpack(&Tar::new().file("a/../b", b"ok").finish())
        .unwrap();
    assert_eq!(fs_err::read(sb.path("b")).unwrap(), b"ok");
}

#[test]
fn writing_through_a_symlink_to_an_absolute_directory_is_refused() {
    let sb = Sandbox::new();
    let target = sb.outside.to_str().unwrap().to_owned();
    let archive = Tar::new()
        .symlink("link", &target)
        .file("link/secret", b"pwned")
        .finish();
    let (message, v) = violation(sb.unpack(&archive));
    assert_eq!(
        v,
        Violation::SymlinkParent {
            link: "link".into(),
            target: target.clone()
        }
    );
    assert_eq!(
        message,
        format!(
            "entry `link/secret`: parent `link` is a symlink pointing outside the root (`{target}`)"
        )
    );
    sb.assert_outside_untouched();
}

#[test]
fn writing_through_a_relative_symlink_that_climbs_out_is_refused() {
    for target in ["../../..", "..", "../outside", "x/../../outside"] {
        let sb = Sandbox::new();
        let archive = Tar::new()
            .dir("x")
            .symlink("link", target)
            .file("link/outside/secret", b"pwned")
            .file("link/secret", b"pwned")
            .finish();
        let (_, v) = violation(sb.unpack(&archive));
        assert_eq!(
            v,
            Violation::SymlinkParent {
                link: "link".into(),
                target: target.into()
            },
            "{target}"
        );
        sb.assert_outside_untouched();
    }
}

#[test]
fn a_symlinked_directory_deeper_down_pointing_out_is_refused() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .dir("sub/")
        .symlink("sub/up", "../..")
        .file("sub/up/outside/secret", b"pwned")
        .finish();
    let (message, v) = violation(sb.unpack(&archive));
    assert_eq!(
        v,
        Violation::SymlinkParent {
            link: "sub/up".into(),
            target: "../..".into()
        }
    );
    assert!(
        message.starts_with("entry `sub/up/outside/secret`: parent `sub/up`"),
        "{message}"
    );
    sb.assert_outside_untouched();

    // A chain: the first link is harmless, the one it leads to points out.
    let sb = Sandbox::new();
    let outside = sb.outside.to_str().unwrap().to_owned();
    let archive = Tar::new()
        .dir("real/")
        .symlink("real/out", &outside)
        .symlink("a", "real")
        .file("a/out/secret", b"pwned")
        .finish();
    let (_, v) = violation(sb.unpack(&archive));
    assert_eq!(
        v,
        Violation::SymlinkParent {
            link: "real/out".into(),
            target: outside
        }
    );
    sb.assert_outside_untouched();
}

#[test]
fn symlinks_that_stay_inside_are_followed() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .dir("usr/bin/")
        .symlink("bin", "usr/bin")
        .file("bin/ls", b"ls")
        .dir("a/b/")
        .symlink("a/b/up", "../..")
        .file("a/b/up/top", b"top")
        .symlink("a/b/usr", "../../usr/./bin/..")
        .file("a/b/usr/bin/sh", b"sh")
        .finish();
    sb.unpack(&archive).unwrap();
    assert_eq!(fs_err::read(sb.path("usr/bin/ls")).unwrap(), b"ls");
    assert_eq!(fs_err::read(sb.path("top")).unwrap(), b"top");
    assert_eq!(fs_err::read(sb.path("usr/bin/sh")).unwrap(), b"sh");
    assert!(
        fs_err::symlink_metadata(sb.path("bin"))
            .unwrap()
            .is_symlink()
    );
    sb.assert_outside_untouched();
}

#[test]
fn hardlinks_to_files_outside_are_refused() {
    // `..`: a safety violation.
    let sb = Sandbox::new();
    let archive = Tar::new().hardlink("x", "../outside/secret").finish();
    let (message, v) = violation(sb.unpack(&archive));
    assert_eq!(
        v,
        Violation::HardlinkOutside {
            target: "../outside/secret".into()
        }
    );
    assert_eq!(
        message,
        "entry `x`: hardlinks to `../outside/secret`, which is outside the root"
    );
    sb.assert_outside_untouched();

    // Absolute: resolved inside the root, where there is no such file.
    let sb = Sandbox::new();
    let abs = sb.outside.join("secret");
    let archive = Tar::new().hardlink("x", abs.to_str().unwrap()).finish();
    let message = invalid(sb.unpack(&archive));
    assert!(message.contains("does not exist"), "{message}");
    assert!(!sb.path("x").exists());
    assert_eq!(fs_err::metadata(&abs).unwrap().nlink(), 1);
    sb.assert_outside_untouched();

    // Through a symlinked parent that points out.
    let sb = Sandbox::new();
    let outside = sb.outside.to_str().unwrap().to_owned();
    let archive = Tar::new()
        .symlink("link", &outside)
        .hardlink("x", "link/secret")
        .finish();
    let (message, v) = violation(sb.unpack(&archive));
    assert_eq!(
        v,
        Violation::HardlinkViaSymlink {
            target: "link/secret".into(),
            link: "link".into(),
            link_target: outside
        }
    );
    assert!(
        message.starts_with("entry `x`: hardlinks to `link/secret`"),
        "{message}"
    );
    sb.assert_outside_untouched();
}

#[test]
fn a_hardlink_to_a_symlink_links_the_symlink_not_its_target() {
    let sb = Sandbox::new();
    let secret = sb.outside.join("secret");
    let archive = Tar::new()
        .symlink("s", secret.to_str().unwrap())
        .hardlink("h", "s")
        .finish();
    sb.unpack(&archive).unwrap();
    let h = fs_err::symlink_metadata(sb.path("h")).unwrap();
    assert!(h.is_symlink());
    assert_eq!(
        h.ino(),
        fs_err::symlink_metadata(sb.path("s")).unwrap().ino()
    );
    assert_eq!(fs_err::metadata(&secret).unwrap().nlink(), 1);
    sb.assert_outside_untouched();
}

#[test]
fn a_symlink_at_the_destination_is_replaced_not_written_through() {
    let sb = Sandbox::new();
    let secret = sb.outside.join("secret");
    let dir = sb.outside.join("dir");
    let archive = Tar::new()
        .symlink("f", secret.to_str().unwrap())
        .file("f", b"new")
        .symlink("d", dir.to_str().unwrap())
        .dir("d/")
        .file("d/inside", b"inside")
        .symlink("h", secret.to_str().unwrap())
        .raw(b"h", EntryType::Fifo, b"", 0o644, b"")
        .finish();
    sb.unpack(&archive).unwrap();
    let f = fs_err::symlink_metadata(sb.path("f")).unwrap();
    assert!(f.is_file());
    assert_eq!(fs_err::read(sb.path("f")).unwrap(), b"new");
    assert!(fs_err::symlink_metadata(sb.path("d")).unwrap().is_dir());
    assert_eq!(fs_err::read(sb.path("d/inside")).unwrap(), b"inside");
    assert!(
        fs_err::symlink_metadata(sb.path("h"))
            .unwrap()
            .file_type()
            .is_fifo_like()
    );
    sb.assert_outside_untouched();

    // The same with the symlink already in the root (a lower layer), not from this archive.
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(&secret, sb.path("f")).unwrap();
    sb.unpack(&Tar::new().file("f", b"new").finish()).unwrap();
    assert_eq!(fs_err::read(sb.path("f")).unwrap(), b"new");
    sb.assert_outside_untouched();
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn broken_parents_are_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Tar::new()
                .symlink("l1", "l2")
                .symlink("l2", "l1")
                .file("l1/x", b"")
                .finish(),
            "too many levels",
        ),
        (
            Tar::new().symlink("d", "nowhere").file("d/x", b"").finish(),
            "`d` is a symlink to `nowhere`, which does not exist",
        ),
        (
            Tar::new().file("f", b"").file("f/x", b"").finish(),
            "parent `f` is not a directory",
        ),
        (
            Tar::new().symlink("./", "/").finish(),
            "only a directory can stand for the root",
        ),
        (
            Tar::new().file(".", b"x").finish(),
            "only a directory can stand for the root",
        ),
        (
            Tar::new().dir("d").hardlink("h", "d").finish(),
            "creating hardlink",
        ),
    ];
    for (archive, want) in cases {
        let sb = Sandbox::new();
        let err = sb.unpack(&archive).unwrap_err();
        assert!(!err.is_safety_violation(), "{err}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains(want), "{chain:?} should contain {want:?}");
        // A dangling symlink's target is not created as a side effect.
        assert!(!sb.path("nowhere").exists());
        sb.assert_outside_untouched();
    }
}

#[test]
fn non_utf8_names_are_extracted_byte_for_byte() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .raw(
            b"caf\xe9/\xff\xfe",
            EntryType::Regular,
            b"",
            0o644,
            b"latin1",
        )
        .raw(
            b"l\xff",
            EntryType::Symlink,
            b"caf\xe9/\xff\xfe",
            0o777,
            b"",
        )
        .finish();
    sb.unpack(&archive).unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9/\xff\xfe");
    assert_eq!(fs_err::read(sb.root.join(name)).unwrap(), b"latin1");
    let link = fs_err::read_link(sb.root.join(std::ffi::OsStr::from_bytes(b"l\xff"))).unwrap();
    assert_eq!(link.as_os_str().as_bytes(), b"caf\xe9/\xff\xfe");
}

#[test]
fn an_escaping_entry_after_good_ones_stops_the_extraction_there() {
    let sb = Sandbox::new();
    let archive = Tar::new()
        .file("good", b"1")
        .file("../outside/evil", b"2")
        .file("never", b"3")
        .finish();
    assert!(sb.unpack(&archive).unwrap_err().is_safety_violation());
    assert!(sb.path("good").exists());
    assert!(!sb.path("never").exists());
    assert!(!sb.outside.join("evil").exists());
    sb.assert_outside_untouched();
}
