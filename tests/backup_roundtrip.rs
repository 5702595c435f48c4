//! Backups and restores through the public API, on the local key provider:
//! every mode round-trips every segment, a damaged backup is refused naming
//! the segment, regions are enforced, a destination is never mixed up, and
//! the committed backup vector (`tests/vectors/backup`) restores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmek::backup::{
    create_backup, Bundle, Restore, RestoreMode, SourceTrust, SEGMENTS_DIR, ZONE_MANIFEST,
};
use cmek::provider::LocalKeyProvider;
use cmek::stream::Params;
use cmek::zone::{FileManifestStore, Keyring, Zone, ZoneSpec};
use cmek::{Error, KeyRef, StateRejection};

const REGION: &str = "eu-west-1";

struct Setup {
    dir: tempfile::TempDir,
    provider: Arc<LocalKeyProvider>,
    keyring: Arc<Keyring>,
    zone: Zone,
    files: Vec<(String, PathBuf)>,
    plaintexts: BTreeMap<String, Vec<u8>>,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
}

/// A zone under a local key with segments of many sizes under two EZK
/// versions, one of them longer than a chunk many times over.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let provider =
        Arc::new(LocalKeyProvider::open_or_create(dir.path().join("root.keys"), REGION).unwrap());
    let old_root = provider.add_key("backed-up").unwrap();
    provider.add_key("new").unwrap();
    let keyring = Keyring::new(provider.clone());
    let zone = keyring
        .create_zone(
            Arc::new(FileManifestStore::new(dir.path().join("orders.manifest"))),
            ZoneSpec {
                stream: Params::new(4096).unwrap(),
                ..ZoneSpec::new("orders", REGION, old_root)
            },
        )
        .await
        .unwrap();
    let seg_dir = dir.path().join("orders");
    std::fs::create_dir_all(&seg_dir).unwrap();
    let mut files = Vec::new();
    let mut plaintexts = BTreeMap::new();
    let sizes = [0, 1, 4039, 4040, 70_000, 1 << 20, 333];
    for (i, len) in sizes.into_iter().enumerate() {
        if i == 3 {
            zone.rotate_ezk().await.unwrap();
        }
        let id = format!("orders/{i:06}.log");
        let pt = pattern(len, i as u8);
        let path = seg_dir.join(format!("{i}"));
        std::fs::write(&path, zone.encrypt_segment(&id, &pt).unwrap()).unwrap();
        files.push((id.clone(), path));
        plaintexts.insert(id, pt);
    }
    Setup {
        dir,
        provider,
        keyring,
        zone,
        files,
        plaintexts,
    }
}

impl Setup {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn backup(&self, name: &str) -> Bundle {
        create_backup(
            &self.zone.manifest(),
            self.files.clone(),
            self.path(name),
            |_| {},
        )
        .unwrap()
    }

    fn new_spec(&self) -> ZoneSpec {
        ZoneSpec::new("restored", REGION, self.provider.key_ref("new"))
    }

    /// What the restoring caller knows: the backed-up zone's root key.
    fn trust(&self) -> SourceTrust {
        SourceTrust::roots([self.provider.key_ref("backed-up")])
    }

    fn restore(&self, bundle: &Path, dest: &Path, mode: RestoreMode) -> Restore {
        let k = self.keyring.clone();
        let t = self.trust();
        match mode {
            RestoreMode::Rewrap => Restore::rewrap(bundle, dest, k.clone(), t, k, self.new_spec()),
            RestoreMode::Reencrypt => {
                Restore::reencrypt(bundle, dest, k.clone(), t, k, self.new_spec())
            }
            RestoreMode::Plaintext => Restore::plaintext(bundle, dest, k, t, REGION),
        }
    }

