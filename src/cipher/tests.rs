//! Unit tests of the cipher layer: known answers, tamper rejection, limits,
//! and byte-identity of the two backends when both are compiled in.

use super::*;

/// Known-answer vector for the wrapped-key layout (docs/FORMAT.md). The
/// expected bytes were computed with pyca/cryptography's AESGCM, an
/// implementation independent of both backends.
const KAT_KEK: [u8; 32] = seq(0x00);
const KAT_KEY: [u8; 32] = seq(0x40);
const KAT_NONCE: [u8; 12] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
];
const KAT_AAD: &[u8] = b"zone=demo";
const KAT_WRAPPED: &str = "01a0a1a2a3a4a5a6a7a8a9aaaba6593e6e018e44f82a2ccd984b378e9120fd0b43c6e2143bc4577cdd23f62b5e87aa429abfa06b5d38234afdc132a665";

const fn seq(start: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = start + i as u8;
        i += 1;
    }
    out
}

fn key(bytes: [u8; 32]) -> SecretKey {
    let mut b = bytes;
    SecretKey::from_array(&mut b)
}

fn wrap_kat<B: Backend>() {
    let wrapper = KeyWrapper::<B>::new(&key(KAT_KEK));
    let wrapped = wrapper
        .wrap_with_nonce(&key(KAT_KEY), KAT_AAD, &KAT_NONCE)
        .unwrap();
    assert_eq!(hex::encode(wrapped), KAT_WRAPPED, "backend {}", B::NAME);
    let unwrapped = wrapper
        .unwrap(&hex::decode(KAT_WRAPPED).unwrap(), KAT_AAD)
        .unwrap();
    assert_eq!(unwrapped.expose_secret(), &KAT_KEY);
}

fn wrap_rejects_every_change<B: Backend>() {
    let wrapper = KeyWrapper::<B>::new(&key(KAT_KEK));
    let wrapped = wrapper.wrap(&key(KAT_KEY), KAT_AAD).unwrap();
    for i in 0..WRAPPED_KEY_LEN {
        for bit in 0..8 {
            let mut bad = wrapped;
            bad[i] ^= 1 << bit;
            let err = wrapper.unwrap(&bad, KAT_AAD).unwrap_err();
            if i == 0 {
                assert!(matches!(err, Error::Malformed { .. }), "{err}");
            } else {
                assert!(matches!(err, Error::Integrity { .. }), "{err}");
            }
        }
    }
    // Wrong associated data, wrong KEK, wrong lengths.
    assert!(matches!(
        wrapper.unwrap(&wrapped, b"zone=other").unwrap_err(),
        Error::Integrity { .. }
    ));
    let other = KeyWrapper::<B>::new(&key(seq(1)));
    assert!(matches!(
        other.unwrap(&wrapped, KAT_AAD).unwrap_err(),
        Error::Integrity { .. }
    ));
    for len in [0, 1, WRAPPED_KEY_LEN - 1, WRAPPED_KEY_LEN + 1] {
        let mut v = wrapped.to_vec();
        v.resize(len, 0);
        assert!(matches!(
            wrapper.unwrap(&v, KAT_AAD).unwrap_err(),
            Error::Malformed { .. }
        ));
    }
}

fn open_wipes_buffer_on_failure<B: Backend>() {
    let aead = Aes256Gcm::<B>::new(&key(KAT_KEK));
    let nonce = [9u8; NONCE_LEN];
    let mut buf = vec![0x5au8; 1000];
    let mut tag = aead.seal_in_place(&nonce, b"ad", &mut buf).unwrap();
    tag[0] ^= 1;
    let err = aead
        .open_in_place(&nonce, b"ad", &mut buf, &tag)
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }));
    assert!(buf.iter().all(|&b| b == 0), "buffer wiped after failure");
}

