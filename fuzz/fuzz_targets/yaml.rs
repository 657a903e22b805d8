#![no_main]
// `cargo fuzz run yaml`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::yaml(data));
