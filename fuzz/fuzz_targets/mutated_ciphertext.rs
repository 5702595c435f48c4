//! libFuzzer target `mutated_ciphertext`; the body is `cmek::fuzzing::mutated_ciphertext`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cmek::fuzzing::mutated_ciphertext(data));
