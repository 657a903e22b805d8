#![no_main]
// `cargo fuzz run simplestreams`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::simplestreams(data));
