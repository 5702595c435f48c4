//! libFuzzer target `zone_manifest`; the body is `cmek::fuzzing::zone_manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::zone_manifest(data));
