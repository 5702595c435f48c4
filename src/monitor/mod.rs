//! The key-availability monitor: periodic checks of root keys that gate the
//! zones under them.
//!
//! A [`KeyMonitor`] watches keys (registered explicitly, typically every
//! key of a [`KeyRegistry`](crate::registry::KeyRegistry)) and zones (whose
//! root keys it then checks too). Each check describes a key and, by
//! default, wraps and unwraps a throwaway key under it. Then, for every
//! watched zone:
//!
//! * key usable → a zone that was unavailable unwraps its EZKs again and
//!   serves (no reload, no restart);
//! * key disabled, pending deletion, not found, access denied → the zone
//!   becomes unavailable at once: its EZKs are dropped and zeroized, and
//!   every data call fails with
//!   [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable) carrying the
//!   key's state;
//! * provider unreachable → the [`UnreachablePolicy`] decides.
//!
//! **The bound.** Checks start every [`MonitorConfig::interval`] (10
//! minutes by default), measured from start to start. A key revoked at
//! time *t* is seen by the first check that starts after *t*, which starts
//! before *t + interval* and ends within one check's duration (at most
//! [`MonitorConfig::check_timeout`]); its zones stop at that moment. So a
//! revoked key stops all data access through its zones within **one
//! interval plus one check's duration**. Segment readers and writers
//! opened before the zone stopped are stopped too, at their next segment
//! (a reader may still return what it had decrypted: at most one segment).
//! Outside the bound: a revocation hidden behind an unreachable provider,
//! which follows the [`UnreachablePolicy`].
//!
//! **Aliases.** A zone records the key its root alias pointed to when the
//! zone was created (or rotated), and the monitor checks that key — never
//! the alias, which anyone allowed to manage aliases can re-point. For a
//! zone with a [root alias](crate::zone::ZoneManifest::root_alias), each
//! check also resolves the alias; when it points elsewhere, the monitor
//! publishes [`MonitorEvent::RootAliasMoved`] (and a `warn`), and keeps
//! gating the zone on its recorded key: disabling that key stops the zone
//! within the bound above, whatever the alias says.
//!
//! Changes are published as [`MonitorEvent`]s to every
//! [`subscribe`](KeyMonitor::subscribe)r and as `tracing` events.
//!
//! **One check per key.** A check asks the provider once per distinct root
//! key, however many watched zones use it.
//!
//! **Shared verdicts.** Nodes that watch the same keys can share one check
//! per key per interval instead of each making its own
//! ([`KeyMonitor::with_shared_verdicts`], [`SharedVerdicts`]). Intervals are
//! counted on the wall clock from the Unix epoch, so every node's loop
//! checks at the same moments. For each key, the first node to take the
//! key's lease in the [`VerdictStore`] (a compare-and-swap on the key's
//! record: [`InMemoryVerdictStore`], or an object with conditional puts,
//! `object_store::v014::ObjectVerdictStore`) checks it with its provider
//! and writes its verdict; the others wait for that verdict, reading the
//! record every [`poll`](SharedVerdicts::with_poll), and gate their zones
//! on it. A lease runs out after [`SharedVerdicts::with_lease`] (60 s by
//! default): a holder that dies costs that much, then another node takes
//! the lease and checks, within the same interval. The revocation bound
//! above becomes one interval, plus one check, plus one lease if the node
//! checking dies.
//!
//! Verdict records are authenticated under a key derived from a secret the
//! nodes share, and bound to their key; a record that does not
//! authenticate, names another key, or predates the current interval is
//! never a verdict: the node checks the key itself. Whoever can write the
//! store without the secret can therefore cost provider calls, never make
//! a revoked key look usable (see [`SharedVerdicts`] for the cases). A
//! verdict says when the key was last found usable; under
//! [`UnreachablePolicy::GracePeriod`], zones whose key is unreachable keep
//! serving only while that is within the grace, counted from the check
//! that found it usable, whichever node made it: an older verdict gates
//! them, never the reverse. A store that cannot be read or written makes
//! each node check every key itself, as without sharing.
//!
//! This module decides when zones serve; it must not touch segment data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::provider::{KeyProvider, KeyRef, KeyState};
use crate::zone::{Keyring, ManifestStore, WeakZone, Zone, ZoneAnchor, ZoneAvailability, ZoneId};
use crate::Result;

