//! PAX extended header records (pure).
//!
//! The tar crate splits PAX data on newlines, which breaks records whose value contains a
//! newline (GNU tar's ACL text, binary xattrs such as `system.posix_acl_access` with id 10) and
//! then silently ignores later records. So the raw `x` header data is captured from the stream
//! (see `stream.rs`) and parsed here by the length prefix, as POSIX defines it:
//! `"%d %s=%s\n"`, the length counting the whole record.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use rustix::fs::Timespec;

/// What the unpacker uses from one entry's PAX records. Unknown keys are ignored.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PaxMeta {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
    pub mtime: Option<Timespec>,
    pub atime: Option<Timespec>,
    /// Extended attributes in archive order, one value per name (the last one wins).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `SCHILY.acl.access` / `SCHILY.acl.default`, text form.
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
    pub sparse: Option<PaxSparse>,
}

/// GNU tar's PAX sparse formats. In all of them the header's name is a made-up
/// `GNUSparseFile.N/...` and the real name is in `GNU.sparse.name` (or `path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaxSparse {
    /// 0.0 (`GNU.sparse.offset`/`numbytes` pairs) and 0.1 (`GNU.sparse.map`): the map is in
    /// the records, the data holds the segments back to back.
    InRecords {
        map: Vec<(u64, u64)>,
        real_size: u64,
        name: Option<Vec<u8>>,
    },
    /// 1.0: the map is at the start of the data, as decimal lines padded to 512 bytes.
    InData {
        real_size: u64,
        name: Option<Vec<u8>>,
    },
}

impl PaxSparse {
    pub fn name(&self) -> Option<&[u8]> {
        match self {
            PaxSparse::InRecords { name, .. } | PaxSparse::InData { name, .. } => name.as_deref(),
        }
    }
}

/// One PAX record: key and value, both raw bytes.
pub type Record<'a> = (&'a [u8], &'a [u8]);