    /// Every segment restored in `dest` reads back as the original.
    async fn assert_restored(&self, dest: &Path, mode: RestoreMode) -> Option<Zone> {
        let zone = match mode {
            RestoreMode::Plaintext => None,
            _ => Some(
                self.keyring
                    .open_zone(
                        Arc::new(FileManifestStore::new(dest.join(ZONE_MANIFEST))),
                        &anchor_of(&dest.join(ZONE_MANIFEST)),
                    )
                    .await
                    .unwrap(),
            ),
        };
        let names: Vec<_> = std::fs::read_dir(dest.join(SEGMENTS_DIR))
            .unwrap()
            .collect();
        assert_eq!(
            names.len(),
            self.plaintexts.len(),
            "no extra or missing files"
        );
        for (id, pt) in &self.plaintexts {
            let file = file_of(dest, id);
            let bytes = std::fs::read(&file).unwrap();
            match &zone {
                Some(z) => assert_eq!(&z.decrypt_segment(id, &bytes).unwrap()[..], &pt[..], "{id}"),
                None => assert_eq!(&bytes, pt, "{id}"),
            }
        }
        zone
    }
}

/// The restored file of `id` (names escape `/` and upper case).
fn file_of(dest: &Path, id: &str) -> PathBuf {
    dest.join(SEGMENTS_DIR).join(id.replace('/', "%2F"))
}

#[tokio::test]
async fn every_mode_round_trips_every_segment() {
    let s = setup().await;
    let bundle = s.backup("backup");
    assert_eq!(bundle.manifest().segments().len(), s.plaintexts.len());
    assert_eq!(bundle.manifest().zone(), &s.zone.manifest());
    bundle.verify_checksums(|_| {}).unwrap();
    // The bundle holds the segments as the zone wrote them: still encrypted.
    for (id, path) in &s.files {
        assert_eq!(
            std::fs::read(bundle.segment_path(id)).unwrap(),
            std::fs::read(path).unwrap()
        );
    }

    let rewrapped = s.path("rewrapped");
    let report = s
        .restore(bundle.dir(), &rewrapped, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.restored, report.already_done),
        (s.plaintexts.len(), 0)
    );
    assert_eq!(
        report.zone_manifest.as_deref(),
        Some(&*rewrapped.join(ZONE_MANIFEST))
    );
    let zone = s
        .assert_restored(&rewrapped, RestoreMode::Rewrap)
        .await
        .unwrap();
    // A new zone under the new root, whose bodies keep the old zone's binding.
    assert_ne!(zone.id(), s.zone.id());
    assert_eq!(zone.root(), s.provider.key_ref("new"));
    assert_eq!(zone.manifest().body_zone_id(), s.zone.id());
    // Bodies were copied untouched; only headers changed.
    for (id, path) in &s.files {
        let old = std::fs::read(path).unwrap();
        let new = std::fs::read(file_of(&rewrapped, id)).unwrap();
        assert_eq!(old[128..], new[128..], "{id}");
        assert_ne!(old[..128], new[..128], "{id}");
        // A restored header does not open in the old zone, nor the reverse.
        assert!(s.zone.decrypt_segment(id, &new).is_err());
        assert!(zone.decrypt_segment(id, &old).is_err());
    }
    // The restored zone is a zone like any other: it writes, rotates, rewraps.
    let fresh = zone
        .encrypt_segment("orders/new", b"after restore")
        .unwrap();
    zone.rotate_ezk().await.unwrap();
    let id = "orders/000000.log";
    assert!(matches!(
        zone.rewrap_file(id, &file_of(&rewrapped, id)).unwrap(),
        cmek::zone::RewrapOutcome::Rewrapped { .. }
    ));
    let reopened = s
        .keyring
        .open_zone(
            Arc::new(FileManifestStore::new(rewrapped.join(ZONE_MANIFEST))),
            &anchor_of(&rewrapped.join(ZONE_MANIFEST)),
        )
        .await
        .unwrap();
    assert_eq!(
        &reopened.decrypt_segment("orders/new", &fresh).unwrap()[..],
        b"after restore"
    );
    assert_eq!(
        reopened
            .decrypt_segment(id, &std::fs::read(file_of(&rewrapped, id)).unwrap())
            .unwrap()
            .len(),
        0
    );

    let reencrypted = s.path("reencrypted");
    s.restore(bundle.dir(), &reencrypted, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap();
    let zone = s
        .assert_restored(&reencrypted, RestoreMode::Reencrypt)
        .await
        .unwrap();
    assert_eq!(zone.manifest().body_zone_id(), zone.id());
    for (id, path) in &s.files {
        let old = std::fs::read(path).unwrap();
        let new = std::fs::read(file_of(&reencrypted, id)).unwrap();
        // Fresh DEK: another key commitment, another body.
        assert_ne!(old[93..125], new[93..125], "{id}");
        assert_ne!(old.get(128 + 40..), new.get(128 + 40..));
    }

    let plain = s.path("plain");
    let report = s
        .restore(bundle.dir(), &plain, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap();
    assert!(report.zone.is_none() && report.zone_manifest.is_none());
    s.assert_restored(&plain, RestoreMode::Plaintext).await;
    for seg in &report.segments {
        assert_eq!(seg.len, s.plaintexts[&seg.segment_id].len() as u64);
    }

    // With the backed-up zone's root key gone, both restored zones open:
    // they depend on the new root only.
    s.provider.disable_key("backed-up").unwrap();
    s.assert_restored(&rewrapped, RestoreMode::Rewrap).await;
    s.assert_restored(&reencrypted, RestoreMode::Reencrypt)
        .await;
}

/// Restores `bundle` in `mode` and expects a refusal naming `segment`.
async fn expect_corrupt(s: &Setup, bundle: &Path, mode: RestoreMode, segment: &str, dest: &str) {
    let dest = s.path(dest);
    let err = s
        .restore(bundle, &dest, mode)
        .run(|_| {})
        .await
        .unwrap_err();
    match &err {
        Error::BackupSegmentCorrupt { segment: got, .. } => assert_eq!(got, segment, "{err}"),
        other => panic!("{mode:?}: expected a corrupt segment, got {other}"),
    }
    assert!(err.to_string().contains(segment), "{err}");
    // Nothing of the bad segment is in place, nor left behind.
    assert!(!file_of(&dest, segment).exists());
    if let Ok(entries) = std::fs::read_dir(dest.join(SEGMENTS_DIR)) {
        for e in entries {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.starts_with('.'), "{mode:?}: {name} left behind");
        }
    }
}

