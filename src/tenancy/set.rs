//! [`ZoneSet`]: zones opened on demand, single-flight, bounded by count and
//! bytes, idle ones evicted.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use tokio::sync::watch;

use super::catalog::{ZoneCatalog, ZoneLocation};
use super::config::ZoneSetConfig;
use super::meters::Meters;
use crate::zone::{Zone, ZoneId};
use crate::{Error, Result, StateRejection};

/// What the set spends on each open zone besides the zone itself: its map
/// slot and clock position, and the task reporting the zone's anchors
/// (calibrated by `tests/zone_set_memory.rs`).
const ENTRY_OVERHEAD: usize = 512;

/// How an open ends, for every caller waiting on it: `None` while it runs.
type Outcome = Option<std::result::Result<Zone, Arc<Error>>>;

/// One zone id in the set.
enum Slot {
    /// Open: the set's own handle on the zone.
    Open(Entry),
    /// Being opened by a task; callers wait on its outcome.
    Opening(watch::Receiver<Outcome>),
}

struct Entry {
    zone: Zone,
    /// The set's estimate of the zone's memory when it opened.
    bytes: u64,
    /// Set on every hit, cleared by the eviction sweep: a zone used since
    /// the sweep last passed it gets a second chance (the CLOCK
    /// approximation of least-recently-used, which lets a hit take only a
    /// read lock).
    referenced: AtomicBool,
    /// Which opening of the zone this is: tells its place in the clock
    /// from a stale one left by an earlier opening.
    seq: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<ZoneId, Slot>,
    /// The open zones in the order the eviction sweep visits them, with
    /// the opening each position is for. May hold stale positions (zones
    /// evicted or reopened since), skipped when met and compacted away
    /// when they outnumber the open zones.
    clock: VecDeque<(ZoneId, u64)>,
    next_seq: u64,
    open: usize,
    bytes: u64,
}

/// Many zones in one process, opened on demand. See the
/// [module docs](super).
pub struct ZoneSet {
    catalog: Arc<dyn ZoneCatalog>,
    config: ZoneSetConfig,
    inner: RwLock<Inner>,
    meters: Meters,
}

impl fmt::Debug for ZoneSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.read();
        f.debug_struct("ZoneSet")
            .field("config", &self.config)
            .field("open", &inner.open)
            .field("bytes", &inner.bytes)
            .finish_non_exhaustive()
    }
}

/// What an eviction sweep took out of the set: dropped once the set's lock
/// is released, so that zeroizing key material never runs under it.
type Evicted = Vec<(ZoneId, Zone)>;

impl ZoneSet {
    /// A set opening zones from `catalog`, within `config`'s bounds.
    ///
    /// Metrics are registered here: install the `metrics` recorder before
    /// creating the set (see [`crate::metrics`]).
    pub fn new(catalog: Arc<dyn ZoneCatalog>, config: ZoneSetConfig) -> Arc<Self> {
        let meters = Meters::new(&config.name);
        Arc::new(Self {
            catalog,
            config,
            inner: RwLock::new(Inner::default()),
            meters,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ZoneSetConfig {
        &self.config
    }

    /// Zone `id`, opened if it is not open yet.
    ///
    /// A hit takes a read lock and clones a handle: no provider call, no
    /// I/O. A miss asks the catalog where the zone lives and opens it (one
    /// provider call per EZK version); callers asking for the same zone
    /// meanwhile wait for that one open, and all get its outcome — a
    /// failed open is not kept, so the next call tries again.
    ///
    /// The returned handle pins the zone: the set never evicts a zone
    /// while a handle on it, or a reader or writer opened from it, is
    /// alive. Drop handles when done with them; cloning one is cheap.
    ///
    /// The open runs on a task of the current tokio runtime, so a caller
    /// that gives up (drops this future) does not cancel it for the
    /// others.
    ///
    /// # Errors
    /// The catalog's error; as
    /// [`Keyring::open_zone`](crate::zone::Keyring::open_zone) (or, with a
    /// monitor, [`Keyring::open_zone_gated`](crate::zone::Keyring::open_zone_gated));
    /// [`Error::StateRejected`] if the catalog's anchor names another
    /// zone; [`Error::Misuse`] outside a tokio runtime.
    pub async fn get(self: &Arc<Self>, id: ZoneId) -> Result<Zone> {
        if let Some(zone) = self.hit(id) {
            return Ok(zone);
        }
        let mut outcome = {
            let mut inner = self.write();
            match inner.slots.get(&id) {
                Some(Slot::Open(entry)) => {
                    entry.referenced.store(true, Ordering::Relaxed);
                    self.meters.hits.increment(1);
                    return Ok(entry.zone.clone());
                }
                // An open under way (its task alive: the sender is there).
                Some(Slot::Opening(outcome)) if outcome.has_changed().is_ok() => outcome.clone(),
                // None, or an open whose task died with its runtime.
                _ => {
                    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                        Error::misuse("ZoneSet::get must run inside a tokio runtime")
                    })?;
                    let (tx, rx) = watch::channel(None);
                    inner.slots.insert(id, Slot::Opening(rx.clone()));
                    runtime.spawn(Arc::clone(self).open(id, tx));
                    rx
                }
            }
        };
        self.meters.misses.increment(1);
        // Cloned out at once: the channel's value stays locked while
        // borrowed.
        let done: Outcome = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone(),
            Err(_) => None,
        };
        match done {
            Some(Ok(zone)) => Ok(zone),
            Some(Err(e)) => Err(e.duplicate()),
            None => {
                // The open task died without an outcome (its runtime shut
                // down): forget the open so that the next call starts one.
                let mut inner = self.write();
                if matches!(inner.slots.get(&id),
                    Some(Slot::Opening(rx)) if rx.same_channel(&outcome))
                {
                    inner.slots.remove(&id);
                }
                Err(Error::misuse(
                    "the zone set's open task ended without an outcome (its runtime shut down?)",
                ))
            }
        }
    }