mod check;
mod config;
mod event;
mod shared;
mod verdict;

#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;

pub use config::{MonitorConfig, UnreachablePolicy};
pub use event::MonitorEvent;
pub use verdict::{InMemoryVerdictStore, RecordVersion, SharedVerdicts, VerdictStore};

/// What the monitor knows of one key.
struct KeyEntry {
    provider: Arc<dyn KeyProvider>,
    /// Watched for its own sake (not only because a zone uses it).
    explicit: bool,
    /// What the last check found; `None` before the first.
    status: Option<KeyState>,
}

/// What the monitor knows of one open zone (one [`Zone`] and its clones;
/// the same zone opened twice is two entries, each gated).
struct ZoneEntry {
    zone: WeakZone,
    /// When a check (or the open) last confirmed the zone's key usable:
    /// where a grace period counts from.
    last_confirmed: Option<Instant>,
}

/// A key to check and the provider to ask.
type Target = (KeyRef, Arc<dyn KeyProvider>);

#[derive(Default)]
struct Watched {
    keys: HashMap<KeyRef, KeyEntry>,
    /// By zone id, so that finding a zone's entry (at every check, for
    /// every zone) does not scan every watched zone.
    zones: HashMap<ZoneId, Vec<ZoneEntry>>,
    /// Per zone and root alias, the other key the alias was last seen
    /// pointing to (reported once per new target).
    moved_aliases: HashMap<(ZoneId, KeyRef), KeyRef>,
}

impl Watched {
    fn zone_mut(&mut self, zone: &Zone) -> Option<&mut ZoneEntry> {
        self.zones
            .get_mut(&zone.id())?
            .iter_mut()
            .find(|e| e.zone.is(zone))
    }
}

/// The outcome of one check of every watched key and zone.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Every checked key and the state found.
    pub keys: Vec<(KeyRef, KeyState)>,
    /// Every watched zone and its availability after the check.
    pub zones: Vec<(ZoneId, ZoneAvailability)>,
    /// How long the check took.
    pub took: Duration,
    /// Something is unsettled (a provider unreachable, a zone that could
    /// not recover): the next check comes after
    /// [`MonitorConfig::retry_interval`] instead of the full interval.
    pub retry_soon: bool,
    /// Zones whose active EZK had reserved more than half its DEK wrap
    /// limit ([`Zone::needs_ezk_rotation`]), with the EZK version the check
    /// rotated them to.
    pub rotated: Vec<(ZoneId, u32)>,
}

impl CheckReport {
    /// The state found for `key`, if it was checked.
    pub fn key_state(&self, key: &KeyRef) -> Option<KeyState> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, s)| *s)
    }

    /// The availability of zone `zone` after the check, if it is watched.
    pub fn zone_availability(&self, zone: ZoneId) -> Option<ZoneAvailability> {
        self.zones.iter().find(|(z, _)| *z == zone).map(|(_, a)| *a)
    }
}

/// Checks root keys on an interval and gates the zones under them. See the
/// [module docs](self).
///
/// Create it with [`KeyMonitor::new`], watch keys and zones, then either
/// [`spawn`](Self::spawn) its loop on the tokio runtime or call
/// [`check_now`](Self::check_now) yourself.
pub struct KeyMonitor {
    config: MonitorConfig,
    watched: Mutex<Watched>,
    events: broadcast::Sender<MonitorEvent>,
    /// One check at a time: two overlapping checks could gate a zone on
    /// stale results.
    pass: tokio::sync::Mutex<()>,
    /// Verdicts shared with other nodes, if configured.
    shared: Option<Arc<SharedVerdicts>>,
}

impl std::fmt::Debug for KeyMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let watched = self.lock();
        f.debug_struct("KeyMonitor")
            .field("interval", &self.config.interval)
            .field("keys", &watched.keys.len())
            .field(
                "zones",
                &watched.zones.values().map(Vec::len).sum::<usize>(),
            )
            .finish_non_exhaustive()
    }
}

impl KeyMonitor {
    /// A monitor with `config`, watching nothing yet.
    pub fn new(config: MonitorConfig) -> Arc<Self> {
        Self::build(config, None)
    }

