//! The shipped templates, embedded at build time by `build.rs` (see there for why a build
//! script and not `include_dir`).

/// One file of a shipped template.
#[derive(Debug)]
pub struct EmbeddedFile {
    /// `template/relative/path`.
    pub path: &'static str,
    /// `0o644`, or `0o755` for a file that is executable in the source tree.
    pub mode: u32,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/embedded_templates.rs"));
