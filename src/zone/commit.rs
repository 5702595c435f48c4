//! How a zone's manifest changes: every write is a compare-and-swap on the
//! bytes the zone last read, sealed with the active EZK, and installed in
//! memory only once stored. DEK-wrap reservations — the one manifest write
//! the data path makes — live here too.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::manifest::{self, ManifestSeal};
use super::{keyring, now_unix, Ezk, Zone, ZoneManifest, ZoneState};
use crate::cipher::WRAP_LIMIT;
use crate::{Error, Result};

/// The first block of DEK wraps a process reserves under an EZK: small, so
/// that short-lived processes (one CLI command) use little of the limit.
const FIRST_WRAP_BLOCK: u64 = 1 << 16;
/// The largest block: a manifest write per 16 Mi new segments at most.
const MAX_WRAP_BLOCK: u64 = 1 << 24;
/// Past this many reserved wraps, the active EZK should be rotated
/// ([`Zone::needs_ezk_rotation`]): half the random-nonce limit.
pub const ROTATE_AFTER_WRAPS: u64 = WRAP_LIMIT / 2;

impl Zone {
    /// Persists `manifest` (generation bumped, authenticated with its
    /// active EZK), then swaps in a state with the EZK set changed by
    /// `change`. Nothing changes if storing fails; [`Error::Conflict`] if
    /// another process changed the manifest since this zone read it.
    ///
    /// If the zone was marked unavailable while the change ran, the new
    /// manifest is installed but no EZK is: recovery unwraps them from it.
    pub(super) fn commit(
        &self,
        mut manifest: ZoneManifest,
        base: &ZoneState,
        change: impl FnOnce(&mut BTreeMap<u32, Arc<Ezk>>),
    ) -> Result<()> {
        // Sealing needs the active EZK: a zone that was unavailable when
        // the change began has none (one that became unavailable since
        // still seals with what it held then).
        base.ensure_available()?;
        let mut ezks = base.ezks.clone();
        change(&mut ezks);
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.state();
        // Wrap reservations made by the data path since `base` was read are
        // kept: they count wraps already performed.
        for (version, record) in manifest.ezks.iter_mut() {
            if let Some(now) = current.manifest.ezks.get(version) {
                record.wraps_reserved = record.wraps_reserved.max(now.wraps_reserved);
            }
        }
        manifest.generation = current.manifest.generation + 1;
        manifest.updated_unix = now_unix();
        let active = ezks.get(&manifest.active).ok_or(Error::UnknownEzkVersion {
            version: manifest.active,
            newest: manifest.newest_version(),
        })?;
        let bytes = manifest.seal(&active.key)?;
        self.replace_stored(&current.stored, &bytes)?;
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Replaces the stored manifest `current` with `new`. If the store holds
    /// a manifest this zone tried to write and got an error for, that one
    /// counts as `current`: it was never used (the zone kept the previous
    /// state), and a write that failed after its rename must not block
    /// every later change.
    pub(super) fn replace_stored(&self, current: &[u8], new: &[u8]) -> Result<()> {
        let uncertain = self
            .inner
            .uncertain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut result = self.inner.store.replace(Some(current), new);
        if let (Err(Error::Conflict { .. }), Some(ours)) = (&result, &uncertain) {
            if self.inner.store.load()?.as_deref() == Some(ours.as_slice()) {
                result = self.inner.store.replace(Some(ours), new);
            }
        }
        match &result {
            Ok(()) | Err(Error::Conflict { .. }) => {}
            Err(_) => {
                *self
                    .inner
                    .uncertain
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(new.to_vec());
            }
        }
        result
    }

    /// The stored manifest if it differs from the one `state` holds,
    /// parsed and checked against this zone's current anchor (same zone,
    /// same root, no older): not yet authenticated.
    pub(super) fn load_changed(
        &self,
        state: &ZoneState,
    ) -> Result<Option<(ZoneManifest, ManifestSeal, Vec<u8>)>> {
        let bytes = self
            .inner
            .store
            .load()?
            .ok_or_else(|| super::keyring::no_manifest(self.inner.store.as_ref()))?;
        if bytes == *state.stored {
            return Ok(None);
        }
        let (manifest, seal) = ZoneManifest::parse_sealed(&bytes)?;
        state.anchor().check(&manifest)?;
        Ok(Some((manifest, seal, bytes)))
    }

    /// Takes in, without a provider call, a manifest another handle or
    /// process stored since this zone read its own: it must be this zone's,
    /// under the same root, no older, authentic under an EZK this zone
    /// holds, and hold only EZK versions this zone holds (a wrap
    /// reservation or a retirement made elsewhere). Anything more (a
    /// rotation made elsewhere) needs [`reload`](Self::reload):
    /// [`Error::Conflict`].
    pub(super) fn take_in_stored(&self) -> Result<()> {
        let state = self.state();
        let Some((manifest, seal, bytes)) = self.load_changed(&state)? else {
            return Ok(());
        };
        let needs_reload = || Error::Conflict {
            what: "zone manifest",
            reason: "another process rotated the zone: reload it (Zone::reload) and retry".into(),
        };
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let same = state
                .manifest
                .ezks
                .get(&version)
                .is_some_and(|r| r.wrapped == record.wrapped);
            match state.ezks.get(&version) {
                Some(ezk) if same => ezks.insert(version, ezk.clone()),
                _ => return Err(needs_reload()),
            };
        }
        keyring::verify_with(&seal, &manifest, &ezks)?;
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Swaps in a state holding `manifest`, stored as `bytes` (durably:
    /// written by this zone or read back from the store), with `ezks` if
    /// the zone is available now, none otherwise; then publishes its
    /// anchor to [`Zone::watch_anchor`]'s receivers.
    pub(super) fn install(
        &self,
        mut manifest: ZoneManifest,
        bytes: Vec<u8>,
        ezks: BTreeMap<u32, Arc<Ezk>>,
    ) {
        let bytes: Arc<[u8]> = bytes.into();
        manifest.sealed = manifest::SealedBytes(Some(bytes.clone()));
        let mut slot = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        let availability = slot.availability;
        let state = Arc::new(ZoneState {
            manifest,
            stored: bytes,
            unverified: None,
            ezks: if availability.is_available() {
                ezks
            } else {
                BTreeMap::new()
            },
            availability,
        });
        let anchor = state.anchor();
        *slot = state;
        // Published outside the state's lock: a receiver's borrow never
        // holds up readers of the zone.
        drop(slot);
        self.inner.anchor.send_if_modified(|current| {
            // Only forward: the generation grows with every change, the
            // root's included.
            let newer = anchor.min_generation() > current.min_generation();
            if newer {
                *current = anchor;
            }
            newer
        });
    }

    /// The current state, after reserving DEK wraps under the active EZK
    /// in the manifest if this process has used up its reservation.
    pub(super) fn state_with_wrap_reserved(&self) -> Result<Arc<ZoneState>> {
        loop {
            let state = self.state();
            if state.ezk(state.manifest.active)?.take_wrap() {
                return Ok(state);
            }
            self.reserve_wraps()?;
        }
    }

    /// Reserves the next block of DEK wraps under the active EZK: a
    /// manifest write (compare-and-swap; no provider call) recording that
    /// at most that many wraps were performed, so that a restart, a crash or
    /// another node never starts counting below the wraps really made.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another process changed the manifest (reload
    /// the zone); [`Error::LimitExceeded`] if the EZK reached its limit;
    /// [`Error::Io`].
    fn reserve_wraps(&self) -> Result<()> {
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        // Another handle or process may have written the manifest (its own
        // reservation): take that in and try again, a few times.
        for _ in 0..8 {
            match self.try_reserve_wraps() {
                Err(Error::Conflict { .. }) => self.take_in_stored()?,
                other => return other,
            }
        }
        Err(Error::Conflict {
            what: "zone manifest",
            reason: "other writers keep changing it; retry".into(),
        })
    }

    fn try_reserve_wraps(&self) -> Result<()> {
        let state = self.state();
        let active = state.manifest.active;
        let ezk = state.ezk(active)?;
        if ezk.next.load(Ordering::Acquire) < ezk.reserved.load(Ordering::Acquire) {
            return Ok(()); // another thread reserved meanwhile
        }
        let mut manifest = state.manifest.clone();
        let record = manifest
            .ezks
            .get_mut(&active)
            .expect("active version exists");
        // The new block starts where every earlier reservation, of any
        // process, ended: the wraps of all processes together never exceed
        // what the manifest records.
        let start = record.wraps_reserved;
        if start >= WRAP_LIMIT {
            return Err(Error::LimitExceeded {
                what: "DEK wraps under one EZK version (rotate the EZK)",
                limit: WRAP_LIMIT,
            });
        }
        let blocks = ezk.blocks.fetch_add(1, Ordering::Relaxed).min(8);
        let block = (FIRST_WRAP_BLOCK << blocks).min(MAX_WRAP_BLOCK);
        let reserved = start.saturating_add(block).min(WRAP_LIMIT);
        record.wraps_reserved = reserved;
        manifest.generation += 1;
        manifest.updated_unix = now_unix();
        let bytes = manifest.seal(&ezk.key)?;
        self.replace_stored(&state.stored, &bytes)?;
        ezk.next.fetch_max(start, Ordering::AcqRel);
        ezk.reserved.store(reserved, Ordering::Release);
        if reserved > ROTATE_AFTER_WRAPS {
            tracing::warn!(zone = %manifest.zone_id, version = active, reserved,
                "the active EZK is past half its wrap limit: rotate it");
        }
        let ezks = state.ezks.clone();
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Records `wraps` reserved under the active EZK, as if processes had
    /// reserved them: for tests of what happens near the wrap limit.
    #[cfg(test)]
    pub(crate) async fn reserve_wraps_for_test(&self, wraps: u64) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        let active = manifest.active;
        manifest
            .ezks
            .get_mut(&active)
            .expect("active")
            .wraps_reserved = wraps;
        self.commit(manifest, &state, |_| {})
    }
}
