//! Encryption zones: the middle of the key hierarchy.
//!
//! A zone is what a storage engine opens once — per database, cluster or
//! tenant — and then uses for every segment (file, object) it writes or
//! reads. It holds versions of an **encryption-zone key (EZK)**, each
//! wrapped by the zone's root key and persisted in a [`ZoneManifest`]
//! through a [`ManifestStore`]. Every segment gets a fresh random **DEK**,
//! wrapped by the active EZK into the segment's fixed-size
//! [`SegmentHeader`]; the body is a [`stream`](crate::stream) under the DEK.
//!
//! * [`Keyring`] creates and opens zones (provider calls happen there, once
//!   per EZK version, coalesced across concurrent opens).
//! * [`Zone`] is `Send + Sync` and cheap to clone. Its data path makes no
//!   provider call:
//!   - writing: [`encrypt_segment`](Zone::encrypt_segment) (whole, on
//!     several threads), [`segment_writer`](Zone::segment_writer)
//!     (`Write`; finish it with
//!     [`finish_durable`](crate::stream::EncryptingWriter::finish_durable)
//!     for a file that must survive a crash), `async_segment_writer`
//!     (tokio's `AsyncWrite`, feature `tokio`),
//!     [`chunk_sealer`](Zone::chunk_sealer) (chunk by chunk into your
//!     buffers);
//!   - reading: [`decrypt_segment`](Zone::decrypt_segment) (whole),
//!     [`segment_reader`](Zone::segment_reader) (`Read`),
//!     `async_segment_reader` (`AsyncRead`, feature `tokio`),
//!     [`segment_seekable`](Zone::segment_seekable) (`Read + Seek`, one
//!     cursor), [`chunk_opener`](Zone::chunk_opener) (chunk by chunk), and
//!     for a table cache [`open_segment_from`](Zone::open_segment_from)
//!     (a `File`, a buffer) or [`open_segment`](Zone::open_segment) (its
//!     first bytes and length): open a
//!     segment once, then serve lookups from any number of threads
//!     through `&self` ([`OpenedSegment::read_at`] from a `File` or a
//!     buffer, [`OpenedSegment::plan`] and
//!     [`decrypt_range`](OpenedSegment::decrypt_range) for ranged GETs).
//! * Rotation: [`rotate_ezk`](Zone::rotate_ezk) adds an EZK version,
//!   [`rewrap_segment`](Zone::rewrap_segment) and
//!   [`rewrap_file`](Zone::rewrap_file) move a segment's DEK to the active
//!   version without touching the body ([`rewrap_files`](Zone::rewrap_files)
//!   many files on several threads, [`async_rewrap_files`](Zone::async_rewrap_files)
//!   the same for async code), [`retire_ezk`](Zone::retire_ezk)
//!   drops a version nothing uses, and [`rotate_root`](Zone::rotate_root)
//!   rewraps every EZK under a new root key without touching any segment.
//!
//! Every change to the manifest is persisted before the zone uses it; a
//! failed or interrupted change leaves the previous manifest in force.
//! Each change moves the zone's [`anchor`](Zone::anchor), which the
//! caller keeps to open the zone again: [`watch_anchor`](Zone::watch_anchor)
//! tells of every change, wrap reservations on the data path included.
//!
//! # What readers see while the zone changes
//!
//! A reader or writer derives its segment's stream key when it is opened
//! and keeps it; it holds no EZK.
//!
//! * [`rotate_ezk`](Zone::rotate_ezk): nothing changes for open readers;
//!   segments written from then on use the new version.
//! * A rewrap rewrites a segment's header only, never its body: a reader
//!   that opened the segment before keeps reading. A reader that reads
//!   the header while [`rewrap_file`](Zone::rewrap_file) overwrites it
//!   may see a torn header and fail to open ([`Error::Integrity`](crate::Error::Integrity)
//!   or another header error, never wrong plaintext); opening again
//!   succeeds. Read the header under a shared lock on the file
//!   (`File::lock_shared`) to wait for the rewrap instead: `rewrap_file`
//!   holds the exclusive lock for its whole run.
//! * [`retire_ezk`](Zone::retire_ezk): a reader already open on a segment
//!   under the retired version keeps reading (its DEK was unwrapped when it
//!   opened); every new open of such a header fails with
//!   [`Error::UnknownEzkVersion`](crate::Error::UnknownEzkVersion). Rewrap
//!   every segment before retiring its version.
//! * The zone becoming unavailable (its root key revoked, see
//!   [`crate::monitor`]): every open reader and writer fails at its next
//!   chunk with [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable)
//!   (whose [`kind`](crate::Error::kind) tells an unreachable KMS, worth a
//!   retry, from a revoked key), and so does every new open. An [`OpenedSegment`] reads again once
//!   the zone recovers.
//!
//! # Errors from the `Read` and `Write` adapters
//!
//! [`segment_writer`](Zone::segment_writer),
//! [`segment_reader`](Zone::segment_reader) and
//! [`segment_seekable`](Zone::segment_seekable) (and, with feature
//! `tokio`, `async_segment_writer` and `async_segment_reader`) return the
//! stream's adapters, whose `std::io` methods return [`std::io::Error`]. A failure
//! of cmek's own (a modified chunk, an unavailable zone) travels inside it
//! as a [`crate::Error`]: [`stream::error_of`](crate::stream::error_of)
//! borrows it back, and `From<io::Error> for Error` recovers it, so `?`
//! into a [`crate::Result`] keeps the variant an engine acts on
//! (quarantine on `Integrity`, alert on a revoked `ZoneUnavailable`), and
//! [`Error::kind`](crate::Error::kind) says which action. See the
//! [`stream`](crate::stream) module.
//!
//! `Zone`'s methods live by role: the data path (`encrypt_segment`,
//! `decrypt_segment`, writers, readers, chunk sealers and openers,
//! `open_segment`) in `data.rs`, with [`OpenedSegment`] in `opened.rs`
//! and the async writer and reader in `async_io.rs`; administration (`rotate_ezk`, `rotate_root`, `retire_ezk`,
//! `reload`) in `admin.rs`; header rewrap in `rewrap.rs`; availability
//! (`mark_unavailable`, `recover`) in `availability.rs`; and how the
//! manifest is written (compare-and-swap, wrap reservations) in
//! `commit.rs`.
//!
//! This module must not call the provider on the data path, and must not
//! know how the stream body is laid out beyond [`crate::stream`]'s API.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cipher::KeyWrapper;
use crate::provider::KeyRef;
use crate::secret::SecretKey;

