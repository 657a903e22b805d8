#![no_main]
// `cargo fuzz run decompress`: see fuzz/README.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sandboxes::fuzzing::decompress(data));
