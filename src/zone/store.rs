//! Where a zone manifest persists: the [`ManifestStore`] trait, a file
//! implementation and an in-memory one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{fsutil, Error, Result};

/// Persistence for one zone's manifest.
///
/// `store` must be atomic and durable: when it returns `Ok`, a crash leaves
/// the new manifest; when it fails or the process dies inside it, a later
/// `load` returns the previous manifest intact. The zone never switches to a
/// new manifest before `store` returned `Ok`.
pub trait ManifestStore: Send + Sync + fmt::Debug {
    /// The manifest's bytes, or `None` if none was ever stored.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read.
    fn load(&self) -> Result<Option<Vec<u8>>>;

    /// Replaces the manifest with `manifest`, atomically and durably.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be written; the previous manifest stays.
    fn store(&self, manifest: &[u8]) -> Result<()>;
}

/// A manifest in a file, replaced atomically: a temporary file beside it is
/// written and fsynced, renamed over it, and the directory fsynced. Until the
/// rename, the previous manifest is untouched.
#[derive(Debug, Clone)]
pub struct FileManifestStore {
    path: PathBuf,
}

impl FileManifestStore {
    /// A store for the manifest at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ManifestStore for FileManifestStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    fn store(&self, manifest: &[u8]) -> Result<()> {
        fsutil::write_atomic(&self.path, manifest, 0o600)
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

    fn store(&self, manifest: &[u8]) -> Result<()> {
        *self.bytes.lock().unwrap_or_else(|p| p.into_inner()) = Some(manifest.to_vec());
        Ok(())
    }
}
