//! Fault injection across layers, each with its documented outcome.
//!
//! I/O: every step of a durable file write (create, write, short write,
//! fsync, rename, directory fsync) fails in turn under the zone manifest
//! store, the local key file and the registry state. Before the rename the
//! old file stays in force and memory is unchanged; a failed directory
//! fsync after the rename leaves the new file in place (durable or not) and
//! memory unchanged, and both versions serve every segment. No temporary
//! file is left behind either way.
//!
//! Provider: throttling bursts, unreachable periods, revoked access and
//! latency during rotation, root rotation, opening and the data path.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::fsutil::faults::{self, ALL};
use crate::fsutil::{Fault, Step};
use crate::monitor::{KeyMonitor, MonitorConfig};
use crate::provider::{KeyProvider, LocalKeyProvider};
use crate::registry::KeyRegistry;
use crate::testing::{Fault as ProviderFault, MockProvider, Operation};
use crate::zone::{
    FileManifestStore, Keyring, ManifestStore, MemoryManifestStore, ZoneManifest, ZoneSpec,
};
use crate::{Error, KeyState};

/// Files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts `result` is the injected I/O error, naming a file in `dir`.
fn assert_injected<T: std::fmt::Debug>(result: crate::Result<T>, dir: &Path, case: (Step, Fault)) {
    assert!(!faults::pending(), "{case:?}: the step was never reached");
    match result {
        Err(Error::Io {
            path: Some(path),
            source,
        }) => {
            assert!(path.starts_with(dir), "{case:?}: {}", path.display());
            assert!(
                matches!(source.raw_os_error(), Some(28 | 5)),
                "{case:?}: {source}"
            );
        }
        other => panic!("{case:?}: expected the injected I/O error, got {other:?}"),
    }
}

/// A zone under a fresh mock key, its manifest in memory.
struct MockZone {
    kms: Arc<MockProvider>,
    keyring: Arc<Keyring>,
    store: Arc<MemoryManifestStore>,
    zone: crate::zone::Zone,
}

async fn mock_zone() -> MockZone {
    let kms = Arc::new(MockProvider::new());
    let keyring = Keyring::new(kms.clone());
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("z", "mock-region-1", kms.add_key("root")),
        )
        .await
        .unwrap();
    MockZone {
        kms,
        keyring,
        store,
        zone,
    }
}

#[tokio::test]
async fn manifest_write_faults_lose_nothing() {
    for case @ (step, fault) in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zone.manifest");
        let kms = Arc::new(MockProvider::new());
        let keyring = Keyring::new(kms.clone());
        let store = Arc::new(FileManifestStore::new(&path));
        let zone = keyring
            .create_zone(
                store.clone(),
                ZoneSpec::new("z", "mock-region-1", kms.add_key("root")),
            )
            .await
            .unwrap();
        let before = zone.encrypt_segment("s1", b"before").unwrap();
        let old = fs::read(&path).unwrap();

        faults::arm(step, fault);
        assert_injected(zone.rotate_ezk().await, dir.path(), case);
        faults::disarm();

        // The lock file beside the manifest stays (it is empty and guards
        // every replacement); no temporary file does.
        assert_eq!(
            files_in(dir.path()),
            [".zone.manifest.lock", "zone.manifest"],
            "{case:?}"
        );
        assert_eq!(zone.active_version(), 1, "{case:?}: memory unchanged");
        let on_disk = ZoneManifest::parse(&fs::read(&path).unwrap()).unwrap();
        if step == Step::SyncDir {
            assert_eq!(
                on_disk.active_version(),
                2,
                "{case:?}: renamed before the fsync"
            );
        } else {
            assert_eq!(
                fs::read(&path).unwrap(),
                old,
                "{case:?}: old manifest in force"
            );
        }
        // The zone serves on, and whichever manifest is on disk serves
        // every segment after a restart.
        let after = zone.encrypt_segment("s2", b"after").unwrap();
        let reopened = keyring
            .open_zone(store.clone(), &zone.anchor())
            .await
            .unwrap();
        assert_eq!(
            &reopened.decrypt_segment("s1", &before).unwrap()[..],
            b"before"
        );
        assert_eq!(
            &reopened.decrypt_segment("s2", &after).unwrap()[..],
            b"after"
        );
        // And the next attempt goes through.
        zone.rotate_ezk().await.unwrap();
    }
}

