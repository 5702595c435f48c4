//! Opening a segment's chunks as their ciphertext arrives in pieces of any
//! size (an HTTP body, a file read): [`ChunkBatches`]. Independent of the
//! `object_store` version; the adapters drive it from their byte streams.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::MAX_BATCH;
use crate::stream::{CiphertextRange, Threads};
use crate::zone::OpenedSegment;
use crate::{Error, Result};

/// Turns the ciphertext of a planned range (`plan.chunks`, in order, in
/// pieces) into exactly `plan.plaintext`, whole chunks at a time. A chunk
/// is opened — and authenticated — before any of its bytes is returned;
/// memory holds at most one partial chunk besides a batch.
pub(crate) struct ChunkBatches {
    segment: Arc<OpenedSegment>,
    /// The next chunk to open.
    next_chunk: u64,
    /// Plaintext offset of the next chunk's first byte.
    next_plain: u64,
    /// The plaintext wanted.
    want: std::ops::Range<u64>,
    /// Ciphertext bytes still expected.
    remaining: u64,
    /// Ciphertext received but not yet opened (less than one batch).
    pending: BytesMut,
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
            pending: BytesMut::new(),
            segment,
        }
    }

    /// True once every expected byte arrived and was opened.
    pub(crate) fn is_done(&self) -> bool {
        self.remaining == 0 && self.pending.is_empty()
    }

    /// Takes in the next `piece` of ciphertext and returns the plaintext
    /// of every chunk it completes (possibly none), in batches.
    ///
    /// # Errors
    /// [`Error::Integrity`] if a chunk does not authenticate;
    /// [`Error::Malformed`] if more bytes arrive than planned;
    /// [`Error::ZoneUnavailable`] once the zone is unavailable.
    pub(crate) fn push(&mut self, mut piece: Bytes) -> Result<Vec<Bytes>> {
        if piece.len() as u64 > self.remaining {
            return Err(Error::malformed(
                "object",
                "the store returned more bytes than the range asked for",
            ));
        }
        self.remaining -= piece.len() as u64;
        let mut out = Vec::new();
        if !self.pending.is_empty() {
            // Complete the partial chunk first.
            let chunk_len = self.sealed_len(self.next_chunk);
            let need = (chunk_len - self.pending.len()).min(piece.len());
            self.pending.extend_from_slice(&piece[..need]);
            piece = piece.slice(need..);
            if self.pending.len() < chunk_len {
                return Ok(out);
            }
            let chunk = std::mem::take(&mut self.pending).freeze();
            self.open_batches(&chunk, &mut out)?;
        }
        // Then whole chunks straight from the piece; keep the tail.
        let whole = self.whole_bytes(piece.len());
        self.open_batches(&piece[..whole], &mut out)?;
        self.pending.extend_from_slice(&piece[whole..]);
        Ok(out)
    }

    /// Checks that the ciphertext ended where planned.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it ended early.
    pub(crate) fn finish(&self) -> Result<()> {
        if !self.is_done() {
            return Err(Error::malformed(
                "object",
                "the store's response ended before the range it was asked for",
            ));
        }
        Ok(())
    }

    /// How many of `available` bytes (starting at the next chunk) form
    /// whole chunks.
    fn whole_bytes(&self, available: usize) -> usize {
        let mut at = 0usize;
        let mut i = self.next_chunk;
        loop {
            let n = self.sealed_len(i);
            if n == 0 || at + n > available {
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

    /// Opens whole chunks `sealed` (starting at the next chunk) in batches
    /// of at most [`MAX_BATCH`] bytes, appending the wanted plaintext.
    fn open_batches(&mut self, mut sealed: &[u8], out: &mut Vec<Bytes>) -> Result<()> {
        while !sealed.is_empty() {
            let mut len = 0usize;
            let mut i = self.next_chunk;
            while len < sealed.len() {
                let n = self.sealed_len(i);
                if len > 0 && len + n > MAX_BATCH {
                    break;
                }
                len += n;
                i += 1;
            }
            let (batch, rest) = sealed.split_at(len);
            let body = self.segment.body();
            let (end, plain_len) = body.chunks_spanned(self.next_chunk, batch.len())?;
            let mut plain = vec![0u8; plain_len];
            body.open_chunks_into(self.next_chunk, batch, &mut plain, Threads::Auto)?;
            let start = self.next_plain;
            let stop = start + plain_len as u64;
            let from = self.want.start.max(start);
            let to = self.want.end.min(stop);
            if from < to {
                let mut plain = Bytes::from(plain);
                if from > start || to < stop {
                    plain = plain.slice((from - start) as usize..(to - start) as usize);
                }
                out.push(plain);
            }
            self.next_chunk = end;
            self.next_plain = stop;
            sealed = rest;
        }
        Ok(())
    }
}
