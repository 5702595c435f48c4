//! Zone identity.

use std::fmt;

use crate::cipher::fill_random;
use crate::{Error, Result};

/// A zone's identity: 16 random bytes drawn when the zone is created, bound
/// into every key and segment of the zone. Shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ZoneId([u8; 16]);

impl ZoneId {
    /// A fresh random id.
    ///
    /// # Errors
    /// [`Error::Random`] if the OS has no randomness.
    pub fn generate() -> Result<Self> {
        let mut id = [0u8; 16];
        fill_random(&mut id)?;
        Ok(Self(id))
    }

    /// The id with these bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::malformed("zone id", "expected 32 hex digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ZoneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ZoneId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = ZoneId::generate().unwrap();
        assert_eq!(ZoneId::parse(&id.to_string()).unwrap(), id);
        assert_ne!(ZoneId::generate().unwrap(), id);
        for bad in [
            "",
            "00",
            &"g".repeat(32),
            &"0".repeat(33),
            "é0000000000000000000000000000000",
        ] {
            assert!(ZoneId::parse(bad).is_err(), "{bad}");
        }
    }
}
