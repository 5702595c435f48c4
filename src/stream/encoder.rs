//! The encrypting state machine shared by the blocking and async writers.
//!
//! It buffers one chunk of plaintext, seals it once it knows whether the
//! chunk is the last (a full chunk is sealed only when more data
//! arrives, or as the last one on finish), and hands out the sealed bytes.
//! A caller holding more than a whole chunk of plaintext can instead have
//! the chunk sealed straight from its bytes into the buffer
//! ([`Encoder::seal_full_from`]), which saves the copy.
//!
//! A chunk sealed as not the last must be followed by at least one more
//! plaintext byte, or the stream would end in an empty chunk that no
//! reader accepts. After such a seal the encoder *owes a byte*
//! ([`Encoder::owes_byte`]) until [`Encoder::accept`] takes one: into the
//! buffer once the sealed bytes are written, or, while they are still
//! pending (an async sink that is not ready), into a one-byte carry that
//! starts the next chunk. An adapter therefore always offers the rest of
//! the caller's data to `accept` after sealing, before it returns, and
//! the stream can always be finished.
//!
//! It holds exactly one ciphertext chunk of memory. It must not do I/O:
//! the adapters in [`super::writer`] and `super::tokio` move the bytes.

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, too_many_chunks, Params, HEADER_LEN, MAX_CHUNKS};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::Result;

/// Sans-I/O stream encryptor.
pub(crate) struct Encoder {
    cipher: ChunkCipher,
    /// One ciphertext chunk: for chunk 0 the header, then plaintext,
    /// then room for the tag.
    buf: Vec<u8>,
    /// Where the current chunk's plaintext starts in `buf`.
    start: usize,
    /// Where it ends.
    end: usize,
    /// Sealed bytes `buf[out..out_end]` not yet handed to the sink.
    out: usize,
    out_end: usize,
    index: u64,
    finished: bool,
    /// Plaintext bytes accepted so far.
    accepted: u64,
    /// The last seal was of a chunk that is not the last, and no byte of
    /// the next chunk has been accepted since: the stream cannot end here.
    owes_byte: bool,
    /// A byte accepted while sealed bytes were pending (only when
    /// [`owes_byte`](Self::owes_byte) was set): the first byte of the next
    /// chunk, moved into the buffer once the pending bytes are written.
    carry: Option<u8>,
}

impl Encoder {
    pub(crate) fn new(key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        let header = Header::generate()?;
        Self::with_header(key, aad, params, header)
    }

    /// An encoder with a header the caller drew (zones draw it with the
    /// segment's DEK; known-answer tests reproduce another
    /// implementation's bytes).
    pub(crate) fn with_header(
        key: &SecretKey,
        aad: &[u8],
        params: Params,
        header: Header,
    ) -> Result<Self> {
        let cipher = ChunkCipher::new(key, aad, &header)?;
        let mut buf = vec![0u8; params.chunk_size()];
        buf[..HEADER_LEN].copy_from_slice(header.as_bytes());
        Ok(Self {
            cipher,
            buf,
            start: HEADER_LEN,
            end: HEADER_LEN,
            out: 0,
            out_end: 0,
            index: 0,
            finished: false,
            accepted: 0,
            owes_byte: false,
            carry: None,
        })
    }

    fn capacity_end(&self) -> usize {
        self.buf.len() - TAG_LEN
    }

    /// True when the current chunk is full and nothing is pending: the
    /// caller must [`seal`](Self::seal) it (as not last) before more data fits.
    pub(crate) fn is_full(&self) -> bool {
        self.out == self.out_end && self.end == self.capacity_end()
    }

    /// True when nothing is buffered or pending, so the next chunk may be
    /// sealed straight from the caller's bytes.
    pub(crate) fn is_empty(&self) -> bool {
        !self.finished && self.out == self.out_end && self.end == self.start
    }

    /// Plaintext bytes in the current chunk when full.
    pub(crate) fn chunk_capacity(&self) -> usize {
        self.capacity_end() - self.start
    }

    /// True when the last chunk sealed is not the last of the stream and
    /// no byte has been accepted since: [`accept`](Self::accept) must take
    /// one before the stream can finish (it can, even while sealed bytes
    /// are pending).
    pub(crate) fn owes_byte(&self) -> bool {
        self.owes_byte
    }

    /// Seals `data`, exactly [`chunk_capacity`](Self::chunk_capacity)
    /// bytes, as a full chunk that is not the last, straight into the
    /// buffer, and makes it pending. Only when [`is_empty`](Self::is_empty),
    /// and only when the caller knows more data follows: the encoder then
    /// [owes a byte](Self::owes_byte), which the caller must offer to
    /// [`accept`](Self::accept) before it returns.
    pub(crate) fn seal_full_from(&mut self, data: &[u8]) -> Result<()> {
        debug_assert!(self.is_empty() && data.len() == self.chunk_capacity());
        if self.index + 1 >= MAX_CHUNKS {
            return Err(too_many_chunks());
        }
        let index = index_u32(self.index)?;
        let start = self.start;
        self.cipher
            .seal_from(index, false, data, &mut self.buf[start..])?;
        self.out = 0;
        self.out_end = self.buf.len();
        self.index += 1;
        self.accepted += data.len() as u64;
        self.owes_byte = true;
        Ok(())
    }

