#!/usr/bin/env python3
"""A private, offline Sigstore deployment for integration tests.

It stands in for the three public services a keyless signature depends on:

* Fulcio: a root CA and an intermediate CA that issue short-lived leaf certificates
  naming an e-mail identity (SAN) and the OIDC issuer that vouched for it (Fulcio's
  private extensions);
* Rekor (v1): a transparency log whose key signs entry timestamps (the SET) and tree
  checkpoints, with RFC 6962 Merkle inclusion proofs;
* the TUF-distributed trusted_root.json that names both.

Subcommands (all results are files; errors exit non-zero with a message):

  init DIR [--identity EMAIL] [--issuer URL]
  legacy DIR PAYLOAD OUT.json [--as-bundle OUT2.json] [variants]
  bundle DIR OUT.json (--file F | --digest sha256:HEX) [--kind message|dsse]
         [--version 0.1|0.2|0.3] [--predicate-type URI] [--subject-name NAME] [variants]

`legacy` writes {"signature", "certificate", "chain", "bundle"} (the values of cosign's
dev.cosignproject.cosign/signature and dev.sigstore.cosign/{certificate,chain,bundle}
annotations, repeated under "annotations" by their full names); `--as-bundle` adds the
v0.1 bundle src/verify/sigstore_legacy.rs makes of them.  `bundle` writes a bundle
(default v0.3; message signature for --file, DSSE in-toto statement for --digest).

Variants (for negative tests): --tamper-set, --outside-validity, --other-ca,
--identity OTHER.  Only the Python standard library and `cryptography` are used
(tested with 38.x and 48.x).
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# Fulcio's OIDC-issuer extensions: .1.1 holds the issuer as raw UTF-8 bytes (the
# original, deprecated form), .1.8 holds it as a DER UTF8String (the current form).
FULCIO_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
FULCIO_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")

TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
BUNDLE_MEDIA_TYPES = {
    "0.1": "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "0.2": "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "0.3": "application/vnd.dev.sigstore.bundle.v0.3+json",
}
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

REKOR_NAME = "rekor.example.test"  # the signer name on checkpoint signature lines
LEAF_LIFETIME = datetime.timedelta(minutes=10)  # Fulcio certificates live 10 minutes


class Failure(Exception):
    """An error reported to the caller as a one-line message."""


# ---------------------------------------------------------------------------
# Small encoders
# ---------------------------------------------------------------------------

def b64(data):
    return base64.b64encode(data).decode("ascii")


def canonical_json(value):
    """RFC 8785-style JSON as Rekor and the SET verifier use it: sorted keys, no
    whitespace, UTF-8 (our values are ASCII strings and integers, so this is exact)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def der_utf8_string(text):
    """DER encoding of a UTF8String (tag 0x0C, definite length)."""
    raw = text.encode("utf-8")
    n = len(raw)
    if n < 0x80:
        length = bytes([n])
    else:
        octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return b"\x0c" + length + raw


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def rfc3339(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spki_der(public_key):
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def cert_der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def validity(cert):
    """(notBefore, notAfter) as aware UTC datetimes, on cryptography 38 and 42+."""
    utc = datetime.timezone.utc
    if hasattr(cert, "not_valid_before_utc"):
        return cert.not_valid_before_utc, cert.not_valid_after_utc
    return cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)


def write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def write_key(path, key):
    write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(path, 0o600)


def read_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def read_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


# ---------------------------------------------------------------------------
# Fulcio: the CA hierarchy and its leaf certificates
# ---------------------------------------------------------------------------

def key_usage(digital_signature=False, cert_sign=False):
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False)


def make_ca(label, now):
    """A self-signed P-384 root and a P-384 intermediate under it, shaped like
    Fulcio's public `sigstore` / `sigstore-intermediate` pair (CA:true, keyCertSign,
    the intermediate limited to path length 0 and to code signing).  The EKU on the
    intermediate matters: webpki, as sigstore-verify calls it, requires codeSigning
    on every certificate of the path that is not itself a trust anchor."""
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, label + ".test")
    root_key = ec.generate_private_key(ec.SECP384R1())
    root_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, label)])
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (x509.CertificateBuilder()
            .subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(key_usage(cert_sign=True), critical=True)
            .add_extension(root_ski, critical=False)
            .sign(root_key, hashes.SHA384()))

    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter_name = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, label + "-intermediate")])
    inter = (x509.CertificateBuilder()
             .subject_name(inter_name).issuer_name(root_name)
             .public_key(inter_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(key_usage(cert_sign=True), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()),
                            critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
                            critical=False)
             .sign(root_key, hashes.SHA384()))
    return {"root": root, "root_key": root_key, "inter": inter, "inter_key": inter_key}


