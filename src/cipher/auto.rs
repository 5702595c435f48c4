//! [`Auto`]: the backend whose AES-256-GCM runs on the engine chosen at run
//! time ([`crate::engine`]), so one binary is fast on every CPU.
//!
//! A key is expanded for the engine in use when it is made and keeps it:
//! changing the engine later affects keys made afterwards only. Every
//! engine's output is byte-identical (tests prove it), so keys made under
//! different engines interoperate. HKDF and SHA-256 are not on the data
//! path and stay on [`Primary`], aws-lc-rs where it is compiled in.

use super::{Backend, Nonce, Tag, SHA256_LEN};
use crate::engine::{self, AesGcmEngine};
use crate::secret::KEY_LEN;
use crate::{Error, Result};

#[cfg(feature = "aws-lc")]
use super::AwsLc;
#[cfg(feature = "ring")]
use super::Ring;
#[cfg(feature = "rustcrypto")]
use super::RustCrypto;

/// The backend for HKDF and SHA-256: aws-lc-rs if compiled in (the FIPS
/// module in a `fips` build), else RustCrypto.
#[cfg(feature = "aws-lc")]
pub type Primary = AwsLc;
/// The backend for HKDF and SHA-256: aws-lc-rs if compiled in (the FIPS
/// module in a `fips` build), else RustCrypto.
#[cfg(all(not(feature = "aws-lc"), feature = "rustcrypto"))]
pub type Primary = RustCrypto;

/// AES-256-GCM on the engine chosen at run time; HKDF and SHA-256 on
/// [`Primary`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Auto;

/// A key expanded for one engine.
pub enum AutoKey {
    /// Expanded by aws-lc-rs.
    #[cfg(feature = "aws-lc")]
    AwsLc(<AwsLc as Backend>::AeadKey),
    /// Expanded by `ring`.
    #[cfg(feature = "ring")]
    Ring(<Ring as Backend>::AeadKey),
    /// Expanded by RustCrypto `aes-gcm`.
    #[cfg(feature = "rustcrypto")]
    RustCrypto(<RustCrypto as Backend>::AeadKey),
}

impl AutoKey {
    /// `key` expanded for `engine`, whatever the engine in use.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `engine` is not compiled in or not
    /// allowed in this build (a `fips` build allows aws-lc-rs only).
    pub fn on_engine(key: &[u8; KEY_LEN], engine: AesGcmEngine) -> Result<Self> {
        engine::allowed(engine)?;
        Ok(match engine {
            #[cfg(feature = "aws-lc")]
            AesGcmEngine::AwsLc => AutoKey::AwsLc(AwsLc::aead_key(key)),
            #[cfg(feature = "ring")]
            AesGcmEngine::Ring => AutoKey::Ring(Ring::aead_key(key)),
            #[cfg(feature = "rustcrypto")]
            AesGcmEngine::RustCrypto => AutoKey::RustCrypto(RustCrypto::aead_key(key)),
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::InvalidArgument(format!(
                    "AES-GCM engine {other} is not in this build"
                )))
            }
        })
    }

    /// The engine this key runs on.
    pub fn engine(&self) -> AesGcmEngine {
        match self {
            #[cfg(feature = "aws-lc")]
            AutoKey::AwsLc(_) => AesGcmEngine::AwsLc,
            #[cfg(feature = "ring")]
            AutoKey::Ring(_) => AesGcmEngine::Ring,
            #[cfg(feature = "rustcrypto")]
            AutoKey::RustCrypto(_) => AesGcmEngine::RustCrypto,
        }
    }
}

/// Calls `$call` on the backend `$key` was expanded by, with `$k` bound to
/// that backend's key.
macro_rules! dispatch {
    ($key:expr, $k:ident => $call:ident ( $($arg:expr),* )) => {
        match $key {
            #[cfg(feature = "aws-lc")]
            AutoKey::AwsLc($k) => AwsLc::$call($($arg),*),
            #[cfg(feature = "ring")]
            AutoKey::Ring($k) => Ring::$call($($arg),*),
            #[cfg(feature = "rustcrypto")]
            AutoKey::RustCrypto($k) => RustCrypto::$call($($arg),*),
        }
    };
}

impl Backend for Auto {
    const NAME: &'static str = "auto";
    type AeadKey = AutoKey;

    fn aead_key(key: &[u8; KEY_LEN]) -> Self::AeadKey {
        // `engine::current` only ever names an engine compiled in; the
        // arms for the others do not exist in this build.
        match engine::current() {
            #[cfg(feature = "aws-lc")]
            AesGcmEngine::AwsLc => AutoKey::AwsLc(AwsLc::aead_key(key)),
            #[cfg(feature = "ring")]
            AesGcmEngine::Ring => AutoKey::Ring(Ring::aead_key(key)),
            #[cfg(feature = "rustcrypto")]
            AesGcmEngine::RustCrypto => AutoKey::RustCrypto(RustCrypto::aead_key(key)),
            #[allow(unreachable_patterns)]
            _ => fallback_key(key),
        }
    }

    #[inline]
    fn seal(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Option<Tag> {
        dispatch!(key, k => seal(k, nonce, aad, in_out))
    }

    #[inline]
    fn open(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8], tag: &Tag) -> bool {
        dispatch!(key, k => open(k, nonce, aad, in_out, tag))
    }

    #[inline]
    fn seal_to(
        key: &Self::AeadKey,
        nonce: &Nonce,
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Option<Tag> {
        dispatch!(key, k => seal_to(k, nonce, aad, input, output))
    }

    #[inline]
    fn open_to(
        key: &Self::AeadKey,
        nonce: &Nonce,
        aad: &[u8],
        input: &[u8],
        tag: &Tag,
        output: &mut [u8],
    ) -> bool {
        dispatch!(key, k => open_to(k, nonce, aad, input, tag, output))
    }

    fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> bool {
        Primary::hkdf_sha256(ikm, salt, info, out)
    }

    fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
        Primary::sha256(parts)
    }
}

/// A key on the first engine compiled in; never reached, since the engine
/// in use is always one compiled in.
#[allow(dead_code)]
fn fallback_key(key: &[u8; KEY_LEN]) -> AutoKey {
    #[cfg(feature = "aws-lc")]
    return AutoKey::AwsLc(AwsLc::aead_key(key));
    #[cfg(not(feature = "aws-lc"))]
    return AutoKey::RustCrypto(RustCrypto::aead_key(key));
}
