//! What every tar entry carries besides its path and type: owner, mode, times, extended
//! attributes and ACLs, read from its header with the PAX records taking precedence.

use rustix::fs::Timespec;

use super::error::UnpackError;
use super::pax::PaxMeta;

/// An entry's metadata, validated (ids in range, mode without file-type bits).
pub(super) struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: Timespec,
    pub atime: Timespec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub acl_access: Option<String>,
    pub acl_default: Option<String>,
}

impl Meta {
    pub(super) fn new(
        header: &tar::Header,
        pax: &PaxMeta,
        entry: &str,
    ) -> Result<Meta, UnpackError> {
        let bad = |what: &str, e: std::io::Error| {
            UnpackError::invalid(entry, format!("bad {what} in the header: {e}"))
        };
        let id = |what: &str,
                  pax: Option<u64>,
                  header: std::io::Result<u64>|
         -> Result<u32, UnpackError> {
            let value = match pax {
                Some(v) => v,
                None => header.map_err(|e| bad(what, e))?,
            };
            // u32::MAX is chown's "leave unchanged", never a real id.
            u32::try_from(value)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| {
                    UnpackError::invalid(entry, format!("{what} {value} is out of range"))
                })
        };
        let mtime = match pax.mtime {
            Some(t) => t,
            None => Timespec {
                tv_sec: i64::try_from(header.mtime().map_err(|e| bad("mtime", e))?)
                    .unwrap_or(i64::MAX),
                tv_nsec: 0,
            },
        };
        Ok(Meta {
            uid: id("uid", pax.uid, header.uid())?,
            gid: id("gid", pax.gid, header.gid())?,
            mode: header.mode().map_err(|e| bad("mode", e))? & 0o7777,
            mtime,
            atime: pax.atime.unwrap_or(mtime),
            xattrs: pax.xattrs.clone(),
            acl_access: pax.acl_access.clone(),
            acl_default: pax.acl_default.clone(),
        })
    }
}
