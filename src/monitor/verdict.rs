//! Verdicts shared between nodes: one node checks a key, the others read
//! what it found.
//!
//! Each root key has one record in a [`VerdictStore`] (docs/FORMAT.md,
//! "Verdict record"): the lease of the node checking it in the current
//! interval, and the last verdict (the state found, when, by whom, and when
//! the key was last found usable). Records are replaced only by
//! compare-and-swap, so of two nodes taking the same lease one wins.
//!
//! Records are authenticated; see [`SharedVerdicts`] for what whoever can
//! write the store can and cannot do.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use subtle::ConstantTimeEq;

use crate::cipher::hkdf_sha256;
use crate::codec::{put_bytes16, ByteReader};
use crate::provider::{KeyRef, KeyState};
use crate::secret::SecretKey;
use crate::{Error, Result};

/// The version of a record as its store last wrote it, to replace it only
/// if it is still that version. Opaque: an ETag and object version for an
/// object store, a counter in memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordVersion(String);

impl RecordVersion {
    /// A version token of a store's own.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where nodes keep their verdict records: one record per root key,
/// replaced by compare-and-swap. Implementations: [`InMemoryVerdictStore`]
/// (one process, tests), `cmek::object_store::v014::ObjectVerdictStore`
/// (feature `object-store`, conditional puts).
///
/// A store only keeps bytes; it is not trusted (records are authenticated
/// by the nodes).
#[async_trait]
pub trait VerdictStore: Send + Sync + fmt::Debug {
    /// The record of `key` and its version, or `None` if there is none.
    async fn load(&self, key: &KeyRef) -> Result<Option<(Bytes, RecordVersion)>>;

    /// Writes the record of `key` if it is still at `expected` (`None`: if
    /// there is none), and returns its new version.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another writer changed it first.
    async fn swap(
        &self,
        key: &KeyRef,
        expected: Option<&RecordVersion>,
        record: Bytes,
    ) -> Result<RecordVersion>;
}

/// A [`VerdictStore`] in memory, for nodes in one process and tests.
#[derive(Debug, Default)]
pub struct InMemoryVerdictStore {
    records: Mutex<HashMap<KeyRef, (Bytes, u64)>>,
}

impl InMemoryVerdictStore {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Overwrites the record of `key` unconditionally, as someone with
    /// write access to the store could: for tests of hostile records.
    pub fn tamper(&self, key: &KeyRef, record: Bytes) {
        let mut records = lock(&self.records);
        let version = records.get(key).map_or(0, |(_, v)| v + 1);
        records.insert(key.clone(), (record, version));
    }

    /// The stored record of `key`, as bytes.
    pub fn raw(&self, key: &KeyRef) -> Option<Bytes> {
        lock(&self.records).get(key).map(|(b, _)| b.clone())
    }
}

#[async_trait]
impl VerdictStore for InMemoryVerdictStore {
    async fn load(&self, key: &KeyRef) -> Result<Option<(Bytes, RecordVersion)>> {
        Ok(lock(&self.records)
            .get(key)
            .map(|(b, v)| (b.clone(), RecordVersion(v.to_string()))))
    }

