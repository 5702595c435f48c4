//! What an open idle zone costs in a `ZoneSet`: at most 4 KiB (issue
//! target for 100,000 zones on a node), and the set's own estimate of it,
//! which its byte bound relies on, within 25% of what the allocator sees.
//!
//! A counting global allocator measures live heap bytes before and after
//! the set opens many zones; this file holds a single test so no other
//! test allocates concurrently.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cmek::tenancy::{ZoneCatalog, ZoneLocation, ZoneSet, ZoneSetConfig};
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneSpec};

mod counting_alloc;
use counting_alloc::{assert_counting, live};

/// Each zone's anchor and manifest store.
type Entries = HashMap<ZoneId, (ZoneAnchor, Arc<dyn ManifestStore>)>;

struct Catalog {
    keyring: Arc<Keyring>,
    zones: Mutex<Entries>,
}

#[async_trait]
impl ZoneCatalog for Catalog {
    async fn locate(&self, id: ZoneId) -> cmek::Result<ZoneLocation> {
        let (anchor, store) = self.zones.lock().unwrap()[&id].clone();
        Ok(ZoneLocation {
            anchor,
            store,
            keyring: self.keyring.clone(),
        })
    }

    async fn anchor_changed(&self, _anchor: &ZoneAnchor) {}
}

const ZONES: usize = 2_000;
const ROOTS: usize = 200;
const TARGET: usize = 4096;

#[test]
fn an_open_idle_zone_holds_at_most_4_kib_and_the_estimate_is_close() {
    assert_counting();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kms = Arc::new(MockProvider::new());
        let roots: Vec<_> = (0..ROOTS)
            .map(|i| kms.add_key(&format!("root-{i}")))
            .collect();
        let keyring = Keyring::new(kms.clone());
        let mut zones = HashMap::new();
        let mut ids = Vec::new();
        for i in 0..ZONES {
            let store: Arc<dyn ManifestStore> = Arc::new(MemoryManifestStore::new());
            let spec = ZoneSpec::new(
                format!("tenant-{i:06}"),
                "mock-region-1",
                roots[i % ROOTS].clone(),
            );
            let zone = keyring.create_zone(store.clone(), spec).await.unwrap();
            ids.push(zone.id());
            zones.insert(zone.id(), (zone.anchor(), store));
        }
        let catalog = Arc::new(Catalog {
            keyring,
            zones: Mutex::new(zones),
        });
        let set = ZoneSet::new(catalog, ZoneSetConfig::default());
        // Warm the runtime, the set's map and the metrics handles on
        // one zone first, so that one-off allocations are not counted.
        drop(set.get(ids[0]).await.unwrap());

        let before = live();
        for id in &ids[1..] {
            drop(set.get(*id).await.unwrap());
        }
        // Let the anchor-reporting tasks reach their first wait.
        tokio::task::yield_now().await;
        let after = live();
        let n = ids.len() - 1;
        let measured = (after - before) / n;
        let estimated = set.bytes() as usize / set.len();
        eprintln!("per open idle zone: measured {measured} B, estimated {estimated} B");
        assert_eq!(set.len(), ZONES);
        assert!(
            measured <= TARGET,
            "an open idle zone holds {measured} B, above {TARGET}"
        );
        // The byte bound is only as good as the estimate.
        assert!(
            estimated * 4 >= measured * 3 && estimated * 4 <= measured * 5,
            "estimate {estimated} B is far from the measured {measured} B"
        );
    });
}
