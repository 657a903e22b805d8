//! Real GnuPG as the independent producer of keys and signatures.
//!
//! Each `Gpg` owns a temporary GNUPGHOME holding one freshly generated signing key without a
//! passphrase. The gpg-agent it starts is killed on drop so no agent outlives its test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Key algorithm for `--quick-gen-key`: ed25519 is instant, rsa3072 is what many distributions
/// still sign with (and exercises the RSA path of the verifier).
#[derive(Clone, Copy, Debug)]
pub enum KeyAlgo {
    Ed25519,
    Rsa3072,
}

pub struct Gpg {
    home: tempfile::TempDir,
    fingerprint: String,
}

impl Gpg {
    /// A new home with one signing key for `Test <t@example.org>`.
    pub fn new(algo: KeyAlgo) -> Gpg {
        let algo = match algo {
            KeyAlgo::Ed25519 => "ed25519",
            KeyAlgo::Rsa3072 => "rsa3072",
        };
        Gpg::generate("Test <t@example.org>", algo, &[])
    }

    /// A new home with one signing key for `uid`, made with `--quick-gen-key uid algo` and
    /// `extra` options before it (e.g. `--cert-digest-algo SHA1`).
    pub fn generate(uid: &str, algo: &str, extra: &[&str]) -> Gpg {
        super::require_tool("gpg");
        super::require_tool("gpgconf");
        // Short prefix: the agent's socket path must fit in sun_path (108 bytes).
        let home = tempfile::Builder::new()
            .prefix("gpg-")
            .tempdir()
            .expect("creating a GNUPGHOME");
        let mut gpg = Gpg {
            home,
            fingerprint: String::new(),
        };
        super::run_tool(
            gpg.command()
                .args(extra)
                .args(["--quick-gen-key", uid, algo, "sign", "never"]),
            None,
        );
        let listing = super::run_tool(
            gpg.command()
                .args(["--with-colons", "--fingerprint", "--list-secret-keys"]),
            None,
        );
        // The first `fpr` record follows the primary key's `sec` record.
        gpg.fingerprint = String::from_utf8_lossy(&listing)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .map(str::to_string)
            .expect("gpg listed no fingerprint for the key it just made");
        gpg
    }

    /// `gpg` in this home, non-interactive.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--yes",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        cmd
    }

    /// The GNUPGHOME, for other tools that sign through gpgme (skopeo --sign-by).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// Upper-case hex fingerprint of the primary key (40 digits for a v4 key).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The 16-hex-digit key ID, the part of the fingerprint older signatures carry as issuer.
    pub fn key_id(&self) -> &str {
        &self.fingerprint[self.fingerprint.len() - 16..]
    }

    /// The public key, binary (`armor == false`) or ASCII-armored.
    pub fn export(&self, armor: bool) -> Vec<u8> {
        let mut cmd = self.command();
        if armor {
            cmd.arg("--armor");
        }
        let out = super::run_tool(cmd.args(["--export", &self.fingerprint]), None);
        assert!(
            !out.is_empty(),
            "gpg exported nothing for {}",
            self.fingerprint
        );
        out
    }

    /// The secret key (unencrypted: the key was made without a passphrase), binary or
    /// ASCII-armored, written to `path`.
    pub fn export_secret_to(&self, path: &Path, armor: bool) -> PathBuf {
        let mut cmd = self.command();
        if armor {
            cmd.arg("--armor");
        }
        let key = super::run_tool(cmd.args(["--export-secret-keys", &self.fingerprint]), None);
        assert!(
            !key.is_empty(),
            "gpg exported no secret key for {}",
            self.fingerprint
        );
        std::fs::write(path, key).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.to_path_buf()
    }

    /// Writes the exported public key to `path`.
    pub fn export_to(&self, path: &Path, armor: bool) -> PathBuf {
        let key = self.export(armor);
        std::fs::write(path, key).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.to_path_buf()
    }

    /// Detached signature over `file`, written next to it as `<file>.gpg` (binary) or `.asc`.
    pub fn detach_sign(&self, file: &Path, armor: bool) -> PathBuf {
        let suffix = if armor { "asc" } else { "gpg" };
        let out = PathBuf::from(format!("{}.{suffix}", file.display()));
        let mut cmd = self.command();
        cmd.args(["--local-user", &self.fingerprint]);
        if armor {
            cmd.arg("--armor");
        }
        cmd.arg("--output").arg(&out).arg("--detach-sign").arg(file);
        super::run_tool(&mut cmd, None);
        out
    }

    /// gpg's own verdict on a detached signature, for self-testing the fixtures.
    pub fn verifies(&self, file: &Path, signature: &Path) -> bool {
        self.command()
            .arg("--verify")
            .arg(signature)
            .arg(file)
            .output()
            .expect("running gpg --verify")
            .status
            .success()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}
