//! Verdicts shared by simulated nodes on one store, on a paused tokio
//! clock: one check per key per interval, a lease holder killed
//! mid-check, a stale verdict that gates, and hostile records.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::verdict::{now_ms, Lease, Record, Verdict};
use super::*;
use crate::secret::SecretKey;
use crate::testing::{Fault, MockProvider, Operation};
use crate::zone::{MemoryManifestStore, ZoneSpec};
use crate::Result;

const INTERVAL: Duration = Duration::from_secs(600);

fn secret() -> SecretKey {
    SecretKey::from_slice(&[7u8; 32]).unwrap()
}

fn node(store: &Arc<InMemoryVerdictStore>, i: usize, config: MonitorConfig) -> Arc<KeyMonitor> {
    let shared = SharedVerdicts::new(store.clone(), format!("node-{i}"), &secret()).unwrap();
    KeyMonitor::with_shared_verdicts(config, shared)
}

/// `n` nodes on one store, each watching `keys`.
fn cluster(
    store: &Arc<InMemoryVerdictStore>,
    kms: &Arc<MockProvider>,
    keys: &[KeyRef],
    n: usize,
    config: &MonitorConfig,
) -> Vec<Arc<KeyMonitor>> {
    (0..n)
        .map(|i| {
            let monitor = node(store, i, config.clone());
            for key in keys {
                monitor.watch_key(key.clone(), kms.clone());
            }
            monitor
        })
        .collect()
}

async fn check_all(nodes: &[Arc<KeyMonitor>]) -> Vec<CheckReport> {
    let tasks: Vec<_> = nodes
        .iter()
        .map(|m| {
            let m = m.clone();
            tokio::spawn(async move { m.check_now().await })
        })
        .collect();
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await.unwrap());
    }
    reports
}

/// Sleeps to just after the start of the next interval, where nodes
/// sharing verdicts check.
async fn next_interval() {
    let interval = INTERVAL.as_millis() as u64;
    let now = now_ms();
    tokio::time::sleep(Duration::from_millis(interval - now % interval + 1)).await;
}

