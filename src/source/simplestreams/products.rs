//! The two simplestreams documents: `streams/v1/index.json` (which products file to read) and
//! the products file itself (`streams/v1/images.json` on images.linuxcontainers.org).
//!
//! Parsing is deliberately tolerant: unknown fields are ignored and item fields are kept as the
//! server wrote them, because one odd item (a new ftype, a delta without a size) must not make
//! every other image unreachable. Strict checks happen in [`ProductItem::to_item`], only for the
//! items that are actually going to be downloaded.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::digest::Digest;

use super::alias::ImageVersion;

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    #[error("simplestreams {what} is not valid JSON of the expected shape: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("simplestreams {what} has format {found:?}, expected {expected:?}")]
    Format {
        what: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "simplestreams index has no entry with datatype \"image-downloads\" (entries: {})",
        list_or_none(.entries)
    )]
    NoImageDownloads { entries: Vec<String> },
    #[error(
        "simplestreams index has several \"image-downloads\" entries and none is called \
         \"images\": {}",
        .entries.join(", ")
    )]
    AmbiguousImageDownloads { entries: Vec<String> },
    #[error("simplestreams index entry {entry:?}: {source}")]
    IndexPath {
        entry: String,
        #[source]
        source: UnsafePath,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// `streams/v1/index.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamIndex {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub index: BTreeMap<String, IndexEntry>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IndexEntry {
    #[serde(default)]
    pub datatype: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub format: Option<String>,
    /// Product ids the entry's file holds; absent on some servers.
    #[serde(default)]
    pub products: Vec<String>,
}

pub fn parse_index(json: &str) -> Result<StreamIndex, StreamsError> {
    let index: StreamIndex = serde_json::from_str(json).map_err(|source| StreamsError::Json {
        what: "index (streams/v1/index.json)",
        source,
    })?;
    check_format("index", index.format.as_deref(), "index:1.0")?;
    Ok(index)
}

/// The products file to read next, relative to the server root: the `path` of the entry with
/// datatype `image-downloads`. When there are several (Ubuntu servers list mirrors and clouds
/// side by side) the one keyed `images` wins, as on images.linuxcontainers.org; otherwise the
/// choice would be a guess, so it is an error that lists them.
pub fn products_path(index: &StreamIndex) -> Result<String, StreamsError> {
    let downloads: Vec<(&String, &IndexEntry)> = index
        .index
        .iter()
        .filter(|(_, e)| e.datatype == "image-downloads")
        .collect();
    let (key, entry) = match downloads.as_slice() {
        [] => {
            return Err(StreamsError::NoImageDownloads {
                entries: index
                    .index
                    .iter()
                    .map(|(k, e)| format!("{k} ({})", e.datatype))
                    .collect(),
            });
        }
        [one] => *one,
        many => match many.iter().find(|(k, _)| k.as_str() == "images") {
            Some(found) => *found,
            None => {
                return Err(StreamsError::AmbiguousImageDownloads {
                    entries: many.iter().map(|(k, _)| k.to_string()).collect(),
                });
            }
        },
    };
    check_relative_path(&entry.path).map_err(|source| StreamsError::IndexPath {
        entry: key.clone(),
        source,
    })?;
    Ok(entry.path.clone())
}

/// A products file (`streams/v1/images.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Products {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub content_id: Option<String>,
    /// Keyed by product id, e.g. `debian:bookworm:amd64:cloud`.
    #[serde(default)]
    pub products: BTreeMap<String, Product>,
}

pub fn parse_products(json: &str) -> Result<Products, StreamsError> {
    let products: Products = serde_json::from_str(json).map_err(|source| StreamsError::Json {
        what: "products file",
        source,
    })?;
    check_format("products file", products.format.as_deref(), "products:1.0")?;
    Ok(products)
}

