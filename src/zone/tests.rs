//! Unit tests of zones with the mock provider: provider call counts on the
//! data path, coalescing, misuse, rotation, rewrap and crash safety.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::stream::Params;
use crate::testing::{MockProvider, Operation};
use crate::{Error, Result};

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
    let reopened = f
        .keyring
        .open_zone(f.store.clone(), &f.zone.anchor())
        .await
        .unwrap();
    assert_eq!(f.kms.calls(Operation::Unwrap), 3);
    assert_eq!(f.kms.total_calls(), 3);
    assert_eq!(reopened.active_version(), 3);

    f.kms.reset_calls();
    let new_root = f.kms.add_key("root-2");
    f.zone.rotate_root(new_root.clone()).await.unwrap();
    assert_eq!(f.kms.calls(Operation::Wrap), 3);
    // The new root is resolved first (it could be an alias).
    assert_eq!(f.kms.calls(Operation::Resolve), 1);
    assert_eq!(f.kms.total_calls(), 4);
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
        let anchor = f.zone.anchor();
        tasks.push(tokio::spawn(async move {
            keyring.open_zone(store, &anchor).await
        }));
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
    assert!(
        matches!(
            err,
            Error::Integrity {
                reason: crate::IntegrityFailure::ForeignZone { expected, found },
                ..
            } if expected == other.id() && found == f.zone.id()
        ),
        "{err:?}"
    );

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
                Error::Integrity { .. } | Error::Malformed { .. } | Error::UnknownEzkVersion { .. }
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
    assert!(
        matches!(
            err,
            Error::UnknownEzkVersion {
                version: 9,
                newest: 1
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn manifests_are_checked_on_open() {
    let f = fixture().await;
    // Corrupted.
    let good = f.store.load().unwrap().unwrap();
    let mut bad = good.clone();
    bad[30] ^= 1;
    let corrupted = Arc::new(MemoryManifestStore::new());
    corrupted.replace(None, &bad).unwrap();
    let err = f
        .keyring
        .open_zone(corrupted, &f.zone.anchor())
        .await
        .unwrap_err();
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
    f.kms.reset_calls();
    let err = f
        .keyring
        .open_zone(other_store.clone(), &f.zone.anchor())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StateRejected {
                reason: crate::StateRejection::ForeignZone { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.kms.total_calls(), 0, "refused before any provider call");
    // A wrapped EZK transplanted from another zone's manifest fails to unwrap
    // (a legacy file, adopted: the one way an unauthenticated one is read).
    let theirs = ZoneManifest::parse(&other_store.load().unwrap().unwrap()).unwrap();
    let mut ours = ZoneManifest::parse(&good).unwrap();
    ours.ezks.get_mut(&1).unwrap().wrapped = theirs.ezks[&1].wrapped.clone();
    let transplanted = Arc::new(MemoryManifestStore::new());
    transplanted.replace(None, &ours.to_legacy_bytes()).unwrap();
    let err = f
        .keyring
        .adopt_legacy_zone(transplanted, &f.zone.anchor())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // No manifest, and creating over an existing one.
    let err = f
        .keyring
        .open_zone(Arc::new(MemoryManifestStore::new()), &f.zone.anchor())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "zone manifest",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
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
        Error::UnknownEzkVersion { version: 1, .. }
    ));
    assert_eq!(&f.zone.decrypt_segment("x", &snapshot).unwrap()[..], b"x");
    let reopened = f
        .keyring
        .open_zone(f.store.clone(), &f.zone.anchor())
        .await
        .unwrap();
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
async fn batch_header_rewrap_matches_single_rewraps() {
    let f = fixture().await;
    let segs: Vec<(String, Vec<u8>)> = (0..20)
        .map(|i| {
            let id = format!("s{i}");
            let ct = f
                .zone
                .encrypt_segment(&id, &data(100 * i, i as u8))
                .unwrap()
                .to_vec();
            (id, ct)
        })
        .collect();
    f.zone.rotate_ezk().await.unwrap();
    let mut input: Vec<(&str, &[u8])> =
        segs.iter().map(|(id, ct)| (id.as_str(), &ct[..])).collect();
    input.push(("s0", &segs[1].1[..])); // a header under the wrong id
    let out = f.zone.rewrap_headers(&input).unwrap();
    assert_eq!(out.len(), 21);
    assert!(matches!(out[20], Err(Error::Integrity { .. })));
    let mut seen = std::collections::HashSet::new();
    for (i, (id, ct)) in segs.iter().enumerate() {
        let header = out[i].as_ref().unwrap().unwrap();
        assert!(
            seen.insert(header[32..45].to_vec()),
            "every wrap has its own nonce"
        );
        let mut rewrapped = ct.clone();
        rewrapped[..SEGMENT_HEADER_LEN].copy_from_slice(&header);
        assert_eq!(SegmentHeader::parse(&rewrapped).unwrap().ezk_version(), 2);
        assert_eq!(
            &f.zone.decrypt_segment(id, &rewrapped).unwrap()[..],
            &data(100 * i, i as u8)[..]
        );
        // Already current: nothing to do.
        assert_eq!(
            f.zone.rewrap_headers(&[(id, &rewrapped[..])]).unwrap()[0]
                .as_ref()
                .unwrap(),
            &None
        );
    }
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

/// Segment by segment, into and out of buffers the caller owns: the result
/// is an ordinary segment of the zone, both ways, and the zone's gate
/// applies to every segment.
#[tokio::test]
async fn segment_sealer_and_opener_interoperate_with_the_other_paths() {
    use crate::stream::{ChunkSealer, HEADER_LEN};
    use std::io::Write;
    let f = fixture().await;
    let plain = data(200_000, 5);

    let (header, mut sealer) = f.zone.chunk_sealer("s").unwrap();
    let mut ct = header.to_vec();
    ct.extend_from_slice(sealer.stream_header());
    assert_eq!(ct.len(), SEGMENT_PREFIX_LEN);
    let mut rest = &plain[..];
    while !sealer.is_finished() {
        let take = rest.len().min(sealer.plaintext_len());
        let last = take == rest.len();
        let at = ct.len();
        ct.resize(at + take + ChunkSealer::OVERHEAD, 0);
        sealer.seal(&rest[..take], last, &mut ct[at..]).unwrap();
        rest = &rest[take..];
    }
    assert_eq!(&f.zone.decrypt_segment("s", &ct).unwrap()[..], &plain[..]);
    assert!(f.zone.decrypt_segment("t", &ct).is_err(), "bound to its id");

    // The opener reads what the writer wrote.
    let mut w = f.zone.segment_writer("w", Vec::new()).unwrap();
    w.write_all(&plain).unwrap();
    let written = w.finish().unwrap();
    let mut opener = f.zone.chunk_opener("w", &written).unwrap();
    let mut body = &written[SEGMENT_PREFIX_LEN..];
    let mut out = Vec::new();
    let mut buf = vec![0u8; opener.params().chunk_size()];
    while !opener.is_finished() {
        let take = body.len().min(opener.sealed_len());
        let n = opener
            .open(&body[..take], take == body.len(), &mut buf)
            .unwrap();
        out.extend_from_slice(&buf[..n]);
        body = &body[take..];
    }
    assert_eq!(out, plain);
    assert!(
        f.zone.chunk_opener("x", &written).is_err(),
        "bound to its id"
    );
    assert!(matches!(
        f.zone.chunk_opener("w", &written[..SEGMENT_PREFIX_LEN - 1]),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        f.zone
            .chunk_opener("w", &written[..SEGMENT_HEADER_LEN + HEADER_LEN - 1]),
        Err(Error::Malformed { .. })
    ));

    // An unavailable zone stops both at their next segment.
    let (_, mut sealer) = f.zone.chunk_sealer("g").unwrap();
    let mut opener = f.zone.chunk_opener("w", &written).unwrap();
    f.zone.mark_unavailable(crate::provider::KeyState::Disabled);
    let n = sealer.plaintext_len();
    let mut out = vec![0u8; n + ChunkSealer::OVERHEAD];
    assert!(matches!(
        sealer.seal(&plain[..n], false, &mut out),
        Err(Error::ZoneUnavailable { .. })
    ));
    let first = opener.sealed_len();
    assert!(matches!(
        opener.open(
            &written[SEGMENT_PREFIX_LEN..SEGMENT_PREFIX_LEN + first],
            false,
            &mut buf
        ),
        Err(Error::ZoneUnavailable { .. })
    ));
}

/// An opened segment checks the zone before each chunk, as the other
/// readers do: unavailable, it reads nothing (ranged GETs neither), and it
/// reads again once the zone recovers.
#[tokio::test]
async fn an_opened_segment_stops_while_the_zone_is_unavailable() {
    let f = fixture().await;
    let plain = data(50_000, 9);
    let ct = f.zone.encrypt_segment("s", &plain).unwrap();
    let opened = f
        .zone
        .open_segment("s", &ct[..SEGMENT_PREFIX_LEN], ct.len() as u64)
        .unwrap();
    let mut buf = vec![0u8; 10_000];
    assert_eq!(opened.read_at(&ct, 1234, &mut buf).unwrap(), 10_000);
    let plan = opened.plan(0..100).unwrap();
    let fetched = &ct[plan.chunks.start as usize..plan.chunks.end as usize];

    f.zone.mark_unavailable(crate::provider::KeyState::Disabled);
    assert!(matches!(
        opened.read_at(&ct, 1234, &mut buf),
        Err(Error::ZoneUnavailable { .. })
    ));
    assert!(matches!(
        opened.authenticated_len(&ct),
        Err(Error::ZoneUnavailable { .. })
    ));
    assert!(matches!(
        opened.decrypt_range(&plan, fetched),
        Err(Error::ZoneUnavailable { .. })
    ));
    assert!(matches!(
        f.zone
            .open_segment("s", &ct[..SEGMENT_PREFIX_LEN], ct.len() as u64),
        Err(Error::ZoneUnavailable { .. })
    ));

    assert!(f.zone.recover().await.unwrap());
    assert_eq!(opened.read_at(&ct, 1234, &mut buf).unwrap(), 10_000);
    assert_eq!(&buf[..], &plain[1234..11_234]);
    assert_eq!(
        &opened.decrypt_range(&plan, fetched).unwrap()[..],
        &plain[..100]
    );
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
    fn replace(&self, current: Option<&[u8]>, manifest: &[u8]) -> Result<()> {
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
        self.inner.replace(current, manifest)
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
            // Creation and the first segment's wrap reservation; then the
            // rotations allowed, and the reservation under a new EZK the
            // second segment makes after a rotation that succeeded.
            stores_left: AtomicUsize::new(2 + allowed + usize::from(allowed >= 1)),
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
        let reopened = keyring
            .open_zone(store.clone(), &zone.anchor())
            .await
            .unwrap();
        for z in [&zone, &reopened] {
            for (id, ct) in &written {
                z.decrypt_segment(id, ct).unwrap();
            }
        }
        assert_eq!(reopened.manifest(), zone.manifest());
    }
}

/// A file whose writes can fail, as a crash or a full disk would make them,
/// at a chosen point: `fail_at` counts write calls.
struct FaultyFile {
    bytes: std::io::Cursor<Vec<u8>>,
    writes_left: usize,
}

impl std::io::Read for FaultyFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.bytes.read(buf)
    }
}

impl std::io::Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.writes_left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "injected ENOSPC",
            ));
        }
        self.writes_left -= 1;
        self.bytes.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for FaultyFile {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.bytes.seek(pos)
    }
}

