use super::*;
use crate::digest::Digest;
use p256::pkcs8::EncodePrivateKey as _;

/// cosign's encrypted PEM of `der` under `password`, made here with small scrypt parameters
/// (the Python producer in tests/it/cosign_sign.rs writes cosign's own defaults).
fn encrypted_pem(der: &[u8], password: &[u8], label: &str, n: u64) -> String {
    let salt: [u8; 32] = rand::random();
    let nonce: [u8; 24] = rand::random();
    let params = scrypt::Params::new(n.trailing_zeros() as u8, 8, 1, 32).unwrap();
    let mut key = [0u8; 32];
    scrypt::scrypt(password, &salt, &params, &mut key).unwrap();
    let sealed = XSalsa20Poly1305::new(Key::from_slice(&key))
        .encrypt(Nonce::from_slice(&nonce), der)
        .unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let json = serde_json::json!({
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1}, "salt": b64(&salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(&nonce)},
        "ciphertext": b64(&sealed),
    });
    pem::encode_string(label, LineEnding::LF, json.to_string().as_bytes()).unwrap()
}

fn fresh() -> p256::SecretKey {
    p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).unwrap()
}

fn pkcs8(sk: &p256::SecretKey) -> Vec<u8> {
    sk.to_pkcs8_der().unwrap().as_bytes().to_vec()
}

#[test]
fn encrypted_keys_open_with_their_password_only() {
    let sk = fresh();
    let der = pkcs8(&sk);
    for label in ENCRYPTED_KEY_LABELS {
        let pem = encrypted_pem(&der, b"s3cret", label, 1024);
        let key = CosignSigningKey::from_pem(pem.as_bytes(), b"s3cret", "k.key").unwrap();
        let payload = b"{\"critical\":{}}";
        key.public_key()
            .verify(payload, &key.sign(payload))
            .unwrap();
        // The public key is the one of the scalar that went in.
        let expected =
            CosignKey::from_pem(&sk.public_key().to_public_key_pem(LineEnding::LF).unwrap())
                .unwrap();
        assert_eq!(key.public_key().fingerprint, expected.fingerprint);
        expected.verify(payload, &key.sign(payload)).unwrap();

        let e = CosignSigningKey::from_pem(pem.as_bytes(), b"s3cret!", "k.key").unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("wrong password (COSIGN_PASSWORD) for k.key"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret"), "the password leaks: {msg}");
        assert!(CosignSigningKey::from_pem(pem.as_bytes(), b"", "k.key").is_err());
    }
    // An empty password is a password like any other (cosign's default when unset).
    let pem = encrypted_pem(&der, b"", ENCRYPTED_KEY_LABELS[0], 1024);
    CosignSigningKey::from_pem(pem.as_bytes(), b"", "k.key").unwrap();
}

/// Re-encodes the JSON of an encrypted PEM after `edit`.
fn edited(pem_text: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let (label, body) = pem::decode_vec(pem_text.as_bytes()).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    edit(&mut json);
    pem::encode_string(label, LineEnding::LF, json.to_string().as_bytes()).unwrap()
}

#[test]
fn tampered_or_foreign_encrypted_keys_are_refused_by_name() {
    let pem = encrypted_pem(&pkcs8(&fresh()), b"pw", ENCRYPTED_KEY_LABELS[0], 1024);
    let b64 = base64::engine::general_purpose::STANDARD;
    let flip = |field: &'static str| {
        edited(&pem, |j| {
            let ptr = match field {
                "ciphertext" => "/ciphertext",
                "nonce" => "/cipher/nonce",
                _ => "/kdf/salt",
            };
            let v = j.pointer_mut(ptr).unwrap();
            let mut bytes = b64.decode(v.as_str().unwrap()).unwrap();
            bytes[5] ^= 1;
            *v = b64.encode(&bytes).into();
        })
    };
    for field in ["ciphertext", "nonce", "salt"] {
        let e = CosignSigningKey::from_pem(flip(field).as_bytes(), b"pw", "k.key").unwrap_err();
        assert!(
            format!("{e:#}").contains("wrong password"),
            "{field}: {e:#}"
        );
    }
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 5] = [
        ("key derivation `pbkdf2`", |j| {
            j["kdf"]["name"] = "pbkdf2".into()
        }),
        ("cipher `aes-gcm`", |j| {
            j["cipher"]["name"] = "aes-gcm".into()
        }),
        ("power of two", |j| j["kdf"]["params"]["N"] = 1000.into()),
        ("MiB allowed", |j| {
            j["kdf"]["params"]["N"] = (1u64 << 30).into()
        }),
        ("not 24", |j| j["cipher"]["nonce"] = "AAAA".into()),
    ];
    for (expected, edit) in cases {
        let e =
            CosignSigningKey::from_pem(edited(&pem, edit).as_bytes(), b"pw", "k.key").unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(expected) && msg.contains("k.key"), "{msg}");
    }
    let body = pem::encode_string(ENCRYPTED_KEY_LABELS[0], LineEnding::LF, b"{}").unwrap();
    assert!(CosignSigningKey::from_pem(body.as_bytes(), b"pw", "k.key").is_err());
}

