//! `sandbox build`: compose templates, pull the base, write the sandbox, hand off.

use crate::machine::storage::Storage;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::Settings;
use crate::assemble::base::ServerOverride;
use crate::assemble::execute::{self, BuildRequest};
use crate::export::oci_output::{self, OciDestination, OciExportReport, OciOutputOptions};
use crate::export::output::Output;
use crate::export::sign::SigningOptions;
use crate::export::tar_output::{self, ExportCompression, ExportOptions, ExportReport};
use crate::machine::host::SystemHost;
use crate::source::SourceRef;
use crate::source::registry::auth::{Credentials, CredsParser};
use crate::template::{Composition, Library, parse_nvidia_list, parse_set};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Set a template variable (repeatable): `--set bridge=br1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Do not start the sandbox after building it.
    #[arg(long)]
    pub no_start: bool,
    /// Start the sandbox at boot (`machinectl enable`).
    #[arg(long)]
    pub enable: bool,
    /// Print what would be pulled, written and run; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace an existing sandbox of the same name.
    #[arg(long)]
    pub force: bool,
    /// How the rootfs is made: from the unpacked-image store by a ZFS clone, a btrfs
    /// snapshot or a reflinked copy, or unpacked anew (copy) [default: the templates'
    /// `storage`, else the best the machines dir's filesystem offers].
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub storage: Option<Storage>,
    /// Build from the cache alone: the base image (and its checksums and signatures) as an
    /// earlier pull or build left them; fails when they are not there.
    #[arg(long)]
    pub offline: bool,
    /// Write the build somewhere instead of installing it; nothing on this host changes.
    /// `tar:DIR` gives DIR/NAME.tar.xz, DIR/NAME.nspawn and DIR/SHA256SUMS;
    /// `oci-layout:DIR[:TAG]` an OCI image layout; `docker://REGISTRY/REPO[:TAG]` pushes.
    /// OCI images keep the base's layers and add one with what the build changed.
    /// Reproducible with SOURCE_DATE_EPOCH set (later mtimes are clamped to it).
    #[arg(long, value_name = "KIND:DEST", conflicts_with_all = ["dry_run", "enable", "force"])]
    pub output: Option<String>,
    /// Credentials for the registry pushed to (--output docker://); otherwise the auth
    /// files are read, as for `sandbox pull`.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = CredsParser, requires = "output")]
    pub creds: Option<Credentials>,
    /// images: the simplestreams server of the base, over the templates' `images_server`
    /// [default: $SANDBOX_IMAGES_SERVER, else the templates', else https://images.linuxcontainers.org].
    /// The built-in LXC key is trusted for the default server only: give another server's key
    /// with --keyring or in <sandboxes_dir>/keys/.
    #[arg(long, value_name = "URL")]
    pub images_server: Option<String>,
    /// A keyring (armored or binary) to trust for the base's signature; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<std::path::PathBuf>,
    /// Credentials for the registry of a docker:// base; otherwise the auth files are read.
    #[arg(long, value_name = "USER:PASSWORD", value_parser = CredsParser)]
    pub src_creds: Option<Credentials>,
    /// Require HTTPS with a valid certificate from registries (the base's and the one
    /// pushed to); `false` also allows plain http (a registry on localhost).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Sign the OCI output in cosign's format with this private key (cosign's encrypted PEM,
    /// password from $COSIGN_PASSWORD, or an unencrypted PKCS#8/SEC1 P-256 key): a
    /// `sha256-<hex>.sig` image next to it.
    #[arg(long, value_name = "FILE", requires = "output")]
    pub cosign_key: Option<std::path::PathBuf>,
    /// With --sign-key and an OCI output: write a containers simple-signing signature into
    /// this lookaside directory (`REPO@sha256=<hex>/signature-N`).
    #[arg(long, value_name = "DIR", requires = "sign_key")]
    pub lookaside: Option<std::path::PathBuf>,
    /// The reference the signatures of an oci-layout: output name (REGISTRY/REPO[:TAG]), where
    /// the image will be copied to.
    #[arg(long, value_name = "REFERENCE", requires = "output")]
    pub sign_identity: Option<String>,
    /// The tarball's compression with --output: xz (default) or zstd.
    #[arg(long, value_name = "xz|zstd", requires = "output")]
    pub compress: Option<String>,
    /// Sign SHA256SUMS with this unencrypted OpenPGP secret key (armored or binary):
    /// SHA256SUMS.gpg and SHA256SUMS.asc.
    #[arg(long, value_name = "FILE", requires = "output")]
    pub sign_key: Option<std::path::PathBuf>,
    /// The template and snippets on top of it: `debian+docker+bridge`.
    #[arg(value_name = "TEMPLATE[+SNIPPET…]")]
    pub templates: String,
    /// The sandbox (machine) name.
    pub name: String,
}

