//! Entry points for the fuzz targets in `fuzz/` (libFuzzer through `cargo fuzz`) and for the
//! replay of their corpora in a normal `cargo test` (`replay_tests.rs`). Not an API.
//!
//! Each function takes bytes from outside, as a download or a file on disk would bring them,
//! and runs them through the parser the program uses for them. An `Err` is a good outcome; a
//! panic, an abort, a hang or unbounded memory is a finding. Where a parser has a second
//! reading of the same text (the lossless `.nspawn` editor next to the one systemd's syntax is
//! read with), the two are also checked against each other.

use std::io::Read;

use crate::ini;
use crate::oci::{self, reference};
use crate::source::simplestreams as ss;
use crate::unpack::{self, Root, TreeLimits, UnpackOptions, xz_index};

/// One fuzz target: bytes in, no outcome but the absence of a panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: each has `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("tar", tar),
    ("xz_index", xz_index),
    ("decompress", decompress),
    ("simplestreams", simplestreams),
    ("oci", oci),
    ("containers_policy", containers_policy),
    ("template_toml", template_toml),
    ("yaml", yaml),
    ("nspawn_ini", nspawn_ini),
    ("sha256sums", sha256sums),
];

/// Splits off a selector byte: which of a family of parsers reads the rest.
fn select(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((first, rest)) => (*first, rest),
        None => (0, data),
    }
}

/// The tar entry reader (headers, PAX, GNU long names, sparse maps, hardlinks, symlinks):
/// `data` unpacked into a fresh directory, with bounds small enough for a fuzzer.
pub fn tar(data: &[u8]) {
    let dir = scratch_dir();
    let opts = UnpackOptions {
        preserve_owner: false,
        keep_selinux: false,
        limits: TreeLimits {
            max_bytes: 64 << 20,
            max_entries: 10_000,
            ..TreeLimits::default()
        },
    };
    if let Ok(root) = Root::open(&dir) {
        let _ = unpack::unpack_tar(data, &root, &opts);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory of its own for one run (the process id and a counter: fuzzers run in parallel).
fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let base = std::env::var_os("SANDBOX_FUZZ_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "sandbox-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// The .xz layout reader (stream footers, indexes, padding, several streams), `data` as a
/// whole file, and the index parser on its own.
pub fn xz_index(data: &[u8]) {
    let _ = xz_index::locate_blocks(data.len() as u64, |offset, buf| {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= data.len())
            .ok_or_else(|| std::io::Error::other("read past the end"))?;
        buf.copy_from_slice(&data[start..end]);
        Ok(())
    });
    let _ = xz_index::parse_index(data);
}

/// Compression detection and every decoder behind it, reading at most 16 MiB of output.
pub fn decompress(data: &[u8]) {
    let Ok((_, reader)) = unpack::decompress::decoder(std::io::Cursor::new(data.to_vec())) else {
        return;
    };
    let _ = std::io::copy(&mut reader.take(16 << 20), &mut std::io::sink());
}

/// simplestreams: the stream index, the products document (and choosing and listing from it),
/// LXC's legacy index, and image aliases.
pub fn simplestreams(data: &[u8]) {
    let (which, rest) = select(data);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(index) = ss::parse_index(text) {
                let _ = ss::products_path(&index);
            }
        }
        1 => {
            if let Ok(products) = ss::parse_products(text) {
                let _ = ss::list_remote(&products, None, None);
                if let Ok(alias) = ss::parse_alias("debian/bookworm") {
                    if let Ok(choice) = ss::choose(&products, &alias, "amd64") {
                        let _ = format!("{choice:?}");
                    }
                }
                for product in products.products.values() {
                    for version in product.versions.values() {
                        for (key, item) in &version.items {
                            let _ = item.to_item(key);
                            let _ = ss::check_relative_path(&item.path);
                        }
                    }
                }
            }
        }
        2 => {
            if let Ok(entries) = ss::parse_legacy_index(text) {
                let _ = ss::list_remote_legacy(&entries, None, None);
                if let Ok(alias) = ss::parse_alias("debian/bookworm") {
                    let _ = ss::choose_legacy(&entries, &alias, "amd64");
                }
            }
        }
        _ => {
            if let Ok(alias) = ss::parse_alias(text) {
                let _ = ss::default_machine_name(&alias);
            }
        }
    }
}

