//! Tests against real server data (tests/fixtures/simplestreams, see its README) and against
//! documents generated here for the cases the real files do not cover.
//!
//! - `real_data`: the images.linuxcontainers.org and Ubuntu products files as published;
//! - `generated`: other server generations, hostile items, index.json shapes;
//! - `legacy`: the legacy `meta/1.0/index-system`.

mod generated;
mod legacy;
mod real_data;

use super::*;

const LXC_IMAGES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/simplestreams/linuxcontainers-images-2023-04.json"
));
const UBUNTU_MINIMAL: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/simplestreams/ubuntu-minimal-2023.json"
));
const LEGACY_INDEX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/simplestreams/lxc-index-system-2024-09.txt"
));

fn alias(s: &str) -> Alias {
    parse_alias(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn lxc() -> Products {
    parse_products(LXC_IMAGES).expect("the real images.linuxcontainers.org products file parses")
}
