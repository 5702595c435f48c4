//! [`ZoneCatalog`]: the engine's side of a [`ZoneSet`](super::ZoneSet) —
//! where each zone lives and where its anchor is kept.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::zone::{Keyring, ManifestStore, ZoneAnchor, ZoneId};
use crate::Result;

/// Where one zone lives: what [`ZoneCatalog::locate`] answers.
#[derive(Clone)]
pub struct ZoneLocation {
    /// The zone's anchor as the engine keeps it, out of reach of whoever
    /// can write the manifest store (see [`ZoneAnchor`]).
    pub anchor: ZoneAnchor,
    /// The store holding the zone's manifest.
    pub store: Arc<dyn ManifestStore>,
    /// The keyring to open it with: its provider is the one the zone's
    /// root key belongs to. Keep one keyring per provider and hand out
    /// clones of it, so that opens through it share its coalescing.
    pub keyring: Arc<Keyring>,
}

impl fmt::Debug for ZoneLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneLocation")
            .field("anchor", &self.anchor)
            .field("store", &self.store.location())
            .finish_non_exhaustive()
    }
}

/// The engine's catalog of zones, as a [`ZoneSet`](super::ZoneSet) uses
/// it: it finds a zone by id, and it is told when a zone's anchor moves.
///
/// The engine implements it over its own metadata (a table of tenants, a
/// control-plane service). The set calls [`locate`](Self::locate) once per
/// open, never on a hit, and [`anchor_changed`](Self::anchor_changed)
/// after every durable change of an open zone's manifest, so the engine
/// never polls [`Zone::anchor`](crate::zone::Zone::anchor).
#[async_trait]
pub trait ZoneCatalog: Send + Sync + 'static {
    /// Where zone `id` lives.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound) for a zone the catalog
    /// does not know, or the engine's own failure as a [`crate::Error`]
    /// whose [`kind`](crate::Error::kind) says whether a retry can help
    /// (a transient [`Error::Io`](crate::Error::Io), for example). Every
    /// caller waiting for that open gets the error.
    async fn locate(&self, id: ZoneId) -> Result<ZoneLocation>;

    /// Zone `anchor.zone_id()` moved to `anchor`: a rotation, a
    /// retirement, a reload that found another node's change, or a
    /// reservation of DEK wraps on the data path. The manifest holding it
    /// is durable already. Persist it where `locate` will find it before
    /// returning; the next anchor waits for this call.
    ///
    /// Calls for one zone come one at a time, newest last; a slow call
    /// skips to the newest anchor, which is the strongest (every anchor is
    /// a lower bound). Calls come from a task of the set's runtime: do
    /// not block the thread in them. The call cannot fail: an engine that
    /// cannot persist the anchor retries inside it, or stops serving the
    /// zone. Until the new anchor is persisted the old one still opens the
    /// zone, except after a root rotation (see
    /// [`Zone::watch_anchor`](crate::zone::Zone::watch_anchor)).
    async fn anchor_changed(&self, anchor: &ZoneAnchor);
}