    /// A monitor with `config` that shares its verdicts with the other
    /// nodes of a cluster through `shared`: per key and interval, one node
    /// takes a lease and checks, the others read its verdict. See
    /// "Shared verdicts" in the [module docs](self).
    pub fn with_shared_verdicts(config: MonitorConfig, shared: SharedVerdicts) -> Arc<Self> {
        Self::build(config, Some(Arc::new(shared)))
    }

    fn build(config: MonitorConfig, shared: Option<Arc<SharedVerdicts>>) -> Arc<Self> {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Arc::new(Self {
            config,
            watched: Mutex::new(Watched::default()),
            events,
            pass: tokio::sync::Mutex::new(()),
            shared,
        })
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// A receiver of every event from now on. A subscriber that falls more
    /// than [`MonitorConfig::event_capacity`] events behind loses the
    /// oldest (and is told so by the channel).
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.events.subscribe()
    }

    /// Checks `key` through `provider` at every check, whether or not a
    /// zone uses it.
    pub fn watch_key(&self, key: KeyRef, provider: Arc<dyn KeyProvider>) {
        let mut watched = self.lock();
        let entry = watched.keys.entry(key).or_insert(KeyEntry {
            provider,
            explicit: true,
            status: None,
        });
        entry.explicit = true;
    }

    /// Stops checking `key` for its own sake (zones using it keep it
    /// checked).
    pub fn unwatch_key(&self, key: &KeyRef) {
        if let Some(entry) = self.lock().keys.get_mut(key) {
            entry.explicit = false;
        }
    }

    /// Gates `zone` on its root key from the next check on. The monitor
    /// does not keep the zone open: once every clone of it is dropped, it
    /// is forgotten. Watching an available zone counts as a confirmation
    /// of its key (the zone unwrapped its EZKs with it), so a grace period
    /// counts from now until the first check.
    pub fn watch_zone(&self, zone: &Zone) {
        let last_confirmed = zone.is_available().then(Instant::now);
        let mut watched = self.lock();
        match watched.zone_mut(zone) {
            Some(entry) => entry.last_confirmed = last_confirmed,
            None => watched.zones.entry(zone.id()).or_default().push(ZoneEntry {
                zone: zone.downgrade(),
                last_confirmed,
            }),
        }
    }

    /// Stops gating zone `id` (every open instance of it). Its availability
    /// stays as it is.
    pub fn unwatch_zone(&self, id: ZoneId) {
        self.lock().zones.remove(&id);
    }

    /// Opens the zone in `store`, checked against `anchor`, with
    /// [`Keyring::open_zone_gated`] and watches it: a zone whose key is
    /// unusable now opens unavailable and serves from the first check that
    /// finds the key usable.
    ///
    /// # Errors
    /// As [`Keyring::open_zone_gated`].
    pub async fn open_zone(
        &self,
        keyring: &Arc<Keyring>,
        store: Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let zone = keyring.open_zone_gated(store, anchor).await?;
        self.watch_zone(&zone);
        Ok(zone)
    }

    /// The state the last check found for `key`, if it was checked.
    pub fn key_status(&self, key: &KeyRef) -> Option<KeyState> {
        self.lock().keys.get(key).and_then(|e| e.status)
    }

