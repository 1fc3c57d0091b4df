#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shipgate::fuzzing::fixture(data));