/// Splits PAX data into `(key, value)` records.
pub fn parse_records(mut data: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    while !data.is_empty() {
        // Some writers pad the data with NULs; nothing after them is a record.
        if data[0] == 0 {
            if data.iter().all(|&b| b == 0) {
                break;
            }
            return Err("NUL byte between PAX records".into());
        }
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a malformed length")?;
        if len <= space + 1 || len > data.len() {
            return Err(format!(
                "PAX record length {len} does not fit the {} bytes left",
                data.len()
            ));
        }
        let record = &data[space + 1..len];
        let Some((&b'\n', record)) = record.split_last() else {
            return Err("PAX record does not end with a newline".into());
        };
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without `=`")?;
        out.push((&record[..eq], &record[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

impl PaxMeta {
    /// Interprets the records of one `x` header.
    pub fn parse(data: &[u8]) -> Result<PaxMeta, String> {
        let mut meta = PaxMeta::default();
        let mut sparse = SparseRecords::default();
        for (key, value) in parse_records(data)? {
            let key_text = String::from_utf8_lossy(key);
            match key {
                b"path" => meta.path = Some(value.to_vec()),
                b"linkpath" => meta.linkpath = Some(value.to_vec()),
                b"size" => meta.size = Some(parse_u64(&key_text, value)?),
                b"uid" => meta.uid = Some(parse_u64(&key_text, value)?),
                b"gid" => meta.gid = Some(parse_u64(&key_text, value)?),
                b"mtime" => meta.mtime = Some(parse_time(value).ok_or(bad(&key_text, value))?),
                b"atime" => meta.atime = Some(parse_time(value).ok_or(bad(&key_text, value))?),
                b"SCHILY.acl.access" => meta.acl_access = Some(utf8(&key_text, value)?),
                b"SCHILY.acl.default" => meta.acl_default = Some(utf8(&key_text, value)?),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        set_xattr(&mut meta.xattrs, name.to_vec(), value.to_vec());
                    } else if let Some(name) = key.strip_prefix(b"LIBARCHIVE.xattr.") {
                        // libarchive URL-encodes the name and base64-encodes the value.
                        let name = percent_decode(name).ok_or(bad(&key_text, name))?;
                        let value = BASE64
                            .decode(value)
                            .map_err(|e| format!("PAX record `{key_text}`: bad base64: {e}"))?;
                        set_xattr(&mut meta.xattrs, name, value);
                    } else if let Some(sub) = key.strip_prefix(b"GNU.sparse.") {
                        sparse.record(sub, value, &key_text)?;
                    }
                }
            }
        }
        meta.sparse = sparse.finish()?;
        Ok(meta)
    }
}

/// libarchive writes unpadded base64, other writers pad with `=`: accept both.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn set_xattr(xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>, name: Vec<u8>, value: Vec<u8>) {
    match xattrs.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => xattrs.push((name, value)),
    }
}

#[derive(Default)]
struct SparseRecords {
    major: Option<u64>,
    minor: Option<u64>,
    name: Option<Vec<u8>>,
    real_size: Option<u64>,
    map: Option<Vec<(u64, u64)>>,
    pending_offset: Option<u64>,
    pairs: Vec<(u64, u64)>,
    seen: bool,
}

impl SparseRecords {
    fn record(&mut self, sub: &[u8], value: &[u8], key: &str) -> Result<(), String> {
        self.seen = true;
        match sub {
            b"major" => self.major = Some(parse_u64(key, value)?),
            b"minor" => self.minor = Some(parse_u64(key, value)?),
            b"name" => self.name = Some(value.to_vec()),
            b"realsize" | b"size" => self.real_size = Some(parse_u64(key, value)?),
            b"numblocks" => {}
            b"map" => {
                let numbers = value
                    .split(|&b| b == b',')
                    .map(|n| parse_u64(key, n))
                    .collect::<Result<Vec<_>, _>>()?;
                if numbers.len() % 2 != 0 {
                    return Err(format!("PAX record `{key}`: odd number of values"));
                }
                self.map = Some(numbers.chunks(2).map(|c| (c[0], c[1])).collect());
            }
            b"offset" => {
                let offset = parse_u64(key, value)?;
                if self.pending_offset.replace(offset).is_some() {
                    return Err("two GNU.sparse.offset records in a row".into());
                }
            }
            b"numbytes" => {
                let offset = self
                    .pending_offset
                    .take()
                    .ok_or("GNU.sparse.numbytes without GNU.sparse.offset")?;
                self.pairs.push((offset, parse_u64(key, value)?));
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<PaxSparse>, String> {
        if !self.seen {
            return Ok(None);
        }
        let real_size = self
            .real_size
            .ok_or("GNU sparse records without GNU.sparse.realsize or GNU.sparse.size")?;
        match (self.major, self.minor) {
            (Some(1), Some(0)) => Ok(Some(PaxSparse::InData {
                real_size,
                name: self.name,
            })),
            (Some(major), minor) if major != 0 => Err(format!(
                "unsupported GNU sparse format {major}.{}",
                minor.unwrap_or(0)
            )),
            _ => {
                let map = match self.map {
                    Some(map) => map,
                    None => self.pairs,
                };
                Ok(Some(PaxSparse::InRecords {
                    map,
                    real_size,
                    name: self.name,
                }))
            }
        }
    }
}

fn bad(key: &str, value: &[u8]) -> String {
    format!(
        "PAX record `{key}` has a malformed value `{}`",
        super::error::show_bytes(value)
    )
}

fn utf8(key: &str, value: &[u8]) -> Result<String, String> {
    String::from_utf8(value.to_vec()).map_err(|_| bad(key, value))
}

fn parse_u64(key: &str, value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(key, value))
}

/// Parses a PAX time: `[-]seconds[.fraction]`, the fraction up to nanoseconds (more digits are
/// cut off). A negative time with a fraction is below the whole second: `-1.5` is
/// 2 seconds before the epoch plus 0.5 s.
pub fn parse_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - i as u32);
    }
    Some(if !negative {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    } else if nanos == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    })
}