fn out_of_place_matches_in_place<B: Backend>() {
    let aead = Aes256Gcm::<B>::new(&key(KAT_KEK));
    let nonce = [3u8; NONCE_LEN];
    for len in [0usize, 1, 15, 16, 17, 255, 4096, 65_520] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut in_place = msg.clone();
        let t1 = aead.seal_in_place(&nonce, b"ad", &mut in_place).unwrap();
        let mut ct = vec![0u8; len];
        let t2 = aead.seal_into(&nonce, b"ad", &msg, &mut ct).unwrap();
        assert_eq!(ct, in_place, "ciphertext, {len} bytes");
        assert_eq!(t1, t2, "tag, {len} bytes");
        let mut pt = vec![0xffu8; len];
        aead.open_into(&nonce, b"ad", &ct, &t2, &mut pt).unwrap();
        assert_eq!(pt, msg);
    }
    // Mismatched lengths are a misuse, refused before any cryptography.
    let mut short = [0u8; 3];
    assert!(matches!(
        aead.seal_into(&nonce, b"", &[0u8; 4], &mut short),
        Err(Error::Misuse { .. })
    ));
    assert!(matches!(
        aead.open_into(&nonce, b"", &[0u8; 4], &[0u8; 16], &mut short),
        Err(Error::Misuse { .. })
    ));
    // A bad tag leaves the output all zeros.
    let msg = [0x5au8; 1000];
    let mut ct = [0u8; 1000];
    let mut tag = aead.seal_into(&nonce, b"ad", &msg, &mut ct).unwrap();
    tag[15] ^= 0x80;
    let mut out = [0x77u8; 1000];
    assert!(matches!(
        aead.open_into(&nonce, b"ad", &ct, &tag, &mut out),
        Err(Error::Integrity { .. })
    ));
    assert!(out.iter().all(|&b| b == 0), "output wiped after failure");
}

fn wrap_limit_is_enforced<B: Backend>() {
    let wrapper = KeyWrapper::<B>::with_usage(&key(KAT_KEK), 10).with_limit(12);
    let k = key(KAT_KEY);
    assert!(wrapper.wrap(&k, b"").is_ok());
    assert!(wrapper.wrap(&k, b"").is_ok());
    let err = wrapper.wrap(&k, b"").unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 12, .. }),
        "{err}"
    );
    assert_eq!(wrapper.wraps_performed(), 12);
    // Unwrapping is not limited.
    let w = KeyWrapper::<B>::new(&key(KAT_KEK));
    let wrapped = w.wrap(&k, b"").unwrap();
    assert!(wrapper.unwrap(&wrapped, b"").is_ok());
    // The default limit is NIST's 2^32 and cannot be raised.
    let w = KeyWrapper::<B>::new(&key(KAT_KEK)).with_limit(u64::MAX);
    assert!(format!("{w:?}").contains(&WRAP_LIMIT.to_string()));
    let w = KeyWrapper::<B>::with_usage(&key(KAT_KEK), WRAP_LIMIT);
    assert!(w.wrap(&k, b"").is_err());
}

fn random_wraps_differ<B: Backend>() {
    let wrapper = KeyWrapper::<B>::new(&key(KAT_KEK));
    let k = key(KAT_KEY);
    let a = wrapper.wrap(&k, b"").unwrap();
    let b = wrapper.wrap(&k, b"").unwrap();
    assert_ne!(a, b, "fresh nonce per wrap");
}

/// RFC 5869 appendix A, test cases 1–3 (the SHA-256 ones).
fn hkdf_rfc5869<B: Backend>() {
    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (ikm, salt, info, okm) in cases {
        let expected = hex::decode(okm).unwrap();
        let mut out = vec![0u8; expected.len()];
        hkdf_sha256_with::<B>(
            &hex::decode(ikm).unwrap(),
            &hex::decode(salt).unwrap(),
            &hex::decode(info).unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, expected, "backend {}", B::NAME);
    }
    let mut too_long = vec![1u8; HKDF_SHA256_MAX_LEN + 1];
    assert!(matches!(
        hkdf_sha256_with::<B>(b"k", b"", b"", &mut too_long).unwrap_err(),
        Error::LimitExceeded { .. }
    ));
    assert!(too_long.iter().all(|&b| b == 0));
}