#[tokio::test]
async fn key_file_write_faults_lose_nothing() {
    for case @ (step, fault) in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.keys");

        // Creating the file: nothing but the lock file is left behind on
        // failure.
        faults::arm(step, fault);
        assert_injected(LocalKeyProvider::create(&path, "local"), dir.path(), case);
        assert_eq!(files_in(dir.path()), [".root.keys.lock"], "{case:?}");
        faults::disarm();

        let provider = LocalKeyProvider::create(&path, "local").unwrap();
        let root = provider.add_key("a").unwrap();
        let old = fs::read(&path).unwrap();

        faults::arm(step, fault);
        if step == Step::Create && fault == Fault::NoSpace {
            // Also a key added under a full disk is not half-added.
            assert_injected(provider.add_key("b"), dir.path(), case);
            assert!(provider
                .list_keys()
                .unwrap()
                .iter()
                .all(|k| k.key.key_id() != "b"));
            faults::arm(step, fault);
        }
        assert_injected(provider.disable_key("a"), dir.path(), case);
        faults::disarm();

        assert_eq!(
            files_in(dir.path()),
            [".root.keys.lock", "root.keys"],
            "{case:?}"
        );
        // The provider reports what the file holds, as a reopened one does.
        let reopened = LocalKeyProvider::open(&path).unwrap();
        let on_disk = reopened.describe_key(&root).await.unwrap();
        assert_eq!(provider.describe_key(&root).await.unwrap(), on_disk);
        if step == Step::SyncDir {
            assert_eq!(
                on_disk,
                KeyState::Disabled,
                "{case:?}: renamed before the fsync"
            );
        } else {
            assert_eq!(fs::read(&path).unwrap(), old, "{case:?}");
            assert_eq!(on_disk, KeyState::Enabled, "{case:?}");
        }
        provider.disable_key("a").unwrap();
        assert_eq!(
            provider.describe_key(&root).await.unwrap(),
            KeyState::Disabled
        );
    }
}

#[tokio::test]
async fn registry_write_faults_lose_nothing() {
    for case @ (step, fault) in ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.state");
        let kms = MockProvider::new();
        let registry = KeyRegistry::open(&path).unwrap();
        registry.add_key(&kms, kms.add_key("a"), &[]).await.unwrap();
        let old = fs::read(&path).unwrap();

        faults::arm(step, fault);
        assert_injected(
            registry.add_key(&kms, kms.add_key("b"), &[]).await,
            dir.path(),
            case,
        );
        faults::disarm();

        assert_eq!(
            files_in(dir.path()),
            [".registry.state.lock", "registry.state"],
            "{case:?}"
        );
        assert_eq!(registry.keys().len(), 1, "{case:?}: memory unchanged");
        let on_disk = KeyRegistry::open(&path).unwrap().keys().len();
        if step == Step::SyncDir {
            assert_eq!(on_disk, 2, "{case:?}");
        } else {
            assert_eq!(fs::read(&path).unwrap(), old, "{case:?}");
            assert_eq!(on_disk, 1, "{case:?}");
        }
    }
}

#[tokio::test]
async fn provider_failures_during_rotation_change_nothing() {
    let MockZone {
        kms, store, zone, ..
    } = mock_zone().await;
    zone.rotate_ezk().await.unwrap();
    let segment = zone.encrypt_segment("s", b"data").unwrap();
    let new_root = kms.add_key("root-2");

    for (fault, expect_transient) in [
        (ProviderFault::Throttled, true),
        (ProviderFault::Unreachable, true),
        (ProviderFault::AccessDenied, false),
    ] {
        let manifest = zone.manifest();
        kms.inject_fault(fault, Some(Operation::Generate), Some(1));
        let err = zone.rotate_ezk().await.unwrap_err();
        assert_eq!(err.is_transient(), expect_transient, "{fault:?}: {err}");

        // Root rotation rewraps every version before it stores anything: a
        // failed wrap leaves the zone under its old root.
        let wraps = kms.calls(Operation::Wrap);
        kms.inject_fault(fault, Some(Operation::Wrap), Some(1));
        let err = zone.rotate_root(new_root.clone()).await.unwrap_err();
        assert_eq!(err.is_transient(), expect_transient, "{fault:?}: {err}");
        assert_eq!(kms.calls(Operation::Wrap), wraps + 1);
        kms.clear_faults();

        assert_eq!(zone.manifest(), manifest, "{fault:?}: manifest unchanged");
        assert_eq!(
            store.load().unwrap().unwrap(),
            manifest.stored_bytes().unwrap()
        );
        assert_eq!(&zone.decrypt_segment("s", &segment).unwrap()[..], b"data");
    }
    zone.rotate_root(new_root.clone()).await.unwrap();
    assert_eq!(zone.root(), new_root);
}

#[tokio::test(start_paused = true)]
async fn the_data_path_ignores_the_provider_slow_or_down() {
    let MockZone { kms, zone, .. } = mock_zone().await;

    // A rotation stuck in a 10-minute provider call blocks no data call.
    kms.set_latency(Duration::from_secs(600));
    let rotation = tokio::spawn({
        let zone = zone.clone();
        async move { zone.rotate_ezk().await }
    });
    tokio::task::yield_now().await;
    let start = tokio::time::Instant::now();
    let segment = zone.encrypt_segment("s", b"data").unwrap();
    assert_eq!(&zone.decrypt_segment("s", &segment).unwrap()[..], b"data");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(rotation.await.unwrap().unwrap(), 2);
    kms.set_latency(Duration::ZERO);

    // Unreachable or throttling: the data path makes no call at all.
    for fault in [ProviderFault::Unreachable, ProviderFault::Throttled] {
        kms.inject_fault(fault, None, None);
        let calls = kms.total_calls();
        let segment = zone.encrypt_segment("t", b"more").unwrap();
        assert_eq!(&zone.decrypt_segment("t", &segment).unwrap()[..], b"more");
        assert_eq!(kms.total_calls(), calls);
        kms.clear_faults();
    }
}

