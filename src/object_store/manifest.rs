//! [`ObjectManifestStore`]: a zone manifest, or the key registry's state,
//! kept as one object and replaced only by the store's conditional writes.
//! Compiled once per supported `object_store` major (`super::os`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;

use super::os::path::Path;
use super::os::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use crate::zone::ManifestStore;
use crate::{Error, Result};

/// The largest object [`ObjectManifestStore::load`] reads: 16 MiB, room for
/// the largest zone manifest and registry state.
const MAX_OBJECT_LEN: u64 = 16 << 20;

/// A [`ManifestStore`] on an object store: the manifest is the object at
/// `path`, and [`replace`](ManifestStore::replace) writes it with
/// `PutMode::Create` (no manifest yet) or `PutMode::Update` naming the ETag
/// and version it read, so that of two nodes changing one zone at the same
/// time, one wins and the other gets [`Error::Conflict`], reloads and
/// retries — no update is lost.
///
/// The store must support conditional writes: `InMemory` and S3 (ETag
/// preconditions, on by default in `object_store`) do, and are tested
/// here; GCS and Azure Blob implement `PutMode::Update` in `object_store`
/// but are not tested here. `LocalFileSystem` does not support it (use
/// [`FileManifestStore`](crate::zone::FileManifestStore) for local files), and
/// a store that lacks it makes every replacement fail with
/// [`Error::Misuse`] — never a silent overwrite.
///
/// `ManifestStore` is blocking, so each call runs the store's future to
/// completion: inside a multi-threaded tokio runtime with
/// `block_in_place`; outside any runtime on a runtime of its own. Inside
/// a current-thread runtime it cannot block without stalling that
/// runtime, and fails with [`Error::Misuse`]. Calls are rare: opening,
/// rotating or reloading a zone, and reserving a block of DEK wraps.
/// Outside a runtime, give it a store instance of its own: an HTTP
/// store's pooled connections belong to the runtime that opened them, and
/// its private runtime runs only while it waits.
pub struct ObjectManifestStore {
    store: Arc<dyn ObjectStore>,
    path: Path,
    blocker: crate::blocking::Blocker,
}

impl ObjectManifestStore {
    /// The manifest at `path` in `store` (which need not exist yet).
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self {
            store,
            path,
            blocker: crate::blocking::Blocker::default(),
        }
    }

    /// The manifest's path in the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` to completion from blocking code (see the type's docs).
    fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.blocker.block_on(
            "an object-store manifest store cannot block inside a current-thread tokio \
             runtime; use a multi-threaded runtime",
            work,
        )
    }

    /// The stored bytes with the ETag and version they were read at.
    async fn read(&self) -> Result<Option<(Vec<u8>, UpdateVersion)>> {
        let result = match self.store.get(&self.path).await {
            Ok(r) => r,
            Err(super::os::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&self.path, e)),
        };
        if result.meta.size > MAX_OBJECT_LEN {
            return Err(Error::LimitExceeded {
                what: "zone manifest object size",
                limit: MAX_OBJECT_LEN,
            });
        }
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        // The size the store claims was checked; what it sends is counted
        // too.
        let mut body = result.into_stream();
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| store_error(&self.path, e))?;
            if (bytes.len() + piece.len()) as u64 > MAX_OBJECT_LEN {
                return Err(Error::LimitExceeded {
                    what: "zone manifest object size",
                    limit: MAX_OBJECT_LEN,
                });
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(Some((bytes, version)))
    }
}

impl ManifestStore for ObjectManifestStore {
    fn location(&self) -> String {
        format!("object {} in {}", self.path, self.store)
    }

    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.block_on(async { Ok(self.read().await?.map(|(bytes, _)| bytes)) })
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        self.block_on(async {
            let stored = self.read().await?;
            let mode = match (&stored, current) {
                (None, None) => PutMode::Create,
                (Some((bytes, version)), Some(expected)) if bytes.as_slice() == expected => {
                    if version.e_tag.is_none() && version.version.is_none() {
                        return Err(Error::misuse(format!(
                            "{} returned no ETag or version for {}: it cannot replace it \
                             conditionally",
                            self.store, self.path
                        )));
                    }
                    PutMode::Update(version.clone())
                }
                _ => return Err(conflict(stored.is_some(), current.is_some())),
            };
            let opts = PutOptions {
                mode,
                ..PutOptions::default()
            };
            match self
                .store
                .put_opts(&self.path, bytes::Bytes::copy_from_slice(new).into(), opts)
                .await
            {
                Ok(_) => Ok(()),
                Err(
                    super::os::Error::AlreadyExists { .. } | super::os::Error::Precondition { .. },
                ) => Err(conflict(true, current.is_some())),
                Err(
                    e @ (super::os::Error::NotImplemented { .. }
                    | super::os::Error::NotSupported { .. }),
                ) => Err(Error::misuse(format!(
                    "{} cannot replace {} conditionally ({e}): a shared manifest needs \
                     conditional writes",
                    self.store, self.path
                ))),
                Err(e) => Err(store_error(&self.path, e)),
            }
        })
    }
}

impl fmt::Debug for ObjectManifestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectManifestStore")
            .field("store", &self.store.to_string())
            .field("path", &self.path.as_ref())
            .finish()
    }
}

/// The conflict a lost compare-and-swap returns.
fn conflict(stored: bool, expected: bool) -> Error {
    Error::Conflict {
        what: "zone manifest object",
        reason: match (stored, expected) {
            (true, false) => "a manifest exists already".into(),
            (false, true) => "the manifest was removed".into(),
            _ => "another node changed it since it was read; reload the zone and retry".into(),
        },
    }
}

/// A store failure as an I/O error that keeps it as its source.
fn store_error(path: &Path, e: super::os::Error) -> Error {
    Error::Io {
        path: Some(std::path::PathBuf::from(path.as_ref())),
        source: std::io::Error::other(e),
    }
}