    /// Zone `id` if it is open now, as a pinning handle; never opens it.
    pub fn get_if_open(&self, id: ZoneId) -> Option<Zone> {
        self.hit(id)
    }

    /// The hit path: a read lock, a flag, a handle.
    fn hit(&self, id: ZoneId) -> Option<Zone> {
        let inner = self.read();
        match inner.slots.get(&id) {
            Some(Slot::Open(entry)) => {
                entry.referenced.store(true, Ordering::Relaxed);
                self.meters.hits.increment(1);
                Some(entry.zone.clone())
            }
            _ => None,
        }
    }

    /// Zones open now.
    pub fn len(&self) -> usize {
        self.read().open
    }

    /// True if no zone is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set's estimate of the memory its open zones hold, in bytes.
    pub fn bytes(&self) -> u64 {
        self.read().bytes
    }

    /// Evicts zone `id` now if it is open and idle (no handle, reader or
    /// writer holds it): its EZKs are dropped and zeroized. Returns true if
    /// it was evicted. For a tenant that is deleted or moved away.
    pub fn evict(&self, id: ZoneId) -> bool {
        let evicted = {
            let mut inner = self.write();
            match inner.slots.get(&id) {
                Some(Slot::Open(entry)) if entry.zone.holders() == 1 => inner.remove_open(id),
                _ => None,
            }
        };
        let done = evicted.is_some();
        self.finish_evictions(evicted.into_iter().collect());
        done
    }

    /// Evicts every idle zone now; returns how many. Zones in use stay.
    pub fn evict_idle(&self) -> usize {
        let evicted: Evicted = {
            let mut inner = self.write();
            let idle: Vec<ZoneId> = inner
                .slots
                .iter()
                .filter_map(|(id, slot)| match slot {
                    Slot::Open(e) if e.zone.holders() == 1 => Some(*id),
                    _ => None,
                })
                .collect();
            idle.into_iter()
                .filter_map(|id| inner.remove_open(id))
                .collect()
        };
        let n = evicted.len();
        self.finish_evictions(evicted);
        n
    }

    /// The open task: locates, opens, makes room, installs, and tells the
    /// waiters.
    async fn open(self: Arc<Self>, id: ZoneId, tx: watch::Sender<Outcome>) {
        let started = Instant::now();
        let opened = self.open_zone(id).await;
        self.meters.open_seconds.record(started.elapsed());
        let (outcome, evicted) = match opened {
            Ok(zone) => {
                self.meters.opened("ok");
                let bytes = (zone.footprint() + ENTRY_OVERHEAD) as u64;
                let mut inner = self.write();
                let evicted = inner.make_room(bytes, &self.config);
                if inner.open + 1 > self.config.max_zones
                    || inner.bytes + bytes > self.config.max_bytes
                {
                    self.meters.over_limit.increment(1);
                    tracing::warn!(target: "cmek::tenancy", set = %self.config.name,
                        open = inner.open, bytes = inner.bytes,
                        "every open zone is in use: a zone opens past the set's bounds");
                }
                let seq = inner.next_seq;
                inner.next_seq += 1;
                inner.slots.insert(
                    id,
                    Slot::Open(Entry {
                        zone: zone.clone(),
                        bytes,
                        // Earns its second chance by a hit, as in
                        // CLOCK: a zone opened once and never used again
                        // goes before zones in steady use.
                        referenced: AtomicBool::new(false),
                        seq,
                    }),
                );
                inner.clock.push_back((id, seq));
                inner.compact_clock();
                inner.open += 1;
                inner.bytes += bytes;
                self.meters.gauges(inner.open, inner.bytes);
                drop(inner);
                self.report_anchors(&zone);
                (Ok(zone), evicted)
            }
            Err(e) => {
                self.meters.opened(kind_label(e.kind()));
                tracing::debug!(target: "cmek::tenancy", zone = %id, error = %e.report(),
                    "zone set: open failed");
                self.write().slots.remove(&id);
                (Err(Arc::new(e)), Vec::new())
            }
        };
        self.finish_evictions(evicted);
        // No receiver left (every caller gave up) is fine: the zone stays
        // open for the next one.
        let _ = tx.send(Some(outcome));
    }

