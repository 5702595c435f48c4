//! [`ObjectVerdictStore`]: the key monitor's shared verdict records kept
//! as objects, replaced only by the store's conditional writes. Compiled
//! once per supported `object_store` major (`super::os`).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::os::path::Path;
use super::os::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, UpdateVersion};
use crate::monitor::{RecordVersion, VerdictStore};
use crate::provider::KeyRef;
use crate::{Error, Result};

/// The largest record read back: records are about 200 bytes; anything
/// much larger is not one.
const MAX_RECORD_LEN: u64 = 16 << 10;

/// A [`VerdictStore`] on an object store: the record of a root key is the
/// object `PREFIX/HASH`, where `HASH` is the hex SHA-256 of the key's
/// reference (`provider:region:id`), and it is replaced with
/// `PutMode::Create` (no record yet) or `PutMode::Update` naming the ETag
/// and version read, so that of two nodes taking one lease, one wins.
///
/// The store must support conditional writes, as for
/// [`ObjectManifestStore`](super::ObjectManifestStore): `InMemory` and S3
/// do and are tested; a store that lacks them fails every write with
/// [`Error::Misuse`] (and the monitor then checks every key itself).
pub struct ObjectVerdictStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectVerdictStore {
    /// Records under `prefix` in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    /// Where the record of `key` lives.
    pub fn path_of(&self, key: &KeyRef) -> Path {
        let digest = crate::cipher::sha256(&[key.to_string().as_bytes()]);
        let mut name = String::with_capacity(64);
        for b in digest {
            name.push_str(&format!("{b:02x}"));
        }
        self.prefix.clone().join(name)
    }
}

#[async_trait]
impl VerdictStore for ObjectVerdictStore {
    async fn load(&self, key: &KeyRef) -> Result<Option<(Bytes, RecordVersion)>> {
        let path = self.path_of(key);
        let result = match self.store.get(&path).await {
            Ok(r) => r,
            Err(super::os::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(&path, e)),
        };
        let too_large = || Error::LimitExceeded {
            what: "verdict record object size",
            limit: MAX_RECORD_LEN,
        };
        if result.meta.size > MAX_RECORD_LEN {
            return Err(too_large());
        }
        let version = encode_version(&UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        });
        let mut body = result.into_stream();
        let mut bytes = Vec::new();
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| store_error(&path, e))?;
            if (bytes.len() + piece.len()) as u64 > MAX_RECORD_LEN {
                return Err(too_large());
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(Some((Bytes::from(bytes), version)))
    }

    async fn swap(
        &self,
        key: &KeyRef,
        expected: Option<&RecordVersion>,
        record: Bytes,
    ) -> Result<RecordVersion> {
        let path = self.path_of(key);
        let mode = match expected {
            None => PutMode::Create,
            Some(version) => {
                let version = decode_version(version);
                if version.e_tag.is_none() && version.version.is_none() {
                    return Err(Error::misuse(format!(
                        "{} returned no ETag or version for {path}: it cannot replace it \
                         conditionally",
                        self.store
                    )));
                }
                PutMode::Update(version)
            }
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.store.put_opts(&path, record.into(), opts).await {
            Ok(put) => Ok(encode_version(&UpdateVersion {
                e_tag: put.e_tag,
                version: put.version,
            })),
            Err(super::os::Error::AlreadyExists { .. } | super::os::Error::Precondition { .. }) => {
                Err(Error::Conflict {
                    what: "verdict record object",
                    reason: "another node changed it since it was read".into(),
                })
            }
            Err(
                e @ (super::os::Error::NotImplemented { .. }
                | super::os::Error::NotSupported { .. }),
            ) => Err(Error::misuse(format!(
                "{} cannot replace {path} conditionally ({e}): shared verdicts need \
                 conditional writes",
                self.store
            ))),
            Err(e) => Err(store_error(&path, e)),
        }
    }
}

impl fmt::Debug for ObjectVerdictStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectVerdictStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish()
    }
}

/// An ETag and object version as one token: each part with a marker, so
/// that `None` and an empty string stay apart.
fn encode_version(v: &UpdateVersion) -> RecordVersion {
    let part = |p: &Option<String>| match p {
        Some(s) => format!("+{}", s.len()) + ":" + s,
        None => "-".to_owned(),
    };
    RecordVersion::new(format!("{}{}", part(&v.e_tag), part(&v.version)))
}

fn decode_version(token: &RecordVersion) -> UpdateVersion {
    fn part(s: &str) -> (Option<String>, &str) {
        if let Some(rest) = s.strip_prefix('-') {
            return (None, rest);
        }
        let Some(rest) = s.strip_prefix('+') else {
            return (None, "");
        };
        let Some((len, rest)) = rest.split_once(':') else {
            return (None, "");
        };
        match len.parse::<usize>() {
            Ok(n) if rest.is_char_boundary(n.min(rest.len())) && n <= rest.len() => {
                (Some(rest[..n].to_owned()), &rest[n..])
            }
            _ => (None, ""),
        }
    }
    let (e_tag, rest) = part(token.as_str());
    let (version, _) = part(rest);
    UpdateVersion { e_tag, version }
}

/// A store failure as an I/O error that keeps it as its source.
fn store_error(path: &Path, e: super::os::Error) -> Error {
    Error::Io {
        path: Some(std::path::PathBuf::from(path.as_ref())),
        source: std::io::Error::other(e),
    }
}
