#![no_main]
// `cargo fuzz run tar`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::tar(data));
