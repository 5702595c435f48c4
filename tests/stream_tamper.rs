//! Tamper resistance of the stream format: every modification of a small
//! multi-chunk ciphertext is rejected with a typed error, by every
//! decryption path, and no plaintext from a bad chunk is ever released.

mod one_shot;

use std::io::{Cursor, Read};

use cmek::stream::{self, DecryptingReader, Params, SeekableReader, Threads};
use cmek::{Error, SecretKey};

const SEG: usize = 4096;
const AAD: &[u8] = b"zone 1 / segment 9";

fn params() -> Params {
    Params::new(SEG).unwrap()
}

fn key() -> SecretKey {
    SecretKey::from_slice(&[0x42; 32]).unwrap()
}

/// Three chunks: a full first, a full second, a short last.
fn plaintext() -> Vec<u8> {
    let n = params().first_chunk_plaintext_len() + params().plaintext_chunk_len() + 100;
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

fn encrypt(pt: &[u8]) -> Vec<u8> {
    one_shot::encrypt(params(), &key(), AAD, pt, Threads::One)
        .unwrap()
        .to_vec()
}

/// Chunk boundaries of a ciphertext: `[header, s0, s1, ...]` as ranges.
fn pieces(ct: &[u8]) -> Vec<std::ops::Range<usize>> {
    let p = params();
    let n = p.chunk_count_for_ciphertext(ct.len() as u64).unwrap();
    let mut out = Vec::with_capacity(n as usize + 1);
    out.push(0..stream::HEADER_LEN);
    for i in 0..n {
        let start = p.ciphertext_start(i) as usize;
        let end = if i + 1 == n {
            ct.len()
        } else {
            start + p.full_chunk_len(i)
        };
        out.push(start..end);
    }
    out
}

fn is_rejection(e: &Error) -> bool {
    matches!(e, Error::Integrity { .. } | Error::Malformed { .. })
}

/// Decrypts `ct` every way there is and asserts each way rejects it. The
/// sequential reader may release plaintext before the error, but only an
/// authentic prefix of whole chunks of `pt`.
fn assert_rejected(ct: &[u8], pt: &[u8], aad: &[u8], what: &str) {
    let p = params();
    match one_shot::decrypt(p, &key(), aad, ct, Threads::One) {
        Err(e) => assert!(is_rejection(&e), "{what}: one-shot gave {e}"),
        Ok(_) => panic!("{what}: one-shot accepted"),
    }
    let mut got = Vec::new();
    let err = DecryptingReader::new(ct, &key(), aad, p)
        .read_to_end(&mut got)
        .expect_err(what);
    let inner = stream::error_of(&err).unwrap_or_else(|| panic!("{what}: untyped {err}"));
    assert!(is_rejection(inner), "{what}: reader gave {inner}");
    assert!(
        got.len() <= pt.len() && got[..] == pt[..got.len()],
        "{what}"
    );
    let whole_chunks = got.is_empty()
        || (0..p.chunk_count(pt.len() as u64))
            .any(|i| p.plaintext_start(i + 1) == got.len() as u64);
    assert!(whole_chunks, "{what}: released {} bytes", got.len());

    // Random access: opening may already fail; otherwise reading it all must.
    if let Ok(mut r) = SeekableReader::new(Cursor::new(ct), &key(), aad, p) {
        let mut buf = vec![0u8; pt.len() + 64];
        let e = r.read_at(0, &mut buf).expect_err(what);
        assert!(is_rejection(&e), "{what}: seekable gave {e}");
    }
}

#[test]
fn every_bit_flip_is_rejected() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    assert_eq!(pieces(&ct).len(), 4, "header and three chunks");
    for byte in 0..ct.len() {
        for bit in 0..8 {
            let mut bad = ct.clone();
            bad[byte] ^= 1 << bit;
            match one_shot::decrypt(params(), &key(), AAD, &bad, Threads::One) {
                Err(e) => assert!(is_rejection(&e), "byte {byte} bit {bit}: {e}"),
                Ok(_) => panic!("flip of byte {byte} bit {bit} accepted"),
            }
        }
        // Every path, for one bit per byte (the one-shot check above covers
        // all eight).
        let mut bad = ct.clone();
        bad[byte] ^= 1 << (byte % 8);
        assert_rejected(&bad, &pt, AAD, &format!("flip at {byte}"));
    }
}

