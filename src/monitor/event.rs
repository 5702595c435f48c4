//! The alerts the monitor sends to its subscribers.

use std::fmt;
use std::time::SystemTime;

use crate::provider::{KeyRef, KeyState};
use crate::zone::{ZoneAvailability, ZoneId};

/// A change the monitor observed. Each is also emitted as a `tracing`
/// event (target `cmek::monitor`): `warn` when something stops, `info`
/// when it comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A check found a key in another state than the previous check did.
    KeyStatusChanged {
        /// The key.
        key: KeyRef,
        /// The state the previous check found; `None` at the first check.
        old: Option<KeyState>,
        /// The state this check found.
        new: KeyState,
        /// When the change was observed.
        at: SystemTime,
    },
    /// A zone stopped or started serving.
    ZoneAvailabilityChanged {
        /// The zone.
        zone: ZoneId,
        /// Its root key.
        key: KeyRef,
        /// Before.
        old: ZoneAvailability,
        /// After.
        new: ZoneAvailability,
        /// When the change took effect.
        at: SystemTime,
    },
    /// The alias a zone's root key was named by when it was chosen now
    /// points to another key. The zone stays under the key it recorded
    /// (`recorded`) and is gated on that key only: the alias is never
    /// followed. Whoever re-pointed the alias may be moving away from the
    /// recorded key — disabling it will stop the zone — so this is a key
    /// change to act on (rotate the zone to the new key, or put the alias
    /// back). Published when a check first sees the alias at `now`.
    RootAliasMoved {
        /// The zone.
        zone: ZoneId,
        /// The alias, as the zone's creator named it (e.g. `alias/orders`).
        alias: String,
        /// The key the zone recorded, which wraps its EZKs.
        recorded: KeyRef,
        /// The key the alias points to now.
        now: KeyRef,
        /// When the move was observed.
        at: SystemTime,
    },
}

impl MonitorEvent {
    /// When the change happened.
    pub fn at(&self) -> SystemTime {
        match self {
            MonitorEvent::KeyStatusChanged { at, .. }
            | MonitorEvent::ZoneAvailabilityChanged { at, .. }
            | MonitorEvent::RootAliasMoved { at, .. } => *at,
        }
    }

    /// The key the event is about (for an alias move, the key the zone
    /// recorded).
    pub fn key(&self) -> &KeyRef {
        match self {
            MonitorEvent::KeyStatusChanged { key, .. }
            | MonitorEvent::ZoneAvailabilityChanged { key, .. } => key,
            MonitorEvent::RootAliasMoved { recorded, .. } => recorded,
        }
    }

    /// Emits the event as a `tracing` event.
    pub(super) fn trace(&self) {
        match self {
            MonitorEvent::KeyStatusChanged { key, old, new, .. } => {
                let old = old.map_or("unchecked", KeyState::as_str);
                if new.is_usable() {
                    tracing::info!(target: "cmek::monitor", key = %key, old, new = %new, "key status changed");
                } else {
                    tracing::warn!(target: "cmek::monitor", key = %key, old, new = %new, "key status changed");
                }
            }
            MonitorEvent::ZoneAvailabilityChanged {
                zone,
                key,
                old,
                new,
                ..
            } => {
                if new.is_available() {
                    tracing::info!(target: "cmek::monitor", zone = %zone, key = %key, old = %old, new = %new, "zone availability changed");
                } else {
                    tracing::warn!(target: "cmek::monitor", zone = %zone, key = %key, old = %old, new = %new, "zone availability changed");
                }
            }
            MonitorEvent::RootAliasMoved {
                zone,
                alias,
                recorded,
                now,
                ..
            } => {
                tracing::warn!(target: "cmek::monitor", zone = %zone, alias, recorded = %recorded, now = %now,
                    "root key alias now points to another key; the zone stays under the key it recorded");
            }
        }
    }
}

impl fmt::Display for MonitorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MonitorEvent::KeyStatusChanged { key, old, new, .. } => {
                let old = old.map_or("unchecked", KeyState::as_str);
                write!(f, "key {key}: {old} -> {new}")
            }
            MonitorEvent::ZoneAvailabilityChanged {
                zone,
                key,
                old,
                new,
                ..
            } => write!(f, "zone {zone} (key {key}): {old} -> {new}"),
            MonitorEvent::RootAliasMoved {
                zone,
                alias,
                recorded,
                now,
                ..
            } => write!(
                f,
                "zone {zone}: root key alias {alias} now points to {now}, not to the zone's key {recorded}"
            ),
        }
    }
}
