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
//! * [`Zone`] is `Send + Sync` and cheap to clone. Its data path —
//!   [`encrypt_segment`](Zone::encrypt_segment),
//!   [`decrypt_segment`](Zone::decrypt_segment), the writer, reader and
//!   seekable variants — makes no provider call.
//! * Rotation: [`rotate_ezk`](Zone::rotate_ezk) adds an EZK version,
//!   [`rewrap_segment`](Zone::rewrap_segment) and
//!   [`rewrap_file`](Zone::rewrap_file) move a segment's DEK to the active
//!   version without touching the body, [`retire_ezk`](Zone::retire_ezk)
//!   drops a version nothing uses, and [`rotate_root`](Zone::rotate_root)
//!   rewraps every EZK under a new root key without touching any segment.
//!
//! Every change to the manifest is persisted before the zone uses it; a
//! failed or interrupted change leaves the previous manifest in force.
//!
//! This module must not call the provider on the data path, and must not
//! know how the stream body is laid out beyond [`crate::stream`]'s API.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use zeroize::Zeroizing;

use crate::cipher::{fill_random, KeyWrapper, NONCE_LEN, WRAP_LIMIT};
use crate::provider::KeyRef;
use crate::secret::{SecretKey, KEY_LEN};
use crate::stream::{
    DecryptingReader, EncryptingWriter, Header as StreamHeader, Params, SeekableReader,
    SegmentOpener, SegmentSealer, Threads,
};
use crate::{Error, Result};

mod anchor;
mod availability;
mod header;
mod id;
mod keyring;
mod manifest;
mod rewrap;
mod store;
mod transfer;

#[cfg(test)]
mod tests;

pub use anchor::ZoneAnchor;
pub(crate) use availability::WeakZone;
pub use availability::ZoneAvailability;
pub use header::{
    SegmentFormat, SegmentHeader, COMMITMENT_LEN, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC,
};
pub use id::ZoneId;
pub(crate) use keyring::unavailable_key_state;
pub use keyring::{Keyring, ZoneSpec};
use manifest::ManifestSeal;
pub use manifest::{EzkRecord, ManifestFormat, ZoneManifest, MAX_EZK_VERSIONS};
pub use rewrap::{
    is_rewrap_journal, rewrap_journal_header, rewrap_journal_path, RewrapOutcome, RewrapProgress,
    RewrapSummary,
};
pub use store::{FileManifestStore, ManifestStore, MemoryManifestStore};

/// Stream header bytes other than its length byte.
const STREAM_RANDOM_LEN: usize = crate::stream::HEADER_LEN - 1;

/// Bytes at the start of every segment before its first sealed stream
/// segment: the segment header and the stream header.
pub const SEGMENT_PREFIX_LEN: usize = SEGMENT_HEADER_LEN + crate::stream::HEADER_LEN;

/// What a new segment starts from.
struct NewSegment {
    header: SegmentHeader,
    dek: SecretKey,
    params: Params,
    stream_header: StreamHeader,
}

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

/// The first block of DEK wraps a process reserves under an EZK: small, so
/// that short-lived processes (one CLI command) use little of the limit.
const FIRST_WRAP_BLOCK: u64 = 1 << 16;
/// The largest block: a manifest write per 16 Mi new segments at most.
const MAX_WRAP_BLOCK: u64 = 1 << 24;
/// Past this many reserved wraps, the active EZK should be rotated
/// ([`Zone::needs_ezk_rotation`]): half the random-nonce limit.
pub const ROTATE_AFTER_WRAPS: u64 = WRAP_LIMIT / 2;

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
    /// expects to find.
    stored: Arc<Vec<u8>>,
    /// Set while the manifest is not yet authenticated: a zone opened while
    /// its key was unusable checks it when it recovers, before serving.
    unverified: Option<ManifestSeal>,
    ezks: BTreeMap<u32, Arc<Ezk>>,
    availability: ZoneAvailability,
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
}

