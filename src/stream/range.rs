//! Ranged access: which ciphertext bytes to fetch for a plaintext range
//! and decrypting just those bytes (ranged GETs), and positional reads
//! through a shared reference from any [`ReadAt`] source.
//!
//! This module owns [`CiphertextRange`] (a pure function of the layout) and
//! [`RangeDecryptor`]. It does no I/O of its own: the caller fetches the
//! bytes of a plan, or hands [`RangeDecryptor::read_at`] a source to read
//! the touched chunks from.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, Params, HEADER_LEN};
use super::read_at::ReadAt;
use super::{pass, Gate};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// The ciphertext to fetch for a plaintext range, from
/// [`Params::ciphertext_range`], [`RangeDecryptor::plan`] or
/// [`OpenedSegment::plan`](crate::zone::OpenedSegment::plan).
///
/// Offsets count from the start of the object that holds the stream: the
/// stream itself for a bare stream, the segment (its header first) for a
/// zone segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiphertextRange {
    /// The stream header's bytes: `0..40` in a bare stream, the 40 bytes
    /// after the segment header in a zone segment. Fetch them once per
    /// stream (they are needed to derive the stream key); when
    /// [`chunks`](Self::chunks) starts right after them, one fetch of
    /// `header.start..chunks.end` covers both.
    pub header: Range<u64>,
    /// The whole chunks holding the requested plaintext. Empty when the
    /// requested range is empty and inside the stream.
    pub chunks: Range<u64>,
    /// Index of the first chunk in [`chunks`](Self::chunks).
    pub first_chunk: u64,
    /// The plaintext this fetch yields: the requested range clamped to the
    /// stream's length.
    pub plaintext: Range<u64>,
    /// The total length of the object the plan was made for (the stream,
    /// or the segment holding it).
    pub ciphertext_len: u64,
}

impl Params {
    /// Maps the plaintext byte range `plaintext` of a stream whose ciphertext
    /// is `ciphertext_len` bytes long (e.g. the object size) to the
    /// ciphertext bytes that must be fetched. Pure: no I/O, no key.
    ///
    /// A range that reaches or starts past the end is clamped, and then
    /// includes the last chunk, so that decrypting it authenticates where
    /// the stream ends.
    ///
    /// ```
    /// use cmek::stream::Params;
    /// let p = Params::new(4096)?;
    /// let ct_len = p.ciphertext_len(1 << 20)?;
    /// let r = p.ciphertext_range(10_000..14_096, ct_len)?;
    /// assert_eq!(r.chunks, 2 * 4096..4 * 4096);
    /// assert_eq!(r.first_chunk, 2);
    /// # Ok::<(), cmek::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Malformed`] if no stream has `ciphertext_len` bytes;
    /// [`Error::Misuse`] if `plaintext.start > plaintext.end`.
    pub fn ciphertext_range(
        &self,
        plaintext: Range<u64>,
        ciphertext_len: u64,
    ) -> Result<CiphertextRange> {
        if plaintext.start > plaintext.end {
            return Err(Error::misuse(format!(
                "plaintext range {}..{} is reversed",
                plaintext.start, plaintext.end
            )));
        }
        let len = self.plaintext_len(ciphertext_len)?;
        let chunks = self.chunk_count_for_ciphertext(ciphertext_len)?;
        let start = plaintext.start.min(len);
        let end = plaintext.end.min(len);
        let (first, last) = if start < end {
            (self.chunk_of(start).0, self.chunk_of(end - 1).0)
        } else if plaintext.end >= len {
            // Empty at the end: fetch the last chunk to prove the end.
            (chunks - 1, chunks - 1)
        } else {
            let (i, _) = self.chunk_of(start);
            let at = self.ciphertext_start(i);
            return Ok(CiphertextRange {
                header: 0..HEADER_LEN as u64,
                chunks: at..at,
                first_chunk: i,
                plaintext: start..end,
                ciphertext_len,
            });
        };
        let seg_end =
            self.ciphertext_start(last) + self.sealed_len(last, chunks, ciphertext_len) as u64;
        Ok(CiphertextRange {
            header: 0..HEADER_LEN as u64,
            chunks: self.ciphertext_start(first)..seg_end,
            first_chunk: first,
            plaintext: start..end,
            ciphertext_len,
        })
    }
}