#[tokio::test]
async fn interrupted_file_rewrap_leaves_a_decryptable_segment() {
    let f = fixture().await;
    let plain = data(20_000, 4);
    let original = f.zone.encrypt_segment("s", &plain).unwrap().to_vec();
    f.zone.rotate_ezk().await.unwrap();
    for writes in 0..2 {
        let mut file = FaultyFile {
            bytes: std::io::Cursor::new(original.clone()),
            writes_left: writes,
        };
        let result = f.zone.rewrap_in_place("s", &mut file);
        let after = file.bytes.into_inner();
        assert_eq!(result.is_ok(), writes >= 1);
        // Whatever happened, the file opens to the same plaintext, under
        // the old header (failure) or the new one (success).
        assert_eq!(
            &f.zone.decrypt_segment("s", &after).unwrap()[..],
            &plain[..]
        );
        let version = SegmentHeader::parse(&after).unwrap().ezk_version();
        assert_eq!(version, if writes >= 1 { 2 } else { 1 });
    }
}

#[tokio::test]
async fn batch_rewrap_of_files_resumes_and_reports_progress() {
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..6 {
        let id = format!("collection/seg-{i}");
        let path = dir.path().join(format!("seg-{i}.cmek"));
        std::fs::write(
            &path,
            f.zone
                .encrypt_segment(&id, &data(5000 + i, i as u8))
                .unwrap(),
        )
        .unwrap();
        files.push((id, path));
    }
    f.zone.rotate_ezk().await.unwrap();
    // A first pass interrupted after three files (as a crash would).
    let first = f.zone.rewrap_files(files[..3].to_vec(), |_| {});
    assert_eq!(first.rewrapped, 3);
    // A damaged file is reported and left alone; the batch goes on.
    let bad = dir.path().join("bad.cmek");
    std::fs::write(&bad, b"not a segment").unwrap();
    let mut all = files.clone();
    all.insert(4, ("bad".into(), bad.clone()));
    all.push(("missing".into(), dir.path().join("missing.cmek")));
    let mut seen = Vec::new();
    let summary = f.zone.rewrap_files(all, |p| seen.push((p.done, p.total)));
    assert_eq!(summary.already_current, 3);
    assert_eq!(summary.rewrapped, 3);
    assert_eq!(summary.failed.len(), 2);
    assert!(
        summary.failed[0].1.to_string().contains("segment header"),
        "{}",
        summary.failed[0].1
    );
    assert!(
        summary.failed[1].1.to_string().contains("missing.cmek"),
        "{}",
        summary.failed[1].1
    );
    assert_eq!(seen, (1..=8).map(|d| (d, 8)).collect::<Vec<_>>());
    assert_eq!(std::fs::read(&bad).unwrap(), b"not a segment");
    for (i, (id, path)) in files.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(SegmentHeader::parse(&bytes).unwrap().ezk_version(), 2);
        assert_eq!(
            &f.zone.decrypt_segment(id, &bytes).unwrap()[..],
            &data(5000 + i, i as u8)[..]
        );
    }
}

