pub mod decompress;
pub mod xz_index;
pub mod xz_parallel;
// TEMP STUB (not committed): replaced by the unpack branch.
use std::path::Path;
pub struct Root;
impl Root {
    pub fn open(_d: &Path) -> anyhow::Result<Root> {
        Ok(Root)
    }
}
pub struct UnpackOptions {
    pub preserve_owner: bool,
    pub keep_selinux: bool,
}
pub struct UnpackSummary {
    pub entries: u64,
    pub bytes: u64,
    pub root_entry_seen: bool,
}
pub fn unpack_tar<R: std::io::Read>(
    _r: R,
    _root: &Root,
    _o: &UnpackOptions,
) -> anyhow::Result<UnpackSummary> {
    unimplemented!()
}
