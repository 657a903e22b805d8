//! The one resumable, hashing download into the cache.
//!
//! A caller sends its GET (with `Range: bytes=N-` when its partial file holds N bytes it may
//! resume from) and hands the response to [`receive`], which
//!
//! 1. decides from the status and headers where the body goes ([`plan`], pure): a 206 must
//!    start exactly at N, a 200 restarts the file from 0 (a server that ignores `Range`);
//! 2. re-hashes the N bytes already there when resuming (the digest covers the whole file);
//! 3. streams the body into the file, hashing it, and never writes past the size the file must
//!    have (a descriptor's size, else what the server announced): a server sending more is an
//!    error and the partial file is discarded;
//! 4. fsyncs and returns the digest. [`publish`] then compares it with what was expected, runs
//!    the caller's check, and only then renames the file into `blobs/`; a refusal discards it.
//!
//! An interrupted body (connection cut, process killed) leaves the partial file in place for
//! the next pull. Every message names the URL as the caller shows it, never a credential.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::CONTENT_RANGE;

use super::describe;
use super::limits::{Limits, Watch};
use crate::cache::Cache;
use crate::digest::Digest;
use crate::digest::Hasher;
use crate::progress::Progress;

/// A check of a complete download before it is published (e.g. a detached signature over it).
pub type PartCheck<'a> = dyn Fn(&Path) -> Result<()> + Sync + 'a;

/// What a response's body is received into, and what it must be.
pub struct Body<'a> {
    /// The partial file in the cache's tmp dir.
    pub part: &'a Path,
    /// The `Range` start the request asked for: the bytes of `part` to keep (0: none asked).
    pub asked_from: u64,
    /// The size the whole file must have, when it is known before the request (a descriptor's).
    pub size: Option<u64>,
    /// The URL for messages (without credentials, or a signed query).
    pub shown: &'a str,
}

/// A body received whole into its partial file, fsynced, not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub digest: Digest,
    /// The whole file's size.
    pub size: u64,
    /// Where this response's bytes started (0 unless a range was resumed).
    pub resumed_from: u64,
}

impl Received {
    /// The bytes that crossed the network for this response.
    pub fn transferred(&self) -> u64 {
        self.size - self.resumed_from
    }
}

/// Where a response's body goes: the byte it starts at, and the size the whole file must end at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub start: u64,
    pub total: Option<u64>,
}

/// A `Content-Range: bytes START-END/TOTAL` (`TOTAL` may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    /// Inclusive.
    pub end: u64,
    pub total: Option<u64>,
}

/// Parses a `Content-Range` of a 206; `None` for anything else (`bytes */N` of a 416, junk).
pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

/// The file size of an unsatisfiable range's `Content-Range: bytes */N` (pure).
pub fn range_total(content_range: Option<&str>) -> Option<u64> {
    content_range?.trim().strip_prefix("bytes */")?.parse().ok()
}

/// A partial file that already holds the whole file: hashed as it is.
pub fn complete(part: &Path) -> Result<Received> {
    let (digest, size) = crate::cache::store::hash_file(part)?;
    Ok(Received {
        digest,
        size,
        resumed_from: size,
    })
}

