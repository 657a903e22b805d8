//! Unit tests of the registry client against a scripted HTTP server on 127.0.0.1.

use super::*;
use std::io::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A registry that wants a Bearer token from its own `/token` realm: records each request
/// line with its `Authorization` header, and serves `manifest` to the right token only,
/// with or without a `Content-Length`.
fn token_registry(manifest: Vec<u8>, announce: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let text = crate::transport::test_server::read_head(&mut conn).unwrap_or_default();
            let Some(line) = text.lines().next().filter(|l| l.starts_with("GET")) else {
                continue;
            };
            let auth = text
                .lines()
                .find_map(|l| l.strip_prefix("authorization: "))
                .unwrap_or("-")
                .to_string();
            log.lock().unwrap().push(format!("{line} | {auth}"));
            let (status, headers, body) = if line.contains("/token?") {
                ("200 OK", String::new(), br#"{"token":"tok-1"}"#.to_vec())
            } else if auth == "Bearer tok-1" {
                (
                    "200 OK",
                    format!("Content-Type: {}\r\n", media::OCI_MANIFEST),
                    manifest.clone(),
                )
            } else {
                (
                    "401 Unauthorized",
                    format!(
                        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"svc\",scope=\"repository:team/app:pull\"\r\n"
                    ),
                    Vec::new(),
                )
            };
            let length = if announce || status != "200 OK" {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                String::new()
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{headers}{length}Connection: close\r\n\r\n"
            );
            let _ = conn.write_all(&body);
        }
    });
    (port, seen)
}

fn pull_manifest(port: u16, creds: Option<Credentials>) -> Result<RawManifest> {
    let reference = ImageReference::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
    let registry = Registry::new(&reference, creds, false).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(registry.manifest("1", 4 << 20))
}

#[test]
fn the_bearer_flow_fetches_a_token_anonymously_or_with_credentials() {
    let (port, seen) = token_registry(b"BODY".to_vec(), true);
    let m = pull_manifest(port, None).unwrap();
    assert_eq!(m.bytes, b"BODY");
    assert_eq!(m.content_type.as_deref(), Some(media::OCI_MANIFEST));
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log[0].starts_with("GET /v2/team/app/manifests/1 ") && log[0].ends_with("| -"));
    assert!(
        log[1].starts_with("GET /token?service=svc&scope=repository%3Ateam%2Fapp%3Apull ")
            && log[1].ends_with("| -"),
        "an anonymous token request: {log:?}"
    );
    assert!(log[2].ends_with("| Bearer tok-1"), "{log:?}");

    let (port, seen) = token_registry(b"BODY".to_vec(), true);
    pull_manifest(port, Some(Credentials::new("u", "p", "test"))).unwrap();
    let log = seen.lock().unwrap().clone();
    // base64("u:p") = "dTpw"
    assert!(log[1].ends_with("| Basic dTpw"), "{log:?}");
}

#[test]
fn tokens_and_media_types() {
    assert_eq!(parse_token(br#"{"token":"t1"}"#).unwrap(), "t1");
    assert_eq!(parse_token(br#"{"access_token":"t2"}"#).unwrap(), "t2");
    assert!(parse_token(br#"{"token":""}"#).is_err());
    let err = parse_token(b"secret-ish garbage").unwrap_err();
    assert!(!err.to_string().contains("garbage"));
    assert_eq!(
        top_media_type(br#"{"mediaType":"x/y","layers":[]}"#, Some("a/b")),
        "x/y"
    );
    assert_eq!(
        top_media_type(br#"{"manifests":[]}"#, Some("text/plain")),
        media::OCI_INDEX
    );
    assert_eq!(
        top_media_type(br#"{"layers":[]}"#, Some(media::DOCKER_MANIFEST)),
        media::DOCKER_MANIFEST
    );
}

#[test]
fn manifests_over_the_limit_are_refused_announced_or_not() {
    for announce in [true, false] {
        let (port, _) = token_registry(vec![b' '; (4 << 20) + 1], announce);
        let err = pull_manifest(port, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than the 4194304 bytes allowed"),
            "{err:#}"
        );
    }
}
