//! The monitor on a paused tokio clock, against the mock provider's state
//! changes and faults.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;

use super::*;
use crate::testing::{Fault, MockProvider, Operation};
use crate::zone::{MemoryManifestStore, ZoneSpec};
use crate::Error;

const INTERVAL: Duration = Duration::from_secs(600);

struct Fixture {
    kms: Arc<MockProvider>,
    root: KeyRef,
    keyring: Arc<Keyring>,
    store: Arc<MemoryManifestStore>,
    zone: Zone,
    /// A segment written while the key was enabled.
    segment: bytes::Bytes,
}

const PLAINTEXT: &[u8] = b"rows of a table that only the key's owner may read";

async fn fixture() -> Fixture {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", "mock-region-1", root.clone()),
        )
        .await
        .unwrap();
    let segment = zone.encrypt_segment("seg-1", PLAINTEXT).unwrap();
    Fixture {
        kms,
        root,
        keyring,
        store,
        zone,
        segment,
    }
}

fn config() -> MonitorConfig {
    MonitorConfig::with_interval(INTERVAL)
}

/// Asserts that every data call of `zone` is refused with `state`.
fn assert_refused(zone: &Zone, segment: &[u8], state: KeyState) {
    for result in [
        zone.decrypt_segment("seg-1", segment).map(drop),
        zone.encrypt_segment("seg-2", b"new data").map(drop),
        zone.segment_reader("seg-1", segment).map(drop),
        zone.segment_writer("seg-3", Vec::new()).map(drop),
        zone.rewrap_header("seg-1", &segment[..crate::zone::SEGMENT_HEADER_LEN])
            .map(drop),
    ] {
        match result {
            Err(Error::ZoneUnavailable { state: s, .. }) => assert_eq!(s, state),
            other => panic!("expected ZoneUnavailable({state}), got {other:?}"),
        }
    }
    assert_eq!(zone.availability(), ZoneAvailability::Unavailable(state));
}

fn assert_serves(segment: &[u8], zone: &Zone) {
    assert!(zone.is_available(), "{:?}", zone.availability());
    assert_eq!(
        &zone.decrypt_segment("seg-1", segment).unwrap()[..],
        PLAINTEXT
    );
    zone.encrypt_segment("seg-9", b"more").unwrap();
}

