//! A loopback HTTP proxy in front of a real server (the registry), for interruption tests: it
//! cuts the body of the first GET of one path after N bytes, can hide `Range` headers from the
//! server (a server that ignores ranges), and counts the body bytes it passes on for every
//! request. The counts are what crossed the wire, whatever the client believes.
//!
//! One request per connection: the proxy asks the server to close after its answer and tells
//! the client the same, so every request is seen (and counted) on its own. A TLS ClientHello
//! (the `https` probe of `--tls-verify=false`) is hung up on, as a plain-http server would.
//! Bounded: 127.0.0.1 only, timeouts on every socket, at most [`MAX_CONNECTIONS`], and a
//! request head over 64 KiB is refused.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at most in one proxy's life.
pub const MAX_CONNECTIONS: usize = 512;
const MAX_HEAD: usize = 64 << 10;
const TIMEOUT: Duration = Duration::from_secs(20);

/// What the proxy does to requests for `path`.
#[derive(Clone, Debug)]
pub struct Cut {
    /// The request path (`/v2/REPO/blobs/sha256:HEX`).
    pub path: String,
    /// The first successful GET of `path` gets this many body bytes, then the connection closes.
    pub after: u64,
    /// Removes `Range` and `If-Range` from every request for `path` before the server sees it.
    pub hide_range: bool,
}

/// One request as the proxy saw and answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub method: String,
    pub path: String,
    /// The client's `Range` header (even when hidden from the server).
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes passed on to the client.
    pub body_bytes: u64,
    /// This answer was cut short by the proxy.
    pub cut: bool,
}

pub struct CutProxy {
    port: u16,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl CutProxy {
    /// A proxy on a free 127.0.0.1 port forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16, cut: Cut) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let served = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cut_done = Arc::new(AtomicBool::new(false));
        let accept = {
            let (served, stop) = (served.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut workers = Vec::new();
                while !stop.load(Ordering::SeqCst) && workers.len() < MAX_CONNECTIONS {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (served, cut, cut_done) =
                                (served.clone(), cut.clone(), cut_done.clone());
                            workers.push(std::thread::spawn(move || {
                                if let Some(s) = serve(conn, upstream, &cut, &cut_done) {
                                    served.lock().unwrap().push(s);
                                }
                            }));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => break,
                    }
                }
                for w in workers {
                    let _ = w.join();
                }
            })
        };
        CutProxy {
            port,
            served,
            stop,
            accept: Some(accept),
        }
    }

    /// `127.0.0.1:PORT`, to put in a `docker://` reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request answered so far for `path`, in the order they finished.
    pub fn served_for(&self, path: &str) -> Vec<Served> {
        let all = self.served.lock().unwrap();
        all.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Every request answered so far, for messages.
    pub fn log_text(&self) -> String {
        let all = self.served.lock().unwrap();
        all.iter().map(|s| format!("{s:?}\n")).collect()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// Reads an HTTP head (up to and including the blank line). `None` on EOF, a TLS record, or
/// a head over [`MAX_HEAD`].
fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) if head.is_empty() && byte[0] == 0x16 => return None,
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    Some(head)
}

/// The head with its `Connection` header (and, with `drop_range`, `Range` / `If-Range`)
/// replaced by `Connection: close`.
fn rewrite_head(head: &str, drop_range: bool) -> String {
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let mut out = format!("{first}\r\n");
    for line in lines {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let hidden = name == "connection"
            || name == "keep-alive"
            || (drop_range && (name == "range" || name == "if-range"));
        if !hidden {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Serves one request of `client` through the server at `upstream`.
fn serve(mut client: TcpStream, upstream: u16, cut: &Cut, cut_done: &AtomicBool) -> Option<Served> {
    client.set_nonblocking(false).ok()?;
    client.set_read_timeout(Some(TIMEOUT)).ok()?;
    client.set_write_timeout(Some(TIMEOUT)).ok()?;
    let head = String::from_utf8(read_head(&mut client)?).ok()?;
    let mut parts = head.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let ours = path == cut.path;
    let range = header(&head, "range").map(str::to_string);

    let mut server = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    server.set_read_timeout(Some(TIMEOUT)).ok()?;
    server.set_write_timeout(Some(TIMEOUT)).ok()?;
    server
        .write_all(rewrite_head(&head, ours && cut.hide_range).as_bytes())
        .ok()?;
    let answer = String::from_utf8(read_head(&mut server)?).ok()?;
    let status: u16 = answer.split(' ').nth(1)?.parse().ok()?;
    client
        .write_all(rewrite_head(&answer, false).as_bytes())
        .ok()?;

    // Only a successful GET of the path is cut, and only the first one.
    let first_success = ours
        && method == "GET"
        && (200..300).contains(&status)
        && !cut_done.swap(true, Ordering::SeqCst);
    let limit = first_success.then_some(cut.after);
    let mut body_bytes = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let want = match limit {
            Some(l) if body_bytes >= l => break,
            Some(l) => buf.len().min((l - body_bytes) as usize),
            None => buf.len(),
        };
        let n = match server.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        body_bytes += n as u64;
    }
    let _ = client.flush();
    // Why shut down (not just drop): a FIN after the bytes, so the client reads every byte it
    // was sent before it sees the body end early.
    let _ = client.shutdown(Shutdown::Both);
    Some(Served {
        method,
        path,
        range,
        status,
        body_bytes,
        cut: limit.is_some(),
    })
}
