//! Chunk layout: the arithmetic that maps plaintext offsets and lengths to
//! ciphertext offsets and lengths.
//!
//! This module owns [`Params`] (the ciphertext chunk size) and every
//! length computation derived from it. It is pure arithmetic: it must not
//! encrypt, allocate buffers or do I/O.

use crate::cipher::TAG_LEN;
use crate::{Error, Result};

/// Length of the stream header: one length byte, a 32-byte salt and a 7-byte
/// nonce prefix.
pub const HEADER_LEN: usize = 1 + SALT_LEN + NONCE_PREFIX_LEN;
/// Length of the random salt fed to HKDF.
pub const SALT_LEN: usize = 32;
/// Length of the random nonce prefix shared by a stream's chunks.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Smallest supported ciphertext chunk size (1 KiB). Small chunks suit
/// engines that read small blocks at any offset (an LSM tree's 4 KiB
/// blocks): a read fetches at most one chunk more than it asks for, on
/// each side. Readers of cmek 0.1 refuse chunk sizes below 4 KiB.
pub const MIN_CHUNK_SIZE: usize = 1024;
/// Largest supported ciphertext chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// Default ciphertext chunk size (64 KiB); see `docs/PERFORMANCE.md` for
/// the measurements behind it.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Most chunks one stream may have: chunk indices are 32-bit.
pub const MAX_CHUNKS: u64 = 1 << 32;

/// The layout of a stream: its ciphertext chunk size.
///
/// The chunk size is not recorded in the stream, so a reader must use the
/// same `Params` as the writer (store it beside the stream, e.g. in a
/// segment header).
///
/// ```
/// use cmek::stream::Params;
/// let p = Params::new(4096)?;
/// assert_eq!(p.first_chunk_plaintext_len(), 4096 - 40 - 16);
/// assert_eq!(p.ciphertext_len(0)?, 40 + 16);
/// # Ok::<(), cmek::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    chunk_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

impl Params {
    /// Layout with ciphertext chunks of `chunk_size` bytes (header
    /// included in the first one).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `chunk_size` lies in
    /// [`MIN_CHUNK_SIZE`]`..=`[`MAX_CHUNK_SIZE`].
    pub fn new(chunk_size: usize) -> Result<Self> {
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(Error::InvalidArgument(format!(
                "stream chunk size {chunk_size} is outside \
                 {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
            )));
        }
        Ok(Self { chunk_size })
    }

    /// The ciphertext chunk size in bytes.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Plaintext bytes carried by every chunk but the first and the last.
    pub fn plaintext_chunk_len(&self) -> usize {
        self.chunk_size - TAG_LEN
    }

    /// Plaintext bytes carried by the first chunk when it is not the last
    /// (it shares its ciphertext chunk with the header).
    pub fn first_chunk_plaintext_len(&self) -> usize {
        self.chunk_size - HEADER_LEN - TAG_LEN
    }

    /// Number of chunks of a stream with `plaintext_len` bytes (at least 1:
    /// an empty message is one empty chunk).
    pub fn chunk_count(&self, plaintext_len: u64) -> u64 {
        let first = self.first_chunk_plaintext_len() as u64;
        if plaintext_len <= first {
            1
        } else {
            1 + (plaintext_len - first).div_ceil(self.plaintext_chunk_len() as u64)
        }
    }

    /// Ciphertext length of a stream with `plaintext_len` bytes.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] if the stream would need more than
    /// [`MAX_CHUNKS`] chunks.
    pub fn ciphertext_len(&self, plaintext_len: u64) -> Result<u64> {
        let n = self.chunk_count(plaintext_len);
        if n > MAX_CHUNKS {
            return Err(too_many_chunks());
        }
        Ok(HEADER_LEN as u64 + plaintext_len + n * TAG_LEN as u64)
    }

    /// Plaintext length of a well-formed stream of `ciphertext_len` bytes.
    ///
    /// This only checks that the length is possible; it authenticates
    /// nothing.
    ///
    /// # Errors
    /// [`Error::Malformed`] if no stream under these params has that length
    /// (shorter than a header and one tag, or ending in a chunk too short
    /// to hold a tag and one byte).
    pub fn plaintext_len(&self, ciphertext_len: u64) -> Result<u64> {
        let n = self.chunk_count_for_ciphertext(ciphertext_len)?;
        Ok(ciphertext_len - HEADER_LEN as u64 - n * TAG_LEN as u64)
    }

    /// Number of chunks of a well-formed stream of `ciphertext_len` bytes.
    ///
    /// # Errors
    /// As [`Params::plaintext_len`].
    pub fn chunk_count_for_ciphertext(&self, ciphertext_len: u64) -> Result<u64> {
        let seg = self.chunk_size as u64;
        let min = (HEADER_LEN + TAG_LEN) as u64;
        if ciphertext_len < min {
            return Err(Error::malformed(
                "stream",
                format!("{ciphertext_len} bytes is shorter than a header and one tag ({min})"),
            ));
        }
        let n = if ciphertext_len <= seg {
            1
        } else {
            let rest = ciphertext_len - seg;
            let (full, rem) = (rest / seg, rest % seg);
            if rem == 0 {
                1 + full
            } else if rem <= TAG_LEN as u64 {
                return Err(Error::malformed(
                    "stream",
                    format!("last chunk has {rem} bytes, too short for a tag and data"),
                ));
            } else {
                2 + full
            }
        };
        if n > MAX_CHUNKS {
            return Err(Error::malformed(
                "stream",
                format!("{n} chunks exceed the limit of {MAX_CHUNKS}"),
            ));
        }
        Ok(n)
    }

    /// The chunk holding plaintext byte `offset`, and the offset within
    /// that chunk's plaintext.
    pub fn chunk_of(&self, offset: u64) -> (u64, usize) {
        let first = self.first_chunk_plaintext_len() as u64;
        if offset < first {
            (0, offset as usize)
        } else {
            let pseg = self.plaintext_chunk_len() as u64;
            let rel = offset - first;
            (1 + rel / pseg, (rel % pseg) as usize)
        }
    }

    /// Plaintext offset of the first byte of chunk `index`.
    pub fn plaintext_start(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            self.first_chunk_plaintext_len() as u64
                + (index - 1) * self.plaintext_chunk_len() as u64
        }
    }

    /// Ciphertext offset of the first sealed byte of chunk `index` (for
    /// chunk 0, the byte after the header).
    pub fn ciphertext_start(&self, index: u64) -> u64 {
        if index == 0 {
            HEADER_LEN as u64
        } else {
            index * self.chunk_size as u64
        }
    }

    /// Sealed length (plaintext and tag) of chunk `index` when it is not
    /// the last.
    pub fn full_chunk_len(&self, index: u64) -> usize {
        if index == 0 {
            self.chunk_size - HEADER_LEN
        } else {
            self.chunk_size
        }
    }

    /// Sealed length of chunk `index` in a stream of `ciphertext_len`
    /// bytes with `chunks` chunks.
    pub(crate) fn sealed_len(&self, index: u64, chunks: u64, ciphertext_len: u64) -> usize {
        if index + 1 == chunks {
            (ciphertext_len - self.ciphertext_start(index)) as usize
        } else {
            self.full_chunk_len(index)
        }
    }
}