    /// Checks every watched key now (concurrently, each bounded by
    /// [`MonitorConfig::check_timeout`]), gates every watched zone on the
    /// result, and publishes the changes.
    pub async fn check_now(&self) -> CheckReport {
        let _pass = self.pass.lock().await;
        let started = Instant::now();
        let (targets, zones) = self.targets();

        // Root aliases resolve alongside the key checks; they only inform.
        let mut alias_checks = JoinSet::new();
        for (alias, provider) in root_aliases(&zones) {
            let config = self.config.clone();
            alias_checks.spawn(async move {
                let now = check::resolve_alias(provider.as_ref(), &alias, &config).await;
                (alias, now)
            });
        }

        let mut checks = JoinSet::new();
        let slot_start_ms = self.slot_start_ms();
        let permits = Arc::new(tokio::sync::Semaphore::new(
            self.config.max_concurrent_checks.max(1),
        ));
        for (key, provider) in targets {
            let config = self.config.clone();
            let shared = self.shared.clone();
            let permits = Arc::clone(&permits);
            checks.spawn(async move {
                // Never closed, so the permit always comes.
                let _permit = permits.acquire_owned().await.ok();
                let obtained = match &shared {
                    Some(shared) => {
                        shared::obtain(shared, provider.as_ref(), &key, &config, slot_start_ms)
                            .await
                    }
                    None => shared::Obtained {
                        state: check::check_key(provider.as_ref(), &key, &config).await,
                        last_usable_ms: None,
                        checked_here: true,
                    },
                };
                if obtained.checked_here {
                    metrics::counter!(crate::metrics::MONITOR_CHECKS,
                        "outcome" => obtained.state.as_str())
                    .increment(1);
                }
                (key, obtained)
            });
        }
        let mut results = HashMap::new();
        // When another node's check (or this one's) last found each key
        // usable, for the grace period.
        let mut confirmed: HashMap<KeyRef, Instant> = HashMap::new();
        while let Some(joined) = checks.join_next().await {
            match joined {
                Ok((key, obtained)) => {
                    if let Some(at) = obtained.last_usable_ms.and_then(instant_of_ms) {
                        confirmed.insert(key.clone(), at);
                    }
                    results.insert(key, obtained.state);
                }
                // A provider that panics is a bug in it; the keys it did
                // not report are treated as unchecked (zones unchanged,
                // retried soon).
                Err(e) => {
                    tracing::error!(target: "cmek::monitor", error = %e, "key check task failed")
                }
            }
        }
        let mut retry_soon = false;
        for (key, state) in &results {
            self.record_key(key, *state);
            retry_soon |= *state == KeyState::Unreachable;
        }

        let mut zone_report = Vec::with_capacity(zones.len());
        for zone in &zones {
            let root = zone.root();
            let Some(state) = results.get(&root).copied() else {
                // The root changed while the keys were checked: the next
                // check covers the new one.
                retry_soon = true;
                zone_report.push((zone.id(), zone.availability()));
                continue;
            };
            retry_soon |= !self
                .gate(zone, &root, state, confirmed.get(&root).copied())
                .await;
            zone_report.push((zone.id(), zone.availability()));
        }

        // After gating, so that a slow alias never delays a revocation.
        let mut aliases = HashMap::new();
        while let Some(joined) = alias_checks.join_next().await {
            match joined {
                Ok((alias, Ok(now))) => {
                    aliases.insert(alias, now);
                }
                Ok((alias, Err(e))) => {
                    tracing::warn!(target: "cmek::monitor", alias = %alias, error = %e.report(),
                        "could not resolve a zone's root key alias (zones are gated on their recorded keys)");
                }
                Err(e) => {
                    tracing::error!(target: "cmek::monitor", error = %e, "alias check task failed")
                }
            }
        }
        for zone in &zones {
            self.compare_alias(zone, &aliases);
        }

        // An EZK past half its wrap limit is rotated here, long before new
        // segments would be refused at the limit: the monitor is the one
        // place that runs on a schedule and may call the provider.
        let mut rotated = Vec::new();
        for zone in &zones {
            if !zone.is_available() || !zone.needs_ezk_rotation() {
                continue;
            }
            match zone.rotate_ezk().await {
                Ok(version) => {
                    tracing::info!(target: "cmek::monitor", zone = %zone.id(), version,
                        "rotated an EZK past half its DEK wrap limit");
                    rotated.push((zone.id(), version));
                }
                Err(e) => {
                    retry_soon = true;
                    tracing::warn!(target: "cmek::monitor", zone = %zone.id(), error = %e.report(),
                        "an EZK past half its DEK wrap limit could not be rotated");
                }
            }
        }

        let gated = zone_report
            .iter()
            .filter(|(_, a)| !a.is_available())
            .count();
        metrics::gauge!(crate::metrics::MONITOR_GATED_ZONES).set(gated as f64);

        let mut keys: Vec<_> = results.into_iter().collect();
        keys.sort_by_key(|(key, _)| key.to_string());
        CheckReport {
            keys,
            zones: zone_report,
            took: started.elapsed(),
            retry_soon,
            rotated,
        }
    }