fn drain(rx: &mut broadcast::Receiver<MonitorEvent>) -> Vec<MonitorEvent> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(TryRecvError::Empty) => return events,
            Err(e) => panic!("event channel: {e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn disable_then_enable_gates_the_zone_within_one_interval() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&f.zone);
    let mut events = monitor.subscribe();
    let _loop = monitor.spawn();

    // The first check runs at once and finds everything well.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(monitor.key_status(&f.root), Some(KeyState::Enabled));
    assert_serves(&f.segment, &f.zone);
    let first = drain(&mut events);
    assert!(matches!(
        &first[..],
        [MonitorEvent::KeyStatusChanged {
            old: None,
            new: KeyState::Enabled,
            ..
        }]
    ));

    let ezks = f.zone.ezk_handles();
    assert!(ezks.iter().all(|w| w.upgrade().is_some()));
    assert!(f.kms.disable_key("root"));

    // Still serving until the next check is due...
    tokio::time::sleep(INTERVAL - Duration::from_secs(2)).await;
    assert_serves(&f.segment, &f.zone);
    // ...and refused once it ran: within one interval of the change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_refused(&f.zone, &f.segment, KeyState::Disabled);
    assert!(
        ezks.iter().all(|w| w.upgrade().is_none()),
        "the EZK plaintext must be dropped (SecretKey zeroizes on drop)"
    );
    let stopped = drain(&mut events);
    assert!(stopped.contains(&MonitorEvent::KeyStatusChanged {
        key: f.root.clone(),
        old: Some(KeyState::Enabled),
        new: KeyState::Disabled,
        at: stopped[0].at(),
    }));
    assert!(stopped.iter().any(|e| matches!(e,
        MonitorEvent::ZoneAvailabilityChanged { zone, old: ZoneAvailability::Available,
            new: ZoneAvailability::Unavailable(KeyState::Disabled), .. } if *zone == f.zone.id())));

    // Rotation needs the key material too.
    assert!(matches!(
        f.zone.rotate_ezk().await,
        Err(Error::ZoneUnavailable {
            state: KeyState::Disabled,
            ..
        })
    ));

    // Enabled again: back within one interval, on the same Zone handle.
    assert!(f.kms.enable_key("root"));
    tokio::time::sleep(INTERVAL).await;
    assert_serves(&f.segment, &f.zone);
    let back = drain(&mut events);
    assert!(back.iter().any(|e| matches!(
        e,
        MonitorEvent::ZoneAvailabilityChanged {
            new: ZoneAvailability::Available,
            old: ZoneAvailability::Unavailable(KeyState::Disabled),
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn every_unusable_state_stops_the_zone() {
    for state in [
        KeyState::Disabled,
        KeyState::PendingDeletion,
        KeyState::NotFound,
        KeyState::Unavailable,
    ] {
        let f = fixture().await;
        let monitor = KeyMonitor::new(config());
        monitor.watch_zone(&f.zone);
        assert!(f.kms.set_key_state("root", state));
        let report = monitor.check_now().await;
        assert_eq!(report.key_state(&f.root), Some(state));
        assert_eq!(
            report.zone_availability(f.zone.id()),
            Some(ZoneAvailability::Unavailable(state))
        );
        assert_refused(&f.zone, &f.segment, state);
    }
}

#[tokio::test(start_paused = true)]
async fn a_zone_opened_while_its_key_is_disabled_waits_for_a_good_check() {
    let f = fixture().await;
    let anchor = f.zone.anchor();
    drop(f.zone);
    assert!(f.kms.disable_key("root"));

    let monitor = KeyMonitor::new(config());
    let zone = monitor
        .open_zone(&f.keyring, f.store.clone(), &anchor)
        .await
        .unwrap();
    assert_refused(&zone, &f.segment, KeyState::Disabled);
    // A plain open still fails: only the gated open defers.
    assert!(f.keyring.open_zone(f.store.clone(), &anchor).await.is_err());

    monitor.check_now().await;
    assert_refused(&zone, &f.segment, KeyState::Disabled);

    // Re-enabling the key alone does not open the zone: a check must see it.
    assert!(f.kms.enable_key("root"));
    assert_refused(&zone, &f.segment, KeyState::Disabled);
    let unwraps = f.kms.calls(Operation::Unwrap);
    let report = monitor.check_now().await;
    assert_eq!(
        report.zone_availability(zone.id()),
        Some(ZoneAvailability::Available)
    );
    assert_serves(&f.segment, &zone);
    // The test round trip unwraps once, recovery once per EZK version.
    assert_eq!(f.kms.calls(Operation::Unwrap), unwraps + 2);
}

#[tokio::test(start_paused = true)]
async fn unreachable_fails_closed_when_configured() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(MonitorConfig {
        unreachable: UnreachablePolicy::FailClosed,
        ..config()
    });
    monitor.watch_zone(&f.zone);
    let _loop = monitor.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_serves(&f.segment, &f.zone);

    f.kms.inject_fault(Fault::Unreachable, None, None);
    // The check due at the interval retries twice (1 s, then 2 s) before it
    // calls the provider unreachable: the bound is one interval plus one
    // check's duration.
    tokio::time::sleep(INTERVAL).await;
    assert_serves(&f.segment, &f.zone);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_refused(&f.zone, &f.segment, KeyState::Unreachable);

    // Unsettled: the next check comes after the retry interval, not the
    // full interval.
    f.kms.clear_faults();
    tokio::time::sleep(monitor.config().retry_interval).await;
    assert_serves(&f.segment, &f.zone);
}

#[tokio::test(start_paused = true)]
async fn unreachable_serves_for_the_grace_period_after_the_last_good_check() {
    let f = fixture().await;
    let grace = Duration::from_secs(30 * 60);
    let monitor = KeyMonitor::new(MonitorConfig {
        unreachable: UnreachablePolicy::GracePeriod(grace),
        ..config()
    });
    assert_eq!(monitor.config().unreachable, UnreachablePolicy::default());
    monitor.watch_zone(&f.zone);
    let _loop = monitor.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_good = tokio::time::Instant::now();

    f.kms.inject_fault(Fault::Unreachable, None, None);
    tokio::time::sleep(grace - Duration::from_secs(60)).await;
    assert_eq!(monitor.key_status(&f.root), Some(KeyState::Unreachable));
    assert_serves(&f.segment, &f.zone);

    // Past the grace period (plus one retry interval and a check) it stops.
    tokio::time::sleep_until(last_good + grace + monitor.config().retry_interval * 2).await;
    assert_refused(&f.zone, &f.segment, KeyState::Unreachable);

    f.kms.clear_faults();
    tokio::time::sleep(monitor.config().retry_interval * 2).await;
    assert_serves(&f.segment, &f.zone);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_seen_during_the_grace_period_still_stops_at_once() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&f.zone);
    monitor.check_now().await;
    f.kms.inject_fault(Fault::Unreachable, None, None);
    monitor.check_now().await;
    assert_serves(&f.segment, &f.zone);
    f.kms.clear_faults();
    assert!(f.kms.schedule_key_deletion("root"));
    monitor.check_now().await;
    assert_refused(&f.zone, &f.segment, KeyState::PendingDeletion);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_within_one_check() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&f.zone);
    f.kms.reset_calls();
    f.kms
        .inject_fault(Fault::Unreachable, Some(Operation::Describe), Some(2));
    f.kms
        .inject_fault(Fault::Throttled, Some(Operation::Wrap), Some(2));
    let report = monitor.check_now().await;
    assert_eq!(report.key_state(&f.root), Some(KeyState::Enabled));
    assert!(!report.retry_soon);
    assert_eq!(f.kms.calls(Operation::Describe), 3);
    assert_eq!(f.kms.calls(Operation::Wrap), 3);
    assert_serves(&f.segment, &f.zone);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_provider_counts_as_unreachable_after_the_timeout() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(MonitorConfig {
        unreachable: UnreachablePolicy::FailClosed,
        ..config()
    });
    monitor.watch_zone(&f.zone);
    f.kms.set_latency(Duration::from_secs(3600));
    let report = monitor.check_now().await;
    assert_eq!(report.key_state(&f.root), Some(KeyState::Unreachable));
    assert!(report.took >= monitor.config().check_timeout);
    assert!(report.took < monitor.config().check_timeout + Duration::from_secs(1));
    assert_eq!(
        f.zone.availability(),
        ZoneAvailability::Unavailable(KeyState::Unreachable)
    );
}

#[tokio::test(start_paused = true)]
async fn the_test_wrap_catches_revoked_permissions_that_describe_misses() {
    let f = fixture().await;
    f.kms
        .inject_fault(Fault::AccessDenied, Some(Operation::Unwrap), None);

    let describe_only = KeyMonitor::new(MonitorConfig {
        test_wrap: false,
        ..config()
    });
    describe_only.watch_zone(&f.zone);
    describe_only.check_now().await;
    assert!(f.zone.is_available());
    describe_only.unwatch_zone(f.zone.id());

    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&f.zone);
    let report = monitor.check_now().await;
    assert_eq!(report.key_state(&f.root), Some(KeyState::AccessDenied));
    assert_refused(&f.zone, &f.segment, KeyState::AccessDenied);
}

#[tokio::test(start_paused = true)]
async fn registered_keys_are_checked_and_dropped_zones_forgotten() {
    let f = fixture().await;
    let spare = f.kms.add_key("spare");
    let monitor = KeyMonitor::new(config());
    let mut events = monitor.subscribe();
    monitor.watch_key(spare.clone(), f.kms.clone());
    monitor.watch_zone(&f.zone);
    let report = monitor.check_now().await;
    assert_eq!(report.keys.len(), 2);
    assert_eq!(report.zones.len(), 1);
    assert_eq!(drain(&mut events).len(), 2);

    // A key no zone uses reports its changes too.
    assert!(f.kms.disable_key("spare"));
    monitor.check_now().await;
    assert_eq!(monitor.key_status(&spare), Some(KeyState::Disabled));
    let events_now = drain(&mut events);
    assert_eq!(events_now.len(), 1);
    assert_eq!(events_now[0].key(), &spare);
    assert!(events_now[0].to_string().contains("enabled -> disabled"));
    assert!(f.zone.is_available());

    // Dropping every clone of the zone forgets it and, with it, its key.
    drop(f.zone);
    let report = monitor.check_now().await;
    assert!(report.zones.is_empty());
    assert_eq!(report.keys, vec![(spare.clone(), KeyState::Disabled)]);
    monitor.unwatch_key(&spare);
    assert!(monitor.check_now().await.keys.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_rotation_committed_while_unavailable_installs_no_key() {
    let f = fixture().await;
    f.kms.set_latency(Duration::from_secs(5));
    let monitor = KeyMonitor::new(MonitorConfig {
        test_wrap: false,
        ..config()
    });
    monitor.watch_zone(&f.zone);
    // The rotation's provider call is in flight when the key is revoked and
    // the zone is marked unavailable.
    let rotation = tokio::spawn({
        let zone = f.zone.clone();
        async move { zone.rotate_ezk().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    f.kms.set_latency(Duration::ZERO);
    assert!(f.kms.disable_key("root"));
    monitor.check_now().await;
    assert!(!f.zone.is_available());
    // Back before the rotation's call completes, so the call succeeds; the
    // zone stays dark until a check sees the key.
    assert!(f.kms.enable_key("root"));
    assert_eq!(rotation.await.unwrap().unwrap(), 2);
    assert_refused(&f.zone, &f.segment, KeyState::Disabled);
    assert!(f.zone.ezk_handles().is_empty());

    // Recovery unwraps both versions from the manifest the rotation stored.
    monitor.check_now().await;
    assert_eq!(f.zone.active_version(), 2);
    assert_eq!(f.zone.ezk_handles().len(), 2);
    assert_serves(&f.segment, &f.zone);
}

#[tokio::test(start_paused = true)]
async fn two_opens_of_one_zone_are_both_gated() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(config());
    let second = monitor
        .open_zone(&f.keyring, f.store.clone(), &f.zone.anchor())
        .await
        .unwrap();
    monitor.watch_zone(&f.zone);
    monitor.watch_zone(&f.zone.clone()); // a clone is the same entry
    assert_eq!(second.id(), f.zone.id());

    assert!(f.kms.disable_key("root"));
    let report = monitor.check_now().await;
    assert_eq!(report.zones.len(), 2);
    assert_refused(&f.zone, &f.segment, KeyState::Disabled);
    assert_refused(&second, &f.segment, KeyState::Disabled);

    assert!(f.kms.enable_key("root"));
    monitor.check_now().await;
    assert_serves(&f.segment, &f.zone);
    assert_serves(&f.segment, &second);
}

#[tokio::test(start_paused = true)]
async fn streams_open_before_the_key_was_revoked_stop_at_their_next_segment() {
    use std::io::{Cursor, Read, Write};

    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let mut spec = ZoneSpec::new("logs", "mock-region-1", root);
    spec.stream = crate::stream::Params::new(4096).unwrap();
    let zone = keyring
        .create_zone(Arc::new(MemoryManifestStore::new()), spec)
        .await
        .unwrap();
    let data: Vec<u8> = (0..5 * 4096u32).map(|i| (i % 251) as u8).collect();
    let segment = zone.encrypt_segment("log-1", &data).unwrap();

    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&zone);
    let mut reader = zone
        .segment_reader("log-1", Cursor::new(&segment[..]))
        .unwrap();
    let mut seekable = zone
        .segment_seekable("log-1", Cursor::new(&segment[..]))
        .unwrap();
    let mut writer = zone.segment_writer("log-2", Vec::new()).unwrap();
    let mut first = [0u8; 100];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(seekable.read_at(0, &mut first).unwrap(), 100);
    writer.write_all(&data[..1000]).unwrap();

    assert!(kms.disable_key("root"));
    monitor.check_now().await;
    assert!(!zone.is_available());

    let refused = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::PermissionDenied
            && matches!(
                crate::stream::error_of(e),
                Some(Error::ZoneUnavailable {
                    state: KeyState::Disabled,
                    ..
                })
            )
    };
    let mut rest = Vec::new();
    let err = reader.read_to_end(&mut rest).unwrap_err();
    assert!(refused(&err), "{err:?}");
    assert!(
        rest.len() < 4096,
        "at most the segment already open is served"
    );
    assert!(matches!(
        seekable.read_at(3 * 4096, &mut first),
        Err(Error::ZoneUnavailable { .. })
    ));
    let err = writer.write_all(&data).unwrap_err();
    assert!(refused(&err), "{err:?}");
    assert!(matches!(
        writer.finish(),
        Err(Error::ZoneUnavailable { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_re_pointed_root_alias_is_reported_and_never_followed() {
    let kms = Arc::new(MockProvider::new());
    let key_a = kms.add_key("key-a");
    let key_b = kms.add_key("key-b");
    let alias = kms.add_alias("alias/orders", "key-a").unwrap();
    let keyring = Keyring::new(kms.clone());
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", "mock-region-1", alias),
        )
        .await
        .unwrap();
    assert_eq!(zone.root(), key_a);
    let segment = zone.encrypt_segment("seg-1", PLAINTEXT).unwrap();
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    let _loop = monitor.spawn();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_serves(&segment, &zone);
    let first = drain(&mut events);
    assert!(
        !first
            .iter()
            .any(|e| matches!(e, MonitorEvent::RootAliasMoved { .. })),
        "{first:?}"
    );

    // The alias moves to another key and the old key is disabled: the
    // zone stops within one interval, as for any revocation of its key.
    assert!(kms.update_alias("alias/orders", "key-b"));
    assert!(kms.disable_key("key-a"));
    tokio::time::sleep(INTERVAL).await;
    assert_refused(&zone, &segment, KeyState::Disabled);
    assert_eq!(zone.root(), key_a, "the zone does not follow the alias");
    assert_eq!(monitor.key_status(&key_b), None, "key-b is never checked");
    let moved = drain(&mut events);
    assert!(
        moved.iter().any(|e| matches!(e,
            MonitorEvent::RootAliasMoved { zone: z, alias, recorded, now, .. }
                if *z == zone.id() && alias == "alias/orders" && *recorded == key_a && *now == key_b)),
        "{moved:?}"
    );
    assert!(moved.iter().any(|e| matches!(
        e,
        MonitorEvent::ZoneAvailabilityChanged {
            new: ZoneAvailability::Unavailable(KeyState::Disabled),
            ..
        }
    )));
    let text = moved
        .iter()
        .find(|e| matches!(e, MonitorEvent::RootAliasMoved { .. }))
        .unwrap()
        .to_string();
    assert!(text.contains("alias/orders now points to"), "{text}");

    // Reported once per move, not at every check; a zone whose key is
    // enabled again serves under that key, alias still elsewhere.
    assert!(kms.enable_key("key-a"));
    tokio::time::sleep(INTERVAL).await;
    assert_serves(&segment, &zone);
    let later = drain(&mut events);
    assert!(
        !later
            .iter()
            .any(|e| matches!(e, MonitorEvent::RootAliasMoved { .. })),
        "{later:?}"
    );
    // Back and away again is a new move.
    assert!(kms.update_alias("alias/orders", "key-a"));
    tokio::time::sleep(INTERVAL).await;
    assert!(kms.update_alias("alias/orders", "key-b"));
    tokio::time::sleep(INTERVAL).await;
    let again = drain(&mut events);
    assert_eq!(
        again
            .iter()
            .filter(|e| matches!(e, MonitorEvent::RootAliasMoved { .. }))
            .count(),
        1,
        "{again:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_alias_that_cannot_be_resolved_changes_nothing() {
    let kms = Arc::new(MockProvider::new());
    let key = kms.add_key("key-a");
    let alias = kms.add_alias("alias/orders", "key-a").unwrap();
    let zone = Keyring::new(kms.clone())
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", "mock-region-1", alias),
        )
        .await
        .unwrap();
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    kms.inject_fault(Fault::AccessDenied, Some(Operation::Resolve), None);
    let report = monitor.check_now().await;
    assert_eq!(report.key_state(&key), Some(KeyState::Enabled));
    assert_eq!(
        report.zone_availability(zone.id()),
        Some(ZoneAvailability::Available)
    );
    assert!(kms.calls(Operation::Resolve) >= 1);
    assert!(!drain(&mut events)
        .iter()
        .any(|e| matches!(e, MonitorEvent::RootAliasMoved { .. })));
    // The recorded key still decides: disabled, the zone stops.
    kms.disable_key("key-a");
    monitor.check_now().await;
    assert_eq!(
        zone.availability(),
        ZoneAvailability::Unavailable(KeyState::Disabled)
    );
}

#[tokio::test(start_paused = true)]
async fn an_ezk_past_half_its_wrap_limit_is_rotated_by_the_check() {
    let f = fixture().await;
    let monitor = KeyMonitor::new(config());
    monitor.watch_zone(&f.zone);
    let report = monitor.check_now().await;
    assert!(report.rotated.is_empty());
    assert_eq!(f.zone.active_version(), 1);

    f.zone
        .reserve_wraps_for_test(crate::zone::ROTATE_AFTER_WRAPS + 1)
        .await
        .unwrap();
    assert!(f.zone.needs_ezk_rotation());
    let report = monitor.check_now().await;
    assert_eq!(report.rotated, vec![(f.zone.id(), 2)]);
    assert_eq!(f.zone.active_version(), 2);
    assert!(!f.zone.needs_ezk_rotation());
    // Segments under the old version still read; new ones use the new one.
    assert_serves(&f.segment, &f.zone);
    assert!(monitor.check_now().await.rotated.is_empty());
}

/// The same zone opened twice is two entries under one id: a check gates
/// both, dropping one leaves the other watched, and `unwatch_zone` stops
/// gating every instance.
#[tokio::test(start_paused = true)]
async fn every_instance_of_a_zone_is_gated_and_unwatched_by_id() {
    let f = fixture().await;
    let second = f
        .keyring
        .open_zone(f.store.clone(), &f.zone.anchor())
        .await
        .unwrap();
    let third = f
        .keyring
        .open_zone(f.store.clone(), &f.zone.anchor())
        .await
        .unwrap();
    let monitor = KeyMonitor::new(config());
    for zone in [&f.zone, &second, &third] {
        monitor.watch_zone(zone);
    }
    // Watching an instance again does not add an entry.
    monitor.watch_zone(&second);
    assert_eq!(monitor.lock().zones[&f.zone.id()].len(), 3);

    drop(third);
    assert!(f.kms.disable_key("root"));
    let report = monitor.check_now().await;
    assert_eq!(monitor.lock().zones[&f.zone.id()].len(), 2);
    assert_eq!(report.zones.len(), 2);
    assert_refused(&f.zone, &f.segment, KeyState::Disabled);
    assert_refused(&second, &f.segment, KeyState::Disabled);

    // Unwatched by id: both instances stay as the last check left them,
    // and the next check changes neither.
    monitor.unwatch_zone(f.zone.id());
    assert!(monitor.lock().zones.is_empty());
    assert!(f.kms.enable_key("root"));
    monitor.check_now().await;
    assert_refused(&f.zone, &f.segment, KeyState::Disabled);
    assert_refused(&second, &f.segment, KeyState::Disabled);
}