mod admin;
mod anchor;
#[cfg(feature = "tokio")]
mod async_io;
mod availability;
mod commit;
mod data;
mod footprint;
mod header;
mod id;
mod keyring;
mod manifest;
mod opened;
mod rewrap;
mod store;
mod transfer;

#[cfg(test)]
mod tests;

pub use admin::RetireConfirmation;
pub use anchor::ZoneAnchor;
pub(crate) use availability::WeakZone;
pub use availability::ZoneAvailability;
pub use commit::ROTATE_AFTER_WRAPS;
pub use data::SEGMENT_PREFIX_LEN;
use data::{read_header, unwrap_dek};
pub use header::{SegmentFormat, SegmentHeader, SEGMENT_HEADER_LEN};
pub use id::ZoneId;
pub(crate) use keyring::unavailable_key_state;
pub use keyring::{Keyring, ZoneOrigin, ZoneSpec};
use manifest::ManifestSeal;
pub use manifest::{EzkRecord, ManifestFormat, ZoneManifest, MAX_EZK_VERSIONS};
pub use opened::OpenedSegment;
pub use rewrap::{
    default_rewrap_threads, is_rewrap_journal, rewrap_journal_header, rewrap_journal_path,
    RewrapOutcome, RewrapProgress, RewrapSummary,
};
pub use store::{FileManifestStore, ManifestStore, MemoryManifestStore};

/// An unwrapped EZK: kept only in memory, zeroized on drop.
pub(crate) struct Ezk {
    key: SecretKey,
    wrapper: KeyWrapper,
    /// Wraps counted against the zone-wide reservation: this process's
    /// position inside the block it reserved last.
    next: AtomicU64,
    /// The end of this process's current block (see [`Zone::reserve_wraps`]):
    /// `next` never passes it.
    reserved: AtomicU64,
    /// Reservations this process made under the EZK; each block is twice
    /// the previous, up to [`MAX_WRAP_BLOCK`].
    blocks: AtomicU32,
}

impl Ezk {
    /// An EZK whose manifest record reserved `wraps_reserved` wraps: the
    /// counter starts there, as if every reserved wrap had been used, so
    /// that the limit holds whatever processes did before.
    fn new(key: SecretKey, wraps_reserved: u64) -> Self {
        Self {
            wrapper: KeyWrapper::with_usage(&key, wraps_reserved),
            key,
            next: AtomicU64::new(wraps_reserved),
            reserved: AtomicU64::new(wraps_reserved),
            blocks: AtomicU32::new(0),
        }
    }

    /// Counts one DEK wrap inside this process's reserved block; false if
    /// the block is used up.
    fn take_wrap(&self) -> bool {
        let reserved = self.reserved.load(Ordering::Acquire);
        self.next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < reserved).then_some(n + 1)
            })
            .is_ok()
    }
}

impl fmt::Debug for Ezk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ezk([REDACTED])")
    }
}

