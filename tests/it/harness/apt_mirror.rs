//! The Debian mirror this machine's apt uses, for tests that run debootstrap: the first `deb`
//! source (one-line `.list` or deb822 `.sources`) for the suite, security archives skipped.
//! `None` when apt names none, and debootstrap then uses its own default.

use std::path::{Path, PathBuf};

/// The mirror for `suite` from `/etc/apt/sources.list` and `/etc/apt/sources.list.d/`.
pub fn for_suite(suite: &str) -> Option<String> {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| in_file(f, suite))
}

fn in_file(path: &Path, suite: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = path.to_string_lossy();
    if name.ends_with(".sources") {
        from_deb822(&text, suite)
    } else if name.ends_with(".list") {
        from_one_line(&text, suite)
    } else {
        None
    }
}

fn usable(uri: &str) -> Option<String> {
    (!uri.contains("security")).then(|| uri.trim_end_matches('/').to_string())
}

/// `deb [options] URI SUITE COMPONENTS…`
fn from_one_line(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next()? == suite).then(|| usable(uri)).flatten()
    })
}

/// Paragraphs of `Types:`, `URIs:`, `Suites:`, `Enabled:`.
fn from_deb822(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|para| {
        let field = |key: &str| {
            para.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(key)
                        .then(|| v.trim().to_string())
                })
        };
        let deb = field("Types")?.split_whitespace().any(|t| t == "deb");
        let enabled = field("Enabled").is_none_or(|e| !e.eq_ignore_ascii_case("no"));
        let suites = field("Suites")?;
        if !deb || !enabled || !suites.split_whitespace().any(|s| s == suite) {
            return None;
        }
        field("URIs")?.split_whitespace().find_map(usable)
    })
}

#[test]
fn apt_sources_give_the_suites_main_archive() {
    let deb822 = "Types: deb\n# a comment: with a colon\nURIs: http://mirror.test/debian/\n\
                  Suites: bookworm bookworm-updates\nComponents: main\n\n\
                  Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n";
    assert_eq!(
        from_deb822(deb822, "bookworm").as_deref(),
        Some("http://mirror.test/debian")
    );
    assert_eq!(from_deb822(deb822, "trixie"), None);
    let off = "Types: deb\nURIs: http://off.test/debian\nSuites: bookworm\nEnabled: no\n";
    assert_eq!(from_deb822(off, "bookworm"), None);
    let list = "# deb http://old.test/debian bookworm main\n\
                deb [arch=amd64 signed-by=/k.gpg] http://m.test/debian bookworm main\n";
    assert_eq!(
        from_one_line(list, "bookworm").as_deref(),
        Some("http://m.test/debian")
    );
    assert_eq!(
        from_one_line(
            "deb http://m.test/debian-security bookworm-security main\n",
            "bookworm"
        ),
        None
    );
}