#[tokio::test(start_paused = true)]
async fn opening_through_a_throttling_burst() {
    let MockZone {
        kms,
        keyring,
        store,
        zone,
    } = mock_zone().await;
    let segment = zone.encrypt_segment("s", b"data").unwrap();
    let anchor = zone.anchor();
    drop(zone);

    // A plain open reports the transient error; the caller retries.
    kms.inject_fault(ProviderFault::Throttled, Some(Operation::Unwrap), Some(3));
    let err = keyring.open_zone(store.clone(), &anchor).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");

    // A gated open starts unavailable and the monitor brings it up once
    // the burst is over (its own retries absorb the rest of it).
    let monitor = KeyMonitor::new(MonitorConfig::default());
    let zone = monitor
        .open_zone(&keyring, store.clone(), &anchor)
        .await
        .unwrap();
    assert_eq!(
        zone.availability(),
        crate::zone::ZoneAvailability::Unavailable(KeyState::Unreachable)
    );
    monitor.check_now().await;
    assert!(zone.is_available());
    assert_eq!(&zone.decrypt_segment("s", &segment).unwrap()[..], b"data");
}

#[tokio::test]
async fn file_rewrap_faults_lose_nothing() {
    // Each step of a journaled rewrap: the journal's creation, the header
    // overwrite (the second write and file fsync), the journal's removal
    // (the second directory fsync).
    let cases = [
        (Step::Create, Fault::NoSpace, 0),
        (Step::Write, Fault::NoSpace, 0),
        (Step::Write, Fault::ShortWrite, 0),
        (Step::SyncFile, Fault::SyncFailed, 0),
        (Step::SyncDir, Fault::SyncFailed, 0),
        (Step::Write, Fault::NoSpace, 1),
        (Step::Write, Fault::ShortWrite, 1),
        (Step::SyncFile, Fault::SyncFailed, 1),
        (Step::SyncDir, Fault::SyncFailed, 1),
    ];
    let MockZone { zone, .. } = mock_zone().await;
    let plaintext = vec![7u8; 100_000];
    let segment = zone.encrypt_segment("seg", &plaintext).unwrap();
    zone.rotate_ezk().await.unwrap();

    for case @ (step, fault, skip) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        fs::write(&path, &segment).unwrap();

        faults::arm_nth(step, fault, skip);
        assert_injected(zone.rewrap_file("seg", &path), dir.path(), (step, fault));
        faults::disarm();

        let opens = zone.decrypt_segment("seg", &fs::read(&path).unwrap());
        if (step, fault, skip) == (Step::Write, Fault::ShortWrite, 1) {
            // The header is torn: this is what the journal is for.
            assert!(opens.is_err(), "{case:?}: a torn header must not open");
        } else {
            assert_eq!(&opens.unwrap()[..], &plaintext[..], "{case:?}");
        }

        // Running the rewrap again repairs and finishes it.
        zone.rewrap_file("seg", &path).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            &zone.decrypt_segment("seg", &bytes).unwrap()[..],
            &plaintext[..],
            "{case:?}"
        );
        assert_eq!(
            crate::zone::SegmentHeader::parse(&bytes)
                .unwrap()
                .ezk_version(),
            2
        );
        assert_eq!(files_in(dir.path()), ["seg"], "{case:?}: journal removed");
    }
}

#[tokio::test]
async fn a_torn_header_without_a_usable_journal_is_an_integrity_error() {
    let MockZone { zone, .. } = mock_zone().await;
    let segment = zone.encrypt_segment("seg", b"data").unwrap();
    zone.rotate_ezk().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg");
    let journal = dir.path().join(".seg.cmek-rewrap");

    // An incomplete journal (a crash while it was written) beside an intact
    // segment is dropped, and the rewrap goes on.
    fs::write(&path, &segment).unwrap();
    fs::write(&journal, b"partial").unwrap();
    zone.rewrap_file("seg", &path).unwrap();
    assert_eq!(files_in(dir.path()), ["seg"]);

    // A torn header with an incomplete journal cannot be repaired: say so,
    // and keep the journal and the file for a human to look at.
    let mut torn = segment.to_vec();
    torn[60..90].fill(0);
    fs::write(&path, &torn).unwrap();
    fs::write(&journal, b"partial").unwrap();
    let err = zone.rewrap_file("seg", &path).unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(files_in(dir.path()), [".seg.cmek-rewrap", "seg"]);
}
