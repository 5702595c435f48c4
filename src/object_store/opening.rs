//! Opening a segment's chunks as their ciphertext arrives in pieces of any
//! size (an HTTP body, a file read, one buffer holding the whole object):
//! [`ChunkBatches`]. Independent of the `object_store` version; the
//! adapters drive it from their byte streams.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::MAX_BATCH;
use crate::stream::{CiphertextRange, Threads};
use crate::zone::OpenedSegment;
use crate::{Error, Result};

/// Turns the ciphertext of a planned range (`plan.chunks`, in order, in
/// pieces) into exactly `plan.plaintext`, whole chunks at a time. A chunk
/// is opened — and authenticated — before any of its bytes is returned.
///
/// Pull-based, so that memory stays bounded whatever the pieces' size:
/// [`push`](Self::push) a piece only when [`next_batch`](Self::next_batch)
/// has nothing more to give; each batch is at most [`MAX_BATCH`] bytes,
/// opened into one buffer that is taken back for the next batch once the
/// caller dropped the last (no allocation and no page faults per batch,
/// whatever the allocator does). Held: the piece being worked through (the
/// caller's), at most one partial chunk, and that buffer.
pub(crate) struct ChunkBatches {
    segment: Arc<OpenedSegment>,
    /// The next chunk to open.
    next_chunk: u64,
    /// Plaintext offset of the next chunk's first byte.
    next_plain: u64,
    /// The plaintext wanted.
    want: std::ops::Range<u64>,
    /// Ciphertext bytes not yet pushed.
    remaining: u64,
    /// The piece being opened, from its next chunk on.
    piece: Bytes,
    /// A chunk split across pieces, being assembled.
    partial: BytesMut,
    /// Where batches are opened.
    out: BytesMut,
}

impl ChunkBatches {
    /// Expects the bytes `plan.chunks` of `segment`.
    pub(crate) fn new(segment: Arc<OpenedSegment>, plan: &CiphertextRange) -> Self {
        let params = segment.params();
        Self {
            next_chunk: plan.first_chunk,
            next_plain: params.plaintext_start(plan.first_chunk),
            want: plan.plaintext.clone(),
            remaining: plan.chunks.end - plan.chunks.start,
            piece: Bytes::new(),
            partial: BytesMut::new(),
            out: BytesMut::new(),
            segment,
        }
    }

    /// Takes in the next piece of ciphertext. Call it only after
    /// [`next_batch`](Self::next_batch) returned `None`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if more bytes arrive than planned.
    pub(crate) fn push(&mut self, piece: Bytes) -> Result<()> {
        if piece.len() as u64 > self.remaining {
            return Err(Error::malformed(
                "object",
                "the store returned more bytes than the range asked for",
            ));
        }
        debug_assert!(self.piece.is_empty(), "push only when no batch is left");
        self.remaining -= piece.len() as u64;
        if self.partial.is_empty() {
            self.piece = piece;
            return Ok(());
        }
        // Complete the partial chunk from the piece.
        let chunk_len = self.sealed_len(self.next_chunk);
        let need = (chunk_len - self.partial.len()).min(piece.len());
        self.partial.extend_from_slice(&piece[..need]);
        self.piece = piece.slice(need..);
        Ok(())
    }

    /// The plaintext of the next batch of whole chunks received, or `None`
    /// until more is pushed (or at the end). A batch wholly outside the
    /// wanted range (its first or last chunk only) yields an empty piece.
    ///
    /// # Errors
    /// [`Error::Integrity`] if a chunk does not authenticate;
    /// [`Error::ZoneUnavailable`] once the zone is unavailable.
    pub(crate) fn next_batch(&mut self) -> Result<Option<Bytes>> {
        if !self.partial.is_empty() {
            if self.partial.len() < self.sealed_len(self.next_chunk) {
                // Still partial: keep what the piece has left, if anything.
                let rest = std::mem::take(&mut self.piece);
                self.partial.extend_from_slice(&rest);
                return Ok(None);
            }
            let chunk = std::mem::take(&mut self.partial).freeze();
            return self.open(&chunk).map(Some);
        }
        let whole = self.whole_bytes(self.piece.len());
        if whole == 0 {
            // Less than a chunk left: keep it for the next piece.
            let rest = std::mem::take(&mut self.piece);
            self.partial.extend_from_slice(&rest);
            return Ok(None);
        }
        let batch = self.piece.split_to(whole);
        self.open(&batch).map(Some)
    }

    /// Checks that the ciphertext ended where planned and was all opened.
    ///
    /// # Errors
    /// [`ended_early`] if it did not: the response was cut (the object's
    /// length and ETag are what the plan was made from, so a retry reads
    /// it whole).
    pub(crate) fn finish(&self) -> Result<()> {
        if self.remaining != 0 || !self.partial.is_empty() || !self.piece.is_empty() {
            return Err(ended_early());
        }
        Ok(())
    }

    /// How many of `available` bytes (starting at the next chunk) form
    /// whole chunks, up to one batch.
    fn whole_bytes(&self, available: usize) -> usize {
        let mut at = 0usize;
        let mut i = self.next_chunk;
        loop {
            let n = self.sealed_len(i);
            if n == 0 || at + n > available || (at > 0 && at + n > MAX_BATCH) {
                return at;
            }
            at += n;
            i += 1;
        }
    }

    /// Sealed length of chunk `i` of the segment (0 past its end).
    fn sealed_len(&self, i: u64) -> usize {
        self.segment.body().chunk_sealed_len(i)
    }

    /// Opens whole chunks `sealed` (starting at the next chunk) and returns
    /// the part of their plaintext that is wanted.
    fn open(&mut self, sealed: &[u8]) -> Result<Bytes> {
        let body = self.segment.body();
        let (end, plain_len) = body.chunks_spanned(self.next_chunk, sealed.len())?;
        // `reserve` takes the buffer back when the previous batch was
        // dropped; `resize` zeroes it (chunks open into initialized
        // memory).
        self.out.reserve(plain_len.max(MAX_BATCH));
        self.out.resize(plain_len, 0);
        body.open_chunks_into(self.next_chunk, sealed, &mut self.out, Threads::Auto)?;
        let plain = self.out.split_to(plain_len).freeze();
        let start = self.next_plain;
        let stop = start + plain_len as u64;
        self.next_chunk = end;
        self.next_plain = stop;
        let from = self.want.start.clamp(start, stop);
        let to = self.want.end.clamp(from, stop);
        Ok(if from == start && to == stop {
            plain
        } else {
            plain.slice((from - start) as usize..(to - start) as usize)
        })
    }
}

/// A store response that ended before the bytes it was asked for: a cut
/// connection, not damaged data (the object's length and ETag were checked
/// when the range was planned), so it is transient
/// ([`ErrorKind::Retry`](crate::ErrorKind::Retry)).
pub(crate) fn ended_early() -> Error {
    Error::Io {
        path: None,
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "the store's response ended before the range it was asked for",
        ),
    }
}
