//! The key-availability monitor gating a zone on its root key.
//!
//! Registers a root key (validated by a round trip), creates a zone under
//! it, starts the monitor on a short interval, then disables the key and
//! enables it again. The zone follows: it refuses reads while the key is
//! disabled (its zone keys dropped from memory) and serves again, on the
//! same handle, once a check finds the key enabled. A zone opened while the
//! key is disabled starts unavailable and recovers the same way.
//!
//! `cargo run --example key_monitor` — on the embedded default (a local
//! key file in a temporary directory). With `RUST_LOG`-style logging set up
//! by an application, the same changes appear as `tracing` events under
//! target `cmek::monitor`.

use std::sync::Arc;
use std::time::Duration;

use cmek::monitor::{KeyMonitor, MonitorConfig, MonitorEvent};
use cmek::provider::LocalKeyProvider;
use cmek::registry::KeyRegistry;
use cmek::zone::{FileManifestStore, Keyring, ManifestStore, ZoneSpec};

const INTERVAL: Duration = Duration::from_millis(300);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let provider = Arc::new(LocalKeyProvider::open_or_create(
        dir.path().join("root.keys"),
        "local",
    )?);
    let root = provider.add_key("customer-key")?;

    // The project's registry validates the key before anything uses it.
    let registry = KeyRegistry::open(dir.path().join("registry.state"))?;
    registry
        .add_key(provider.as_ref(), root.clone(), &[])
        .await?;

    let keyring = Keyring::new(provider.clone());
    let store: Arc<dyn ManifestStore> =
        Arc::new(FileManifestStore::new(dir.path().join("orders.zone")));
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", "local", root.clone()),
        )
        .await?;
    registry.register_zone(zone.id(), "orders", "local", &root)?;
    let segment = zone.encrypt_segment("orders/0001", b"the customer's rows")?;

    // Every registered key is checked, and every watched zone gated on its
    // root key. Production keeps the default 10-minute interval.
    let monitor = KeyMonitor::new(MonitorConfig::with_interval(INTERVAL));
    for registered in registry.keys() {
        monitor.watch_key(registered.key, provider.clone());
    }
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    let _running = monitor.spawn();
    print_until_zone_changes(&mut events, None).await;
    println!("read: {:?}", read(&zone, &segment));

    println!("\n-- the customer disables the key");
    provider.disable_key("customer-key")?;
    print_until_zone_changes(&mut events, Some(zone.id())).await;
    println!("read: {:?}", read(&zone, &segment));

    // A service restarting now still starts: its zone opens unavailable.
    let restarted = monitor
        .open_zone(&keyring, store.clone(), &zone.anchor())
        .await?;
    println!(
        "a zone opened now is {}: read {:?}",
        restarted.availability(),
        read(&restarted, &segment)
    );

    println!("\n-- the customer enables the key again");
    provider.enable_key("customer-key")?;
    print_until_zone_changes(&mut events, Some(zone.id())).await;
    // Both open instances recover in the same check.
    let report = monitor.check_now().await;
    for (zone_id, availability) in &report.zones {
        println!("zone {zone_id}: {availability}");
    }
    assert!(restarted.is_available() && zone.is_available());
    println!("read: {:?}", read(&zone, &segment));
    println!(
        "read through the restarted zone: {:?}",
        read(&restarted, &segment)
    );
    Ok(())
}

/// Prints events until one says a zone changed availability (or, with
/// `None`, until the first check has reported the key).
async fn print_until_zone_changes(
    events: &mut tokio::sync::broadcast::Receiver<MonitorEvent>,
    zone: Option<cmek::zone::ZoneId>,
) {
    loop {
        let event = tokio::time::timeout(INTERVAL * 20, events.recv())
            .await
            .expect("the monitor reports within a few intervals")
            .expect("the monitor is running");
        println!("event: {event}");
        match (&event, zone) {
            (MonitorEvent::ZoneAvailabilityChanged { zone: z, .. }, Some(id)) if *z == id => return,
            (MonitorEvent::KeyStatusChanged { .. }, None) => return,
            _ => {}
        }
    }
}

fn read(zone: &cmek::zone::Zone, segment: &[u8]) -> Result<String, String> {
    zone.decrypt_segment("orders/0001", segment)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| e.to_string())
}
