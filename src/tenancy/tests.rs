//! The zone set's rules: single-flight opens, failures not kept, bounds,
//! pinning, eviction that zeroizes, anchors reported, monitor hooks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::monitor::{KeyMonitor, MonitorConfig};
use crate::testing::{Fault, MockProvider, Operation};
use crate::zone::{Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneSpec};
use crate::{Error, ErrorKind, KeyState, StateRejection};

/// Each zone's anchor and manifest store.
type Entries = HashMap<ZoneId, (ZoneAnchor, Arc<dyn ManifestStore>)>;

/// A catalog over a map, counting its calls and keeping every anchor it
/// was told of.
struct TestCatalog {
    keyring: Arc<Keyring>,
    zones: Mutex<Entries>,
    locates: AtomicUsize,
    told: Mutex<Vec<ZoneAnchor>>,
    /// Answer every `locate` with this zone's entry instead (a catalog bug).
    misroute: Mutex<Option<ZoneId>>,
}

#[async_trait]
impl ZoneCatalog for TestCatalog {
    async fn locate(&self, id: ZoneId) -> crate::Result<ZoneLocation> {
        self.locates.fetch_add(1, Ordering::SeqCst);
        let id = self.misroute.lock().unwrap().unwrap_or(id);
        let (anchor, store) = self
            .zones
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: "tenant zone",
                location: id.to_string(),
            })?;
        Ok(ZoneLocation {
            anchor,
            store,
            keyring: self.keyring.clone(),
        })
    }

    async fn anchor_changed(&self, anchor: &ZoneAnchor) {
        self.told.lock().unwrap().push(anchor.clone());
        if let Some(entry) = self.zones.lock().unwrap().get_mut(&anchor.zone_id()) {
            entry.0 = anchor.clone();
        }
    }
}

struct Fixture {
    kms: Arc<MockProvider>,
    catalog: Arc<TestCatalog>,
    ids: Vec<ZoneId>,
}

/// `n` zones under one root key, created and closed: the catalog knows
/// them, nothing holds them open.
async fn fixture(n: usize) -> Fixture {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let mut zones = HashMap::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let store: Arc<dyn ManifestStore> = Arc::new(MemoryManifestStore::new());
        let zone = keyring
            .create_zone(
                store.clone(),
                ZoneSpec::new(format!("tenant-{i}"), "mock-region-1", root.clone()),
            )
            .await
            .unwrap();
        ids.push(zone.id());
        zones.insert(zone.id(), (zone.anchor(), store));
    }
    kms.reset_calls();
    Fixture {
        kms,
        catalog: Arc::new(TestCatalog {
            keyring,
            zones: Mutex::new(zones),
            locates: AtomicUsize::new(0),
            told: Mutex::new(Vec::new()),
            misroute: Mutex::new(None),
        }),
        ids,
    }
}

fn set(f: &Fixture, config: ZoneSetConfig) -> Arc<ZoneSet> {
    ZoneSet::new(f.catalog.clone(), config)
}