/// Decrypts ranges of one stream: fetched ciphertext ranges (ranged GETs)
/// and positional reads from a [`ReadAt`] source.
///
/// Built once per stream from its header (this derives the stream key),
/// then used for any number of reads, from any number of threads at once:
/// every method takes `&self`, and the type is `Send + Sync` (share it in
/// an `Arc`). Each chunk authenticates its own position (its index is in
/// the nonce) and whether it is the last, so a read decrypts correctly or
/// fails with [`Error::Integrity`] — including when `ciphertext_len`
/// misstates where the stream ends and the read touches that end.
///
/// ```
/// use cmek::{stream, SecretKey};
/// use cmek::stream::{Params, RangeDecryptor};
/// let key = SecretKey::generate()?;
/// let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
/// let ct = stream::encrypt(&key, b"object 9", &data)?;
/// let ranges = RangeDecryptor::new(&key, b"object 9", Params::default(), &ct, ct.len() as u64)?;
/// let mut buf = [0u8; 100];
/// assert_eq!(ranges.read_at(&ct, 150_000, &mut buf)?, 100);
/// assert_eq!(&buf[..], &data[150_000..150_100]);
/// # Ok::<(), cmek::Error>(())
/// ```
pub struct RangeDecryptor {
    params: Params,
    cipher: ChunkCipher,
    /// The stream's length.
    ciphertext_len: u64,
    chunks: u64,
    /// The plaintext length `ciphertext_len` implies; authenticated once
    /// `end_verified`.
    claimed_len: u64,
    /// Set once the last chunk authenticated as the last at the position
    /// `ciphertext_len` puts it: the length is then proven, whatever
    /// source later reads come from (their chunks authenticate on their
    /// own).
    end_verified: AtomicBool,
    /// Offset of the stream's first byte in the object its ranges are
    /// counted in: 0 for a bare stream, the segment header's length in a
    /// zone segment.
    base: u64,
    gate: Option<Gate>,
}

impl RangeDecryptor {
    /// Prepares to decrypt ranges of the stream with this `header` (its
    /// first 40 bytes) and total length `ciphertext_len`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a bad header or an impossible length.
    pub fn new(
        key: &SecretKey,
        aad: &[u8],
        params: Params,
        header: &[u8],
        ciphertext_len: u64,
    ) -> Result<Self> {
        let header = Header::parse(header)?;
        let chunks = params.chunk_count_for_ciphertext(ciphertext_len)?;
        Ok(Self {
            cipher: ChunkCipher::new(key, aad, &header)?,
            params,
            ciphertext_len,
            chunks,
            claimed_len: params.plaintext_len(ciphertext_len)?,
            end_verified: AtomicBool::new(false),
            base: 0,
            gate: None,
        })
    }

