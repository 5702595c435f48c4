//! The [`Keyring`]: the one object that talks to the key provider for
//! zones. It creates and opens zones, and coalesces concurrent unwraps of the
//! same EZK version into one provider call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::anchor::ZoneAnchor;
use super::manifest::{EzkRecord, ManifestSeal, ZoneManifest};
use super::store::ManifestStore;
use super::{now_unix, Ezk, Zone, ZoneAvailability, ZoneId};
use crate::cipher::{sha256, SHA256_LEN};
use crate::provider::{KeyProvider, KeyRef, KeyState, WrappedKey};
use crate::stream::Params;
use crate::{Error, Result, StateRejection};

/// What a new zone is made of.
///
/// The zone's region is its own, not always its root key's: a zone in
/// region R may use a key of R, or a replicated key of another region with
/// a replica in R (an AWS multi-region key), which unwraps there what the
/// key wrapped. [`Keyring::create_zone`] asks the root key's provider
/// whether the key serves the zone's region
/// ([`KeyProvider::serves_region`]) and refuses the zone with
/// [`Error::RegionMismatch`] if not.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    /// Human-readable name (1 to 256 bytes).
    pub name: String,
    /// The region the zone lives in: one its root key serves.
    pub region: String,
    /// The root key that wraps the zone's EZKs: a key, or an alias that
    /// the zone resolves once, at creation, to the key it points to.
    pub root: KeyRef,
    /// Stream parameters of the segments the zone writes.
    pub stream: Params,
}

impl ZoneSpec {
    /// A zone named `name` in `region` under `root`, with default stream
    /// parameters. Nothing is checked until the zone is created.
    pub fn new(name: impl Into<String>, region: impl Into<String>, root: KeyRef) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            root,
            stream: Params::default(),
        }
    }
}

/// Whether [`Keyring::open_or_create_zone`] created the zone it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ZoneOrigin {
    /// This call created the zone.
    Created,
    /// Another caller had created it; this call opened it, trusting the
    /// manifest on first use (see [`Keyring::open_or_create_zone`]).
    Existing,
}

/// Identifies one wrapped EZK version, for coalescing.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UnwrapKey {
    root: KeyRef,
    zone: ZoneId,
    version: u32,
    wrapped: [u8; SHA256_LEN],
    /// Part of the key because the unwrapped EZK's wrap counter starts
    /// there.
    wraps_reserved: u64,
}

type InFlight = Arc<OnceCell<Arc<Ezk>>>;

/// Creates and opens zones through one key provider.
///
/// Open a zone once and clone the [`Zone`] (it is cheap): opening calls the
/// provider once per EZK version. Opens of the same zone that run at the
/// same time share those calls.
#[derive(Debug)]
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    in_flight: Mutex<HashMap<UnwrapKey, InFlight>>,
}

impl std::fmt::Debug for UnwrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/v{}", self.root, self.zone, self.version)
    }
}

