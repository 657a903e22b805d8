//! Every file of every fuzz corpus (`fuzz/corpus/<target>/`, seeds and what the fuzzer kept,
//! crashes it found included once fixed) run through its target, so a normal `cargo test`
//! on the stable toolchain catches a regression the fuzzer once found.

use std::path::{Path, PathBuf};

use super::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn every_target_has_a_fuzz_target_file_and_a_seeded_corpus() {
    for (name, _) in TARGETS {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(source.is_file(), "no {}", source.display());
        let files = std::fs::read_dir(corpus_dir(name))
            .unwrap_or_else(|e| panic!("corpus of {name}: {e}"))
            .count();
        assert!(files > 0, "the corpus of {name} is empty");
    }
}

#[test]
fn every_corpus_file_runs_through_its_target_without_a_panic() {
    let mut ran = 0;
    for (name, target) in TARGETS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))
            .unwrap_or_else(|e| panic!("corpus of {name}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panicked on {}", file.display());
            ran += 1;
        }
    }
    assert!(ran >= TARGETS.len());
}
