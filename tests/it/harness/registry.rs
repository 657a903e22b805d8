//! Debian's `docker-registry` (the CNCF distribution registry) on a free 127.0.0.1 port, plain
//! http, optionally behind htpasswd Basic auth; images pushed into it by real `skopeo`.
//!
//! Its filesystem storage is known (`docker/registry/v2/blobs/sha256/<xx>/<hex>/data`), so a
//! test can corrupt a blob behind the registry's back: the registry then serves bytes that no
//! longer match the digest it was asked for, as a hostile or broken mirror would.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    log: PathBuf,
    creds: Option<(String, String)>,
}

impl Registry {
    /// Starts a registry with its storage and config in `state_dir`; with `creds`, every
    /// request needs Basic auth as that user.
    pub fn start(state_dir: &Path, creds: Option<(&str, &str)>) -> Registry {
        let binary = super::require_tool("docker-registry");
        let storage = state_dir.join("storage");
        std::fs::create_dir_all(&storage)
            .unwrap_or_else(|e| panic!("creating {}: {e}", storage.display()));
        let auth = match creds {
            Some((user, pass)) => {
                let htpasswd = super::require_tool("htpasswd");
                let line = super::run_tool(Command::new(htpasswd).args(["-Bbn", user, pass]), None);
                let path = state_dir.join("htpasswd");
                std::fs::write(&path, line)
                    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
                format!(
                    "auth:\n  htpasswd:\n    realm: sandbox-test\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let mut last_error = String::new();
        // Why retries: the port is free when picked but another test may take it first.
        for _ in 0..5 {
            let port = super::free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            );
            let config_path = state_dir.join("config.yml");
            std::fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
            let log = std::fs::File::create(state_dir.join("registry.log"))
                .expect("creating the registry log");
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("cloning the log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
            let mut registry = Registry {
                child,
                port,
                storage: storage.clone(),
                log: state_dir.join("registry.log"),
                creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            };
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(e) => {
                    let log =
                        std::fs::read_to_string(state_dir.join("registry.log")).unwrap_or_default();
                    last_error = format!("{e}\n{log}");
                }
            }
        }
        panic!("docker-registry did not come up: {last_error}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("docker-registry exited with {status}"));
            }
            // The API version header is the registry's own: a neighbour on the port has none.
            if let Ok(head) = get_head(self.port, "/v2/")
                && head
                    .to_ascii_lowercase()
                    .contains("docker-distribution-api-version")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("port {} did not answer /v2/ within 15s", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port on 127.0.0.1 (for a proxy in front of the registry).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `docker://127.0.0.1:PORT/REPO_TAG`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host())
    }

    /// Pushes the image tagged `tag` in the layout `dir` as `repo_tag`, with real skopeo.
    /// `--all` keeps every platform of an index.
    pub fn push(&self, dir: &Path, tag: &str, repo_tag: &str) {
        let skopeo = super::require_tool("skopeo");
        let mut cmd = Command::new(skopeo);
        cmd.args([
            "--insecure-policy",
            "copy",
            "--all",
            "--dest-tls-verify=false",
        ]);
        if let Some((u, p)) = &self.creds {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", dir.display()))
            .arg(self.reference(repo_tag));
        super::run_tool(&mut cmd, None);
    }

    /// The digest and document the registry serves for `repo:tag`, read from its storage
    /// (skopeo may rewrite a manifest on push, e.g. compressing a plain tar layer).
    pub fn manifest(&self, repo: &str, tag: &str) -> (String, serde_json::Value) {
        let link = self
            .storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        let digest = std::fs::read_to_string(&link)
            .unwrap_or_else(|e| panic!("reading {}: {e}", link.display()));
        (digest.trim().to_string(), self.document(digest.trim()))
    }

    /// The JSON blob `digest` (`sha256:HEX`) from the registry's storage.
    pub fn document(&self, digest: &str) -> serde_json::Value {
        let hex = digest.trim_start_matches("sha256:");
        let bytes = std::fs::read(self.blob_data(hex)).expect("reading a registry blob");
        serde_json::from_slice(&bytes).expect("a JSON document")
    }

    /// How many successful GETs of `path` (e.g. `/v2/REPO/blobs/sha256:HEX`) the registry's
    /// access log records: what was really transferred, whatever the client says.
    pub fn gets(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("\"GET {path} HTTP/1.1\" 200 ");
        log.lines().filter(|l| l.contains(&needle)).count()
    }

    /// How many requests `METHOD path…` (a path prefix) the access log records, any status.
    pub fn requests(&self, method: &str, path_prefix: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("\"{method} {path_prefix}");
        log.lines().filter(|l| l.contains(&needle)).count()
    }

    /// Where the registry keeps the blob `hex`.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status line and headers of a plain GET.
fn get_head(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    Ok(text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string())
}
