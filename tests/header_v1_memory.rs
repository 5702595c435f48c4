//! A v1 segment header's chunk size is bound by nothing: an
//! attacker who can write the file can claim 16 MiB segments. The body of a
//! one-chunk v1 segment still decrypts (v1 cannot tell), but no reader
//! may allocate the claimed 16 MiB before anything authenticated: buffers
//! are sized by the bytes actually there. A counting global allocator
//! records the peak of live heap bytes while each reader runs.
//!
//! This file holds a single test so no other test allocates concurrently.

mod one_shot;

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, SegmentFormat, SegmentHeader, Zone, ZoneId};

mod counting_alloc;
use counting_alloc::{assert_counting, peak_during};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/zone")
}

/// The committed vector zone (its segments have v1 headers).
fn vector_zone(dir: &Path) -> Zone {
    for f in ["root.keys", "zone.manifest"] {
        std::fs::copy(vectors().join(f), dir.join(f)).unwrap();
    }
    let provider = LocalKeyProvider::open(dir.join("root.keys")).unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let id = std::fs::read_to_string(vectors().join("zone-id.txt")).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(keyring.adopt_legacy_zone(
            Arc::new(FileManifestStore::new(dir.join("zone.manifest"))),
            &cmek::zone::ZoneAnchor::new(
                ZoneId::parse(id.trim()).unwrap(),
                cmek::KeyRef::new("local", "vectors-root", "local"),
                0,
            ),
        ))
        .unwrap()
}

/// Well below the 16 MiB claimed, above what a 1,000-byte segment needs
/// (the sequential reader's first buffer is one default segment, 64 KiB).
const BOUND: usize = 256 * 1024;
const CLAIMED: u32 = 16 << 20;

#[test]
fn a_v1_header_claiming_16_mib_segments_makes_no_reader_allocate_them() {
    assert_counting();
    let dir = tempfile::tempdir().unwrap();
    let zone = vector_zone(dir.path());
    // Segment "a": 1,000 bytes in one chunk of 4,096, v1 header.
    let mut segment = std::fs::read(vectors().join("segment-a.cmek")).unwrap();
    let expected: Vec<u8> = (0..1000usize).map(|i| (i % 251) as u8 ^ b'a').collect();
    assert_eq!(
        SegmentHeader::parse(&segment).unwrap().format(),
        SegmentFormat::V1
    );
    segment[28..32].copy_from_slice(&CLAIMED.to_be_bytes());
    assert_eq!(
        SegmentHeader::parse(&segment).unwrap().chunk_size(),
        CLAIMED
    );

    let mut out = Vec::with_capacity(4096);
    let sequential = peak_during(|| {
        let mut reader = zone.segment_reader("a", &segment[..]).unwrap();
        reader.read_to_end(&mut out).unwrap();
    });
    assert_eq!(out, expected, "v1 cannot tell: the body still opens");
    assert!(sequential < BOUND, "segment_reader peak {sequential} bytes");

    let random = peak_during(|| {
        let mut reader = zone
            .segment_seekable("a", Cursor::new(&segment[..]))
            .unwrap();
        let mut buf = [0u8; 100];
        assert_eq!(reader.read_at(900, &mut buf).unwrap(), 100);
        assert_eq!(&buf[..], &expected[900..]);
    });
    assert!(random < BOUND, "segment_seekable peak {random} bytes");

    let whole = peak_during(|| {
        assert_eq!(
            &zone.decrypt_segment("a", &segment).unwrap()[..],
            &expected[..]
        );
    });
    assert!(whole < BOUND, "decrypt_segment peak {whole} bytes");

    // The stream readers alone, given params they cannot check, behave the
    // same (what the zone readers rest on).
    let key = cmek::SecretKey::from_slice(&[9; 32]).unwrap();
    let params = cmek::stream::Params::new(CLAIMED as usize).unwrap();
    let ct = one_shot::encrypt(params, &key, b"ad", b"short", cmek::stream::Threads::One).unwrap();
    let stream = peak_during(|| {
        let mut pt = Vec::new();
        cmek::stream::DecryptingReader::new(&ct[..], &key, b"ad", params)
            .read_to_end(&mut pt)
            .unwrap();
        assert_eq!(pt, b"short");
        let mut seek =
            cmek::stream::SeekableReader::new(Cursor::new(&ct[..]), &key, b"ad", params).unwrap();
        assert_eq!(seek.len().unwrap(), 5);
    });
    assert!(stream < BOUND, "stream readers peak {stream} bytes");
}
