#![no_main]
// `cargo fuzz run nspawn_ini`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::nspawn_ini(data));