#[tokio::test]
async fn file_manifest_store_survives_reopen_and_ignores_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let path = dir.path().join("zone.manifest");
    let store = Arc::new(FileManifestStore::new(&path));
    let zone = keyring
        .create_zone(store.clone(), ZoneSpec::new("z", "mock-region-1", root))
        .await
        .unwrap();
    let ct = zone.encrypt_segment("s", b"persisted").unwrap();
    zone.rotate_ezk().await.unwrap();
    // A temp file left by a crash mid-write does not disturb the manifest.
    std::fs::write(dir.path().join(".zone.manifest.tmp-123"), b"partial").unwrap();
    let reopened = keyring
        .open_zone(Arc::new(FileManifestStore::new(&path)), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(reopened.active_version(), 2);
    assert_eq!(
        &reopened.decrypt_segment("s", &ct).unwrap()[..],
        b"persisted"
    );
    // A corrupted file is a typed error and stays as it is.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 4;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        keyring.open_zone(store, &zone.anchor()).await.unwrap_err(),
        Error::Malformed { .. }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Write(usize),
        Rotate,
        RewrapAll,
        Reopen,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0usize..20_000).prop_map(Step::Write),
            1 => Just(Step::Rotate),
            1 => Just(Step::RewrapAll),
            1 => Just(Step::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_sequence_keeps_every_segment_readable(steps in proptest::collection::vec(step(), 1..16)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let f = fixture().await;
                let mut zone = f.zone.clone();
                let mut segments: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
                for (i, s) in steps.iter().enumerate() {
                    match s {
                        Step::Write(len) => {
                            let id = format!("seg-{i}");
                            let plain = data(*len, i as u8);
                            let ct = zone.encrypt_segment(&id, &plain).unwrap().to_vec();
                            segments.push((id, plain, ct));
                        }
                        Step::Rotate => { zone.rotate_ezk().await.unwrap(); }
                        Step::RewrapAll => {
                            for (id, _, ct) in &mut segments {
                                zone.rewrap_segment(id, ct).unwrap();
                            }
                        }
                        Step::Reopen => {
                            zone = f.keyring.open_zone(f.store.clone(), &f.zone.anchor()).await.unwrap();
                        }
                    }
                    for (id, plain, ct) in &segments {
                        assert_eq!(&zone.decrypt_segment(id, ct).unwrap()[..], &plain[..]);
                    }
                }
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_zone_serves_many_threads_while_it_rotates() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Zone>();
    let f = fixture().await;
    let rotations = {
        let zone = f.zone.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                zone.rotate_ezk().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    std::thread::scope(|s| {
        for t in 0..8 {
            let zone = f.zone.clone();
            s.spawn(move || {
                for i in 0..200 {
                    let id = format!("t{t}/s{i}");
                    let plain = data(i * 37 % 5000, t as u8);
                    let ct = zone.encrypt_segment(&id, &plain).unwrap();
                    assert_eq!(&zone.decrypt_segment(&id, &ct).unwrap()[..], &plain[..]);
                }
            });
        }
    });
    rotations.await.unwrap();
    assert_eq!(f.zone.active_version(), 6);
    assert_eq!(f.kms.calls(Operation::Unwrap), 0);
}

#[tokio::test]
async fn an_alias_root_is_resolved_once_and_never_followed() {
    use crate::provider::KeyState;
    let kms = Arc::new(MockProvider::new());
    let key_a = kms.add_key("key-a");
    let key_b = kms.add_key("key-b");
    let alias = kms.add_alias("alias/orders", "key-a").unwrap();
    let keyring = Keyring::new(kms.clone());
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", "mock-region-1", alias.clone()),
        )
        .await
        .unwrap();
    assert_eq!(zone.root(), key_a);
    assert_eq!(zone.manifest().root_alias(), Some("alias/orders"));
    let segment = zone.encrypt_segment("s", b"rows").unwrap();

    // The alias is re-pointed: the zone stays under the key it recorded,
    // for new EZK versions too.
    assert!(kms.update_alias("alias/orders", "key-b"));
    zone.rotate_ezk().await.unwrap();
    assert_eq!(zone.root(), key_a);
    kms.reset_calls();
    let reopened = keyring
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(kms.calls(Operation::Resolve), 0, "opening never resolves");
    assert_eq!(reopened.root(), key_a);
    assert_eq!(reopened.manifest().root_alias(), Some("alias/orders"));
    assert_eq!(
        &reopened.decrypt_segment("s", &segment).unwrap()[..],
        b"rows"
    );
    // Disabling the recorded key stops the zone although the alias's
    // target is enabled: the alias is not followed.
    kms.disable_key("key-a");
    let err = keyring
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::KeyUnavailable { state: KeyState::Disabled, key } if key.contains("key-a")),
        "{err}"
    );
    kms.enable_key("key-a");

    // Rotating to an alias resolves it the same way; to a key clears it.
    zone.rotate_root(alias.clone()).await.unwrap();
    assert_eq!(zone.root(), key_b);
    assert_eq!(zone.manifest().root_alias(), Some("alias/orders"));
    zone.rotate_root(key_a.clone()).await.unwrap();
    assert_eq!(zone.root(), key_a);
    assert_eq!(zone.manifest().root_alias(), None);

    // An alias that names nothing creates nothing.
    let empty = Arc::new(MemoryManifestStore::new());
    let err = keyring
        .create_zone(
            empty.clone(),
            ZoneSpec::new("x", "mock-region-1", kms.key_ref("alias/none")),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ),
        "{err}"
    );
    assert!(empty.load().unwrap().is_none());
}

