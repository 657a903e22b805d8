// TEMP STUB (not committed): replaced by the openpgp branch.
use std::path::{Path, PathBuf};
pub struct Cert;
pub struct TrustStore;
impl TrustStore {
    pub fn add_cert(&mut self, _c: Cert, _o: &str, _p: bool) {}
}
pub fn lxc_images_cert() -> Cert {
    Cert
}
pub struct SignatureCheck {
    pub primary_fingerprint: String,
    pub signing_key_fingerprint: String,
    pub user_ids: Vec<String>,
    pub origin: String,
    pub sha1_self_signature_accepted: bool,
}
pub fn verify_detached<R: std::io::Read + Send + Sync>(
    _s: &TrustStore,
    _d: R,
    _sig: &[u8],
) -> anyhow::Result<SignatureCheck> {
    unimplemented!()
}
pub fn load_trust_store(_k: &[PathBuf], _d: &Path, _i: &[PathBuf]) -> anyhow::Result<TrustStore> {
    Ok(TrustStore)
}
pub mod keys {
    use std::path::{Path, PathBuf};
    #[derive(serde::Serialize)]
    pub struct Row {
        pub fingerprint: String,
        pub user_ids: Vec<String>,
        pub origin: String,
    }
    pub fn add_to_dir(_d: &Path, _f: &Path) -> anyhow::Result<Vec<String>> {
        unimplemented!()
    }
    pub fn list(_s: &super::TrustStore) -> Vec<Row> {
        vec![]
    }
    pub fn remove_from_dir(_d: &Path, _f: &str) -> anyhow::Result<PathBuf> {
        unimplemented!()
    }
}
