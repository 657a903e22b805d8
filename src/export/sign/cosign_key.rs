//! cosign private keys, for signing: the encrypted PEM `cosign generate-key-pair` writes, and
//! plain PKCS#8 / SEC1 P-256 keys (what `openssl ecparam -genkey` or `openssl genpkey` write).
//!
//! cosign's encrypted key (PEM label `ENCRYPTED SIGSTORE PRIVATE KEY`, before cosign 2
//! `ENCRYPTED COSIGN PRIVATE KEY`) is JSON in the PEM body:
//!
//! ```json
//! {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<base64>"},
//!  "cipher":{"name":"nacl/secretbox","nonce":"<base64>"},"ciphertext":"<base64>"}
//! ```
//!
//! The secretbox key is scrypt(password, salt, N, r, p) of 32 bytes; the opened box is the
//! PKCS#8 DER of the private key. The password is cosign's `COSIGN_PASSWORD` (empty when
//! unset); the caller reads the environment and passes it in.
//!
//! What could go wrong: a wrong password and a tampered file look the same (the box does not
//! open), so the message names both. scrypt parameters come from the file: they are bounded
//! so that a hostile key file cannot make us allocate gigabytes. Secrets (password-derived
//! key, the decrypted DER, the scalar) are zeroized on drop and never reach a message.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use crypto_secretbox::aead::{Aead as _, KeyInit as _};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::der::pem;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding, ObjectIdentifier};
use serde::Deserialize;

use crate::verify::cosign::CosignKey;

/// The PEM labels of cosign's encrypted private keys (current, then pre-2.0).
pub const ENCRYPTED_KEY_LABELS: [&str; 2] = [
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
];

/// The environment variable cosign reads the key password from.
pub const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// scrypt needs 128·r·N bytes; more than this is refused (cosign's default is 32 MiB).
const MAX_SCRYPT_MEMORY: u64 = 512 << 20;
/// Bound on p (each lane repeats the whole work); cosign writes 1.
const MAX_SCRYPT_P: u32 = 16;
/// A key file larger than this is not a key.
const MAX_KEY_FILE: u64 = 64 << 10;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");

/// A P-256 private key that makes cosign signatures. The scalar is zeroized on drop (p256's
/// `SigningKey` holds a `SecretKey`, which is `ZeroizeOnDrop`).
pub struct CosignSigningKey {
    key: SigningKey,
    public: CosignKey,
}

impl std::fmt::Debug for CosignSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CosignSigningKey")
            .field("fingerprint", &self.public.fingerprint)
            .finish_non_exhaustive()
    }
}

impl CosignSigningKey {
    /// Parses a private key PEM: cosign's encrypted format (opened with `password`), or an
    /// unencrypted `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1). `origin` names the key in
    /// messages (a file name).
    pub fn from_pem(text: &[u8], password: &[u8], origin: &str) -> Result<CosignSigningKey> {
        let (label, body) = pem::decode_vec(key_block(text).trim_ascii())
            .map_err(|e| anyhow::anyhow!("{origin}: not a PEM private key ({e})"))?;
        let body = Zeroizing::new(body);
        let key = if ENCRYPTED_KEY_LABELS.contains(&label) {
            let der = decrypt(&body, password, origin)?;
            from_pkcs8(&der, origin)?
        } else {
            match label {
                "PRIVATE KEY" => from_pkcs8(&body, origin)?,
                "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&body)
                    .map(SigningKey::from)
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{origin}: not a P-256 EC PRIVATE KEY (only the NIST P-256 curve \
                             makes cosign signatures)"
                        )
                    })?,
                "ENCRYPTED PRIVATE KEY" => bail!(
                    "{origin}: a password-protected PKCS#8 key (`ENCRYPTED PRIVATE KEY`) is not \
                     read; decrypt it (`openssl pkcs8 -in KEY -out PLAIN`) or import it with \
                     `cosign import-key-pair`"
                ),
                other => bail!(
                    "{origin}: PEM `{other}` is not a private key (expected `{}`, `PRIVATE KEY` \
                     or `EC PRIVATE KEY`)",
                    ENCRYPTED_KEY_LABELS[0]
                ),
            }
        };
        let public = public_of(&key)?;
        Ok(CosignSigningKey { key, public })
    }

    /// The public half, as the verifier reads it (its `fingerprint` names the key).
    pub fn public_key(&self) -> &CosignKey {
        &self.public
    }

    /// The public key as a PEM `PUBLIC KEY` (what `cosign.pub` holds).
    pub fn public_key_pem(&self) -> Result<String> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))
    }

    /// The base64 of the DER ECDSA P-256/SHA-256 signature over `payload`, as cosign puts in
    /// its signature annotation. Deterministic (RFC 6979): no random source is needed.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: Signature = self.key.sign(payload);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }
}

/// Reads the cosign private key file `path`, opening it with `password` when it is encrypted
/// (the caller passes `COSIGN_PASSWORD`, empty when unset, as cosign does).
pub fn load_cosign_signing_key(path: &Path, password: &[u8]) -> Result<CosignSigningKey> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the cosign private key {shown}"))?;
    let mut text = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut text)
        .with_context(|| format!("reading the cosign private key {shown}"))?;
    if text.len() as u64 > MAX_KEY_FILE {
        bail!("{shown}: more than {MAX_KEY_FILE} bytes, not a key file");
    }
    CosignSigningKey::from_pem(&text, password, &shown)
}