/// A zone handed a segment of another zone says so before decrypting
/// anything, apart from a segment of its own whose body was changed.
#[tokio::test]
async fn a_foreign_segment_is_told_apart_from_a_tampered_one() {
    let f = fixture().await;
    let a = f.zone.clone();
    let b = f
        .keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("b", "mock-region-1", a.root()),
        )
        .await
        .unwrap();
    let segment = a.encrypt_segment("s", &data(10_000, 5)).unwrap();
    let foreign = |e: &Error| {
        matches!(
            e,
            Error::Integrity {
                reason: crate::IntegrityFailure::ForeignZone { expected, found },
                ..
            } if *expected == b.id() && *found == a.id()
        )
    };
    let tampered = |e: &Error| {
        matches!(
            e,
            Error::Integrity {
                reason: crate::IntegrityFailure::Tampered,
                ..
            }
        )
    };
    // Every way in gives the same answer for the foreign segment.
    let errors = [
        b.decrypt_segment("s", &segment).unwrap_err(),
        b.segment_reader("s", &segment[..]).map(drop).unwrap_err(),
        b.segment_seekable("s", std::io::Cursor::new(&segment[..]))
            .map(drop)
            .unwrap_err(),
        b.chunk_opener("s", &segment).map(drop).unwrap_err(),
        b.rewrap_header("s", &segment).unwrap_err(),
    ];
    for e in &errors {
        assert!(foreign(e), "{e:?}");
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    }
    // A flipped bit in the body is tampering, in the zone that owns it.
    let mut flipped = segment.to_vec();
    flipped[SEGMENT_HEADER_LEN + 100] ^= 0x10;
    let e = a.decrypt_segment("s", &flipped).unwrap_err();
    assert!(tampered(&e), "{e:?}");
    assert!(!foreign(&e));
    // So is a header moved onto another segment id of the same zone.
    let e = a.decrypt_segment("t", &segment).unwrap_err();
    assert!(tampered(&e), "{e:?}");
}

