//! Tests of whole images: layouts and archives built in code (`util`), by umoci and skopeo
//! (`real_tools`), and hostile ones (`hostile`).

mod apply;
mod hostile;
mod real_tools;
pub(crate) mod util;
