//! Availability gating: a zone serves data only while its root key is
//! known to be usable.
//!
//! A zone is *available* when it holds its unwrapped EZKs. Marking it
//! unavailable replaces its state with one that holds none, so the EZK
//! plaintext is dropped (and zeroized) as soon as the last in-flight data
//! call that borrowed the previous state returns; every later data call
//! fails with [`Error::ZoneUnavailable`], including the next chunk of a
//! reader or writer opened before (their gate checks the zone's state at
//! each chunk). Its [`kind`](Error::kind) tells an outage (the provider
//! could not be reached: retry) from a revocation (the key is disabled,
//! deleted or denied: tell its owner). Recovery unwraps the EZKs again
//! through the provider: it is the only way back, so a zone never serves
//! on a key nobody has confirmed.
//!
//! This module decides nothing about *when* to gate; the
//! [`monitor`](crate::monitor) does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::{Zone, ZoneState};
use crate::provider::KeyState;
use crate::{Error, Result};

/// Whether a zone serves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneAvailability {
    /// The zone holds its EZKs and serves reads and writes.
    Available,
    /// The zone holds no key material and refuses every data call with
    /// [`Error::ZoneUnavailable`] carrying this state of its root key.
    Unavailable(KeyState),
}

impl ZoneAvailability {
    /// True if the zone serves data.
    pub fn is_available(self) -> bool {
        self == ZoneAvailability::Available
    }
}

impl fmt::Display for ZoneAvailability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneAvailability::Available => f.write_str("available"),
            ZoneAvailability::Unavailable(state) => write!(f, "unavailable (key {state})"),
        }
    }
}

impl ZoneState {
    /// The error every data call returns while the zone is unavailable.
    pub(super) fn ensure_available(&self) -> Result<()> {
        match self.availability {
            ZoneAvailability::Available => Ok(()),
            ZoneAvailability::Unavailable(state) => Err(Error::ZoneUnavailable {
                zone: self.manifest.zone_id,
                key: self.manifest.root.to_string(),
                state,
            }),
        }
    }

    /// EZK version `version`, if the zone is available and has it.
    pub(super) fn ezk(&self, version: u32) -> Result<&Arc<super::Ezk>> {
        self.ensure_available()?;
        self.ezks
            .get(&version)
            .ok_or_else(|| Error::UnknownEzkVersion {
                version,
                newest: self.manifest.newest_version(),
            })
    }
}

impl Zone {
    /// Whether the zone serves data now.
    pub fn availability(&self) -> ZoneAvailability {
        self.state().availability
    }

    /// True if the zone serves data now.
    pub fn is_available(&self) -> bool {
        self.availability().is_available()
    }

    /// Stops serving: drops the EZKs at once and refuses data calls with
    /// `key_state` until [`recover`](Self::recover) succeeds. Returns the
    /// previous availability if it changed.
    ///
    /// Deliberately not behind the admin lock: revocation must not wait for
    /// a rotation's provider call. A rotation that commits afterwards keeps
    /// the zone unavailable (see [`Zone::commit`]).
    pub(crate) fn mark_unavailable(&self, key_state: KeyState) -> Option<ZoneAvailability> {
        let new = ZoneAvailability::Unavailable(key_state);
        let mut slot = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        let old = slot.availability;
        if old == new {
            return None;
        }
        *slot = Arc::new(ZoneState {
            manifest: slot.manifest.clone(),
            stored: slot.stored.clone(),
            unverified: slot.unverified.clone(),
            ezks: BTreeMap::new(),
            availability: new,
        });
        drop(slot);
        tracing::debug!(zone = %self.id(), root = %self.root(), key_state = %key_state,
            "zone unavailable: key material dropped, data calls refused");
        Some(old)
    }

    /// Unwraps every EZK version of the manifest again (one provider call
    /// each) and serves again. Returns false if the zone was available
    /// already (nothing is called).
    ///
    /// # Errors
    /// Provider errors; the zone then stays unavailable.
    pub(crate) async fn recover(&self) -> Result<bool> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        if state.availability.is_available() {
            return Ok(false);
        }
        let m = &state.manifest;
        let mut ezks = BTreeMap::new();
        for (version, record) in m.ezk_versions() {
            let ezk = self
                .inner
                .keyring
                .unwrap_ezk(&m.root, &m.zone_id, version, record)
                .await?;
            ezks.insert(version, ezk);
        }
        // A zone opened while its key was unusable authenticates its
        // manifest now, before it serves anything.
        if let Some(seal) = &state.unverified {
            super::keyring::verify_with(seal, m, &ezks)?;
        }
        // Installed only if nothing marked the zone again (with another
        // reason) while the provider calls ran: that newer verdict wins.
        let mut slot = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        if slot.availability != state.availability || !Arc::ptr_eq(&slot.stored, &state.stored) {
            return Ok(false);
        }
        *slot = Arc::new(ZoneState {
            manifest: slot.manifest.clone(),
            stored: slot.stored.clone(),
            unverified: None,
            ezks,
            availability: ZoneAvailability::Available,
        });
        drop(slot);
        tracing::debug!(zone = %self.id(), root = %self.root(), "zone available again");
        Ok(true)
    }

    /// Handles on the zone's unwrapped EZKs that do not keep them alive:
    /// tests use them to see the key material dropped.
    #[cfg(test)]
    pub(crate) fn ezk_handles(&self) -> Vec<std::sync::Weak<super::Ezk>> {
        self.state().ezks.values().map(Arc::downgrade).collect()
    }

    /// The zone's EZKs and the DEKs of `segments` (id, bytes starting with
    /// the header), for tests that look for them where they must not be.
    #[cfg(test)]
    pub(crate) fn secrets_for_tests(
        &self,
        segments: &[(&str, &[u8])],
    ) -> Vec<[u8; crate::secret::KEY_LEN]> {
        let mut secrets: Vec<_> = self
            .state()
            .ezks
            .values()
            .map(|e| *e.key.expose_secret())
            .collect();
        for (id, bytes) in segments {
            let (dek, _) = self.open_header(id, bytes).expect("a segment of this zone");
            secrets.push(*dek.expose_secret());
        }
        secrets
    }

    /// A handle that does not keep the zone open.
    pub(crate) fn downgrade(&self) -> WeakZone {
        WeakZone(Arc::downgrade(&self.inner))
    }
}

/// A [`Zone`] reference that does not keep it alive.
#[derive(Clone)]
pub(crate) struct WeakZone(std::sync::Weak<super::ZoneInner>);

impl WeakZone {
    /// True if this refers to `zone` (or one of its clones).
    pub(crate) fn is(&self, zone: &Zone) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&zone.inner))
    }

    /// The zone, if some clone of it is still alive.
    pub(crate) fn upgrade(&self) -> Option<Zone> {
        self.0.upgrade().map(|inner| Zone { inner })
    }
}
