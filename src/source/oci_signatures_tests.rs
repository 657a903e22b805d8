//! cosign signatures attached as OCI 1.1 referrers. Debian's docker-registry (distribution 2.8)
//! has no referrers API, so a small scripted registry on 127.0.0.1 serves one: the referrers
//! index, the signature manifest (by digest only: no `.sig` tag exists) and its payload.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;

use super::*;
use crate::oci::media;

type Routes = HashMap<String, (String, Vec<u8>)>;

/// Serves the routes `routes_for(port)` builds (path → (content type, body)); anything else is
/// a 404. Records the paths asked for.
fn scripted_registry(routes_for: impl FnOnce(u16) -> Routes) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let routes = routes_for(port);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let text = crate::transport::test_server::read_head(&mut conn).unwrap_or_default();
            let Some(path) = text.lines().next().and_then(|l| l.split(' ').nth(1)) else {
                continue;
            };
            log.lock().unwrap().push(path.to_string());
            let (status, ctype, body) = match routes.get(path) {
                Some((t, b)) => ("200 OK", t.clone(), b.clone()),
                None => ("404 Not Found", "text/plain".to_string(), Vec::new()),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    (port, seen)
}

#[test]
fn cosign_signatures_are_found_through_oci_referrers() {
    // The image whose manifest the signature vouches for (never fetched here).
    let image_digest = Digest::of(b"the image manifest");
    let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
    let other = SigningKey::from_slice(&[9u8; 32]).unwrap();

    let build = |port: u16, key: &SigningKey| {
        let payload = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": format!("127.0.0.1:{port}/team/app")},
                "image": {"docker-manifest-digest": image_digest.to_string()},
                "type": COSIGN_TYPE,
            },
            "optional": null,
        })
        .to_string()
        .into_bytes();
        let sig: Signature = key.sign(&payload);
        let sig_b64 = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        let payload_digest = Digest::of(&payload);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": COSIGN_ARTIFACT_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::of(b"{}").to_string(), "size": 2},
            "layers": [{
                "mediaType": SIMPLESIGNING_MEDIA_TYPE,
                "digest": payload_digest.to_string(),
                "size": payload.len(),
                "annotations": {SIGNATURE_ANNOTATION: sig_b64},
            }],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": image_digest.to_string(), "size": 18},
        })
        .to_string()
        .into_bytes();
        let manifest_digest = Digest::of(&manifest);
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                // An unrelated referrer (an SBOM) is skipped.
                {"mediaType": media::OCI_MANIFEST, "digest": Digest::of(b"sbom").to_string(), "size": 4, "artifactType": "application/spdx+json"},
                {"mediaType": media::OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len(), "artifactType": COSIGN_ARTIFACT_TYPE},
            ],
        })
        .to_string()
        .into_bytes();
        let mut routes = HashMap::new();
        routes.insert(
            format!("/v2/team/app/referrers/{image_digest}"),
            (media::OCI_INDEX.to_string(), index),
        );
        routes.insert(
            format!("/v2/team/app/manifests/{manifest_digest}"),
            (media::OCI_MANIFEST.to_string(), manifest),
        );
        routes.insert(
            format!("/v2/team/app/blobs/{payload_digest}"),
            ("application/octet-stream".to_string(), payload),
        );
        routes
    };

    let dir = tempfile::tempdir().unwrap();
    let write_key = |name: &str, key: &SigningKey| {
        let pem = key
            .verifying_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        let path = dir.path().join(name);
        fs_err::write(&path, pem).unwrap();
        path
    };
    let good_key = write_key("good.pub", &signer);
    let wrong_key = write_key("wrong.pub", &other);

    let run = |key: &std::path::Path, signed_by: &SigningKey| {
        let (port, seen) = scripted_registry(|port| build(port, signed_by));
        let reference =
            ImageReference::parse(&format!("127.0.0.1:{port}/team/app@{image_digest}")).unwrap();
        let registry = Registry::new(&reference, None, false).unwrap();
        let required = vec![RequiredKey {
            kind: SignatureKind::Cosign,
            path: key.to_path_buf(),
            why: "--cosign-key".into(),
            keyless: None,
        }];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut verification = Verification::default();
        let result = rt
            .block_on(verify_cosign(
                &registry,
                &reference,
                &image_digest,
                &required,
                &mut verification,
            ))
            .map(|()| verification);
        let seen = seen.lock().unwrap().clone();
        (result, seen)
    };

    // Good: found through the referrers API although there is no `.sig` tag.
    let (result, seen) = run(&good_key, &signer);
    let verification = result.unwrap();
    let source = verification.signature_source.clone().unwrap_or_default();
    assert!(source.contains("referrer sha256:"), "{verification:?}");
    assert!(verification.key_fingerprint.is_some(), "{verification:?}");
    assert!(seen.iter().any(|p| p.contains("/referrers/")), "{seen:?}");
    assert!(
        seen.iter().any(|p| p.ends_with(".sig")),
        "the tag was asked for too: {seen:?}"
    );
    assert!(
        !seen.iter().any(|p| p.contains(&Digest::of(b"sbom").hex())),
        "an SBOM referrer was fetched: {seen:?}"
    );

    // The wrong key finds the referrer but no signature it made.
    let (result, _) = run(&wrong_key, &signer);
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("no cosign signature"), "{err}");

    // A signature by another key fails for the good key.
    let (result, _) = run(&good_key, &other);
    assert!(result.is_err());
}
