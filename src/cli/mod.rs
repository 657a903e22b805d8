//! Command-line interface: clap definitions in one place, one file per command. Settings are
//! resolved before dispatch; stdout carries data (`--json`), stderr carries people's messages.

mod build;
mod cache;
mod config;
mod docs;
mod host;
mod images;
mod keyless_args;
mod keys;
mod ls;
mod pull;
mod rm;
mod settings;
mod templates;
mod trust;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use settings::Settings;

#[derive(Parser, Debug)]
#[command(
    name = "sandbox",
    version,
    about = "Verified root filesystems for systemd-nspawn sandboxes",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Take every host path under DIR (as `systemctl --root` does).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub root: Option<PathBuf>,
    /// Where sandboxes keep their cache, keys and state [default: $SANDBOXES_DIR, the ZFS
    /// property jip-hop:sandboxes_dir of boot-pool, or ROOT/var/lib/sandboxes].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub sandboxes_dir: Option<PathBuf>,
    /// Where machines live [default: ROOT/var/lib/machines].
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub machines_dir: Option<PathBuf>,
    /// Print one JSON result on stdout; no progress bars.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Print only errors.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,
    /// More detail on stderr (-vv for debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Global options")]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pull an image, verify it, cache it, and materialise it into the machines dir.
    Pull(Box<pull::PullArgs>),
    /// Build a sandbox from a template.
    Build(Box<build::BuildArgs>),
    /// List the templates a build can use.
    Templates(templates::TemplatesArgs),
    /// List cached images, or with --remote what an image server offers.
    Images(images::ImagesArgs),
    /// Inspect and prune the cache.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Manage the keys trusted for signatures (<sandboxes_dir>/keys).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check a detached OpenPGP signature against the trust store, or a Sigstore bundle
    /// (keyless or by key) against a trusted root, offline.
    Verify(verify::VerifyArgs),
    /// List sandboxes: template, base image, verification, whether they run.
    Ls(ls::LsArgs),
    /// Stop, disable and remove a sandbox with its files and state record.
    Rm(rm::RmArgs),
    /// Show a sandbox's settings, or change single keys of its .nspawn file and drop-in.
    Config(config::ConfigArgs),
    /// Keep sandboxes across TrueNAS SCALE upgrades and enable container networking.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Print a shell completion script (bash, zsh, fish, …) on stdout.
    Completions(docs::CompletionsArgs),
    /// Write a manual page for every command into DIR.
    Man(docs::ManArgs),
}

/// How the program was started: `sandbox`, or one of the command-named entry points.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    Sandbox,
    /// `sandbox-pull`: the same as `sandbox pull`.
    Pull,
    /// `sandbox-build`: the same as `sandbox build`.
    Build,
}

/// Parses the arguments, runs the command, prints the error chain, returns the exit code.
pub fn main(entry: Entry) -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let sub = match entry {
        Entry::Sandbox => None,
        Entry::Pull => Some("pull"),
        Entry::Build => Some("build"),
    };
    if let Some(sub) = sub {
        args.insert(1.min(args.len()), sub.into());
        if let Some(first) = args.first_mut() {
            *first = "sandbox".into();
        }
    }
    let cli = Cli::parse_from(args);
    settings::init_logging(&cli.global);
    if let Err(e) = crate::cleanup::on_signals() {
        tracing::warn!(
            "cannot handle SIGINT/SIGTERM (an interrupted command may leave its work): {e:#}"
        );
    }
    let outcome = run(cli);
    crate::cleanup::wait_if_stopping();
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // Errors may quote bytes from outside (a tar header's fields, a server's words):
            // nothing in them may act on the terminal.
            eprintln!("Error: {}", printable(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&cli.global)?;
    match cli.command {
        Command::Pull(args) => pull::run(&settings, *args),
        Command::Cache(cmd) => cache::run(&settings, cmd),
        Command::Keys(cmd) => keys::run(&settings, cmd),
        Command::Verify(args) => verify::run(&settings, args),
        Command::Build(args) => build::run(&settings, *args),
        Command::Templates(args) => templates::run(&settings, args),
        Command::Images(args) => images::run(&settings, args),
        Command::Ls(args) => ls::run(&settings, args),
        Command::Rm(args) => rm::run(&settings, args),
        Command::Config(args) => config::run(&settings, args),
        Command::Host(cmd) => host::run(&settings, cmd),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(&settings, args),
    }
}

/// `text` with every control character but newline and tab escaped (`\u{1b}`), so that an
/// escape sequence quoted from an archive or a server cannot clear the screen or set the
/// terminal's title. Pure.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints `value` as JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_outside_are_escaped() {
        let hostile = "cksum \u{1b}[2J\u{1b}]0;owned\u{7}\r done";
        let shown = printable(hostile);
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        assert_eq!(printable("two\nlines\tand a tab"), "two\nlines\tand a tab");
        assert_eq!(printable("naïve ümlaut"), "naïve ümlaut");
    }
}
