//! The [`Keyring`]: the one object that talks to the key provider for
//! zones. It creates and opens zones, and coalesces concurrent unwraps of the
//! same EZK version into one provider call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::manifest::{EzkRecord, ZoneManifest};
use super::store::ManifestStore;
use super::{now_unix, Ezk, Zone, ZoneAvailability, ZoneId};
use crate::cipher::{sha256, SHA256_LEN};
use crate::provider::{KeyProvider, KeyRef, KeyState, WrappedKey};
use crate::stream::Params;
use crate::{Error, Result};

/// What a new zone is made of.
#[derive(Debug, Clone)]
pub struct ZoneSpec {
    /// Human-readable name (1 to 256 bytes).
    pub name: String,
    /// The region the zone lives in.
    pub region: String,
    /// The root key that wraps the zone's EZKs.
    pub root: KeyRef,
    /// Stream parameters of the segments the zone writes.
    pub stream: Params,
}

impl ZoneSpec {
    /// A zone named `name` in `region` under `root`, with default stream
    /// parameters.
    pub fn new(name: impl Into<String>, region: impl Into<String>, root: KeyRef) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            root,
            stream: Params::default(),
        }
    }
}

/// Identifies one wrapped EZK version, for coalescing.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UnwrapKey {
    root: KeyRef,
    zone: ZoneId,
    version: u32,
    wrapped: [u8; SHA256_LEN],
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

    /// Creates a zone: draws its id and first EZK, wraps the EZK under
    /// `spec.root` (one provider call), and persists the manifest in `store`
    /// before returning.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `store` already holds a manifest or the
    /// spec is out of range; provider errors as they come; [`Error::Io`] if
    /// the manifest cannot be stored (nothing is then created).
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
                "{store:?} already holds a zone manifest"
            )));
        }
        let version = 1;
        let (ezk, wrapped) = self
            .provider
            .generate_key(&spec.root, &ZoneManifest::ezk_context(&zone_id, version))
            .await?;
        let now = now_unix();
        let manifest = ZoneManifest {
            zone_id,
            body_zone_id,
            name: spec.name,
            region: spec.region,
            root: spec.root,
            root_alias: None,
            segment_size: spec.stream.segment_size() as u32,
            active: version,
            generation: 1,
            created_unix: now,
            updated_unix: now,
            ezks: [(
                version,
                EzkRecord {
                    created_unix: now,
                    wrapped,
                },
            )]
            .into(),
        };
        store.store(&manifest.to_bytes())?;
        tracing::info!(zone = %zone_id, name = manifest.name, root = %manifest.root, "created zone");
        let ezks = [(version, Arc::new(Ezk::new(ezk)))].into();
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            ezks,
            ZoneAvailability::Available,
        ))
    }

    /// Opens the zone whose manifest is in `store`: parses it and unwraps
    /// every EZK version (one provider call each, shared with concurrent
    /// opens).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if there is no manifest;
    /// [`Error::Malformed`] if it does not parse; provider errors as they
    /// come ([`Error::Integrity`] for a wrapped EZK that is not this zone's).
    pub async fn open_zone(self: &Arc<Self>, store: Arc<dyn ManifestStore>) -> Result<Zone> {
        let manifest = Self::load_manifest(&store)?;
        let ezks = self.unwrap_all(&manifest).await?;
        tracing::info!(zone = %manifest.zone_id, versions = ezks.len(), "opened zone");
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
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
    /// usable again. This is how a service starts while a customer's key is
    /// revoked, and comes back without a restart when it is restored.
    ///
    /// # Errors
    /// As [`open_zone`](Self::open_zone) for everything but the key's
    /// availability: a missing or malformed manifest, a wrapped EZK that is
    /// not this zone's ([`Error::Integrity`]), I/O.
    pub async fn open_zone_gated(self: &Arc<Self>, store: Arc<dyn ManifestStore>) -> Result<Zone> {
        let manifest = Self::load_manifest(&store)?;
        let (ezks, availability) = match self.unwrap_all(&manifest).await {
            Ok(ezks) => (ezks, ZoneAvailability::Available),
            Err(e) => match unavailable_key_state(&e) {
                Some(state) => {
                    tracing::warn!(zone = %manifest.zone_id, root = %manifest.root, error = %e,
                        "opened zone unavailable: its root key cannot be used");
                    (BTreeMap::new(), ZoneAvailability::Unavailable(state))
                }
                None => return Err(e),
            },
        };
        Ok(Zone::from_parts(
            self.clone(),
            store,
            manifest,
            ezks,
            availability,
        ))
    }

    fn load_manifest(store: &Arc<dyn ManifestStore>) -> Result<ZoneManifest> {
        let bytes = store
            .load()?
            .ok_or_else(|| Error::InvalidArgument(format!("{store:?} holds no zone manifest")))?;
        ZoneManifest::parse(&bytes)
    }

    /// Unwraps every EZK version of `manifest`.
    async fn unwrap_all(&self, manifest: &ZoneManifest) -> Result<BTreeMap<u32, Arc<Ezk>>> {
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let ezk = self
                .unwrap_ezk(&manifest.root, &manifest.zone_id, version, &record.wrapped)
                .await?;
            ezks.insert(version, ezk);
        }
        Ok(ezks)
    }

    /// Opens the zone in `store` and checks that it is zone `expected`.
    ///
    /// # Errors
    /// As [`open_zone`](Self::open_zone); [`Error::InvalidArgument`] if the
    /// manifest is another zone's (checked before any provider call).
    pub async fn open_zone_expecting(
        self: &Arc<Self>,
        store: Arc<dyn ManifestStore>,
        expected: ZoneId,
    ) -> Result<Zone> {
        if let Some(bytes) = store.load()? {
            let found = ZoneManifest::parse(&bytes)?.zone_id;
            if found != expected {
                return Err(Error::InvalidArgument(format!(
                    "the manifest in {store:?} is zone {found}, not {expected}"
                )));
            }
        }
        self.open_zone(store).await
    }

    /// Unwraps one EZK version, sharing the provider call with every
    /// concurrent request for the same wrapped version.
    pub(crate) async fn unwrap_ezk(
        &self,
        root: &KeyRef,
        zone: &ZoneId,
        version: u32,
        wrapped: &WrappedKey,
    ) -> Result<Arc<Ezk>> {
        let key = UnwrapKey {
            root: root.clone(),
            zone: *zone,
            version,
            wrapped: sha256(&[wrapped.as_bytes()]),
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
                Ok::<_, Error>(Arc::new(Ezk::new(ezk)))
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

/// The key state an error says the root key is in, if the error is about
/// the key's availability rather than about the data.
pub(crate) fn unavailable_key_state(error: &Error) -> Option<KeyState> {
    match error {
        Error::KeyUnavailable { state, .. } => Some(*state),
        Error::AccessDenied { .. } => Some(KeyState::AccessDenied),
        Error::ProviderUnreachable { .. } | Error::Throttled { .. } => Some(KeyState::Unreachable),
        _ => None,
    }
}