    async fn swap(
        &self,
        key: &KeyRef,
        expected: Option<&RecordVersion>,
        record: Bytes,
    ) -> Result<RecordVersion> {
        let mut records = lock(&self.records);
        let current = records.get(key).map(|(_, v)| RecordVersion(v.to_string()));
        if current.as_ref() != expected {
            return Err(Error::Conflict {
                what: "verdict record",
                reason: "another node changed it since it was read".into(),
            });
        }
        let version = records.get(key).map_or(0, |(_, v)| v + 1);
        records.insert(key.clone(), (record, version));
        Ok(RecordVersion(version.to_string()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a [`KeyMonitor`](super::KeyMonitor) shares its verdicts with other
/// nodes: the store, this node's name, the secret records are
/// authenticated with, and the lease settings.
///
/// Records are authenticated with a MAC under a key derived from a secret
/// every node holds ([`SharedVerdicts::new`]). What someone who can write
/// the store but does not hold the secret can do:
///
/// * **forge or alter a record** (say "enabled" for a revoked key, or hold
///   a lease forever): no — a record that does not authenticate, or names
///   another key, is ignored as if absent, and the node checks the key
///   itself;
/// * **replay an older authentic record** of the same key: a verdict of
///   an earlier interval counts as no verdict, and a node checks; a
///   replayed lease delays the check by at most one lease;
/// * **delete records, or keep overwriting them** so that no lease can be
///   taken: a node that cannot take a lease checks the key itself (the
///   calls of a cluster without sharing, never fewer checks);
/// * **make the store unreachable**: the same.
///
/// So whoever writes the store can at most cost provider calls; it cannot
/// make a revoked key look usable. Whoever holds the secret is a node, and
/// trusted as one.
///
/// Times in records are wall-clock milliseconds since the Unix epoch:
/// nodes' clocks must agree to well within an interval. A verdict more
/// than [`SharedVerdicts::with_max_skew`] in the future does not
/// authenticate as fresh and is ignored.
pub struct SharedVerdicts {
    pub(super) store: Arc<dyn VerdictStore>,
    pub(super) node: String,
    mac_key: SecretKey,
    pub(super) lease: Duration,
    pub(super) poll: Duration,
    pub(super) max_skew: Duration,
}

impl fmt::Debug for SharedVerdicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedVerdicts")
            .field("store", &self.store)
            .field("node", &self.node)
            .field("lease", &self.lease)
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

/// The longest node name.
const MAX_NODE_LEN: usize = 128;

/// The longest key reference a record holds.
const MAX_KEY_LEN: usize = 2048;

impl SharedVerdicts {
    /// Verdicts in `store`, written as node `node` (1 to 128 bytes; unique
    /// in the cluster, for diagnostics), authenticated under a key derived
    /// from `cluster_secret`: 32 bytes every node of the cluster holds and
    /// the store's writers do not (from the deployment's secret store, or
    /// a key the nodes unwrap with their KMS at start). Defaults: a lease
    /// of 60 seconds, polled every second, 5 seconds of clock skew.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or too long node name.
    pub fn new(
        store: Arc<dyn VerdictStore>,
        node: impl Into<String>,
        cluster_secret: &SecretKey,
    ) -> Result<Self> {
        let node = node.into();
        if node.is_empty() || node.len() > MAX_NODE_LEN {
            return Err(Error::InvalidArgument(format!(
                "a node name must be 1 to {MAX_NODE_LEN} bytes, not {}",
                node.len()
            )));
        }
        let mut mac = [0u8; 32];
        hkdf_sha256(
            cluster_secret.expose_secret(),
            b"",
            b"cmek verdict record mac key v1",
            &mut mac,
        )?;
        Ok(Self {
            store,
            node,
            mac_key: SecretKey::from_array(&mut mac),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            max_skew: Duration::from_secs(5),
        })
    }

    /// How long a node holds a key's lease to check it. A node that takes
    /// it and dies delays the key's verdict by this long (then another
    /// node takes over), so keep it well below the interval and above a
    /// check's [`check_timeout`](super::MonitorConfig::check_timeout).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often a node waiting for another's verdict reads the record.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// How far in the future a record's times may be (clock skew between
    /// nodes) before the record is ignored.
    pub fn with_max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Encodes and authenticates `record` for `key`.
    pub(super) fn seal(&self, key: &KeyRef, record: &Record) -> Result<Bytes> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        put_bytes16(&mut out, key.to_string().as_bytes());
        match &record.lease {
            Some(lease) => {
                out.push(1);
                put_bytes16(&mut out, lease.holder.as_bytes());
                out.extend_from_slice(&lease.until_ms.to_be_bytes());
            }
            None => out.push(0),
        }
        match &record.verdict {
            Some(v) => {
                out.push(1);
                out.push(state_code(v.state));
                out.extend_from_slice(&v.checked_at_ms.to_be_bytes());
                put_bytes16(&mut out, v.by.as_bytes());
                out.extend_from_slice(&v.last_usable_ms.to_be_bytes());
            }
            None => out.push(0),
        }
        let tag = self.tag(&out)?;
        out.extend_from_slice(&tag);
        Ok(Bytes::from(out))
    }

    /// Parses and authenticates a record read back for `key`. Anything
    /// else — malformed, forged, another key's, from the future — is an
    /// error, and the caller treats the record as absent.
    pub(super) fn open(&self, key: &KeyRef, bytes: &[u8], now_ms: u64) -> Result<Record> {
        const WHAT: &str = "verdict record";
        if bytes.len() < MAGIC.len() + 2 + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::malformed(WHAT, "not a cmek verdict record"));
        }
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let expected = self.tag(body)?;
        if !bool::from(expected.ct_eq(tag)) {
            return Err(Error::tampered(WHAT));
        }
        let mut r = ByteReader::new(&body[MAGIC.len()..], WHAT);
        let version = r.u16()?;
        if version != VERSION {
            return Err(Error::malformed(
                WHAT,
                format!("unsupported version {version}"),
            ));
        }
        let named = r.str("key", MAX_KEY_LEN)?;
        if named != key.to_string() {
            return Err(Error::StateRejected {
                what: WHAT,
                reason: crate::StateRejection::UnexpectedRoot {
                    expected: key.to_string(),
                    found: named,
                },
            });
        }
        let future = now_ms.saturating_add(self.max_skew.as_millis() as u64);
        let lease = match r.u8()? {
            0 => None,
            1 => Some(Lease {
                holder: r.str("lease holder", MAX_NODE_LEN)?,
                until_ms: r.u64()?,
            }),
            n => return Err(Error::malformed(WHAT, format!("lease flag {n}"))),
        };
        let verdict = match r.u8()? {
            0 => None,
            1 => {
                let state = state_from_code(r.u8()?)
                    .ok_or_else(|| Error::malformed(WHAT, "unknown key state"))?;
                let checked_at_ms = r.u64()?;
                let by = r.str("checked by", MAX_NODE_LEN)?;
                let last_usable_ms = r.u64()?;
                if checked_at_ms > future || last_usable_ms > future {
                    return Err(Error::malformed(WHAT, "a verdict from the future"));
                }
                Some(Verdict {
                    state,
                    checked_at_ms,
                    by,
                    last_usable_ms,
                })
            }
            n => return Err(Error::malformed(WHAT, format!("verdict flag {n}"))),
        };
        r.finish()?;
        Ok(Record { lease, verdict })
    }

    fn tag(&self, body: &[u8]) -> Result<[u8; TAG_LEN]> {
        // HKDF's extract step is HMAC-SHA256 keyed by the salt: with the
        // secret MAC key as salt, the output is a MAC of the body.
        let mut tag = [0u8; TAG_LEN];
        hkdf_sha256(
            body,
            self.mac_key.expose_secret(),
            b"cmek verdict record tag v1",
            &mut tag,
        )?;
        Ok(tag)
    }
}

const MAGIC: &[u8; 8] = b"CMEKVRDT";
const VERSION: u16 = 1;
const TAG_LEN: usize = 32;

/// A key's record: who checks it now, and what was last found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) lease: Option<Lease>,
    pub(super) verdict: Option<Verdict>,
}

/// A node's claim to check a key until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) holder: String,
    pub(super) until_ms: u64,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verdict {
    pub(super) state: KeyState,
    pub(super) checked_at_ms: u64,
    pub(super) by: String,
    /// When a check last found the key usable (0: never).
    pub(super) last_usable_ms: u64,
}

fn state_code(state: KeyState) -> u8 {
    match state {
        KeyState::Enabled => 1,
        KeyState::Disabled => 2,
        KeyState::PendingDeletion => 3,
        KeyState::PendingImport => 4,
        KeyState::Unavailable => 5,
        KeyState::NotFound => 6,
        KeyState::AccessDenied => 7,
        KeyState::Unreachable => 8,
    }
}

fn state_from_code(code: u8) -> Option<KeyState> {
    Some(match code {
        1 => KeyState::Enabled,
        2 => KeyState::Disabled,
        3 => KeyState::PendingDeletion,
        4 => KeyState::PendingImport,
        5 => KeyState::Unavailable,
        6 => KeyState::NotFound,
        7 => KeyState::AccessDenied,
        8 => KeyState::Unreachable,
        _ => return None,
    })
}

/// Wall-clock milliseconds since the Unix epoch, advancing with tokio's
/// clock (so that a paused test clock moves them too): the wall clock read
/// once, plus the time elapsed on tokio's clock since.
pub(super) fn now_ms() -> u64 {
    static BASE: OnceLock<(u64, tokio::time::Instant)> = OnceLock::new();
    let (wall, at) = BASE.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        (wall, tokio::time::Instant::now())
    });
    wall.saturating_add(
        tokio::time::Instant::now()
            .saturating_duration_since(*at)
            .as_millis() as u64,
    )
}
