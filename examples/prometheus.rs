//! cmek's metrics for Prometheus: a zone set serving tenants, its provider
//! metered and behind a call budget, and every metric they record rendered
//! in Prometheus's text format.
//!
//! cmek records through the `metrics` facade and installs no recorder;
//! this example installs `metrics-exporter-prometheus`'s, then runs a
//! small tenant workload — 40 zones over 4 root keys, a set bounded at 16
//! open zones, so that it misses, hits and evicts — and prints what a
//! `/metrics` endpoint would serve. A service hands the same
//! `PrometheusHandle::render` output to its HTTP server (or enables the
//! exporter's own listener, feature `http-listener`).
//!
//! `cargo run --features testing --example prometheus`
//!
//! It fails if a zone-set, provider-call or budget metric is missing from
//! the output.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cmek::budget::{BudgetConfig, BudgetedProvider};
use cmek::provider::MeteredProvider;
use cmek::tenancy::{ZoneCatalog, ZoneLocation, ZoneSet, ZoneSetConfig};
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneSpec};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Each zone's anchor and manifest store.
type Entries = HashMap<ZoneId, (ZoneAnchor, Arc<dyn ManifestStore>)>;

/// The engine's catalog of tenant zones; a map here.
struct Tenants {
    keyring: Arc<Keyring>,
    zones: Mutex<Entries>,
}

#[async_trait]
impl ZoneCatalog for Tenants {
    async fn locate(&self, id: ZoneId) -> cmek::Result<ZoneLocation> {
        let zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        let (anchor, store) = zones.get(&id).cloned().ok_or(cmek::Error::NotFound {
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
        let mut zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = zones.get_mut(&anchor.zone_id()) {
            entry.0 = anchor.clone();
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: the set registers its metric handles when it is
    // built, and handles taken before a recorder is installed record
    // nothing.
    let prometheus = PrometheusBuilder::new()
        .set_buckets(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0])?
        .install_recorder()?;
    cmek::metrics::describe();

    // A KMS that takes 5 ms a call, its calls counted and timed, behind a
    // budget of 200 calls a second.
    let kms = Arc::new(MockProvider::new());
    kms.set_latency(Duration::from_millis(5));
    let metered = MeteredProvider::new(kms.clone());
    let provider = BudgetedProvider::new(metered, BudgetConfig::with_rate(200.0));
    let keyring = Keyring::new(provider.clone());

    let roots: Vec<_> = (0..4)
        .map(|i| kms.add_key(&format!("project-{i}")))
        .collect();
    let mut zones = HashMap::new();
    let mut ids = Vec::new();
    for i in 0..40 {
        let store: Arc<dyn ManifestStore> = Arc::new(MemoryManifestStore::new());
        let spec = ZoneSpec::new(format!("tenant-{i}"), "mock-region-1", roots[i % 4].clone());
        let zone = keyring.create_zone(store.clone(), spec).await?;
        ids.push(zone.id());
        zones.insert(zone.id(), (zone.anchor(), store));
    }
    let catalog = Arc::new(Tenants {
        keyring,
        zones: Mutex::new(zones),
    });

    let config = ZoneSetConfig {
        name: "tenants".into(),
        ..ZoneSetConfig::bounded(16, 1 << 20)
    };
    let set = ZoneSet::new(catalog, config);

    // Requests: a hot handful of tenants and a long tail.
    for round in 0..200usize {
        let id = if round % 4 == 0 {
            ids[(round / 4 * 7) % ids.len()]
        } else {
            ids[round % 5]
        };
        let zone = set.get(id).await?;
        let sealed = zone.encrypt_segment("row-group", b"tenant rows")?;
        zone.decrypt_segment("row-group", &sealed)?;
    }
    println!(
        "# {} zones open, about {} bytes; provider queue depth {}",
        set.len(),
        set.bytes(),
        provider.queue_depth()
    );

    let text = prometheus.render();
    println!("{text}");

    let expected = [
        cmek::metrics::ZONE_SET_HITS,
        cmek::metrics::ZONE_SET_MISSES,
        cmek::metrics::ZONE_SET_OPENS,
        cmek::metrics::ZONE_SET_OPEN_SECONDS,
        cmek::metrics::ZONE_SET_EVICTIONS,
        cmek::metrics::ZONE_SET_OPEN_ZONES,
        cmek::metrics::ZONE_SET_BYTES,
        cmek::metrics::BUDGET_WAIT_SECONDS,
        cmek::metrics::PROVIDER_CALLS,
        cmek::metrics::PROVIDER_CALL_SECONDS,
    ];
    let missing: Vec<_> = expected
        .iter()
        .filter(|name| !text.contains(&format!("\n{name}")) && !text.starts_with(*name))
        .collect();
    if !missing.is_empty() {
        return Err(format!("metrics missing from the output: {missing:?}").into());
    }
    Ok(())
}
