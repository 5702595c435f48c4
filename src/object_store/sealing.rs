//! Sealing a segment whose plaintext arrives in pieces of any size into
//! upload parts cut on chunk boundaries: [`PartSealer`]. Independent of the
//! `object_store` version; the adapters hand its parts to a multipart
//! upload, or its one part to a single `put`.

use bytes::{Bytes, BytesMut};

use crate::stream::{ChunkSealer, Params};
use crate::zone::Zone;
use crate::Result;

/// Seals plaintext pieces, in order, into parts of at least `part_size`
/// bytes (but the last), each ending on a chunk boundary; the first part
/// starts with the segment and stream headers.
///
/// A chunk can be sealed only once it is known whether it is the stream's
/// last, so one chunk of plaintext is held back until more arrives. Whole
/// chunks are sealed straight from the caller's piece into the part; only
/// a chunk split across pieces is copied first. Memory: the part being
/// filled and at most one chunk of plaintext.
pub(crate) struct PartSealer {
    sealer: ChunkSealer,
    /// Plaintext of the next chunk, not yet sealed (at most one chunk).
    pending: Vec<u8>,
    /// The part being filled. A part handed out is split off it; once the
    /// inner store dropped it (uploaded it), the next part reuses its
    /// memory.
    part: BytesMut,
    part_size: usize,
    /// Parts handed out so far.
    parts: u64,
}

impl PartSealer {
    /// A new segment of `zone` with id `segment_id`, in chunks of `params`.
    ///
    /// # Errors
    /// As [`Zone::chunk_sealer`].
    pub(crate) fn new(
        zone: &Zone,
        segment_id: &str,
        params: Params,
        part_size: usize,
    ) -> Result<Self> {
        let (header, sealer) = zone.chunk_sealer_with(segment_id, params)?;
        let chunk = sealer.params().chunk_size();
        let mut part = BytesMut::with_capacity(part_size.max(chunk) + chunk);
        part.extend_from_slice(&header);
        part.extend_from_slice(sealer.stream_header());
        Ok(Self {
            pending: Vec::with_capacity(chunk),
            sealer,
            part,
            part_size: part_size.max(1),
            parts: 0,
        })
    }

    /// Parts handed out by [`push`](Self::push) so far.
    pub(crate) fn parts_done(&self) -> u64 {
        self.parts
    }

    /// Takes in the next plaintext `piece`; hands each part it completes
    /// (usually none or one) to `part` as soon as it is complete, so that
    /// the inner store can send it, and drop it, while the rest is sealed.
    ///
    /// # Errors
    /// [`Error::ZoneUnavailable`](crate::Error::ZoneUnavailable) once the
    /// zone is unavailable; [`Error::LimitExceeded`](crate::Error::LimitExceeded)
    /// past the stream's chunk limit.
    pub(crate) fn push(&mut self, mut piece: &[u8], parts: &mut dyn FnMut(Bytes)) -> Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        let chunk = self.sealer.plaintext_len();
        if !self.pending.is_empty() {
            if self.pending.len() == chunk {
                // More data follows: the held chunk is not the last.
                let held = std::mem::take(&mut self.pending);
                self.seal(&held, false, parts)?;
                self.pending = held;
                self.pending.clear();
            } else {
                let take = (self.sealer.plaintext_len() - self.pending.len()).min(piece.len());
                self.pending.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if piece.is_empty() {
                    return Ok(());
                }
                let held = std::mem::take(&mut self.pending);
                self.seal(&held, false, parts)?;
                self.pending = held;
                self.pending.clear();
            }
        }
        // Whole chunks straight from the piece, keeping back the last one
        // it holds (it may be the stream's last).
        loop {
            let n = self.sealer.plaintext_len();
            if piece.len() <= n {
                break;
            }
            self.seal(&piece[..n], false, parts)?;
            piece = &piece[n..];
        }
        self.pending.extend_from_slice(piece);
        Ok(())
    }

    /// Seals the last chunk (what is held back, possibly empty for an
    /// empty segment) and returns the last part.
    ///
    /// # Errors
    /// As [`push`](Self::push).
    pub(crate) fn finish(mut self) -> Result<Bytes> {
        let held = std::mem::take(&mut self.pending);
        self.seal(&held, true, &mut |_| {
            unreachable!("the last chunk never completes a part")
        })?;
        Ok(self.part.split().freeze())
    }

    /// Seals one chunk into the part; hands the part out once it is full
    /// (never after the last chunk: that part is [`finish`](Self::finish)'s).
    fn seal(&mut self, plaintext: &[u8], last: bool, parts: &mut dyn FnMut(Bytes)) -> Result<()> {
        // Reserved here, not when a part is handed out: by now the inner
        // store may have sent and dropped it, and the buffer is taken back
        // instead of a fresh one being faulted in.
        let sealed_len = plaintext.len() + ChunkSealer::OVERHEAD;
        if self.part.capacity() - self.part.len() < sealed_len {
            self.part
                .reserve(self.part_size.max(sealed_len) + sealed_len);
        }
        let at = self.part.len();
        self.part.resize(at + sealed_len, 0);
        let written = match self.sealer.seal(plaintext, last, &mut self.part[at..]) {
            Ok(n) => n,
            Err(e) => {
                self.part.truncate(at);
                return Err(e);
            }
        };
        self.part.truncate(at + written);
        if !last && self.part.len() >= self.part_size {
            self.parts += 1;
            parts(self.part.split().freeze());
        }
        Ok(())
    }
}
