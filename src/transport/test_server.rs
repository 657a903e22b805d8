//! For unit tests that script an HTTP server on 127.0.0.1: reading one request head.

use std::io::Read;

/// The request head (request line and headers, up to the blank line) read byte by byte, so
/// that nothing of a body is consumed. `None` when the peer hangs up first or opens with a TLS
/// ClientHello (the https probe of `--tls-verify=false`), which such a server answers by
/// hanging up.
pub fn read_head(conn: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) if head.is_empty() && byte[0] == 0x16 => return None,
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn heads_end_at_the_blank_line_and_tls_hangs_up() {
    let mut conn: &[u8] = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\nbody";
    assert_eq!(
        read_head(&mut conn).as_deref(),
        Some("GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
    );
    assert_eq!(conn, b"body");
    assert_eq!(read_head(&mut &[0x16u8, 3, 1][..]), None);
    assert_eq!(read_head(&mut &b""[..]), None);
}
