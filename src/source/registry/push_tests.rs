//! Unit tests of pushing: the pure helpers, and the wire behaviour against a scripted server.

use super::*;
use crate::oci::reference::ImageReference;
use crate::source::registry::auth::Credentials;
use crate::source::registry::{Access, parse_error_body, token_scope};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[test]
fn locations_resolve_relative_or_absolute_and_keep_their_query() {
    let base = url::Url::parse("http://127.0.0.1:5000/v2/team/app/blobs/uploads/").unwrap();
    assert_eq!(
        resolve_location(&base, "/v2/team/app/blobs/uploads/u1?_state=abc").unwrap(),
        "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u1?_state=abc"
    );
    assert_eq!(
        resolve_location(&base, "u2").unwrap(),
        "http://127.0.0.1:5000/v2/team/app/blobs/uploads/u2"
    );
    assert_eq!(
        resolve_location(&base, "https://store.example/up/u3?sig=x").unwrap(),
        "https://store.example/up/u3?sig=x"
    );
    assert!(resolve_location(&base, "ftp://store.example/u4").is_err());

    let d = Digest::of(b"blob");
    assert_eq!(
        with_digest("http://h/v2/r/blobs/uploads/u1?_state=abc", &d).unwrap(),
        format!(
            "http://h/v2/r/blobs/uploads/u1?_state=abc&digest=sha256%3A{}",
            d.hex()
        )
    );
    assert_eq!(
        with_digest("http://h/u2", &d).unwrap(),
        format!("http://h/u2?digest=sha256%3A{}", d.hex())
    );
}

#[test]
fn error_bodies_scopes_and_shown_urls() {
    let body = br#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content","detail":{}},{"code":"X"}]}"#;
    assert_eq!(
        parse_error_body(body).unwrap(),
        "DIGEST_INVALID: provided digest did not match uploaded content; X"
    );
    assert_eq!(
        parse_error_body(br#"{"errors":[{"code":"A\u001b[2J","message":"m"}]}"#).unwrap(),
        "A[2J: m"
    );
    let long = format!(r#"{{"errors":[{{"message":"{}"}}]}}"#, "x".repeat(1000));
    assert_eq!(parse_error_body(long.as_bytes()).unwrap().len(), 200);
    assert_eq!(parse_error_body(b"<html>502</html>"), None);
    assert_eq!(parse_error_body(br#"{"errors":[]}"#), None);

    assert_eq!(token_scope("a/b", Access::Pull), "repository:a/b:pull");
    assert_eq!(token_scope("a/b", Access::Push), "repository:a/b:pull,push");
    assert_eq!(
        shown("https://u:p@h/v2/r/blobs/uploads/x?_state=s#f"),
        "https://h/v2/r/blobs/uploads/x"
    );
}

/// One recorded request: its head (request line and headers, lower-cased names) and body.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// A scripted registry: `answer` maps each request to a raw response head (without the
/// blank line) and body; every request is recorded.
fn scripted(
    answer: impl Fn(u16, &Seen) -> (String, Vec<u8>) + Send + 'static,
) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => head.push_str(&line),
                }
            }
            // The https probe of --tls-verify=false sends a TLS ClientHello: no request line.
            if !head.contains(" HTTP/1.1") {
                continue;
            }
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let req = Seen {
                head: head.to_ascii_lowercase(),
                body,
            };
            log.lock().unwrap().push(req.clone());
            let (resp_head, resp_body) = answer(port, &req);
            let mut conn = reader.into_inner();
            let _ = write!(
                conn,
                "{resp_head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                resp_body.len()
            );
            let _ = conn.write_all(&resp_body);
        }
    });
    (port, seen)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn pusher(port: u16, creds: Option<Credentials>) -> Registry {
    let reference = ImageReference::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
    Registry::for_push(&reference, creds, false).unwrap()
}

