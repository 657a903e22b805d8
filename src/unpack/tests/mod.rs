//! Tests of the unpacker against hostile and real archives. They run as root (as CI does):
//! ownership, device nodes and `security.capability` need it.

mod bombs;
mod gnu_tar;
mod hostile;
mod layers;
mod metadata;
mod root_ops;
mod stream;
pub(crate) mod util;
