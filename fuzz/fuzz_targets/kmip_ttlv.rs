//! libFuzzer target `kmip_ttlv`; the body is `cmek::fuzzing::kmip_ttlv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::kmip_ttlv(data));