/// Confirms that no segment still uses an EZK version, for
/// [`Zone::retire_ezk`]. A retired version cannot be recovered: segments
/// still under it become undecryptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireConfirmation {
    /// The caller has rewrapped or deleted every segment under the version.
    NoSegmentUsesIt,
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
        manifest.sealed = manifest::SealedBytes(Some(stored.as_slice().into()));
        Self::with_state(
            keyring,
            store,
            ZoneState {
                manifest,
                stored: Arc::new(stored),
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
                stored: Arc::new(stored),
                unverified: Some(seal),
                ezks: BTreeMap::new(),
                availability,
            },
        )
    }

    fn with_state(keyring: Arc<Keyring>, store: Arc<dyn ManifestStore>, state: ZoneState) -> Self {
        Self {
            inner: Arc::new(ZoneInner {
                keyring,
                store,
                state: RwLock::new(Arc::new(state)),
                admin: tokio::sync::Mutex::new(()),
                write: Mutex::new(()),
                uncertain: Mutex::new(None),
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
    /// this zone again: its id, root key and current generation. Read it
    /// after every change the zone makes and keep the newest (see
    /// [`ZoneAnchor`]).
    pub fn anchor(&self) -> ZoneAnchor {
        let state = self.state();
        let m = &state.manifest;
        ZoneAnchor::new(m.zone_id, m.root.clone(), m.generation)
    }

    /// True once the active EZK has reserved more than
    /// [`ROTATE_AFTER_WRAPS`] DEK wraps (half the random-nonce limit of
    /// 2^32): rotate it with [`rotate_ezk`](Self::rotate_ezk) soon. New
    /// segments are refused with [`Error::LimitExceeded`] at the limit.
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

    /// Draws a DEK and builds the header for a new segment under the active
    /// EZK, with the stream header its body will use. No provider call.
    ///
    /// The DEK, the wrap's nonce and the stream's salt and nonce prefix come
    /// from one OS call (disjoint bytes): on some machines the call costs
    /// more than the rest of a segment's setup.
    fn new_segment(&self, segment_id: &str) -> Result<NewSegment> {
        let mut random = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN + STREAM_RANDOM_LEN]);
        fill_random(&mut random[..])?;
        let (dek_bytes, rest) = random.split_at_mut(KEY_LEN);
        let (nonce, stream_random) = rest.split_at(NONCE_LEN);
        let dek = SecretKey::from_array(dek_bytes.try_into().expect("KEY_LEN bytes"));
        let stream_header = StreamHeader::from_random(stream_random.try_into().expect("39 bytes"));

        let state = self.state_with_wrap_reserved()?;
        let m = &state.manifest;
        let params = m.stream_params();
        // The wrap binds every other header byte (format v2), so the
        // header is laid out first and the wrapped DEK put in last.
        let header =
            SegmentHeader::unwrapped(m.zone_id, m.active, params, header::commitment(&dek)?);
        let wrapped = state.ezk(m.active)?.wrapper.wrap_with_drawn_nonce(
            &dek,
            &header.dek_aad(segment_id),
            nonce.try_into().expect("NONCE_LEN bytes"),
        )?;
        let header = header.with_wrapped_dek(wrapped);
        Ok(NewSegment {
            header,
            dek,
            params,
            stream_header,
        })
    }

    /// Parses a header and recovers its DEK, checking zone, version and key
    /// commitment. No provider call.
    ///
    /// The stream parameters returned are authenticated for a v2 header
    /// (its wrap binds them); a v1 header's are not, which is why the
    /// stream readers size their buffers by the bytes they actually have.
    fn open_header(&self, segment_id: &str, bytes: &[u8]) -> Result<(SecretKey, Params)> {
        let header = SegmentHeader::parse(bytes)?;
        let state = self.state();
        let dek = unwrap_dek(&state, segment_id, &header)?;
        header.check_commitment(&dek)?;
        Ok((dek, header.stream_params()?))
    }

    /// Encrypts a whole segment: header ‖ body. Large segments are sealed on
    /// several threads.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] past the EZK's wrap limit or the stream's
    /// length limit; [`Error::Random`].
    pub fn encrypt_segment(&self, segment_id: &str, plaintext: &[u8]) -> Result<Bytes> {
        let NewSegment {
            header,
            dek,
            params,
            stream_header,
        } = self.new_segment(segment_id)?;
        let body_len = usize::try_from(params.ciphertext_len(plaintext.len() as u64)?)
            .map_err(|_| Error::InvalidArgument("segment exceeds memory".into()))?;
        let mut out = vec![0u8; SEGMENT_HEADER_LEN + body_len];
        out[..SEGMENT_HEADER_LEN].copy_from_slice(&header.to_bytes());
        let aad = self.body_aad(segment_id);
        params.encrypt_with_header(
            &dek,
            &aad,
            stream_header,
            plaintext,
            &mut out[SEGMENT_HEADER_LEN..],
            Threads::Auto,
        )?;
        Ok(Bytes::from(out))
    }

    /// Decrypts a whole segment written by this zone under `segment_id`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a damaged header; [`Error::Integrity`] for a
    /// segment of another zone or id, a failed key commitment, or a modified
    /// or truncated body; [`Error::KeyUnavailable`] for an EZK version the
    /// zone does not have (retired, or newer than this manifest).
    pub fn decrypt_segment(&self, segment_id: &str, segment: &[u8]) -> Result<Bytes> {
        let (dek, params) = self.open_header(segment_id, segment)?;
        let aad = self.body_aad(segment_id);
        params.decrypt(&dek, &aad, &segment[SEGMENT_HEADER_LEN..], Threads::Auto)
    }

    /// Writes the header of a new segment to `sink` and returns a writer for
    /// its body. Call [`EncryptingWriter::finish`] at the end.
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment); [`Error::Io`] if the
    /// header cannot be written.
    pub fn segment_writer<W: Write>(
        &self,
        segment_id: &str,
        mut sink: W,
    ) -> Result<EncryptingWriter<W>> {
        // The writer draws its own stream header.
        let NewSegment {
            header,
            dek,
            params,
            ..
        } = self.new_segment(segment_id)?;
        sink.write_all(&header.to_bytes())?;
        let aad = self.body_aad(segment_id);
        Ok(EncryptingWriter::new(sink, &dek, &aad, params)?.with_gate(self.gate()))
    }

    /// Reads a segment's header from `source` and returns a reader of its
    /// plaintext, for sequential reads.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Io`] if it cannot be read.
    pub fn segment_reader<R: Read>(
        &self,
        segment_id: &str,
        mut source: R,
    ) -> Result<DecryptingReader<R>> {
        let (dek, params) = self.open_header(segment_id, &read_header(&mut source)?)?;
        let aad = self.body_aad(segment_id);
        Ok(DecryptingReader::new(source, &dek, &aad, params).with_gate(self.gate()))
    }

    /// Reads a segment's header from `source` (at its start) and returns a
    /// random-access reader of its plaintext (`Read + Seek`, `read_at`).
    ///
    /// # Errors
    /// As [`segment_reader`](Self::segment_reader).
    pub fn segment_seekable<R: Read + Seek>(
        &self,
        segment_id: &str,
        mut source: R,
    ) -> Result<SeekableReader<R>> {
        let (dek, params) = self.open_header(segment_id, &read_header(&mut source)?)?;
        let aad = self.body_aad(segment_id);
        Ok(SeekableReader::new(source, &dek, &aad, params)?.with_gate(self.gate()))
    }

    /// Starts a new segment to be sealed one stream segment at a time into
    /// buffers the caller owns (see [`SegmentSealer`]). Returns the
    /// segment header: write it first, then the sealer's
    /// [`stream_header`](SegmentSealer::stream_header), then each sealed
    /// segment. The result reads like any other segment of the zone.
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment).
    pub fn segment_sealer(
        &self,
        segment_id: &str,
    ) -> Result<([u8; SEGMENT_HEADER_LEN], SegmentSealer)> {
        // The sealer draws its own stream header.
        let NewSegment {
            header,
            dek,
            params,
            ..
        } = self.new_segment(segment_id)?;
        let aad = self.body_aad(segment_id);
        let sealer = SegmentSealer::new(&dek, &aad, params)?.with_gate(self.gate());
        Ok((header.to_bytes(), sealer))
    }

    /// Prepares to open a segment one stream segment at a time (see
    /// [`SegmentOpener`]). `prefix` holds at least the segment's first
    /// [`SEGMENT_PREFIX_LEN`] bytes: its header and the stream header; the
    /// sealed segments follow them.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Malformed`] if `prefix` is shorter than
    /// [`SEGMENT_PREFIX_LEN`].
    pub fn segment_opener(&self, segment_id: &str, prefix: &[u8]) -> Result<SegmentOpener> {
        if prefix.len() < SEGMENT_PREFIX_LEN {
            return Err(Error::malformed(
                "segment",
                format!(
                    "{} bytes is shorter than its header and stream header",
                    prefix.len()
                ),
            ));
        }
        let (dek, params) = self.open_header(segment_id, &prefix[..SEGMENT_HEADER_LEN])?;
        let aad = self.body_aad(segment_id);
        Ok(
            SegmentOpener::new(&dek, &aad, params, &prefix[SEGMENT_HEADER_LEN..])?
                .with_gate(self.gate()),
        )
    }

    /// The check a segment stream of this zone runs before each segment:
    /// a stream opened while the zone served stops at its next segment
    /// once the zone is unavailable. It holds the zone open, not its keys.
    fn gate(&self) -> crate::stream::Gate {
        let inner = Arc::clone(&self.inner);
        Arc::new(move || {
            inner
                .state
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .ensure_available()
        })
    }

    /// Adds a new EZK version and makes it active: one provider call, then
    /// the manifest is persisted, and only then do new segments use it. Old
    /// versions keep decrypting. Returns the new version.
    ///
    /// # Errors
    /// Provider errors; [`Error::Io`] if the manifest cannot be stored (the
    /// zone then stays as it was); [`Error::LimitExceeded`] past
    /// [`MAX_EZK_VERSIONS`].
    pub async fn rotate_ezk(&self) -> Result<u32> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        state.ensure_available()?;
        let mut manifest = state.manifest.clone();
        if manifest.ezks.len() >= MAX_EZK_VERSIONS {
            return Err(Error::LimitExceeded {
                what: "EZK versions in one zone",
                limit: MAX_EZK_VERSIONS as u64,
            });
        }
        let version = manifest
            .ezks
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(Error::LimitExceeded {
                what: "EZK version number",
                limit: u64::from(u32::MAX),
            })?;
        let (ezk, wrapped) = self
            .inner
            .keyring
            .provider()
            .generate_key(
                &manifest.root,
                &ZoneManifest::ezk_context(&manifest.zone_id, version),
            )
            .await?;
        let now = now_unix();
        manifest.ezks.insert(
            version,
            EzkRecord {
                created_unix: now,
                wrapped,
                wraps_reserved: 0,
            },
        );
        manifest.active = version;
        self.commit(manifest, &state, |ezks| {
            ezks.insert(version, Arc::new(Ezk::new(ezk, 0)));
        })?;
        tracing::info!(zone = %self.id(), version, "rotated EZK");
        Ok(version)
    }

    /// Rewraps every EZK version under `new_root` (one provider call per
    /// version) and persists the manifest; no segment changes, and the zone
    /// serves throughout. The old root key is no longer needed afterwards.
    /// `new_root` is first resolved through the provider (one more call):
    /// for an alias, the zone records the key it points to now, and the
    /// alias only for display ([`ZoneManifest::root_alias`]).
    ///
    /// # Errors
    /// Provider errors (nothing is changed); [`Error::Io`] if the manifest
    /// cannot be stored (the zone stays under the old root).
    pub async fn rotate_root(&self, new_root: KeyRef) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        ZoneManifest::check_new(&manifest.name, &manifest.region, &new_root)?;
        let provider = self.inner.keyring.provider();
        // As at creation: an alias is resolved once and never followed.
        let (new_root, new_alias) = keyring::resolve_root(provider.as_ref(), &new_root).await?;
        ZoneManifest::check_new(&manifest.name, &manifest.region, &new_root)?;
        for (version, record) in manifest.ezks.iter_mut() {
            let context = ZoneManifest::ezk_context(&manifest.zone_id, *version);
            record.wrapped = provider
                .wrap_key(&new_root, &state.ezk(*version)?.key, &context)
                .await?;
        }
        let old = std::mem::replace(&mut manifest.root, new_root);
        manifest.root_alias = new_alias;
        self.commit(manifest, &state, |_| {})?;
        tracing::info!(zone = %self.id(), old_root = %old, new_root = %self.root(), "rotated root key");
        Ok(())
    }

    /// Removes EZK version `version` from the manifest for good. Refuses the
    /// active version. Segments still under it become undecryptable, hence
    /// the confirmation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the active or an unknown version;
    /// [`Error::Io`] if the manifest cannot be stored.
    pub async fn retire_ezk(&self, version: u32, _confirm: RetireConfirmation) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        if version == manifest.active {
            return Err(Error::InvalidArgument(format!(
                "EZK version {version} is active; rotate before retiring it"
            )));
        }
        if manifest.ezks.remove(&version).is_none() {
            return Err(Error::InvalidArgument(format!(
                "zone {} has no EZK version {version}",
                manifest.zone_id
            )));
        }
        self.commit(manifest, &state, |ezks| {
            ezks.remove(&version);
        })?;
        tracing::info!(zone = %self.id(), version, "retired EZK version");
        Ok(())
    }

    /// Persists `manifest` (generation bumped, authenticated with its
    /// active EZK), then swaps in a state with the EZK set changed by
    /// `change`. Nothing changes if storing fails; [`Error::Conflict`] if
    /// another process changed the manifest since this zone read it.
    ///
    /// If the zone was marked unavailable while the change ran, the new
    /// manifest is installed but no EZK is: recovery unwraps them from it.
    fn commit(
        &self,
        mut manifest: ZoneManifest,
        base: &ZoneState,
        change: impl FnOnce(&mut BTreeMap<u32, Arc<Ezk>>),
    ) -> Result<()> {
        // Sealing needs the active EZK: a zone that was unavailable when
        // the change began has none (one that became unavailable since
        // still seals with what it held then).
        base.ensure_available()?;
        let mut ezks = base.ezks.clone();
        change(&mut ezks);
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.state();
        // Wrap reservations made by the data path since `base` was read are
        // kept: they count wraps already performed.
        for (version, record) in manifest.ezks.iter_mut() {
            if let Some(now) = current.manifest.ezks.get(version) {
                record.wraps_reserved = record.wraps_reserved.max(now.wraps_reserved);
            }
        }
        manifest.generation = current.manifest.generation + 1;
        manifest.updated_unix = now_unix();
        let active = ezks.get(&manifest.active).ok_or(Error::UnknownEzkVersion {
            version: manifest.active,
            newest: manifest.newest_version(),
        })?;
        let bytes = manifest.seal(&active.key)?;
        self.replace_stored(&current.stored, &bytes)?;
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Replaces the stored manifest `current` with `new`. If the store holds
    /// a manifest this zone tried to write and got an error for, that one
    /// counts as `current`: it was never used (the zone kept the previous
    /// state), and a write that failed after its rename must not block
    /// every later change.
    fn replace_stored(&self, current: &[u8], new: &[u8]) -> Result<()> {
        let uncertain = self
            .inner
            .uncertain
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut result = self.inner.store.replace(Some(current), new);
        if let (Err(Error::Conflict { .. }), Some(ours)) = (&result, &uncertain) {
            if self.inner.store.load()?.as_deref() == Some(ours.as_slice()) {
                result = self.inner.store.replace(Some(ours), new);
            }
        }
        match &result {
            Ok(()) | Err(Error::Conflict { .. }) => {}
            Err(_) => {
                *self
                    .inner
                    .uncertain
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(new.to_vec());
            }
        }
        result
    }

    /// The stored manifest if it differs from the one `state` holds,
    /// parsed and checked against this zone's current anchor (same zone,
    /// same root, no older): not yet authenticated.
    fn load_changed(
        &self,
        state: &ZoneState,
    ) -> Result<Option<(ZoneManifest, ManifestSeal, Vec<u8>)>> {
        let bytes = self
            .inner
            .store
            .load()?
            .ok_or_else(|| Error::InvalidArgument("the zone's manifest is gone".into()))?;
        if bytes == *state.stored {
            return Ok(None);
        }
        let (manifest, seal) = ZoneManifest::parse_sealed(&bytes)?;
        let m = &state.manifest;
        ZoneAnchor::new(m.zone_id, m.root.clone(), m.generation).check(&manifest)?;
        Ok(Some((manifest, seal, bytes)))
    }

    /// Takes in, without a provider call, a manifest another handle or
    /// process stored since this zone read its own: it must be this zone's,
    /// under the same root, no older, authentic under an EZK this zone
    /// holds, and hold only EZK versions this zone holds (a wrap
    /// reservation or a retirement made elsewhere). Anything more (a
    /// rotation made elsewhere) needs [`reload`](Self::reload):
    /// [`Error::Conflict`].
    fn take_in_stored(&self) -> Result<()> {
        let state = self.state();
        let Some((manifest, seal, bytes)) = self.load_changed(&state)? else {
            return Ok(());
        };
        let needs_reload = || Error::Conflict {
            what: "zone manifest",
            reason: "another process rotated the zone: reload it (Zone::reload) and retry".into(),
        };
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let same = state
                .manifest
                .ezks
                .get(&version)
                .is_some_and(|r| r.wrapped == record.wrapped);
            match state.ezks.get(&version) {
                Some(ezk) if same => ezks.insert(version, ezk.clone()),
                _ => return Err(needs_reload()),
            };
        }
        keyring::verify_with(&seal, &manifest, &ezks)?;
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Swaps in a state holding `manifest`, stored as `bytes`, with `ezks`
    /// if the zone is available now, none otherwise.
    fn install(&self, mut manifest: ZoneManifest, bytes: Vec<u8>, ezks: BTreeMap<u32, Arc<Ezk>>) {
        manifest.sealed = manifest::SealedBytes(Some(bytes.as_slice().into()));
        let mut slot = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
        let availability = slot.availability;
        *slot = Arc::new(ZoneState {
            manifest,
            stored: Arc::new(bytes),
            unverified: None,
            ezks: if availability.is_available() {
                ezks
            } else {
                BTreeMap::new()
            },
            availability,
        });
    }

    /// The current state, after reserving DEK wraps under the active EZK
    /// in the manifest if this process has used up its reservation.
    fn state_with_wrap_reserved(&self) -> Result<Arc<ZoneState>> {
        loop {
            let state = self.state();
            if state.ezk(state.manifest.active)?.take_wrap() {
                return Ok(state);
            }
            self.reserve_wraps()?;
        }
    }

    /// Reserves the next block of DEK wraps under the active EZK: a
    /// manifest write (compare-and-swap; no provider call) recording that
    /// at most that many wraps were performed, so that a restart, a crash or
    /// another node never starts counting below the wraps really made.
    ///
    /// # Errors
    /// [`Error::Conflict`] if another process changed the manifest (reload
    /// the zone); [`Error::LimitExceeded`] if the EZK reached its limit;
    /// [`Error::Io`].
    fn reserve_wraps(&self) -> Result<()> {
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        // Another handle or process may have written the manifest (its own
        // reservation): take that in and try again, a few times.
        for _ in 0..8 {
            match self.try_reserve_wraps() {
                Err(Error::Conflict { .. }) => self.take_in_stored()?,
                other => return other,
            }
        }
        Err(Error::Conflict {
            what: "zone manifest",
            reason: "other writers keep changing it; retry".into(),
        })
    }

    fn try_reserve_wraps(&self) -> Result<()> {
        let state = self.state();
        let active = state.manifest.active;
        let ezk = state.ezk(active)?;
        if ezk.next.load(Ordering::Acquire) < ezk.reserved.load(Ordering::Acquire) {
            return Ok(()); // another thread reserved meanwhile
        }
        let mut manifest = state.manifest.clone();
        let record = manifest
            .ezks
            .get_mut(&active)
            .expect("active version exists");
        // The new block starts where every earlier reservation, of any
        // process, ended: the wraps of all processes together never exceed
        // what the manifest records.
        let start = record.wraps_reserved;
        if start >= WRAP_LIMIT {
            return Err(Error::LimitExceeded {
                what: "DEK wraps under one EZK version (rotate the EZK)",
                limit: WRAP_LIMIT,
            });
        }
        let blocks = ezk.blocks.fetch_add(1, Ordering::Relaxed).min(8);
        let block = (FIRST_WRAP_BLOCK << blocks).min(MAX_WRAP_BLOCK);
        let reserved = start.saturating_add(block).min(WRAP_LIMIT);
        record.wraps_reserved = reserved;
        manifest.generation += 1;
        manifest.updated_unix = now_unix();
        let bytes = manifest.seal(&ezk.key)?;
        self.replace_stored(&state.stored, &bytes)?;
        ezk.next.fetch_max(start, Ordering::AcqRel);
        ezk.reserved.store(reserved, Ordering::Release);
        if reserved > ROTATE_AFTER_WRAPS {
            tracing::warn!(zone = %manifest.zone_id, version = active, reserved,
                "the active EZK is past half its wrap limit: rotate it");
        }
        let ezks = state.ezks.clone();
        self.install(manifest, bytes, ezks);
        Ok(())
    }

    /// Records `wraps` reserved under the active EZK, as if processes had
    /// reserved them: for tests of what happens near the wrap limit.
    #[cfg(test)]
    pub(crate) async fn reserve_wraps_for_test(&self, wraps: u64) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        let mut manifest = state.manifest.clone();
        let active = manifest.active;
        manifest
            .ezks
            .get_mut(&active)
            .expect("active")
            .wraps_reserved = wraps;
        self.commit(manifest, &state, |_| {})
    }

    /// Reads the manifest again from the store and takes in what other
    /// processes changed: new EZK versions (one provider call each),
    /// retirements, wrap reservations. The stored manifest must be this
    /// zone's, under the same root key, at this generation or newer, and
    /// authentic; otherwise nothing changes. A zone whose root key was
    /// rotated elsewhere is opened again with its new anchor instead.
    ///
    /// # Errors
    /// [`Error::StateRejected`] for a rolled-back, foreign or re-rooted
    /// manifest; [`Error::Integrity`] for a forged one; provider errors.
    pub async fn reload(&self) -> Result<()> {
        let _admin = self.inner.admin.lock().await;
        let state = self.state();
        state.ensure_available()?;
        let Some((manifest, seal, bytes)) = self.load_changed(&state)? else {
            return Ok(());
        };
        let mut ezks = BTreeMap::new();
        for (version, record) in manifest.ezk_versions() {
            let same_wrap = state
                .manifest
                .ezks
                .get(&version)
                .is_some_and(|r| r.wrapped == record.wrapped);
            let ezk = match state.ezks.get(&version) {
                // Its counters carry on: the next reservation starts past
                // every block other processes took meanwhile.
                Some(held) if same_wrap => held.clone(),
                _ => {
                    self.inner
                        .keyring
                        .unwrap_ezk(&manifest.root, &manifest.zone_id, version, record)
                        .await?
                }
            };
            ezks.insert(version, ezk);
        }
        keyring::verify_with(&seal, &manifest, &ezks)?;
        let _write = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        if *self.state().stored != *state.stored {
            return Err(Error::Conflict {
                what: "zone manifest",
                reason: "this process changed the manifest during the reload; retry".into(),
            });
        }
        tracing::info!(zone = %manifest.zone_id, generation = manifest.generation, "reloaded zone");
        self.install(manifest, bytes, ezks);
        Ok(())
    }
}