#[derive(Serialize)]
struct BuildJson<'a> {
    #[serde(flatten)]
    state: &'a crate::machine::state::SandboxState,
    fixups: &'a [String],
    handoff: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    handoff_skipped: Option<&'a str>,
    /// `.nspawn` keys changed with `sandbox config`, applied again by `--force`: `{"key",
    /// "file", "before" (the templates' values), "after" (the kept ones)}`.
    kept_edits: &'a [crate::config::plan::KeyEdit],
}

/// The flag over the variable (an empty variable is unset). The variable is read here, not by
/// clap, so `--dry-run` can say which of the two chose the server. Pure.
fn server_override(flag: Option<&str>, env: Option<&str>) -> Option<ServerOverride> {
    match (flag, env) {
        (Some(url), _) => Some(ServerOverride {
            url: url.to_string(),
            from_env: false,
        }),
        (None, Some(url)) if !url.is_empty() => Some(ServerOverride {
            url: url.to_string(),
            from_env: true,
        }),
        _ => None,
    }
}

/// The host's NVIDIA driver files, from `nvidia-container-cli list`.
fn nvidia_files() -> Result<crate::template::NvidiaFiles> {
    let out = std::process::Command::new("nvidia-container-cli")
        .arg("list")
        .output()
        .context("running `nvidia-container-cli list` (the nvidia template needs it; install the NVIDIA container toolkit)")?;
    if !out.status.success() {
        bail!(
            "`nvidia-container-cli list` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_nvidia_list(&String::from_utf8_lossy(&out.stdout))
}

pub fn run(settings: &Settings, args: BuildArgs) -> Result<ExitCode> {
    let requested: Vec<String> = args.templates.split('+').map(str::to_string).collect();
    if requested.iter().any(String::is_empty) {
        bail!(
            "`{}`: an empty template name (write TEMPLATE+SNIPPET, e.g. debian+docker)",
            args.templates
        );
    }
    let sets = args
        .set
        .iter()
        .map(|s| parse_set(s))
        .collect::<Result<Vec<_>>>()?;
    crate::machine::name::validate(&args.name)
        .map_err(|e| anyhow::anyhow!("{e}; choose another sandbox name"))?;
    let library = Library::standard(&settings.paths.sandboxes_dir);
    let composition = Composition::load(&library, &requested, &sets)?;
    if !args.keyring.is_empty() && matches!(composition.spec().source.source, SourceRef::Oci(_)) {
        bail!(
            "--keyring is for tarball and images: signatures; the base {} is OCI, whose signatures are not checked with it",
            composition.spec().source.raw
        );
    }
    let nvidia = if composition.needs_nvidia() {
        Some(nvidia_files()?)
    } else {
        None
    };
    let req = BuildRequest {
        name: args.name.clone(),
        enable: args.enable,
        no_start: args.no_start,
        force: args.force,
        nvidia,
        oci: crate::pull::OciOptions {
            creds: args.src_creds.clone(),
            tls_verify: args.tls_verify,
            ..Default::default()
        },
        offline: args.offline,
        keyrings: args.keyring.clone(),
        images_server: server_override(
            args.images_server.as_deref(),
            std::env::var("SANDBOX_IMAGES_SERVER").ok().as_deref(),
        ),
        storage: args.storage,
    };
    if args.dry_run {
        let plan = crate::assemble::dry_run::dry_run(&settings.paths, &composition, &req)?;
        if settings.json {
            super::print_json(&plan)?;
        } else {
            print!("{}", plan.text());
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Before anything is pulled; the bake code checks again where it runs the steps.
    let steps = composition.bake_steps();
    if let Some(first) = steps.first()
        && !rustix::process::geteuid().is_root()
    {
        bail!(
            "{}: template `{}` has bake steps ([build] run), which run as root inside the rootfs: run sandbox build as root",
            first.place,
            first.template
        );
    }
    if let Some(output) = &args.output {
        let output = Output::parse(output)?;
        let destination = match output {
            Output::Tar(dir) => return run_tar_export(settings, &args, &composition, &req, dir),
            Output::Layout { dir, tag } => {
                if args.creds.is_some() {
                    bail!("--creds is for docker:// outputs");
                }
                OciDestination::Layout { dir, tag }
            }
            Output::Registry(r) => OciDestination::Registry(r),
        };
        if args.compress.is_some() {
            bail!("--compress is for tar: outputs; OCI layers are gzip");
        }
        let opts = OciOutputOptions {
            destination,
            source_date_epoch: source_date_epoch()?,
            creds: args.creds.clone(),
            tls_verify: args.tls_verify,
            signing: SigningOptions {
                cosign_key: args.cosign_key.clone(),
                sign_key: args.sign_key.clone(),
                lookaside: args.lookaside.clone(),
                identity: args
                    .sign_identity
                    .as_deref()
                    .map(|r| {
                        crate::oci::ImageReference::parse(r.trim_start_matches("docker://"))
                            .with_context(|| format!("--sign-identity `{r}`"))
                    })
                    .transpose()?,
            },
        };
        settings.progress.phase(&match &opts.destination {
            OciDestination::Layout { dir, tag } => {
                format!("Exporting to the OCI layout {}:{tag}", dir.display())
            }
            OciDestination::Registry(r) => format!("Pushing to docker://{r}"),
        });
        let report = oci_output::export_oci(
            &settings.paths,
            settings.progress,
            &composition,
            &req,
            &opts,
        )?;
        return print_oci_export(settings, &report);
    }
    let report = execute::build(
        &settings.paths,
        settings.progress,
        &SystemHost::for_paths(&settings.paths),
        &composition,
        &req,
    )?;
    if settings.json {
        super::print_json(&BuildJson {
            state: &report.state,
            fixups: &report.fixups.notes,
            handoff: &report.handoff,
            handoff_skipped: report.skipped_handoff.as_deref(),
            kept_edits: &report.kept_edits,
        })?;
    } else {
        let v = &report.state.verification;
        let how = v.summary();
        settings.say(format!(
            "Built sandbox `{}` from {} at {} ({}, {how})",
            report.state.name,
            report.state.templates.join(", "),
            report.state.rootfs.display(),
            report.state.digest
        ));
        for note in &report.fixups.notes {
            settings.say(format!("  {note}"));
        }
        for k in &report.kept_edits {
            let show = |values: &[String]| {
                if values.is_empty() {
                    "unset".to_string()
                } else {
                    values.join(", ")
                }
            };
            let over = if k.before == k.after {
                String::new()
            } else {
                format!(" over the templates' {}", show(&k.before))
            };
            settings.say(format!(
                "Kept {} = {} (set with `sandbox config`){over}; `sandbox config {} --reset {}` \
                 gives the templates' value back",
                k.key,
                show(&k.after),
                report.state.name,
                k.key
            ));
        }
        for cmd in &report.handoff {
            settings.say(format!("Ran {cmd}"));
        }
        if let Some(why) = &report.skipped_handoff {
            settings.say(format!("Warning: {why}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_tar_export(
    settings: &Settings,
    args: &BuildArgs,
    composition: &Composition,
    req: &BuildRequest,
    dir: std::path::PathBuf,
) -> Result<ExitCode> {
    if args.creds.is_some() {
        bail!("--creds is for docker:// outputs");
    }
    if args.cosign_key.is_some() || args.lookaside.is_some() || args.sign_identity.is_some() {
        bail!(
            "--cosign-key, --lookaside and --sign-identity sign OCI outputs; a tar: output is signed with --sign-key alone"
        );
    }
    let opts = ExportOptions {
        dir,
        compression: match &args.compress {
            Some(c) => ExportCompression::parse(c)?,
            None => ExportCompression::Xz,
        },
        sign_key: args.sign_key.clone(),
        source_date_epoch: source_date_epoch()?,
    };
    settings.progress.phase("Exporting the rootfs as a tarball");
    let report = tar_output::export(&settings.paths, settings.progress, composition, req, &opts)?;
    print_export(settings, &report)
}

#[derive(Serialize)]
struct OciExportJson<'a> {
    base: String,
    destination: &'a str,
    manifest_digest: String,
    config_digest: String,
    layers: Vec<String>,
    new_layers: usize,
    changed_paths: usize,
    signatures: Vec<serde_json::Value>,
    fixups: &'a [String],
}

fn print_oci_export(settings: &Settings, report: &OciExportReport) -> Result<ExitCode> {
    if settings.json {
        super::print_json(&OciExportJson {
            base: report.base.to_string(),
            destination: &report.destination,
            manifest_digest: report.manifest.digest.to_string(),
            config_digest: report.config.digest.to_string(),
            layers: report.layers.iter().map(|l| l.digest.to_string()).collect(),
            new_layers: report.new_layers,
            changed_paths: report.changed_paths,
            signatures: report
                .signatures
                .iter()
                .map(|s| {
                    serde_json::json!({"kind": s.kind, "signer": s.signer, "location": s.location})
                })
                .collect(),
            fixups: &report.fixups.notes,
        })?;
    } else {
        settings.say(format!(
            "Wrote {} ({}): {} layers, {} of them new ({} paths changed from base {})",
            report.destination,
            report.manifest.digest,
            report.layers.len(),
            report.new_layers,
            report.changed_paths,
            report.base
        ));
        for s in &report.signatures {
            settings.say(format!("Signed ({}, {}): {}", s.kind, s.signer, s.location));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `SOURCE_DATE_EPOCH`, when set (and not empty).
fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970")
        }),
        _ => Ok(None),
    }
}

#[derive(Serialize)]
struct ExportJson<'a> {
    image: String,
    tarball: &'a std::path::Path,
    tarball_sha256: String,
    nspawn: &'a std::path::Path,
    sums: &'a std::path::Path,
    signatures: &'a [std::path::PathBuf],
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<&'a str>,
    fixups: &'a [String],
}

fn print_export(settings: &Settings, report: &ExportReport) -> Result<ExitCode> {
    if settings.json {
        super::print_json(&ExportJson {
            image: report.image.to_string(),
            tarball: &report.tarball,
            tarball_sha256: report.tarball_sha256.hex(),
            nspawn: &report.nspawn,
            sums: &report.sums,
            signatures: &report.signatures,
            signer: report.signer.as_deref(),
            fixups: &report.fixups.notes,
        })?;
    } else {
        settings.say(format!(
            "Wrote {} (sha256 {}) from image {}",
            report.tarball.display(),
            report.tarball_sha256.hex(),
            report.image
        ));
        settings.say(format!("Wrote {}", report.nspawn.display()));
        settings.say(format!("Wrote {}", report.sums.display()));
        for s in &report.signatures {
            settings.say(format!(
                "Wrote {} (signed by {})",
                s.display(),
                report.signer.as_deref().unwrap_or("?")
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_variable() {
        let flag = |url: &str| ServerOverride {
            url: url.into(),
            from_env: false,
        };
        assert_eq!(
            server_override(Some("http://a/"), Some("http://b/")),
            Some(flag("http://a/"))
        );
        assert_eq!(
            server_override(Some("http://a/"), None),
            Some(flag("http://a/"))
        );
        assert_eq!(
            server_override(None, Some("http://b/")),
            Some(ServerOverride {
                url: "http://b/".into(),
                from_env: true
            })
        );
        assert_eq!(server_override(None, Some("")), None);
        assert_eq!(server_override(None, None), None);
    }
}
