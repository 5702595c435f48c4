//! The project key registry: which root keys a project may use, and which
//! zones use them.
//!
//! The rules a managed database's CMEK console enforces, as a library:
//!
//! * at most [`DEFAULT_KEY_LIMIT`] (20) root keys per project, whatever their
//!   providers (configurable); the next one is [`Error::LimitExceeded`];
//! * a key is validated by its provider's round trip (encrypt, decrypt,
//!   describe) before it is added; an invalid key is refused with
//!   [`Error::KeyValidationFailed`], naming the failing step and why;
//!   a duplicate is refused;
//! * a zone may only use a key of its own region; a replicated key (an AWS
//!   multi-region key) serves every region it is registered as replicated
//!   to, each replica confirmed by the key's provider when the key is added
//!   ([`KeyProvider::serves_region`]; [`Error::RegionMismatch`] otherwise);
//! * registering is idempotent with [`get_or_add`](KeyRegistry::get_or_add),
//!   for engines that register their keys at every start;
//! * a key any zone uses cannot be removed; [`Error::KeyInUse`] names the
//!   zones. Removing a key only forgets it: the key in its KMS is untouched.
//!
//! State persists as one blob in a [`ManifestStore`], the compare-and-swap
//! store zone manifests use: a local file ([`open`](KeyRegistry::open),
//! layout in `docs/FORMAT.md`), or any store that many nodes share, such
//! as one in object storage ([`open_in`](KeyRegistry::open_in)). A
//! corrupted state is [`Error::Malformed`] and is never overwritten; a
//! state longer than [`MAX_STATE_LEN`] is [`Error::LimitExceeded`] (a file
//! is refused before it is read). This module must not open zones or hold
//! key material: it keeps references and rules.
//!
//! Several processes and nodes may share the state (a service and the
//! `cmek` CLI, two CLI runs, the nodes of a cluster). Every change loads
//! the newest state, checks the registry's rules against it, applies the
//! change and stores the result with [`ManifestStore::replace`], on
//! condition that the stored bytes are still the ones loaded. If another
//! writer got there first ([`Error::Conflict`]), the change starts over
//! from the state stored now, rules included, so no writer stores a stale
//! copy, no change is lost, and no race gets past the key limit or the
//! "key in use" rule. After a bounded number of conflicts in a row (32) the
//! change gives up with [`Error::Conflict`]; nothing was written by it.
//! The store must therefore give a conditional replace: atomic, durable,
//! and refused when the stored bytes are not the ones the caller read
//! (see [`ManifestStore`]). A file store ([`FileManifestStore`]) compares
//! and renames under an exclusive advisory lock on `.NAME.lock` beside the
//! file. The accessors ([`keys`], [`zones`], [`zone`]) show the state as of
//! the last open, change or [`reload`].
//!
//! The state is what every zone of the project is checked against (each
//! zone's [`anchor`](RegisteredZone::anchor)): keep it where only the
//! project's operators can write, whatever the store.
//!
//! [`keys`]: KeyRegistry::keys
//! [`zones`]: KeyRegistry::zones
//! [`zone`]: KeyRegistry::zone
//! [`reload`]: KeyRegistry::reload

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::provider::{KeyProvider, KeyRef};
use crate::zone::{FileManifestStore, ManifestStore, ZoneId};
use crate::{Error, Result};

mod state;

pub(crate) use state::RegistryState;
pub use state::{RegisteredKey, RegisteredZone};

/// Root keys a project may hold unless configured otherwise.
pub const DEFAULT_KEY_LIMIT: usize = 20;

/// The longest registry state read: 16 MiB, room for far more zones than
/// any project has (a zone's record is about 100 bytes); a longer state is
/// refused with [`Error::LimitExceeded`], a longer file before it is read.
pub const MAX_STATE_LEN: u64 = 16 << 20;

const WHAT: &str = "key registry state";

/// How many times one change is tried against a store that other writers
/// keep changing before it gives up with [`Error::Conflict`]. Each conflict
/// means another writer's change landed, so a change only runs out of
/// tries while others make progress.
const MAX_ATTEMPTS: usize = 32;

