//! [`SeekableReader`]: random access to a stream over `Read + Seek`.
//!
//! This module owns positioned reads: locating the chunk that holds a
//! plaintext offset, fetching and opening just that chunk, and caching the
//! one chunk last opened. It must not read more than one chunk per
//! chunk touched, and must not trust the stream's length until the last
//! chunk authenticated.

use std::io::{self, Read, Seek, SeekFrom};

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, Params, HEADER_LEN};
use super::{pass, to_io, Gate};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// Decrypting random-access reader: `Read + Seek` over plaintext offsets,
/// and positional [`read_at`](Self::read_at).
///
/// Opening reads the header and the stream's ciphertext length. Each read
/// then fetches and authenticates only the chunks it touches, keeping the
/// last one decrypted in a cache (memory: one chunk). The plaintext length
/// implied by the ciphertext length is trusted only after the last chunk
/// authenticated: [`len`](Self::len), `SeekFrom::End` and reads at or past
/// the end do that first, so a stream truncated at a chunk boundary is an
/// error, never a short file.
///
/// The stream starts at `inner`'s position when the reader is created and
/// runs to the end of `inner`.
pub struct SeekableReader<R> {
    inner: R,
    params: Params,
    cipher: ChunkCipher,
    /// Offset of the stream's first byte in `inner`.
    base: u64,
    ciphertext_len: u64,
    chunks: u64,
    /// Plaintext length implied by `ciphertext_len`; authenticated once
    /// `end_verified`.
    claimed_len: u64,
    end_verified: bool,
    pos: u64,
    buf: Vec<u8>,
    /// Chunk whose plaintext is `buf[..cached_len]`.
    cached: Option<u64>,
    cached_len: usize,
    decrypted: u64,
    gate: Option<Gate>,
}

impl<R: Read + Seek> SeekableReader<R> {
    /// Opens the stream that starts at `inner`'s current position.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the header or the length is invalid,
    /// [`Error::Io`] if `inner` fails.
    pub fn new(mut inner: R, key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        let base = inner.stream_position()?;
        let end = inner.seek(SeekFrom::End(0))?;
        let ciphertext_len = end.saturating_sub(base);
        let chunks = params.chunk_count_for_ciphertext(ciphertext_len)?;
        let claimed_len = params.plaintext_len(ciphertext_len)?;
        inner.seek(SeekFrom::Start(base))?;
        let mut h = [0u8; HEADER_LEN];
        inner.read_exact(&mut h)?;
        let header = Header::parse(&h)?;
        Ok(Self {
            cipher: ChunkCipher::new(key, aad, &header)?,
            inner,
            params,
            base,
            ciphertext_len,
            chunks,
            claimed_len,
            end_verified: false,
            pos: 0,
            // No sealed chunk is longer than the stream itself: a short
            // stream under a large (possibly unauthenticated) chunk size
            // gets a buffer of its own length.
            buf: vec![
                0u8;
                params
                    .chunk_size()
                    .min(usize::try_from(ciphertext_len).unwrap_or(usize::MAX))
            ],
            cached: None,
            cached_len: 0,
            decrypted: 0,
            gate: None,
        })
    }

    /// Runs `gate` before opening each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The authenticated plaintext length (opens the last chunk first if
    /// it has not been opened yet).
    ///
    /// # Errors
    /// [`Error::Integrity`] if the last chunk does not authenticate as the
    /// last, e.g. after truncation.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&mut self) -> Result<u64> {
        self.verify_end()?;
        Ok(self.claimed_len)
    }

    /// Chunks opened (decrypted and authenticated) so far; a cache hit
    /// does not count.
    pub fn chunks_decrypted(&self) -> u64 {
        self.decrypted
    }

    /// The inner reader, e.g. to inspect it.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads plaintext starting at `offset` into `out` without moving the
    /// cursor. Returns fewer than `out.len()` bytes only at the end of the
    /// stream (whose position is then authenticated).
    ///
    /// # Errors
    /// [`Error::Integrity`] if a touched chunk does not authenticate (no
    /// plaintext from it is copied), [`Error::Io`] if `inner` fails.
    pub fn read_at(&mut self, mut offset: u64, out: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < out.len() {
            if offset >= self.claimed_len {
                self.verify_end()?;
                break;
            }
            let (index, within) = self.params.chunk_of(offset);
            self.load(index)?;
            let avail = &self.buf[within..self.cached_len];
            let n = avail.len().min(out.len() - done);
            out[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
            offset += n as u64;
        }
        Ok(done)
    }

    fn verify_end(&mut self) -> Result<()> {
        if !self.end_verified {
            self.load(self.chunks - 1)?;
        }
        Ok(())
    }

    /// Fetches and opens chunk `index` into the cache.
    fn load(&mut self, index: u64) -> Result<()> {
        if self.cached == Some(index) {
            return Ok(());
        }
        pass(&self.gate)?;
        self.cached = None;
        let start = self.base + self.params.ciphertext_start(index);
        let sealed = self
            .params
            .sealed_len(index, self.chunks, self.ciphertext_len);
        let last = index + 1 == self.chunks;
        self.inner.seek(SeekFrom::Start(start))?;
        let buf = &mut self.buf[..sealed];
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::malformed("stream", "shorter than its length when opened")
            } else {
                e.into()
            }
        })?;
        self.cipher.open(index_u32(index)?, last, buf)?;
        self.decrypted += 1;
        self.cached = Some(index);
        self.cached_len = sealed - TAG_LEN;
        if last {
            self.end_verified = true;
        }
        Ok(())
    }
}

impl<R: Read + Seek> Read for SeekableReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(self.pos, out).map_err(to_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for SeekableReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                self.verify_end().map_err(to_io)?;
                self.claimed_len.checked_add_signed(d)
            }
        };
        match target {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing position",
            )),
        }
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

impl<R> std::fmt::Debug for SeekableReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeekableReader")
            .field("params", &self.params)
            .field("ciphertext_len", &self.ciphertext_len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}
