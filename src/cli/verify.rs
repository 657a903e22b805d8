//! `sandbox verify FILE --signature SIG`: one detached signature against the trust store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::Settings;
use super::trust::trust_store;
use crate::verify::openpgp::verify_detached;

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The signed file.
    pub file: PathBuf,
    /// The detached signature (binary or armored).
    #[arg(long, value_name = "SIG")]
    pub signature: PathBuf,
    /// A keyring to trust besides the trust store; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
}

#[derive(Serialize)]
struct VerifyResult {
    file: PathBuf,
    good: bool,
    key_fingerprint: String,
    signer: Option<String>,
    key_origin: String,
    notes: Vec<String>,
}

pub fn run(settings: &Settings, args: VerifyArgs) -> Result<ExitCode> {
    // The built-in LXC key counts here: people check images.linuxcontainers.org downloads by hand.
    let store = trust_store(settings, &args.keyring, true)?;
    let sig = crate::cache::store::read_limited(&args.signature, 1 << 20)?;
    let data = fs_err::File::open(&args.file).map(fs_err::File::into_file)?;
    let check =
        verify_detached(&store, std::io::BufReader::new(data), &sig).with_context(|| {
            format!(
                "verifying {} with {}",
                args.file.display(),
                args.signature.display()
            )
        })?;
    let mut notes = Vec::new();
    if check.sha1_self_signature_accepted {
        notes.push(
            "the key is only self-signed with SHA-1; accepted because it is pinned".to_string(),
        );
    }
    let result = VerifyResult {
        file: args.file.clone(),
        good: true,
        key_fingerprint: check.primary_fingerprint.clone(),
        signer: check.user_ids.first().cloned(),
        key_origin: check.origin.clone(),
        notes,
    };
    if settings.json {
        super::print_json(&result)?;
    } else {
        settings.say(format!(
            "Good signature on {} by {} ({}) from {}",
            args.file.display(),
            result.key_fingerprint,
            result.signer.as_deref().unwrap_or("no user ID"),
            result.key_origin
        ));
        for n in &result.notes {
            settings.say(format!("note: {n}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
