//! libFuzzer target `backup_bundle`; the body is `cmek::fuzzing::backup_bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::backup_bundle(data));
