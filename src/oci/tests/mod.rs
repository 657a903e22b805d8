//! Tests of whole images: layouts and archives built in code (`util`), by umoci and skopeo
//! (`real_tools`), and hostile ones (`hostile`); the layer pipeline against a sequential apply
//! (`pipelined`).

mod apply;
mod hostile;
mod pipelined;
mod real_tools;
pub(crate) mod util;