/// A zone gated by an outage of its KMS is worth retrying; one gated by a
/// disabled key is not.
#[tokio::test]
async fn a_gated_zone_tells_an_outage_from_a_revocation() {
    use crate::provider::KeyState;
    use crate::ErrorKind;
    let f = fixture().await;
    let segment = f.zone.encrypt_segment("s", b"rows").unwrap();
    for (state, kind) in [
        (KeyState::Unreachable, ErrorKind::Retry),
        (KeyState::Disabled, ErrorKind::KeyRevoked),
        (KeyState::AccessDenied, ErrorKind::KeyRevoked),
        (KeyState::PendingDeletion, ErrorKind::KeyRevoked),
    ] {
        f.zone.mark_unavailable(state);
        for err in [
            f.zone.decrypt_segment("s", &segment).unwrap_err(),
            f.zone.encrypt_segment("t", b"new").unwrap_err(),
            f.zone.rotate_ezk().await.unwrap_err(),
        ] {
            assert!(
                matches!(&err, Error::ZoneUnavailable { zone, state: s, .. }
                    if *zone == f.zone.id() && *s == state),
                "{err:?}"
            );
            assert_eq!(err.kind(), kind, "{state}: {err}");
            assert_eq!(err.is_transient(), kind == ErrorKind::Retry, "{state}");
        }
        assert!(f.zone.recover().await.unwrap());
    }
    assert_eq!(&f.zone.decrypt_segment("s", &segment).unwrap()[..], b"rows");
}

/// A handle that has not seen another handle's rotation gets
/// `UnknownEzkVersion` (kind `Stale`) on every data path, and reads the
/// segment once it reloads.
#[tokio::test]
async fn a_stale_handle_is_told_to_reload_then_reads() {
    use std::io::{Cursor, Read};
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let path = dir.path().join("zone.manifest");
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("orders", "mock-region-1", root)
    };
    // Two processes: each its own keyring and store handle on one file.
    let a = Keyring::new(kms.clone())
        .create_zone(Arc::new(FileManifestStore::new(&path)), spec)
        .await
        .unwrap();
    let b = Keyring::new(kms.clone())
        .open_zone(Arc::new(FileManifestStore::new(&path)), &a.anchor())
        .await
        .unwrap();
    assert_eq!(a.rotate_ezk().await.unwrap(), 2);
    let plain = data(20_000, 9);
    let segment = a.encrypt_segment("s", &plain).unwrap();
    assert_eq!(SegmentHeader::parse(&segment).unwrap().ezk_version(), 2);

    let stale = |e: Error| {
        assert!(
            matches!(
                e,
                Error::UnknownEzkVersion {
                    version: 2,
                    newest: 1
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.kind(), crate::ErrorKind::Stale);
    };
    stale(b.decrypt_segment("s", &segment).unwrap_err());
    stale(b.segment_reader("s", &segment[..]).map(drop).unwrap_err());
    stale(
        b.segment_seekable("s", Cursor::new(&segment[..]))
            .map(drop)
            .unwrap_err(),
    );
    stale(b.chunk_opener("s", &segment).map(drop).unwrap_err());
    stale(b.rewrap_header("s", &segment).unwrap_err());

    b.reload().await.unwrap();
    assert_eq!(b.active_version(), 2);
    assert_eq!(&b.decrypt_segment("s", &segment).unwrap()[..], &plain[..]);
    let mut read = Vec::new();
    b.segment_reader("s", &segment[..])
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, plain);
    let mut at = vec![0u8; 100];
    let n = b
        .segment_seekable("s", Cursor::new(&segment[..]))
        .unwrap()
        .read_at(5000, &mut at)
        .unwrap();
    assert_eq!(&at[..n], &plain[5000..5100]);
    let mut opener = b.chunk_opener("s", &segment).unwrap();
    let first = opener.sealed_len();
    let mut out = vec![0u8; first];
    let n = opener
        .open(
            &segment[SEGMENT_PREFIX_LEN..SEGMENT_PREFIX_LEN + first],
            false,
            &mut out,
        )
        .unwrap();
    assert_eq!(&out[..n], &plain[..n]);
    assert_eq!(b.rewrap_header("s", &segment).unwrap(), None);
}

/// A store that hides its manifest from the first load: as if another
/// node created the zone right after this one looked.
#[derive(Debug)]
struct CreatedMeanwhile {
    inner: MemoryManifestStore,
    hidden: std::sync::atomic::AtomicBool,
}