    /// Counts offsets from `base` bytes before the stream: plans and
    /// positional reads then address the object that holds the stream
    /// after a header of that length.
    pub(crate) fn with_base(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    /// Runs `gate` before opening each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The stream's parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// The plaintext length implied by the length given to
    /// [`new`](Self::new). It is authenticated only once a read reached
    /// the end: use [`authenticated_len`](Self::authenticated_len) to be
    /// sure.
    pub fn plaintext_len(&self) -> u64 {
        self.claimed_len
    }

    /// The plaintext length, authenticated: opens the stream's last chunk
    /// from `source` unless a read already did.
    ///
    /// # Errors
    /// As [`read_at`](Self::read_at); [`Error::Integrity`] in particular if
    /// the stream was truncated or extended.
    pub fn authenticated_len<R: ReadAt + ?Sized>(&self, source: &R) -> Result<u64> {
        self.verify_end(source, &mut Vec::new())?;
        Ok(self.claimed_len)
    }

    /// The plan for a plaintext range of this stream; see
    /// [`Params::ciphertext_range`].
    ///
    /// # Errors
    /// As [`Params::ciphertext_range`].
    pub fn plan(&self, plaintext: Range<u64>) -> Result<CiphertextRange> {
        let mut plan = self
            .params
            .ciphertext_range(plaintext, self.ciphertext_len)?;
        if self.base > 0 {
            let b = self.base;
            plan.header = plan.header.start + b..plan.header.end + b;
            plan.chunks = plan.chunks.start + b..plan.chunks.end + b;
            plan.ciphertext_len += b;
        }
        Ok(plan)
    }

    /// Decrypts `fetched` (the bytes of `plan.chunks`) and returns exactly
    /// `plan.plaintext`.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `plan` is not what
    /// [`plan`](Self::plan) returns for its plaintext range on this stream;
    /// [`Error::Malformed`] if `fetched` is not `plan.chunks` long;
    /// [`Error::Integrity`] if a chunk does not authenticate (nothing is
    /// returned).
    pub fn decrypt(&self, plan: &CiphertextRange, fetched: &[u8]) -> Result<Bytes> {
        if *plan != self.plan(plan.plaintext.clone())? {
            return Err(Error::misuse(
                "the range plan was not made for this stream by its plan()",
            ));
        }
        let want = plan.chunks.end - plan.chunks.start;
        if fetched.len() as u64 != want {
            return Err(Error::malformed(
                "stream range",
                format!("fetched {} bytes, expected {want}", fetched.len()),
            ));
        }
        let mut out = Vec::with_capacity((plan.plaintext.end - plan.plaintext.start) as usize);
        // No chunk is longer than what was fetched (checked below before
        // each copy), whatever the params claim.
        let mut scratch = vec![0u8; self.params.chunk_size().min(fetched.len())];
        let mut at = 0usize;
        let mut index = plan.first_chunk;
        while at < fetched.len() {
            let sealed = self.sealed_len(index);
            let Some(ct) = fetched.get(at..at + sealed) else {
                return Err(Error::malformed("stream range", "ends inside a chunk"));
            };
            let buf = &mut scratch[..sealed];
            buf.copy_from_slice(ct);
            self.open_in_place(index, buf)?;
            let seg_start = self.params.plaintext_start(index);
            let seg_end = seg_start + (sealed - TAG_LEN) as u64;
            let from = plan.plaintext.start.max(seg_start);
            let to = plan.plaintext.end.min(seg_end);
            if from < to {
                out.extend_from_slice(&buf[(from - seg_start) as usize..(to - seg_start) as usize]);
            }
            at += sealed;
            index += 1;
        }
        Ok(Bytes::from(out))
    }

    /// Opens the whole chunks in `sealed`, the first of them chunk `first`,
    /// straight into `out` (out-of-place: no copy of the ciphertext), on up
    /// to `threads` threads for large batches. `sealed` holds exactly whole
    /// chunks as this stream lays them out (the last one may be the
    /// stream's last); `out` must be exactly their plaintext length, which
    /// [`chunks_plaintext_len`](Self::chunks_plaintext_len) gives. On
    /// failure `out` is all zeros.
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    pub(crate) fn open_chunks_into(
        &self,
        first: u64,
        sealed: &[u8],
        out: &mut [u8],
        threads: super::Threads,
    ) -> Result<()> {
        let (end, plain) = self.chunks_spanned(first, sealed.len())?;
        if plain != out.len() {
            return Err(Error::misuse(format!(
                "output has {} bytes, chunks {first}..{end} hold {plain}",
                out.len()
            )));
        }
        let parts = threads
            .resolve(out.len())
            .min((end - first) as usize)
            .max(1);
        let r = if parts <= 1 {
            self.open_run(first, end, sealed, out)
        } else {
            // Cut into runs of whole chunks, one per thread.
            let bounds: Vec<u64> = (0..=parts as u64)
                .map(|i| first + (end - first) * i / parts as u64)
                .collect();
            let mut jobs = Vec::with_capacity(parts);
            let (mut sealed_rest, mut out_rest) = (sealed, &mut *out);
            for w in bounds.windows(2) {
                let (s_len, p_len) = if w[1] == end {
                    (sealed_rest.len(), out_rest.len())
                } else {
                    let p = &self.params;
                    (
                        (p.ciphertext_start(w[1]) - p.ciphertext_start(w[0])) as usize,
                        (p.plaintext_start(w[1]) - p.plaintext_start(w[0])) as usize,
                    )
                };
                let (s, s_tail) = sealed_rest.split_at(s_len);
                let (o, o_tail) = std::mem::take(&mut out_rest).split_at_mut(p_len);
                jobs.push((w[0], w[1], s, o));
                sealed_rest = s_tail;
                out_rest = o_tail;
            }
            std::thread::scope(|scope| {
                let mut iter = jobs.into_iter();
                let (f0, t0, s0, o0) = iter.next().expect("at least one run");
                let handles: Vec<_> = iter
                    .map(|(f, t, s, o)| scope.spawn(move || self.open_run(f, t, s, o)))
                    .collect();
                let mut result = self.open_run(f0, t0, s0, o0);
                for h in handles {
                    result = result.and(h.join().unwrap_or_else(|_| {
                        Err(Error::WorkerPanicked {
                            what: "opening a run of stream chunks".into(),
                        })
                    }));
                }
                result
            })
        };
        if r.is_err() {
            zeroize::Zeroize::zeroize(out);
        }
        r
    }

    /// Where whole chunks starting at chunk `first` and spanning
    /// `sealed_len` bytes end (exclusive chunk index), and their plaintext
    /// length. For sizing the output of
    /// [`open_chunks_into`](Self::open_chunks_into).
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    pub(crate) fn chunks_spanned(&self, first: u64, sealed_len: usize) -> Result<(u64, usize)> {
        let start = self.params.ciphertext_start(first);
        let end_at = start + sealed_len as u64;
        if first >= self.chunks || end_at > self.ciphertext_len || sealed_len == 0 {
            return Err(Error::malformed(
                "stream range",
                format!(
                    "{sealed_len} bytes from chunk {first} are not whole chunks of this stream"
                ),
            ));
        }
        let end = if end_at == self.ciphertext_len {
            self.chunks
        } else {
            // Chunk boundaries after chunk 0 are multiples of the chunk size.
            if !end_at.is_multiple_of(self.params.chunk_size() as u64) {
                return Err(Error::malformed("stream range", "ends inside a chunk"));
            }
            end_at / self.params.chunk_size() as u64
        };
        let plain = sealed_len - (end - first) as usize * TAG_LEN;
        Ok((end, plain))
    }

    /// Sealed length of chunk `index` of this stream; 0 past its end.
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    pub(crate) fn chunk_sealed_len(&self, index: u64) -> usize {
        if index < self.chunks {
            self.sealed_len(index)
        } else {
            0
        }
    }

    /// Opens chunks `from..to`, laid out in `sealed`, into `out`.
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    fn open_run(&self, from: u64, to: u64, sealed: &[u8], out: &mut [u8]) -> Result<()> {
        let (mut s, mut o) = (0usize, 0usize);
        for i in from..to {
            let n = self.sealed_len(i);
            let Some(chunk) = sealed.get(s..s + n) else {
                return Err(Error::malformed("stream range", "ends inside a chunk"));
            };
            let p = n - TAG_LEN;
            pass(&self.gate)?;
            self.cipher
                .open_to(index_u32(i)?, self.is_last(i), chunk, &mut out[o..o + p])?;
            self.opened(i);
            s += n;
            o += p;
        }
        Ok(())
    }

    /// Reads plaintext starting at `offset` into `out`, fetching from
    /// `source` only the chunks the range touches and authenticating each
    /// before any of its bytes is copied out. Returns fewer than
    /// `out.len()` bytes only at the end of the stream, whose position is
    /// then authenticated (the last chunk is opened), so a truncated stream
    /// is an error, never a short read.
    ///
    /// `source` holds the stream at the offsets this decryptor counts in
    /// (for a zone segment, the whole segment, header first). Nothing is
    /// cached between calls but whether the end was proven; calls from
    /// many threads at once each use their own thread's buffer of one
    /// chunk, kept for the thread's next read when the chunk size is at
    /// most 1 MiB.
    ///
    /// # Errors
    /// [`Error::Integrity`] if a touched chunk does not authenticate (no
    /// plaintext from it is copied out; what `out` holds is then
    /// unspecified); [`Error::Malformed`] if `source` is shorter than the
    /// length given to [`new`](Self::new); [`Error::Io`] if `source`
    /// fails; [`Error::ZoneUnavailable`] once a zone's stream finds its zone
    /// unavailable.
    pub fn read_at<R: ReadAt + ?Sized>(
        &self,
        source: &R,
        mut offset: u64,
        out: &mut [u8],
    ) -> Result<usize> {
        let mut scratch = Scratch::take();
        let scratch = &mut scratch.0;
        let mut done = 0;
        while done < out.len() {
            if offset >= self.claimed_len {
                self.verify_end(source, scratch)?;
                break;
            }
            let (index, within) = self.params.chunk_of(offset);
            let sealed = self.fetch(source, index, scratch)?;
            let plain_len = sealed.len() - TAG_LEN;
            let want = out.len() - done;
            if within == 0 && plain_len <= want {
                // The whole chunk is wanted: open it straight into `out`.
                pass(&self.gate)?;
                self.cipher.open_to(
                    index_u32(index)?,
                    self.is_last(index),
                    sealed,
                    &mut out[done..done + plain_len],
                )?;
                self.opened(index);
                done += plain_len;
                offset += plain_len as u64;
            } else {
                self.open_in_place(index, sealed)?;
                let n = (plain_len - within).min(want);
                out[done..done + n].copy_from_slice(&sealed[within..within + n]);
                done += n;
                offset += n as u64;
            }
        }
        Ok(done)
    }

    /// Opens the last chunk unless that was done before.
    fn verify_end<R: ReadAt + ?Sized>(&self, source: &R, scratch: &mut Vec<u8>) -> Result<()> {
        if self.end_verified.load(Ordering::Acquire) {
            return Ok(());
        }
        let last = self.chunks - 1;
        let sealed = self.fetch(source, last, scratch)?;
        self.open_in_place(last, sealed)
    }

    /// Reads sealed chunk `index` from `source` into `scratch` and
    /// returns it.
    fn fetch<'a, R: ReadAt + ?Sized>(
        &self,
        source: &R,
        index: u64,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a mut [u8]> {
        let sealed = self.sealed_len(index);
        if scratch.len() < sealed {
            // At most one chunk, and never more than the stream's length
            // (a chunk is that long only if the stream is).
            scratch.resize(sealed, 0);
        }
        let buf = &mut scratch[..sealed];
        let at = self.base + self.params.ciphertext_start(index);
        source.read_exact_at(buf, at).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::malformed("stream", "shorter than the length it was opened with")
            } else {
                e.into()
            }
        })?;
        Ok(buf)
    }

    /// Opens sealed chunk `index` in place (after the gate); its plaintext
    /// is then `buf[..len - 16]`.
    fn open_in_place(&self, index: u64, buf: &mut [u8]) -> Result<()> {
        pass(&self.gate)?;
        self.cipher
            .open(index_u32(index)?, self.is_last(index), buf)?;
        self.opened(index);
        Ok(())
    }

    /// Records that chunk `index` authenticated.
    fn opened(&self, index: u64) {
        if self.is_last(index) {
            self.end_verified.store(true, Ordering::Release);
        }
    }

    fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks
    }

    fn sealed_len(&self, index: u64) -> usize {
        self.params
            .sealed_len(index, self.chunks, self.ciphertext_len)
    }
}

/// Largest chunk buffer a thread keeps between positional reads (the
/// default chunk size is 64 KiB).
const KEPT_SCRATCH: usize = 1 << 20;

thread_local! {
    /// The chunk buffer of this thread's last positional read, so that the
    /// next one neither allocates nor clears it. It holds no key material
    /// (only a chunk, as any reader's buffer does).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A thread's chunk buffer, taken for one read and given back when
/// dropped (a read nested inside a source's own read finds none and
/// allocates its own).
struct Scratch(Vec<u8>);

impl Scratch {
    fn take() -> Self {
        Self(SCRATCH.with(|s| s.take()))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.0.len() <= KEPT_SCRATCH {
            let buf = std::mem::take(&mut self.0);
            // Ignored during thread teardown, when the slot is gone.
            let _ = SCRATCH.try_with(|s| s.set(buf));
        }
    }
}

impl std::fmt::Debug for RangeDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeDecryptor")
            .field("params", &self.params)
            .field("ciphertext_len", &self.ciphertext_len)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}
