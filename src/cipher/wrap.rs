//! Wrapping of 256-bit keys under a key-encryption key (KEK).
//!
//! Construction: AES-256-GCM with a fresh random 96-bit nonce per wrap, the
//! wrapped key as plaintext, and the caller's associated data bound after a
//! domain-separation label. Layout (61 bytes, documented in `docs/FORMAT.md`):
//!
//! ```text
//! version (1) = 0x01 ‖ nonce (12) ‖ encrypted key (32) ‖ tag (16)
//! GCM AAD = "cmek.keywrap.v1" ‖ caller associated data
//! ```
//!
//! Why not AES-KW (RFC 3394): it has no associated data, and binding a
//! wrapped key to its zone, segment and version is the point. Why a random
//! nonce: wrapping happens on many hosts at once with no shared counter.
//!
//! **FIPS builds.** With feature `fips`, every wrap is sealed by the FIPS
//! module with a nonce the module draws itself (aws-lc-rs's
//! `RandomizedNonceKey`): AES-GCM encryption is an approved service only
//! when the module generates the IV. A nonce drawn by the caller is then
//! ignored. The layout is the same; unwrapping does not change.
//!
//! **Usage limit.** With random 96-bit nonces NIST SP 800-38D §8.3 caps a key
//! at 2^32 encryptions, which keeps the chance of a nonce collision below
//! 2^-32. [`KeyWrapper`] counts its wraps and refuses the one past
//! [`WRAP_LIMIT`]; an owner that persists a KEK across processes persists the
//! count and restores it with [`KeyWrapper::with_usage`]. Unwrapping is not
//! limited.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "fips")]
use zeroize::Zeroize;
use zeroize::Zeroizing;

use super::{fill_random, Aes256Gcm, Backend, DefaultBackend, Nonce, Tag, NONCE_LEN, TAG_LEN};
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

/// Version byte of the wrapped-key layout.
pub const WRAP_FORMAT_VERSION: u8 = 1;
/// Length of a wrapped key: version, nonce, encrypted key, tag.
pub const WRAPPED_KEY_LEN: usize = 1 + NONCE_LEN + KEY_LEN + TAG_LEN;
/// Wraps allowed under one KEK (random 96-bit nonces, NIST SP 800-38D §8.3).
pub const WRAP_LIMIT: u64 = 1 << 32;

const AAD_LABEL: &[u8] = b"cmek.keywrap.v1";

/// A key-encryption key that wraps and unwraps 256-bit keys.
pub struct KeyWrapper<B: Backend = DefaultBackend> {
    aead: Aes256Gcm<B>,
    /// The same KEK in the FIPS module, sealing with module-drawn nonces.
    #[cfg(feature = "fips")]
    module_sealer: aws_lc_rs::aead::RandomizedNonceKey,
    wraps: AtomicU64,
    limit: u64,
}

impl<B: Backend> KeyWrapper<B> {
    /// A wrapper for `kek` that has not wrapped anything yet.
    pub fn new(kek: &SecretKey) -> Self {
        Self::with_usage(kek, 0)
    }

    /// A wrapper for `kek` that has already performed `wraps` wraps (restored
    /// from persisted state), so the limit holds across restarts.
    pub fn with_usage(kek: &SecretKey, wraps: u64) -> Self {
        Self {
            aead: Aes256Gcm::new(kek),
            #[cfg(feature = "fips")]
            module_sealer: aws_lc_rs::aead::RandomizedNonceKey::new(
                &aws_lc_rs::aead::AES_256_GCM,
                kek.expose_secret(),
            )
            // AES_256_GCM accepts exactly 32 bytes, which the type guarantees.
            .expect("a 32-byte key is valid for AES-256-GCM"),
            wraps: AtomicU64::new(wraps),
            limit: WRAP_LIMIT,
        }
    }

