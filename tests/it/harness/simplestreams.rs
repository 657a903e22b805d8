//! An LXC image server on 127.0.0.1, generated per test and served by the harness's nginx.
//!
//! Each build is a tiny rootfs tree (`etc/os-release` and a marker naming the build) packed by
//! GNU tar and compressed by the real xz, next to a metadata tarball, a stand-in squashfs, a
//! `SHA256SUMS` written by coreutils and a `SHA256SUMS.asc` made by real GnuPG. The documents
//! that list the builds are rendered in the shape images.linuxcontainers.org publishes (compare
//! tests/fixtures/simplestreams/linuxcontainers-images-2023-04.json): `streams/v1/index.json`
//! with an `images` entry of datatype `image-downloads`, and `streams/v1/images.json` with
//! products keyed `os:release:arch:variant`. Items are keyed as either server generation keys
//! them (`root.tar.xz`/`lxd.tar.xz` or `rootfs.tar.xz`/`incus.tar.xz`), so a binary that reads
//! items by key instead of by `ftype` fails here. The legacy `meta/1.0/index-system` can be
//! written for the same builds.
//!
//! The signing key mimics the real LXC image key: RSA whose only self-signature uses SHA-1
//! (`--cert-digest-algo SHA1`); data signatures use SHA-256 unless a test asks otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value, json};

use super::gpg::Gpg;
use super::nginx::Nginx;
use super::rootfs::{Compression, pack};
use super::site::{Site, SumStyle};

/// Where each build puts the file that says which build it is.
pub const MARKER_FILE: &str = "etc/lxc-test-build";

/// A GnuPG home with one RSA signing key whose self-signature is SHA-1, like the LXC key.
pub struct SigningKey {
    gpg: Gpg,
}

impl SigningKey {
    /// A fresh key for `LXC test <uid>`; `uid` tells keys apart in failure messages.
    pub fn sha1_self_signed(uid: &str) -> SigningKey {
        // rsa2048: RSA like the real key (EdDSA in gpg refuses SHA-1), small to stay fast.
        let gpg = Gpg::generate(
            &format!("LXC test <{uid}@example.org>"),
            "rsa2048",
            &["--cert-digest-algo", "SHA1"],
        );
        SigningKey { gpg }
    }

    fn command(&self) -> Command {
        self.gpg.command()
    }

    /// Upper-case hex fingerprint of the primary key.
    pub fn fingerprint(&self) -> &str {
        self.gpg.fingerprint()
    }

    /// The 16-hex-digit key ID (what an issuer subpacket of an old signature carries).
    pub fn key_id(&self) -> &str {
        self.gpg.key_id()
    }

    /// Writes the armored public key to `path`.
    pub fn export_to(&self, path: &Path) -> PathBuf {
        self.gpg.export_to(path, true)
    }

    /// Armored detached signature over `file` into `out`, hashed with `digest` (`SHA256`, `SHA1`).
    pub fn sign(&self, file: &Path, out: &Path, digest: &str) {
        super::run_tool(
            self.command()
                .args(["--local-user", self.fingerprint(), "--digest-algo", digest])
                .args(["--armor", "--output"])
                .arg(out)
                .arg("--detach-sign")
                .arg(file),
            None,
        );
    }

    /// `(signature class, hash algorithm id)` of every signature packet in `file`, as
    /// `gpg --list-packets` reports them (hash 2 is SHA-1, 8 is SHA-256), to prove a fixture
    /// is what its test claims.
    pub fn signature_digests(&self, file: &Path) -> Vec<(String, u8)> {
        let out = super::run_tool(self.command().arg("--list-packets").arg(file), None);
        let text = String::from_utf8_lossy(&out);
        let mut found = Vec::new();
        let mut class = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.split_once("sigclass ").map(|(_, r)| r) {
                class = Some(rest.split([',', ' ']).next().unwrap_or("").to_string());
            }
            if let Some(rest) = line.strip_prefix("digest algo ") {
                let algo = rest.split(',').next().and_then(|a| a.trim().parse().ok());
                if let (Some(c), Some(a)) = (class.take(), algo) {
                    found.push((c, a));
                }
            }
        }
        found
    }
}

/// How a server generation keys the items of a build (only `ftype` is the same in both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// `root.tar.xz`, `lxd.tar.xz`, `root.squashfs`: images.linuxcontainers.org in 2023.
    Lxd,
    /// `rootfs.tar.xz`, `incus.tar.xz`, `rootfs.squashfs`: the later generation.
    Incus,
}