impl ManifestStore for CreatedMeanwhile {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        if self.hidden.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.load()
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        self.inner.replace(current, new)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creators_end_with_one_zone() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let dir = tempfile::tempdir().unwrap();
    for round in 0..12 {
        let store: Arc<dyn ManifestStore> = if round % 2 == 0 {
            Arc::new(MemoryManifestStore::new())
        } else {
            Arc::new(FileManifestStore::new(
                dir.path().join(format!("zone-{round}.manifest")),
            ))
        };
        // Each task is a node: its own keyring, the shared store.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let keyring = Keyring::new(kms.clone());
                let store = store.clone();
                let spec = ZoneSpec::new("orders", "mock-region-1", root.clone());
                tokio::spawn(async move { keyring.open_or_create_zone(store, spec).await })
            })
            .collect();
        let mut zones = Vec::new();
        for t in tasks {
            zones.push(t.await.unwrap().unwrap());
        }
        let created = zones
            .iter()
            .filter(|(_, o)| *o == ZoneOrigin::Created)
            .count();
        assert_eq!(created, 1, "round {round}: exactly one creator");
        let id = zones[0].0.id();
        assert!(zones.iter().all(|(z, _)| z.id() == id), "round {round}");
        // They are one zone: what one writes, another reads.
        let segment = zones[1].0.encrypt_segment("s", b"shared").unwrap();
        assert_eq!(
            &zones[3].0.decrypt_segment("s", &segment).unwrap()[..],
            b"shared"
        );
    }
}

#[tokio::test]
async fn a_creator_that_loses_the_race_opens_the_winners_zone() {
    let f = fixture().await;
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("orders", "mock-region-1", f.zone.root())
    };
    let store = Arc::new(CreatedMeanwhile {
        inner: MemoryManifestStore::new(),
        hidden: true.into(),
    });
    store
        .inner
        .replace(None, &f.store.load().unwrap().unwrap())
        .unwrap();
    let before = f.kms.calls(Operation::Generate);
    let (zone, origin) = f
        .keyring
        .open_or_create_zone(store.clone(), spec.clone())
        .await
        .unwrap();
    assert_eq!(origin, ZoneOrigin::Existing);
    assert_eq!(zone.id(), f.zone.id());
    assert_eq!(
        f.kms.calls(Operation::Generate),
        before + 1,
        "it tried to create"
    );
    assert_eq!(
        store.load().unwrap(),
        f.store.load().unwrap(),
        "the winner's manifest stays"
    );
    // Once the manifest is there, the call opens it without creating.
    let (again, origin) = f
        .keyring
        .open_or_create_zone(store.clone(), spec)
        .await
        .unwrap();
    assert_eq!((again.id(), origin), (f.zone.id(), ZoneOrigin::Existing));
    assert_eq!(f.kms.calls(Operation::Generate), before + 1);
}

#[tokio::test]
async fn open_or_create_refuses_a_zone_made_for_another_spec() {
    let f = fixture().await;
    let rejected = |e: Error| match e {
        Error::StateRejected { reason, .. } => reason,
        other => panic!("expected StateRejected, got {other:?}"),
    };
    // Another root key.
    let other_root = f.kms.add_key("other");
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("orders", "mock-region-1", other_root)
    };
    let err = f
        .keyring
        .open_or_create_zone(f.store.clone(), spec)
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(err), crate::StateRejection::UnexpectedRoot { .. }),
        "another root"
    );
    // Another name, or another chunk size.
    for spec in [
        ZoneSpec {
            stream: Params::new(4096).unwrap(),
            ..ZoneSpec::new("invoices", "mock-region-1", f.zone.root())
        },
        ZoneSpec::new("orders", "mock-region-1", f.zone.root()),
    ] {
        let err = f
            .keyring
            .open_or_create_zone(f.store.clone(), spec)
            .await
            .unwrap_err();
        assert!(matches!(rejected(err), crate::StateRejection::Mismatch(_)));
    }
    // An alias of the zone's root is the same root.
    let alias = f.kms.add_alias("alias/orders", "root").unwrap();
    let spec = ZoneSpec {
        stream: Params::new(4096).unwrap(),
        ..ZoneSpec::new("orders", "mock-region-1", alias)
    };
    let (zone, origin) = f
        .keyring
        .open_or_create_zone(f.store.clone(), spec)
        .await
        .unwrap();
    assert_eq!((zone.id(), origin), (f.zone.id(), ZoneOrigin::Existing));
}

#[tokio::test]
async fn a_manifest_removed_under_an_open_zone_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let path = dir.path().join("zone.manifest");
    let zone = keyring
        .create_zone(
            Arc::new(FileManifestStore::new(&path)),
            ZoneSpec::new("z", "mock-region-1", root),
        )
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    for err in [
        zone.reload().await.unwrap_err(),
        keyring
            .open_zone(Arc::new(FileManifestStore::new(&path)), &zone.anchor())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(
                &err,
                Error::NotFound {
                    what: "zone manifest",
                    location,
                } if *location == path.display().to_string()
            ),
            "{err:?}"
        );
        // The store is named by its path, not by its Debug form.
        assert_eq!(
            err.to_string(),
            format!("zone manifest not found: {}", path.display())
        );
    }
}

