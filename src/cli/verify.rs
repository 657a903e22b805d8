//! `sandbox verify FILE --signature SIG`: one detached OpenPGP signature against the trust
//! store. `sandbox verify FILE_OR_DIGEST --bundle BUNDLE …`: one Sigstore bundle, keyless
//! (`--certificate-identity[-regexp]`, `--certificate-oidc-issuer[-regexp]`) or with `--key`,
//! as `cosign verify-blob --bundle` checks it, offline (see `verify::sigstore`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::Settings;
use super::keyless_args::KeylessArgs;
use super::trust::trust_store;
use crate::digest::Digest;
use crate::verify::openpgp::verify_detached;
use crate::verify::sigstore::{
    MAX_BUNDLE, Signed, Signer, TrustRoot, Vouched, parse_bundle, verify_bundle,
};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The signed file; with --bundle also `sha256:HEX`, the digest of what was signed (an
    /// existing file of that name is read as a file).
    pub file: PathBuf,
    /// The detached OpenPGP signature (binary or armored).
    #[arg(
        long,
        value_name = "SIG",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    pub signature: Option<PathBuf>,
    /// A keyring to trust besides the trust store; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
    #[command(flatten)]
    pub sigstore: SigstoreArgs,
}

/// A Sigstore bundle and who may have made it.
#[derive(Args, Debug)]
pub struct SigstoreArgs {
    /// A Sigstore bundle (v0.1–v0.3 JSON) to verify FILE with.
    #[arg(long, value_name = "BUNDLE")]
    pub bundle: Option<PathBuf>,
    #[command(flatten)]
    pub signer: SignerArgs,
}

/// Who may have signed: cosign's keyless flags (shared with `pull`), or a key.
#[derive(Args, Debug, Clone, Default)]
pub struct SignerArgs {
    #[command(flatten)]
    pub keyless: KeylessArgs,
    /// A PEM public key that made the bundle (a managed-key bundle, no certificate).
    #[arg(long, value_name = "PEM", conflicts_with_all = ["certificate_identity", "certificate_identity_regexp"])]
    pub key: Option<PathBuf>,
}

impl SignerArgs {
    /// The signer these flags name, or `None` when none of them is given.
    pub fn signer(&self) -> Result<Option<Signer>> {
        if let Some(path) = &self.key {
            let pem = crate::atomic::read_limited(path, 64 << 10)?;
            let pem = String::from_utf8(pem)
                .map_err(|_| anyhow::anyhow!("{}: not a PEM file", path.display()))?;
            return Ok(Some(Signer::Key {
                pem,
                origin: format!("the key {}", path.display()),
            }));
        }
        Ok(self
            .keyless
            .expectations()?
            .map(|(identity, issuer)| Signer::Keyless { identity, issuer }))
    }
}

#[derive(Serialize)]
struct BundleResult {
    file: PathBuf,
    good: bool,
    #[serde(flatten)]
    vouched: Vouched,
    trusted_root: String,
}

/// `FILE` as cosign's conformance protocol reads it: `sha256:` and 64 hex digits that are not
/// a file on disk is a digest. Pure but for the existence check.
fn digest_arg(file: &std::path::Path) -> Option<Digest> {
    let text = file.to_str()?;
    let hex = text.strip_prefix("sha256:")?;
    if file.exists() || hex.len() != 64 {
        return None;
    }
    Digest::from_hex(hex).ok()
}

fn run_bundle(
    settings: &Settings,
    args: &VerifyArgs,
    bundle_path: &std::path::Path,
) -> Result<ExitCode> {
    let signer = args.sigstore.signer.signer()?.context(
        "--bundle needs who may have signed: --certificate-identity and --certificate-oidc-issuer \
         (or their -regexp forms), or --key",
    )?;
    let root = TrustRoot::load(
        args.sigstore.signer.keyless.trusted_root.as_deref(),
        &settings.paths.sandboxes_dir,
    )?;
    let bytes = crate::atomic::read_limited(bundle_path, MAX_BUNDLE)?;
    let shown = || {
        format!(
            "verifying {} with the bundle {}",
            args.file.display(),
            bundle_path.display()
        )
    };
    let bundle = parse_bundle(&bytes).with_context(shown)?;
    let vouched = match digest_arg(&args.file) {
        Some(digest) => verify_bundle(&root, &bundle, Signed::Digest(&digest), &signer),
        None => {
            let data = fs_err::read(&args.file)?;
            verify_bundle(&root, &bundle, Signed::Bytes(&data), &signer)
        }
    }
    .with_context(shown)?;
    let result = BundleResult {
        file: args.file.clone(),
        good: true,
        vouched,
        trusted_root: root.origin.clone(),
    };
    if settings.json {
        super::print_json(&result)?;
    } else {
        let by = match &result.vouched.issuer {
            Some(issuer) => format!("{} (issuer {issuer})", result.vouched.identity),
            None => result.vouched.identity.clone(),
        };
        settings.say(format!(
            "Good Sigstore bundle on {} by {by}, checked against {}",
            args.file.display(),
            result.trusted_root
        ));
    }
    Ok(ExitCode::SUCCESS)
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
    if let Some(bundle) = &args.sigstore.bundle {
        return run_bundle(settings, &args, bundle);
    }
    let Some(signature) = &args.signature else {
        anyhow::bail!("give --signature SIG or --bundle BUNDLE");
    };
    // The built-in LXC key counts here: people check images.linuxcontainers.org downloads by hand.
    let store = trust_store(settings, &args.keyring, true)?;
    let sig = crate::atomic::read_limited(signature, 1 << 20)?;
    let data = fs_err::File::open(&args.file).map(fs_err::File::into_file)?;
    let check =
        verify_detached(&store, std::io::BufReader::new(data), &sig).with_context(|| {
            format!(
                "verifying {} with {}",
                args.file.display(),
                signature.display()
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
