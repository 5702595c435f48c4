//! The stream header: `0x28 ‖ salt (32 bytes) ‖ nonce prefix (7 bytes)`.
//!
//! This module owns generating, serializing and parsing the header. It must
//! not derive keys or encrypt: [`super::chunk`] does that from a parsed
//! header.

use super::params::{HEADER_LEN, NONCE_PREFIX_LEN, SALT_LEN};
use crate::cipher::fill_random;
use crate::{Error, Result};

/// The stream header, as written at the start of every stream.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header([u8; HEADER_LEN]);

impl Header {
    /// A header with a fresh random salt and nonce prefix.
    pub(crate) fn generate() -> Result<Self> {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0] = HEADER_LEN as u8;
        fill_random(&mut bytes[1..])?;
        Ok(Self(bytes))
    }

    /// A header from salt and nonce prefix bytes the caller drew from the OS
    /// CSPRNG for this stream alone (callers that draw several values in one
    /// call).
    pub(crate) fn from_random(random: &[u8; HEADER_LEN - 1]) -> Self {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0] = HEADER_LEN as u8;
        bytes[1..].copy_from_slice(random);
        Self(bytes)
    }

    /// Parses the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is too short or the length byte is not
    /// `0x28` (the only layout this crate writes: a 32-byte derived key).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let Some(bytes) = bytes.get(..HEADER_LEN) else {
            return Err(Error::malformed(
                "stream header",
                format!("{} bytes, expected {HEADER_LEN}", bytes.len()),
            ));
        };
        if bytes[0] != HEADER_LEN as u8 {
            return Err(Error::malformed(
                "stream header",
                format!(
                    "length byte {:#04x}, expected {:#04x} (AES-256, 32-byte derived key)",
                    bytes[0], HEADER_LEN
                ),
            ));
        }
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// The serialized header.
    pub(crate) fn as_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.0
    }

    /// The HKDF salt.
    pub(crate) fn salt(&self) -> &[u8] {
        &self.0[1..1 + SALT_LEN]
    }

    /// The nonce prefix shared by all chunks.
    pub(crate) fn nonce_prefix(&self) -> [u8; NONCE_PREFIX_LEN] {
        let mut p = [0u8; NONCE_PREFIX_LEN];
        p.copy_from_slice(&self.0[1 + SALT_LEN..]);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_headers_parse_and_differ() {
        let a = Header::generate().unwrap();
        let b = Header::generate().unwrap();
        assert_eq!(a.as_bytes()[0], 0x28);
        assert!(a != b);
        let parsed = Header::parse(a.as_bytes()).unwrap();
        assert!(parsed == a);
        assert_eq!(parsed.salt(), &a.as_bytes()[1..33]);
        assert_eq!(&parsed.nonce_prefix()[..], &a.as_bytes()[33..40]);
    }

    #[test]
    fn bad_headers_are_malformed() {
        let good = *Header::generate().unwrap().as_bytes();
        for len in [0, 1, 39] {
            assert!(matches!(
                Header::parse(&good[..len]),
                Err(Error::Malformed { .. })
            ));
        }
        for first in [0x00, 0x18, 0x27, 0x29, 0xff] {
            let mut bad = good;
            bad[0] = first;
            assert!(matches!(Header::parse(&bad), Err(Error::Malformed { .. })));
        }
    }
}