/// What a zone knows at one instant: its manifest, the unwrapped EZKs and
/// whether it serves. Replaced whole on every change, so readers never see
/// half of one. An unavailable state holds no EZK.
struct ZoneState {
    manifest: ZoneManifest,
    /// The manifest's bytes as stored: what the next compare-and-swap
    /// expects to find. The manifest's own copy
    /// ([`ZoneManifest::stored_bytes`]) shares them.
    stored: Arc<[u8]>,
    /// Set while the manifest is not yet authenticated: a zone opened while
    /// its key was unusable checks it when it recovers, before serving.
    unverified: Option<ManifestSeal>,
    ezks: BTreeMap<u32, Arc<Ezk>>,
    availability: ZoneAvailability,
}

impl ZoneState {
    /// The anchor of this state's manifest.
    fn anchor(&self) -> ZoneAnchor {
        let m = &self.manifest;
        ZoneAnchor::new(m.zone_id, m.root.clone(), m.generation)
    }
}

struct ZoneInner {
    keyring: Arc<Keyring>,
    store: Arc<dyn ManifestStore>,
    state: RwLock<Arc<ZoneState>>,
    /// Serializes manifest changes (rotation, retirement).
    admin: tokio::sync::Mutex<()>,
    /// Serializes writes of the manifest (admin changes and wrap
    /// reservations, which the data path makes), held from reading the
    /// current state to installing the new one.
    write: Mutex<()>,
    /// A manifest this zone tried to store whose write failed after it may
    /// have landed (a failed directory sync follows the rename): if the
    /// store holds exactly it, the next write replaces it.
    uncertain: Mutex<Option<Vec<u8>>>,
    /// The zone's anchor, published after each durable manifest change
    /// (see [`Zone::watch_anchor`]).
    anchor: tokio::sync::watch::Sender<ZoneAnchor>,
}

