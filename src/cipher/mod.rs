//! Symmetric primitives: AES-256-GCM in place, key wrapping, HKDF-SHA256, SHA-256.
//!
//! Interchangeable [`Backend`]s implement the primitives:
//!
//! * [`AwsLc`] (feature `aws-lc`, default) on aws-lc-rs;
//! * [`Ring`] (feature `ring`, default) on `ring`, whose AES-GCM is the
//!   fastest on x86-64 CPUs with VAES but without AVX-512;
//! * [`RustCrypto`] (feature `rustcrypto`) on RustCrypto `aes-gcm`, `hkdf`
//!   and `sha2` — pure Rust, for targets where a C toolchain is unwelcome.
//!
//! [`DefaultBackend`] is [`Auto`]: its AES-256-GCM runs on the engine
//! chosen at run time from the CPU ([`crate::engine`]), its HKDF and
//! SHA-256 on aws-lc-rs where compiled in. The others stay available by
//! name, so tests prove them byte-identical. Everything above this module
//! uses [`Aes256Gcm`], [`KeyWrapper`], [`hkdf_sha256`] and [`sha256`],
//! which run on the default backend unless a type parameter names another.
//!
//! This module owns primitives only: no formats beyond the wrapped-key blob, no
//! I/O, no key management.

use std::fmt;
use std::marker::PhantomData;

use zeroize::Zeroize;

use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

mod auto;
#[cfg(feature = "aws-lc")]
mod aws_lc;
#[cfg(any(feature = "aws-lc", feature = "ring"))]
mod ring_api;
#[cfg(feature = "ring")]
mod ring_backend;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;
mod wrap;
#[cfg(test)]
mod wycheproof_tests;

pub use auto::{Auto, AutoKey, Primary};
#[cfg(feature = "aws-lc")]
pub use aws_lc::AwsLc;
#[cfg(feature = "ring")]
pub use ring_backend::Ring;
#[cfg(feature = "rustcrypto")]
pub use rustcrypto::RustCrypto;
pub use wrap::{KeyWrapper, WRAPPED_KEY_LEN, WRAP_FORMAT_VERSION, WRAP_LIMIT};

/// The backend used when no other is named: AES-256-GCM on the engine
/// chosen at run time.
pub type DefaultBackend = Auto;

/// AES-GCM nonce length in bytes (96 bits).
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length in bytes (128 bits).
pub const TAG_LEN: usize = 16;
/// SHA-256 output length in bytes.
pub const SHA256_LEN: usize = 32;
/// Largest HKDF-SHA256 output (255 blocks of 32 bytes, RFC 5869).
pub const HKDF_SHA256_MAX_LEN: usize = 255 * SHA256_LEN;

/// A 96-bit AES-GCM nonce.
pub type Nonce = [u8; NONCE_LEN];
/// A detached 128-bit AES-GCM tag.
pub type Tag = [u8; TAG_LEN];

/// A set of primitive implementations. Implemented by [`AwsLc`], [`Ring`],
/// [`RustCrypto`] and [`Auto`]; not meant to be implemented outside this
/// crate.
pub trait Backend: Send + Sync + 'static {
    /// Human-readable name, for benchmarks and diagnostics.
    const NAME: &'static str;
    /// An AES-256-GCM key with its schedule expanded, ready for many calls.
    type AeadKey: Send + Sync;

    /// Expands a 256-bit key.
    fn aead_key(key: &[u8; KEY_LEN]) -> Self::AeadKey;
    /// Encrypts `in_out` in place and returns the tag; `None` if the message
    /// is longer than AES-GCM allows.
    fn seal(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Option<Tag>;
    /// Verifies `tag` and decrypts `in_out` in place; `false` if the tag does
    /// not verify (then `in_out` may hold garbage: callers wipe it).
    fn open(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8], tag: &Tag) -> bool;
    /// Encrypts `input` into `output` (same length, not overlapping) and
    /// returns the tag; `None` if the lengths differ or the message is
    /// longer than AES-GCM allows.
    fn seal_to(
        key: &Self::AeadKey,
        nonce: &Nonce,
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Option<Tag>;
    /// Verifies `tag` over `input` and decrypts it into `output` (same
    /// length, not overlapping); `false` if the lengths differ or the tag
    /// does not verify (then `output` may hold garbage: callers wipe it).
    fn open_to(
        key: &Self::AeadKey,
        nonce: &Nonce,
        aad: &[u8],
        input: &[u8],
        tag: &Tag,
        output: &mut [u8],
    ) -> bool;
    /// HKDF-SHA256 (RFC 5869) extract-then-expand into `out`; `false` if
    /// `out` is longer than [`HKDF_SHA256_MAX_LEN`].
    fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> bool;
    /// SHA-256 of the concatenation of `parts`.
    fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN];
}

/// An AES-256-GCM key for sealing and opening with a detached tag, in place
/// or from one buffer into another.
///
/// The out-of-place forms ([`seal_into`](Self::seal_into),
/// [`open_into`](Self::open_into)) read the input once and write the output
/// once, where a copy followed by an in-place call touches the bytes twice:
/// on large buffers that copy costs a third of the time.
///
/// Opening never releases plaintext that failed authentication: on failure
/// the buffer is wiped before the error is returned.
///
/// The caller owns nonce uniqueness: never seal twice with one (key, nonce).
pub struct Aes256Gcm<B: Backend = DefaultBackend> {
    key: B::AeadKey,
    _backend: PhantomData<B>,
}