fn check_format(
    what: &'static str,
    found: Option<&str>,
    expected: &'static str,
) -> Result<(), StreamsError> {
    match found {
        Some(f) if f != expected => Err(StreamsError::Format {
            what,
            found: f.to_string(),
            expected,
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// The server's comma-separated `aliases`, split and trimmed; empty when absent.
    #[serde(default, deserialize_with = "comma_list")]
    pub aliases: Vec<String>,
    /// As published: `Debian` on images.linuxcontainers.org, `ubuntu` on Ubuntu's servers.
    #[serde(default)]
    pub os: String,
    /// Codename (`bookworm`) or number (`8`), depending on the distribution.
    #[serde(default)]
    pub release: String,
    /// Sometimes the number where `release` is a codename (`12` for bookworm), sometimes
    /// decorated (`16.04 LTS`).
    #[serde(default)]
    pub release_title: Option<String>,
    /// Ubuntu's servers have no variant: such products are the `default` variant.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// As published; compare only through [`crate::source::arch::normalise_arch`].
    #[serde(default)]
    pub arch: String,
    /// Ubuntu's numeric release (`16.04`) when `release` is the codename.
    #[serde(default)]
    pub version: Option<String>,
    /// Keyed by build version (`20230424_07:54`, or `20180705` on Ubuntu's servers).
    #[serde(default)]
    pub versions: BTreeMap<String, ProductVersion>,
}

fn default_variant() -> String {
    "default".to_string()
}

fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    Ok(s.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect())
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductVersion {
    /// Keyed by a name that differs between server generations (`root.tar.xz` vs
    /// `rootfs.tar.xz`); only `ftype` says what an item is.
    #[serde(default)]
    pub items: BTreeMap<String, ProductItem>,
}

/// One downloadable file, as published.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductItem {
    #[serde(default)]
    pub ftype: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// On a metadata item: sha256 of the metadata tarball followed by the squashfs or, for
    /// `combined_rootxz_sha256`, by `rootfs.tar.xz`. The latter is the LXD/Incus fingerprint of
    /// a split image.
    #[serde(default)]
    pub combined_sha256: Option<String>,
    #[serde(default)]
    pub combined_rootxz_sha256: Option<String>,
}

/// The ftype of the rootfs tarball, the only thing nspawn can use.
pub const FTYPE_ROOTFS: &str = "root.tar.xz";
/// The ftypes of the LXD/Incus metadata tarball, most preferred first.
pub const FTYPES_METADATA: [&str; 2] = ["incus.tar.xz", "lxd.tar.xz"];

impl ProductVersion {
    /// The rootfs item, found by ftype. Should a server ever list two, the first by key is
    /// taken so that the choice is at least stable.
    pub fn rootfs(&self) -> Option<(&str, &ProductItem)> {
        self.items
            .iter()
            .find(|(_, i)| i.ftype == FTYPE_ROOTFS)
            .map(|(k, i)| (k.as_str(), i))
    }

    /// The metadata item, found by ftype (`incus.tar.xz` preferred over `lxd.tar.xz`).
    pub fn metadata(&self) -> Option<(&str, &ProductItem)> {
        FTYPES_METADATA.iter().find_map(|ftype| {
            self.items
                .iter()
                .find(|(_, i)| i.ftype == *ftype)
                .map(|(k, i)| (k.as_str(), i))
        })
    }
}

impl Product {
    /// Build versions that hold a rootfs item, newest first. Keys that are not valid build
    /// versions are left out: ordering them would be a guess, and a pin can still name them.
    pub fn rootfs_versions(&self) -> Vec<(&str, &ProductVersion)> {
        let mut v: Vec<(ImageVersion, &str, &ProductVersion)> = self
            .versions
            .iter()
            .filter(|(_, pv)| pv.rootfs().is_some())
            .filter_map(|(k, pv)| ImageVersion::parse(k).ok().map(|iv| (iv, k.as_str(), pv)))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0));
        v.into_iter().map(|(_, k, pv)| (k, pv)).collect()
    }
}

/// An item ready to download: its digest and size are known and its path is safe to join to
/// the server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The item's key in the products file (differs between server generations).
    pub key: String,
    pub ftype: String,
    /// Relative to the server root; checked by [`check_relative_path`].
    pub path: String,
    pub sha256: Digest,
    pub size: u64,
    /// See [`ProductItem::combined_rootxz_sha256`].
    pub combined_rootxz_sha256: Option<Digest>,
    pub combined_sha256: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidItem {
    #[error("has no sha256")]
    NoSha256,
    #[error("{field} {value:?} is not 64 hex digits")]
    BadDigest { field: &'static str, value: String },
    #[error("has no size")]
    NoSize,
    #[error("size is 0")]
    ZeroSize,
    #[error("{0}")]
    Path(#[from] UnsafePath),
}

impl ProductItem {
    /// Validates everything a download depends on. `key` is the item's key in its version.
    pub fn to_item(&self, key: &str) -> Result<Item, InvalidItem> {
        let digest = |field: &'static str, v: &str| {
            Digest::from_hex(v).map_err(|_| InvalidItem::BadDigest {
                field,
                value: v.to_string(),
            })
        };
        let sha256 = digest(
            "sha256",
            self.sha256.as_deref().ok_or(InvalidItem::NoSha256)?,
        )?;
        let size = self.size.ok_or(InvalidItem::NoSize)?;
        if size == 0 {
            return Err(InvalidItem::ZeroSize);
        }
        check_relative_path(&self.path)?;
        let optional =
            |field, v: &Option<String>| v.as_deref().map(|s| digest(field, s)).transpose();
        Ok(Item {
            key: key.to_string(),
            ftype: self.ftype.clone(),
            path: self.path.clone(),
            sha256,
            size,
            combined_rootxz_sha256: optional(
                "combined_rootxz_sha256",
                &self.combined_rootxz_sha256,
            )?,
            combined_sha256: optional("combined_sha256", &self.combined_sha256)?,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("path {path:?} {reason}")]
pub struct UnsafePath {
    pub path: String,
    pub reason: &'static str,
}

/// A path from the server must stay a plain relative path under the server root: no scheme or
/// host (`https://elsewhere/`, `//host/`), no `..` that would climb out of the base URL's
/// directory, nothing a URL parser would read as a query or fragment. `:` is allowed (build
/// versions contain it) except in the first component, where `x:y` would parse as a scheme.
/// The digest protects the bytes either way; this keeps requests on the server the user named.
pub fn check_relative_path(path: &str) -> Result<(), UnsafePath> {
    let bad = |reason| {
        Err(UnsafePath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') {
        return bad("is absolute (must be relative to the server root)");
    }
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '?' | '#' | '%'))
    {
        return bad("contains a control character, '\\', '?', '#' or '%'");
    }
    for (n, component) in path.split('/').enumerate() {
        if component.is_empty() || component == "." || component == ".." {
            return bad("has an empty, '.' or '..' component");
        }
        if n == 0 && component.contains(':') {
            return bad("starts with a URL scheme");
        }
    }
    Ok(())
}