    /// Starts the check loop on the current tokio runtime: a check at once,
    /// then one every [`MonitorConfig::interval`] (start to start), or
    /// every [`MonitorConfig::retry_interval`] while something is
    /// unsettled. The loop runs until the handle is stopped or dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(self: &Arc<Self>) -> MonitorHandle {
        let monitor = Arc::clone(self);
        let task = tokio::spawn(async move {
            loop {
                let started = Instant::now();
                let report = monitor.check_now().await;
                let next = if report.retry_soon {
                    started + monitor.config.retry_interval.min(monitor.config.interval)
                } else if monitor.shared.is_some() {
                    // Nodes sharing verdicts check at the same moments (the
                    // starts of the interval on the wall clock), so that
                    // the first takes the lease and the others find its
                    // verdict soon after.
                    Instant::now() + monitor.until_next_slot()
                } else {
                    started + monitor.config.interval
                };
                tokio::time::sleep_until(next).await;
            }
        });
        MonitorHandle { task }
    }

    /// The wall-clock start of the current interval, in milliseconds:
    /// intervals are counted from the Unix epoch, so that every node sharing
    /// verdicts agrees on them.
    fn slot_start_ms(&self) -> u64 {
        let interval = (self.config.interval.as_millis() as u64).max(1);
        let now = verdict::now_ms();
        now - now % interval
    }

    /// Time from now to the start of the next interval (see
    /// [`slot_start_ms`](Self::slot_start_ms)).
    fn until_next_slot(&self) -> std::time::Duration {
        let interval = (self.config.interval.as_millis() as u64).max(1);
        let now = verdict::now_ms();
        std::time::Duration::from_millis(interval - now % interval)
    }

    /// The keys to check (with their providers) and the live zones;
    /// forgets dropped zones and keys nothing needs any more.
    fn targets(&self) -> (Vec<Target>, Vec<Zone>) {
        let mut watched = self.lock();
        let mut zones = Vec::new();
        watched.zones.retain(|_, entries| {
            entries.retain(|entry| match entry.zone.upgrade() {
                Some(zone) => {
                    zones.push(zone);
                    true
                }
                None => false,
            });
            !entries.is_empty()
        });
        let live: std::collections::HashSet<ZoneId> = zones.iter().map(Zone::id).collect();
        watched
            .moved_aliases
            .retain(|(zone, _), _| live.contains(zone));
        let roots: HashMap<KeyRef, &Zone> = zones.iter().map(|z| (z.root(), z)).collect();
        watched
            .keys
            .retain(|key, entry| entry.explicit || roots.contains_key(key));
        for (root, zone) in &roots {
            watched
                .keys
                .entry(root.clone())
                .or_insert_with(|| KeyEntry {
                    provider: zone.provider(),
                    explicit: false,
                    status: None,
                });
        }
        let targets = watched
            .keys
            .iter()
            .map(|(key, entry)| (key.clone(), Arc::clone(&entry.provider)))
            .collect();
        (targets, zones)
    }

    /// Publishes a move of `zone`'s root alias away from its recorded key,
    /// once per new target. Never changes the zone.
    fn compare_alias(&self, zone: &Zone, aliases: &HashMap<KeyRef, KeyRef>) {
        let Some((root, alias)) = root_alias_of(zone) else {
            return;
        };
        let Some(now) = aliases.get(&alias) else {
            return;
        };
        let slot = (zone.id(), alias.clone());
        let newly_moved = {
            let mut watched = self.lock();
            if *now == root {
                // Back where the zone's key is: a later move is news again.
                watched.moved_aliases.remove(&slot);
                false
            } else {
                watched.moved_aliases.insert(slot, now.clone()).as_ref() != Some(now)
            }
        };
        if newly_moved {
            self.publish(MonitorEvent::RootAliasMoved {
                zone: zone.id(),
                alias: alias.key_id().to_owned(),
                recorded: root,
                now: now.clone(),
                at: SystemTime::now(),
            });
        }
    }

    /// Stores a key's new state and publishes a change.
    fn record_key(&self, key: &KeyRef, state: KeyState) {
        let old = {
            let mut watched = self.lock();
            let Some(entry) = watched.keys.get_mut(key) else {
                return;
            };
            entry.status.replace(state)
        };
        if old != Some(state) {
            self.publish(MonitorEvent::KeyStatusChanged {
                key: key.clone(),
                old,
                new: state,
                at: SystemTime::now(),
            });
        }
    }

    /// Applies a key check's result to one zone. Returns false if the zone
    /// is left unsettled (kept serving on a grace period, or not recovered).
    async fn gate(
        &self,
        zone: &Zone,
        root: &KeyRef,
        state: KeyState,
        confirmed: Option<Instant>,
    ) -> bool {
        let id = zone.id();
        let before = zone.availability();
        match state {
            KeyState::Enabled => {
                self.set_last_confirmed(zone, confirmed.unwrap_or_else(Instant::now));
                if before.is_available() {
                    return true;
                }
                match zone.recover().await {
                    Ok(true) => {
                        self.publish_zone(id, root, before, ZoneAvailability::Available);
                        true
                    }
                    Ok(false) => true,
                    Err(e) => {
                        tracing::warn!(target: "cmek::monitor", zone = %id, key = %root, error = %e.report(),
                            "key is usable but the zone could not recover; retrying soon");
                        false
                    }
                }
            }
            KeyState::Unreachable => {
                let within_grace = match self.config.unreachable {
                    UnreachablePolicy::FailClosed => false,
                    // The last confirmation by this node (opening the
                    // zone, a check) or by the node whose verdict it read.
                    UnreachablePolicy::GracePeriod(grace) => self
                        .last_confirmed(zone)
                        .max(confirmed)
                        .is_some_and(|t| t.elapsed() <= grace),
                };
                if !within_grace {
                    self.stop(zone, root, before, state);
                } else if before.is_available() {
                    tracing::warn!(target: "cmek::monitor", zone = %id, key = %root,
                        "key provider unreachable; zone serving from cache within its grace period");
                }
                false
            }
            _ => {
                self.stop(zone, root, before, state);
                true
            }
        }
    }

    fn stop(&self, zone: &Zone, root: &KeyRef, before: ZoneAvailability, state: KeyState) {
        if zone.mark_unavailable(state).is_some() {
            self.publish_zone(
                zone.id(),
                root,
                before,
                ZoneAvailability::Unavailable(state),
            );
        }
    }

    fn publish_zone(
        &self,
        zone: ZoneId,
        key: &KeyRef,
        old: ZoneAvailability,
        new: ZoneAvailability,
    ) {
        self.publish(MonitorEvent::ZoneAvailabilityChanged {
            zone,
            key: key.clone(),
            old,
            new,
            at: SystemTime::now(),
        });
    }

    fn publish(&self, event: MonitorEvent) {
        event.trace();
        // No subscriber is not an error: tracing still has the event.
        let _ = self.events.send(event);
    }

    fn set_last_confirmed(&self, zone: &Zone, at: Instant) {
        if let Some(entry) = self.lock().zone_mut(zone) {
            entry.last_confirmed = Some(at);
        }
    }

    fn last_confirmed(&self, zone: &Zone) -> Option<Instant> {
        self.lock().zone_mut(zone).and_then(|e| e.last_confirmed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The instant a wall-clock time in milliseconds was, on tokio's clock;
/// `None` if it is too far back to name.
fn instant_of_ms(ms: u64) -> Option<Instant> {
    let ago = verdict::now_ms().saturating_sub(ms);
    Instant::now().checked_sub(std::time::Duration::from_millis(ago))
}

/// `zone`'s root key and the reference of its root alias, if it has one
/// (the alias name in the provider and region of the key it was resolved
/// to), from one snapshot of the manifest.
fn root_alias_of(zone: &Zone) -> Option<(KeyRef, KeyRef)> {
    let manifest = zone.manifest();
    let root = manifest.root();
    let alias = KeyRef::new(root.provider(), manifest.root_alias()?, root.region());
    Some((root.clone(), alias))
}

/// Every distinct root alias of `zones`, with the provider to resolve it.
fn root_aliases(zones: &[Zone]) -> Vec<Target> {
    let mut aliases: HashMap<KeyRef, Arc<dyn KeyProvider>> = HashMap::new();
    for zone in zones {
        if let Some((_, alias)) = root_alias_of(zone) {
            aliases.entry(alias).or_insert_with(|| zone.provider());
        }
    }
    aliases.into_iter().collect()
}

/// The running check loop of a [`KeyMonitor`]. Dropping it stops the loop.
#[derive(Debug)]
pub struct MonitorHandle {
    task: JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops the loop (a check in progress is abandoned; zones keep the
    /// availability they have).
    pub fn stop(self) {
        // Drop does it.
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
