//! A directory of files next to an image: on an HTTP server or on the local disk. Checksum
//! files, signatures and `.nspawn` files are looked up as siblings of the image.

use std::path::PathBuf;

use anyhow::{Context, Result};
use url::Url;

use crate::transport::http::{Fetched, Http, Validators};
use crate::transport::redact_url;

#[derive(Clone)]
pub enum Site {
    Http { base: Url, http: Http },
    Local { dir: PathBuf },
}

impl Site {
    /// Where `name` lives, for messages and records.
    pub fn location(&self, name: &str) -> String {
        match self {
            Site::Http { base, .. } => base
                .join(name)
                .map(|u| redact_url(&u))
                .unwrap_or_else(|_| name.to_string()),
            Site::Local { dir } => dir.join(name).display().to_string(),
        }
    }

    pub fn url(&self, name: &str) -> Result<Url> {
        match self {
            Site::Http { base, .. } => base
                .join(name)
                .with_context(|| format!("joining `{name}` to {}", redact_url(base))),
            Site::Local { dir } => Url::from_file_path(dir.join(name))
                .map_err(|_| anyhow::anyhow!("{} is not an absolute path", dir.display())),
        }
    }

    /// Fetches a small sibling file; `Ok(None)` when it does not exist.
    pub async fn get_small(&self, name: &str, limit: u64) -> Result<Option<Fetched>> {
        match self {
            Site::Http { http, .. } => http.get_small(&self.url(name)?, limit).await,
            Site::Local { dir } => {
                let path = dir.join(name);
                if !path.exists() {
                    return Ok(None);
                }
                let bytes = crate::atomic::read_limited(&path, limit)?;
                Ok(Some(Fetched {
                    bytes,
                    validators: Validators::default(),
                }))
            }
        }
    }

    /// Whether the file `name` is there; `None` when the server does not say.
    pub async fn exists(&self, name: &str) -> Option<bool> {
        match self {
            Site::Http { http, .. } => http.exists(&self.url(name).ok()?).await,
            Site::Local { dir } => Some(dir.join(name).exists()),
        }
    }
}
