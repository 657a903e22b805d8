//! What the network side says when it fails, and the HTTP behaviour around a plain GET:
//! 404, refused connections, DNS, TLS against a plain-HTTP server, redirects (followed, and
//! bounded), and the proxy variables.

use crate::harness::env::TestEnv;
use crate::harness::fixture::Image;
use crate::harness::nginx::Nginx;
use crate::harness::rootfs::Compression;
use crate::harness::site::Site;

/// A port nothing listens on: bound, then released.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn errors_say_what_failed_and_for_which_url() {
    let env = TestEnv::new();
    let site = Site::new();
    let missing = site.url("missing.tar.gz");
    let out = env.sandbox(&["pull", "--verify=no", &missing]);
    out.failure().stderr_mentions(&["404", &missing]);

    let refused = format!("http://127.0.0.1:{}/os.tar.gz", dead_port());
    env.sandbox(&["pull", "--verify=no", &refused])
        .failure()
        .stderr_mentions(&["connection refused", &refused]);

    // TLS spoken to a plain-HTTP server.
    let tls = site.url("os.tar.gz").replacen("http://", "https://", 1);
    env.sandbox(&["pull", "--verify=no", &tls])
        .failure()
        .stderr_mentions(&["TLS failed", &tls]);

    let dns = "http://no-such-host.invalid/os.tar.gz";
    let out = env
        .sandbox(&["pull", "--verify=no", dns])
        .failure()
        .stderr_mentions(&["DNS lookup failed", dns, "no network?", "--offline"]);
    // The resolver's cause is said once, not at every level of the error chain.
    let repeated = out.stderr.matches("failed to lookup address").count();
    assert!(repeated <= 1, "{}", out.stderr);
    env.assert_machines(&[]);

    // With verification on, a missing image is said to be missing, not "unsigned".
    let out = env
        .sandbox(&["pull", &missing])
        .failure()
        .stderr_mentions(&["missing.tar.gz is not there"]);
    assert!(
        !out.stderr.contains("no signed checksum file"),
        "{}",
        out.stderr
    );
}

#[test]
fn redirects_are_followed_and_bounded() {
    let env = TestEnv::new();
    let site = Site::new();
    let image = Image::new(&env, Compression::Gzip);
    site.put("os.tar.gz", &image.bytes);
    env.sandbox(&["pull", "--verify=no", &site.url("redirect/os.tar.gz"), "os"])
        .success();
    image.assert_materialised(&env.machine("os"));

    let looping = site.url("redirect-loop.tar");
    env.sandbox(&["pull", "--verify=no", &looping, "loop"])
        .failure()
        .stderr_mentions(&["too many redirects"]);
    let hops = site.nginx().log_for("/redirect-loop.tar").len();
    assert!(
        (2..=12).contains(&hops),
        "the redirect loop was followed {hops} times"
    );
}

#[test]
fn an_unfollowed_redirect_and_a_dead_target_are_named() {
    let env = TestEnv::new();
    let site = Site::new();
    env.sandbox(&["pull", "--verify=no", &site.url("to-file.tar"), "f"])
        .failure()
        .stderr_mentions(&["302", "file:///etc/shadow", "not an http(s) URL"]);
    env.sandbox(&["pull", "--verify=no", &site.url("to-refused.tar"), "r"])
        .failure()
        .stderr_mentions(&[
            "to-refused.tar",
            "redirected to http://127.0.0.1:1/os.tar.gz",
            "connection refused",
        ]);
    env.assert_machines(&[]);
}

#[test]
fn proxy_variables_are_honoured() {
    let env = TestEnv::new();
    // The proxy is a second nginx holding the image; the origin does not exist at all, so the
    // pull can only succeed through the proxy.
    let proxy_root = env.scratch("proxy-root");
    let image = Image::new(&env, Compression::Gzip);
    std::fs::write(proxy_root.join("os.tar.gz"), &image.bytes).unwrap();
    let proxy = Nginx::start(&proxy_root, &env.scratch("proxy-state"));
    let origin = format!("http://127.0.0.1:{}/os.tar.gz", dead_port());
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port());
    env.run_with(
        env!("CARGO_BIN_EXE_sandbox"),
        &[
            ("http_proxy", &proxy_url),
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
        &["pull", "--verify=no", &origin, "os"],
    )
    .success();
    image.assert_materialised(&env.machine("os"));
    assert_eq!(
        proxy.log_for("/os.tar.gz").len(),
        1,
        "the proxy did not carry the request:\n{}",
        proxy.log_text()
    );
}
