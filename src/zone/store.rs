//! Where a zone manifest persists: the [`ManifestStore`] trait, a file
//! implementation and an in-memory one. The same trait stores the state of
//! a [`KeyRegistry`](crate::registry::KeyRegistry).
//!
//! Several processes (or nodes) may hold the same zone open. Every change
//! is a compare-and-swap on the manifest's bytes: a writer that read an
//! older manifest than the one stored now gets [`Error::Conflict`], and no
//! update is lost.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::manifest::MAX_MANIFEST_LEN;
use crate::{fsutil, Error, Result};

/// Persistence for one blob: a zone's manifest, or a key registry's state
/// ([`KeyRegistry::open_in`](crate::registry::KeyRegistry::open_in)). One
/// store holds one of them, never both; the docs below say "manifest" for
/// either.
///
/// `replace` must be atomic, durable and conditional: when it returns `Ok`,
/// a crash leaves the new manifest; when it fails or the process dies inside
/// it, a later `load` returns the previous manifest intact; and it replaces
/// nothing unless the stored manifest is still the one the caller read. The
/// zone (or registry) never switches to a new manifest before `replace`
/// returned `Ok`.
///
/// What a store returns is not trusted: the zone authenticates it and checks
/// it against the caller's [`ZoneAnchor`](super::ZoneAnchor); the registry
/// checks its length, layout and checksum.
pub trait ManifestStore: Send + Sync + fmt::Debug {
    /// The manifest's bytes, or `None` if none was ever stored.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read.
    fn load(&self) -> Result<Option<Vec<u8>>>;

    /// Replaces the manifest with `new`, atomically and durably, if the
    /// stored manifest is byte for byte `current` (`None`: if no manifest
    /// is stored yet).
    ///
    /// # Errors
    /// [`Error::Conflict`] if the stored manifest is another (someone else
    /// changed it; nothing was written); [`Error::Io`] if it cannot be
    /// written (the previous manifest stays).
    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()>;

    /// Where the manifest lives, in words for messages: a file's path, an
    /// object's store and path. [`Error::NotFound`] for a store that holds
    /// no manifest names the store by it. The default is the store's
    /// `Debug` form; implementations override it with something plainer.
    fn location(&self) -> String {
        format!("{self:?}")
    }
}

/// A manifest in a file, replaced atomically: a temporary file beside it is
/// written and fsynced, renamed over it, and the directory fsynced. Until the
/// rename, the previous manifest is untouched. Each replacement holds an
/// exclusive lock on `.NAME.lock` beside the file while it compares and
/// renames, so processes sharing the file never lose each other's changes.
/// A file longer than the store's cap is refused with
/// [`Error::LimitExceeded`] before it is read.
#[derive(Debug, Clone)]
pub struct FileManifestStore {
    path: PathBuf,
    max_len: u64,
}

impl FileManifestStore {
    /// A store for the manifest at `path` (which need not exist yet),
    /// reading files up to the longest zone manifest.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self::with_max_len(path, MAX_MANIFEST_LEN)
    }

    /// A store for the file at `path` that reads at most `max_len` bytes: a
    /// longer file is refused with [`Error::LimitExceeded`] (`limit` is
    /// `max_len`) before it is read. For a blob with a cap of its own, such
    /// as a key registry's state
    /// ([`MAX_STATE_LEN`](crate::registry::MAX_STATE_LEN)).
    pub fn with_max_len(path: impl Into<PathBuf>, max_len: u64) -> Self {
        Self {
            path: path.into(),
            max_len,
        }
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ManifestStore for FileManifestStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        fsutil::read_capped(&self.path, self.max_len, "zone manifest file size")
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        let _lock = fsutil::ExclusiveLock::acquire(&fsutil::lock_path_for(&self.path))?;
        check_current(self.load()?.as_deref(), current)?;
        fsutil::write_atomic(&self.path, new, 0o600)
    }

    /// The file's path.
    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// A manifest in memory, for tests and for zones that need not survive the
/// process.
#[derive(Debug, Default)]
pub struct MemoryManifestStore {
    bytes: Mutex<Option<Vec<u8>>>,
}

impl MemoryManifestStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ManifestStore for MemoryManifestStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.bytes.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        let mut slot = self.bytes.lock().unwrap_or_else(|p| p.into_inner());
        check_current(slot.as_deref(), current)?;
        *slot = Some(new.to_vec());
        Ok(())
    }

    /// `memory`.
    fn location(&self) -> String {
        "memory".into()
    }
}

/// The compare of a compare-and-swap.
fn check_current(stored: Option<&[u8]>, expected: Option<&[u8]>) -> Result<()> {
    if stored == expected {
        return Ok(());
    }
    Err(Error::Conflict {
        what: "zone manifest",
        reason: match (stored, expected) {
            (Some(_), None) => "a manifest exists already".into(),
            (None, Some(_)) => "the manifest was removed".into(),
            _ => {
                "another process changed it since it was read; reopen or reload the zone and retry"
                    .into()
            }
        },
    })
}
