//! The content-addressed cache under `<sandboxes_dir>/cache`: the only thing the fetch side and
//! the materialise side share.
//!
//! - `layout`: pure path code (what lives where; `cache-layout.md` is its prose twin).
//! - `store`: atomic writes, verified publishing, refs.
//! - `lock`: flock-based locks with a wait that says what it waits for.
//! - `refs`: the JSON records of what a source resolved to and how it was verified.
//! - `maintenance`: ls, fsck, gc, rm.
//!
//! Rules: bytes enter `blobs/` only after their digest is known (and matched what was expected,
//! when something was expected); writes are temp file → fsync → rename; every process holds the
//! cache lock shared, `gc` exclusive; two pulls of one URL serialise on a per-URL lock.

pub mod layout;
pub mod lock;
pub mod maintenance;
pub mod refs;
pub mod store;

pub use layout::RefKind;
pub use refs::{Ref, RefBlob, Verification};
pub use store::Cache;
