#![no_main]
// `cargo fuzz run containers_policy`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::containers_policy(data));