    /// Copies as much of `data` as fits into the current chunk. While
    /// sealed bytes are pending it accepts nothing, except the one byte
    /// the encoder [owes](Self::owes_byte), which it carries into the next
    /// chunk; after finishing, nothing.
    pub(crate) fn accept(&mut self, data: &[u8]) -> usize {
        if self.finished || data.is_empty() {
            return 0;
        }
        if self.out != self.out_end {
            if !self.owes_byte {
                return 0;
            }
            debug_assert!(self.carry.is_none());
            self.carry = Some(data[0]);
            self.owes_byte = false;
            self.accepted += 1;
            return 1;
        }
        let n = data.len().min(self.capacity_end() - self.end);
        self.buf[self.end..self.end + n].copy_from_slice(&data[..n]);
        self.end += n;
        self.accepted += n as u64;
        if n > 0 {
            self.owes_byte = false;
        }
        n
    }

    /// Seals the buffered chunk (`last` on finish) and makes its bytes
    /// pending. Must only be called with nothing pending. Sealed as not
    /// the last, the encoder then [owes a byte](Self::owes_byte).
    ///
    /// # Errors
    /// [`Error::Misuse`](crate::Error::Misuse) for the last chunk while a
    /// byte is owed: the stream would end in an empty chunk, which no
    /// reader accepts (the adapters never get here);
    /// [`Error::LimitExceeded`](crate::Error::LimitExceeded) past 2^32
    /// chunks.
    pub(crate) fn seal(&mut self, last: bool) -> Result<()> {
        debug_assert!(self.out == self.out_end && !self.finished);
        if last && self.owes_byte {
            return Err(crate::Error::misuse(
                "stream finished right after a chunk sealed as not the last",
            ));
        }
        if !last && self.index + 1 >= MAX_CHUNKS {
            // The next chunk would need index 2^32.
            return Err(too_many_chunks());
        }
        let index = index_u32(self.index)?;
        let sealed_end = self.end + TAG_LEN;
        self.cipher
            .seal(index, last, &mut self.buf[self.start..sealed_end])?;
        self.out = 0;
        self.out_end = sealed_end;
        self.index += 1;
        self.finished = last;
        self.owes_byte = !last;
        Ok(())
    }

    /// Sealed bytes waiting for the sink.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.out..self.out_end]
    }

    /// Marks `n` pending bytes as written; once all are, the buffer is free
    /// for the next chunk.
    pub(crate) fn consume(&mut self, n: usize) {
        self.out += n;
        debug_assert!(self.out <= self.out_end);
        if self.out == self.out_end {
            self.out = 0;
            self.out_end = 0;
            self.start = 0;
            self.end = 0;
            if let Some(byte) = self.carry.take() {
                self.buf[0] = byte;
                self.end = 1;
            }
        }
    }

    /// True once the last chunk has been sealed.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// True if anything was accepted or sealed (for the drop warning).
    pub(crate) fn has_started(&self) -> bool {
        self.accepted > 0 || self.index > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_is_owed_after_a_chunk_sealed_as_not_the_last() {
        let key = SecretKey::from_slice(&[1; 32]).unwrap();
        let mut enc = Encoder::new(&key, b"", Params::new(4096).unwrap()).unwrap();
        let cap = enc.chunk_capacity();
        assert_eq!(enc.accept(&vec![7u8; cap]), cap);
        assert!(enc.is_full());
        enc.seal(false).unwrap();
        assert!(enc.owes_byte());
        // Pending, so only the owed byte is taken, and only once.
        assert_eq!(enc.accept(b"xyz"), 1);
        assert!(!enc.owes_byte());
        assert_eq!(enc.accept(b"yz"), 0);
        let n = enc.pending().len();
        enc.consume(n);
        // The carried byte starts the next chunk.
        assert!(!enc.is_empty());
        enc.seal(true).unwrap();
        assert!(enc.is_finished());

        // Finishing while a byte is owed would end in an empty chunk.
        let mut enc = Encoder::new(&key, b"", Params::new(4096).unwrap()).unwrap();
        enc.seal_full_from(&vec![1u8; cap]).unwrap();
        let n = enc.pending().len();
        enc.consume(n);
        assert!(enc.is_empty() && enc.owes_byte());
        assert!(matches!(enc.seal(true), Err(crate::Error::Misuse { .. })));
    }
}
