//! `sandbox-build …` is `sandbox build …`.
fn main() -> std::process::ExitCode {
    sandboxes::cli::main(sandboxes::cli::Entry::Build)
}