/// An open encryption zone. See the [module docs](self).
#[derive(Clone)]
pub struct Zone {
    inner: Arc<ZoneInner>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("Zone")
            .field("id", &state.manifest.zone_id)
            .field("name", &state.manifest.name)
            .field("active_version", &state.manifest.active)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Zone {
    fn from_parts(
        keyring: Arc<Keyring>,
        store: Arc<dyn ManifestStore>,
        manifest: ZoneManifest,
        stored: Vec<u8>,
        ezks: BTreeMap<u32, Arc<Ezk>>,
        availability: ZoneAvailability,
    ) -> Self {
        debug_assert!(availability.is_available() || ezks.is_empty());
        let mut manifest = manifest;
        let stored: Arc<[u8]> = stored.into();
        manifest.sealed = manifest::SealedBytes(Some(stored.clone()));
        Self::with_state(
            keyring,
            store,
            ZoneState {
                manifest,
                stored,
                unverified: None,
                ezks,
                availability,
            },
        )
    }

    /// A zone opened unavailable, whose manifest is authenticated only when
    /// it recovers.
    fn from_unverified(
        keyring: Arc<Keyring>,
        store: Arc<dyn ManifestStore>,
        manifest: ZoneManifest,
        stored: Vec<u8>,
        seal: ManifestSeal,
        availability: ZoneAvailability,
    ) -> Self {
        debug_assert!(!availability.is_available());
        Self::with_state(
            keyring,
            store,
            ZoneState {
                manifest,
                stored: stored.into(),
                unverified: Some(seal),
                ezks: BTreeMap::new(),
                availability,
            },
        )
    }

    fn with_state(keyring: Arc<Keyring>, store: Arc<dyn ManifestStore>, state: ZoneState) -> Self {
        let (anchor, _) = tokio::sync::watch::channel(state.anchor());
        Self {
            inner: Arc::new(ZoneInner {
                keyring,
                store,
                state: RwLock::new(Arc::new(state)),
                admin: tokio::sync::Mutex::new(()),
                write: Mutex::new(()),
                uncertain: Mutex::new(None),
                anchor,
            }),
        }
    }

    fn state(&self) -> Arc<ZoneState> {
        self.inner
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The zone's id.
    pub fn id(&self) -> ZoneId {
        self.state().manifest.zone_id
    }

    /// A copy of the zone's current manifest.
    pub fn manifest(&self) -> ZoneManifest {
        self.state().manifest.clone()
    }

    /// The EZK version new segments use.
    pub fn active_version(&self) -> u32 {
        self.state().manifest.active
    }

    /// The zone's root key.
    pub fn root(&self) -> KeyRef {
        self.state().manifest.root.clone()
    }

    /// The generation of the zone's current manifest: it grows at every
    /// change (rotation, retirement, root rotation, wrap reservation).
    pub fn generation(&self) -> u64 {
        self.state().manifest.generation
    }

    /// What to keep, outside the storage that holds the manifest, to open
    /// this zone again: its id, root key and current generation (see
    /// [`ZoneAnchor`]). It changes with every manifest change, including
    /// the DEK-wrap reservations that writing segments makes now and then:
    /// [`watch_anchor`](Self::watch_anchor) tells when.
    pub fn anchor(&self) -> ZoneAnchor {
        self.state().anchor()
    }

    /// A receiver of the zone's anchor, told of every change: keep what it
    /// holds where the storage holding the manifest cannot write, and the
    /// zone opens again under the newest state, never an older one.
    ///
    /// The anchor changes when the manifest does: at
    /// [`rotate_ezk`](Self::rotate_ezk), [`rotate_root`](Self::rotate_root),
    /// [`retire_ezk`](Self::retire_ezk), at a [`reload`](Self::reload)
    /// that finds another process's change, and on the data path when a
    /// new segment needs the next block of DEK wraps reserved in the
    /// manifest (after 2^16 segments in a process, then less often). The
    /// receiver starts with the current anchor marked seen.
    ///
    /// Ordering, which is what makes persisting it safe:
    ///
    /// * a new anchor is published only once the manifest holding it is
    ///   durable in the [`ManifestStore`] (its `replace` returned), and
    ///   before the call that made the change returns: when `rotate_root`
    ///   returns, [`has_changed`](tokio::sync::watch::Receiver::has_changed)
    ///   is already true;
    /// * anchors only move forward (the generation grows with every
    ///   change); the receiver holds the newest, and a slow reader skips
    ///   the ones between, which is right: any anchor is a lower bound,
    ///   and the newest is the strongest.
    ///
    /// Persist the new anchor before relying on the change it records:
    /// until it is persisted, the anchor you hold still accepts the older
    /// manifest (a retired EZK version could be put back), and after
    /// [`rotate_root`](Self::rotate_root) it names the old root — so
    /// persist it before disabling the old root key. If the process dies
    /// between the manifest's write and the anchor's, the anchor held
    /// still opens the zone (the newer manifest meets its lower bound),
    /// except after a root rotation: it names the old root, and opening is
    /// refused with [`Error::StateRejected`](crate::Error::StateRejected)
    /// ([`UnexpectedRoot`](crate::StateRejection::UnexpectedRoot)). Keep the
    /// new root you are rotating to beside the anchor before calling
    /// `rotate_root`, and open with
    /// [`ZoneAnchor::new`]`(anchor.zone_id(), new_root, anchor.min_generation())`
    /// in that case.
    ///
    /// An async engine persists from a task; the receiver's
    /// [`changed`](tokio::sync::watch::Receiver::changed) fails once every
    /// handle on the zone is dropped, which ends the loop. Code without an
    /// async runtime checks [`has_changed`](tokio::sync::watch::Receiver::has_changed)
    /// (one atomic load) after the calls it makes. Do not hold a
    /// [`borrow`](tokio::sync::watch::Receiver::borrow) across a call on
    /// the zone: a change waits for it.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cmek::provider::LocalKeyProvider;
    /// # use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
    /// # let root = provider.add_key("root")?;
    /// # let zone = Keyring::new(Arc::new(provider))
    /// #     .create_zone(Arc::new(MemoryManifestStore::new()), ZoneSpec::new("orders", "local", root))
    /// #     .await?;
    /// # let catalog = dir.path().join("orders.anchor");
    /// # std::fs::write(&catalog, zone.anchor().to_string())?;
    /// let mut anchors = zone.watch_anchor();
    /// let keeper = tokio::spawn(async move {
    ///     while anchors.changed().await.is_ok() {
    ///         let anchor = anchors.borrow_and_update().clone();
    ///         // The engine's own metadata, out of the storage attacker's reach.
    ///         std::fs::write(&catalog, anchor.to_string())?;
    ///     }
    ///     Ok::<_, std::io::Error>(())
    /// });
    /// zone.rotate_ezk().await?;
    /// drop(zone); // every handle gone: the loop ends
    /// keeper.await??;
    /// # Ok(()) }
    /// ```
    pub fn watch_anchor(&self) -> tokio::sync::watch::Receiver<ZoneAnchor> {
        self.inner.anchor.subscribe()
    }

    /// True once the active EZK has reserved more than
    /// [`ROTATE_AFTER_WRAPS`] DEK wraps (half the random-nonce limit of
    /// 2^32): rotate it with [`rotate_ezk`](Self::rotate_ezk) soon. New
    /// segments are refused with [`Error::LimitExceeded`](crate::Error::LimitExceeded) at the limit.
    pub fn needs_ezk_rotation(&self) -> bool {
        let state = self.state();
        state
            .manifest
            .ezks
            .get(&state.manifest.active)
            .is_some_and(|r| r.wraps_reserved > ROTATE_AFTER_WRAPS)
    }

    /// The provider of the zone's root key.
    pub(crate) fn provider(&self) -> Arc<dyn crate::provider::KeyProvider> {
        self.inner.keyring.provider().clone()
    }
}