#[tokio::test]
async fn a_tampered_backup_is_refused_naming_the_segment() {
    let s = setup().await;
    let bundle = s.backup("backup");
    let modes = [
        RestoreMode::Rewrap,
        RestoreMode::Reencrypt,
        RestoreMode::Plaintext,
    ];
    let id = "orders/000004.log";
    let file = bundle.segment_path(id);
    let good = std::fs::read(&file).unwrap();
    let mut case = 0;
    let mut next = || {
        case += 1;
        format!("dest-{case}")
    };

    // A flipped bit in the body, in the header's wrapped DEK, in the key
    // commitment; a truncation; an appended byte; a missing file.
    let mut damaged = Vec::new();
    for at in [good.len() - 1, 128 + 5000, 40, 100] {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        damaged.push(Some(bad));
    }
    damaged.push(Some(good[..good.len() - 16].to_vec()));
    damaged.push(Some([&good[..], b"x"].concat()));
    damaged.push(None);
    for bytes in damaged {
        match &bytes {
            Some(b) => std::fs::write(&file, b).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        for mode in modes {
            expect_corrupt(&s, bundle.dir(), mode, id, &next()).await;
        }
        assert!(bundle.verify_checksums(|_| {}).is_err());
    }

    // A segment that authenticates and has the right length but is not the
    // one backed up (the same data written again under a fresh DEK): only
    // the checksum can tell.
    let other = s.zone.encrypt_segment(id, &s.plaintexts[id]).unwrap();
    assert_eq!(other.len(), good.len());
    std::fs::write(&file, &other).unwrap();
    for mode in modes {
        let dest = next();
        expect_corrupt(&s, bundle.dir(), mode, id, &dest).await;
        // Segments before it were restored and stay.
        assert!(file_of(&s.path(&dest), "orders/000000.log").exists());
    }
    let err = bundle.verify_checksums(|_| {}).unwrap_err();
    assert!(
        matches!(&err, Error::BackupSegmentCorrupt { segment, reason }
            if segment == id && reason.contains("SHA-256")),
        "{err}"
    );

    // Repaired, the same destinations finish the job.
    std::fs::write(&file, &good).unwrap();
    for (i, mode) in modes.into_iter().enumerate() {
        let dest = s.path(&format!("dest-{}", case - 2 + i));
        let report = s
            .restore(bundle.dir(), &dest, mode)
            .run(|_| {})
            .await
            .unwrap();
        assert!(report.already_done >= 4, "{report:?}");
        s.assert_restored(&dest, mode).await;
    }

    // A damaged manifest is malformed, and says which file.
    let manifest = bundle.dir().join(cmek::backup::BUNDLE_MANIFEST);
    let mut bytes = std::fs::read(&manifest).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&manifest, &bytes).unwrap();
    let err = s
        .restore(bundle.dir(), &s.path("x"), RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Malformed {
                what: "backup manifest",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn regions_are_enforced_before_any_provider_call() {
    let s = setup().await;
    let bundle = s.backup("backup");
    // The backup's key is a single-region (local) key of eu-west-1.
    let err = Restore::plaintext(
        bundle.dir(),
        s.path("p"),
        s.keyring.clone(),
        s.trust(),
        "us-east-1",
    )
    .run(|_| {})
    .await
    .unwrap_err();
    match &err {
        Error::RegionMismatch {
            key_region,
            region,
            reason,
            ..
        } => {
            assert_eq!(
                (key_region.as_str(), region.as_str()),
                (REGION, "us-east-1")
            );
            assert!(reason.contains("single-region"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("multi-region"), "{err}");
    assert!(!s.path("p").exists(), "nothing written");

    // The new zone's root key must be in the new zone's region.
    let spec = ZoneSpec::new(
        "restored",
        REGION,
        KeyRef::new("local", "new", "ap-south-1"),
    );
    let err = Restore::rewrap(
        bundle.dir(),
        s.path("r"),
        s.keyring.clone(),
        s.trust(),
        s.keyring.clone(),
        spec,
    )
    .run(|_| {})
    .await
    .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
}

#[tokio::test]
async fn destinations_and_backups_are_never_mixed_up() {
    let s = setup().await;
    let one = s.backup("one");
    let two = s.backup("two");
    assert_ne!(one.manifest().backup_id(), two.manifest().backup_id());
    let dest = s.path("dest");
    s.restore(one.dir(), &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap();
    // Another backup, or another mode, into the same destination.
    for (bundle, mode) in [(&two, RestoreMode::Rewrap), (&one, RestoreMode::Plaintext)] {
        let err = s
            .restore(bundle.dir(), &dest, mode)
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StateRejected {
                    what: "restore state",
                    reason: StateRejection::Mismatch(_)
                }
            ),
            "{err}"
        );
    }
    // A directory with other files in it.
    let busy = s.path("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("data.db"), b"x").unwrap();
    let err = s
        .restore(one.dir(), &busy, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("data.db"), "{err}");

    // Backing up into a finished backup, twice the same id, a segment of
    // another zone, a directory with no backup.
    let err = create_backup(&s.zone.manifest(), s.files.clone(), one.dir(), |_| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let twice = vec![s.files[0].clone(), s.files[0].clone()];
    let err = create_backup(&s.zone.manifest(), twice, s.path("twice"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let other = s
        .keyring
        .create_zone(
            Arc::new(cmek::zone::MemoryManifestStore::new()),
            ZoneSpec::new("other", REGION, s.provider.key_ref("new")),
        )
        .await
        .unwrap();
    let foreign = s.path("foreign.seg");
    std::fs::write(&foreign, other.encrypt_segment("x", b"y").unwrap()).unwrap();
    let err = create_backup(&s.zone.manifest(), [("x", foreign)], s.path("f"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("belongs to zone"), "{err}");
    assert!(
        Bundle::open(s.path("f")).is_err(),
        "an unfinished backup does not open"
    );
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The committed backup of the zone vectors (see tests/zone_vectors.rs)
/// restores in every mode to the plaintexts those vectors were made from.
#[tokio::test]
async fn committed_backup_vector_restores_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        vectors().join("zone/root.keys"),
        dir.path().join("root.keys"),
    )
    .unwrap();
    let provider = Arc::new(LocalKeyProvider::open(dir.path().join("root.keys")).unwrap());
    let keyring = Keyring::new(provider.clone());
    let bundle = Bundle::open(vectors().join("backup")).unwrap();
    assert_eq!(bundle.manifest().backup_id(), "b0".repeat(16));
    bundle.verify_checksums(|_| {}).unwrap();
    let root = bundle.manifest().zone().root().clone();
    let region = root.region().to_owned();
    let source_zone = std::fs::read_to_string(vectors().join("zone/zone-id.txt")).unwrap();
    let trust = SourceTrust::zone(cmek::zone::ZoneId::parse(source_zone.trim()).unwrap());
    let plaintext = |name: &str| -> Vec<u8> {
        let len = match name {
            "a" => 1000,
            "b" => 70_000,
            _ => 0,
        };
        (0..len)
            .map(|i: usize| (i % 251) as u8 ^ name.as_bytes()[0])
            .collect()
    };
    for mode in [
        RestoreMode::Rewrap,
        RestoreMode::Reencrypt,
        RestoreMode::Plaintext,
    ] {
        let dest = dir.path().join(format!("{mode:?}"));
        let spec = ZoneSpec::new("restored", &region, root.clone());
        let restore = match mode {
            RestoreMode::Rewrap => Restore::rewrap(
                bundle.dir(),
                &dest,
                keyring.clone(),
                trust.clone(),
                keyring.clone(),
                spec,
            ),
            RestoreMode::Reencrypt => Restore::reencrypt(
                bundle.dir(),
                &dest,
                keyring.clone(),
                trust.clone(),
                keyring.clone(),
                spec,
            ),
            _ => Restore::plaintext(bundle.dir(), &dest, keyring.clone(), trust.clone(), &region),
        };
        let report = restore.run(|_| {}).await.unwrap();
        for id in ["a", "b", "c"] {
            let bytes = std::fs::read(dest.join(SEGMENTS_DIR).join(id)).unwrap();
            let got = match &report.zone {
                Some(z) => z.decrypt_segment(id, &bytes).unwrap().to_vec(),
                None => bytes,
            };
            assert_eq!(got, plaintext(id), "{mode:?} {id}");
        }
    }
}

/// A zone restored by rewrapping can itself be backed up and restored
/// again, both ways: its bodies keep the first zone's binding, and new
/// segments written after the first restore come along.
#[tokio::test]
async fn a_restored_zone_backs_up_and_restores_again() {
    let s = setup().await;
    let first = s.backup("first");
    let restored = s.path("restored");
    let zone = s
        .restore(first.dir(), &restored, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap()
        .zone
        .unwrap();
    let mut files: Vec<(String, PathBuf)> = s
        .plaintexts
        .keys()
        .map(|id| (id.clone(), file_of(&restored, id)))
        .collect();
    let later = s.path("later.seg");
    std::fs::write(
        &later,
        zone.encrypt_segment("orders/later", b"written after")
            .unwrap(),
    )
    .unwrap();
    files.push(("orders/later".into(), later));
    zone.rotate_ezk().await.unwrap();

    let second = create_backup(&zone.manifest(), files, s.path("second"), |_| {}).unwrap();
    for mode in [RestoreMode::Rewrap, RestoreMode::Reencrypt] {
        let dest = s.path(&format!("again-{mode:?}"));
        // This backup is of the restored zone, under the new root.
        let k = s.keyring.clone();
        let trust = SourceTrust::zone(zone.id());
        let restore = match mode {
            RestoreMode::Rewrap => {
                Restore::rewrap(second.dir(), &dest, k.clone(), trust, k, s.new_spec())
            }
            _ => Restore::reencrypt(second.dir(), &dest, k.clone(), trust, k, s.new_spec()),
        };
        let again = restore.run(|_| {}).await.unwrap().zone.unwrap();
        let expected_body_zone = match mode {
            RestoreMode::Rewrap => s.zone.id(),
            _ => again.id(),
        };
        assert_eq!(again.manifest().body_zone_id(), expected_body_zone);
        for (id, pt) in &s.plaintexts {
            let bytes = std::fs::read(file_of(&dest, id)).unwrap();
            assert_eq!(&again.decrypt_segment(id, &bytes).unwrap()[..], &pt[..]);
        }
        let bytes = std::fs::read(file_of(&dest, "orders/later")).unwrap();
        assert_eq!(
            &again.decrypt_segment("orders/later", &bytes).unwrap()[..],
            b"written after"
        );
    }
}

/// `tests/vectors/backup/restored/`: the backup vector restored by
/// rewrapping (a zone manifest version 2, with its key file and the
/// rewrapped segments). Opening it pins manifest version 2 and the body
/// binding of restored zones.
#[tokio::test]
async fn committed_restored_zone_vector_opens_and_decrypts() {
    let committed = vectors().join("backup/restored");
    let dir = tempfile::tempdir().unwrap();
    for f in ["root.keys", "zone.manifest"] {
        std::fs::copy(committed.join(f), dir.path().join(f)).unwrap();
    }
    let manifest = std::fs::read(dir.path().join("zone.manifest")).unwrap();
    assert_eq!(&manifest[8..10], &[0, 2], "manifest version 2");
    let provider = LocalKeyProvider::open(dir.path().join("root.keys")).unwrap();
    // Written by an older release: adopted once, then version 3.
    let zone = Keyring::new(Arc::new(provider))
        .adopt_legacy_zone(
            Arc::new(FileManifestStore::new(dir.path().join("zone.manifest"))),
            &anchor_of(&dir.path().join("zone.manifest")),
        )
        .await
        .unwrap();
    let source_id = std::fs::read_to_string(vectors().join("zone/zone-id.txt")).unwrap();
    assert_eq!(zone.manifest().body_zone_id().to_string(), source_id.trim());
    assert_ne!(zone.id().to_string(), source_id.trim());
    for id in ["a", "b", "c"] {
        let bytes = std::fs::read(committed.join(SEGMENTS_DIR).join(id)).unwrap();
        assert_eq!(
            zone.decrypt_segment(id, &bytes).unwrap().to_vec(),
            vector_plaintext(id)
        );
    }
}

fn vector_plaintext(name: &str) -> Vec<u8> {
    let len = match name {
        "a" => 1000,
        "b" => 70_000,
        _ => 0,
    };
    (0..len)
        .map(|i: usize| (i % 251) as u8 ^ name.as_bytes()[0])
        .collect()
}

#[tokio::test]
#[ignore = "writes the restored-zone vector; run only for a new format version"]
async fn generate_restored_zone_vector() {
    let out = vectors().join("backup/restored");
    let _ = std::fs::remove_dir_all(&out);
    let work = tempfile::tempdir().unwrap();
    std::fs::copy(
        vectors().join("zone/root.keys"),
        work.path().join("root.keys"),
    )
    .unwrap();
    let provider = Arc::new(LocalKeyProvider::open(work.path().join("root.keys")).unwrap());
    let keyring = Keyring::new(provider.clone());
    let bundle = Bundle::open(vectors().join("backup")).unwrap();
    let root = bundle.manifest().zone().root().clone();
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("vectors-restored", root.region().to_owned(), root)
    };
    let trust = SourceTrust::roots([bundle.manifest().zone().root().clone()]);
    Restore::rewrap(bundle.dir(), &out, keyring.clone(), trust, keyring, spec)
        .run(|_| {})
        .await
        .unwrap();
    std::fs::copy(work.path().join("root.keys"), out.join("root.keys")).unwrap();
    // The restore state is not part of the vector.
    std::fs::remove_file(out.join(cmek::backup::RESTORE_STATE)).unwrap();
}

/// The anchor of the zone whose manifest is at `path`, read from the file
/// itself: for checking what a restore wrote, not for trusting storage.
fn anchor_of(path: &Path) -> cmek::zone::ZoneAnchor {
    let m = cmek::zone::ZoneManifest::parse(&std::fs::read(path).unwrap()).unwrap();
    cmek::zone::ZoneAnchor::new(m.zone_id(), m.root().clone(), m.generation())
}
