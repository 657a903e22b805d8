//! Tests of the unpacker against hostile and real archives. They run as root (as CI does):
//! ownership, device nodes and `security.capability` need it.

mod hostile;
mod metadata;
pub(crate) mod util;