/// Decides from a success status and its headers where the body goes (pure). The error is the
/// reason, for the caller to prefix with the URL.
pub fn plan(
    status: StatusCode,
    content_range: Option<&str>,
    content_length: Option<u64>,
    asked_from: u64,
    size: Option<u64>,
) -> Result<Plan, String> {
    let (start, range_total) = if status == StatusCode::PARTIAL_CONTENT {
        if asked_from == 0 {
            return Err("the server sent a partial response (206) that was not asked for".into());
        }
        let range = content_range.and_then(parse_content_range);
        let Some(range) = range.filter(|r| r.start == asked_from) else {
            return Err(format!(
                "asked to resume at byte {asked_from}, the server answered with range {:?}",
                content_range.unwrap_or("(none)")
            ));
        };
        let whole = size.or(range.total);
        if let (Some(t), Some(s)) = (range.total, size)
            && t != s
        {
            return Err(format!(
                "the server says the file is {t} bytes, expected {s}"
            ));
        }
        if whole.is_some_and(|w| range.end + 1 != w) {
            return Err(format!(
                "asked for every byte from {asked_from}, the server sent only up to {}",
                range.end
            ));
        }
        (range.start, whole)
    } else if status == StatusCode::OK {
        (0, None)
    } else {
        return Err(format!("the server answered {status}"));
    };
    // The size known beforehand wins; then the range's total; then what the server announces.
    let total = size.or(range_total).or(content_length.map(|n| n + start));
    if let (Some(t), Some(len)) = (total, content_length)
        && start.checked_add(len) != Some(t)
    {
        return Err(format!(
            "the server announces {len} bytes from byte {start}, the file has {t}"
        ));
    }
    Ok(Plan { start, total })
}

/// Whether a chunk of `chunk` bytes still fits when `written` of the file are there (pure):
/// nothing is ever written past `total`.
pub fn fits(written: u64, chunk: u64, total: Option<u64>) -> bool {
    total.is_none_or(|t| written.checked_add(chunk).is_some_and(|n| n <= t))
}

/// The bytes of `part` already there, or 0; a file at or over `size` (a finished download that
/// was not published, or junk) is removed: the next request starts from 0.
pub fn resumable_len(part: &Path, size: Option<u64>) -> u64 {
    let len = fs_err::metadata(part).map(|m| m.len()).unwrap_or(0);
    if size.is_some_and(|s| len >= s) {
        discard(part);
        return 0;
    }
    len
}

/// Removes a partial file whose bytes cannot be used.
pub fn discard(part: &Path) {
    if let Err(e) = fs_err::remove_file(part)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("could not remove {}: {e}", part.display());
    }
}

/// A write into the partial file failed. A full disk frees it at once (its bytes would only
/// hold the disk full until `cache gc`) and names the filesystem.
fn write_failed(part: &Path, e: std::io::Error) -> anyhow::Error {
    if crate::atomic::is_disk_full(&e) {
        discard(part);
        let dir = part.parent().unwrap_or(part);
        return anyhow!(
            "the filesystem of {} is full ({e}): the partial download was removed; free space \
             or move <sandboxes_dir> and pull again",
            dir.display()
        );
    }
    anyhow::Error::new(e).context(format!("writing {}", part.display()))
}

/// Receives `resp` (a success) into `body.part`, see the module documentation.
pub async fn receive(
    resp: reqwest::Response,
    body: &Body<'_>,
    progress: &Progress,
) -> Result<Received> {
    let shown = body.shown;
    let part = body.part;
    let content_range = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok());
    let Plan { start, total } = plan(
        resp.status(),
        content_range,
        resp.content_length(),
        body.asked_from,
        body.size,
    )
    .map_err(|why| anyhow!("GET {shown}: {why}"))?;
    if start == 0 && body.asked_from > 0 {
        tracing::info!("{shown} ignored the range asked for; downloading it again from byte 0");
    }

    let limits = Limits::from_env()?;
    // Nothing verified gave a size: the configurable maximum caps the body (and what the
    // server announces must fit under it).
    let cap = match body.size {
        Some(verified) => verified,
        None => limits.max_bytes,
    };
    if let Some(t) = total
        && t > cap
    {
        bail!(
            "GET {shown}: the server announces {t} bytes, more than the {cap} a download may have \
             when nothing verified says its size (raise $SANDBOX_MAX_DOWNLOAD)"
        );
    }
    let cap = total.unwrap_or(cap);
    let (mut file, mut hasher) = open_at(part, start)?;
    progress.start_bytes(total, start);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, Written(&mut file));
    let mut stream = resp.bytes_stream();
    let mut watch = Watch::new(limits, Instant::now());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| describe(e, shown)).with_context(|| {
            format!(
                "the partial file stays in {} for the next pull to resume",
                part.display()
            )
        })?;
        if !fits(hasher.len(), chunk.len() as u64, Some(cap)) {
            drop(out);
            discard(part);
            match total {
                Some(t) => bail!(
                    "GET {shown}: the server sent more than the {t} bytes expected; nothing was stored"
                ),
                None => bail!(
                    "GET {shown}: the body passed {cap} bytes, the most a download may have when \
                     nothing verified says its size (raise $SANDBOX_MAX_DOWNLOAD); nothing was stored"
                ),
            }
        }
        if let Err(why) = watch.arrived(chunk.len() as u64, Instant::now()) {
            bail!(
                "GET {shown}: {why}; the partial file stays in {} for the next pull to resume",
                part.display()
            );
        }
        hasher.update(&chunk);
        if let Err(e) = out.write_all(&chunk) {
            drop(out);
            return Err(write_failed(part, e));
        }
        progress.inc(chunk.len() as u64);
    }
    if let Err(e) = out.flush() {
        drop(out);
        return Err(write_failed(part, e));
    }
    drop(out);
    progress.finish();
    let size = hasher.len();
    if let Some(t) = total
        && size != t
    {
        bail!("GET {shown}: the download ended after {size} of {t} bytes; pull again to resume");
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", part.display()))?;
    crate::faultpoint::reached("download.received");
    Ok(Received {
        digest: hasher.finish(),
        size,
        resumed_from: start,
    })
}

