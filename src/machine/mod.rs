//! The machines dir side: names, what belongs to a machine (`artifacts`), making an image's
//! tree and publishing it atomically (`materialise`), one ZFS dataset per sandbox (`zfs`), the
//! provenance record (`state`), removal, and the host setup that keeps machines and their
//! systemd files on the data pool.
//!
//! Nothing here fetches or verifies: it is handed verified blobs from the cache.

pub mod artifacts;
pub mod host;
pub mod hostsetup;
pub mod materialise;
pub mod name;
pub mod place;
pub mod remove;
pub mod state;
pub mod storage;
pub mod store;
pub mod zfs;
