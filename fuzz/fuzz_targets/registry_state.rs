//! libFuzzer target `registry_state`; the body is `cmek::fuzzing::registry_state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::registry_state(data));