    /// Lowers the wrap limit (for tests and for owners that want a margin).
    /// A limit above [`WRAP_LIMIT`] is clamped to it.
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit.min(WRAP_LIMIT);
        self
    }

    /// How many wraps this KEK has performed, including restored usage.
    pub fn wraps_performed(&self) -> u64 {
        self.wraps.load(Ordering::Relaxed)
    }

    /// Wraps `key`, binding `aad`, under a fresh random nonce.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] once the KEK has performed its limit of wraps;
    /// [`Error::Random`] if no randomness is available.
    pub fn wrap(&self, key: &SecretKey, aad: &[u8]) -> Result<[u8; WRAPPED_KEY_LEN]> {
        self.reserve_wrap()?;
        #[cfg(feature = "fips")]
        return self.wrap_in_module(key, aad);
        #[cfg(not(feature = "fips"))]
        {
            let mut nonce = [0u8; NONCE_LEN];
            fill_random(&mut nonce)?;
            self.wrap_with_nonce(key, aad, &nonce)
        }
    }

    /// A wrap sealed by the FIPS module under a nonce it draws itself.
    #[cfg(feature = "fips")]
    fn wrap_in_module(&self, key: &SecretKey, aad: &[u8]) -> Result<[u8; WRAPPED_KEY_LEN]> {
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[0] = WRAP_FORMAT_VERSION;
        let body = &mut out[1 + NONCE_LEN..1 + NONCE_LEN + KEY_LEN];
        body.copy_from_slice(key.expose_secret());
        let (nonce, tag) = match self
            .module_sealer
            .seal_in_place_separate_tag(aws_lc_rs::aead::Aad::from(full_aad(aad)), body)
        {
            Ok(sealed) => sealed,
            Err(_) => {
                // The module's only failure here is its random generator.
                out.zeroize();
                return Err(Error::Random);
            }
        };
        out[1..1 + NONCE_LEN].copy_from_slice(nonce.as_ref());
        out[1 + NONCE_LEN + KEY_LEN..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Wraps `key` under `nonce`, which the caller drew from the OS CSPRNG
    /// for this wrap alone (for callers that draw many nonces in one call);
    /// counts toward the limit like [`wrap`](Self::wrap).
    pub(crate) fn wrap_with_drawn_nonce(
        &self,
        key: &SecretKey,
        aad: &[u8],
        nonce: &Nonce,
    ) -> Result<[u8; WRAPPED_KEY_LEN]> {
        self.reserve_wrap()?;
        #[cfg(feature = "fips")]
        {
            let _ = nonce;
            self.wrap_in_module(key, aad)
        }
        #[cfg(not(feature = "fips"))]
        self.wrap_with_nonce(key, aad, nonce)
    }

    /// Counts one wrap, refusing it if the limit is reached.
    fn reserve_wrap(&self) -> Result<()> {
        let limit = self.limit;
        self.wraps
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| Error::LimitExceeded {
                what: "key wraps under one key-encryption key",
                limit,
            })
    }

    /// The deterministic core of [`wrap`](Self::wrap): no counting, the
    /// caller supplies a fresh nonce (or a fixed one in known-answer tests).
    pub(crate) fn wrap_with_nonce(
        &self,
        key: &SecretKey,
        aad: &[u8],
        nonce: &Nonce,
    ) -> Result<[u8; WRAPPED_KEY_LEN]> {
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[0] = WRAP_FORMAT_VERSION;
        out[1..1 + NONCE_LEN].copy_from_slice(nonce);
        let body = &mut out[1 + NONCE_LEN..1 + NONCE_LEN + KEY_LEN];
        body.copy_from_slice(key.expose_secret());
        let tag = self.aead.seal_in_place(nonce, &full_aad(aad), body)?;
        out[1 + NONCE_LEN + KEY_LEN..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Unwraps a key wrapped by [`wrap`](Self::wrap) with the same `aad`.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a wrong length or unknown version;
    /// [`Error::Integrity`] for a wrong KEK, wrong `aad` or modified bytes.
    pub fn unwrap(&self, wrapped: &[u8], aad: &[u8]) -> Result<SecretKey> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(Error::malformed(
                "wrapped key",
                format!("expected {WRAPPED_KEY_LEN} bytes, got {}", wrapped.len()),
            ));
        }
        if wrapped[0] != WRAP_FORMAT_VERSION {
            return Err(Error::malformed(
                "wrapped key",
                format!("unknown version {}", wrapped[0]),
            ));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&wrapped[1..1 + NONCE_LEN]);
        let mut tag: Tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&wrapped[1 + NONCE_LEN + KEY_LEN..]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&wrapped[1 + NONCE_LEN..1 + NONCE_LEN + KEY_LEN]);
        self.aead
            .open_in_place(&nonce, &full_aad(aad), &mut key[..], &tag)
            .map_err(|_| Error::tampered("wrapped key"))?;
        Ok(SecretKey::from_array(&mut key))
    }
}

impl<B: Backend> fmt::Debug for KeyWrapper<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyWrapper")
            .field("backend", &B::NAME)
            .field("wraps", &self.wraps_performed())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn full_aad(aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(AAD_LABEL.len() + aad.len());
    full.extend_from_slice(AAD_LABEL);
    full.extend_from_slice(aad);
    full
}