#[tokio::test]
async fn a_miss_opens_once_and_a_hit_calls_nothing() {
    let f = fixture(1).await;
    let set = set(&f, ZoneSetConfig::default());
    let zone = set.get(f.ids[0]).await.unwrap();
    assert_eq!(zone.id(), f.ids[0]);
    assert_eq!(f.kms.calls(Operation::Unwrap), 1);
    let sealed = zone.encrypt_segment("s", b"tenant data").unwrap();
    drop(zone);
    for _ in 0..10 {
        let again = set.get(f.ids[0]).await.unwrap();
        assert_eq!(
            &again.decrypt_segment("s", &sealed).unwrap()[..],
            b"tenant data"
        );
    }
    assert_eq!(f.kms.total_calls(), 1, "hits make no provider call");
    assert_eq!(f.catalog.locates.load(Ordering::SeqCst), 1);
    assert_eq!(set.len(), 1);
    assert!(set.bytes() > 0);
    assert!(set.get_if_open(f.ids[0]).is_some());
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_open() {
    let f = fixture(1).await;
    f.kms.set_latency(Duration::from_millis(20));
    let set = set(&f, ZoneSetConfig::default());
    let gets: Vec<_> = (0..32)
        .map(|_| {
            let set = set.clone();
            let id = f.ids[0];
            tokio::spawn(async move { set.get(id).await })
        })
        .collect();
    let mut zones = Vec::new();
    for get in gets {
        zones.push(get.await.unwrap().unwrap());
    }
    assert_eq!(f.kms.calls(Operation::Unwrap), 1, "one open for 32 callers");
    assert_eq!(f.catalog.locates.load(Ordering::SeqCst), 1);
    // They all hold the one zone: 32 handles and the set's.
    assert_eq!(zones[0].holders(), 33);
}

#[tokio::test(start_paused = true)]
async fn a_failed_open_reaches_every_waiter_and_is_not_kept() {
    let f = fixture(1).await;
    f.kms.set_latency(Duration::from_millis(20));
    f.kms
        .inject_fault(Fault::Throttled, Some(Operation::Unwrap), Some(1));
    let set = set(&f, ZoneSetConfig::default());
    let gets: Vec<_> = (0..8)
        .map(|_| {
            let set = set.clone();
            let id = f.ids[0];
            tokio::spawn(async move { set.get(id).await })
        })
        .collect();
    for get in gets {
        let err = get.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Throttled { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Retry);
    }
    assert_eq!(f.kms.calls(Operation::Unwrap), 1, "one open failed for all");
    assert!(set.is_empty());
    // Not cached: the next call opens again, and succeeds.
    set.get(f.ids[0]).await.unwrap();
    assert_eq!(f.kms.calls(Operation::Unwrap), 2);
}

#[tokio::test]
async fn catalog_errors_reach_the_caller_and_a_misrouted_anchor_is_refused() {
    let f = fixture(2).await;
    let set = set(&f, ZoneSetConfig::default());
    let unknown = ZoneId::from_bytes([9; 16]);
    let err = set.get(unknown).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");

    *f.catalog.misroute.lock().unwrap() = Some(f.ids[1]);
    let err = set.get(f.ids[0]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::StateRejected {
                reason: StateRejection::ForeignZone { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(f.kms.total_calls(), 0, "refused before any provider call");
    assert!(set.is_empty());
}

#[tokio::test]
async fn eviction_drops_and_zeroizes_the_least_recently_used_idle_zone() {
    let f = fixture(3).await;
    let set = set(&f, ZoneSetConfig::bounded(2, u64::MAX));
    let a = set.get(f.ids[0]).await.unwrap();
    let ezks_a = a.ezk_handles();
    assert!(!ezks_a.is_empty());
    drop(a);
    let b = set.get(f.ids[1]).await.unwrap();
    let ezks_b = b.ezk_handles();
    drop(b);
    // A is used again: B becomes the least recently used.
    drop(set.get(f.ids[0]).await.unwrap());
    drop(set.get(f.ids[2]).await.unwrap());
    assert_eq!(set.len(), 2);
    assert!(set.get_if_open(f.ids[1]).is_none(), "B was evicted");
    assert!(
        ezks_b.iter().all(|w| w.upgrade().is_none()),
        "an evicted zone's EZKs are dropped (SecretKey zeroizes on drop)"
    );
    assert!(ezks_a.iter().all(|w| w.upgrade().is_some()), "A stays");
    // An evicted zone opens again on demand.
    set.get(f.ids[1]).await.unwrap();
    assert_eq!(f.kms.calls(Operation::Unwrap), 4);
}

#[tokio::test]
async fn zones_in_use_are_never_evicted() {
    let f = fixture(3).await;
    let set = set(&f, ZoneSetConfig::bounded(1, u64::MAX));
    let a = set.get(f.ids[0]).await.unwrap();
    let sealed = a.encrypt_segment("s", b"pinned").unwrap();
    // A reader opened from the zone pins it as a handle does.
    let mut reader = a.segment_reader("s", std::io::Cursor::new(sealed)).unwrap();
    let ezks_a = a.ezk_handles();
    drop(a);
    let b = set.get(f.ids[1]).await.unwrap();
    assert!(
        set.get_if_open(f.ids[0]).is_some(),
        "a reader pins its zone"
    );
    assert_eq!(set.len(), 2, "past the bound while every zone is in use");
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
    assert_eq!(out, b"pinned");
    drop(reader);
    drop(b);
    // Both idle now: the next open brings the set back within its bound.
    let _c = set.get(f.ids[2]).await.unwrap();
    assert_eq!(set.len(), 1);
    assert!(ezks_a.iter().all(|w| w.upgrade().is_none()));
}

#[tokio::test]
async fn the_byte_bound_evicts_too() {
    let f = fixture(3).await;
    let probe = set(&f, ZoneSetConfig::default());
    drop(probe.get(f.ids[0]).await.unwrap());
    let one = probe.bytes();
    assert!(one > 1000 && one <= 4096, "estimate {one}");
    // Room for two zones, not three.
    let set = set(&f, ZoneSetConfig::bounded(100, one * 2 + one / 2));
    for id in &f.ids {
        drop(set.get(*id).await.unwrap());
    }
    assert_eq!(set.len(), 2);
    assert!(set.bytes() <= one * 2 + one / 2);
}

#[tokio::test]
async fn explicit_eviction_spares_zones_in_use() {
    let f = fixture(2).await;
    let set = set(&f, ZoneSetConfig::default());
    let a = set.get(f.ids[0]).await.unwrap();
    drop(set.get(f.ids[1]).await.unwrap());
    assert!(!set.evict(f.ids[0]), "in use");
    assert!(set.evict(f.ids[1]));
    assert!(!set.evict(f.ids[1]), "gone already");
    drop(a);
    assert_eq!(set.evict_idle(), 1);
    assert!(set.is_empty());
    assert_eq!(set.bytes(), 0);
}

#[tokio::test]
async fn many_evictions_and_reopens_keep_the_clock_bounded() {
    let f = fixture(4).await;
    let set = set(&f, ZoneSetConfig::bounded(2, u64::MAX));
    for round in 0..50 {
        let id = f.ids[round % 4];
        drop(set.get(id).await.unwrap());
        if round % 3 == 0 {
            set.evict(id);
        }
    }
    assert!(set.len() <= 2);
    assert!(set.clock_len() <= 2 * set.len() + 17);
}

#[tokio::test]
async fn anchor_changes_reach_the_catalog() {
    let f = fixture(1).await;
    let set = set(&f, ZoneSetConfig::default());
    let zone = set.get(f.ids[0]).await.unwrap();
    let before = zone.anchor().min_generation();
    zone.rotate_ezk().await.unwrap();
    let want = zone.anchor();
    assert!(want.min_generation() > before);
    // Told from a task: wait for it (bounded).
    for _ in 0..200 {
        if f.catalog.told.lock().unwrap().last() == Some(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(f.catalog.told.lock().unwrap().last(), Some(&want));
    // Evicted and reopened, the zone opens from the anchor the catalog
    // was told of.
    drop(zone);
    assert!(set.evict(f.ids[0]));
    let again = set.get(f.ids[0]).await.unwrap();
    assert_eq!(again.anchor(), want);
}

#[tokio::test]
async fn with_a_monitor_opened_zones_are_gated_and_evicted_ones_unwatched() {
    let f = fixture(2).await;
    let monitor = KeyMonitor::new(MonitorConfig::with_interval(Duration::from_secs(600)));
    let config = ZoneSetConfig {
        monitor: Some(monitor.clone()),
        ..ZoneSetConfig::default()
    };
    let set = set(&f, config);
    let a = set.get(f.ids[0]).await.unwrap();
    drop(set.get(f.ids[1]).await.unwrap());

    assert!(f.kms.disable_key("root"));
    let report = monitor.check_now().await;
    assert_eq!(
        report.zones.len(),
        2,
        "both zones the set opened are watched"
    );
    assert_eq!(
        report.zone_availability(f.ids[0]),
        Some(crate::zone::ZoneAvailability::Unavailable(
            KeyState::Disabled
        ))
    );
    assert!(matches!(
        a.encrypt_segment("s", b"x"),
        Err(Error::ZoneUnavailable { .. })
    ));

    assert!(set.evict(f.ids[1]));
    let report = monitor.check_now().await;
    assert_eq!(
        report.zones.len(),
        1,
        "the evicted zone is no longer watched"
    );

    // A zone whose key is unusable opens gated rather than failing.
    drop(a);
    assert!(set.evict(f.ids[0]));
    let gated = set.get(f.ids[0]).await.unwrap();
    assert!(!gated.is_available());
    assert!(f.kms.enable_key("root"));
    monitor.check_now().await;
    assert!(gated.is_available());
}

#[test]
fn an_open_cut_short_by_its_runtime_is_forgotten() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let f = first.block_on(fixture(1));
    let set = set(&f, ZoneSetConfig::default());
    f.kms.set_latency(Duration::from_secs(3600));
    first.block_on(async {
        let get = tokio::time::timeout(Duration::from_millis(20), set.get(f.ids[0])).await;
        assert!(get.is_err(), "still opening");
    });
    // The runtime goes, and the open task with it.
    drop(first);
    f.kms.set_latency(Duration::ZERO);
    let zone = runtime().block_on(set.get(f.ids[0])).unwrap();
    assert_eq!(zone.id(), f.ids[0]);
    assert_eq!(set.len(), 1);
}

#[tokio::test]
async fn a_change_just_before_eviction_still_reaches_the_catalog() {
    let f = fixture(1).await;
    let set = set(&f, ZoneSetConfig::default());
    let zone = set.get(f.ids[0]).await.unwrap();
    zone.rotate_ezk().await.unwrap();
    let want = zone.anchor();
    drop(zone);
    // Evicted at once: the zone, and its anchor channel, are gone before
    // the reporting task may have run.
    assert!(set.evict(f.ids[0]));
    for _ in 0..200 {
        if f.catalog.told.lock().unwrap().contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(f.catalog.told.lock().unwrap().last(), Some(&want));
}
