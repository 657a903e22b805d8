//! `sandbox-pull …` is `sandbox pull …`.
fn main() -> std::process::ExitCode {
    sandboxes::cli::main(sandboxes::cli::Entry::Pull)
}
