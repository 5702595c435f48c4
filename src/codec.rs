//! Byte-level helpers shared by the binary formats (local key file, zone
//! manifest, segment header): a cursor whose every short read is
//! [`Error::Malformed`], and length-prefixed writers. Formats themselves live
//! with their owners; this module knows no layout.

use crate::cipher::{sha256, SHA256_LEN};
use crate::{Error, Result};

/// Starts a checksummed file: `magic (8) ‖ u16be version`. The layout's
/// fields follow; [`seal_checksummed`] ends it.
pub(crate) fn start_checksummed(magic: &[u8; 8], version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_be_bytes());
    out
}

/// Ends a checksummed file: appends the SHA-256 of every preceding byte.
pub(crate) fn seal_checksummed(out: &mut Vec<u8>) {
    let sum = sha256(&[out]);
    out.extend_from_slice(&sum);
}

/// The version a checksummed file declares, after checking its magic: for
/// the format enums to map onto their variants before the frame is opened.
pub(crate) fn declared_version(bytes: &[u8], magic: &[u8; 8], what: &'static str) -> Result<u16> {
    if bytes.len() < magic.len() || &bytes[..magic.len()] != magic {
        return Err(Error::malformed(
            what,
            format!("not a cmek {what} (bad magic)"),
        ));
    }
    match bytes.get(8..10) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(Error::malformed(what, "truncated")),
    }
}

/// The error for a version no format enum knows.
pub(crate) fn unsupported_version(what: &'static str, version: u16) -> Error {
    Error::malformed(what, format!("unsupported version {version}"))
}

/// Checks the frame of a checksummed file — magic, version, SHA-256 of
/// everything before it — and returns a reader over the fields between.
/// A file is `what` in errors ("not a cmek {what}").
pub(crate) fn open_checksummed<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    version: u16,
    what: &'static str,
) -> Result<ByteReader<'a>> {
    if bytes.len() < magic.len() || &bytes[..magic.len()] != magic {
        return Err(Error::malformed(
            what,
            format!("not a cmek {what} (bad magic)"),
        ));
    }
    if bytes.len() < magic.len() + 2 + SHA256_LEN {
        return Err(Error::malformed(what, "truncated"));
    }
    let found = u16::from_be_bytes([bytes[8], bytes[9]]);
    if found != version {
        return Err(Error::malformed(
            what,
            format!("unsupported version {found}"),
        ));
    }
    let (body, sum) = bytes.split_at(bytes.len() - SHA256_LEN);
    if sha256(&[body]).as_slice() != sum {
        return Err(Error::malformed(
            what,
            "checksum mismatch: the file is corrupted or truncated",
        ));
    }
    Ok(ByteReader::new(&body[magic.len() + 2..], what))
}

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
