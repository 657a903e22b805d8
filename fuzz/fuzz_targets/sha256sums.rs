#![no_main]
// `cargo fuzz run sha256sums`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::sha256sums(data));
