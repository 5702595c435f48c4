//! Segment layout: the arithmetic that maps plaintext offsets and lengths to
//! ciphertext offsets and lengths.
//!
//! This module owns [`Params`] (the ciphertext segment size) and every
//! length computation derived from it. It is pure arithmetic: it must not
//! encrypt, allocate buffers or do I/O.

use crate::cipher::TAG_LEN;
use crate::{Error, Result};

/// Length of the stream header: one length byte, a 32-byte salt and a 7-byte
/// nonce prefix.
pub const HEADER_LEN: usize = 1 + SALT_LEN + NONCE_PREFIX_LEN;
/// Length of the random salt fed to HKDF.
pub const SALT_LEN: usize = 32;
/// Length of the random nonce prefix shared by a stream's segments.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Smallest supported ciphertext segment size (4 KiB).
pub const MIN_SEGMENT_SIZE: usize = 4 * 1024;
/// Largest supported ciphertext segment size (16 MiB).
pub const MAX_SEGMENT_SIZE: usize = 16 * 1024 * 1024;
/// Default ciphertext segment size (64 KiB); see `docs/PERFORMANCE.md` for
/// the measurements behind it.
pub const DEFAULT_SEGMENT_SIZE: usize = 64 * 1024;
/// Most segments one stream may have: segment indices are 32-bit.
pub const MAX_SEGMENTS: u64 = 1 << 32;

/// The layout of a stream: its ciphertext segment size.
///
/// The segment size is not recorded in the stream, so a reader must use the
/// same `Params` as the writer (store it beside the stream, e.g. in a
/// segment header).
///
/// ```
/// use cmek::stream::Params;
/// let p = Params::new(4096)?;
/// assert_eq!(p.first_segment_plaintext_len(), 4096 - 40 - 16);
/// assert_eq!(p.ciphertext_len(0)?, 40 + 16);
/// # Ok::<(), cmek::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Params {
    segment_size: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

impl Params {
    /// Layout with ciphertext segments of `segment_size` bytes (header
    /// included in the first one).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `segment_size` lies in
    /// [`MIN_SEGMENT_SIZE`]`..=`[`MAX_SEGMENT_SIZE`].
    pub fn new(segment_size: usize) -> Result<Self> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&segment_size) {
            return Err(Error::InvalidArgument(format!(
                "stream segment size {segment_size} is outside \
                 {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE}"
            )));
        }
        Ok(Self { segment_size })
    }

    /// The ciphertext segment size in bytes.
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// Plaintext bytes carried by every segment but the first and the last.
    pub fn plaintext_segment_len(&self) -> usize {
        self.segment_size - TAG_LEN
    }

    /// Plaintext bytes carried by the first segment when it is not the last
    /// (it shares its ciphertext segment with the header).
    pub fn first_segment_plaintext_len(&self) -> usize {
        self.segment_size - HEADER_LEN - TAG_LEN
    }

    /// Number of segments of a stream with `plaintext_len` bytes (at least 1:
    /// an empty message is one empty segment).
    pub fn segment_count(&self, plaintext_len: u64) -> u64 {
        let first = self.first_segment_plaintext_len() as u64;
        if plaintext_len <= first {
            1
        } else {
            1 + (plaintext_len - first).div_ceil(self.plaintext_segment_len() as u64)
        }
    }

    /// Ciphertext length of a stream with `plaintext_len` bytes.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] if the stream would need more than
    /// [`MAX_SEGMENTS`] segments.
    pub fn ciphertext_len(&self, plaintext_len: u64) -> Result<u64> {
        let n = self.segment_count(plaintext_len);
        if n > MAX_SEGMENTS {
            return Err(too_many_segments());
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
    /// (shorter than a header and one tag, or ending in a segment too short
    /// to hold a tag and one byte).
    pub fn plaintext_len(&self, ciphertext_len: u64) -> Result<u64> {
        let n = self.segment_count_for_ciphertext(ciphertext_len)?;
        Ok(ciphertext_len - HEADER_LEN as u64 - n * TAG_LEN as u64)
    }

    /// Number of segments of a well-formed stream of `ciphertext_len` bytes.
    ///
    /// # Errors
    /// As [`Params::plaintext_len`].
    pub fn segment_count_for_ciphertext(&self, ciphertext_len: u64) -> Result<u64> {
        let seg = self.segment_size as u64;
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
                    format!("last segment has {rem} bytes, too short for a tag and data"),
                ));
            } else {
                2 + full
            }
        };
        if n > MAX_SEGMENTS {
            return Err(Error::malformed(
                "stream",
                format!("{n} segments exceed the limit of {MAX_SEGMENTS}"),
            ));
        }
        Ok(n)
    }

    /// The segment holding plaintext byte `offset`, and the offset within
    /// that segment's plaintext.
    pub fn segment_of(&self, offset: u64) -> (u64, usize) {
        let first = self.first_segment_plaintext_len() as u64;
        if offset < first {
            (0, offset as usize)
        } else {
            let pseg = self.plaintext_segment_len() as u64;
            let rel = offset - first;
            (1 + rel / pseg, (rel % pseg) as usize)
        }
    }

    /// Plaintext offset of the first byte of segment `index`.
    pub fn plaintext_start(&self, index: u64) -> u64 {
        if index == 0 {
            0
        } else {
            self.first_segment_plaintext_len() as u64
                + (index - 1) * self.plaintext_segment_len() as u64
        }
    }

    /// Ciphertext offset of the first sealed byte of segment `index` (for
    /// segment 0, the byte after the header).
    pub fn ciphertext_start(&self, index: u64) -> u64 {
        if index == 0 {
            HEADER_LEN as u64
        } else {
            index * self.segment_size as u64
        }
    }

    /// Sealed length (plaintext and tag) of segment `index` when it is not
    /// the last.
    pub fn full_segment_len(&self, index: u64) -> usize {
        if index == 0 {
            self.segment_size - HEADER_LEN
        } else {
            self.segment_size
        }
    }

    /// Sealed length of segment `index` in a stream of `ciphertext_len`
    /// bytes with `segments` segments.
    pub(crate) fn sealed_len(&self, index: u64, segments: u64, ciphertext_len: u64) -> usize {
        if index + 1 == segments {
            (ciphertext_len - self.ciphertext_start(index)) as usize
        } else {
            self.full_segment_len(index)
        }
    }
}

