//! A full disk, on a small real ext4 loop filesystem: as the machines dir (the unpack runs out
//! of space) and as the sandboxes dir (the download does). Each time a clear error that names
//! the filesystem, nothing left behind, the cache consistent, and the same pull succeeding
//! once there is room.

use std::path::Path;

use crate::harness::env::TestEnv;
use crate::harness::fixture::Image;
use crate::harness::loopfs::{FsType, LoopFs};
use crate::harness::rootfs::{Compression, TreeSpec};
use crate::harness::site::{Site, SumStyle};
use crate::harness::{dir_names, files_under};

fn mount_small(env: &TestEnv, at: &Path, mib: u64) -> LoopFs {
    let image = env.scratch("loop").join(format!("{mib}.img"));
    LoopFs::mount(FsType::Ext4, &image, at, mib)
}

/// 24 MiB of incompressible payload: more than the 16 MiB filesystems hold.
fn big(env: &TestEnv, site: &Site) -> (Image, String) {
    let image = Image::from_spec(
        env,
        TreeSpec::new().with_payload(24 << 20),
        Compression::Gzip,
    );
    site.put("img/os.tar.gz", &image.bytes);
    site.sha256_file("img", "os.tar.gz", SumStyle::Text);
    (image, site.url("img/os.tar.gz"))
}

#[test]
fn a_full_machines_dir_fails_the_unpack_cleanly() {
    let env = TestEnv::new();
    let site = Site::new();
    let (image, url) = big(&env, &site);
    let machines = env.machines_dir();
    let fs = mount_small(&env, &machines, 16);
    let args = ["pull", "--verify=checksum", &url, "box"];
    env.sandbox(&args).failure().stderr_mentions(&[
        &format!("the filesystem of {} is full", machines.display()),
        "No space left",
    ]);
    assert_eq!(
        dir_names(&machines)
            .into_iter()
            .filter(|n| n != "lost+found")
            .count(),
        0
    );
    env.assert_cache_consistent("after the full disk");
    assert!(
        env.blobs().contains(&image.hex()),
        "the verified download is kept"
    );

    // With room, the same pull unpacks from the cache.
    drop(fs);
    env.sandbox(&args).success();
    image.assert_materialised(&env.machine("box"));
}

#[test]
fn a_full_sandboxes_dir_fails_the_download_cleanly() {
    let env = TestEnv::new();
    let site = Site::new();
    let (image, url) = big(&env, &site);
    let sandboxes = env.sandboxes_dir();
    let fs = mount_small(&env, &sandboxes, 16);
    let args = ["pull", "--verify=checksum", &url, "box"];
    env.sandbox(&args).failure().stderr_mentions(&[
        "is full",
        "No space left",
        &sandboxes.display().to_string(),
    ]);
    env.assert_machines(&[]);
    let tmp = files_under(&env.cache_tmp_dir());
    assert!(
        tmp.is_empty(),
        "the partial download holds the disk: {tmp:?}"
    );
    env.assert_cache_consistent("after the full disk");
    assert!(!env.blobs().contains(&image.hex()));

    drop(fs);
    env.sandbox(&args).success();
    image.assert_materialised(&env.machine("box"));
}