/// The PEM block holding the key: `openssl ecparam -genkey` writes an `EC PARAMETERS` block
/// (the curve name, repeated inside the key) before the `EC PRIVATE KEY`, which is skipped.
fn key_block(text: &[u8]) -> &[u8] {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut rest = text;
    while let Some(at) = rest.windows(BEGIN.len()).position(|w| w == BEGIN) {
        let block = &rest[at..];
        if !block[BEGIN.len()..].starts_with(b"EC PARAMETERS-----") {
            return block;
        }
        rest = &block[BEGIN.len()..];
    }
    text
}

/// The password cosign would use: `COSIGN_PASSWORD`, empty when unset (cosign prompts only
/// on a terminal; a build has none to rely on). Its bytes as they are, not re-encoded.
pub fn password_from_env() -> Zeroizing<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt as _;
    Zeroizing::new(
        std::env::var_os(PASSWORD_ENV)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default(),
    )
}

fn public_of(key: &SigningKey) -> Result<CosignKey> {
    let pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
    CosignKey::from_pem(&pem)
}

/// A PKCS#8 DER private key that must be EC on P-256; other algorithms are named.
fn from_pkcs8(der: &[u8], origin: &str) -> Result<SigningKey> {
    let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
        .map_err(|_| anyhow::anyhow!("{origin}: the private key is not PKCS#8 DER"))?;
    let alg = info.algorithm.oid;
    if alg != ID_EC_PUBLIC_KEY {
        bail!(
            "{origin}: a {} key; only ECDSA P-256 keys make cosign signatures here",
            algorithm_name(alg)
        );
    }
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == SECP256R1 => {}
        Ok(curve) => bail!(
            "{origin}: an EC key on curve {curve}; only P-256 (prime256v1) keys make cosign \
             signatures here"
        ),
        Err(_) => bail!("{origin}: an EC key without a named curve"),
    }
    SigningKey::from_pkcs8_der(der)
        .map_err(|_| anyhow::anyhow!("{origin}: the P-256 private key is malformed"))
}

fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_string(),
        "1.3.101.112" => "Ed25519".to_string(),
        "1.3.101.113" => "Ed448".to_string(),
        other => format!("algorithm {other}"),
    }
}

#[derive(Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Deserialize)]
struct Kdf {
    name: String,
    params: Option<ScryptParams>,
    #[serde(default)]
    salt: String,
}

#[derive(Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Deserialize)]
struct Cipher {
    name: String,
    #[serde(default)]
    nonce: String,
}

/// Opens cosign's encrypted key body (the JSON of the PEM) with `password`: the PKCS#8 DER.
fn decrypt(body: &[u8], password: &[u8], origin: &str) -> Result<Zeroizing<Vec<u8>>> {
    let enc: EncryptedKey = serde_json::from_slice(body).with_context(|| {
        format!("{origin}: the encrypted key is not cosign's JSON (kdf, cipher, ciphertext)")
    })?;
    if enc.kdf.name != "scrypt" {
        bail!(
            "{origin}: key derivation `{}` is not supported (only scrypt)",
            enc.kdf.name
        );
    }
    if enc.cipher.name != "nacl/secretbox" {
        bail!(
            "{origin}: cipher `{}` is not supported (only nacl/secretbox)",
            enc.cipher.name
        );
    }
    let Some(sp) = enc.kdf.params else {
        bail!("{origin}: the scrypt parameters (kdf.params) are missing");
    };
    let b64 = |field: &str, value: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| anyhow::anyhow!("{origin}: {field} is not base64"))
    };
    let salt = b64("kdf.salt", &enc.kdf.salt)?;
    let nonce = b64("cipher.nonce", &enc.cipher.nonce)?;
    let ciphertext = b64("ciphertext", &enc.ciphertext)?;
    if nonce.len() != 24 {
        bail!(
            "{origin}: the secretbox nonce is {} bytes, not 24",
            nonce.len()
        );
    }
    let params = scrypt_params(&sp)
        .with_context(|| format!("{origin}: scrypt N={}, r={}, p={}", sp.n, sp.r, sp.p))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, &salt, &params, key.as_mut())
        .map_err(|_| anyhow::anyhow!("{origin}: scrypt failed"))?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_ref()));
    cipher
        .decrypt(Nonce::from_slice(&nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| {
            anyhow::anyhow!(
                "wrong password ({PASSWORD_ENV}) for {origin}, or the encrypted key was altered"
            )
        })
}

/// scrypt parameters from the file, refused when they are not scrypt's or would need more
/// than [`MAX_SCRYPT_MEMORY`].
fn scrypt_params(sp: &ScryptParams) -> Result<scrypt::Params> {
    if sp.n < 2 || !sp.n.is_power_of_two() {
        bail!("N must be a power of two above 1");
    }
    if sp.r == 0 || sp.p == 0 || sp.p > MAX_SCRYPT_P {
        bail!("r must be positive and p within 1..={MAX_SCRYPT_P}");
    }
    let memory = 128u64.saturating_mul(sp.r.into()).saturating_mul(sp.n);
    if memory > MAX_SCRYPT_MEMORY {
        bail!(
            "would need {} MiB, more than the {} MiB allowed",
            memory >> 20,
            MAX_SCRYPT_MEMORY >> 20
        );
    }
    let log_n = sp.n.trailing_zeros() as u8;
    scrypt::Params::new(log_n, sp.r, sp.p, 32)
        .map_err(|e| anyhow::anyhow!("invalid scrypt parameters: {e}"))
}

#[cfg(test)]
#[path = "cosign_key_tests.rs"]
mod tests;