/// One build to publish.
#[derive(Clone, Debug)]
pub struct BuildSpec {
    /// As the LXC server writes it (`Debian`); ids, paths and the legacy index use lower case.
    pub os: String,
    pub release: String,
    pub release_title: String,
    pub variant: String,
    pub arch: String,
    pub version: String,
    /// Published as the product's comma-separated `aliases`; omitted when empty.
    pub aliases: Vec<String>,
    pub generation: Generation,
    /// `false`: the build is still being uploaded, its version lists only the metadata item.
    pub has_rootfs: bool,
}

impl BuildSpec {
    pub fn new(os: &str, release: &str, variant: &str, arch: &str, version: &str) -> BuildSpec {
        BuildSpec {
            os: os.into(),
            release: release.into(),
            release_title: release.into(),
            variant: variant.into(),
            arch: arch.into(),
            version: version.into(),
            aliases: Vec::new(),
            generation: Generation::Lxd,
            has_rootfs: true,
        }
    }

    pub fn aliases(mut self, aliases: &[&str]) -> BuildSpec {
        self.aliases = aliases.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn generation(mut self, generation: Generation) -> BuildSpec {
        self.generation = generation;
        self
    }

    pub fn without_rootfs(mut self) -> BuildSpec {
        self.has_rootfs = false;
        self
    }

    /// `debian:bookworm:amd64:cloud`.
    pub fn product_id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.os.to_lowercase(),
            self.release,
            self.arch,
            self.variant
        )
    }

    /// The build directory from the server root, ending in `/`.
    pub fn dir(&self) -> String {
        format!(
            "images/{}/{}/{}/{}/{}/",
            self.os.to_lowercase(),
            self.release,
            self.arch,
            self.variant,
            self.version
        )
    }

    /// Item keys: (rootfs, metadata (also its ftype and file name), squashfs).
    fn keys(&self) -> (&'static str, &'static str, &'static str) {
        match self.generation {
            Generation::Lxd => ("root.tar.xz", "lxd.tar.xz", "root.squashfs"),
            Generation::Incus => ("rootfs.tar.xz", "incus.tar.xz", "rootfs.squashfs"),
        }
    }
}

/// A build as it is on the server.
#[derive(Clone, Debug)]
pub struct Published {
    pub spec: BuildSpec,
    /// Contents of [`MARKER_FILE`] in the rootfs: names the build and carries a random token.
    pub marker: String,
    pub rootfs: Vec<u8>,
    pub meta: Vec<u8>,
    pub squashfs: Vec<u8>,
}

impl Published {
    /// `<dir>rootfs.tar.xz`, from the server root.
    pub fn rootfs_rel(&self) -> String {
        format!("{}rootfs.tar.xz", self.spec.dir())
    }

    pub fn rootfs_hex(&self) -> String {
        super::sha256_hex(&self.rootfs)
    }

    /// Asserts that the machine at `root` is this build's tree.
    #[track_caller]
    pub fn assert_landed(&self, root: &Path) {
        let marker = std::fs::read_to_string(root.join(MARKER_FILE))
            .unwrap_or_else(|e| panic!("reading {MARKER_FILE} in {}: {e}", root.display()));
        assert_eq!(
            marker,
            self.marker,
            "{} holds another build than {} {}",
            root.display(),
            self.spec.product_id(),
            self.spec.version
        );
        let os_release = std::fs::read_to_string(root.join("etc/os-release"))
            .unwrap_or_else(|e| panic!("reading etc/os-release in {}: {e}", root.display()));
        assert_eq!(os_release, os_release_text(&self.spec));
    }
}

fn os_release_text(spec: &BuildSpec) -> String {
    format!(
        "ID={}\nVERSION_CODENAME={}\nPRETTY_NAME=\"{} {}\"\n",
        spec.os.to_lowercase(),
        spec.release,
        spec.os,
        spec.release
    )
}

/// A docroot with builds and the documents that list them. The server root may sit below the
/// docroot (`with_prefix`) to check that a server URL with a path works.
pub struct ImageServer {
    // Field order: nginx stops before the docroot goes.
    site: Option<Site>,
    docroot: PathBuf,
    port: u16,
    prefix: String,
    builds: Vec<Published>,
    work: tempfile::TempDir,
}

impl ImageServer {
    pub fn new() -> ImageServer {
        ImageServer::with_prefix("")
    }

