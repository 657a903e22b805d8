//! (to be written)
pub mod arch;
pub mod simplestreams;
