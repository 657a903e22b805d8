//! The machines dir side: names, staging, atomic publishing.
//!
//! Nothing here fetches or verifies: it is handed verified blobs from the cache.

pub mod host;
pub mod materialise;
pub mod name;