#[tokio::test]
async fn a_zone_may_only_use_a_root_key_that_serves_its_region() {
    let kms = Arc::new(MockProvider::new());
    let keyring = Keyring::new(kms.clone());
    let elsewhere = "mock-region-2";

    // A single-region key of another region: refused by its name, before
    // any provider call, and nothing is stored.
    let single = kms.add_key("single");
    let store = Arc::new(MemoryManifestStore::new());
    let err = keyring
        .create_zone(store.clone(), ZoneSpec::new("z", elsewhere, single))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { region, .. } if region == elsewhere),
        "{err}"
    );
    assert_eq!(kms.total_calls(), 0);
    assert!(store.load().unwrap().is_none());

    // A multi-region key without a replica there: refused after the
    // provider's answer, before any key is wrapped.
    let mrk = kms.add_multi_region_key("mrk");
    let err = keyring
        .create_zone(store.clone(), ZoneSpec::new("z", elsewhere, mrk.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("no replica")),
        "{err}"
    );
    assert_eq!(kms.calls(Operation::Generate), 0);
    assert!(store.load().unwrap().is_none());

    // With a replica there, the zone lives in its own region under the key
    // of the key's home region.
    assert!(kms.replicate_key("mrk", elsewhere));
    let zone = keyring
        .create_zone(store, ZoneSpec::new("z", elsewhere, mrk.clone()))
        .await
        .unwrap();
    assert_eq!(zone.manifest().region(), elsewhere);
    assert_eq!(zone.root(), mrk);
    assert_eq!(mrk.region(), "mock-region-1");
}

#[tokio::test]
async fn caller_buffers_hold_the_same_segments_and_nothing_on_failure() {
    let f = fixture().await;
    let z = &f.zone;
    let mut out = Vec::new();
    let mut plain_out = Vec::new();
    // One buffer pair reused across sizes: none, one chunk, several chunks
    // (the zone's chunk size is 4096).
    for len in [0usize, 1, 4000, 4096 * 3 + 17, 300_000] {
        let id = format!("seg-{len}");
        let plain = data(len, len as u8);
        out.resize(z.encrypted_len(len as u64).unwrap() as usize, 0xAA);
        z.encrypt_segment_into(&id, &plain, &mut out).unwrap();
        assert_eq!(&z.decrypt_segment(&id, &out).unwrap()[..], &plain[..]);
        assert_eq!(Zone::decrypted_len(&out).unwrap(), len as u64);
        plain_out.resize(len, 0xAA);
        z.decrypt_segment_into(&id, &out, &mut plain_out).unwrap();
        assert_eq!(plain_out, plain);
        // The allocating call makes a segment of the same length.
        assert_eq!(z.encrypt_segment(&id, &plain).unwrap().len(), out.len());
    }

    // A wrong length is the caller's bug, refused before a DEK is drawn.
    let plain = data(10_000, 3);
    let want = z.encrypted_len(10_000).unwrap() as usize;
    let generation = z.generation();
    for len in [want - 1, want + 1] {
        let mut short = vec![0xAAu8; len];
        let e = z.encrypt_segment_into("x", &plain, &mut short).unwrap_err();
        assert!(matches!(e, Error::Misuse { .. }), "{e:?}");
    }
    assert_eq!(z.generation(), generation);

    // A tampered body leaves no plaintext behind.
    let mut sealed = vec![0u8; want];
    z.encrypt_segment_into("x", &plain, &mut sealed).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let mut opened = vec![0xAAu8; 10_000];
    let e = z
        .decrypt_segment_into("x", &sealed, &mut opened)
        .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e:?}");
    assert!(
        opened.iter().all(|&b| b == 0),
        "plaintext left after a failure"
    );
    sealed[last] ^= 1;
    // So does the wrong segment id, and a wrong length is refused.
    let mut opened = vec![0xAAu8; 10_000];
    assert!(z.decrypt_segment_into("y", &sealed, &mut opened).is_err());
    assert!(opened.iter().all(|&b| b == 0));
    let mut opened = vec![0u8; 9_999];
    let e = z
        .decrypt_segment_into("x", &sealed, &mut opened)
        .unwrap_err();
    assert!(matches!(e, Error::Misuse { .. }), "{e:?}");
    // A buffer too short for a header is malformed, not a panic.
    assert!(matches!(
        Zone::decrypted_len(&sealed[..100]),
        Err(Error::Malformed { .. })
    ));
}

/// A store that checks, as each manifest is written, that the zone has not
/// yet published the anchor the manifest records; and fails writes on
/// demand.
#[derive(Default)]
struct WatchedStore {
    inner: MemoryManifestStore,
    receiver: std::sync::OnceLock<tokio::sync::watch::Receiver<ZoneAnchor>>,
    /// Anchors published before their manifest was written.
    early: AtomicUsize,
    fail: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for WatchedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchedStore")
    }
}

impl ManifestStore for WatchedStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.inner.load()
    }
    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        if let Some(receiver) = self.receiver.get() {
            let writing = ZoneManifest::parse(new).unwrap().generation;
            if receiver.borrow().min_generation() >= writing {
                self.early.fetch_add(1, Ordering::SeqCst);
            }
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Io {
                path: None,
                source: std::io::Error::other("injected failure of the manifest write"),
            });
        }
        self.inner.replace(current, new)
    }
}

/// The generation of the manifest `store` holds.
fn stored_generation(store: &dyn ManifestStore) -> u64 {
    ZoneManifest::parse(&store.load().unwrap().unwrap())
        .unwrap()
        .generation
}

