//! LXC/Incus image servers, the pure part: parsing what a server publishes and choosing the
//! build to pull. No network and no disk here; the fetching shell reads the documents, hands
//! their text to these functions and downloads what [`choose`] or [`choose_legacy`] names.
//!
//! Two server generations exist:
//! - simplestreams: `streams/v1/index.json` → [`products_path`] → the products file →
//!   [`parse_products`] → [`choose`]. Items carry sha256 and size, so the products file is what
//!   the downloaded bytes are verified against. Item keys differ between generations
//!   (`root.tar.xz`/`rootfs.tar.xz`, `lxd.tar.xz`/`incus.tar.xz`), so items are found by `ftype`.
//! - the legacy index `meta/1.0/index-system` ([`parse_legacy_index`], [`choose_legacy`]):
//!   no digests; verification must come from the signed `SHA256SUMS` or `.asc` files.
//!
//! What could go wrong, and what this module does about it:
//! - the newest build is still being uploaded and lacks its rootfs: builds without a
//!   `root.tar.xz` item are never chosen unless pinned, and then the error says so;
//! - a product path points elsewhere (`https://…`, `../`): items are checked by
//!   [`check_relative_path`] before anything downloads them;
//! - architecture spellings differ (`x86_64` vs `amd64`): every comparison goes through
//!   [`crate::source::arch::normalise_arch`].

mod alias;
mod choose;
mod legacy;
mod listing;
mod products;

#[cfg(test)]
mod tests;

pub use alias::{
    Alias, AliasError, ImageVersion, VersionError, compare_versions, default_machine_name,
    parse_alias,
};
pub use choose::{ChooseError, ImageChoice, choose};
pub use legacy::{LegacyChoice, LegacyEntry, LegacyIndexError, choose_legacy, parse_legacy_index};
pub use listing::{RemoteImage, list_remote, list_remote_legacy};
pub use products::{
    FTYPE_ROOTFS, FTYPES_METADATA, IndexEntry, InvalidItem, Item, Product, ProductItem,
    ProductVersion, Products, StreamIndex, StreamsError, UnsafePath, check_relative_path,
    parse_index, parse_products, products_path,
};