/// Decodes `%XX` escapes (libarchive's encoding of xattr names in PAX keys).
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::unpack::tests::util::pax_record as record;

    #[test]
    fn records_with_newlines_and_binary_values_parse_by_length() {
        let acl = b"user::rw-\nuser:1000:r-x\ngroup::r--\nmask::r-x\nother::r--\n";
        let binary = b"\x02\x00\x00\x00\x0a\n\x00=";
        let mut data = record("SCHILY.acl.access", acl);
        data.extend(record("SCHILY.xattr.user.bin", binary));
        data.extend(record("path", b"a/b c=d"));
        data.extend(record("uid", b"4000000"));
        let meta = PaxMeta::parse(&data).unwrap();
        assert_eq!(
            meta.acl_access.as_deref().map(str::as_bytes),
            Some(&acl[..])
        );
        assert_eq!(meta.xattrs, vec![(b"user.bin".to_vec(), binary.to_vec())]);
        assert_eq!(meta.path.as_deref(), Some(&b"a/b c=d"[..]));
        assert_eq!(meta.uid, Some(4_000_000));
    }

    #[test]
    fn malformed_records_are_errors() {
        for data in [
            &b"10 path=abc"[..], // length past the end
            b"x path=a\n",       // not a number
            b"9 patha\n",        // no '='
            b"8 path=ab",        // no newline at the end
            b"3 a\n",            // length too short to hold anything
            b"11 uid=12a\n",     // not a number
        ] {
            assert!(PaxMeta::parse(data).is_err(), "{:?}", show(data));
        }
        assert!(PaxMeta::parse(b"").unwrap() == PaxMeta::default());
        // NUL padding after the records is tolerated.
        let mut data = record("path", b"x");
        data.extend([0; 20]);
        assert_eq!(
            PaxMeta::parse(&data).unwrap().path.as_deref(),
            Some(&b"x"[..])
        );
    }

    fn show(b: &[u8]) -> String {
        super::super::error::show_bytes(b)
    }

    #[test]
    fn times() {
        let t = |s: &str| parse_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(
            t("1795916393.570768213999"),
            Some((1_795_916_393, 570_768_213))
        );
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t(""), None);
        assert_eq!(t("1.2.3"), None);
        assert_eq!(t("abc"), None);
        assert_eq!(t(".5"), None);
    }

    #[test]
    fn libarchive_xattrs_are_decoded_and_deduplicated_with_schily() {
        let mut data = record("SCHILY.xattr.user.foo", b"old");
        data.extend(record("LIBARCHIVE.xattr.user.foo", b"bmV3"));
        data.extend(record("LIBARCHIVE.xattr.user.a%3Db", b"YWJjZA=="));
        let meta = PaxMeta::parse(&data).unwrap();
        assert_eq!(
            meta.xattrs,
            vec![
                (b"user.foo".to_vec(), b"new".to_vec()),
                (b"user.a=b".to_vec(), b"abcd".to_vec())
            ]
        );
    }

    #[test]
    fn sparse_formats() {
        let mut v1 = record("GNU.sparse.major", b"1");
        v1.extend(record("GNU.sparse.minor", b"0"));
        v1.extend(record("GNU.sparse.name", b"./sp"));
        v1.extend(record("GNU.sparse.realsize", b"10485760"));
        assert_eq!(
            PaxMeta::parse(&v1).unwrap().sparse,
            Some(PaxSparse::InData {
                real_size: 10_485_760,
                name: Some(b"./sp".to_vec())
            })
        );

        let mut v01 = record("GNU.sparse.size", b"100");
        v01.extend(record("GNU.sparse.numblocks", b"2"));
        v01.extend(record("GNU.sparse.name", b"sp"));
        v01.extend(record("GNU.sparse.map", b"10,5,100,0"));
        assert_eq!(
            PaxMeta::parse(&v01).unwrap().sparse,
            Some(PaxSparse::InRecords {
                map: vec![(10, 5), (100, 0)],
                real_size: 100,
                name: Some(b"sp".to_vec())
            })
        );

        let mut v00 = record("GNU.sparse.size", b"100");
        v00.extend(record("GNU.sparse.offset", b"10"));
        v00.extend(record("GNU.sparse.numbytes", b"5"));
        v00.extend(record("GNU.sparse.offset", b"100"));
        v00.extend(record("GNU.sparse.numbytes", b"0"));
        assert_eq!(
            PaxMeta::parse(&v00).unwrap().sparse,
            Some(PaxSparse::InRecords {
                map: vec![(10, 5), (100, 0)],
                real_size: 100,
                name: None
            })
        );

        let mut bad = record("GNU.sparse.major", b"2");
        bad.extend(record("GNU.sparse.realsize", b"1"));
        assert!(PaxMeta::parse(&bad).is_err());
        assert!(PaxMeta::parse(&record("GNU.sparse.map", b"1,2")).is_err());
    }
}
