//! Memory stays bounded by the chunk size, whatever the stream length:
//! 256 MiB (see [`TOTAL`]) go through the writer, the sequential reader and the seekable
//! reader while a counting global allocator records the peak of live heap
//! bytes.
//!
//! This file holds a single test so no other test allocates concurrently.

use std::io::{Read, Seek, SeekFrom, Write};

use cmek::stream::{DecryptingReader, EncryptingWriter, Params, SeekableReader};
use cmek::SecretKey;

mod counting_alloc;
use counting_alloc::{assert_counting, peak_during};

/// 256 MiB on the default (aws-lc) backend. The pure-Rust backend alone,
/// unoptimized as `cargo test` builds it, seals about 1 MB/s, so that build
/// streams 32 MiB: the bound checked is the same, it does not depend on the
/// length.
const TOTAL: u64 = if cfg!(feature = "aws-lc") {
    256 << 20
} else {
    32 << 20
};
const CHUNK: usize = 1 << 20;

#[test]
fn streaming_hundreds_of_mib_holds_one_chunk_of_memory() {
    assert_counting();
    let seg = 64 * 1024;
    let params = Params::new(seg).unwrap();
    let key = SecretKey::from_slice(&[3; 32]).unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 241) as u8).collect();
    let mut file = tempfile::tempfile().unwrap();
    // Fixed costs besides the chunk buffer: key schedules, the decoder's
    // boxed state, the associated data — a few KiB at most.
    let slack = 16 * 1024;

    let write_peak = peak_during(|| {
        let mut w = EncryptingWriter::new(&mut file, &key, b"big", params).unwrap();
        for _ in 0..TOTAL / CHUNK as u64 {
            w.write_all(&chunk).unwrap();
        }
        w.finish().unwrap();
    });
    let ct_len = file.seek(SeekFrom::End(0)).unwrap();
    assert_eq!(ct_len, params.ciphertext_len(TOTAL).unwrap());
    assert!(
        write_peak <= seg + slack,
        "writer peak {write_peak} bytes for a {seg}-byte chunk"
    );

    file.seek(SeekFrom::Start(0)).unwrap();
    let mut out = vec![0u8; CHUNK];
    let read_peak = peak_during(|| {
        let mut r = DecryptingReader::new(&mut file, &key, b"big", params);
        let mut total = 0u64;
        loop {
            let n = r.read(&mut out).unwrap();
            if n == 0 {
                break;
            }
            // Every chunk position holds the same pattern.
            let at = (total % CHUNK as u64) as usize;
            let m = n.min(CHUNK - at);
            assert!(out[..m] == chunk[at..at + m]);
            total += n as u64;
        }
        assert_eq!(total, TOTAL);
    });
    assert!(
        read_peak <= seg + slack,
        "reader peak {read_peak} bytes for a {seg}-byte chunk"
    );

    file.seek(SeekFrom::Start(0)).unwrap();
    let seek_peak = peak_during(|| {
        let mut r = SeekableReader::new(&mut file, &key, b"big", params).unwrap();
        assert_eq!(r.len().unwrap(), TOTAL);
        let mut total = 0u64;
        loop {
            let n = r.read(&mut out).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert_eq!(total, TOTAL);
        let mut buf = [0u8; 4096];
        r.read_at(TOTAL / 2 + 7, &mut buf).unwrap();
    });
    assert!(
        seek_peak <= seg + slack,
        "seekable reader peak {seek_peak} bytes for a {seg}-byte chunk"
    );

    // The measurement itself can fail: a whole-stream buffer would show.
    let whole = peak_during(|| {
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(all.len() as u64, ct_len);
    });
    assert!(whole as u64 >= ct_len);
}
