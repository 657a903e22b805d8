//! Commands that later work fills in. They say so plainly and exit non-zero.

use std::process::ExitCode;

use clap::Args;

/// Accepts any arguments, so `--help` and scripts get the "not yet available" message.
#[derive(Args, Debug)]
pub struct PendingArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(command: &str, what: &str) -> anyhow::Result<ExitCode> {
    eprintln!("sandbox {command}: not yet available in this version ({what} is planned)");
    Ok(ExitCode::from(2))
}
