//! Property tests: random lengths, chunk sizes, write chunking and
//! seek/read patterns all reproduce the plaintext, through every API.

mod one_shot;

use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use cmek::stream::{
    DecryptingReader, EncryptingWriter, Params, RangeDecryptor, SeekableReader, Threads,
};
use cmek::SecretKey;
use proptest::prelude::*;

fn key() -> SecretKey {
    SecretKey::from_slice(&[0x5a; 32]).unwrap()
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1).wrapping_add(seed))
        .collect()
}

/// Chunk sizes near the minimum keep cases small while crossing many
/// boundaries; any size in range is valid, not only powers of two.
fn chunk_size() -> impl Strategy<Value = usize> {
    prop_oneof![Just(4096usize), 4096usize..6000, Just(8192)]
}

#[derive(Debug, Clone)]
enum Op {
    Read(usize),
    SeekStart(u64),
    SeekCurrent(i64),
    SeekEnd(i64),
    ReadAt(u64, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..9000).prop_map(Op::Read),
        (0u64..40_000).prop_map(Op::SeekStart),
        (-9000i64..9000).prop_map(Op::SeekCurrent),
        (-40_000i64..100).prop_map(Op::SeekEnd),
        ((0u64..40_000), (0usize..9000)).prop_map(|(a, n)| Op::ReadAt(a, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn writer_chunking_and_readers_round_trip(
        len in 0usize..30_000,
        seg in chunk_size(),
        seed in any::<u8>(),
        chunks in proptest::collection::vec(1usize..7000, 1..20),
        reads in proptest::collection::vec(1usize..7000, 1..20),
        aad in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let p = Params::new(seg).unwrap();
        let pt = plaintext(len, seed);
        let mut w = EncryptingWriter::new(Vec::new(), &key(), &aad, p).unwrap();
        let mut rest = &pt[..];
        let mut i = 0;
        while !rest.is_empty() {
            let n = chunks[i % chunks.len()].min(rest.len());
            w.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            i += 1;
        }
        let ct = w.finish().unwrap();
        prop_assert_eq!(ct.len() as u64, p.ciphertext_len(len as u64).unwrap());

        // One-shot, single and multi-threaded.
        prop_assert_eq!(&one_shot::decrypt(p, &key(), &aad, &ct, Threads::One).unwrap()[..], &pt[..]);
        let again = one_shot::encrypt(p, &key(), &aad, &pt, Threads::Auto).unwrap();
        prop_assert_eq!(&one_shot::decrypt(p, &key(), &aad, &again, Threads::Auto).unwrap()[..], &pt[..]);

        // Sequential reader with random read sizes.
        let mut r = DecryptingReader::new(&ct[..], &key(), &aad, p);
        let mut got = Vec::new();
        let mut j = 0;
        loop {
            let mut buf = vec![0u8; reads[j % reads.len()]];
            let n = r.read(&mut buf).unwrap();
            if n == 0 { break; }
            got.extend_from_slice(&buf[..n]);
            j += 1;
        }
        prop_assert_eq!(got, pt);
    }

    #[test]
    fn random_seeks_and_reads_match_the_plaintext(
        len in 0usize..30_000,
        seg in chunk_size(),
        seed in any::<u8>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let p = Params::new(seg).unwrap();
        let pt = plaintext(len, seed);
        let ct = one_shot::encrypt(p, &key(), b"props", &pt, Threads::One).unwrap();
        let mut r = SeekableReader::new(Cursor::new(&ct[..]), &key(), b"props", p).unwrap();
        let ranges = RangeDecryptor::new(&key(), b"props", p, &ct[..40], ct.len() as u64).unwrap();
        let mut pos: u64 = 0;
        for op in ops {
            match op {
                Op::Read(n) => {
                    let mut buf = vec![0u8; n];
                    let got = r.read(&mut buf).unwrap();
                    let want = n.min(len.saturating_sub(pos as usize));
                    prop_assert_eq!(got, want);
                    let from = (pos as usize).min(len);
                    prop_assert_eq!(&buf[..got], &pt[from..from + got]);
                    pos += got as u64;
                }
                Op::SeekStart(to) => {
                    prop_assert_eq!(r.seek(SeekFrom::Start(to)).unwrap(), to);
                    pos = to;
                }
                Op::SeekCurrent(d) => match pos.checked_add_signed(d) {
                    Some(to) => {
                        prop_assert_eq!(r.seek(SeekFrom::Current(d)).unwrap(), to);
                        pos = to;
                    }
                    None => prop_assert!(r.seek(SeekFrom::Current(d)).is_err()),
                },
                Op::SeekEnd(d) => match (len as u64).checked_add_signed(d) {
                    Some(to) => {
                        prop_assert_eq!(r.seek(SeekFrom::End(d)).unwrap(), to);
                        pos = to;
                    }
                    None => prop_assert!(r.seek(SeekFrom::End(d)).is_err()),
                },
                Op::ReadAt(at, n) => {
                    let mut buf = vec![0u8; n];
                    let got = r.read_at(at, &mut buf).unwrap();
                    let start = (at as usize).min(len);
                    let end = (at as usize).saturating_add(n).min(len);
                    prop_assert_eq!(&buf[..got], &pt[start..end]);
                    // The cursor did not move.
                    prop_assert_eq!(r.stream_position().unwrap(), pos);
                    // The same range through a ranged fetch.
                    let plan = ranges.plan(at..at + n as u64).unwrap();
                    let fetched = &ct[plan.chunks.start as usize..plan.chunks.end as usize];
                    let via_range = ranges.decrypt(&plan, fetched).unwrap();
                    prop_assert_eq!(&via_range[..], &pt[start..end]);
                    // And through a positional read of the shared decryptor.
                    let mut shared = vec![0u8; n];
                    prop_assert_eq!(ranges.read_at(&ct, at, &mut shared).unwrap(), got);
                    prop_assert_eq!(&shared[..got], &pt[start..end]);
                }
            }
        }
    }
}
