fn main() -> std::process::ExitCode {
    sandboxes::cli::main(sandboxes::cli::Entry::Sandbox)
}
