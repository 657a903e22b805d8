//! `sandbox build debian+docker NAME`, the main flow, end to end against a simplestreams server
//! on 127.0.0.1 in the real LXC layout (`cloud` variant, `SHA256SUMS` signed by GnuPG as
//! `SHA256SUMS.asc`), at the server root and under a sub-path, chosen by `--images-server`, by
//! `$SANDBOX_IMAGES_SERVER`, and by `images_server` in a user template extending the shipped
//! `debian`; the flag over the variable over the template key; a server whose key is not
//! trusted refused by name. Every run has `HTTPS_PROXY` pointing at a tripwire that counts
//! connections, so a request to the default server (https) would be seen; it must see none.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::build::{recorder, write_template};
use crate::harness::env::Outcome;
use crate::harness::fixture::arg;
use crate::harness::simplestreams::{BuildSpec, ImageServer, Published};
use crate::images::{Lxc, V1, V2, host_arch};

/// A loopback listener that counts the connections made to it and answers none: the HTTPS
/// proxy of every run, so any request to an https server (the default image server is one)
/// lands here instead of on the network.
struct Tripwire {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tripwire {
    fn new() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the tripwire");
        let port = listener
            .local_addr()
            .expect("the tripwire's address")
            .port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut c) = conn {
                    h.fetch_add(1, Ordering::SeqCst);
                    // A proxy that refuses: the client fails at once instead of waiting.
                    let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
                }
            }
        });
        Tripwire {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn proxy(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the build is told where the server is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum How {
    Flag,
    Variable,
    TemplateKey,
}

/// One host, one server with two `debian/bookworm/cloud` builds for this host's arch (the
/// newer one must land) and a machinectl stand-in.
struct Fixture {
    lxc: Lxc,
    newest: Published,
    machinectl: PathBuf,
    log: PathBuf,
    tripwire: Tripwire,
}

impl Fixture {
    fn new(server: ImageServer) -> Fixture {
        let mut lxc = Lxc::with_server(server);
        let cloud = |v: &str| {
            BuildSpec::new("Debian", "bookworm", "cloud", host_arch(), v)
                .aliases(&["debian/bookworm/cloud", "debian/12/cloud"])
        };
        lxc.publish(cloud(V1));
        let newest = lxc.publish(cloud(V2));
        lxc.server.write_streams();
        let (machinectl, log) = recorder(&lxc.env, "machinectl", "");
        Fixture {
            lxc,
            newest,
            machinectl,
            log,
            tripwire: Tripwire::new(),
        }
    }

    /// `sandbox build ARGS…` with the machinectl stand-in, the tripwire as HTTPS proxy and
    /// `vars` on top.
    fn build(&self, args: &[&str], vars: &[(&str, &str)]) -> Outcome {
        let proxy = self.tripwire.proxy();
        let mut env = vec![
            ("SANDBOX_MACHINECTL", arg(&self.machinectl)),
            ("HTTPS_PROXY", proxy.as_str()),
            ("https_proxy", proxy.as_str()),
            // Plain http (the test server) goes direct, whatever the runner's environment says.
            ("HTTP_PROXY", ""),
            ("http_proxy", ""),
            ("ALL_PROXY", ""),
            ("all_proxy", ""),
            ("NO_PROXY", "127.0.0.1"),
            ("no_proxy", "127.0.0.1"),
        ];
        env.extend_from_slice(vars);
        let mut full = vec!["build"];
        full.extend_from_slice(args);
        self.lxc.env.sandbox_with_env(&full, &env)
    }

    /// A user template `mydebian`: the shipped `debian` with `images_server = URL`.
    fn mydebian(&self, url: &str) -> PathBuf {
        let manifest = format!(
            "description = \"debian from our mirror\"\nextends = [\"debian\"]\nimages_server = \"{url}\"\n"
        );
        write_template(
            &self.lxc.env,
            "mydebian",
            &[("template.toml", manifest.as_bytes(), 0o644)],
        )
        .join("template.toml")
    }

    /// The server's key in `<sandboxes_dir>/keys/`, as `sandbox keys add` leaves it.
    fn trust_in_keys_dir(&self) {
        let dir = self.lxc.env.sandboxes_dir().join("keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&self.lxc.keyring, dir.join("mirror.asc")).unwrap();
    }

    fn state(&self, name: &str) -> serde_json::Value {
        let path = self
            .lxc
            .env
            .sandboxes_dir()
            .join(format!("state/{name}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn machinectl_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// `sandbox build debian+docker web` (or `mydebian+docker`), the server given `how`; its
    /// `--dry-run` first, which must name the server and what chose it.
    #[track_caller]
    fn build_web(&self, how: How) {
        let server = self.lxc.server.server();
        let normalised = format!("{}/", server.trim_end_matches('/'));
        let keyring = arg(&self.lxc.keyring);
        let (template, mut args, vars, chosen_by) = match how {
            How::Flag => (
                "debian+docker",
                vec!["--images-server", server.as_str(), "--keyring", keyring],
                vec![],
                "--images-server".to_string(),
            ),
            How::Variable => {
                self.trust_in_keys_dir();
                (
                    "debian+docker",
                    vec![],
                    vec![("SANDBOX_IMAGES_SERVER", server.as_str())],
                    "$SANDBOX_IMAGES_SERVER".to_string(),
                )
            }
            How::TemplateKey => {
                let manifest = self.mydebian(&server);
                (
                    "mydebian+docker",
                    vec!["--keyring", keyring],
                    vec![],
                    format!("images_server at {}:3", manifest.display()),
                )
            }
        };
        args.extend(["--dry-run", template, "web"]);
        let dry = self.build(&args, &vars).success();
        let line = format!("# images server: {normalised} ({chosen_by})");
        assert!(dry.stdout.contains(&line), "want {line:?}:\n{}", dry.stdout);
        assert!(
            dry.stdout.contains(
                "the built-in LXC image key is for https://images.linuxcontainers.org only"
            ),
            "{}",
            dry.stdout
        );
        self.lxc.env.assert_machines(&[]);

        args.retain(|a| *a != "--dry-run");
        self.build(&args, &vars).success();
        self.assert_built_from_the_server(template, &normalised);
    }

    #[track_caller]
    fn assert_built_from_the_server(&self, template: &str, server: &str) {
        let root = self.lxc.env.machine("web");
        // The tree is the newest build of this server (its marker), with the build on top.
        self.newest.assert_landed(&root);
        let user_data =
            std::fs::read_to_string(root.join("var/lib/cloud/seed/nocloud/user-data")).unwrap();
        assert!(user_data.contains("- docker.io"), "{user_data}");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "web\n"
        );
        let nspawn =
            std::fs::read_to_string(self.lxc.env.root().join("etc/systemd/nspawn/web.nspawn"))
                .unwrap();
        assert!(
            nspawn.contains("SystemCallFilter=add_key keyctl bpf"),
            "{nspawn}"
        );
        assert_eq!(
            self.lxc.server.gets(&self.newest.rootfs_rel()),
            1,
            "the rootfs came from this server"
        );

        let state = self.state("web");
        assert_eq!(state["template"], template);
        assert_eq!(state["source"], "images:debian/bookworm/cloud");
        assert_eq!(
            state["digest"],
            format!("sha256:{}", self.newest.rootfs_hex())
        );
        assert_eq!(state["version"], V2);
        let v = &state["verification"];
        assert_eq!(v["mode"], "signature", "{v}");
        assert_eq!(v["key_fingerprint"], self.lxc.key.fingerprint(), "{v}");
        let sums = format!("{server}{}SHA256SUMS.asc", self.newest.spec.dir());
        assert_eq!(v["signature_source"], sums.as_str(), "{v}");

        assert_eq!(self.machinectl_calls(), ["start web"]);
        assert_eq!(self.tripwire.hits(), 0, "the default server was contacted");
        // Nothing in the cache names another server.
        let refs = crate::harness::dir_names(&self.lxc.env.cache_dir().join("v1/refs/images"));
        assert_eq!(refs.len(), 1, "{refs:?}");
        let text = std::fs::read_to_string(
            self.lxc
                .env
                .cache_dir()
                .join("v1/refs/images")
                .join(&refs[0]),
        )
        .unwrap();
        assert!(!text.contains("linuxcontainers"), "{text}");
    }
}

/// The sub-path the second server lives under: a mirror of several distributions' images.
const PREFIX: &str = "mirror/lxc";

#[test]
fn debian_docker_builds_from_the_server_given_by_the_flag() {
    Fixture::new(ImageServer::new()).build_web(How::Flag);
    Fixture::new(ImageServer::with_prefix(PREFIX)).build_web(How::Flag);
}

#[test]
fn debian_docker_builds_from_the_server_in_the_environment() {
    Fixture::new(ImageServer::new()).build_web(How::Variable);
    Fixture::new(ImageServer::with_prefix(PREFIX)).build_web(How::Variable);
}

#[test]
fn debian_docker_builds_from_the_server_a_user_template_names() {
    Fixture::new(ImageServer::new()).build_web(How::TemplateKey);
    Fixture::new(ImageServer::with_prefix(PREFIX)).build_web(How::TemplateKey);
}

#[test]
fn the_flag_beats_the_variable_beats_the_template_key() {
    let f = Fixture::new(ImageServer::with_prefix(PREFIX));
    let server = f.lxc.server.server();
    let keyring = arg(&f.lxc.keyring);
    // Nothing listens on port 9: a server that is not there, which must not be asked.
    let dead = "http://127.0.0.1:9/";
    f.mydebian(dead);
    f.build(
        &[
            "--images-server",
            &server,
            "--keyring",
            keyring,
            "mydebian+docker",
            "web",
        ],
        &[("SANDBOX_IMAGES_SERVER", dead)],
    )
    .success();
    f.assert_built_from_the_server("mydebian+docker", &format!("{server}/"));

    let out = f
        .build(
            &["--dry-run", "mydebian+docker", "web2"],
            &[("SANDBOX_IMAGES_SERVER", &server)],
        )
        .success();
    assert!(
        out.stdout.contains(&format!(
            "# images server: {server}/ ($SANDBOX_IMAGES_SERVER)"
        )),
        "{}",
        out.stdout
    );
    // Without either, the template key is used: the dead server, named in the error.
    f.build(&["--keyring", keyring, "mydebian+docker", "web2"], &[])
        .failure()
        .stderr_mentions(&["image server http://127.0.0.1:9/ (images_server at"]);
    f.lxc.env.assert_machines(&["web"]);
}

#[test]
fn a_server_whose_key_is_not_trusted_is_refused_by_name() {
    let f = Fixture::new(ImageServer::with_prefix(PREFIX));
    let server = f.lxc.server.server();
    // No --keyring, no keys dir: the built-in LXC key does not vouch for another server.
    let out = f
        .build(&["--images-server", &server, "debian+docker", "web"], &[])
        .failure()
        .stderr_mentions(&[
            &format!("the base from image server {server}/ (--images-server)"),
            "trust",
        ]);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    f.lxc.env.assert_machines(&[]);
    assert!(
        !f.lxc
            .env
            .root()
            .join("etc/systemd/nspawn/web.nspawn")
            .exists(),
        "a refused build wrote host files"
    );
    assert!(
        !f.lxc.env.sandboxes_dir().join("state/web.json").exists(),
        "a refused build wrote a state record"
    );
    assert!(
        !f.lxc.env.blobs().contains(&f.newest.rootfs_hex()),
        "a refused rootfs was cached"
    );
    assert_eq!(f.lxc.server.gets(&f.newest.rootfs_rel()), 0);
    assert!(f.machinectl_calls().is_empty());
    assert_eq!(f.tripwire.hits(), 0);

    // The same with the key given: built.
    f.build(
        &[
            "--images-server",
            &server,
            "--keyring",
            arg(&f.lxc.keyring),
            "debian+docker",
            "web",
        ],
        &[],
    )
    .success();
    f.assert_built_from_the_server("debian+docker", &format!("{server}/"));
}

#[test]
fn the_tripwire_sees_a_build_from_the_default_server() {
    // Proves the other tests' "never contacted": without a server given, the build goes to
    // https://images.linuxcontainers.org, through the proxy, and is counted.
    let f = Fixture::new(ImageServer::new());
    f.build(&["debian+docker", "web"], &[]).failure();
    assert!(f.tripwire.hits() > 0, "the tripwire saw nothing");
    f.lxc.env.assert_machines(&[]);
}
