//! POSIX ACL text (as GNU tar and star store it in `SCHILY.acl.*`) to the kernel's
//! `system.posix_acl_*` xattr value (pure).
//!
//! Text: entries `tag:qualifier:perms[:id]` separated by `,` or newlines, tags `user`/`u`,
//! `group`/`g`, `mask`/`m`, `other`/`o`, perms from `rwx-`. A qualifier is a numeric id or a
//! name; star appends the numeric id as a fourth field, which is what we use then. A bare name
//! cannot be mapped: the archive's names belong to the machine that wrote it, not to the host
//! nor (reliably) to the rootfs, so such an ACL is reported instead of guessed.
//!
//! Binary (see the kernel's `posix_acl_xattr.h`): a little-endian `u32` version 2, then
//! per entry `u16 tag, u16 perm, u32 id`, sorted by tag then id, as the kernel requires.

const VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

/// Why an ACL text could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("ACL entry `{0}` is malformed")]
    Malformed(String),
    #[error("ACL entry `{0}` names a user or group without a numeric id")]
    UnmappedName(String),
    #[error("ACL entry `{0}` appears twice")]
    Duplicate(String),
    #[error("ACL lacks its `{0}` entry")]
    Missing(&'static str),
}

/// Converts an ACL in text form to the `system.posix_acl_access`/`_default` xattr value.
pub fn text_to_xattr(text: &str) -> Result<Vec<u8>, AclError> {
    let mut entries: Vec<(u16, u16, u32)> = Vec::new();
    for raw in text.split([',', '\n']) {
        // acl_to_text may append `#effective:r-x` comments after a tab.
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let parsed = parse_entry(entry)?;
        if entries
            .iter()
            .any(|&(tag, _, id)| tag == parsed.0 && id == parsed.2)
        {
            return Err(AclError::Duplicate(entry.to_owned()));
        }
        entries.push(parsed);
    }
    for (tag, name) in [
        (USER_OBJ, "user::"),
        (GROUP_OBJ, "group::"),
        (OTHER, "other::"),
    ] {
        if !entries.iter().any(|e| e.0 == tag) {
            return Err(AclError::Missing(name));
        }
    }
    let named = entries.iter().any(|e| e.0 == USER || e.0 == GROUP);
    if named && !entries.iter().any(|e| e.0 == MASK) {
        return Err(AclError::Missing("mask::"));
    }
    entries.sort_by_key(|&(tag, _, id)| (tag, id));
    let mut out = Vec::with_capacity(4 + 8 * entries.len());
    out.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, perm, id) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&perm.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
    }
    Ok(out)
}

fn parse_entry(entry: &str) -> Result<(u16, u16, u32), AclError> {
    let malformed = || AclError::Malformed(entry.to_owned());
    let fields: Vec<&str> = entry.split(':').collect();
    let (tag, qualifier, perms, id_field) = match fields.as_slice() {
        // `mask:rwx` / `other:r--` are accepted by setfacl; tar writes `mask::rwx`.
        [tag, perms] => (*tag, "", *perms, None),
        [tag, qualifier, perms] => (*tag, *qualifier, *perms, None),
        [tag, qualifier, perms, id] => (*tag, *qualifier, *perms, Some(*id)),
        _ => return Err(malformed()),
    };
    let perm = parse_perms(perms).ok_or_else(malformed)?;
    let (obj, named) = match tag {
        "user" | "u" => (USER_OBJ, USER),
        "group" | "g" => (GROUP_OBJ, GROUP),
        "mask" | "m" => (MASK, MASK),
        "other" | "o" => (OTHER, OTHER),
        _ => return Err(malformed()),
    };
    if qualifier.is_empty() {
        return Ok((obj, perm, UNDEFINED_ID));
    }
    if obj == named {
        // mask and other take no qualifier.
        return Err(malformed());
    }
    let id = match id_field.map(parse_id) {
        Some(Some(id)) => id,
        Some(None) => return Err(malformed()),
        None => parse_id(qualifier).ok_or_else(|| AclError::UnmappedName(entry.to_owned()))?,
    };
    Ok((named, perm, id))
}

fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&id| id != UNDEFINED_ID)
}

fn parse_perms(s: &str) -> Option<u16> {
    if s.is_empty() {
        return None;
    }
    let mut perm = 0;
    for c in s.chars() {
        perm |= match c {
            'r' => 4,
            'w' => 2,
            'x' => 1,
            '-' => 0,
            _ => return None,
        };
    }
    Some(perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        let mut v = tag.to_le_bytes().to_vec();
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
        v
    }

    #[test]
    fn converts_gnu_tar_text_with_numeric_ids_sorted() {
        // Out of order on purpose: the kernel rejects unsorted entries.
        let text = "user::rwx,group:1001:rw-,user:1000:r-x,group::r-x,mask::rwx,other::r-x";
        let mut want = 2u32.to_le_bytes().to_vec();
        want.extend(entry(USER_OBJ, 7, UNDEFINED_ID));
        want.extend(entry(USER, 5, 1000));
        want.extend(entry(GROUP_OBJ, 5, UNDEFINED_ID));
        want.extend(entry(GROUP, 6, 1001));
        want.extend(entry(MASK, 7, UNDEFINED_ID));
        want.extend(entry(OTHER, 5, UNDEFINED_ID));
        assert_eq!(text_to_xattr(text).unwrap(), want);
        // The same ACL with newlines, short tags and star's trailing id after a name.
        let star = "u::rwx\nu:lisa:r-x:1000\ng::r-x\ngroup:staff:rw-:1001\nm::rwx\no::r-x\n";
        assert_eq!(text_to_xattr(star).unwrap(), want);
    }

    #[test]
    fn minimal_acl_and_comments() {
        let got = text_to_xattr("user::rw-\ngroup::r--\t#effective:r--\nother::---\n").unwrap();
        let mut want = 2u32.to_le_bytes().to_vec();
        want.extend(entry(USER_OBJ, 6, UNDEFINED_ID));
        want.extend(entry(GROUP_OBJ, 4, UNDEFINED_ID));
        want.extend(entry(OTHER, 0, UNDEFINED_ID));
        assert_eq!(got, want);
    }

    #[test]
    fn errors() {
        let base = "user::rwx,group::r-x,other::r-x";
        assert_eq!(
            text_to_xattr(&format!("{base},user:alice:r-x,mask::r-x")),
            Err(AclError::UnmappedName("user:alice:r-x".into()))
        );
        assert_eq!(
            text_to_xattr(&format!("{base},user:1000:r-x")),
            Err(AclError::Missing("mask::"))
        );
        assert_eq!(
            text_to_xattr("user::rwx,other::r-x"),
            Err(AclError::Missing("group::"))
        );
        assert_eq!(
            text_to_xattr(&format!("{base},other::r--")),
            Err(AclError::Duplicate("other::r--".into()))
        );
        for bad in [
            "user::rwz",
            "bogus::rwx",
            "mask:1:rwx",
            "user:1:r:x:y",
            "user:a:r-x:b",
        ] {
            assert!(
                matches!(
                    text_to_xattr(&format!("{base},{bad}")),
                    Err(AclError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }
}