/// A project's key registry, persisted in a [`ManifestStore`]. See the
/// [module docs](self).
#[derive(Debug)]
pub struct KeyRegistry {
    store: Arc<dyn ManifestStore>,
    path: Option<PathBuf>,
    limit: usize,
    state: Mutex<RegistryState>,
}

impl KeyRegistry {
    /// Opens the registry at `path`, or starts an empty one there if the file
    /// does not exist, with the default key limit.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a corrupted or foreign file (left as it is);
    /// [`Error::LimitExceeded`] for one longer than [`MAX_STATE_LEN`];
    /// [`Error::Io`] if it cannot be read.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with_limit(path, DEFAULT_KEY_LIMIT)
    }

    /// As [`open`](Self::open), allowing at most `limit` keys.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with_limit(path: impl Into<PathBuf>, limit: usize) -> Result<Self> {
        let path = path.into();
        let store = FileManifestStore::with_max_len(path.clone(), MAX_STATE_LEN);
        Self::open_store(Arc::new(store), Some(path), limit)
    }

    /// Opens the registry whose state `store` holds, or starts an empty one
    /// there if it holds none, with the default key limit. Every registry
    /// on the same store, in this process or on other nodes, sees the
    /// others' changes (after a change of its own or a
    /// [`reload`](Self::reload)) and loses none of them. `store` must
    /// hold nothing else (not a zone manifest) and give a conditional
    /// replace (see [`ManifestStore`]).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a corrupted or foreign state (left as it
    /// is); [`Error::LimitExceeded`] for one longer than [`MAX_STATE_LEN`];
    /// the store's error if it cannot be read.
    pub fn open_in(store: Arc<dyn ManifestStore>) -> Result<Self> {
        Self::open_in_with_limit(store, DEFAULT_KEY_LIMIT)
    }

    /// As [`open_in`](Self::open_in), allowing at most `limit` keys.
    ///
    /// # Errors
    /// As [`open_in`](Self::open_in).
    pub fn open_in_with_limit(store: Arc<dyn ManifestStore>, limit: usize) -> Result<Self> {
        Self::open_store(store, None, limit)
    }

    fn open_store(
        store: Arc<dyn ManifestStore>,
        path: Option<PathBuf>,
        limit: usize,
    ) -> Result<Self> {
        let (_, state) = load(store.as_ref())?;
        Ok(Self {
            store,
            path,
            limit,
            state: Mutex::new(state),
        })
    }

    /// Reads the state again, so that the accessors show changes other
    /// processes made since this registry last read or changed it.
    ///
    /// # Errors
    /// As [`open`](Self::open); the state in memory is then unchanged.
    pub fn reload(&self) -> Result<()> {
        let (_, state) = load(self.store.as_ref())?;
        *self.lock() = state;
        Ok(())
    }

    /// The state file's path, for a registry opened with
    /// [`open`](Self::open); `None` for one opened in a store with
    /// [`open_in`](Self::open_in).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The most keys this registry accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Validates `key` through `provider` and adds it. Register keys, not
    /// aliases: a zone created under an alias records the key the alias
    /// pointed to ([`KeyProvider::resolve_key`]), and zones are matched to
    /// registered keys by that key. `replica_regions` are the regions the
    /// key serves besides its own: a replicated key's replicas (an AWS
    /// multi-region key's), each confirmed by `provider`
    /// ([`KeyProvider::serves_region`]); empty for a key that has none.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] past the limit; [`Error::InvalidArgument`]
    /// for a duplicate; [`Error::RegionMismatch`] with the provider's
    /// reason for a replica region the key does not serve (refused before
    /// any provider call when the key's name already says so);
    /// [`Error::KeyValidationFailed`] with the failing step; provider
    /// errors from the replica checks; [`Error::Io`] if the state cannot
    /// be saved (nothing is added).
    pub async fn add_key(
        &self,
        provider: &dyn KeyProvider,
        key: KeyRef,
        replica_regions: &[&str],
    ) -> Result<()> {
        self.check_can_add(&key)?;
        // Only the provider may say where a key serves: `alias/mrk-x` is an
        // alias, whatever it points to, and is refused replicas. Names first
        // (no call), then the round trip, then the replicas themselves.
        for region in replica_regions {
            provider.key_in_region(&key, region)?;
        }
        let report = provider.validate_key(&key).await;
        if let Some((step, why)) = report.first_failure() {
            return Err(Error::KeyValidationFailed {
                key: key.to_string(),
                step: step.as_str(),
                failure: why.clone(),
            });
        }
        for region in replica_regions {
            provider
                .serves_region(&key, region)
                .await?
                .require(&key, region)?;
        }
        let regions = key_regions(&key, replica_regions);
        self.update(|s| {
            // Checked again on the newest state: another add may have raced.
            check_can_add(s, &key, self.limit)?;
            s.keys.insert(
                key.clone(),
                RegisteredKey {
                    key: key.clone(),
                    regions: regions.clone(),
                    added_unix: crate::zone::now_unix(),
                },
            );
            Ok(())
        })?;
        tracing::info!(key = %key, "registered root key");
        Ok(())
    }

    /// The registered entry of `key` if it is registered with exactly these
    /// replica regions, else [`add_key`](Self::add_key) and the new entry:
    /// idempotent, for an engine that registers its keys at every start.
    /// An entry already there costs no provider call; one added from
    /// another process at the same time is taken as if it had been there.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `key` is registered with other
    /// regions (remove it first, or pass the regions it has); as
    /// [`add_key`](Self::add_key) otherwise.
    pub async fn get_or_add(
        &self,
        provider: &dyn KeyProvider,
        key: KeyRef,
        replica_regions: &[&str],
    ) -> Result<RegisteredKey> {
        let regions = key_regions(&key, replica_regions);
        self.reload()?;
        if let Some(existing) = self.key(&key) {
            return same_regions(existing, &regions);
        }
        if let Err(e) = self.add_key(provider, key.clone(), replica_regions).await {
            // Another process may have added it since the reload.
            self.reload()?;
            return match self.key(&key) {
                Some(existing) => same_regions(existing, &regions),
                None => Err(e),
            };
        }
        self.key(&key)
            .ok_or_else(|| Error::InvalidArgument(format!("key {key} was removed as it was added")))
    }

    /// The registered entry of `key`, if any.
    pub fn key(&self, key: &KeyRef) -> Option<RegisteredKey> {
        self.lock().keys.get(key).cloned()
    }

    /// Forgets `key`. The key in its KMS is not touched.
    ///
    /// # Errors
    /// [`Error::KeyInUse`] naming every zone that uses it;
    /// [`Error::InvalidArgument`] if it is not registered; [`Error::Io`].
    pub fn remove_key(&self, key: &KeyRef) -> Result<()> {
        self.update(|s| {
            let users: Vec<String> = s
                .zones
                .values()
                .filter(|z| &z.key == key)
                .map(|z| format!("{} ({})", z.name, z.zone_id))
                .collect();
            if !users.is_empty() {
                return Err(Error::KeyInUse {
                    key: key.to_string(),
                    zones: users,
                });
            }
            s.keys
                .remove(key)
                .map(drop)
                .ok_or_else(|| Error::InvalidArgument(format!("key {key} is not registered")))
        })?;
        tracing::info!(key = %key, "removed root key from the registry");
        Ok(())
    }

    /// Records that zone `zone_id` (named `name`, in `region`) uses `key`,
    /// after checking the region rule. Call it before creating the zone.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unregistered key or a zone already
    /// registered; [`Error::RegionMismatch`] if the key does not serve
    /// `region`; [`Error::Io`].
    pub fn register_zone(
        &self,
        zone_id: ZoneId,
        name: &str,
        region: &str,
        key: &KeyRef,
    ) -> Result<()> {
        self.update(|s| {
            let registered = s
                .keys
                .get(key)
                .ok_or_else(|| Error::InvalidArgument(format!("key {key} is not registered")))?;
            if !registered.regions.iter().any(|r| r == region) {
                return Err(Error::RegionMismatch {
                    key: key.to_string(),
                    key_region: registered.regions.join(","),
                    region: region.to_owned(),
                    reason: "a zone may only use a key of its own region \
                             (or a multi-region key replicated there)",
                });
            }
            if s.zones.contains_key(&zone_id) {
                return Err(Error::InvalidArgument(format!(
                    "zone {zone_id} is already registered"
                )));
            }
            s.zones.insert(
                zone_id,
                RegisteredZone {
                    zone_id,
                    name: name.to_owned(),
                    region: region.to_owned(),
                    key: key.clone(),
                    generation: 0,
                },
            );
            Ok(())
        })
    }

    /// Records what zone `zone_id` is now, as its open [`Zone`](crate::zone::Zone)
    /// reports it: root key and manifest generation (its
    /// [`anchor`](crate::zone::Zone::anchor)). The generation only moves
    /// forward: an older one is ignored, so a process that saw less cannot
    /// lower it. Call it after every change to the zone.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown zone or one whose anchor
    /// names another zone; [`Error::Io`].
    pub fn record_zone(&self, anchor: &crate::zone::ZoneAnchor) -> Result<()> {
        let zone_id = anchor.zone_id();
        if self
            .zone(zone_id)
            .is_some_and(|z| z.generation >= anchor.min_generation() && z.key == *anchor.root())
        {
            return Ok(()); // nothing newer to record
        }
        self.update(|s| {
            let zone = s.zones.get_mut(&zone_id).ok_or_else(|| {
                Error::InvalidArgument(format!("zone {zone_id} is not registered"))
            })?;
            if anchor.min_generation() >= zone.generation {
                zone.generation = anchor.min_generation();
                zone.key = anchor.root().clone();
            }
            Ok(())
        })
    }

    /// Moves zone `zone_id` to `key` (after a root-key rotation), with the
    /// same region rule.
    ///
    /// # Errors
    /// As [`register_zone`](Self::register_zone), and
    /// [`Error::InvalidArgument`] for an unknown zone.
    pub fn set_zone_key(&self, zone_id: ZoneId, key: &KeyRef) -> Result<()> {
        self.update(|s| {
            // From the newest state: the zone may have been changed or
            // removed by another process.
            let zone = s.zones.get(&zone_id).cloned().ok_or_else(|| {
                Error::InvalidArgument(format!("zone {zone_id} is not registered"))
            })?;
            let registered = s
                .keys
                .get(key)
                .ok_or_else(|| Error::InvalidArgument(format!("key {key} is not registered")))?;
            if !registered.regions.iter().any(|r| r == &zone.region) {
                return Err(Error::RegionMismatch {
                    key: key.to_string(),
                    key_region: registered.regions.join(","),
                    region: zone.region.clone(),
                    reason: "a zone may only use a key of its own region \
                             (or a multi-region key replicated there)",
                });
            }
            s.zones.get_mut(&zone_id).expect("checked above").key = key.clone();
            Ok(())
        })
    }

    /// Forgets zone `zone_id` (after the zone is deleted).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown zone; [`Error::Io`].
    pub fn unregister_zone(&self, zone_id: ZoneId) -> Result<()> {
        self.update(|s| {
            s.zones
                .remove(&zone_id)
                .map(drop)
                .ok_or_else(|| Error::InvalidArgument(format!("zone {zone_id} is not registered")))
        })
    }

    /// Every registered key, in key order.
    pub fn keys(&self) -> Vec<RegisteredKey> {
        self.lock().keys.values().cloned().collect()
    }

    /// Every registered zone, in id order.
    pub fn zones(&self) -> Vec<RegisteredZone> {
        self.lock().zones.values().cloned().collect()
    }

    /// One registered zone.
    pub fn zone(&self, zone_id: ZoneId) -> Option<RegisteredZone> {
        self.lock().zones.get(&zone_id).cloned()
    }

    fn check_can_add(&self, key: &KeyRef) -> Result<()> {
        check_can_add(&self.lock(), key, self.limit)
    }

    /// One read-modify-write of the stored state: loads it, applies
    /// `change` to what it holds now and replaces it on condition that it
    /// still holds what was loaded; on a conflict, all of that again from
    /// the newest state (at most [`MAX_ATTEMPTS`] times). The result is
    /// then current in memory. A `change` or a store that fails leaves the
    /// store as it was, and the memory showing the state as last loaded
    /// (unchanged if loading failed).
    fn update<T>(&self, mut change: impl FnMut(&mut RegistryState) -> Result<T>) -> Result<T> {
        // Held throughout, so that this registry's own changes do not race
        // each other and the newest one stays in memory.
        let mut state = self.lock();
        for _ in 0..MAX_ATTEMPTS {
            let (stored, current) = load(self.store.as_ref())?;
            let mut next = current.clone();
            let out = match change(&mut next) {
                Ok(out) => out,
                Err(e) => {
                    *state = current;
                    return Err(e);
                }
            };
            match self.store.replace(stored.as_deref(), &next.to_bytes()) {
                Ok(()) => {
                    *state = next;
                    return Ok(out);
                }
                Err(Error::Conflict { .. }) => {
                    tracing::debug!("key registry state changed by another writer; retrying");
                    *state = current;
                }
                Err(e) => {
                    *state = current;
                    return Err(e);
                }
            }
        }
        Err(Error::Conflict {
            what: WHAT,
            reason: format!(
                "other writers changed it {MAX_ATTEMPTS} times in a row while this change was \
                 being stored; nothing was written, try again"
            ),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        // Changes swap in a complete copy, so a poisoned lock holds a
        // consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state `store` holds (empty if none) and its bytes, checked against
/// [`MAX_STATE_LEN`] whatever cap the store has.
fn load(store: &dyn ManifestStore) -> Result<(Option<Vec<u8>>, RegistryState)> {
    let too_long = |limit| Error::LimitExceeded { what: WHAT, limit };
    let bytes = match store.load() {
        Ok(bytes) => bytes,
        // The store's own cap (a file's is checked before reading): what
        // is too long is the registry state.
        Err(Error::LimitExceeded { limit, .. }) => return Err(too_long(limit)),
        Err(e) => return Err(e),
    };
    let state = match &bytes {
        Some(b) if b.len() as u64 > MAX_STATE_LEN => return Err(too_long(MAX_STATE_LEN)),
        Some(b) => RegistryState::parse(b)?,
        None => RegistryState::default(),
    };
    Ok((bytes, state))
}

/// The regions a key registered with `replica_regions` serves, sorted.
fn key_regions(key: &KeyRef, replica_regions: &[&str]) -> Vec<String> {
    let mut regions = vec![key.region().to_owned()];
    regions.extend(replica_regions.iter().map(|r| r.to_string()));
    regions.sort();
    regions.dedup();
    regions
}

/// `existing` if it serves exactly `regions`.
fn same_regions(existing: RegisteredKey, regions: &[String]) -> Result<RegisteredKey> {
    if existing.regions == regions {
        Ok(existing)
    } else {
        Err(Error::InvalidArgument(format!(
            "key {} is already registered serving {}, not {}",
            existing.key,
            existing.regions.join(","),
            regions.join(",")
        )))
    }
}

fn check_can_add(state: &RegistryState, key: &KeyRef, limit: usize) -> Result<()> {
    if state.keys.contains_key(key) {
        return Err(Error::InvalidArgument(format!(
            "key {key} is already registered"
        )));
    }
    if state.keys.len() >= limit {
        return Err(Error::LimitExceeded {
            what: "root keys in one project",
            limit: limit as u64,
        });
    }
    Ok(())
}

/// Keys and zones, by their own order.
pub(crate) type KeyMap = BTreeMap<KeyRef, RegisteredKey>;

#[cfg(test)]
mod tests;