    /// A server whose root is `<prefix>/` in the docroot.
    pub fn with_prefix(prefix: &str) -> ImageServer {
        let site = Site::new();
        let docroot = site.path("");
        let port = site.nginx.port();
        ImageServer {
            site: Some(site),
            docroot,
            port,
            prefix: prefix.trim_matches('/').to_string(),
            builds: Vec::new(),
            work: tempfile::Builder::new()
                .prefix("sandbox-lxc-")
                .tempdir()
                .expect("creating the image server's work dir"),
        }
    }

    /// The `--images-server` argument: `http://127.0.0.1:PORT/` or, with a prefix,
    /// `http://127.0.0.1:PORT/<prefix>` (no trailing slash: the binary must add it).
    pub fn server(&self) -> String {
        if self.prefix.is_empty() {
            format!("http://127.0.0.1:{}/", self.port)
        } else {
            format!("http://127.0.0.1:{}/{}", self.port, self.prefix)
        }
    }

    fn docroot_rel(&self, rel: &str) -> String {
        let rel = rel.trim_start_matches('/');
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Filesystem path of `rel` (from the server root).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.docroot.join(self.docroot_rel(rel))
    }

    /// The URI nginx logs for `rel` (from the server root).
    pub fn uri(&self, rel: &str) -> String {
        format!("/{}", self.docroot_rel(rel))
    }

    /// The running nginx; panics after `stop`.
    pub fn nginx(&self) -> &Nginx {
        &self
            .site
            .as_ref()
            .expect("the image server was stopped")
            .nginx
    }

    /// Successful GETs of `rel` so far.
    pub fn gets(&self, rel: &str) -> usize {
        let uri = self.uri(rel);
        self.nginx()
            .log_for(&uri)
            .iter()
            .filter(|e| e.status == 200 || e.status == 206)
            .count()
    }

    /// Body bytes nginx sent for `rel` over all requests.
    pub fn bytes_sent(&self, rel: &str) -> u64 {
        self.nginx().body_bytes_for(&self.uri(rel))
    }

    /// Stops nginx (and removes its docroot): the port refuses connections from now on.
    /// Another test's nginx could in principle be given the same port later; ports come from
    /// the kernel's ephemeral range, so that is unlikely enough for a test that then fails loudly.
    pub fn stop(&mut self) {
        self.site = None;
    }

