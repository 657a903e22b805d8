//! `sandbox keys add|ls|rm`: the keys in `<sandboxes_dir>/keys/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Settings;
use super::trust::trust_store;
use crate::verify::openpgp::keys;

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Trust the public keys in FILE (armored or binary) for signature checks.
    Add {
        /// An OpenPGP key or keyring, armored or binary.
        file: PathBuf,
    },
    /// List every trusted key and where it comes from.
    Ls,
    /// Stop trusting a key added with `keys add` (full fingerprint).
    Rm {
        /// The key's full fingerprint, as `keys ls` shows it.
        fingerprint: String,
    },
}

pub fn run(settings: &Settings, cmd: KeysCommand) -> Result<ExitCode> {
    let dir = settings.paths.keys_dir();
    match cmd {
        KeysCommand::Add { file } => {
            let added = keys::add_to_dir(&dir, &file)?;
            if settings.json {
                super::print_json(&added)?;
            } else {
                for fpr in added {
                    settings.say(format!("trusting {fpr} (in {})", dir.display()));
                }
            }
        }
        KeysCommand::Ls => {
            let store = trust_store(settings, &[], true)?;
            let rows = keys::list(&store);
            if settings.json {
                super::print_json(&rows)?;
            } else {
                for r in rows {
                    println!(
                        "{}  {}  ({})",
                        r.fingerprint,
                        r.user_ids.join(", "),
                        r.origin
                    );
                }
            }
        }
        KeysCommand::Rm { fingerprint } => {
            let removed = keys::remove_from_dir(&dir, &fingerprint)?;
            settings.say(format!("removed {}", removed.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
