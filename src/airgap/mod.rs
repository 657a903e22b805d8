//! Moving verified cache contents to an air-gapped host: `sandbox cache export FILE [REF…]`
//! writes a tar of a manifest (the refs) and the blobs they use; `sandbox cache import FILE`
//! reads it entry by entry, re-hashes every blob into the cache and re-verifies every ref
//! against the importing host's trust store before writing it. The export file is never
//! trusted: a blob is kept only if it hashes to its name, a ref only if it verifies again.

pub mod archive;
pub mod export;
pub mod import;
pub mod manifest;
pub mod reverify;
