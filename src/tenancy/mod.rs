//! Many tenants in one process: a [`ZoneSet`] holds the zones an engine
//! serves, opening each on demand and evicting idle ones.
//!
//! A multi-tenant engine keeps a zone per tenant or database — thousands
//! to 100,000 on a node. It cannot open them all at start (each open is a
//! provider round trip, and the provider has a quota) nor keep them all
//! forever. The set does what a cache would, with the rules keys need:
//!
//! * **On demand.** [`ZoneSet::get`] returns an open zone by id; on a miss
//!   it asks the engine's [`ZoneCatalog`] where the zone lives (its
//!   [`ZoneAnchor`](crate::zone::ZoneAnchor), its
//!   [`ManifestStore`](crate::zone::ManifestStore) and the
//!   [`Keyring`](crate::zone::Keyring) of its provider) and opens it.
//! * **Single-flight.** Concurrent misses for one zone make one open; its
//!   outcome reaches every caller waiting for it. A failed open is not
//!   kept: the next `get` tries again.
//! * **Bounded** by [`max_zones`](ZoneSetConfig::max_zones) and by
//!   [`max_bytes`](ZoneSetConfig::max_bytes), an estimate of each open
//!   zone's memory. Past a bound, the set evicts idle zones, least
//!   recently used first (approximately: the CLOCK algorithm, so that a
//!   hit takes only a read lock). An evicted zone's EZKs are dropped and
//!   zeroized at once.
//! * **Pinned while in use.** The [`Zone`](crate::zone::Zone) a `get`
//!   returns is a handle: while it, a clone of it, or a reader or writer
//!   opened from it is alive, the zone is never evicted. When every open
//!   zone is in use, a new one opens past the bounds (counted in
//!   [`ZONE_SET_OVER_LIMIT`](crate::metrics::ZONE_SET_OVER_LIMIT)) rather
//!   than fail a caller; the bounds hold again as zones go idle.
//! * **Anchors reported.** Every change of an open zone's anchor (a
//!   rotation, a reservation of DEK wraps) is passed to
//!   [`ZoneCatalog::anchor_changed`], so the engine never polls
//!   [`Zone::anchor`](crate::zone::Zone::anchor).
//! * **Gated**, optionally: with a [`KeyMonitor`](crate::monitor::KeyMonitor)
//!   in [`ZoneSetConfig::monitor`], the zones the set opens are watched,
//!   and evicted zones stop being watched.
//! * **Measured** through the [`metrics`](crate::metrics) facade: hits,
//!   misses, opens by outcome and their latency, evictions, open zones and
//!   bytes, each labelled only by the set's name.
//!
//! The set needs a tokio runtime (opens run on its tasks). It calls the
//! provider only to open zones; the budget of those calls across many
//! zones is the provider's business (wrap the provider the catalog's
//! keyrings use).
//!
//! ```
//! # use std::sync::{Arc, Mutex};
//! # use std::collections::HashMap;
//! use cmek::tenancy::{ZoneCatalog, ZoneLocation, ZoneSet, ZoneSetConfig};
//! use cmek::zone::{Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneSpec};
//!
//! /// The engine's catalog: here a map; in an engine, its own metadata.
//! struct Tenants {
//!     keyring: Arc<Keyring>,
//!     zones: Mutex<HashMap<ZoneId, (ZoneAnchor, Arc<dyn ManifestStore>)>>,
//! }
//!
//! #[async_trait::async_trait]
//! impl ZoneCatalog for Tenants {
//!     async fn locate(&self, id: ZoneId) -> cmek::Result<ZoneLocation> {
//!         let zones = self.zones.lock().unwrap();
//!         let (anchor, store) = zones.get(&id).cloned().ok_or(cmek::Error::NotFound {
//!             what: "tenant zone",
//!             location: id.to_string(),
//!         })?;
//!         Ok(ZoneLocation { anchor, store, keyring: self.keyring.clone() })
//!     }
//!
//!     async fn anchor_changed(&self, anchor: &ZoneAnchor) {
//!         if let Some(entry) = self.zones.lock().unwrap().get_mut(&anchor.zone_id()) {
//!             entry.0 = anchor.clone();
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cmek::Result<()> {
//! let kms = Arc::new(cmek::testing::MockProvider::new());
//! let root = kms.add_key("tenant-root");
//! let keyring = Keyring::new(kms.clone());
//! let store: Arc<dyn ManifestStore> = Arc::new(MemoryManifestStore::new());
//! let zone = keyring
//!     .create_zone(store.clone(), ZoneSpec::new("tenant-1", "mock-region-1", root))
//!     .await?;
//! let id = zone.id();
//! let catalog = Arc::new(Tenants { keyring, zones: Mutex::new(HashMap::new()) });
//! catalog.zones.lock().unwrap().insert(id, (zone.anchor(), store));
//! drop(zone);
//!
//! let set = ZoneSet::new(catalog, ZoneSetConfig::bounded(10_000, 64 << 20));
//! let tenant = set.get(id).await?; // a miss: opened from the catalog
//! let sealed = tenant.encrypt_segment("seg-1", b"rows")?;
//! assert_eq!(&set.get(id).await?.decrypt_segment("seg-1", &sealed)?[..], b"rows"); // a hit
//! drop(tenant);
//! assert_eq!(set.evict_idle(), 1); // EZKs zeroized
//! # Ok(()) }
//! ```
//!
//! This module owns which zones are open; it must not open segments or
//! call the provider other than through [`Keyring`](crate::zone::Keyring).

mod catalog;
mod config;
mod meters;
mod set;

#[cfg(test)]
mod tests;

pub use catalog::{ZoneCatalog, ZoneLocation};
pub use config::ZoneSetConfig;
pub use set::ZoneSet;
