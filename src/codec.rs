//! Byte-level helpers shared by the binary formats (local key file, zone
//! manifest, segment header): a cursor whose every short read is
//! [`Error::Malformed`], and length-prefixed writers. Formats themselves live
//! with their owners; this module knows no layout.

use crate::{Error, Result};

/// A cursor over bytes being parsed as `what` (named in every error).
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(Error::malformed(self.what, "truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `u16be`-length-prefixed UTF-8 string of 1 to `max` bytes.
    pub(crate) fn str(&mut self, field: &str, max: usize) -> Result<String> {
        let len = usize::from(self.u16()?);
        if len == 0 || len > max {
            return Err(Error::malformed(
                self.what,
                format!("{field} length {len} out of range"),
            ));
        }
        let s = std::str::from_utf8(self.take(len)?)
            .map_err(|_| Error::malformed(self.what, format!("{field} is not UTF-8")))?;
        Ok(s.to_owned())
    }

    /// A `u16be`-length-prefixed byte string of at most `max` bytes.
    pub(crate) fn bytes16(&mut self, field: &str, max: usize) -> Result<&'a [u8]> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(Error::malformed(
                self.what,
                format!("{field} length {len} out of range"),
            ));
        }
        self.take(len)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(Error::malformed(self.what, "trailing bytes"))
        }
    }
}

/// Appends a `u16be`-length-prefixed byte string. Callers bound lengths
/// below 65536 before encoding.
pub(crate) fn put_bytes16(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_and_leftovers_are_malformed() {
        let mut r = ByteReader::new(&[0, 3, b'a', b'b'], "thing");
        let err = r.str("name", 10).unwrap_err();
        assert!(
            err.to_string().contains("malformed thing: truncated"),
            "{err}"
        );
        let r = ByteReader::new(&[1], "thing");
        assert!(r.finish().is_err());
        let mut r = ByteReader::new(&[0, 0], "thing");
        assert!(r
            .str("name", 10)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        let mut out = Vec::new();
        put_bytes16(&mut out, b"xyz");
        let mut r = ByteReader::new(&out, "thing");
        assert_eq!(r.bytes16("b", 3).unwrap(), b"xyz");
        r.finish().unwrap();
    }
}