/// Every change of the manifest — the data path's wrap reservation, each
/// administrative change, another handle's change taken in by a reload —
/// is published once stored and before the call returns; a write that
/// fails publishes nothing.
#[tokio::test]
async fn the_anchor_watch_hears_every_change_once_it_is_durable() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let root2 = kms.add_key("root-2");
    let keyring = Keyring::new(kms.clone());
    let store = Arc::new(WatchedStore::default());
    let zone = keyring
        .create_zone(store.clone(), ZoneSpec::new("z", "mock-region-1", root))
        .await
        .unwrap();
    store.receiver.set(zone.watch_anchor()).unwrap();
    let mut anchors = zone.watch_anchor();
    assert!(!anchors.has_changed().unwrap());
    assert_eq!(*anchors.borrow(), zone.anchor());

    // Checks that the last call published the zone's anchor, as stored.
    fn published(
        anchors: &mut tokio::sync::watch::Receiver<ZoneAnchor>,
        zone: &Zone,
        store: &WatchedStore,
        what: &str,
    ) -> ZoneAnchor {
        assert!(anchors.has_changed().unwrap(), "{what}: not published");
        let anchor = anchors.borrow_and_update().clone();
        assert_eq!(anchor, zone.anchor(), "{what}");
        assert_eq!(anchor.min_generation(), stored_generation(store), "{what}");
        anchor
    }

    // The first segment reserves a block of DEK wraps: a manifest write.
    let before = zone.generation();
    zone.encrypt_segment("s0", b"zero").unwrap();
    assert_eq!(
        published(&mut anchors, &zone, &store, "wrap reservation").min_generation(),
        before + 1
    );
    // Inside the block: no write, nothing published.
    zone.encrypt_segment("s1", b"one").unwrap();
    assert!(!anchors.has_changed().unwrap());

    zone.rotate_ezk().await.unwrap();
    published(&mut anchors, &zone, &store, "rotate_ezk");
    zone.encrypt_segment("s2", b"two").unwrap();
    published(
        &mut anchors,
        &zone,
        &store,
        "wrap reservation under the new EZK",
    );
    zone.retire_ezk(1, RetireConfirmation::NoSegmentUsesIt)
        .await
        .unwrap();
    published(&mut anchors, &zone, &store, "retire_ezk");
    zone.rotate_root(root2.clone()).await.unwrap();
    assert_eq!(
        published(&mut anchors, &zone, &store, "rotate_root").root(),
        &root2
    );

    // Another handle's rotation, taken in by a reload.
    let other = keyring
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    other.rotate_ezk().await.unwrap();
    assert!(!anchors.has_changed().unwrap());
    zone.reload().await.unwrap();
    assert_eq!(
        published(&mut anchors, &zone, &store, "reload").min_generation(),
        other.generation()
    );

    // A write that fails changes nothing and publishes nothing.
    store.fail.store(true, Ordering::SeqCst);
    let anchor = zone.anchor();
    zone.rotate_ezk().await.unwrap_err();
    assert!(!anchors.has_changed().unwrap());
    assert_eq!(zone.anchor(), anchor);
    assert_eq!(store.early.load(Ordering::SeqCst), 0, "published early");
}

/// The receiver outlives no zone: once every handle is dropped, `changed`
/// ends, and a task that keeps the anchor finishes with the newest one.
#[tokio::test]
async fn an_anchor_keeper_task_ends_with_the_zone_and_keeps_the_newest() {
    let f = fixture().await;
    let mut anchors = f.zone.watch_anchor();
    let keeper = tokio::spawn(async move {
        let mut kept = Vec::new();
        while anchors.changed().await.is_ok() {
            kept.push(anchors.borrow_and_update().clone());
        }
        kept
    });
    for _ in 0..3 {
        f.zone.rotate_ezk().await.unwrap();
    }
    let newest = f.zone.anchor();
    drop(f.zone);
    let kept = tokio::time::timeout(Duration::from_secs(10), keeper)
        .await
        .expect("the keeper ends once the zone is dropped")
        .unwrap();
    assert_eq!(kept.last(), Some(&newest));
    assert!(kept
        .windows(2)
        .all(|w| w[0].min_generation() < w[1].min_generation()));
}

/// What an engine finds if it dies after a change but before it kept the
/// new anchor: the anchor it kept still opens the zone (a lower bound),
/// except after a root rotation, which the anchor's root refuses; the
/// kept generation with the new root opens it.
#[tokio::test]
async fn an_anchor_kept_before_a_change_opens_the_zone_except_across_a_new_root() {
    let f = fixture().await;
    let kept = f.zone.anchor();
    f.zone.rotate_ezk().await.unwrap();
    f.zone.encrypt_segment("s", b"x").unwrap();
    let zone = f.keyring.open_zone(f.store.clone(), &kept).await.unwrap();
    assert_eq!(zone.anchor(), f.zone.anchor());

    let new_root = f.kms.add_key("root-2");
    f.zone.rotate_root(new_root.clone()).await.unwrap();
    let err = f
        .keyring
        .open_zone(f.store.clone(), &kept)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StateRejected {
                reason: crate::StateRejection::UnexpectedRoot { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let recovered = ZoneAnchor::new(kept.zone_id(), new_root, kept.min_generation());
    let zone = f
        .keyring
        .open_zone(f.store.clone(), &recovered)
        .await
        .unwrap();
    assert_eq!(zone.anchor(), f.zone.anchor());
}
