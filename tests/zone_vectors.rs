//! Known-answer files for the zone formats: a local key file, a zone
//! manifest with two EZK versions, and segments written under each, all
//! committed under `tests/vectors/zone/`. Opening them with the current code
//! proves that data written by this format version stays readable, and
//! pins every layout involved (local key file v1, zone manifest v1, segment
//! header v1, wrapped key v1, stream body).
//!
//! The files were made by `generate_zone_vectors` below (ignored; run it
//! with `--ignored` only to make a new set for a new format version). The
//! committed segments have version 1 headers, written before version 2
//! existed; the generator now writes version 2, so a new set must keep
//! these files beside it to keep pinning version 1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmek::provider::LocalKeyProvider;
use cmek::stream::Params;
use cmek::zone::{
    FileManifestStore, Keyring, RewrapOutcome, SegmentFormat, SegmentHeader, ZoneAnchor, ZoneId,
    ZoneSpec,
};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/zone")
}

/// The plaintext of segment `name`: a pattern anyone can regenerate.
fn plaintext(name: &str) -> Vec<u8> {
    let len = match name {
        "a" => 1000,
        "b" => 70_000,
        _ => 0,
    };
    (0..len)
        .map(|i: usize| (i % 251) as u8 ^ name.as_bytes()[0])
        .collect()
}

/// (segment id, file, EZK version it was written under)
const SEGMENTS: [(&str, &str, u32); 3] = [
    ("a", "segment-a.cmek", 1),
    ("b", "segment-b.cmek", 2),
    ("c", "segment-c.cmek", 2),
];

/// On every AES-GCM engine this build may run (`cmek::engine`; a `fips`
/// build: aws-lc-rs only), each with a keyring of its own so that every
/// key is expanded by that engine. The engine is process wide; this is the
/// only test in this binary that sets it.
#[tokio::test]
async fn committed_zone_vectors_open_and_decrypt_on_every_engine() {
    use cmek::engine::{self, AesGcmEngine};
    let mut ran = 0;
    for e in AesGcmEngine::compiled_in() {
        if engine::set_aes_gcm_engine(Some(e)).is_ok() {
            committed_zone_vectors_open_and_decrypt().await;
            ran += 1;
        }
    }
    engine::set_aes_gcm_engine(None).unwrap();
    assert!(ran > 0);
}

async fn committed_zone_vectors_open_and_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    // Work on copies: opening must not need to write, but tests never
    // touch committed files.
    for f in ["root.keys", "zone.manifest"] {
        std::fs::copy(vectors().join(f), dir.path().join(f)).unwrap();
    }
    let provider = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let expected_id = std::fs::read_to_string(vectors().join("zone-id.txt")).unwrap();
    // Version 1 files: adopted (rewritten as version 3) under the anchor
    // the caller knows — the zone id and root key, no generation yet.
    let root = cmek::KeyRef::new("local", "vectors-root", "local");
    let anchor = ZoneAnchor::new(ZoneId::parse(expected_id.trim()).unwrap(), root, 0);
    let store = Arc::new(FileManifestStore::new(dir.path().join("zone.manifest")));
    let zone = keyring
        .adopt_legacy_zone(store.clone(), &anchor)
        .await
        .unwrap();
    let adopted = std::fs::read(dir.path().join("zone.manifest")).unwrap();
    assert_eq!(&adopted[8..10], &[0, 3], "rewritten as version 3");
    // After adoption only the authenticated open is needed.
    keyring.open_zone(store, &zone.anchor()).await.unwrap();
    assert_eq!(zone.manifest().name(), "vectors");
    assert_eq!(zone.active_version(), 2);
    for (id, file, version) in SEGMENTS {
        let bytes = std::fs::read(vectors().join(file)).unwrap();
        let header = SegmentHeader::parse(&bytes).unwrap();
        assert_eq!(header.zone_id(), zone.id());
        assert_eq!(header.ezk_version(), version);
        assert_eq!(header.chunk_size(), 4096);
        assert_eq!(
            &zone.decrypt_segment(id, &bytes).unwrap()[..],
            &plaintext(id)[..],
            "{file}"
        );
    }
}

/// The committed segments have v1 headers; a rewrap rewrites each as v2
/// (also those already under the active EZK version) without touching its
/// body, and each still decrypts.
#[tokio::test]
async fn rewrap_upgrades_the_committed_v1_headers_to_v2() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["root.keys", "zone.manifest"] {
        std::fs::copy(vectors().join(f), dir.path().join(f)).unwrap();
    }
    let provider = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let expected_id = std::fs::read_to_string(vectors().join("zone-id.txt")).unwrap();
    let anchor = ZoneAnchor::new(
        ZoneId::parse(expected_id.trim()).unwrap(),
        cmek::KeyRef::new("local", "vectors-root", "local"),
        0,
    );
    let zone = keyring
        .adopt_legacy_zone(
            Arc::new(FileManifestStore::new(dir.path().join("zone.manifest"))),
            &anchor,
        )
        .await
        .unwrap();
    for (id, file, version) in SEGMENTS {
        let path = dir.path().join(file);
        std::fs::copy(vectors().join(file), &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(
            SegmentHeader::parse(&before).unwrap().format(),
            SegmentFormat::V1
        );
        assert_eq!(
            zone.rewrap_file(id, &path).unwrap(),
            RewrapOutcome::Rewrapped {
                from: version,
                to: 2
            },
            "{file}"
        );
        let after = std::fs::read(&path).unwrap();
        let header = SegmentHeader::parse(&after).unwrap();
        assert_eq!(header.format(), SegmentFormat::V2);
        assert_eq!(header.ezk_version(), 2);
        assert_eq!(&after[128..], &before[128..], "{file}: body untouched");
        assert_eq!(
            &zone.decrypt_segment(id, &after).unwrap()[..],
            &plaintext(id)[..],
            "{file}"
        );
        assert_eq!(
            zone.rewrap_file(id, &path).unwrap(),
            RewrapOutcome::AlreadyCurrent
        );
    }
}

#[tokio::test]
#[ignore = "writes a new vector set; run only for a new format version"]
async fn generate_zone_vectors() {
    let out = vectors();
    std::fs::create_dir_all(&out).unwrap();
    for f in std::fs::read_dir(&out).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let provider = LocalKeyProvider::create(out.join("root.keys"), "local").unwrap();
    let root = provider.add_key("vectors-root").unwrap();
    let keyring = Keyring::new(Arc::new(provider));
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("vectors", "local", root)
    };
    let zone = keyring
        .create_zone(
            Arc::new(FileManifestStore::new(out.join("zone.manifest"))),
            spec,
        )
        .await
        .unwrap();
    std::fs::write(out.join("zone-id.txt"), format!("{}\n", zone.id())).unwrap();
    for (id, file, version) in SEGMENTS {
        if zone.active_version() < version {
            zone.rotate_ezk().await.unwrap();
        }
        std::fs::write(
            out.join(file),
            zone.encrypt_segment(id, &plaintext(id)).unwrap(),
        )
        .unwrap();
    }
}
