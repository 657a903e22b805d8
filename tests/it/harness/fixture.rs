//! Ready-made pieces most pull tests share: an OS image with its expected tree, and a keyring
//! file exported from a `Gpg`.

use std::path::{Path, PathBuf};

use super::env::TestEnv;
use super::gpg::Gpg;
use super::rootfs::{self, Compression, TreeSpec};

/// An image's bytes together with the tree it must materialise to.
pub struct Image {
    pub spec: TreeSpec,
    pub bytes: Vec<u8>,
}

impl Image {
    /// A fresh OS tree (unique marker) packed by GNU tar and compressed.
    pub fn new(env: &TestEnv, compression: Compression) -> Image {
        Image::from_spec(env, TreeSpec::new(), compression)
    }

    pub fn from_spec(env: &TestEnv, spec: TreeSpec, compression: Compression) -> Image {
        let bytes = rootfs::image(&env.scratch("trees"), &spec, compression);
        Image { spec, bytes }
    }

    pub fn hex(&self) -> String {
        super::sha256_hex(&self.bytes)
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Asserts `root` is this image's tree.
    #[track_caller]
    pub fn assert_materialised(&self, root: &Path) {
        rootfs::assert_tree(root, &self.spec);
    }
}

/// Writes `gpg`'s public key into the test's scratch space as `key.asc` or `key.gpg`.
pub fn keyring(env: &TestEnv, gpg: &Gpg, armor: bool) -> PathBuf {
    let dir = env.scratch(&format!("keyring-{}", gpg.key_id()));
    let name = if armor { "key.asc" } else { "key.gpg" };
    gpg.export_to(&dir.join(name), armor)
}

/// A path as a `&str` argument (every test path is UTF-8: temp dirs and fixed names).
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
