//! libFuzzer target `stream_decrypt`; the body is `cmek::fuzzing::stream_decrypt`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::stream_decrypt(data));
