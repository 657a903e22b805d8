//! Stalled and hostile servers end a pull within bounds a user can set: a server dripping a
//! byte now and then (`SANDBOX_MIN_RATE` over `SANDBOX_RATE_WINDOW`), one sending forever
//! (`SANDBOX_MAX_DOWNLOAD` when nothing verified gives a size; `SANDBOX_DOWNLOAD_DEADLINE`),
//! one announcing a body beyond any image. Each ends with a clear error and publishes nothing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::harness::env::TestEnv;

/// How the server sends its body.
#[derive(Clone, Copy)]
enum Body {
    /// One byte every `gap` (chunked), forever.
    Drip { gap: Duration },
    /// 64 KiB chunks as fast as possible, forever (chunked).
    Endless,
    /// Announces a Content-Length of `len`, then sends slowly.
    Announce { len: u64 },
    /// 4 KiB every 50 ms, forever: above any sane minimum rate, so only the deadline stops it.
    Steady,
}

/// Serves every GET on 127.0.0.1 with `body`; returns the URL of `/image.tar`.
fn server(body: Body) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head);
                let chunk = |c: &mut std::net::TcpStream, data: &[u8]| -> std::io::Result<()> {
                    write!(c, "{:x}\r\n", data.len())?;
                    c.write_all(data)?;
                    c.write_all(b"\r\n")
                };
                let _ = (|| -> std::io::Result<()> {
                    match body {
                        Body::Announce { len } => {
                            write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
                            loop {
                                conn.write_all(&[0u8; 1024])?;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                        _ => conn
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?,
                    }
                    let big = vec![0u8; 64 << 10];
                    loop {
                        match body {
                            Body::Drip { gap } => {
                                chunk(&mut conn, b"x")?;
                                std::thread::sleep(gap);
                            }
                            Body::Endless => chunk(&mut conn, &big)?,
                            Body::Steady => {
                                chunk(&mut conn, &big[..4096])?;
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Body::Announce { .. } => unreachable!(),
                        }
                    }
                })();
            });
        }
    });
    format!("http://127.0.0.1:{port}/image.tar")
}

/// Pulls `url` unverified with `vars`; returns the failed outcome's stderr and how long it took.
fn pull_fails(env: &TestEnv, url: &str, vars: &[(&str, &str)]) -> (String, Duration) {
    let started = Instant::now();
    let out = env
        .sandbox_with_env(&["pull", "--verify=no", url, "box"], vars)
        .failure();
    (out.stderr, started.elapsed())
}

fn assert_nothing_stored(env: &TestEnv) {
    assert!(
        env.blobs().is_empty(),
        "a blob was stored: {:?}",
        env.blobs()
    );
    env.assert_machines(&[]);
}

#[test]
fn a_dripping_server_is_cut_off_by_the_minimum_rate() {
    let env = TestEnv::new();
    let url = server(Body::Drip {
        gap: Duration::from_millis(300),
    });
    let (err, took) = pull_fails(
        &env,
        &url,
        &[("SANDBOX_MIN_RATE", "100"), ("SANDBOX_RATE_WINDOW", "2")],
    );
    assert!(
        err.contains("stalls") && err.contains("SANDBOX_MIN_RATE"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_nothing_stored(&env);
}

#[test]
fn an_endless_body_stops_at_the_maximum_and_its_partial_is_freed() {
    let env = TestEnv::new();
    let url = server(Body::Endless);
    let (err, _) = pull_fails(&env, &url, &[("SANDBOX_MAX_DOWNLOAD", "5000000")]);
    assert!(
        err.contains("5000000") && err.contains("SANDBOX_MAX_DOWNLOAD"),
        "{err}"
    );
    let parts: Vec<String> = crate::harness::files_under(&env.cache_tmp_dir())
        .into_iter()
        .map(|(p, _)| p.display().to_string())
        .filter(|p| p.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "the partial stays: {parts:?}");
    assert_nothing_stored(&env);
}

#[test]
fn a_body_announced_beyond_the_maximum_is_refused_before_it_is_read() {
    let env = TestEnv::new();
    let url = server(Body::Announce { len: 1 << 50 });
    let (err, took) = pull_fails(&env, &url, &[]);
    assert!(
        err.contains("announces") && err.contains("SANDBOX_MAX_DOWNLOAD"),
        "{err}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_nothing_stored(&env);
}

#[test]
fn a_steady_but_endless_server_is_stopped_by_the_deadline() {
    let env = TestEnv::new();
    let url = server(Body::Steady);
    let (err, took) = pull_fails(
        &env,
        &url,
        &[
            ("SANDBOX_DOWNLOAD_DEADLINE", "2"),
            ("SANDBOX_MIN_RATE", "100"),
        ],
    );
    assert!(err.contains("SANDBOX_DOWNLOAD_DEADLINE"), "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_nothing_stored(&env);
}
