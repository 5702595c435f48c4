//! Segment header v2 against a storage attacker who edits header fields:
//! every field a reader acts on is bound into the DEK's wrap, so an edited
//! chunk size (the field v1 left unauthenticated) is an integrity
//! error on every read path before any plaintext or any buffer of the
//! claimed size exists.

use std::io::{Cursor, Read};
use std::sync::Arc;

use cmek::provider::LocalKeyProvider;
use cmek::stream::Params;
use cmek::zone::{
    FileManifestStore, Keyring, SegmentFormat, SegmentHeader, Zone, ZoneSpec, SEGMENT_PREFIX_LEN,
};
use cmek::Error;

async fn zone(dir: &std::path::Path) -> Zone {
    let provider = LocalKeyProvider::create(dir.join("root.keys"), "local").unwrap();
    let root = provider.add_key("root").unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("z", "local", root)
    };
    keyring
        .create_zone(
            Arc::new(FileManifestStore::new(dir.join("zone.manifest"))),
            spec,
        )
        .await
        .unwrap()
}

fn is_integrity(err: &Error) -> bool {
    matches!(err, Error::Integrity { .. })
}

#[tokio::test]
async fn an_edited_chunk_size_in_a_v2_header_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let zone = zone(dir.path()).await;
    // One chunk: under v1 it would decrypt whatever size the
    // header claimed.
    let segment = zone.encrypt_segment("seg", b"one chunk").unwrap();
    let header = SegmentHeader::parse(&segment).unwrap();
    assert_eq!(header.format(), SegmentFormat::V2);
    assert_eq!(header.chunk_size(), 4096);

    for claimed in [4097u32, 8192, 65536, 1 << 20, 16 << 20] {
        let mut edited = segment.to_vec();
        edited[28..32].copy_from_slice(&claimed.to_be_bytes());
        // Still well formed: only the wrap can tell.
        assert_eq!(SegmentHeader::parse(&edited).unwrap().chunk_size(), claimed);

        let err = zone.decrypt_segment("seg", &edited).unwrap_err();
        assert!(is_integrity(&err), "{claimed}: {err}");
        let err = zone.segment_reader("seg", &edited[..]).unwrap_err();
        assert!(is_integrity(&err), "{claimed}: {err}");
        let err = zone
            .segment_seekable("seg", Cursor::new(&edited[..]))
            .unwrap_err();
        assert!(is_integrity(&err), "{claimed}: {err}");
        let err = zone
            .chunk_opener("seg", &edited[..SEGMENT_PREFIX_LEN])
            .unwrap_err();
        assert!(is_integrity(&err), "{claimed}: {err}");
        let err = zone.rewrap_header("seg", &edited).unwrap_err();
        assert!(is_integrity(&err), "{claimed}: {err}");
    }

    // Every other header byte but the wrap is bound too: a flip either
    // fails parsing or fails the unwrap.
    for i in (0..32).chain(93..128) {
        let mut edited = segment.to_vec();
        edited[i] ^= 0x01;
        match zone.decrypt_segment("seg", &edited).unwrap_err() {
            Error::Malformed { .. } | Error::Integrity { .. } => {}
            // The EZK-version field names a version the zone never had.
            Error::UnknownEzkVersion { .. } if (24..28).contains(&i) => {}
            other => panic!("byte {i}: {other}"),
        }
    }

    // The untouched segment reads on every path.
    let mut out = Vec::new();
    zone.segment_reader("seg", &segment[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, b"one chunk");
}
