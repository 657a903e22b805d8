#![no_main]
// `cargo fuzz run xz_index`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::xz_index(data));