impl<B: Backend> Aes256Gcm<B> {
    /// Expands `key` for use.
    pub fn new(key: &SecretKey) -> Self {
        Self {
            key: B::aead_key(key.expose_secret()),
            _backend: PhantomData,
        }
    }

    /// Encrypts `in_out` in place, authenticating it and `aad`; returns the tag.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] if `in_out` is longer than AES-GCM allows
    /// (2^36 − 32 bytes).
    #[inline]
    pub fn seal_in_place(&self, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Result<Tag> {
        B::seal(&self.key, nonce, aad, in_out).ok_or(Error::LimitExceeded {
            what: "AES-GCM message length in bytes",
            limit: (1 << 36) - 32,
        })
    }

    /// Verifies `tag` over `in_out` and `aad`, then decrypts `in_out` in place.
    ///
    /// # Errors
    /// [`Error::Integrity`] if the tag does not verify; `in_out` is then all
    /// zeros.
    #[inline]
    pub fn open_in_place(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<()> {
        if B::open(&self.key, nonce, aad, in_out, tag) {
            Ok(())
        } else {
            in_out.zeroize();
            Err(Error::tampered("AES-GCM ciphertext"))
        }
    }
}

impl Aes256Gcm<Auto> {
    /// Expands `key` for `engine` rather than the engine in use: for
    /// benchmarks and tests that compare engines in one process.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `engine` is not compiled in or not
    /// allowed in this build.
    pub fn on_engine(key: &SecretKey, engine: crate::engine::AesGcmEngine) -> Result<Self> {
        Ok(Self {
            key: AutoKey::on_engine(key.expose_secret(), engine)?,
            _backend: PhantomData,
        })
    }

    /// The engine this key runs on.
    pub fn engine(&self) -> crate::engine::AesGcmEngine {
        self.key.engine()
    }
}

impl<B: Backend> Aes256Gcm<B> {
    /// Encrypts `plaintext` into `ciphertext`, which must have the same
    /// length, authenticating it and `aad`; returns the tag. Same output
    /// as [`seal_in_place`](Self::seal_in_place) on a copy.
    ///
    /// # Errors
    /// [`Error::Misuse`] if the lengths differ;
    /// [`Error::LimitExceeded`] if the message is longer than AES-GCM
    /// allows (2^36 − 32 bytes).
    #[inline]
    pub fn seal_into(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        plaintext: &[u8],
        ciphertext: &mut [u8],
    ) -> Result<Tag> {
        check_same_len(plaintext, ciphertext)?;
        B::seal_to(&self.key, nonce, aad, plaintext, ciphertext).ok_or(Error::LimitExceeded {
            what: "AES-GCM message length in bytes",
            limit: (1 << 36) - 32,
        })
    }

    /// Verifies `tag` over `ciphertext` and `aad`, then decrypts it into
    /// `plaintext`, which must have the same length.
    ///
    /// # Errors
    /// [`Error::Misuse`] if the lengths differ;
    /// [`Error::Integrity`] if the tag does not verify — `plaintext` is then
    /// all zeros.
    #[inline]
    pub fn open_into(
        &self,
        nonce: &Nonce,
        aad: &[u8],
        ciphertext: &[u8],
        tag: &Tag,
        plaintext: &mut [u8],
    ) -> Result<()> {
        check_same_len(ciphertext, plaintext)?;
        if B::open_to(&self.key, nonce, aad, ciphertext, tag, plaintext) {
            Ok(())
        } else {
            plaintext.zeroize();
            Err(Error::tampered("AES-GCM ciphertext"))
        }
    }
}

fn check_same_len(input: &[u8], output: &[u8]) -> Result<()> {
    if input.len() == output.len() {
        Ok(())
    } else {
        Err(Error::misuse(format!(
            "AES-GCM input has {} bytes but the output buffer {}",
            input.len(),
            output.len()
        )))
    }
}

impl<B: Backend> fmt::Debug for Aes256Gcm<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aes256Gcm<{}>([REDACTED])", B::NAME)
    }
}

/// HKDF-SHA256 (RFC 5869) on the default backend: fills `out` from input key
/// material `ikm`, `salt` and `info`.
///
/// # Errors
/// [`Error::LimitExceeded`] if `out` is longer than [`HKDF_SHA256_MAX_LEN`].
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> Result<()> {
    hkdf_sha256_with::<DefaultBackend>(ikm, salt, info, out)
}

/// [`hkdf_sha256`] on a named backend.
///
/// # Errors
/// [`Error::LimitExceeded`] if `out` is longer than [`HKDF_SHA256_MAX_LEN`].
pub fn hkdf_sha256_with<B: Backend>(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<()> {
    if out.len() <= HKDF_SHA256_MAX_LEN && B::hkdf_sha256(ikm, salt, info, out) {
        Ok(())
    } else {
        out.zeroize();
        Err(Error::LimitExceeded {
            what: "HKDF-SHA256 output length in bytes",
            limit: HKDF_SHA256_MAX_LEN as u64,
        })
    }
}

/// SHA-256 of the concatenation of `parts`, on the default backend.
pub fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    DefaultBackend::sha256(parts)
}

/// Fills `buf` from the operating system's CSPRNG (nonces, salts, keys);
/// in a `fips` build from the FIPS module's approved DRBG instead.
///
/// # Errors
/// [`Error::Random`] if no randomness is available.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    #[cfg(feature = "fips")]
    return aws_lc_rs::rand::fill(buf).map_err(|_| Error::Random);
    #[cfg(not(feature = "fips"))]
    getrandom::fill(buf).map_err(|_| Error::Random)
}

#[cfg(test)]
mod tests;