/// The error for a stream that would exceed [`MAX_CHUNKS`].
pub(crate) fn too_many_chunks() -> Error {
    Error::LimitExceeded {
        what: "chunks in one stream",
        limit: MAX_CHUNKS,
    }
}

/// Narrows a chunk index to the 32 bits of the nonce.
pub(crate) fn index_u32(index: u64) -> Result<u32> {
    u32::try_from(index).map_err(|_| too_many_chunks())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_bounds_are_enforced() {
        assert!(Params::new(MIN_CHUNK_SIZE).is_ok());
        assert!(Params::new(MAX_CHUNK_SIZE).is_ok());
        for bad in [0, 56, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1] {
            assert!(matches!(Params::new(bad), Err(Error::InvalidArgument(_))));
        }
        assert_eq!(Params::default().chunk_size(), DEFAULT_CHUNK_SIZE);
    }

    #[test]
    fn lengths_round_trip_and_gaps_are_malformed() {
        let p = Params::new(4096).unwrap();
        let first = p.first_chunk_plaintext_len() as u64;
        let pseg = p.plaintext_chunk_len() as u64;
        for pt in (0..3 * 4096u64).chain([first, first + 1, first + pseg, first + pseg + 1]) {
            let ct = p.ciphertext_len(pt).unwrap();
            assert_eq!(p.plaintext_len(ct).unwrap(), pt, "pt {pt}");
            assert_eq!(p.chunk_count_for_ciphertext(ct).unwrap(), p.chunk_count(pt));
        }
        // Lengths no writer produces: shorter than header + tag, or a last
        // chunk with a tag and nothing else.
        for ct in [0, 1, 55, 4096 + 1, 4096 + 16, 2 * 4096 + 16] {
            assert!(
                matches!(p.plaintext_len(ct), Err(Error::Malformed { .. })),
                "ct {ct}"
            );
        }
    }

    #[test]
    fn chunk_of_agrees_with_plaintext_start() {
        let p = Params::new(4096).unwrap();
        for off in [0u64, 1, 4039, 4040, 4041, 8119, 8120, 8121, 1 << 30] {
            let (i, within) = p.chunk_of(off);
            assert_eq!(p.plaintext_start(i) + within as u64, off);
            let len = if i == 0 {
                p.first_chunk_plaintext_len()
            } else {
                p.plaintext_chunk_len()
            };
            assert!(within < len);
        }
        assert_eq!(p.ciphertext_start(0), 40);
        assert_eq!(p.ciphertext_start(3), 3 * 4096);
    }

    #[test]
    fn chunk_limit_is_enforced() {
        let p = Params::new(MIN_CHUNK_SIZE).unwrap();
        let pseg = p.plaintext_chunk_len() as u64;
        let first = p.first_chunk_plaintext_len() as u64;
        let max_pt = first + (MAX_CHUNKS - 1) * pseg;
        assert!(p.ciphertext_len(max_pt).is_ok());
        assert!(matches!(
            p.ciphertext_len(max_pt + 1),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(index_u32(u32::MAX as u64).is_ok());
        assert!(index_u32(1 << 32).is_err());
    }
}
