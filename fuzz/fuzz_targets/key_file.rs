//! libFuzzer target `key_file`; the body is `cmek::fuzzing::key_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::key_file(data));
