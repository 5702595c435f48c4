//! [`ZoneSetConfig`]: the bounds of a [`ZoneSet`](super::ZoneSet) and what
//! it works with.

use std::fmt;
use std::sync::Arc;

use crate::monitor::KeyMonitor;

/// The settings of a [`ZoneSet`](super::ZoneSet).
#[derive(Clone)]
pub struct ZoneSetConfig {
    /// The set's name, the `set` label of its metrics (see
    /// [`crate::metrics`]): a fixed word such as `tenants`, never a zone
    /// or tenant id. Default `default`.
    pub name: String,
    /// The most zones open at once. Default 100,000.
    pub max_zones: usize,
    /// The most bytes of memory the open zones may hold, by the set's
    /// estimate of each (about 3 KiB for a zone with one EZK version; see
    /// docs/PERFORMANCE.md). Default 512 MiB.
    pub max_bytes: u64,
    /// A monitor to gate the zones the set opens on their root keys: the
    /// set opens them with
    /// [`KeyMonitor::open_zone`](crate::monitor::KeyMonitor::open_zone)
    /// (a zone whose key is unusable opens unavailable and serves once the
    /// key is back) and unwatches each zone it evicts. Without one, a zone
    /// whose key is unusable fails to open. Default none.
    pub monitor: Option<Arc<KeyMonitor>>,
}

impl Default for ZoneSetConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            max_zones: 100_000,
            max_bytes: 512 << 20,
            monitor: None,
        }
    }
}

impl ZoneSetConfig {
    /// The defaults, with `max_zones` and `max_bytes` as given.
    pub fn bounded(max_zones: usize, max_bytes: u64) -> Self {
        Self {
            max_zones,
            max_bytes,
            ..Self::default()
        }
    }
}

impl fmt::Debug for ZoneSetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoneSetConfig")
            .field("name", &self.name)
            .field("max_zones", &self.max_zones)
            .field("max_bytes", &self.max_bytes)
            .field("monitor", &self.monitor.is_some())
            .finish()
    }
}