#[test]
fn a_streamed_upload_has_an_exact_length_and_its_location_query_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    // Several chunks, not a multiple of the chunk size.
    let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
    fs_err::write(&path, &data).unwrap();
    let digest = Digest::of(&data);
    let (port, seen) = scripted(move |_, req| {
        if req.head.starts_with("post ") {
            (
                "HTTP/1.1 202 Accepted\r\nLocation: /v2/team/app/blobs/uploads/u1?_state=s1"
                    .to_string(),
                Vec::new(),
            )
        } else {
            let got = Digest::of(&req.body);
            (
                format!("HTTP/1.1 201 Created\r\nDocker-Content-Digest: {got}"),
                Vec::new(),
            )
        }
    });
    let registry = pusher(port, None);
    run(registry.upload_blob(&digest, data.len() as u64, &path)).unwrap();
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].head.starts_with("post /v2/team/app/blobs/uploads/ "),
        "{log:?}"
    );
    let put = &log[1];
    let expected_line = format!(
        "put /v2/team/app/blobs/uploads/u1?_state=s1&digest=sha256%3a{} http/1.1",
        digest.hex()
    );
    assert!(put.head.starts_with(&expected_line), "{}", put.head);
    assert!(
        put.head
            .contains(&format!("content-length: {}\r\n", data.len()))
    );
    assert!(!put.head.contains("transfer-encoding"), "{}", put.head);
    assert!(put.head.contains("content-type: application/octet-stream"));
    assert_eq!(put.body, data);

    // The file does not match its declared size: refused before anything is sent.
    let err = run(registry.upload_blob(&digest, data.len() as u64 + 1, &path)).unwrap_err();
    assert!(
        format!("{err:#}").contains("its descriptor says"),
        "{err:#}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn a_registry_answering_another_digest_is_an_error_and_the_session_is_cancelled() {
    let (port, seen) = scripted(|_, req| {
        if req.head.starts_with("post ") {
            (
                "HTTP/1.1 202 Accepted\r\nLocation: /v2/team/app/blobs/uploads/u9".to_string(),
                Vec::new(),
            )
        } else if req.head.starts_with("put ") {
            (
                format!(
                    "HTTP/1.1 201 Created\r\nDocker-Content-Digest: {}",
                    Digest::of(b"other")
                ),
                Vec::new(),
            )
        } else {
            ("HTTP/1.1 204 No Content".to_string(), Vec::new())
        }
    });
    let registry = pusher(port, None);
    let err = run(registry.upload_blob_bytes(&Digest::of(b"cfg"), b"cfg")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("the registry stored") && msg.contains(&Digest::of(b"cfg").to_string()),
        "{msg}"
    );
    let log = seen.lock().unwrap().clone();
    assert!(
        log.last()
            .unwrap()
            .head
            .starts_with("delete /v2/team/app/blobs/uploads/u9 "),
        "{log:?}"
    );
}

#[test]
fn a_token_granting_only_pull_gives_a_clear_no_push_access_error() {
    let (port, seen) = scripted(|port, req| {
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"svc\",scope=\"repository:team/app:pull,push\""
        );
        if req.head.starts_with("get /token?") {
            (
                "HTTP/1.1 200 OK".to_string(),
                br#"{"token":"pull-only"}"#.to_vec(),
            )
        } else {
            (
                format!("HTTP/1.1 401 Unauthorized\r\n{challenge}"),
                br#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#.to_vec(),
            )
        }
    });
    let registry = pusher(port, Some(Credentials::new("bob", "hunter2", "--creds")));
    let err = run(registry.put_manifest("1", crate::oci::media::OCI_MANIFEST, b"{}")).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no push access to team/app at 127.0.0.1:")
            && msg.contains("check --creds / auth file")
            && msg.contains("user `bob` from --creds")
            && msg.contains("DENIED: requested access to the resource is denied")
            && msg.starts_with(&format!(
                "PUT http://127.0.0.1:{port}/v2/team/app/manifests/1"
            )),
        "{msg}"
    );
    assert!(
        !msg.contains("hunter2") && !msg.contains("pull-only"),
        "{msg}"
    );
    let log = seen.lock().unwrap().clone();
    let token = log
        .iter()
        .find(|r| r.head.starts_with("get /token?"))
        .unwrap();
    assert!(
        token
            .head
            .starts_with("get /token?service=svc&scope=repository%3ateam%2fapp%3apull%2cpush "),
        "the token request asks for push: {}",
        token.head
    );
}

#[test]
fn a_manifest_put_by_digest_must_be_that_digest() {
    let registry = pusher(1, None);
    let other = Digest::of(b"other").to_string();
    let err =
        run(registry.put_manifest(&other, crate::oci::media::OCI_MANIFEST, b"{}")).unwrap_err();
    assert!(err.to_string().contains("its bytes have digest"), "{err:#}");
}
