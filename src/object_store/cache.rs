//! The segments an [`EncryptedStore`](super::v014::EncryptedStore) opened
//! recently, keyed by path and ETag: a range read of an object read before
//! needs no GET of its headers, no DEK unwrap and no key derivation, only
//! the GET of its chunks — conditioned on the ETag, so a replaced object is
//! never read with another's key (the GET fails its precondition, the
//! entry is dropped and the object opened again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::zone::OpenedSegment;

/// One opened segment and the stored object it was opened from.
#[derive(Clone)]
pub(crate) struct Opened {
    /// The object's ETag when it was opened.
    pub(crate) e_tag: String,
    /// The object's stored size.
    pub(crate) size: u64,
    pub(crate) segment: Arc<OpenedSegment>,
}

/// At most `capacity` opened segments; when full, all are forgotten (an
/// engine's working set is refilled at the cost of one GET each).
pub(crate) struct OpenedCache {
    entries: Mutex<HashMap<String, Opened>>,
    capacity: usize,
}

impl OpenedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Opened>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, path: &str) -> Option<Opened> {
        self.lock().get(path).cloned()
    }

    pub(crate) fn insert(&self, path: &str, opened: Opened) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(path) {
            entries.clear();
        }
        entries.insert(path.to_owned(), opened);
    }

    pub(crate) fn remove(&self, path: &str) {
        self.lock().remove(path);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