#[test]
fn plain_pkcs8_and_sec1_keys_load_and_other_algorithms_are_named() {
    let sk = fresh();
    let pkcs8_pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    let sec1_pem = sk.to_sec1_pem(LineEnding::LF).unwrap();
    let a = CosignSigningKey::from_pem(pkcs8_pem.as_bytes(), b"", "a").unwrap();
    let b = CosignSigningKey::from_pem(sec1_pem.as_bytes(), b"", "b").unwrap();
    assert_eq!(a.public_key().fingerprint, b.public_key().fingerprint);
    // `openssl ecparam -name prime256v1 -genkey` puts the curve's OID in a block of its own
    // before the key.
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        *sec1_pem
    );
    let c = CosignSigningKey::from_pem(with_params.as_bytes(), b"", "c").unwrap();
    assert_eq!(c.public_key().fingerprint, a.public_key().fingerprint);
    let digest = Digest::of(b"payload");
    b.public_key()
        .verify(digest.hex().as_bytes(), &a.sign(digest.hex().as_bytes()))
        .unwrap();
    let public = a.public_key_pem().unwrap();
    assert_eq!(
        CosignKey::from_pem(&public).unwrap().fingerprint,
        a.public_key().fingerprint
    );
    assert!(!format!("{a:?}").contains(&hex::encode(sk.to_bytes())));

    // An Ed25519 PKCS#8 key (RFC 8410's layout): named, not "malformed".
    let mut ed = hex::decode("302e020100300506032b657004220420").unwrap();
    ed.extend_from_slice(&[7u8; 32]);
    let ed_pem = pem::encode_string("PRIVATE KEY", LineEnding::LF, &ed).unwrap();
    let e = CosignSigningKey::from_pem(ed_pem.as_bytes(), b"", "ed.key").unwrap_err();
    assert!(format!("{e:#}").contains("ed.key: a Ed25519 key"), "{e:#}");
    // An encrypted Ed25519 key (cosign import-key-pair can make those) is refused the same.
    let enc = encrypted_pem(&ed, b"pw", ENCRYPTED_KEY_LABELS[0], 1024);
    let e = CosignSigningKey::from_pem(enc.as_bytes(), b"pw", "ed.key").unwrap_err();
    assert!(format!("{e:#}").contains("Ed25519"), "{e:#}");
    let public_pem = sk.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let e = CosignSigningKey::from_pem(public_pem.as_bytes(), b"", "pub.key").unwrap_err();
    assert!(
        format!("{e:#}").contains("`PUBLIC KEY` is not a private key"),
        "{e:#}"
    );
    assert!(CosignSigningKey::from_pem(b"garbage", b"", "g").is_err());
    let pkcs8_encrypted =
        pem::encode_string("ENCRYPTED PRIVATE KEY", LineEnding::LF, b"x").unwrap();
    let e = CosignSigningKey::from_pem(pkcs8_encrypted.as_bytes(), b"", "p8.key").unwrap_err();
    assert!(
        format!("{e:#}").contains("password-protected PKCS#8"),
        "{e:#}"
    );
}

#[test]
fn key_files_are_read_and_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cosign.key");
    let pem = encrypted_pem(&pkcs8(&fresh()), b"pw", ENCRYPTED_KEY_LABELS[0], 1024);
    fs_err::write(&path, &pem).unwrap();
    load_cosign_signing_key(&path, b"pw").unwrap();
    let e = load_cosign_signing_key(&path, b"nope").unwrap_err();
    assert!(
        format!("{e:#}").contains(&path.display().to_string()),
        "{e:#}"
    );
    let missing = dir.path().join("missing.key");
    let e = load_cosign_signing_key(&missing, b"").unwrap_err();
    assert!(format!("{e:#}").contains("missing.key"), "{e:#}");
}

/// A key cosign itself wrote (tests/fixtures/README.md): the format is cosign's, not ours.
const COSIGN_GENERATED: &str =
    include_str!("../../../tests/fixtures/cosign/cosign-generated-hello.key");

#[test]
fn a_key_written_by_cosign_opens_with_its_password() {
    let key =
        CosignSigningKey::from_pem(COSIGN_GENERATED.as_bytes(), b"hello", "cosign.key").unwrap();
    let payload = b"payload";
    key.public_key()
        .verify(payload, &key.sign(payload))
        .unwrap();
    // The public key comes from the scalar inside: its PEM round-trips to the same key.
    let again = CosignKey::from_pem(&key.public_key_pem().unwrap()).unwrap();
    again.verify(payload, &key.sign(payload)).unwrap();
    let e = CosignSigningKey::from_pem(COSIGN_GENERATED.as_bytes(), b"hello ", "cosign.key")
        .unwrap_err();
    assert!(format!("{e:#}").contains("wrong password"), "{e:#}");
}