def issue_leaf(inter, inter_key, leaf_public_key, email, issuer, start, end):
    """A Fulcio-style code-signing certificate: empty subject, the identity only in
    a critical SAN rfc822Name, digitalSignature, EKU codeSigning, and the OIDC issuer
    in both Fulcio extensions."""
    inter_ski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([])).issuer_name(inter.subject)
            .public_key(leaf_public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(inter_ski),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
            .add_extension(x509.UnrecognizedExtension(FULCIO_ISSUER_V1, issuer.encode("utf-8")),
                           critical=False)
            .add_extension(x509.UnrecognizedExtension(FULCIO_ISSUER_V2, der_utf8_string(issuer)),
                           critical=False)
            .sign(inter_key, hashes.SHA384()))


# ---------------------------------------------------------------------------
# init: the deployment on disk
# ---------------------------------------------------------------------------

def cmd_init(args):
    d = args.dir
    os.makedirs(d, exist_ok=True)
    now = utc_now()
    ca = make_ca("private-sigstore", now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_leaf(ca["inter"], ca["inter_key"], leaf_key.public_key(), args.identity,
                      args.issuer, now - datetime.timedelta(minutes=1), now + LEAF_LIFETIME)
    rekor_key = ec.generate_private_key(ec.SECP256R1())
    rekor_spki = spki_der(rekor_key.public_key())
    since = rfc3339(now - datetime.timedelta(days=1))

    write(os.path.join(d, "fulcio_root.pem"), cert_pem(ca["root"]))
    write(os.path.join(d, "fulcio_intermediate.pem"), cert_pem(ca["inter"]))
    write(os.path.join(d, "fulcio_chain.pem"), cert_pem(ca["inter"]) + cert_pem(ca["root"]))
    write(os.path.join(d, "leaf.pem"), cert_pem(leaf))
    write(os.path.join(d, "rekor.pub"), rekor_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    write_key(os.path.join(d, "fulcio_root.key"), ca["root_key"])
    write_key(os.path.join(d, "fulcio_intermediate.key"), ca["inter_key"])
    write_key(os.path.join(d, "leaf.key"), leaf_key)
    write_key(os.path.join(d, "rekor.key"), rekor_key)

    # The trusted root as Sigstore's TUF repository ships it: the CA chain
    # (intermediate first) and the log key, whose log ID is sha256(DER SPKI).
    # No CT logs (so the verifier is told not to look for SCTs) and no TSAs.
    root_json = {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [{
            "baseUrl": "https://" + REKOR_NAME,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64(rekor_spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": since}},
            "logId": {"keyId": b64(hashlib.sha256(rekor_spki).digest())},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "private-sigstore.test", "commonName": "private-sigstore"},
            "uri": "https://fulcio.example.test",
            "certChain": {"certificates": [{"rawBytes": b64(cert_der(ca["inter"]))},
                                           {"rawBytes": b64(cert_der(ca["root"]))}]},
            "validFor": {"start": since},
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    }
    write(os.path.join(d, "trusted_root.json"), json.dumps(root_json, indent=2) + "\n")
    state = {
        "identity": args.identity,
        "issuer": args.issuer,
        "created": int(now.timestamp()),
        # Like rekor.sigstore.dev's: a host name and a tree ID.
        "rekor_origin": "%s - %d" % (REKOR_NAME, secrets.randbelow(10 ** 18)),
        "leaf_not_before": int(validity(leaf)[0].timestamp()),
        "leaf_not_after": int(validity(leaf)[1].timestamp()),
    }
    write(os.path.join(d, "state.json"), json.dumps(state, indent=2) + "\n")


class Deployment:
    """What `init` left in DIR, loaded for signing."""

    def __init__(self, d):
        path = os.path.join(d, "state.json")
        if not os.path.isfile(path):
            raise Failure("%s: not a deployment made by `init` (no state.json)" % d)
        with open(path) as f:
            self.state = json.load(f)
        self.root = read_cert(os.path.join(d, "fulcio_root.pem"))
        self.inter = read_cert(os.path.join(d, "fulcio_intermediate.pem"))
        self.inter_key = read_key(os.path.join(d, "fulcio_intermediate.key"))
        self.leaf = read_cert(os.path.join(d, "leaf.pem"))
        self.leaf_key = read_key(os.path.join(d, "leaf.key"))
        self.rekor_key = read_key(os.path.join(d, "rekor.key"))
        self.rekor_spki = spki_der(self.rekor_key.public_key())
        self.log_id = hashlib.sha256(self.rekor_spki).digest()


def choose_signer(dep, args):
    """The leaf key, leaf certificate, issuing chain (intermediate, root) and the
    integrated time to log, after applying the negative-test variants."""
    now = utc_now()
    leaf, leaf_key, chain = dep.leaf, dep.leaf_key, [dep.inter, dep.root]
    identity = args.identity or dep.state["identity"]
    start, end = validity(leaf)
    fresh = args.identity is not None or args.other_ca or args.outside_validity
    if args.outside_validity:
        # A certificate that expired 20 minutes ago, logged 10 minutes ago: the log
        # time is real (not in the future) but after notAfter.
        start, end = now - datetime.timedelta(minutes=30), now - datetime.timedelta(minutes=20)
    elif fresh:
        start, end = now - datetime.timedelta(minutes=1), now + LEAF_LIFETIME
    if fresh:
        inter, inter_key = dep.inter, dep.inter_key
        if args.other_ca:
            # A look-alike Fulcio that no trusted root names.
            other = make_ca("other-sigstore", now)
            inter, inter_key, chain = other["inter"], other["inter_key"], [other["inter"], other["root"]]
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = issue_leaf(inter, inter_key, leaf_key.public_key(), identity,
                          dep.state["issuer"], start, end)
    if args.outside_validity:
        when = int((now - datetime.timedelta(minutes=10)).timestamp())
    else:
        # Logged "now", but never outside the leaf's window: the default leaf may be
        # older than its 10 minutes when a long test signs with it, and verification
        # happens at the logged time, as Sigstore does.
        when = max(int(start.timestamp()) + 1, min(int(now.timestamp()) - 1, int(end.timestamp()) - 1))
    return leaf_key, leaf, chain, when


# ---------------------------------------------------------------------------
# Rekor: entry bodies, the SET, the Merkle tree and the checkpoint
# ---------------------------------------------------------------------------

def hashedrekord_body(digest, signature, leaf):
    """Rekor's hashedrekord v0.0.1 entry, canonicalized as Rekor stores it."""
    return canonical_json({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {"data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                 "signature": {"content": b64(signature),
                               "publicKey": {"content": b64(cert_pem(leaf).encode())}}}})


def dsse_body(envelope, payload, signature, leaf):
    """Rekor's dsse v0.0.1 entry: hashes of the envelope and of the payload, and each
    signature with its verifier (the base64 of the PEM certificate)."""
    return canonical_json({
        "apiVersion": "0.0.1", "kind": "dsse",
        "spec": {"envelopeHash": {"algorithm": "sha256",
                                  "value": hashlib.sha256(canonical_json(envelope)).hexdigest()},
                 "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                 "signatures": [{"signature": b64(signature),
                                 "verifier": b64(cert_pem(leaf).encode())}]}})


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n):
    """The largest power of two smaller than n (RFC 6962, section 2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = split_point(len(leaves))
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def audit_path(index, leaves):
    """The inclusion proof of leaves[index], bottom-up (RFC 6962, section 2.1.1)."""
    if len(leaves) == 1:
        return []
    k = split_point(len(leaves))
    if index < k:
        return audit_path(index, leaves[:k]) + [tree_root(leaves[k:])]
    return audit_path(index - k, leaves[k:]) + [tree_root(leaves[:k])]


def rekor_sign(dep, message):
    return dep.rekor_key.sign(message, ec.ECDSA(hashes.SHA256()))


def log_entry(dep, body, when, with_proof, tamper_set):
    """Log `body` and return (tlog entry in bundle JSON form, SET, log index).

    The SET is the log key's signature over the canonical JSON of body, integrated
    time, log ID (hex) and log index.  The proof comes from a small tree (a few
    entries, the others random) so the audit path is non-trivial; the checkpoint is a
    signed note whose signature line carries the 4-byte key hint sha256(SPKI)[:4]."""
    index = 1 + secrets.randbelow(6)
    size = index + 1 + secrets.randbelow(3)
    promised = {"body": b64(body), "integratedTime": when,
                "logID": dep.log_id.hex(), "logIndex": index}
    if tamper_set:
        promised = dict(promised, logIndex=index + 1)  # vouches for another entry
    set_sig = rekor_sign(dep, canonical_json(promised))
    entry = {
        "logIndex": str(index),
        "logId": {"keyId": b64(dep.log_id)},
        "kindVersion": {"kind": json.loads(body)["kind"], "version": "0.0.1"},
        "integratedTime": str(when),
        "inclusionPromise": {"signedEntryTimestamp": b64(set_sig)},
    }
    if with_proof:
        leaves = [leaf_hash(secrets.token_bytes(64)) for _ in range(size)]
        leaves[index] = leaf_hash(body)
        root = tree_root(leaves)
        note = "%s\n%d\n%s\n" % (dep.state["rekor_origin"], size, b64(root))
        sig = dep.log_id[:4] + rekor_sign(dep, note.encode())
        entry["inclusionProof"] = {
            "logIndex": str(index),
            "rootHash": b64(root),
            "treeSize": str(size),
            "hashes": [b64(h) for h in audit_path(index, leaves)],
            "checkpoint": {"envelope": note + "\n\u2014 %s %s\n" % (REKOR_NAME, b64(sig))},
        }
    entry["canonicalizedBody"] = b64(body)
    return entry, set_sig, index


# ---------------------------------------------------------------------------
# legacy: cosign's `.sig` layer annotations
# ---------------------------------------------------------------------------

def cmd_legacy(args):
    dep = Deployment(args.dir)
    with open(args.payload, "rb") as f:
        payload = f.read()
    leaf_key, leaf, chain, when = choose_signer(dep, args)
    signature = leaf_key.sign(payload, ec.ECDSA(hashes.SHA256()))
    body = hashedrekord_body(hashlib.sha256(payload).digest(), signature, leaf)
    entry, set_sig, index = log_entry(dep, body, when, with_proof=False, tamper_set=args.tamper_set)
    # cosign's `bundle` annotation: Rekor's SET and the payload it signed, as JSON text.
    rekor_bundle = json.dumps({
        "SignedEntryTimestamp": b64(set_sig),
        "Payload": {"body": b64(body), "integratedTime": when, "logIndex": index,
                    "logID": dep.log_id.hex()},
    }, separators=(",", ":"))
    chain_pem = "".join(cert_pem(c) for c in chain)
    out = {"signature": b64(signature), "certificate": cert_pem(leaf), "chain": chain_pem,
           "bundle": rekor_bundle}
    out["annotations"] = {
        "dev.cosignproject.cosign/signature": out["signature"],
        "dev.sigstore.cosign/certificate": out["certificate"],
        "dev.sigstore.cosign/chain": out["chain"],
        "dev.sigstore.cosign/bundle": out["bundle"],
    }
    write(args.out, json.dumps(out, indent=2) + "\n")
    if args.as_bundle:
        # What src/verify/sigstore_legacy.rs legacy_bundle() makes of these
        # annotations: a v0.1 bundle, leaf then chain, the SET and no proof.
        bundle = {
            "mediaType": BUNDLE_MEDIA_TYPES["0.1"],
            "verificationMaterial": {
                "x509CertificateChain": {"certificates": [{"rawBytes": b64(cert_der(c))}
                                                          for c in [leaf] + chain]},
                "tlogEntries": [entry],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256",
                                  "digest": b64(hashlib.sha256(payload).digest())},
                "signature": b64(signature),
            },
        }
        write(args.as_bundle, json.dumps(bundle, indent=2) + "\n")


# ---------------------------------------------------------------------------
# bundle: a Sigstore bundle (message signature or DSSE in-toto attestation)
# ---------------------------------------------------------------------------

def parse_digest(text):
    algo, _, hexpart = text.partition(":")
    try:
        raw = bytes.fromhex(hexpart)
    except ValueError:
        raw = b""
    if algo != "sha256" or len(raw) != 32:
        raise Failure("--digest must be sha256:<64 hex digits>, not %r" % text)
    return raw


def pae(payload_type, payload):
    """DSSE's pre-authentication encoding: what the signature covers."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def cmd_bundle(args):
    dep = Deployment(args.dir)
    if args.file is not None:
        with open(args.file, "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
        name = os.path.basename(args.file)
    else:
        digest = parse_digest(args.digest)
        name = "artifact"
    kind = args.kind or ("message" if args.file is not None else "dsse")
    leaf_key, leaf, chain, when = choose_signer(dep, args)

    if kind == "message":
        # Signed over the artifact's digest (hashedrekord is defined on the digest).
        signature = leaf_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        body = hashedrekord_body(digest, signature, leaf)
        content = ("messageSignature", {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
            "signature": b64(signature)})
    else:
        statement = {
            "_type": STATEMENT_V1,
            "subject": [{"name": args.subject_name or name, "digest": {"sha256": digest.hex()}}],
            "predicateType": args.predicate_type,
            "predicate": {},
        }
        payload = json.dumps(statement, separators=(",", ":")).encode()
        signature = leaf_key.sign(pae(INTOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": b64(payload), "payloadType": INTOTO_PAYLOAD_TYPE,
                    "signatures": [{"sig": b64(signature)}]}
        body = dsse_body(envelope, payload, signature, leaf)
        content = ("dsseEnvelope", envelope)

    entry, _, _ = log_entry(dep, body, when, with_proof=args.version != "0.1",
                            tamper_set=args.tamper_set)
    if args.version == "0.3":
        material = {"certificate": {"rawBytes": b64(cert_der(leaf))}}
    else:
        # As public-good bundles do: the leaf alone, the CA chain is in the trusted root.
        material = {"x509CertificateChain": {"certificates": [{"rawBytes": b64(cert_der(leaf))}]}}
    material["tlogEntries"] = [entry]
    bundle = {"mediaType": BUNDLE_MEDIA_TYPES[args.version], "verificationMaterial": material,
              content[0]: content[1]}
    write(args.out, json.dumps(bundle, indent=2) + "\n")


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def add_variants(p):
    p.add_argument("--tamper-set", action="store_true",
                   help="the SET signs another log index than the entry's")
    p.add_argument("--outside-validity", action="store_true",
                   help="a leaf that expired before the (past) integrated time")
    p.add_argument("--other-ca", action="store_true",
                   help="the leaf is issued by a fresh CA that no trusted root names")
    p.add_argument("--identity", metavar="EMAIL",
                   help="a leaf for another e-mail, issued by the same intermediate")


def main(argv=None):
    parser = argparse.ArgumentParser(description="A private Sigstore (Fulcio + Rekor) for tests.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create the CA, the log key and trusted_root.json in DIR")
    p.add_argument("dir")
    p.add_argument("--identity", default="signer@example.test")
    p.add_argument("--issuer", default="https://issuer.example.test")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("legacy", help="cosign's .sig annotations for a payload")
    p.add_argument("dir")
    p.add_argument("payload")
    p.add_argument("out")
    p.add_argument("--as-bundle", metavar="OUT2.json",
                   help="also the v0.1 bundle legacy_bundle() builds from them")
    add_variants(p)
    p.set_defaults(run=cmd_legacy)

    p = sub.add_parser("bundle", help="a Sigstore bundle for a file or a digest")
    p.add_argument("dir")
    p.add_argument("out")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--file")
    what.add_argument("--digest", metavar="sha256:HEX")
    p.add_argument("--kind", choices=["message", "dsse"],
                   help="default: message for --file, dsse for --digest")
    p.add_argument("--version", choices=sorted(BUNDLE_MEDIA_TYPES), default="0.3")
    p.add_argument("--predicate-type", default=COSIGN_SIGN_PREDICATE)
    p.add_argument("--subject-name", help="the in-toto subject's name (dsse)")
    add_variants(p)
    p.set_defaults(run=cmd_bundle)

    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (Failure, OSError, ValueError) as e:
        print("private_sigstore.py %s: error: %s" % (args.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
