//! [`DataKey`]: the key bytes Parquet's key tools hand around.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{Error, Result};

/// The AES key lengths, in bytes, Parquet's key tools accept for data keys
/// and key-encryption keys (128, 192 and 256 bits).
pub const DATA_KEY_LENGTHS: [usize; 3] = [16, 24, 32];

/// A Parquet data key, key-encryption key or column key: 16, 24 or 32
/// bytes, zeroized on drop, redacted in `Debug`, compared in constant time.
///
/// Zones only ever use 256-bit keys ([`SecretKey`](crate::SecretKey)); the
/// Parquet key tools also use 128-bit keys (PyArrow's default data-key
/// length, and every key-encryption key of the double-wrapping mode), so
/// they get this type of their own rather than a looser `SecretKey`.
///
/// ```
/// use cmek::parquet::DataKey;
/// let key = DataKey::generate(16)?;
/// assert_eq!(key.len(), 16);
/// assert_eq!(format!("{key:?}"), "DataKey(16 bytes, [REDACTED])");
/// # Ok::<(), cmek::Error>(())
/// ```
pub struct DataKey(Zeroizing<Vec<u8>>);

impl DataKey {
    /// A fresh key of `len` bytes from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a length other than 16, 24 or 32;
    /// [`Error::Random`] if no randomness is available.
    pub fn generate(len: usize) -> Result<Self> {
        check_len(len).map_err(|_| {
            Error::InvalidArgument(format!(
                "a Parquet data key is 16, 24 or 32 bytes long, not {len}"
            ))
        })?;
        let mut key = Zeroizing::new(vec![0u8; len]);
        crate::cipher::fill_random(&mut key[..])?;
        Ok(Self(key))
    }

    /// Copies key material from a slice of 16, 24 or 32 bytes. The caller
    /// remains responsible for wiping its own copy.
    ///
    /// # Errors
    /// [`Error::Malformed`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        check_len(bytes.len())?;
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// The key's length in bytes: 16, 24 or 32.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a data key has 16 bytes or more.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The key bytes. Every call site is a place where key material leaves
    /// this type's protection: keep them few and never log the result.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// An explicit copy, named so that copies of key material are visible
    /// in review.
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

pub(crate) fn check_len(len: usize) -> Result<()> {
    if DATA_KEY_LENGTHS.contains(&len) {
        Ok(())
    } else {
        Err(Error::malformed(
            "Parquet data key",
            format!("expected 16, 24 or 32 bytes, got {len}"),
        ))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({} bytes, [REDACTED])", self.0.len())
    }
}

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0[..].ct_eq(&other.0[..]))
    }
}

impl Eq for DataKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        for len in DATA_KEY_LENGTHS {
            assert_eq!(DataKey::generate(len).unwrap().len(), len);
            assert_eq!(DataKey::from_slice(&vec![1; len]).unwrap().len(), len);
        }
        for len in [0, 1, 15, 17, 31, 33, 64] {
            assert!(matches!(
                DataKey::from_slice(&vec![1; len]),
                Err(Error::Malformed { .. })
            ));
            assert!(matches!(
                DataKey::generate(len),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn debug_is_redacted_and_equality_compares_contents() {
        let a = DataKey::from_slice(&[0x3b; 16]).unwrap();
        let shown = format!("{a:?} {a:#?}");
        assert!(!shown.contains("3b") && !shown.contains(';') && !shown.contains("59"));
        assert_eq!(a, a.duplicate());
        assert_ne!(a, DataKey::from_slice(&[0x3b; 32]).unwrap());
        assert_ne!(a, DataKey::from_slice(&[0x3c; 16]).unwrap());
    }
}
