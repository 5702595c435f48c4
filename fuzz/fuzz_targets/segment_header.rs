//! libFuzzer target `segment_header`; the body is `cmek::fuzzing::segment_header`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::segment_header(data));