fn sha256_known<B: Backend>() {
    assert_eq!(
        hex::encode(B::sha256(&[b"a", b"bc"])),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hex::encode(B::sha256(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

macro_rules! backend_tests {
    ($module:ident, $backend:ty) => {
        mod $module {
            use super::*;
            #[test]
            fn wrap_known_answer() {
                wrap_kat::<$backend>();
            }
            #[test]
            fn wrap_rejects_every_bit_flip_and_wrong_context() {
                wrap_rejects_every_change::<$backend>();
            }
            #[test]
            fn open_wipes_on_failure() {
                open_wipes_buffer_on_failure::<$backend>();
            }
            #[test]
            fn out_of_place_calls() {
                out_of_place_matches_in_place::<$backend>();
            }
            #[test]
            fn wrap_limit() {
                wrap_limit_is_enforced::<$backend>();
            }
            #[test]
            fn wraps_use_fresh_nonces() {
                random_wraps_differ::<$backend>();
            }
            #[test]
            fn hkdf_rfc5869_vectors() {
                hkdf_rfc5869::<$backend>();
            }
            #[test]
            fn sha256_vectors() {
                sha256_known::<$backend>();
            }
        }
    };
}

#[cfg(feature = "aws-lc")]
backend_tests!(aws_lc, AwsLc);
#[cfg(feature = "rustcrypto")]
backend_tests!(rustcrypto, RustCrypto);
#[cfg(feature = "ring")]
backend_tests!(ring, Ring);
backend_tests!(auto, Auto);

/// Every engine this build has, each key expanded for it through [`Auto`].
fn every_engine(k: [u8; 32]) -> Vec<Aes256Gcm<Auto>> {
    crate::engine::AesGcmEngine::compiled_in()
        .into_iter()
        .filter_map(|engine| Aes256Gcm::on_engine(&key(k), engine).ok())
        .collect()
}

#[test]
fn each_engine_compiled_in_can_be_asked_for() {
    use crate::engine::AesGcmEngine;
    let expected: Vec<AesGcmEngine> = AesGcmEngine::compiled_in()
        .into_iter()
        .filter(|e| !cfg!(feature = "fips") || *e == AesGcmEngine::AwsLc)
        .collect();
    let got: Vec<AesGcmEngine> = every_engine([7; 32]).iter().map(|a| a.engine()).collect();
    assert_eq!(got, expected);
    assert!(!got.is_empty());
    // An engine not compiled in is refused, not silently replaced.
    for engine in [
        AesGcmEngine::AwsLc,
        AesGcmEngine::Ring,
        AesGcmEngine::RustCrypto,
    ] {
        if !engine.is_compiled_in() {
            assert!(Aes256Gcm::on_engine(&key([7; 32]), engine).is_err());
        }
    }
}

/// Every engine compiled in gives the same bytes as every other, through
/// the run-time dispatch ([`Auto`]) that the zones and streams use; each
/// opens the others' output. Runs whatever the build has (the pure-Rust
/// build checks one engine against the known answers only).
mod cross_engine {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_engine_seals_and_opens_the_same_bytes(
            k in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            msg in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let engines = every_engine(k);
            let first = &engines[0];
            let mut expected = msg.clone();
            let expected_tag = first.seal_in_place(&nonce, &aad, &mut expected).unwrap();
            for aead in &engines {
                let mut sealed = msg.clone();
                let tag = aead.seal_in_place(&nonce, &aad, &mut sealed).unwrap();
                prop_assert!(sealed == expected, "{} in place differs", aead.engine());
                prop_assert_eq!(tag, expected_tag);
                let mut out = vec![0u8; msg.len()];
                prop_assert_eq!(aead.seal_into(&nonce, &aad, &msg, &mut out).unwrap(), expected_tag);
                prop_assert!(out == expected, "{} out of place differs", aead.engine());
                let mut back = expected.clone();
                aead.open_in_place(&nonce, &aad, &mut back, &expected_tag).unwrap();
                prop_assert!(back == msg, "{} in place does not open", aead.engine());
                let mut back = vec![0u8; msg.len()];
                aead.open_into(&nonce, &aad, &expected, &expected_tag, &mut back).unwrap();
                prop_assert!(back == msg, "{} out of place does not open", aead.engine());
                // A flipped tag bit fails on every engine and wipes.
                let mut bad_tag = expected_tag;
                bad_tag[0] ^= 1;
                let mut wiped = expected.clone();
                prop_assert!(aead.open_in_place(&nonce, &aad, &mut wiped, &bad_tag).is_err());
                prop_assert!(wiped.iter().all(|&b| b == 0));
            }
        }
    }
}

/// With both backends compiled in, every primitive gives the same bytes.
#[cfg(all(feature = "aws-lc", feature = "rustcrypto"))]
mod cross_backend {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn seal_and_open_agree(
            k in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            msg in proptest::collection::vec(any::<u8>(), 0..5000),
        ) {
            let a = Aes256Gcm::<AwsLc>::new(&key(k));
            let r = Aes256Gcm::<RustCrypto>::new(&key(k));
            let mut ca = msg.clone();
            let mut cr = msg.clone();
            let ta = a.seal_in_place(&nonce, &aad, &mut ca).unwrap();
            let tr = r.seal_in_place(&nonce, &aad, &mut cr).unwrap();
            prop_assert_eq!(&ca, &cr);
            prop_assert_eq!(ta, tr);
            // Each opens the other's output.
            r.open_in_place(&nonce, &aad, &mut ca, &ta).unwrap();
            a.open_in_place(&nonce, &aad, &mut cr, &tr).unwrap();
            prop_assert_eq!(&ca, &msg);
            prop_assert_eq!(&cr, &msg);
            // The out-of-place calls agree with both.
            let mut oa = vec![0u8; msg.len()];
            let mut or = vec![0u8; msg.len()];
            prop_assert_eq!(a.seal_into(&nonce, &aad, &msg, &mut oa).unwrap(), ta);
            prop_assert_eq!(r.seal_into(&nonce, &aad, &msg, &mut or).unwrap(), tr);
            prop_assert_eq!(&oa, &or);
            let mut back = vec![0u8; msg.len()];
            r.open_into(&nonce, &aad, &oa, &ta, &mut back).unwrap();
            prop_assert_eq!(&back, &msg);
            a.open_into(&nonce, &aad, &or, &tr, &mut back).unwrap();
            prop_assert_eq!(&back, &msg);
        }

        #[test]
        fn wrap_agrees(
            kek in any::<[u8; 32]>(),
            k in any::<[u8; 32]>(),
            nonce in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let wa = KeyWrapper::<AwsLc>::new(&key(kek));
            let wr = KeyWrapper::<RustCrypto>::new(&key(kek));
            let a = wa.wrap_with_nonce(&key(k), &aad, &nonce).unwrap();
            let r = wr.wrap_with_nonce(&key(k), &aad, &nonce).unwrap();
            prop_assert_eq!(a, r);
            let back = wr.unwrap(&a, &aad).unwrap();
            prop_assert_eq!(back.expose_secret(), &k);
        }

        #[test]
        fn hkdf_and_sha256_agree(
            ikm in proptest::collection::vec(any::<u8>(), 0..80),
            salt in proptest::collection::vec(any::<u8>(), 0..80),
            info in proptest::collection::vec(any::<u8>(), 0..80),
            len in 1usize..200,
        ) {
            let mut a = vec![0u8; len];
            let mut r = vec![0u8; len];
            hkdf_sha256_with::<AwsLc>(&ikm, &salt, &info, &mut a).unwrap();
            hkdf_sha256_with::<RustCrypto>(&ikm, &salt, &info, &mut r).unwrap();
            prop_assert_eq!(a, r);
            prop_assert_eq!(AwsLc::sha256(&[&ikm, &salt]), RustCrypto::sha256(&[&ikm, &salt]));
        }
    }
}

/// In a FIPS build the module draws every wrap's nonce: a nonce the caller
/// drew is not used, so two wraps given the same one still differ, and
/// both unwrap.
#[cfg(feature = "fips")]
#[test]
fn fips_wraps_take_their_nonce_from_the_module() {
    let wrapper = KeyWrapper::<DefaultBackend>::new(&key(seq(1)));
    let k = key(seq(2));
    let a = wrapper.wrap_with_drawn_nonce(&k, b"aad", &[0; 12]).unwrap();
    let b = wrapper.wrap_with_drawn_nonce(&k, b"aad", &[0; 12]).unwrap();
    assert_ne!(a[1..13], [0; 12]);
    assert_ne!(a[1..13], b[1..13]);
    for w in [a, b] {
        assert_eq!(
            wrapper.unwrap(&w, b"aad").unwrap().expose_secret(),
            k.expose_secret()
        );
    }
    assert_eq!(wrapper.wraps_performed(), 2);
}
