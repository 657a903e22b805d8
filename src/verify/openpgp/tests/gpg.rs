//! Keys and signatures made by real GnuPG, the independent producer, once per test run.
//!
//! Everything is generated in a temporary GNUPGHOME, exported as bytes, and then the agent is
//! stopped and the directory deleted, so no test depends on gpg state or leaves any behind.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// One generated key, as gpg exports it.
pub struct Key {
    /// Primary fingerprint as gpg reports it (`--with-colons`), upper-case hex.
    pub fpr: String,
    pub user_id: String,
    pub binary: Vec<u8>,
    pub armored: Vec<u8>,
}

pub struct Fixture {
    /// The signed data (100 KiB, not valid UTF-8 on purpose).
    pub data: Vec<u8>,
    /// Ordinary key: SHA-256 self-signature.
    pub alice: Key,
    /// Another ordinary key, for "signed by someone not in the store".
    pub bob: Key,
    /// Self-signature made with SHA-1 (`--cert-digest-algo SHA1`), like the LXC image key.
    pub old: Key,
    /// Revoked (its gpg-made revocation certificate imported) after signing `data`.
    pub revoked: Key,
    /// `gpg --export --armor alice bob`: one file, two certificates.
    pub alice_and_bob_armored: Vec<u8>,
    /// `gpg --export-secret-keys alice`.
    pub alice_secret: Vec<u8>,
    pub sig_alice_binary: Vec<u8>,
    pub sig_alice_armored: Vec<u8>,
    pub sig_alice_sha1: Vec<u8>,
    pub sig_bob: Vec<u8>,
    pub sig_old: Vec<u8>,
    pub sig_old_sha1: Vec<u8>,
    pub sig_revoked: Vec<u8>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(generate)
}

fn generate() -> Fixture {
    let home = tempfile::Builder::new()
        .prefix("gpg-")
        .tempdir()
        .expect("creating a temporary GNUPGHOME");
    let gpg = Gpg { home: home.path() };
    let fixture = gpg.make_all();
    gpg.stop_agent();
    fixture
}

struct Gpg<'a> {
    home: &'a Path,
}

impl Gpg<'_> {
    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.home)
            .args(["--batch", "--no-tty", "--quiet"])
            .args(args)
            .output()
            .expect("running gpg (is gnupg installed?)");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn stop_agent(&self) {
        // The agent would otherwise outlive the deleted GNUPGHOME.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }

    fn gen_key(&self, user_id: &str, extra: &[&str]) -> String {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend([
            "--passphrase",
            "",
            "--quick-gen-key",
            user_id,
            "rsa3072",
            "sign",
            "never",
        ]);
        self.run(&args);
        self.fingerprint(user_id)
    }

    fn fingerprint(&self, user_id: &str) -> String {
        let listing = self.run(&["--with-colons", "--list-keys", user_id]);
        let listing = String::from_utf8(listing).expect("gpg --with-colons output is UTF-8");
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .expect("gpg lists a fingerprint");
        fpr.to_string()
    }

    fn export(&self, fpr: &str) -> Key {
        let listing = self.run(&["--with-colons", "--list-keys", fpr]);
        let listing = String::from_utf8(listing).expect("gpg --with-colons output is UTF-8");
        let user_id = listing
            .lines()
            .find_map(|l| l.strip_prefix("uid:"))
            .and_then(|rest| rest.split(':').nth(8))
            .expect("gpg lists a user ID")
            .to_string();
        Key {
            fpr: fpr.to_string(),
            user_id,
            binary: self.run(&["--export", fpr]),
            armored: self.run(&["--export", "--armor", fpr]),
        }
    }

    fn sign(&self, fpr: &str, data: &Path, extra: &[&str]) -> Vec<u8> {
        let mut args = vec!["--local-user", fpr, "--detach-sign", "--output", "-"];
        args.extend(extra);
        args.push(data.to_str().expect("temp paths are UTF-8"));
        self.run(&args)
    }

    fn revoke(&self, fpr: &str) {
        // gpg writes a revocation certificate at key generation, with its armor header
        // prefixed by ':' so that it cannot be imported by accident.
        let rev = self
            .home
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev"));
        let text = fs_err::read_to_string(&rev).expect("gpg wrote a revocation certificate");
        let armored: String = text
            .lines()
            .map(|l| l.strip_prefix(':').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let path = self.home.join("revoke.asc");
        fs_err::write(&path, armored).expect("writing the revocation certificate");
        self.run(&["--import", path.to_str().expect("temp paths are UTF-8")]);
    }

    fn make_all(&self) -> Fixture {
        let data: Vec<u8> = (0u32..100 * 1024)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let data_path = self.home.join("data.bin");
        fs_err::write(&data_path, &data).expect("writing the data to sign");

        let alice = self.gen_key("Alice <alice@example.org>", &[]);
        let bob = self.gen_key("Bob <bob@example.org>", &[]);
        let old = self.gen_key("Old <old@example.org>", &["--cert-digest-algo", "SHA1"]);
        let revoked = self.gen_key("Gone <gone@example.org>", &[]);

        let sha256 = ["--digest-algo", "SHA256"];
        let sha1 = ["--digest-algo", "SHA1"];
        let sig_revoked = self.sign(&revoked, &data_path, &sha256);
        self.revoke(&revoked);

        Fixture {
            sig_alice_binary: self.sign(&alice, &data_path, &sha256),
            sig_alice_armored: self.sign(
                &alice,
                &data_path,
                &["--armor", "--digest-algo", "SHA256"],
            ),
            sig_alice_sha1: self.sign(&alice, &data_path, &sha1),
            sig_bob: self.sign(&bob, &data_path, &sha256),
            sig_old: self.sign(&old, &data_path, &sha256),
            sig_old_sha1: self.sign(&old, &data_path, &sha1),
            sig_revoked,
            alice_and_bob_armored: self.run(&["--export", "--armor", &alice, &bob]),
            alice_secret: self.run(&[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--export-secret-keys",
                &alice,
            ]),
            alice: self.export(&alice),
            bob: self.export(&bob),
            old: self.export(&old),
            revoked: self.export(&revoked),
            data,
        }
    }
}
