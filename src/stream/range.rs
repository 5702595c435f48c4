//! Ranged access for object stores: which ciphertext bytes to fetch for a
//! plaintext range, and decrypting just those bytes.
//!
//! This module owns [`CiphertextRange`] (a pure function of the layout) and
//! [`RangeDecryptor`]. It must not do I/O: the caller fetches the bytes (a
//! ranged GET) and hands them over.

use std::ops::Range;

use bytes::Bytes;

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, Params, HEADER_LEN};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// The ciphertext to fetch for a plaintext range, from
/// [`Params::ciphertext_range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CiphertextRange {
    /// The stream header's bytes, always `0..40`. Fetch them once per
    /// stream (they are needed to derive the stream key); when
    /// [`chunks`](Self::chunks) starts at 40, one fetch of
    /// `0..chunks.end` covers both.
    pub header: Range<u64>,
    /// The whole chunks holding the requested plaintext. Empty when the
    /// requested range is empty and inside the stream.
    pub chunks: Range<u64>,
    /// Index of the first chunk in [`chunks`](Self::chunks).
    pub first_chunk: u64,
    /// The plaintext this fetch yields: the requested range clamped to the
    /// stream's length.
    pub plaintext: Range<u64>,
    /// The stream's total ciphertext length the plan was made for.
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

/// Decrypts fetched ciphertext ranges of one stream.
///
/// Built once per stream from its header (this derives the stream key), then
/// used for any number of [`CiphertextRange`]s. Each chunk authenticates
/// its own position (its index is in the nonce) and whether it is the last,
/// so a fetched range decrypts correctly or fails with
/// [`Error::Integrity`] — including when `ciphertext_len` misstates where
/// the stream ends and the range touches that end.
pub struct RangeDecryptor {
    params: Params,
    cipher: ChunkCipher,
    ciphertext_len: u64,
    chunks: u64,
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
        })
    }

    /// The plan for a plaintext range of this stream; see
    /// [`Params::ciphertext_range`].
    ///
    /// # Errors
    /// As [`Params::ciphertext_range`].
    pub fn plan(&self, plaintext: Range<u64>) -> Result<CiphertextRange> {
        self.params.ciphertext_range(plaintext, self.ciphertext_len)
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
                "the range plan was not made for this stream by ciphertext_range",
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
            let sealed = self
                .params
                .sealed_len(index, self.chunks, self.ciphertext_len);
            let Some(ct) = fetched.get(at..at + sealed) else {
                return Err(Error::malformed("stream range", "ends inside a chunk"));
            };
            let buf = &mut scratch[..sealed];
            buf.copy_from_slice(ct);
            self.cipher
                .open(index_u32(index)?, index + 1 == self.chunks, buf)?;
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
}

impl std::fmt::Debug for RangeDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeDecryptor")
            .field("params", &self.params)
            .field("ciphertext_len", &self.ciphertext_len)
            .finish_non_exhaustive()
    }
}