#[test]
fn truncation_at_every_offset_is_rejected() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    let boundaries: Vec<usize> = pieces(&ct).iter().map(|r| r.end).collect();
    for len in 0..ct.len() {
        assert_rejected(&ct[..len], &pt, AAD, &format!("truncated to {len}"));
    }
    // Exactly at chunk boundaries, the cut is a whole number of chunks
    // and still fails: the last one left is not marked last.
    for &b in &boundaries[..boundaries.len() - 1] {
        let e = one_shot::decrypt(params(), &key(), AAD, &ct[..b], Threads::One).unwrap_err();
        if b > stream::HEADER_LEN {
            assert!(matches!(e, Error::Integrity { .. }), "cut at {b}: {e}");
        }
    }
}

#[test]
fn appended_bytes_are_rejected() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    for extra in [1usize, 15, 16, 17, 100, SEG, SEG + 17] {
        let mut bad = ct.clone();
        bad.extend(std::iter::repeat_n(0xa5, extra));
        assert_rejected(&bad, &pt, AAD, &format!("{extra} bytes appended"));
    }
    // A whole valid-looking chunk copied from the stream itself.
    let p = pieces(&ct);
    let mut bad = ct.clone();
    bad.extend_from_slice(&ct[p[2].clone()]);
    assert_rejected(&bad, &pt, AAD, "second chunk appended again");
}

#[test]
fn dropped_duplicated_and_reordered_chunks_are_rejected() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    let p = pieces(&ct);
    let (h, s0, s1, s2) = (
        &ct[p[0].clone()],
        &ct[p[1].clone()],
        &ct[p[2].clone()],
        &ct[p[3].clone()],
    );
    let cases: Vec<(&str, Vec<&[u8]>)> = vec![
        ("drop first", vec![h, s1, s2]),
        ("drop middle", vec![h, s0, s2]),
        ("drop last", vec![h, s0, s1]),
        ("duplicate first", vec![h, s0, s0, s1, s2]),
        ("duplicate middle", vec![h, s0, s1, s1, s2]),
        ("duplicate last", vec![h, s0, s1, s2, s2]),
        ("swap first two", vec![h, s1, s0, s2]),
        ("swap last two", vec![h, s0, s2, s1]),
        ("no header", vec![s0, s1, s2]),
    ];
    for (what, parts) in cases {
        assert_rejected(&parts.concat(), &pt, AAD, what);
    }
}

#[test]
fn chunks_from_another_stream_under_the_same_key_are_rejected() {
    let pt = plaintext();
    let a = encrypt(&pt);
    let b = encrypt(&pt);
    assert_ne!(a, b, "fresh salt and nonce prefix per stream");
    let p = pieces(&a);
    for (i, range) in p.iter().enumerate() {
        let mut mixed = a.clone();
        mixed[range.clone()].copy_from_slice(&b[range.clone()]);
        assert_rejected(&mixed, &pt, AAD, &format!("piece {i} from another stream"));
    }
}

#[test]
fn wrong_associated_data_and_wrong_key_are_rejected() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    for aad in [&b""[..], b"zone 1 / segment 8", b"zone 1 / segment 9 "] {
        assert_rejected(&ct, &pt, aad, "wrong aad");
        let e = one_shot::decrypt(params(), &key(), aad, &ct, Threads::One).unwrap_err();
        assert!(matches!(e, Error::Integrity { .. }), "{e}");
    }
    let other = SecretKey::from_slice(&[0x43; 32]).unwrap();
    let e = one_shot::decrypt(params(), &other, AAD, &ct, Threads::One).unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
}

#[test]
fn ranged_decryption_rejects_tampering_and_lies_about_length() {
    let pt = plaintext();
    let ct = encrypt(&pt);
    let len = ct.len() as u64;
    let dec = stream::RangeDecryptor::new(&key(), AAD, params(), &ct[..40], len).unwrap();
    for range in [0..10u64, 4000..4100, 8000..pt.len() as u64] {
        let plan = dec.plan(range.clone()).unwrap();
        let fetched = &ct[plan.chunks.start as usize..plan.chunks.end as usize];
        assert_eq!(
            &dec.decrypt(&plan, fetched).unwrap()[..],
            &pt[range.start as usize..range.end as usize]
        );
        for at in [0, fetched.len() / 2, fetched.len() - 1] {
            let mut bad = fetched.to_vec();
            bad[at] ^= 0x10;
            assert!(matches!(
                dec.decrypt(&plan, &bad),
                Err(Error::Integrity { .. })
            ));
        }
    }
    // The object store claims the stream ends at a chunk boundary.
    let cut = pieces(&ct)[2].end as u64;
    let liar = stream::RangeDecryptor::new(&key(), AAD, params(), &ct[..40], cut).unwrap();
    let plan = liar.plan(0..u64::MAX).unwrap();
    let fetched = &ct[plan.chunks.start as usize..plan.chunks.end as usize];
    assert!(matches!(
        liar.decrypt(&plan, fetched),
        Err(Error::Integrity { .. })
    ));
}