/// The error for a stream that would exceed [`MAX_SEGMENTS`].
pub(crate) fn too_many_segments() -> Error {
    Error::LimitExceeded {
        what: "segments in one stream",
        limit: MAX_SEGMENTS,
    }
}

/// Narrows a segment index to the 32 bits of the nonce.
pub(crate) fn index_u32(index: u64) -> Result<u32> {
    u32::try_from(index).map_err(|_| too_many_segments())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_size_bounds_are_enforced() {
        assert!(Params::new(MIN_SEGMENT_SIZE).is_ok());
        assert!(Params::new(MAX_SEGMENT_SIZE).is_ok());
        for bad in [0, 56, MIN_SEGMENT_SIZE - 1, MAX_SEGMENT_SIZE + 1] {
            assert!(matches!(Params::new(bad), Err(Error::InvalidArgument(_))));
        }
        assert_eq!(Params::default().segment_size(), DEFAULT_SEGMENT_SIZE);
    }

    #[test]
    fn lengths_round_trip_and_gaps_are_malformed() {
        let p = Params::new(4096).unwrap();
        let first = p.first_segment_plaintext_len() as u64;
        let pseg = p.plaintext_segment_len() as u64;
        for pt in (0..3 * 4096u64).chain([first, first + 1, first + pseg, first + pseg + 1]) {
            let ct = p.ciphertext_len(pt).unwrap();
            assert_eq!(p.plaintext_len(ct).unwrap(), pt, "pt {pt}");
            assert_eq!(
                p.segment_count_for_ciphertext(ct).unwrap(),
                p.segment_count(pt)
            );
        }
        // Lengths no writer produces: shorter than header + tag, or a last
        // segment with a tag and nothing else.
        for ct in [0, 1, 55, 4096 + 1, 4096 + 16, 2 * 4096 + 16] {
            assert!(
                matches!(p.plaintext_len(ct), Err(Error::Malformed { .. })),
                "ct {ct}"
            );
        }
    }

    #[test]
    fn segment_of_agrees_with_plaintext_start() {
        let p = Params::new(4096).unwrap();
        for off in [0u64, 1, 4039, 4040, 4041, 8119, 8120, 8121, 1 << 30] {
            let (i, within) = p.segment_of(off);
            assert_eq!(p.plaintext_start(i) + within as u64, off);
            let len = if i == 0 {
                p.first_segment_plaintext_len()
            } else {
                p.plaintext_segment_len()
            };
            assert!(within < len);
        }
        assert_eq!(p.ciphertext_start(0), 40);
        assert_eq!(p.ciphertext_start(3), 3 * 4096);
    }

    #[test]
    fn segment_limit_is_enforced() {
        let p = Params::new(MIN_SEGMENT_SIZE).unwrap();
        let pseg = p.plaintext_segment_len() as u64;
        let first = p.first_segment_plaintext_len() as u64;
        let max_pt = first + (MAX_SEGMENTS - 1) * pseg;
        assert!(p.ciphertext_len(max_pt).is_ok());
        assert!(matches!(
            p.ciphertext_len(max_pt + 1),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(index_u32(u32::MAX as u64).is_ok());
        assert!(index_u32(1 << 32).is_err());
    }
}
