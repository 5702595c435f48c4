//! Known-answer tests that pin the exact bytes we write: each vector's
//! header (random when Tink made it) is fed back into our encryptors, which
//! must reproduce Tink's ciphertext byte for byte.

use super::encoder::Encoder;
use super::header::Header;
use super::*;
use crate::SecretKey;

pub(crate) struct Vector {
    pub(crate) chunk_size: usize,
    pub(crate) key: Vec<u8>,
    pub(crate) aad: Vec<u8>,
    pub(crate) plaintext: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
}

const VECTORS: &str = include_str!("../../tests/vectors/stream/tink_aes256_gcm_hkdf.txt");

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub(crate) fn vectors() -> Vec<Vector> {
    let mut out = Vec::new();
    for block in VECTORS.split("\n\n") {
        let mut fields = std::collections::HashMap::new();
        for line in block.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once('=') {
                fields.insert(k.trim(), v.trim());
            }
        }
        if fields.is_empty() {
            continue;
        }
        let n: usize = fields["plaintext_len"].parse().unwrap();
        let seed: usize = fields["plaintext_seed"].parse().unwrap();
        out.push(Vector {
            chunk_size: fields["chunk_size"].parse().unwrap(),
            key: hex_decode(fields["key"]),
            aad: hex_decode(fields["aad"]),
            plaintext: (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect(),
            ciphertext: hex_decode(fields["ciphertext"]),
        });
    }
    out
}

#[test]
fn vectors_are_present_and_cover_boundaries() {
    let v = vectors();
    assert_eq!(v.len(), 8);
    let lens: Vec<usize> = v.iter().map(|v| v.plaintext.len()).collect();
    assert!(lens.contains(&0) && lens.contains(&4040) && lens.contains(&8120));
    assert!(v
        .iter()
        .any(|v| v.chunk_size == crate::stream::MIN_CHUNK_SIZE));
}

#[test]
fn one_shot_reproduces_tink_bytes() {
    for v in vectors() {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let params = Params::new(v.chunk_size).unwrap();
        let header = Header::parse(&v.ciphertext).unwrap();
        let mut out = vec![0u8; v.ciphertext.len()];
        super::encrypt_with_header(
            &key,
            &v.aad,
            params,
            header,
            &v.plaintext,
            &mut out,
            Threads::One,
        )
        .unwrap();
        assert!(out == v.ciphertext, "len {}", v.plaintext.len());
    }
}

#[test]
fn encoder_reproduces_tink_bytes() {
    for v in vectors() {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let params = Params::new(v.chunk_size).unwrap();
        let header = Header::parse(&v.ciphertext).unwrap();
        let mut enc = Encoder::with_header(&key, &v.aad, params, header).unwrap();
        let mut out = Vec::new();
        // Odd-sized pieces, so chunk boundaries fall inside writes.
        for piece in v.plaintext.chunks(777) {
            let mut rest = piece;
            while !rest.is_empty() {
                if enc.is_full() {
                    enc.seal(false).unwrap();
                    out.extend_from_slice(enc.pending());
                    enc.consume(enc.pending().len());
                }
                let n = enc.accept(rest);
                rest = &rest[n..];
            }
        }
        enc.seal(true).unwrap();
        out.extend_from_slice(enc.pending());
        assert!(out == v.ciphertext, "len {}", v.plaintext.len());
    }
}

/// The writer seals whole chunks straight from large writes and copies
/// small ones: every mix must give Tink's bytes.
#[test]
fn writer_reproduces_tink_bytes_for_every_write_pattern() {
    use std::io::Write;
    for v in vectors() {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let params = Params::new(v.chunk_size).unwrap();
        let first = params.first_chunk_plaintext_len();
        let later = params.plaintext_chunk_len();
        let all = v.plaintext.len().max(1);
        for piece in [
            1,
            777,
            first,
            first + 1,
            later,
            later + 1,
            2 * later + 3,
            all,
        ] {
            let header = Header::parse(&v.ciphertext).unwrap();
            let mut w =
                EncryptingWriter::with_header(Vec::new(), &key, &v.aad, params, header).unwrap();
            for chunk in v.plaintext.chunks(piece) {
                w.write_all(chunk).unwrap();
            }
            let out = w.finish().unwrap();
            assert!(
                out == v.ciphertext,
                "len {}, writes of {piece}",
                v.plaintext.len()
            );
        }
    }
}

/// The reader opens a chunk straight into a buffer it fits in, and in
/// place otherwise: every read size gives the same plaintext.
#[test]
fn reader_returns_tink_plaintext_for_every_read_size() {
    use std::io::Read;
    for v in vectors() {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let params = Params::new(v.chunk_size).unwrap();
        for size in [
            1,
            777,
            params.plaintext_chunk_len() - 1,
            params.plaintext_chunk_len(),
            1 << 20,
        ] {
            let mut r = DecryptingReader::new(&v.ciphertext[..], &key, &v.aad, params);
            let mut got = Vec::new();
            let mut buf = vec![0u8; size];
            loop {
                let n = r.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            assert!(
                got == v.plaintext,
                "len {}, reads of {size}",
                v.plaintext.len()
            );
        }
    }
}

#[test]
fn decoders_recover_tink_plaintext() {
    use std::io::Read;
    for v in vectors() {
        let key = SecretKey::from_slice(&v.key).unwrap();
        let params = Params::new(v.chunk_size).unwrap();
        let pt =
            super::decrypt_to_bytes(&key, &v.aad, params, &v.ciphertext, Threads::One).unwrap();
        assert_eq!(&pt[..], &v.plaintext[..]);
        let mut got = Vec::new();
        DecryptingReader::new(&v.ciphertext[..], &key, &v.aad, params)
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, v.plaintext);
    }
}
