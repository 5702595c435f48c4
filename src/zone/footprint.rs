//! What an open zone costs in memory, and whether anything but its owner
//! holds it: the two facts a [`ZoneSet`](crate::tenancy::ZoneSet) needs to
//! bound and evict zones. Crate-private; nothing here reads key material.

use std::mem::size_of;
use std::sync::Arc;

use super::{Ezk, EzkRecord, Zone, ZoneInner, ZoneManifest, ZoneState};

/// Heap bytes an expanded AES-256-GCM key holds outside the [`Ezk`]
/// struct, at most, across the cipher backends (aws-lc-rs keeps its key
/// schedule and GHASH table inline; this covers a backend that boxes
/// them).
const CIPHER_HEAP: usize = 0;

/// Allocator overhead and the bookkeeping that the struct sizes below do
/// not show: the anchor channel's shared state (its notifiers), the
/// `Arc` headers, and a B-tree node per map. Calibrated against a counting
/// allocator by `tests/zone_set_memory.rs`, which fails if the estimate
/// drifts from what a zone really holds.
const FIXED_OVERHEAD: usize = 512;

/// A B-tree leaf node's size for a map of `K` to `V` (11 slots, a parent
/// pointer and lengths), for the maps a zone holds.
fn btree_leaf<K, V>() -> usize {
    11 * (size_of::<K>() + size_of::<V>()) + 16
}

impl Zone {
    /// An estimate of the heap bytes this zone holds (manifest, stored
    /// bytes, unwrapped EZKs and the zone's own bookkeeping), not counting
    /// segments opened from it. Cheap: no allocation, no lock held for
    /// long.
    pub(crate) fn footprint(&self) -> usize {
        let state = self.state();
        size_of::<ZoneInner>()
            + size_of::<ZoneState>()
            + manifest_heap(&state.manifest)
            + state.stored.len()
            + state
                .manifest
                .sealed
                .0
                .as_ref()
                .filter(|b| !Arc::ptr_eq(b, &state.stored))
                .map_or(0, |b| b.len())
            + if state.ezks.is_empty() {
                0
            } else {
                btree_leaf::<u32, Arc<Ezk>>()
            }
            + state.ezks.len() * (size_of::<Ezk>() + CIPHER_HEAP + 16)
            + FIXED_OVERHEAD
    }

    /// How many handles hold the zone open: clones of it, and the readers
    /// and writers opened from it (each keeps the zone for its gate). One
    /// means only the caller's own handle.
    pub(crate) fn holders(&self) -> usize {
        Arc::strong_count(&self.inner)
    }
}

/// Heap bytes of a manifest's fields.
fn manifest_heap(m: &ZoneManifest) -> usize {
    m.name.capacity()
        + m.region.capacity()
        + m.root.provider().len()
        + m.root.key_id().len()
        + m.root.region().len()
        + m.root_alias.as_ref().map_or(0, String::capacity)
        + if m.ezks.is_empty() {
            0
        } else {
            btree_leaf::<u32, EzkRecord>()
        }
        + m.ezks
            .values()
            .map(|r| r.wrapped.as_bytes().len())
            .sum::<usize>()
}
