//! Key material.
//!
//! [`SecretKey`] holds 256 bits of key material on the heap (so moving the
//! value never leaves copies behind on the stack), wipes it when dropped,
//! prints as `SecretKey([REDACTED])`, and compares in constant time. It has no
//! `Display`, no `Clone`, no `AsRef<[u8]>` and no serialization impl: the only
//! way to the bytes is [`SecretKey::expose_secret`], which is easy to grep for.
//!
//! This module owns key material types only; it must not encrypt anything.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::{Error, Result};

/// Length of a [`SecretKey`] in bytes.
pub const KEY_LEN: usize = 32;

/// A 256-bit secret key, zeroized on drop.
///
/// ```
/// use cmek::SecretKey;
/// let key = SecretKey::generate()?;
/// assert_eq!(format!("{key:?}"), "SecretKey([REDACTED])");
/// # Ok::<(), cmek::Error>(())
/// ```
///
/// It cannot be printed with `{}` nor cloned implicitly:
///
/// ```compile_fail
/// let key = cmek::SecretKey::generate().unwrap();
/// println!("{key}");
/// ```
///
/// ```compile_fail
/// let key = cmek::SecretKey::generate().unwrap();
/// let copy = key.clone();
/// ```
pub struct SecretKey(Box<[u8; KEY_LEN]>);

impl SecretKey {
    /// A fresh key from the operating system's CSPRNG (in a `fips` build,
    /// from the FIPS module's approved DRBG).
    ///
    /// # Errors
    /// [`Error::Random`] if no randomness is available.
    pub fn generate() -> Result<Self> {
        let mut key = Self(Box::new([0u8; KEY_LEN]));
        crate::cipher::fill_random(&mut key.0[..])?;
        Ok(key)
    }

    /// Copies key material from a slice, which must be exactly 32 bytes.
    ///
    /// The caller remains responsible for wiping its own copy.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != KEY_LEN {
            return Err(Error::malformed(
                "secret key",
                format!("expected {KEY_LEN} bytes, got {}", bytes.len()),
            ));
        }
        let mut key = Self(Box::new([0u8; KEY_LEN]));
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// Takes key material from an array and wipes the array.
    pub fn from_array(bytes: &mut [u8; KEY_LEN]) -> Self {
        let key = Self(Box::new(*bytes));
        bytes.zeroize();
        key
    }

    /// The key bytes. Every call site is a place where key material leaves
    /// this type's protection: keep them few and never log the result.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// An explicit copy, for the rare owner that needs two (e.g. a cache and a
    /// caller). Named so that copies of key material are visible in review.
    pub fn duplicate(&self) -> Self {
        Self(Box::new(*self.0))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
        #[cfg(test)]
        drop_probe::observe(&self.0[..]);
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

impl ConstantTimeEq for SecretKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0[..].ct_eq(&other.0[..])
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretKey {}

/// Test-only hook: records what a key's buffer held at the end of `drop`,
/// after wiping and before the allocation is released.
#[cfg(test)]
pub(crate) mod drop_probe {
    use std::cell::RefCell;

    thread_local! {
        static LAST: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    pub(crate) fn observe(bytes: &[u8]) {
        LAST.with(|l| *l.borrow_mut() = Some(bytes.to_vec()));
    }

    pub(crate) fn take() -> Option<Vec<u8>> {
        LAST.with(|l| l.borrow_mut().take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        // 0x3b is ';' in ASCII, "3b" in hex, "Ozs7" in base64.
        let mut bytes = [0x3bu8; KEY_LEN];
        let key = SecretKey::from_array(&mut bytes);
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(format!("{key:?}"), "SecretKey([REDACTED])");
        for needle in ["3b", "3B", ";", "Ozs7", "59"] {
            assert!(!shown.contains(needle), "{needle} in {shown}");
        }
    }

    #[test]
    fn from_array_wipes_the_source() {
        let mut bytes = [7u8; KEY_LEN];
        let key = SecretKey::from_array(&mut bytes);
        assert_eq!(bytes, [0u8; KEY_LEN]);
        assert_eq!(key.expose_secret(), &[7u8; KEY_LEN]);
    }

    #[test]
    fn bytes_are_zeroed_on_drop() {
        let _ = drop_probe::take();
        let key = SecretKey::from_slice(&[0xA5; KEY_LEN]).unwrap();
        assert_eq!(key.expose_secret(), &[0xA5; KEY_LEN]);
        drop(key);
        let seen = drop_probe::take().expect("drop hook ran");
        assert_eq!(seen, vec![0u8; KEY_LEN]);
    }

    #[test]
    fn generated_keys_differ_and_are_not_zero() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.expose_secret(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn equality_compares_contents() {
        let a = SecretKey::from_slice(&[1; KEY_LEN]).unwrap();
        let b = a.duplicate();
        let mut other = [1u8; KEY_LEN];
        other[31] = 2;
        let c = SecretKey::from_array(&mut other);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn wrong_length_is_malformed() {
        for len in [0, 16, 31, 33, 64] {
            let err = SecretKey::from_slice(&vec![0u8; len]).unwrap_err();
            assert!(matches!(err, Error::Malformed { .. }), "{err}");
        }
    }
}