    /// Writes `data` at `rel` (from the server root), creating parent directories.
    pub fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let path = self.path(rel);
        let parent = path.parent().expect("a docroot path has a parent");
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        std::fs::write(&path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    pub fn remove(&self, rel: &str) {
        let path = self.path(rel);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// Generates, writes and signs one build; the documents are written by `write_streams`
    /// or `write_legacy_index` once every build is there.
    pub fn publish(&mut self, spec: BuildSpec, key: &SigningKey) -> Published {
        let marker = format!(
            "{}/{}/{} {} {} {}\n",
            spec.os.to_lowercase(),
            spec.release,
            spec.variant,
            spec.arch,
            spec.version,
            super::token()
        );
        let tree = tempfile::tempdir_in(self.work.path()).expect("creating a tree dir");
        let write = |rel: &str, data: &[u8]| {
            let path = tree.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("tree paths have parents"))
                .unwrap_or_else(|e| panic!("creating the parent of {}: {e}", path.display()));
            std::fs::write(&path, data)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        };
        write("rootfs/etc/os-release", os_release_text(&spec).as_bytes());
        write(&format!("rootfs/{MARKER_FILE}"), marker.as_bytes());
        if spec.variant == "cloud" {
            // The cloud variant is the one with cloud-init, as on the real servers.
            write("rootfs/usr/bin/cloud-init", b"#!/bin/sh\n");
        }
        write(
            "meta/metadata.yaml",
            format!(
                "architecture: {}\ncreation_date: 0\nproperties:\n  os: {}\n  release: {}\n  variant: {}\n  serial: \"{}\"\n",
                spec.arch, spec.os, spec.release, spec.variant, spec.version
            )
            .as_bytes(),
        );
        let rootfs = Compression::Xz.compress(&pack(&tree.path().join("rootfs"), "."));
        let meta = Compression::Xz.compress(&pack(&tree.path().join("meta"), "."));
        // Never downloaded by the binary; real bytes so its digest in the products file is real.
        let squashfs = super::random_bytes(1024);

        let dir = spec.dir();
        let (_, meta_key, _) = spec.keys();
        let mut files = vec!["meta.tar.xz", meta_key, "rootfs.squashfs"];
        self.put(&format!("{dir}meta.tar.xz"), &meta);
        self.put(&format!("{dir}{meta_key}"), &meta);
        self.put(&format!("{dir}rootfs.squashfs"), &squashfs);
        if spec.has_rootfs {
            self.put(&format!("{dir}rootfs.tar.xz"), &rootfs);
            files.push("rootfs.tar.xz");
        }
        let site = self.site.as_ref().expect("publishing on a stopped server");
        site.sha256sums(&self.docroot_rel(&dir), &files, SumStyle::Text);
        self.sign(&format!("{dir}SHA256SUMS"), key, "SHA256");
        let published = Published {
            spec,
            marker,
            rootfs,
            meta,
            squashfs,
        };
        self.builds.push(published.clone());
        published
    }

    /// (Re)writes `<rel>.asc`, an armored detached signature by `key` over `rel`.
    pub fn sign(&self, rel: &str, key: &SigningKey, digest: &str) -> PathBuf {
        let file = self.path(rel);
        let out = self.path(&format!("{rel}.asc"));
        key.sign(&file, &out, digest);
        out
    }

    /// The products file for every published build, as images.linuxcontainers.org shapes it.
    pub fn products(&self) -> Value {
        let mut products = Map::new();
        for b in &self.builds {
            let s = &b.spec;
            let product = products.entry(s.product_id()).or_insert_with(|| {
                let mut p = json!({
                    "arch": s.arch,
                    "os": s.os,
                    "release": s.release,
                    "release_title": s.release_title,
                    "variant": s.variant,
                    "requirements": {},
                    "versions": {},
                });
                if !s.aliases.is_empty() {
                    p["aliases"] = s.aliases.join(",").into();
                }
                p
            });
            let (rootfs_key, meta_key, squashfs_key) = s.keys();
            let dir = s.dir();
            let combined = |tail: &[u8]| super::sha256_hex(&[b.meta.as_slice(), tail].concat());
            let mut items = Map::new();
            items.insert(
                meta_key.into(),
                json!({
                    "ftype": meta_key,
                    "sha256": super::sha256_hex(&b.meta),
                    "size": b.meta.len(),
                    "path": format!("{dir}{meta_key}"),
                    "combined_sha256": combined(&b.squashfs),
                    "combined_rootxz_sha256": combined(&b.rootfs),
                    "combined_squashfs_sha256": combined(&b.squashfs),
                }),
            );
            items.insert(
                squashfs_key.into(),
                json!({
                    "ftype": "squashfs",
                    "sha256": super::sha256_hex(&b.squashfs),
                    "size": b.squashfs.len(),
                    "path": format!("{dir}rootfs.squashfs"),
                }),
            );
            if s.has_rootfs {
                items.insert(
                    rootfs_key.into(),
                    json!({
                        "ftype": "root.tar.xz",
                        "sha256": b.rootfs_hex(),
                        "size": b.rootfs.len(),
                        "path": b.rootfs_rel(),
                    }),
                );
            }
            product["versions"][&s.version] = json!({ "items": items });
        }
        json!({
            "content_id": "images",
            "datatype": "image-downloads",
            "format": "products:1.0",
            "products": products,
        })
    }

    /// Writes `streams/v1/index.json` (one `images` entry) and `streams/v1/images.json`.
    pub fn write_streams(&self) {
        self.write_products(&self.products());
    }

    /// Writes `products` as `streams/v1/images.json` with an index pointing to it.
    pub fn write_products(&self, products: &Value) {
        let ids: Vec<&String> = products["products"]
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let index = json!({
            "format": "index:1.0",
            "index": {
                "images": {
                    "datatype": "image-downloads",
                    "path": "streams/v1/images.json",
                    "format": "products:1.0",
                    "products": ids,
                    "updated": "Mon, 03 Jun 2024 05:24:00 +0000",
                }
            },
            "updated": "Mon, 03 Jun 2024 05:24:00 +0000",
        });
        let pretty = |v: &Value| serde_json::to_vec_pretty(v).expect("rendering JSON");
        self.put("streams/v1/index.json", &pretty(&index));
        self.put("streams/v1/images.json", &pretty(products));
    }

    /// Writes the legacy index `meta/1.0/<name>` listing `builds`:
    /// `distro;release;arch;variant;build;/path/`.
    pub fn write_legacy_index(&self, name: &str, builds: &[&Published]) {
        let text: String = builds
            .iter()
            .map(|b| {
                let s = &b.spec;
                format!(
                    "{};{};{};{};{};/{}\n",
                    s.os.to_lowercase(),
                    s.release,
                    s.arch,
                    s.variant,
                    s.version,
                    s.dir()
                )
            })
            .collect();
        self.put(&format!("meta/1.0/{name}"), text.as_bytes());
    }
}