#[tokio::test(start_paused = true)]
async fn one_monitor_checks_a_key_once_however_many_zones_use_it() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let monitor = KeyMonitor::new(MonitorConfig::with_interval(INTERVAL));
    let mut zones = Vec::new();
    for i in 0..25 {
        let zone = keyring
            .create_zone(
                Arc::new(MemoryManifestStore::new()),
                ZoneSpec::new(format!("z{i}"), "mock-region-1", root.clone()),
            )
            .await
            .unwrap();
        monitor.watch_zone(&zone);
        zones.push(zone);
    }
    monitor.watch_key(root.clone(), kms.clone());
    kms.reset_calls();
    let report = monitor.check_now().await;
    assert_eq!(report.keys.len(), 1);
    assert_eq!(report.zones.len(), 25);
    assert_eq!(kms.calls(Operation::Describe), 1);
    // The test wrap: one wrap and one unwrap.
    assert_eq!(kms.total_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn sixteen_nodes_check_each_key_once_per_interval() {
    let kms = Arc::new(MockProvider::new());
    let keys: Vec<KeyRef> = (0..200).map(|i| kms.add_key(&format!("k{i}"))).collect();
    let store = InMemoryVerdictStore::new();
    let config = MonitorConfig::with_interval(INTERVAL);
    let nodes = cluster(&store, &kms, &keys, 16, &config);
    for round in 1..=3u64 {
        next_interval().await;
        let reports = check_all(&nodes).await;
        for report in &reports {
            assert_eq!(report.keys.len(), 200);
            assert!(report.keys.iter().all(|(_, s)| *s == KeyState::Enabled));
            assert!(!report.retry_soon);
        }
        assert_eq!(kms.calls(Operation::Describe), 200 * round, "round {round}");
    }
    // A disabled key is seen by every node from the next interval on,
    // through one check.
    kms.disable_key("k7");
    next_interval().await;
    let before = kms.calls(Operation::Describe);
    let reports = check_all(&nodes).await;
    for report in &reports {
        assert_eq!(report.key_state(&keys[7]), Some(KeyState::Disabled));
    }
    assert_eq!(kms.calls(Operation::Describe) - before, 200);
}

#[tokio::test(start_paused = true)]
async fn a_lease_holder_killed_mid_check_costs_at_most_one_interval() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let store = InMemoryVerdictStore::new();
    let config = MonitorConfig::with_interval(INTERVAL);
    let nodes = cluster(&store, &kms, std::slice::from_ref(&root), 16, &config);
    // Zones on every node, opened while the key was enabled.
    let manifests = Arc::new(MemoryManifestStore::new());
    let created = Keyring::new(kms.clone())
        .create_zone(
            manifests.clone(),
            ZoneSpec::new("orders", "mock-region-1", root.clone()),
        )
        .await
        .unwrap();
    let mut zones = Vec::new();
    for monitor in &nodes {
        let zone = Keyring::new(kms.clone())
            .open_zone(manifests.clone(), &created.anchor())
            .await
            .unwrap();
        monitor.watch_zone(&zone);
        zones.push(zone);
    }

    next_interval().await;
    let interval_start = now_ms();
    // Node 0 takes the lease and hangs in its check; it is killed there.
    kms.set_latency(Duration::from_secs(20));
    kms.reset_calls();
    let holder = {
        let m = nodes[0].clone();
        tokio::spawn(async move { m.check_now().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(kms.calls(Operation::Describe), 1);
    let record =
        nodes[0]
            .shared
            .as_ref()
            .unwrap()
            .open(&root, &store.raw(&root).unwrap(), now_ms());
    assert_eq!(record.unwrap().lease.unwrap().holder, "node-0");
    holder.abort();
    // Meanwhile the key's owner revoked it.
    kms.set_latency(Duration::ZERO);
    kms.disable_key("root");

    let reports = check_all(&nodes[1..]).await;
    let took = now_ms() - interval_start;
    // The others waited for the lease to run out (60 s), then one of them
    // checked: within the interval, with one more check.
    assert!(took >= 60_000, "{took}");
    assert!(took < INTERVAL.as_millis() as u64, "{took}");
    assert_eq!(kms.calls(Operation::Describe), 2);
    for report in &reports {
        assert_eq!(report.key_state(&root), Some(KeyState::Disabled));
    }
    for zone in &zones[1..] {
        assert_eq!(
            zone.availability(),
            ZoneAvailability::Unavailable(KeyState::Disabled)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_verdict_older_than_the_grace_gates_every_node() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let store = InMemoryVerdictStore::new();
    let grace = Duration::from_secs(1800);
    let config = MonitorConfig {
        unreachable: UnreachablePolicy::GracePeriod(grace),
        ..MonitorConfig::with_interval(INTERVAL)
    };
    let nodes = cluster(&store, &kms, std::slice::from_ref(&root), 4, &config);
    let manifests = Arc::new(MemoryManifestStore::new());
    let created = Keyring::new(kms.clone())
        .create_zone(
            manifests.clone(),
            ZoneSpec::new("orders", "mock-region-1", root.clone()),
        )
        .await
        .unwrap();
    let mut zones = Vec::new();
    for monitor in &nodes {
        let zone = Keyring::new(kms.clone())
            .open_zone(manifests.clone(), &created.anchor())
            .await
            .unwrap();
        monitor.watch_zone(&zone);
        zones.push(zone);
    }
    next_interval().await;
    check_all(&nodes).await;
    let confirmed = now_ms();
    assert!(zones.iter().all(Zone::is_available));

    // The provider goes dark for everyone: each interval one node finds it
    // unreachable and says so; the last usable verdict ages.
    kms.inject_fault(Fault::Unreachable, None, None);
    loop {
        next_interval().await;
        check_all(&nodes).await;
        let age = Duration::from_millis(now_ms() - confirmed);
        if age <= grace {
            assert!(
                zones.iter().all(Zone::is_available),
                "gated early at {age:?}"
            );
        } else {
            for zone in &zones {
                assert_eq!(
                    zone.availability(),
                    ZoneAvailability::Unavailable(KeyState::Unreachable),
                    "still serving {age:?} after the last usable verdict"
                );
            }
            break;
        }
    }
    // Checks stay one per key per interval (plus the retries of an
    // unreachable provider), not one per node.
    let record =
        nodes[0]
            .shared
            .as_ref()
            .unwrap()
            .open(&root, &store.raw(&root).unwrap(), now_ms());
    let verdict = record.unwrap().verdict.unwrap();
    assert_eq!(verdict.state, KeyState::Unreachable);
    assert!(verdict.last_usable_ms <= confirmed);
}

#[tokio::test(start_paused = true)]
async fn forged_moved_or_replayed_records_never_open_a_gate() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let other = kms.add_key("other");
    let store = InMemoryVerdictStore::new();
    let config = MonitorConfig::with_interval(INTERVAL);
    let monitor = node(&store, 1, config.clone());
    let manifests = Arc::new(MemoryManifestStore::new());
    let zone = Keyring::new(kms.clone())
        .create_zone(
            manifests,
            ZoneSpec::new("orders", "mock-region-1", root.clone()),
        )
        .await
        .unwrap();
    monitor.watch_zone(&zone);
    let honest = monitor.shared.clone().unwrap();
    let attacker =
        SharedVerdicts::new(store.clone(), "attacker", &SecretKey::generate().unwrap()).unwrap();

    next_interval().await;
    let usable = |at: u64| Record {
        lease: Some(Lease {
            holder: "node-9".into(),
            until_ms: at + 3_600_000,
        }),
        verdict: Some(Verdict {
            state: KeyState::Enabled,
            checked_at_ms: at,
            by: "node-9".into(),
            last_usable_ms: at,
        }),
    };
    let now = now_ms();
    let forgeries: Vec<(&str, Bytes)> = vec![
        ("garbage", Bytes::from_static(b"enabled, trust me")),
        ("empty", Bytes::new()),
        (
            "sealed under another secret",
            attacker.seal(&root, &usable(now)).unwrap(),
        ),
        (
            "another key's authentic record",
            honest.seal(&other, &usable(now)).unwrap(),
        ),
        (
            "an authentic verdict of an earlier interval",
            honest
                .seal(
                    &root,
                    &Record {
                        lease: None,
                        ..usable(now - INTERVAL.as_millis() as u64)
                    },
                )
                .unwrap(),
        ),
        ("truncated", {
            let b = honest.seal(&root, &usable(now)).unwrap();
            b.slice(..b.len() - 1)
        }),
    ];
    for (what, forged) in forgeries {
        kms.disable_key("root");
        store.tamper(&root, forged);
        kms.reset_calls();
        let report = monitor.check_now().await;
        assert_eq!(report.key_state(&root), Some(KeyState::Disabled), "{what}");
        assert_eq!(
            zone.availability(),
            ZoneAvailability::Unavailable(KeyState::Disabled),
            "{what}"
        );
        assert_eq!(kms.calls(Operation::Describe), 1, "{what}: checked itself");
        // Reset: the key back, the zone serving, for the next forgery.
        kms.enable_key("root");
        store.tamper(&root, Bytes::new());
        monitor.check_now().await;
        assert!(zone.is_available(), "{what}");
    }
}

/// A store whose every write loses, as if someone kept overwriting it.
#[derive(Debug)]
struct Contested(Arc<InMemoryVerdictStore>);

#[async_trait::async_trait]
impl VerdictStore for Contested {
    async fn load(&self, key: &KeyRef) -> Result<Option<(Bytes, RecordVersion)>> {
        self.0.load(key).await
    }
    async fn swap(&self, _: &KeyRef, _: Option<&RecordVersion>, _: Bytes) -> Result<RecordVersion> {
        Err(crate::Error::Conflict {
            what: "verdict record",
            reason: "contested".into(),
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_that_refuses_every_lease_costs_calls_not_safety() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let store: Arc<dyn VerdictStore> = Arc::new(Contested(InMemoryVerdictStore::new()));
    let shared = SharedVerdicts::new(store, "node-1", &secret()).unwrap();
    let monitor = KeyMonitor::with_shared_verdicts(MonitorConfig::with_interval(INTERVAL), shared);
    monitor.watch_key(root.clone(), kms.clone());
    kms.disable_key("root");
    let report = monitor.check_now().await;
    assert_eq!(report.key_state(&root), Some(KeyState::Disabled));
    assert_eq!(kms.calls(Operation::Describe), 1);
}

#[test]
fn records_round_trip_and_every_change_is_refused() {
    let store = InMemoryVerdictStore::new();
    let shared = SharedVerdicts::new(store, "node-1", &secret()).unwrap();
    let key = KeyRef::new("mock", "root", "mock-region-1");
    let record = Record {
        lease: Some(Lease {
            holder: "node-1".into(),
            until_ms: 2_000,
        }),
        verdict: Some(Verdict {
            state: KeyState::Disabled,
            checked_at_ms: 1_000,
            by: "node-2".into(),
            last_usable_ms: 500,
        }),
    };
    let sealed = shared.seal(&key, &record).unwrap();
    assert_eq!(shared.open(&key, &sealed, 1_000).unwrap(), record);
    for len in 0..sealed.len() {
        assert!(shared.open(&key, &sealed[..len], 1_000).is_err(), "{len}");
    }
    for i in 0..sealed.len() {
        let mut bad = sealed.to_vec();
        bad[i] ^= 0x01;
        assert!(shared.open(&key, &bad, 1_000).is_err(), "byte {i}");
    }
    // From the future (beyond the skew allowed): refused.
    let future = Record {
        verdict: Some(Verdict {
            checked_at_ms: 100_000,
            ..record.verdict.clone().unwrap()
        }),
        ..record.clone()
    };
    let sealed = shared.seal(&key, &future).unwrap();
    assert!(shared.open(&key, &sealed, 90_000).is_err());
    assert!(shared.open(&key, &sealed, 96_000).is_ok());
    assert!(SharedVerdicts::new(InMemoryVerdictStore::new(), "", &secret()).is_err());
}

#[test]
fn verdict_record_version_1_known_answer() {
    let shared = SharedVerdicts::new(InMemoryVerdictStore::new(), "n1", &secret()).unwrap();
    let key = KeyRef::new("mock", "root", "r");
    let record = Record {
        lease: Some(Lease {
            holder: "n1".into(),
            until_ms: 1_700_000_060_000,
        }),
        verdict: Some(Verdict {
            state: KeyState::Disabled,
            checked_at_ms: 1_700_000_000_000,
            by: "n2".into(),
            last_usable_ms: 1_699_999_400_000,
        }),
    };
    let sealed = shared.seal(&key, &record).unwrap();
    let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, KNOWN);
    // The tag, recomputed with an independent HMAC-SHA256 (ring): HKDF
    // extract and expand, as docs/FORMAT.md describes.
    let hkdf = |ikm: &[u8], salt: &[u8], info: &[u8]| {
        let zero = [0u8; 32];
        let salt = if salt.is_empty() { &zero[..] } else { salt };
        let prk = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt), ikm);
        let okm = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, prk.as_ref()),
            &[info, &[1u8]].concat(),
        );
        okm.as_ref().to_vec()
    };
    let mac_key = hkdf(&[7u8; 32], b"", b"cmek verdict record mac key v1");
    let (body, tag) = sealed.split_at(sealed.len() - 32);
    assert_eq!(hkdf(body, &mac_key, b"cmek verdict record tag v1"), tag);
    assert_eq!(
        shared.open(&key, &sealed, 1_700_000_000_000).unwrap(),
        record
    );
}

/// The record above, sealed under the secret `07` × 32 (docs/FORMAT.md).
const KNOWN: &str = concat!(
    "434d454b56524454",
    "0001",
    "000b6d6f636b3a723a726f6f74",
    "01",
    "00026e31",
    "0000018bcfe65260",
    "01",
    "02",
    "0000018bcfe56800",
    "00026e32",
    "0000018bcfdc4040",
    "1f85cc0c3868f4c673dd12606f3b363370d270a995f9a8b190db0f3568324119",
);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn checks_made_verdicts_read_and_gated_zones_are_recorded() {
    let recorded = crate::metrics::test_recorder::Recorded::default();
    let _guard = metrics::set_default_local_recorder(&recorded);
    let kms = Arc::new(MockProvider::new());
    let keys: Vec<KeyRef> = (0..10).map(|i| kms.add_key(&format!("k{i}"))).collect();
    let store = InMemoryVerdictStore::new();
    let config = MonitorConfig::with_interval(INTERVAL);
    let nodes = cluster(&store, &kms, &keys, 4, &config);
    let zone = Keyring::new(kms.clone())
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", "mock-region-1", keys[3].clone()),
        )
        .await
        .unwrap();
    nodes[2].watch_zone(&zone);
    kms.disable_key("k3");
    next_interval().await;
    check_all(&nodes).await;
    let checks: u64 = ["enabled", "disabled"]
        .iter()
        .map(|o| recorded.counter(&format!("cmek_monitor_key_checks_total{{outcome={o}}}")))
        .sum();
    assert_eq!(checks, 10);
    assert_eq!(
        recorded.counter("cmek_monitor_key_checks_total{outcome=disabled}"),
        1
    );
    assert_eq!(
        recorded.counter("cmek_monitor_verdicts_read_total{outcome=used}"),
        30
    );
    assert_eq!(
        recorded.counter("cmek_monitor_leases_total{outcome=won}"),
        10
    );
    // The last node to finish sets the gauge; run node 2 alone to read it.
    nodes[2].check_now().await;
    assert_eq!(recorded.gauge("cmek_monitor_gated_zones"), 1.0);
    assert!(recorded.names().iter().all(|n| !n.contains("k3")));
}

#[tokio::test(start_paused = true)]
async fn running_nodes_check_at_the_start_of_each_interval() {
    let kms = Arc::new(MockProvider::new());
    let keys: Vec<KeyRef> = (0..20).map(|i| kms.add_key(&format!("k{i}"))).collect();
    let store = InMemoryVerdictStore::new();
    let config = MonitorConfig::with_interval(INTERVAL);
    let nodes = cluster(&store, &kms, &keys, 3, &config);
    // Started a third of the way into an interval, at different moments.
    next_interval().await;
    tokio::time::sleep(INTERVAL / 3).await;
    let mut handles = Vec::new();
    for node in &nodes {
        handles.push(node.spawn());
        tokio::time::sleep(Duration::from_secs(7)).await;
    }
    // Each loop checked at once: one check per key for this interval.
    assert_eq!(kms.calls(Operation::Describe), 20);
    // Then once per key at the start of each of the next three intervals.
    for round in 2..=4u64 {
        next_interval().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            kms.calls(Operation::Describe),
            20 * round,
            "interval {round}"
        );
    }
    drop(handles);
}
