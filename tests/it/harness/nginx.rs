//! Debian's nginx serving one docroot on a free 127.0.0.1 port, one instance per test.
//!
//! The access log uses a tab-separated format of its own so tests can assert exactly what the
//! server sent: method, URI, status, body bytes, and the request's Range / If-None-Match /
//! If-Modified-Since headers. nginx escapes control bytes (a tab becomes `\x09`) inside
//! variables, so a tab in a header value cannot shift the columns.
//!
//! `/slow/` is rate limited (`limit_rate`) for resume and concurrency tests, except for
//! requests that carry a Range header: a resumed download must not wait out the limit again.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bytes per second nginx sends for `/slow/` requests without a Range header.
pub const SLOW_RATE: u64 = 64 * 1024;

/// The docroot path of the probe file the harness uses to prove the right nginx answers.
const PROBE: &str = "/.harness-probe";

pub struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub body_bytes: u64,
    pub range: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
}

impl Nginx {
    /// Starts nginx serving `docroot`; its config, logs and temp paths live in `state_dir`.
    pub fn start(docroot: &Path, state_dir: &Path) -> Nginx {
        let binary = super::require_tool("nginx");
        std::fs::create_dir_all(state_dir.join("tmp"))
            .unwrap_or_else(|e| panic!("creating {}: {e}", state_dir.display()));
        let probe_token = super::token();
        let probe_path = docroot.join(PROBE.trim_start_matches('/'));
        std::fs::write(&probe_path, &probe_token)
            .unwrap_or_else(|e| panic!("writing {}: {e}", probe_path.display()));
        // Why retries: the port is picked by binding :0 and released before nginx binds it,
        // so another test may grab it in between; nginx then exits and we try a new port.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = super::free_port();
            let config = render_config(docroot, state_dir, port);
            let config_path = state_dir.join("nginx.conf");
            std::fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
            let child = Command::new(&binary)
                .arg("-p")
                .arg(state_dir)
                .arg("-e")
                .arg(state_dir.join("error.log"))
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", binary.display()));
            let mut nginx = Nginx {
                child,
                port,
                dir: state_dir.to_path_buf(),
            };
            match nginx.wait_ready(&probe_token) {
                Ok(()) => return nginx,
                Err(e) => last_error = e,
            }
        }
        panic!("nginx did not come up: {last_error}");
    }

    fn wait_ready(&mut self, probe_token: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                return Err(format!("nginx exited with {status}: {stderr}\n{log}"));
            }
            // Only our nginx can serve our token: this rules out a neighbour on the same port.
            let served = http_get(self.port, PROBE, &[])
                .is_ok_and(|resp| resp.status == 200 && resp.body == probe_token.as_bytes());
            if served {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "port {} did not serve the probe within 10s",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// Every request the server logged so far, the harness's own probes left out.
    pub fn log(&self) -> Vec<LogEntry> {
        let path = self.dir.join("access.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|line| {
                parse_log_line(line)
                    .unwrap_or_else(|| panic!("unparsable line in {}: {line:?}", path.display()))
            })
            .filter(|entry| entry.uri != PROBE)
            .collect()
    }

    /// Log entries for one URI path (e.g. `/img/os.tar.gz`).
    pub fn log_for(&self, uri: &str) -> Vec<LogEntry> {
        self.log().into_iter().filter(|e| e.uri == uri).collect()
    }

    /// Total body bytes the server sent for `uri` over all requests.
    pub fn body_bytes_for(&self, uri: &str) -> u64 {
        self.log_for(uri).iter().map(|e| e.body_bytes).sum()
    }

    /// The access log as text, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // master_process off: this one process is the whole server, no workers are left over.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx.conf for one test: single process in the foreground, everything under `state`.
pub fn render_config(docroot: &Path, state: &Path, port: u16) -> String {
    let s = state.display();
    let rate = SLOW_RATE;
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {s}/nginx.pid;
error_log {s}/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {s}/tmp/body;
    proxy_temp_path {s}/tmp/proxy;
    fastcgi_temp_path {s}/tmp/fastcgi;
    uwsgi_temp_path {s}/tmp/uwsgi;
    scgi_temp_path {s}/tmp/scgi;
    default_type application/octet-stream;
    log_format harness "$request_method\t$uri\t$status\t$body_bytes_sent\t$http_range\t$http_if_none_match\t$http_if_modified_since";
    access_log {s}/access.log harness;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # A redirect that resolves, and one that never ends (bounded redirects).
        location /redirect/ {{
            rewrite ^/redirect/(.*)$ /$1 redirect;
        }}
        location = /redirect-loop.tar {{
            return 302 /redirect-loop.tar;
        }}
        # Redirects no pull may follow (another scheme), or whose target refuses connections.
        location = /to-file.tar {{
            return 302 file:///etc/shadow;
        }}
        location = /to-refused.tar {{
            return 302 http://127.0.0.1:1/os.tar.gz;
        }}
        location /slow/ {{
            limit_rate {rate};
            if ($http_range != "") {{
                set $limit_rate 0;
            }}
        }}
    }}
}}
"#,
        root = docroot.display(),
    )
}

/// Parses one access log line; nginx writes `-` for an absent header.
pub fn parse_log_line(line: &str) -> Option<LogEntry> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [method, uri, status, bytes, range, inm, ims] = fields.as_slice() else {
        return None;
    };
    let header = |v: &str| (v != "-").then(|| v.to_string());
    Some(LogEntry {
        method: method.to_string(),
        uri: uri.to_string(),
        status: status.parse().ok()?,
        body_bytes: bytes.parse().ok()?,
        range: header(range),
        if_none_match: header(inm),
        if_modified_since: header(ims),
    })
}

/// A response read by the harness's own minimal HTTP/1.1 client.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GET `path` with extra headers over one `Connection: close` request. Only for probing and
/// self-tests of the harness: the binary under test brings its own client.
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    // nginx sends static files with Content-Length, never chunked: the rest is the body.
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}
