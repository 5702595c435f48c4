//! Zone administration: EZK rotation, root-key rotation, retirement of
//! old EZK versions, and reloading what other processes changed. Each
//! change calls the provider where it must (never on the data path) and is
//! persisted before the zone uses it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::manifest::EzkRecord;
use super::{keyring, now_unix, Ezk, Zone, ZoneManifest, MAX_EZK_VERSIONS};
use crate::provider::KeyRef;
use crate::{Error, Result};

/// Confirms that no segment still uses an EZK version, for
/// [`Zone::retire_ezk`]. A retired version cannot be recovered: segments
/// still under it become undecryptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireConfirmation {
    /// The caller has rewrapped or deleted every segment under the version.
    NoSegmentUsesIt,
}

impl Zone {
    /// Adds a new EZK version and makes it active: one provider call, then
    /// the manifest is persisted, and only then do new segments use it. Old
    /// versions keep decrypting. Returns the new version.
    ///
    /// # Errors
    /// Provider errors; [`Error::Io`] if the manifest cannot be stored (the
    /// zone then stays as it was); [`Error::LimitExceeded`] past
    /// [`MAX_EZK_VERSIONS`].
    pub async fn rotate_ezk(&self) -> Result<u32> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        state.ensure_available()?;
        let mut manifest = state.manifest.clone();
        if manifest.ezks.len() >= MAX_EZK_VERSIONS {
            return Err(Error::LimitExceeded {
                what: "EZK versions in one zone",
                limit: MAX_EZK_VERSIONS as u64,
            });
        }
        let version = manifest
            .ezks
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(Error::LimitExceeded {
                what: "EZK version number",
                limit: u64::from(u32::MAX),
            })?;
        let (ezk, wrapped) = self
            .inner
            .keyring
            .provider()
            .generate_key(
                &manifest.root,
                &ZoneManifest::ezk_context(&manifest.zone_id, version),
            )
            .await?;
        let now = now_unix();
        manifest.ezks.insert(
            version,
            EzkRecord {
                created_unix: now,
                wrapped,
                wraps_reserved: 0,
            },
        );
        manifest.active = version;
        self.commit(manifest, &state, |ezks| {
            ezks.insert(version, Arc::new(Ezk::new(ezk, 0)));
        })?;
        tracing::info!(zone = %self.id(), version, "rotated EZK");
        Ok(version)
    }

    /// Rewraps every EZK version under `new_root` (one provider call per
    /// version) and persists the manifest; no segment changes, and the zone
    /// serves throughout. The old root key is no longer needed afterwards.
    /// `new_root` is first resolved through the provider (one more call):
    /// for an alias, the zone records the key it points to now, and the
    /// alias only for display ([`ZoneManifest::root_alias`]).
    ///
    /// # Errors
    /// Provider errors (nothing is changed); [`Error::Io`] if the manifest
    /// cannot be stored (the zone stays under the old root).
    pub async fn rotate_root(&self, new_root: KeyRef) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        ZoneManifest::check_new(&manifest.name, &manifest.region, &new_root)?;
        let provider = self.inner.keyring.provider();
        // As at creation: an alias is resolved once and never followed.
        let (new_root, new_alias) = keyring::resolve_root(provider.as_ref(), &new_root).await?;
        ZoneManifest::check_new(&manifest.name, &manifest.region, &new_root)?;
        for (version, record) in manifest.ezks.iter_mut() {
            let context = ZoneManifest::ezk_context(&manifest.zone_id, *version);
            record.wrapped = provider
                .wrap_key(&new_root, &state.ezk(*version)?.key, &context)
                .await?;
        }
        let old = std::mem::replace(&mut manifest.root, new_root);
        manifest.root_alias = new_alias;
        self.commit(manifest, &state, |_| {})?;
        tracing::info!(zone = %self.id(), old_root = %old, new_root = %self.root(), "rotated root key");
        Ok(())
    }

    /// Removes EZK version `version` from the manifest for good. Refuses the
    /// active version. Segments still under it become undecryptable, hence
    /// the confirmation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the active or an unknown version;
    /// [`Error::Io`] if the manifest cannot be stored.
    pub async fn retire_ezk(&self, version: u32, _confirm: RetireConfirmation) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        if version == manifest.active {
            return Err(Error::InvalidArgument(format!(
                "EZK version {version} is active; rotate before retiring it"
            )));
        }
        if manifest.ezks.remove(&version).is_none() {
            return Err(Error::InvalidArgument(format!(
                "zone {} has no EZK version {version}",
                manifest.zone_id
            )));
        }
        self.commit(manifest, &state, |ezks| {
            ezks.remove(&version);
        })?;
        tracing::info!(zone = %self.id(), version, "retired EZK version");
        Ok(())
    }

    /// Reads the manifest again from the store and takes in what other
    /// processes changed: new EZK versions (one provider call each),
    /// retirements, wrap reservations. The stored manifest must be this
    /// zone's, under the same root key, at this generation or newer, and
    /// authentic; otherwise nothing changes. A zone whose root key was
    /// rotated elsewhere is opened again with its new anchor instead.
    ///
    /// # Errors
    /// [`Error::StateRejected`] for a rolled-back, foreign or re-rooted
    /// manifest; [`Error::Integrity`] for a forged one; [`Error::NotFound`]
    /// if the store no longer holds one; [`Error::ZoneUnavailable`] while
    /// the zone does not serve; provider errors.
    pub async fn reload(&self) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        state.ensure_available()?;
        let Some((manifest, seal, bytes)) = self.load_changed(&state)? else {
            return Ok(());
        };
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let same_wrap = state
                .manifest
                .ezks
                .get(&version)
                .is_some_and(|r| r.wrapped == record.wrapped);
            let ezk = match state.ezks.get(&version) {
                // Its counters carry on: the next reservation starts past
                // every block other processes took meanwhile.
                Some(held) if same_wrap => held.clone(),
                _ => {
                    self.inner
                        .keyring
                        .unwrap_ezk(&manifest.root, &manifest.zone_id, version, record)
                        .await?
                }
            };
            ezks.insert(version, ezk);
        }
        keyring::verify_with(&seal, &manifest, &ezks)?;
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        if *self.state().stored != *state.stored {
            return Err(Error::Conflict {
                what: "zone manifest",
                reason: "this process changed the manifest during the reload; retry".into(),
            });
        }
        tracing::info!(zone = %manifest.zone_id, generation = manifest.generation, "reloaded zone");
        self.install(manifest, bytes, ezks);
        Ok(())
    }
}
