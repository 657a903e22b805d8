//! A download site: a docroot served by nginx, with helpers that publish an image the way
//! distributions do (tarball, `SHA256SUMS` or `<file>.sha256`, detached signatures).
//!
//! Checksum files are written by coreutils' `sha256sum` and signatures by `gpg`, so the binary
//! under test is checked against independent producers, never against its own output.

use std::path::PathBuf;
use std::process::Command;

use super::gpg::Gpg;
use super::nginx::Nginx;

pub struct Site {
    // Field order matters: nginx must stop before its docroot is deleted.
    pub nginx: Nginx,
    docroot: PathBuf,
    _temp: tempfile::TempDir,
}

/// How `sha256sum` marks the file name: `<hex>  name` (text) or `<hex> *name` (binary).
#[derive(Clone, Copy, Debug)]
pub enum SumStyle {
    Text,
    Binary,
    /// `<hex> name` with a single space, written by hand (some tools emit it).
    SingleSpace,
}

impl Site {
    pub fn new() -> Site {
        let temp = tempfile::Builder::new()
            .prefix("sandbox-site-")
            .tempdir()
            .expect("creating the site's temp dir");
        let docroot = temp.path().join("docroot");
        std::fs::create_dir_all(&docroot).expect("creating the docroot");
        let nginx = Nginx::start(&docroot, &temp.path().join("nginx"));
        Site {
            nginx,
            docroot,
            _temp: temp,
        }
    }

    /// Filesystem path of `rel` (e.g. `img/os.tar.gz`) in the docroot.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.docroot.join(rel)
    }

    pub fn nginx(&self) -> &Nginx {
        &self.nginx
    }

    pub fn url(&self, rel: &str) -> String {
        self.nginx.url(rel)
    }

    /// Writes `data` at `rel`, creating parent directories.
    pub fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let path = self.path(rel);
        let parent = path.parent().expect("a docroot path has a parent");
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Writes `dir/SHA256SUMS` over `files` (names relative to `dir`) and returns its path.
    pub fn sha256sums(&self, dir: &str, files: &[&str], style: SumStyle) -> PathBuf {
        let text = self.sums_text(dir, files, style);
        self.put(&join(dir, "SHA256SUMS"), text.as_bytes())
    }

    /// Writes `<dir>/<file>.sha256` (the one-file form) and returns its path.
    pub fn sha256_file(&self, dir: &str, file: &str, style: SumStyle) -> PathBuf {
        let text = self.sums_text(dir, &[file], style);
        self.put(&join(dir, &format!("{file}.sha256")), text.as_bytes())
    }

    fn sums_text(&self, dir: &str, files: &[&str], style: SumStyle) -> String {
        let tool = super::require_tool("sha256sum");
        let mut cmd = Command::new(tool);
        cmd.current_dir(self.path(dir));
        match style {
            SumStyle::Text => {
                cmd.arg("--text");
            }
            SumStyle::Binary | SumStyle::SingleSpace => {
                cmd.arg("--binary");
            }
        }
        cmd.args(files);
        let out =
            String::from_utf8(super::run_tool(&mut cmd, None)).expect("sha256sum prints UTF-8");
        match style {
            SumStyle::SingleSpace => out.replace(" *", " "),
            _ => out,
        }
    }

    /// Signs `rel` with `gpg` (detached, `.gpg` or `.asc` next to it).
    pub fn sign(&self, gpg: &Gpg, rel: &str, armor: bool) -> PathBuf {
        gpg.detach_sign(&self.path(rel), armor)
    }

    /// Publishes `image` as `dir/file` with a `SHA256SUMS` signed by `gpg`; returns the URL.
    pub fn publish_signed(
        &self,
        gpg: &Gpg,
        dir: &str,
        file: &str,
        image: &[u8],
        armor: bool,
    ) -> String {
        let rel = join(dir, file);
        self.put(&rel, image);
        self.sha256sums(dir, &[file], SumStyle::Text);
        self.sign(gpg, &join(dir, "SHA256SUMS"), armor);
        self.url(&rel)
    }
}

/// `dir/name`, or `name` for the docroot itself.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// The URI path nginx logs for `rel`.
pub fn uri(rel: &str) -> String {
    format!("/{}", rel.trim_start_matches('/'))
}