impl Keyring {
    /// A keyring over `provider`.
    pub fn new(provider: Arc<dyn KeyProvider>) -> Arc<Self> {
        Arc::new(Self {
            provider,
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Creates a zone: resolves `spec.root` (one provider call; an alias
    /// becomes the key it points to now, recorded as the zone's root, and
    /// the alias is kept for display as [`ZoneManifest::root_alias`]),
    /// checks that the key serves `spec.region` (a provider call only for
    /// a replica in another region), draws the zone's id and first EZK, wraps the EZK under the resolved
    /// key (one provider call), and persists the manifest in `store` before
    /// returning.
    ///
    /// Record the new zone's [`anchor`](Zone::anchor) where the storage
    /// that holds `store` cannot write: it is what opens the zone again
    /// ([`open_zone`](Self::open_zone)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `store` already holds a manifest or the
    /// spec is out of range; [`Error::RegionMismatch`] if the root key does
    /// not serve `spec.region` (see [`ZoneSpec`]); [`Error::Conflict`] if
    /// another creator stored one after this call looked (see
    /// [`open_or_create_zone`](Self::open_or_create_zone) for that race);
    /// provider errors as they come; [`Error::Io`] if the manifest cannot be
    /// stored (nothing is then created).
    pub async fn create_zone(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        spec: ZoneSpec,
    ) -> Result<Zone> {
        let zone_id = ZoneId::generate()?;
        self.create_zone_with_ids(store, spec, zone_id, zone_id)
            .await
    }

    /// [`create_zone`](Self::create_zone) with a zone id the caller drew
    /// (a restore records it before the zone exists, so that a restore
    /// resumed after a crash recognizes its zone) and the body zone id its
    /// segment bodies are bound to (see [`ZoneManifest::body_zone_id`]).
    pub(crate) async fn create_zone_with_ids(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        spec: ZoneSpec,
        zone_id: ZoneId,
        body_zone_id: ZoneId,
    ) -> Result<Zone> {
        ZoneManifest::check_new(&spec.name, &spec.region, &spec.root)?;
        if store.load()?.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} already holds a zone manifest",
                store.location()
            )));
        }
        self.create_in(store, spec, zone_id, body_zone_id).await
    }

    /// Creates the zone and stores its manifest on condition that `store`
    /// still holds none: [`Error::Conflict`] if another creator stored one
    /// first (nothing of this call's is kept).
    async fn create_in(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        spec: ZoneSpec,
        zone_id: ZoneId,
        body_zone_id: ZoneId,
    ) -> Result<Zone> {
        // An alias is resolved once, here: the zone records the key it
        // pointed to, so re-pointing the alias later cannot move the zone.
        // A key whose name rules the region out is refused before any call.
        self.provider.key_in_region(&spec.root, &spec.region)?;
        let (root, root_alias) = resolve_root(self.provider.as_ref(), &spec.root).await?;
        ZoneManifest::check_new(&spec.name, &spec.region, &root)?;
        self.provider
            .serves_region(&root, &spec.region)
            .await?
            .require(&root, &spec.region)?;
        let version = 1;
        let (ezk, wrapped) = self
            .provider
            .generate_key(&root, &ZoneManifest::ezk_context(&zone_id, version))
            .await?;
        let now = now_unix();
        let manifest = ZoneManifest {
            zone_id,
            body_zone_id,
            name: spec.name,
            region: spec.region,
            root,
            root_alias,
            chunk_size: spec.stream.chunk_size() as u32,
            active: version,
            generation: 1,
            created_unix: now,
            updated_unix: now,
            sealed: Default::default(),
            ezks: [(
                version,
                EzkRecord {
                    created_unix: now,
                    wrapped,
                    wraps_reserved: 0,
                },
            )]
            .into(),
        };
        let bytes = manifest.seal(&ezk)?;
        // Conditional on there being no manifest still: a concurrent create
        // in the same place fails instead of replacing this one.
        store.replace(None, &bytes)?;
        tracing::info!(zone = %zone_id, name = manifest.name, root = %manifest.root, "created zone");
        let ezks = [(version, Arc::new(Ezk::new(ezk, 0)))].into();
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            bytes,
            ezks,
            ZoneAvailability::Available,
        ))
    }

    /// Creates the zone `spec` describes in `store`, or opens the one
    /// another caller — another task, process or node sharing `store` —
    /// created there first: for nodes that start together and each make
    /// sure the zone exists. The store's compare-and-swap picks one creator
    /// ([`ManifestStore::replace`] with no current manifest); every other
    /// caller opens the winner's zone and gets [`ZoneOrigin::Existing`], so
    /// all of them end with the same zone.
    ///
    /// **Trust.** Opening an existing zone without its [`ZoneAnchor`] trusts
    /// the manifest on first use. This call checks what it can: the manifest
    /// must be an authenticated one (version 3), name the root key `spec`
    /// names (an alias in `spec` is resolved and compared), `spec`'s name,
    /// region and chunk size, and authenticate under its EZKs, which only
    /// that root key unwraps — so it is a zone of the customer's key, made
    /// for this spec. What it cannot tell without an anchor is whether it is
    /// the latest state of the zone (a rollback) or a manifest of another
    /// zone with the same spec and key planted in `store`. So use this call
    /// only while creating a zone, and record the returned zone's
    /// [`anchor`](Zone::anchor) at once, whichever the origin, where the
    /// storage holding `store` cannot write; open the zone afterwards with
    /// [`open_zone`](Self::open_zone). Never use it to reopen a zone you
    /// hold an anchor of: if that zone's manifest is gone, this call would
    /// create a new, empty zone in its place.
    ///
    /// # Errors
    /// As [`create_zone`](Self::create_zone) and
    /// [`open_zone`](Self::open_zone); [`Error::StateRejected`] if the
    /// existing manifest names another root key
    /// ([`StateRejection::UnexpectedRoot`](crate::StateRejection::UnexpectedRoot))
    /// or another name, region or chunk size
    /// ([`StateRejection::Mismatch`](crate::StateRejection::Mismatch)).
    pub async fn open_or_create_zone(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        spec: ZoneSpec,
    ) -> Result<(Zone, ZoneOrigin)> {
        ZoneManifest::check_new(&spec.name, &spec.region, &spec.root)?;
        if store.load()?.is_none() {
            let zone_id = ZoneId::generate()?;
            match self
                .create_in(store.clone(), spec.clone(), zone_id, zone_id)
                .await
            {
                Ok(zone) => return Ok((zone, ZoneOrigin::Created)),
                // Another creator stored its manifest after the load above:
                // open theirs.
                Err(Error::Conflict { .. }) => {
                    tracing::debug!(store = %store.location(), "another creator won; opening its zone");
                }
                Err(e) => return Err(e),
            }
        }
        let zone = self.open_created_elsewhere(store, &spec).await?;
        Ok((zone, ZoneOrigin::Existing))
    }

    /// Opens the zone in `store` for [`open_or_create_zone`](Self::open_or_create_zone):
    /// checked against `spec` instead of an anchor.
    async fn open_created_elsewhere(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        spec: &ZoneSpec,
    ) -> Result<Zone> {
        let bytes = store.load()?.ok_or_else(|| no_manifest(store.as_ref()))?;
        let (manifest, _) = ZoneManifest::parse_sealed(&bytes)?;
        let root = if manifest.root == spec.root {
            spec.root.clone()
        } else {
            resolve_root(self.provider.as_ref(), &spec.root).await?.0
        };
        let rejected = |reason| Error::StateRejected {
            what: "zone manifest",
            reason,
        };
        if manifest.root != root {
            return Err(rejected(StateRejection::UnexpectedRoot {
                expected: root.to_string(),
                found: manifest.root.to_string(),
            }));
        }
        let differs = [
            ("name", manifest.name != spec.name),
            ("region", manifest.region != spec.region),
            (
                "chunk size",
                manifest.chunk_size as usize != spec.stream.chunk_size(),
            ),
        ];
        if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
            return Err(rejected(StateRejection::Mismatch(format!(
                "the zone {} in {} was created with another {field} than asked",
                manifest.zone_id,
                store.location()
            ))));
        }
        // Trust on first use: any generation of this zone, under this root.
        let anchor = ZoneAnchor::new(manifest.zone_id, root, 0);
        self.open_zone(store, &anchor).await
    }

    /// Opens the zone whose manifest is in `store`, which must be the zone
    /// `anchor` names, under the root key it names, at the generation it
    /// names or newer — checked before any provider call. Then unwraps every
    /// EZK version (one provider call each, shared with concurrent opens)
    /// and authenticates the manifest with the active EZK.
    ///
    /// # Errors
    /// [`Error::NotFound`] if `store` holds no manifest;
    /// [`Error::Malformed`] if it does not parse; [`Error::StateRejected`]
    /// if it is another zone's, names another root key, or is older than
    /// the anchor's generation (a rollback), or is a version 1 or 2 file
    /// (see [`adopt_legacy_zone`](Self::adopt_legacy_zone));
    /// [`Error::Integrity`] if a field was changed or a wrapped EZK is not
    /// this zone's; provider errors as they come.
    pub async fn open_zone(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let (manifest, seal, bytes) = Self::load_authenticable(&store, anchor)?;
        let ezks = self.unwrap_all(&manifest).await?;
        verify_with(&seal, &manifest, &ezks)?;
        tracing::info!(zone = %manifest.zone_id, generation = manifest.generation,
            versions = ezks.len(), "opened zone");
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            bytes,
            ezks,
            ZoneAvailability::Available,
        ))
    }

    /// Opens the zone in `store` like [`open_zone`](Self::open_zone), except
    /// that a root key that cannot be used now — disabled, pending deletion,
    /// not found, access denied, or its provider unreachable or throttling —
    /// gives a zone in the [unavailable](ZoneAvailability::Unavailable)
    /// state instead of an error. Such a zone holds no key material, refuses
    /// every data call, and serves once a
    /// [`KeyMonitor`](crate::monitor::KeyMonitor) watching it sees the key
    /// usable again (its manifest is authenticated then, before it serves).
    /// This is how a service starts while a customer's key is revoked, and
    /// comes back without a restart when it is restored.
    ///
    /// # Errors
    /// As [`open_zone`](Self::open_zone) for everything but the key's
    /// availability.
    pub async fn open_zone_gated(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let (manifest, seal, bytes) = Self::load_authenticable(&store, anchor)?;
        let zone = match self.unwrap_all(&manifest).await {
            Ok(ezks) => {
                verify_with(&seal, &manifest, &ezks)?;
                Zone::from_parts(
                    self.clone(),
                    store,
                    manifest,
                    bytes,
                    ezks,
                    ZoneAvailability::Available,
                )
            }
            Err(e) => match unavailable_key_state(&e) {
                Some(state) => {
                    tracing::warn!(zone = %manifest.zone_id, root = %manifest.root, error = %e.report(),
                        "opened zone unavailable: its root key cannot be used");
                    Zone::from_unverified(
                        self.clone(),
                        store,
                        manifest,
                        bytes,
                        seal,
                        ZoneAvailability::Unavailable(state),
                    )
                }
                None => return Err(e),
            },
        };
        Ok(zone)
    }

    /// Opens a zone whose manifest an older release wrote (version 1 or 2,
    /// not authenticated) and rewrites it as version 3, authenticated, at
    /// the next generation; a version 3 manifest simply opens. The anchor
    /// is checked as by [`open_zone`](Self::open_zone), but nothing can
    /// prove an unauthenticated file is the zone's latest: adopt each zone
    /// once, from a copy you trust, then keep its new anchor.
    ///
    /// # Errors
    /// As [`open_zone`](Self::open_zone); [`Error::Conflict`] if the
    /// manifest changed while it was adopted.
    pub async fn adopt_legacy_zone(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let (manifest, seal, bytes) = Self::load_checked(&store, anchor)?;
        if seal.is_authenticated() {
            return self.open_zone(store, anchor).await;
        }
        let ezks = self.unwrap_all(&manifest).await?;
        let zone = self.store_next_generation(store, &bytes, manifest, ezks)?;
        tracing::info!(zone = %zone.id(), generation = zone.generation(),
            "adopted a legacy zone manifest: rewritten as version 3");
        Ok(zone)
    }

    /// Stores `manifest` at the generation after the one read (`bytes`),
    /// sealed by its active EZK, in place of `bytes` (compare-and-swap),
    /// and returns the zone it describes, serving.
    fn store_next_generation(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        bytes: &[u8],
        mut manifest: ZoneManifest,
        ezks: BTreeMap<u32, Arc<Ezk>>,
    ) -> Result<Zone> {
        manifest.generation = manifest
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::malformed("zone manifest", "generation at its maximum"))?;
        manifest.updated_unix = now_unix();
        let active = ezks.get(&manifest.active).expect("unwrapped every version");
        let sealed = manifest.seal(&active.key)?;
        store.replace(Some(bytes), &sealed)?;
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            sealed,
            ezks,
            ZoneAvailability::Available,
        ))
    }

    /// Rewraps, in the provider's current format, every EZK version of the
    /// zone in `store` that is wrapped in a *legacy* format — one its
    /// provider now refuses because someone without the root's secret could
    /// have made it ([`KeyProvider::is_legacy_wrap`]; an Azure Key Vault
    /// RSA wrap without a signature) — and stores the manifest at the next
    /// generation. A version 1 or 2 manifest is rewritten as version 3 too,
    /// as by [`adopt_legacy_zone`](Self::adopt_legacy_zone). A zone with
    /// nothing to adopt simply opens.
    ///
    /// **Risk.** This is the one call that takes in legacy wraps, and a
    /// legacy wrap is exactly what a storage attacker can forge: an EZK
    /// planted in the manifest (with a manifest MAC made with it) would be
    /// adopted as the zone's own, and every segment written afterwards would
    /// be readable by whoever planted it. Run it once per zone, right after
    /// upgrading, on a manifest you trust — one nobody else could have
    /// written since the zone was last used, or whose EZK versions you have
    /// compared with your records — and record the returned zone's
    /// [`anchor`](Zone::anchor). Never run it in answer to an error on a
    /// zone that opened before.
    ///
    /// The anchor is checked as by [`open_zone`](Self::open_zone).
    ///
    /// # Errors
    /// As [`open_zone`](Self::open_zone); provider errors of the rewrap
    /// (for Azure Key Vault, the key must allow `sign`);
    /// [`Error::Conflict`] if the manifest changed meanwhile (nothing is
    /// written).
    pub async fn adopt_legacy_wraps(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let (mut manifest, seal, bytes) = Self::load_checked(&store, anchor)?;
        let legacy: Vec<u32> = manifest
            .ezk_versions()
            .filter(|(_, record)| self.provider.is_legacy_wrap(&record.wrapped))
            .map(|(version, _)| version)
            .collect();
        if legacy.is_empty() {
            return self.adopt_legacy_zone(store, anchor).await;
        }
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let ezk = if legacy.contains(&version) {
                let context = ZoneManifest::ezk_context(&manifest.zone_id, version);
                let key = self
                    .provider
                    .unwrap_legacy_key(&manifest.root, &record.wrapped, &context)
                    .await?;
                Arc::new(Ezk::new(key, record.wraps_reserved))
            } else {
                self.unwrap_ezk(&manifest.root, &manifest.zone_id, version, record)
                    .await?
            };
            ezks.insert(version, ezk);
        }
        if seal.is_authenticated() {
            verify_with(&seal, &manifest, &ezks)?;
        }
        for version in &legacy {
            let context = ZoneManifest::ezk_context(&manifest.zone_id, *version);
            let ezk = ezks.get(version).expect("unwrapped every version");
            let record = manifest.ezks.get_mut(version).expect("a version of it");
            record.wrapped = self
                .provider
                .wrap_key(&manifest.root, &ezk.key, &context)
                .await?;
        }
        let zone = self.store_next_generation(store, &bytes, manifest, ezks)?;
        tracing::warn!(zone = %zone.id(), generation = zone.generation(),
            versions = ?legacy, "adopted legacy wraps: rewrapped in the provider's current format");
        Ok(zone)
    }

    /// Opens, read-only, the zone whose manifest is `bytes` (a backup's copy):
    /// checked against `anchor`, its EZKs unwrapped, a version 3 manifest
    /// authenticated. A legacy (version 1 or 2) copy is accepted: a backup
    /// made by an older release is trusted as far as the caller's anchor
    /// says. The zone's store is in memory; nothing is written anywhere.
    pub(crate) async fn open_bundled_zone(
        self: &Arc<Self>,
        bytes: &[u8],
        anchor: &ZoneAnchor,
    ) -> Result<Zone> {
        let (manifest, seal) = ZoneManifest::parse_sealed(bytes)?;
        anchor.check(&manifest)?;
        let ezks = self.unwrap_all(&manifest).await?;
        if seal.is_authenticated() {
            verify_with(&seal, &manifest, &ezks)?;
        }
        let store = Arc::new(super::MemoryManifestStore::new());
        store.replace(None, bytes)?;
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            bytes.to_vec(),
            ezks,
            ZoneAvailability::Available,
        ))
    }

    /// [`load_checked`](Self::load_checked), refusing a legacy
    /// (unauthenticated) manifest: all before any provider call.
    fn load_authenticable(
        store: &Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<(ZoneManifest, ManifestSeal, Vec<u8>)> {
        let loaded = Self::load_checked(store, anchor)?;
        match loaded.1.legacy_refusal() {
            Some(refusal) => Err(refusal),
            None => Ok(loaded),
        }
    }

    /// Loads, parses and checks the manifest against `anchor`: no provider
    /// call yet.
    fn load_checked(
        store: &Arc<dyn ManifestStore>,
        anchor: &ZoneAnchor,
    ) -> Result<(ZoneManifest, ManifestSeal, Vec<u8>)> {
        let bytes = store.load()?.ok_or_else(|| no_manifest(store.as_ref()))?;
        let (manifest, seal) = ZoneManifest::parse_sealed(&bytes)?;
        anchor.check(&manifest)?;
        Ok((manifest, seal, bytes))
    }

    /// Unwraps every EZK version of `manifest`, each starting from the wraps
    /// the manifest reserved for it.
    pub(crate) async fn unwrap_all(
        &self,
        manifest: &ZoneManifest,
    ) -> Result<BTreeMap<u32, Arc<Ezk>>> {
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let ezk = self
                .unwrap_ezk(&manifest.root, &manifest.zone_id, version, record)
                .await?;
            ezks.insert(version, ezk);
        }
        Ok(ezks)
    }

    /// Unwraps one EZK version, sharing the provider call with every
    /// concurrent request for the same wrapped version.
    pub(crate) async fn unwrap_ezk(
        &self,
        root: &KeyRef,
        zone: &ZoneId,
        version: u32,
        record: &EzkRecord,
    ) -> Result<Arc<Ezk>> {
        let wrapped: &WrappedKey = &record.wrapped;
        let key = UnwrapKey {
            root: root.clone(),
            zone: *zone,
            version,
            wrapped: sha256(&[wrapped.as_bytes()]),
            wraps_reserved: record.wraps_reserved,
        };
        let cell = self
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = cell
            .get_or_try_init(|| async {
                let context = ZoneManifest::ezk_context(zone, version);
                let ezk = self.provider.unwrap_key(root, wrapped, &context).await?;
                Ok::<_, Error>(Arc::new(Ezk::new(ezk, record.wraps_reserved)))
            })
            .await
            .cloned();
        // The call is over: later requests make their own (the zone keeps
        // the key; the keyring does not cache it beyond the call).
        let mut in_flight = self.lock();
        if in_flight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            in_flight.remove(&key);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UnwrapKey, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Authenticates `manifest` with its unwrapped active EZK.
pub(crate) fn verify_with(
    seal: &ManifestSeal,
    manifest: &ZoneManifest,
    ezks: &BTreeMap<u32, Arc<Ezk>>,
) -> Result<()> {
    let active = ezks.get(&manifest.active).ok_or(Error::UnknownEzkVersion {
        version: manifest.active,
        newest: manifest.newest_version(),
    })?;
    seal.verify(manifest, &active.key)
}

/// The key `named` designates now, and the name as given if it differs (an
/// alias): what a manifest records as `root` and `root_alias`. The resolved
/// key must stay with the same provider kind, or the provider is refused.
pub(crate) async fn resolve_root(
    provider: &dyn KeyProvider,
    named: &KeyRef,
) -> Result<(KeyRef, Option<String>)> {
    let resolved = provider.resolve_key(named).await?;
    if resolved.provider() != named.provider() {
        return Err(Error::InvalidArgument(format!(
            "key {named} resolved to {resolved}, a key of another provider"
        )));
    }
    let alias = (resolved.key_id() != named.key_id()).then(|| named.key_id().to_owned());
    if let Some(alias) = &alias {
        tracing::info!(alias, key = %resolved, "resolved root key alias");
    }
    Ok((resolved, alias))
}

/// The error for a store that holds no zone manifest.
pub(crate) fn no_manifest(store: &dyn ManifestStore) -> Error {
    Error::NotFound {
        what: "zone manifest",
        location: store.location(),
    }
}

/// The key state an error says the root key is in, if the error is about
/// the key's availability rather than about the data.
pub(crate) fn unavailable_key_state(error: &Error) -> Option<KeyState> {
    match error {
        Error::KeyUnavailable { state, .. } | Error::ZoneUnavailable { state, .. } => Some(*state),
        Error::AccessDenied { .. } => Some(KeyState::AccessDenied),
        Error::ProviderUnreachable { .. }
        | Error::Throttled { .. }
        | Error::BudgetExhausted { .. } => Some(KeyState::Unreachable),
        _ => None,
    }
}
