#![no_main]
// `cargo fuzz run oci`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::oci(data));
