//! `sandbox build`, the side that changes a tree and the host: it carries out a `BuildPlan`
//! that `template` composed and rendered.
//!
//! `base` says what is pulled (the template's source, keys and image server, with `sandbox
//! pull`'s precedence; pure), `dry_run` shows a build without changing anything, and
//! `execute` checks what the plan asks of the host (`hostcheck`), pulls the image (`pull`,
//! verified as `sandbox pull` does), makes its tree
//! (`machine::materialise`), layers the plan and the guest fix-ups (`fixups`), runs the
//! templates' bake steps (`[build] run`) inside the rootfs in namespaces of their own (`bake`,
//! `bake_ns`), writes the host files and the provenance record (`hostfiles`,
//! `machine::state`), publishes (on ZFS into a dataset of its own, `machine::zfs`) and hands
//! off to machinectl. `--output` builds share the pull, unpack and layering, and write formats
//! instead (`export`); the host is untouched then.

pub mod bake;
mod bake_ns;
pub mod base;
pub mod dry_run;
pub mod execute;
pub mod fixups;
pub mod hostcheck;
pub mod hostfiles;
