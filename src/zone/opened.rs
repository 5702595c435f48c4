//! [`OpenedSegment`]: a segment whose header was opened once, shared by
//! any number of concurrent positional reads.
//!
//! Opening a segment parses its header, unwraps its DEK and derives the
//! stream key: several microseconds, more than a small lookup's
//! decryption. A table cache opens each segment once with
//! [`Zone::open_segment_from`](super::Zone::open_segment_from) (or
//! [`Zone::open_segment`](super::Zone::open_segment)) and keeps the result (in an `Arc`) beside its
//! file handle; every lookup then reads through `&self`. This module owns
//! that type; the chunk arithmetic and the reads are the stream's
//! [`RangeDecryptor`], and it must not know the body's layout beyond it.

use std::ops::Range;

use bytes::Bytes;

use crate::stream::{CiphertextRange, Params, RangeDecryptor, ReadAt};
use crate::Result;

/// A segment opened for positional reads (by [`Zone::open_segment_from`](super::Zone::open_segment_from)
/// or [`Zone::open_segment`](super::Zone::open_segment)) through `&self`: its DEK
/// unwrapped and stream key derived once, its length known. `Send + Sync`;
/// share it in an `Arc` across the threads of a table cache.
///
/// Offsets in a read are plaintext offsets; the `source` handed to each
/// read is the whole segment as stored (header first), e.g. the segment's
/// [`File`](std::fs::File) or its bytes. Each read fetches only the chunks
/// it touches and authenticates each before copying any of it out.
///
/// It holds the segment's stream key, not the zone's keys, and it checks
/// the zone before each chunk: once the zone is unavailable
/// ([`Zone::is_available`](super::Zone::is_available)) every read fails with
/// [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable), and reads work again when the zone recovers.
/// A rewrap of the segment changes only its header, so an opened segment
/// keeps reading after it; so it does after its EZK version is retired
/// (the DEK was unwrapped when it was opened), while a new open of the
/// old header fails with [`Error::UnknownEzkVersion`](crate::Error::UnknownEzkVersion).
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
/// let rows: Vec<u8> = (0..500_000u32).map(|i| i as u8).collect();
/// let path = dir.path().join("000001.sst");
/// std::fs::write(&path, zone.encrypt_segment("000001.sst", &rows)?)?;
///
/// // Once per segment, when the table cache opens it: reads the header
/// // and the file's length.
/// let file = std::fs::File::open(&path)?;
/// let segment = Arc::new(zone.open_segment_from("000001.sst", &file)?);
///
/// // Per lookup, from any thread: no header parse, no unwrap, no key derivation.
/// let mut block = [0u8; 4096];
/// segment.read_at(&file, 300_000, &mut block)?;
/// assert_eq!(&block[..], &rows[300_000..304_096]);
/// # Ok(()) }
/// ```
pub struct OpenedSegment {
    body: RangeDecryptor,
    segment_len: u64,
}

impl OpenedSegment {
    /// A segment whose body is `body`, counted from the segment's start,
    /// and whose stored length is `segment_len`.
    pub(super) fn new(body: RangeDecryptor, segment_len: u64) -> Self {
        Self { body, segment_len }
    }

    /// The stream decryptor of the segment's body, for whole-chunk reads.
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    pub(crate) fn body(&self) -> &RangeDecryptor {
        &self.body
    }
}

impl OpenedSegment {
    /// Reads plaintext starting at `offset` into `out` from `source`, the
    /// stored segment. Returns fewer than `out.len()` bytes only at the
    /// end of the segment, which is then authenticated: a truncated
    /// segment is an error, never a short read.
    ///
    /// # Errors
    /// [`Error::Integrity`](crate::Error::Integrity) if a touched chunk does not authenticate (no
    /// plaintext from it is copied out; what `out` holds is then
    /// unspecified); [`Error::Malformed`](crate::Error::Malformed) if `source` is shorter than the
    /// length the segment was opened with; [`Error::Io`](crate::Error::Io) if `source`
    /// fails; [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable) while the zone is unavailable.
    pub fn read_at<R: ReadAt + ?Sized>(
        &self,
        source: &R,
        offset: u64,
        out: &mut [u8],
    ) -> Result<usize> {
        self.body.read_at(source, offset, out)
    }

    /// The plaintext length implied by the segment's length. It is
    /// authenticated only once a read reached the end; see
    /// [`authenticated_len`](Self::authenticated_len).
    pub fn plaintext_len(&self) -> u64 {
        self.body.plaintext_len()
    }

    /// The plaintext length, authenticated: opens the segment's last chunk
    /// from `source` unless a read already did.
    ///
    /// # Errors
    /// As [`read_at`](Self::read_at).
    pub fn authenticated_len<R: ReadAt + ?Sized>(&self, source: &R) -> Result<u64> {
        self.body.authenticated_len(source)
    }

    /// The segment's stored length, as given to
    /// [`Zone::open_segment`](super::Zone::open_segment).
    pub fn segment_len(&self) -> u64 {
        self.segment_len
    }

    /// The segment's stream parameters (from its header).
    pub fn params(&self) -> Params {
        self.body.params()
    }

    /// For ranged GETs: the bytes of the stored segment to fetch for the
    /// plaintext range `plaintext`, in segment offsets (the segment header
    /// counted). Hand them to [`decrypt_range`](Self::decrypt_range).
    ///
    /// # Errors
    /// [`Error::Misuse`](crate::Error::Misuse) if `plaintext.start > plaintext.end`.
    pub fn plan(&self, plaintext: Range<u64>) -> Result<CiphertextRange> {
        self.body.plan(plaintext)
    }

    /// Decrypts `fetched`, the bytes `plan.chunks` of the stored segment,
    /// and returns exactly `plan.plaintext`.
    ///
    /// # Errors
    /// [`Error::Misuse`](crate::Error::Misuse) if `plan` is not what
    /// [`plan`](Self::plan) returns for its range on this segment;
    /// [`Error::Malformed`](crate::Error::Malformed) if `fetched` is not `plan.chunks` long;
    /// [`Error::Integrity`](crate::Error::Integrity) if a chunk does not authenticate (nothing is
    /// returned); [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable) while the zone is unavailable.
    pub fn decrypt_range(&self, plan: &CiphertextRange, fetched: &[u8]) -> Result<Bytes> {
        self.body.decrypt(plan, fetched)
    }
}

impl std::fmt::Debug for OpenedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedSegment")
            .field("segment_len", &self.segment_len)
            .field("params", &self.body.params())
            .finish_non_exhaustive()
    }
}
