//! Known-answer vectors produced by Python Tink (see
//! `tests/vectors/stream/`), decrypted through the public API without any
//! Python: data written by Tink, or by any earlier release, stays readable
//! — on every AES-GCM engine this build has (`cmek::engine`).

mod one_shot;

use std::io::{Cursor, Read};

use cmek::engine::{self, AesGcmEngine};
use cmek::stream::{DecryptingReader, Params, RangeDecryptor, SeekableReader, Threads};
use cmek::{Error, SecretKey};

struct Vector {
    chunk_size: usize,
    key: Vec<u8>,
    aad: Vec<u8>,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors/stream/tink_aes256_gcm_hkdf.txt");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut f = std::collections::HashMap::new();
        for line in block.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once('=') {
                f.insert(k.trim(), v.trim());
            }
        }
        if f.is_empty() {
            continue;
        }
        let n: usize = f["plaintext_len"].parse().unwrap();
        let seed: usize = f["plaintext_seed"].parse().unwrap();
        out.push(Vector {
            chunk_size: f["chunk_size"].parse().unwrap(),
            key: hex::decode(f["key"]).unwrap(),
            aad: hex::decode(f["aad"]).unwrap(),
            plaintext: (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect(),
            ciphertext: hex::decode(f["ciphertext"]).unwrap(),
        });
    }
    out
}

/// The engines this build may run (a `fips` build: aws-lc-rs only).
fn engines() -> Vec<AesGcmEngine> {
    AesGcmEngine::compiled_in()
        .into_iter()
        .filter(|e| engine::set_aes_gcm_engine(Some(*e)).is_ok())
        .collect()
}

/// Every engine decrypts the vectors every way. The engine is process
/// wide; this is the only test in this binary that sets it.
#[test]
fn tink_vectors_decrypt_every_way_on_every_engine() {
    let engines = engines();
    assert!(!engines.is_empty());
    for engine in engines {
        engine::set_aes_gcm_engine(Some(engine)).unwrap();
        assert_eq!(engine::aes_gcm_engine(), engine);
        decrypt_every_way();
    }
    engine::set_aes_gcm_engine(None).unwrap();
}

fn decrypt_every_way() {
    let vs = vectors();
    assert_eq!(vs.len(), 8);
    for v in vs {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let p = Params::new(v.chunk_size).unwrap();
        let what = format!("{} bytes, chunk {}", v.plaintext.len(), v.chunk_size);
        assert_eq!(
            p.ciphertext_len(v.plaintext.len() as u64).unwrap(),
            v.ciphertext.len() as u64,
            "{what}"
        );
        let pt = one_shot::decrypt(p, &key, &v.aad, &v.ciphertext, Threads::One).unwrap();
        assert_eq!(&pt[..], &v.plaintext[..], "{what}");

        let mut seq = Vec::new();
        DecryptingReader::new(&v.ciphertext[..], &key, &v.aad, p)
            .read_to_end(&mut seq)
            .unwrap();
        assert_eq!(seq, v.plaintext, "{what}");

        let mut r = SeekableReader::new(Cursor::new(&v.ciphertext), &key, &v.aad, p).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, v.plaintext, "{what}");

        let d = RangeDecryptor::new(
            &key,
            &v.aad,
            p,
            &v.ciphertext[..40],
            v.ciphertext.len() as u64,
        )
        .unwrap();
        let mid = v.plaintext.len() as u64 / 2;
        let plan = d.plan(mid..mid + 100).unwrap();
        let got = d
            .decrypt(
                &plan,
                &v.ciphertext[plan.chunks.start as usize..plan.chunks.end as usize],
            )
            .unwrap();
        assert_eq!(
            &got[..],
            &v.plaintext[plan.plaintext.start as usize..plan.plaintext.end as usize]
        );

        // The vectors really are bound to their associated data.
        let e = one_shot::decrypt(p, &key, b"other", &v.ciphertext, Threads::One).unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{what}: {e}");
    }
}