    async fn open_zone(&self, id: ZoneId) -> Result<Zone> {
        let ZoneLocation {
            anchor,
            store,
            keyring,
        } = self.catalog.locate(id).await?;
        if anchor.zone_id() != id {
            return Err(Error::StateRejected {
                what: "zone catalog entry",
                reason: StateRejection::ForeignZone {
                    expected: id.to_string(),
                    found: anchor.zone_id().to_string(),
                },
            });
        }
        match &self.config.monitor {
            Some(monitor) => monitor.open_zone(&keyring, store, &anchor).await,
            None => keyring.open_zone(store, &anchor).await,
        }
    }

    /// Tells the catalog of every anchor change of `zone`, from a task
    /// that holds no handle on the zone: it ends when the zone is dropped,
    /// after reporting a change made just before.
    fn report_anchors(&self, zone: &Zone) {
        let mut anchors = zone.watch_anchor();
        let catalog = Arc::clone(&self.catalog);
        tokio::spawn(async move {
            while anchors.changed().await.is_ok() {
                let anchor = anchors.borrow_and_update().clone();
                catalog.anchor_changed(&anchor).await;
            }
        });
    }

    /// Unwatches and drops evicted zones (outside the lock): with the
    /// set's handle gone, their EZKs are dropped and zeroized.
    fn finish_evictions(&self, evicted: Evicted) {
        if evicted.is_empty() {
            return;
        }
        self.meters.evictions.increment(evicted.len() as u64);
        {
            let inner = self.read();
            self.meters.gauges(inner.open, inner.bytes);
        }
        for (id, zone) in evicted {
            if let Some(monitor) = &self.config.monitor {
                // Not if the zone was opened again meanwhile: that instance
                // is watched and must stay so.
                if !matches!(self.read().slots.get(&id), Some(Slot::Open(_))) {
                    monitor.unwatch_zone(id);
                }
            }
            tracing::debug!(target: "cmek::tenancy", zone = %id, "zone set: evicted an idle zone");
            drop(zone);
        }
    }

    /// Positions in the eviction clock, stale ones included.
    #[cfg(test)]
    pub(super) fn clock_len(&self) -> usize {
        self.read().clock.len()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Takes open zone `id` out of the set.
    fn remove_open(&mut self, id: ZoneId) -> Option<(ZoneId, Zone)> {
        match self.slots.remove(&id) {
            Some(Slot::Open(entry)) => {
                self.open -= 1;
                self.bytes -= entry.bytes;
                Some((id, entry.zone))
            }
            Some(other) => {
                self.slots.insert(id, other);
                None
            }
            None => None,
        }
    }

    /// Drops stale clock positions once they outnumber the open zones, so
    /// that evictions outside the sweep never make it grow without bound.
    fn compact_clock(&mut self) {
        if self.clock.len() > 2 * self.open + 16 {
            let slots = &self.slots;
            self.clock
                .retain(|(id, seq)| slots.get(id).is_some_and(|s| is_at(s, *seq)));
        }
    }

    /// Evicts idle zones until one more of `incoming` bytes fits, or every
    /// remaining zone is in use. The sweep gives each recently used zone a
    /// second chance and skips pinned ones; it visits each zone at most
    /// twice, so a set whose every zone is pinned costs one pass.
    fn make_room(&mut self, incoming: u64, config: &ZoneSetConfig) -> Evicted {
        let mut evicted = Vec::new();
        let mut budget = self.clock.len().saturating_mul(2);
        while (self.open + 1 > config.max_zones || self.bytes + incoming > config.max_bytes)
            && budget > 0
        {
            budget -= 1;
            let Some((id, seq)) = self.clock.pop_front() else {
                break;
            };
            let Some(Slot::Open(entry)) = self.slots.get(&id).filter(|s| is_at(s, seq)) else {
                continue; // evicted or reopened since: a stale position
            };
            // Pinned: a handle, a reader or a writer holds it. Nothing can
            // take a new handle while the write lock is held, so a count
            // of one (the set's) stays one until the zone is out.
            if entry.zone.holders() > 1 || entry.referenced.swap(false, Ordering::Relaxed) {
                self.clock.push_back((id, seq));
                continue;
            }
            evicted.extend(self.remove_open(id));
        }
        evicted
    }
}

/// True if `slot` is the open zone of opening `seq`.
fn is_at(slot: &Slot, seq: u64) -> bool {
    matches!(slot, Slot::Open(e) if e.seq == seq)
}

/// The `outcome` label of a failed open.
fn kind_label(kind: crate::ErrorKind) -> &'static str {
    use crate::ErrorKind::*;
    match kind {
        Retry => "retry",
        Stale => "stale",
        KeyRevoked => "key_revoked",
        Corrupt => "corrupt",
        InvalidRequest => "invalid_request",
        Bug => "bug",
        System => "system",
    }
}