/// OCI: references (registry and layout forms), manifests and indexes (with and without a
/// declared media type, and choosing a platform from an index), image configs, platforms.
pub fn oci(data: &[u8]) {
    let (which, rest) = select(data);
    match which % 5 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = reference::OciSource::parse(text);
                if let Ok(r) = reference::ImageReference::parse(text) {
                    let _ = r.api_host();
                    let _ = r.to_string();
                }
            }
        }
        1 | 2 => {
            let declared = (which % 5 == 2).then_some(oci::media::OCI_INDEX);
            if let Ok(parsed) = oci::manifest::parse_manifest(rest, declared) {
                if let oci::manifest::Manifest::Index(index) = &parsed.manifest {
                    let want = oci::platform::PlatformSpec::new("linux", "amd64", None);
                    let _ = oci::image::choose_manifest(index, &want);
                }
            }
        }
        3 => {
            if let Ok(config) = oci::config::ImageConfig::parse(rest) {
                let _ = config.platform();
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = oci::platform::PlatformSpec::parse(text);
            }
        }
    }
}

/// containers `policy.json` (and deciding for an image with it) and `registries.d` YAML.
pub fn containers_policy(data: &[u8]) {
    let (which, rest) = select(data);
    if which % 2 == 0 {
        if let Ok(policy) = crate::verify::policy::Policy::parse(rest) {
            for image in [
                "docker.io/library/debian:12",
                "localhost:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ] {
                if let Ok(r) = reference::ImageReference::parse(image) {
                    let _ = policy.decide(&r);
                }
            }
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        if let Ok(entries) = crate::verify::lookaside::parse_registries_yaml(text) {
            if let Ok(r) = reference::ImageReference::parse("docker.io/library/debian:12") {
                if let Some(url) = crate::verify::lookaside::lookaside_for(&entries, &r) {
                    let _ = crate::verify::lookaside::lookaside_dir(&url);
                }
            }
        }
    }
}

/// A template's `template.toml`.
pub fn template_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::template::manifest::parse(text, "template.toml");
    }
}

/// The YAML reader used for cloud-init seeds: plain documents, user-data, network-config.
pub fn yaml(data: &[u8]) {
    let (which, rest) = select(data);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = match which % 3 {
        0 => crate::template::yaml::parse(text, "fuzz.yaml"),
        1 => crate::template::cloudinit::parse_user_data(text, "user-data"),
        _ => crate::template::cloudinit::parse_network_config(text, "network-config"),
    };
}

/// `.nspawn` files and drop-ins: systemd's syntax as the program reads it, the settings rules,
/// and the lossless editor, which must give back every byte and read the same values.
pub fn nspawn_ini(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let doc = crate::config::ini_edit::Document::parse(text);
    assert_eq!(doc.render(), text, "the editor changed a file it only read");
    if let Ok(assignments) = ini::parse(text, "fuzz.nspawn") {
        let _ = crate::template::nspawn::validate(&assignments, "fuzz.nspawn");
        for a in &assignments {
            let read = doc.values(&a.section, &a.key);
            let expected: Vec<&str> = assignments
                .iter()
                .filter(|b| b.section == a.section && b.key == a.key)
                .map(|b| b.value.as_str())
                .collect();
            assert_eq!(
                read, expected,
                "the editor and the reader disagree on [{}] {}=",
                a.section, a.key
            );
        }
    }
}

/// `SHA256SUMS` files, and looking a file up in one.
pub fn sha256sums(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(entries) = crate::verify::checksums::parse(text) {
        let _ = crate::verify::checksums::lookup(&entries, "rootfs.tar.xz");
    }
}

#[cfg(test)]
mod replay_tests;