/// Reads the header at the start of `source`.
fn read_header<R: Read>(source: &mut R) -> Result<[u8; SEGMENT_HEADER_LEN]> {
    let mut bytes = [0u8; SEGMENT_HEADER_LEN];
    source.read_exact(&mut bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::malformed("segment header", "truncated"),
        _ => Error::from(e),
    })?;
    Ok(bytes)
}

/// Recovers a segment's DEK from its header with the zone's EZKs. The DEK
/// is authenticated by its wrap, and with it (format v2) every other header
/// byte; callers that decrypt the body also check the key commitment.
fn unwrap_dek(state: &ZoneState, segment_id: &str, header: &SegmentHeader) -> Result<SecretKey> {
    let m = &state.manifest;
    if header.zone_id() != m.zone_id {
        return Err(Error::Integrity {
            what: "segment header (it belongs to another zone)",
        });
    }
    let version = header.ezk_version();
    let ezk = state.ezk(version)?;
    let dek = ezk
        .wrapper
        .unwrap(header.wrapped_dek(), &header.dek_aad(segment_id))
        .map_err(|e| match e {
            Error::Integrity { .. } => Error::Integrity {
                what: "segment DEK (wrong segment id, or a modified header)",
            },
            other => other,
        })?;
    Ok(dek)
}
