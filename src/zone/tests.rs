//! Unit tests of zones with the mock provider: provider call counts on the
//! data path, coalescing, misuse, rotation, rewrap and crash safety.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::testing::{MockProvider, Operation};

struct Fixture {
    kms: Arc<MockProvider>,
    keyring: Arc<Keyring>,
    store: Arc<MemoryManifestStore>,
    zone: Zone,
}

async fn fixture() -> Fixture {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let store = Arc::new(MemoryManifestStore::new());
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("orders", "mock-region-1", root)
    };
    let zone = keyring.create_zone(store.clone(), spec).await.unwrap();
    Fixture {
        kms,
        keyring,
        store,
        zone,
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn data_path_makes_no_provider_call() {
    let f = fixture().await;
    f.kms.reset_calls();
    for i in 0..2000 {
        let id = format!("seg-{i}");
        let plain = data(i % 9000, i as u8);
        let ct = f.zone.encrypt_segment(&id, &plain).unwrap();
        assert_eq!(&f.zone.decrypt_segment(&id, &ct).unwrap()[..], &plain[..]);
    }
    assert_eq!(f.kms.total_calls(), 0);
}

#[tokio::test]
async fn open_calls_once_per_version_and_rotations_as_documented() {
    let f = fixture().await;
    assert_eq!(f.kms.calls(Operation::Generate), 1);
    f.zone.rotate_ezk().await.unwrap();
    f.zone.rotate_ezk().await.unwrap();
    assert_eq!(f.kms.calls(Operation::Generate), 3);
    f.kms.reset_calls();
    let reopened = f.keyring.open_zone(f.store.clone()).await.unwrap();
    assert_eq!(f.kms.calls(Operation::Unwrap), 3);
    assert_eq!(f.kms.total_calls(), 3);
    assert_eq!(reopened.active_version(), 3);

    f.kms.reset_calls();
    let new_root = f.kms.add_key("root-2");
    f.zone.rotate_root(new_root.clone()).await.unwrap();
    assert_eq!(f.kms.calls(Operation::Wrap), 3);
    assert_eq!(f.kms.total_calls(), 3);
    assert_eq!(f.zone.root(), new_root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_share_one_call_per_version() {
    let f = fixture().await;
    f.zone.rotate_ezk().await.unwrap();
    f.kms.reset_calls();
    f.kms.set_latency(Duration::from_millis(100));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let keyring = f.keyring.clone();
        let store: Arc<dyn ManifestStore> = f.store.clone();
        tasks.push(tokio::spawn(async move { keyring.open_zone(store).await }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        f.kms.calls(Operation::Unwrap),
        2,
        "one per version for 32 opens"
    );
}

#[tokio::test]
async fn misplaced_or_damaged_segments_are_typed_errors() {
    let f = fixture().await;
    let plain = data(10_000, 1);
    let ct = f.zone.encrypt_segment("a", &plain).unwrap();

    // Another segment id: the DEK's binding fails.
    let err = f.zone.decrypt_segment("b", &ct).unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");

    // Another zone, same provider and root.
    let other = f
        .keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("other", "mock-region-1", f.zone.root()),
        )
        .await
        .unwrap();
    let err = other.decrypt_segment("a", &ct).unwrap_err();
    assert!(err.to_string().contains("another zone"), "{err}");

    // A header moved onto another segment's body.
    let ct2 = f.zone.encrypt_segment("a", &data(10_000, 2)).unwrap();
    let mut swapped = ct2.to_vec();
    swapped[..SEGMENT_HEADER_LEN].copy_from_slice(&ct[..SEGMENT_HEADER_LEN]);
    assert!(matches!(
        f.zone.decrypt_segment("a", &swapped).unwrap_err(),
        Error::Integrity { .. }
    ));

    // Every bit of the header, and truncations.
    for i in 0..SEGMENT_HEADER_LEN {
        let mut bad = ct.to_vec();
        bad[i] ^= 0x01;
        let err = f.zone.decrypt_segment("a", &bad).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Integrity { .. } | Error::Malformed { .. } | Error::KeyUnavailable { .. }
            ),
            "byte {i}: {err}"
        );
    }
    for len in [0, 1, 127, 128, 150, ct.len() - 1] {
        assert!(
            f.zone.decrypt_segment("a", &ct[..len]).is_err(),
            "len {len}"
        );
    }

    // An EZK version the zone does not have.
    let mut future = ct.to_vec();
    future[24..28].copy_from_slice(&9u32.to_be_bytes());
    let err = f.zone.decrypt_segment("a", &future).unwrap_err();
    assert!(matches!(err, Error::KeyUnavailable { .. }), "{err}");
}

#[tokio::test]
async fn manifests_are_checked_on_open() {
    let f = fixture().await;
    // Corrupted.
    let good = f.store.load().unwrap().unwrap();
    let mut bad = good.clone();
    bad[30] ^= 1;
    let corrupted = Arc::new(MemoryManifestStore::new());
    corrupted.store(&bad).unwrap();
    let err = f.keyring.open_zone(corrupted).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    // Another zone's manifest where this zone's is expected.
    let other_store = Arc::new(MemoryManifestStore::new());
    f.keyring
        .create_zone(
            other_store.clone(),
            ZoneSpec::new("other", "mock-region-1", f.zone.root()),
        )
        .await
        .unwrap();
    let err = f
        .keyring
        .open_zone_expecting(other_store.clone(), f.zone.id())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not"), "{err}");
    // A wrapped EZK transplanted from another zone's manifest fails to unwrap.
    let theirs = ZoneManifest::parse(&other_store.load().unwrap().unwrap()).unwrap();
    let mut ours = ZoneManifest::parse(&good).unwrap();
    ours.ezks.get_mut(&1).unwrap().wrapped = theirs.ezks[&1].wrapped.clone();
    let transplanted = Arc::new(MemoryManifestStore::new());
    transplanted.store(&ours.to_bytes()).unwrap();
    let err = f.keyring.open_zone(transplanted).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // No manifest, and creating over an existing one.
    assert!(f
        .keyring
        .open_zone(Arc::new(MemoryManifestStore::new()))
        .await
        .is_err());
    let err = f
        .keyring
        .create_zone(f.store.clone(), ZoneSpec::new("x", "r", f.zone.root()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[tokio::test]
async fn rotation_rewrap_and_retirement() {
    let f = fixture().await;
    let old_plain = data(9000, 3);
    let mut old = f.zone.encrypt_segment("old", &old_plain).unwrap().to_vec();
    let left_on_v1 = f.zone.encrypt_segment("left", b"never rewrapped").unwrap();
    let v2 = f.zone.rotate_ezk().await.unwrap();
    assert_eq!(v2, 2);
    let new = f.zone.encrypt_segment("new", b"fresh").unwrap();
    assert_eq!(SegmentHeader::parse(&new).unwrap().ezk_version(), 2);
    assert_eq!(
        &f.zone.decrypt_segment("old", &old).unwrap()[..],
        &old_plain[..]
    );

    let body_before = old[SEGMENT_HEADER_LEN..].to_vec();
    f.kms.reset_calls();
    assert_eq!(
        f.zone.rewrap_segment("old", &mut old).unwrap(),
        RewrapOutcome::Rewrapped { from: 1, to: 2 }
    );
    assert_eq!(
        f.zone.rewrap_segment("old", &mut old).unwrap(),
        RewrapOutcome::AlreadyCurrent
    );
    assert_eq!(f.kms.total_calls(), 0, "rewrap makes no provider call");
    assert_eq!(
        &old[SEGMENT_HEADER_LEN..],
        &body_before[..],
        "body untouched"
    );
    assert_eq!(
        &f.zone.decrypt_segment("old", &old).unwrap()[..],
        &old_plain[..]
    );
    // Rewrap under the wrong id refuses and changes nothing.
    let mut copy = f.zone.encrypt_segment("x", b"x").unwrap().to_vec();
    f.zone.rotate_ezk().await.unwrap();
    let snapshot = copy.clone();
    assert!(f.zone.rewrap_segment("y", &mut copy).is_err());
    assert_eq!(copy, snapshot);

    // Retiring: never the active version; then old headers stop opening.
    let err = f
        .zone
        .retire_ezk(3, RetireConfirmation::NoSegmentUsesIt)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
    f.zone
        .retire_ezk(1, RetireConfirmation::NoSegmentUsesIt)
        .await
        .unwrap();
    assert!(f
        .zone
        .retire_ezk(1, RetireConfirmation::NoSegmentUsesIt)
        .await
        .is_err());
    assert!(matches!(
        f.zone.decrypt_segment("left", &left_on_v1).unwrap_err(),
        Error::KeyUnavailable { .. }
    ));
    assert_eq!(&f.zone.decrypt_segment("x", &snapshot).unwrap()[..], b"x");
    let reopened = f.keyring.open_zone(f.store.clone()).await.unwrap();
    assert_eq!(
        reopened
            .manifest()
            .ezk_versions()
            .map(|(v, _)| v)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(
        &reopened.decrypt_segment("old", &old).unwrap()[..],
        &old_plain[..]
    );
}

#[tokio::test]
async fn streaming_and_random_access_variants() {
    use std::io::{Cursor, Read, Seek, SeekFrom, Write};
    let f = fixture().await;
    let plain = data(50_000, 9);
    let mut w = f.zone.segment_writer("s", Vec::new()).unwrap();
    for chunk in plain.chunks(777) {
        w.write_all(chunk).unwrap();
    }
    let ct = w.finish().unwrap();
    assert_eq!(&f.zone.decrypt_segment("s", &ct).unwrap()[..], &plain[..]);
    let mut out = Vec::new();
    f.zone
        .segment_reader("s", &ct[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain);
    let mut r = f.zone.segment_seekable("s", Cursor::new(&ct[..])).unwrap();
    r.seek(SeekFrom::Start(33_333)).unwrap();
    let mut buf = [0u8; 1000];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &plain[33_333..34_333]);
    let n = r.read_at(49_990, &mut buf).unwrap();
    assert_eq!(&buf[..n], &plain[49_990..]);
    assert!(f.zone.segment_reader("other", &ct[..]).is_err());
    assert!(f
        .zone
        .segment_seekable("s", Cursor::new(&ct[..100]))
        .is_err());
}

/// A store that fails (as a crash during the write would) from the n-th
/// store on, leaving what was stored before.
#[derive(Debug)]
struct FailingStore {
    inner: MemoryManifestStore,
    stores_left: AtomicUsize,
}

impl ManifestStore for FailingStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.inner.load()
    }
    fn store(&self, manifest: &[u8]) -> Result<()> {
        if self
            .stores_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(Error::Io {
                path: None,
                source: std::io::Error::other("injected crash during manifest write"),
            });
        }
        self.inner.store(manifest)
    }
}

#[tokio::test]
async fn interrupted_rotations_lose_nothing() {
    for allowed in 0..3 {
        let kms = Arc::new(MockProvider::new());
        let root = kms.add_key("root");
        let root2 = kms.add_key("root-2");
        let keyring = Keyring::new(kms.clone());
        let store = Arc::new(FailingStore {
            inner: MemoryManifestStore::new(),
            stores_left: AtomicUsize::new(1 + allowed),
        });
        let zone = keyring
            .create_zone(store.clone(), ZoneSpec::new("z", "mock-region-1", root))
            .await
            .unwrap();
        let mut written = vec![(
            "s0".to_string(),
            zone.encrypt_segment("s0", b"zero").unwrap(),
        )];
        // Rotate EZK, write, rotate root: each may hit the injected crash.
        let r1 = zone.rotate_ezk().await;
        written.push(("s1".into(), zone.encrypt_segment("s1", b"one").unwrap()));
        let r2 = zone.rotate_root(root2.clone()).await;
        assert_eq!(r1.is_ok(), allowed >= 1);
        assert_eq!(r2.is_ok(), allowed >= 2);
        // The zone in memory and a zone reopened from what persisted both
        // decrypt every segment ever written.
        let reopened = keyring.open_zone(store.clone()).await.unwrap();
        for z in [&zone, &reopened] {
            for (id, ct) in &written {
                z.decrypt_segment(id, ct).unwrap();
            }
        }
        assert_eq!(reopened.manifest(), zone.manifest());
    }
}
