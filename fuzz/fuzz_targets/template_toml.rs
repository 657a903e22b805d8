#![no_main]
// `cargo fuzz run template_toml`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::template_toml(data));
