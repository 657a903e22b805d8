//! `sandbox completions SHELL` and `sandbox man DIR`: shell completions and manual pages,
//! generated from the same clap definitions as the parser, so they cannot drift from it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

use super::{Cli, Settings};

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages into (created): sandbox.1, sandbox-pull.1, …
    pub dir: PathBuf,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "sandbox", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Writes one page per command (and subcommand) into `args.dir`.
pub fn man(settings: &Settings, args: ManArgs) -> Result<ExitCode> {
    fs_err::create_dir_all(&args.dir)?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(&cmd, "sandbox", &args.dir, &mut written)?;
    if settings.json {
        super::print_json(&written)?;
    } else {
        settings.say(format!(
            "wrote {} manual pages into {}",
            written.len(),
            args.dir.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let page = cmd.clone().name(name.to_string());
    let mut bytes = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut bytes)
        .with_context(|| format!("rendering the manual page of `{}`", name.replace('-', " ")))?;
    let path = dir.join(format!("{name}.1"));
    crate::atomic::write_file(&path, &bytes)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every command says what it is for; global options are listed apart.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "sandbox", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:#?}");
        let pull = cmd.find_subcommand("pull").unwrap();
        let root = pull.get_arguments().find(|a| a.get_id() == "root").unwrap();
        assert_eq!(root.get_help_heading(), Some("Global options"));
        let force = pull
            .get_arguments()
            .find(|a| a.get_id() == "force")
            .unwrap();
        assert_eq!(force.get_help_heading(), None);
    }
}