/// The partial file under the buffer: each write that reaches it is a fault point.
struct Written<'a>(&'a mut File);

impl std::io::Write for Written<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        crate::faultpoint::reached("download.chunk");
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Opens `part` to continue at `start`: its first `start` bytes are re-hashed and anything after
/// them cut off; with `start` 0 the file is created empty.
fn open_at(part: &Path, start: u64) -> Result<(File, Hasher)> {
    let mut hasher = Hasher::new();
    if start == 0 {
        let file = fs_err::File::create(part)?.into_file();
        return Ok((file, hasher));
    }
    let mut file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(part)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut reader = (&file).take(start);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    if hasher.len() != start {
        discard(part);
        bail!("partial download {} shrank while resuming", part.display());
    }
    file.set_len(start)?;
    file.seek(SeekFrom::Start(start))?;
    Ok((file.into_file(), hasher))
}

/// Publishes a received file under its digest when it is `expected` (if given) and `check`
/// accepts it; otherwise the file is removed and nothing is stored. `what` names the download.
pub fn publish(
    cache: &Cache,
    part: &Path,
    got: &Received,
    expected: Option<&Digest>,
    check: Option<&PartCheck<'_>>,
    what: &str,
) -> Result<()> {
    if let Some(expected) = expected
        && *expected != got.digest
    {
        discard(part);
        bail!(
            "{what}: digest mismatch: expected {expected}, the downloaded bytes have {}; nothing \
             was stored",
            got.digest
        );
    }
    if let Some(check) = check
        && let Err(e) = check(part)
    {
        discard(part);
        return Err(e.context(format!("{what}: nothing was stored")));
    }
    cache.publish_file(part, &got.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse_strictly() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-9/*").map(|r| r.total),
            Some(None)
        );
        for junk in [
            "bytes */200",
            "bytes 10-5/200",
            "bytes 0-200/200",
            "items 0-1/2",
            "bytes 1-2",
            "bytes -1/2",
            "",
        ] {
            assert_eq!(parse_content_range(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_resumed_range_must_start_where_it_was_asked() {
        let p = StatusCode::PARTIAL_CONTENT;
        assert_eq!(
            plan(p, Some("bytes 100-999/1000"), Some(900), 100, Some(1000)),
            Ok(Plan {
                start: 100,
                total: Some(1000)
            })
        );
        // Without a known size, the server's total (or length) gives it.
        assert_eq!(
            plan(p, Some("bytes 100-999/1000"), None, 100, None),
            Ok(Plan {
                start: 100,
                total: Some(1000)
            })
        );
        assert_eq!(
            plan(p, Some("bytes 100-999/*"), Some(900), 100, None).map(|p| p.total),
            Ok(Some(1000))
        );
        for (range, asked, size) in [
            (Some("bytes 0-999/1000"), 100, Some(1000)), // another start
            (Some("bytes 100-999/2000"), 100, Some(1000)), // another file
            (Some("bytes 100-499/1000"), 100, Some(1000)), // a piece only
            (None, 100, Some(1000)),
            (Some("bytes 0-999/1000"), 0, None), // never asked for
        ] {
            assert!(plan(p, range, None, asked, size).is_err(), "{range:?}");
        }
    }

    #[test]
    fn a_full_answer_restarts_at_zero_and_must_have_the_size() {
        let ok = StatusCode::OK;
        assert_eq!(
            plan(ok, None, Some(1000), 100, Some(1000)),
            Ok(Plan {
                start: 0,
                total: Some(1000)
            })
        );
        assert_eq!(plan(ok, None, None, 0, None).map(|p| p.total), Ok(None));
        assert_eq!(
            plan(ok, None, Some(7), 0, None).map(|p| p.total),
            Ok(Some(7))
        );
        let err = plan(ok, None, Some(1001), 0, Some(1000)).unwrap_err();
        assert!(err.contains("announces 1001 bytes"), "{err}");
        assert!(plan(StatusCode::NO_CONTENT, None, None, 0, None).is_err());
    }

    #[test]
    fn nothing_is_written_past_the_size() {
        assert!(fits(0, 10, Some(10)));
        assert!(!fits(5, 6, Some(10)));
        assert!(!fits(u64::MAX, 1, Some(u64::MAX)));
        assert!(fits(u64::MAX - 1, 0, None));
    }

    /// Serves `body` once on 127.0.0.1 as a 200 without a length (the body ends at EOF).
    fn serve_once(body: Vec<u8>) -> String {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/blob", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let _ = super::super::test_server::read_head(&mut conn);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(&body);
        });
        url
    }

    fn receive_from(url: &str, part: &Path, size: Option<u64>) -> Result<Received> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let resp = super::super::client(super::super::Tls::Verify)?
                .get(url)
                .send()
                .await?;
            let body = Body {
                part,
                asked_from: 0,
                size,
                shown: url,
            };
            receive(resp, &body, &Progress::hidden()).await
        })
    }

    #[test]
    fn a_server_sending_more_than_the_size_is_refused_and_nothing_kept() {
        let dir = std::env::temp_dir().join(format!("resume-test-{:016x}", rand::random::<u64>()));
        fs_err::create_dir(&dir).unwrap();
        let part = dir.join("p");
        let err = receive_from(&serve_once(vec![7u8; 100_000]), &part, Some(1000)).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than the 1000 bytes expected"),
            "{err:#}"
        );
        assert!(!part.exists(), "the over-long partial is discarded");

        let got = receive_from(&serve_once(vec![7u8; 1000]), &part, Some(1000)).unwrap();
        assert_eq!(got.digest, Digest::of(&[7u8; 1000]));
        assert_eq!((got.size, got.transferred()), (1000, 1000));
        assert_eq!(fs_err::read(&part).unwrap(), vec![7u8; 1000]);
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_partial_as_long_as_the_whole_is_not_resumed() {
        let dir = std::env::temp_dir().join(format!("resume-test-{:016x}", rand::random::<u64>()));
        fs_err::create_dir(&dir).unwrap();
        let part = dir.join("p");
        assert_eq!(resumable_len(&part, Some(10)), 0);
        fs_err::write(&part, b"12345").unwrap();
        assert_eq!(resumable_len(&part, Some(10)), 5);
        assert_eq!(resumable_len(&part, None), 5);
        assert_eq!(resumable_len(&part, Some(5)), 0);
        assert!(!part.exists());
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
