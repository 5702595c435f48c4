//! Context binding for roots of trust whose wrap call takes no associated
//! data: Azure Key Vault's `wrapKey` (RSA-OAEP-256, AES key wrap) and an
//! HSM's AES key wrap with padding (`CKM_AES_KEY_WRAP_KWP`). It binds; it
//! does not authenticate who wrapped (below).
//!
//! Such a root wraps an opaque byte string and hands it back unchanged, so
//! cmek binds the encryption context itself: the string wrapped is the key
//! followed by a digest of the root key's id and the context,
//!
//! ```text
//! key (32 bytes) ‖ SHA-256("cmek bound key v1\0" ‖ root_wrap_aad(key_id, context))
//! ```
//!
//! (64 bytes; FORMAT.md "Bound key"). After the root unwraps it, the
//! digest is recomputed from the caller's context and compared in
//! constant time; a different context or key id is [`Error::Integrity`]
//! and the key is wiped unreleased.
//!
//! **What it does not give.** The digest stops a genuine wrap from being
//! used under another context or key id, and a modified wrap from
//! unwrapping (AES key wrap and RSA-OAEP are non-malleable). It does not
//! stop anyone from *making* a wrap: the digest is computed from public
//! values (the key id, the salt, the context), so whoever can run the
//! root's wrap operation can bind a key of their own choosing correctly.
//! The construction is sound only under a root whose wrap needs the root's
//! secret: AES key wrap inside an HSM or Managed HSM is, RSA-OAEP is not —
//! it is encryption under the public half, which anyone can read. A
//! provider with an RSA root must therefore authenticate each wrap with an
//! operation only the key holder can perform (the Azure Key Vault provider
//! has the key sign its wraps, and checks the signature before unwrapping).

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use std::fmt;

use super::root_wrap_aad;
use crate::cipher::{sha256, SHA256_LEN};
use crate::error::IntegrityFailure;
use crate::provider::EncryptionContext;
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

/// Length of a [`BoundKey`]: the key and the digest (64 bytes).
pub const BOUND_KEY_LEN: usize = KEY_LEN + SHA256_LEN;

/// Domain separation: this digest is never confused with another SHA-256
/// cmek computes over the same encoding.
const DOMAIN: &[u8] = b"cmek bound key v1\0";

fn context_digest(key_id: &str, context: &EncryptionContext) -> [u8; SHA256_LEN] {
    sha256(&[DOMAIN, &root_wrap_aad(key_id, context)])
}

/// A key with its context bound ([`bind`]): the [`BOUND_KEY_LEN`] bytes to
/// hand to a wrap call that takes no associated data. Secret: wiped on
/// drop, never printed.
pub struct BoundKey(Zeroizing<[u8; BOUND_KEY_LEN]>);

impl BoundKey {
    /// The bytes to wrap. Secret: whatever copies them (a request body)
    /// should wipe its copy, where it can.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0[..]
    }
}

impl fmt::Debug for BoundKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundKey([REDACTED])")
    }
}

/// `key` bound to root key `key_id` and `context`: `key` followed by
/// `SHA-256("cmek bound key v1\0" ‖ root_wrap_aad(key_id, context))`
/// (docs/FORMAT.md, "Bound key"). Wrap its bytes with a call that takes no
/// associated data; after unwrapping, [`unbind`] with the same `key_id`
/// and `context`.
///
/// The binding does not say who wrapped: see the module's security
/// contract.
pub fn bind(key: &SecretKey, key_id: &str, context: &EncryptionContext) -> BoundKey {
    let mut bound = Zeroizing::new([0u8; BOUND_KEY_LEN]);
    bound[..KEY_LEN].copy_from_slice(key.expose_secret());
    bound[KEY_LEN..].copy_from_slice(&context_digest(key_id, context));
    BoundKey(bound)
}

/// The key inside `bound` (what the root's unwrap returned), if its digest
/// matches `key_id` and `context`; compared in constant time.
///
/// # Errors
/// [`Error::Integrity`] (`what` = "wrapped key") when the length or the
/// digest is wrong: the blob was wrapped under another context or key id,
/// or is not a bound key at all.
pub fn unbind(bound: &[u8], key_id: &str, context: &EncryptionContext) -> Result<SecretKey> {
    let tampered = || Error::Integrity {
        what: "wrapped key",
        reason: IntegrityFailure::Tampered,
    };
    if bound.len() != BOUND_KEY_LEN {
        return Err(tampered());
    }
    let (key, digest) = bound.split_at(KEY_LEN);
    if !bool::from(digest.ct_eq(&context_digest(key_id, context))) {
        return Err(tampered());
    }
    SecretKey::from_slice(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(zone: &str) -> EncryptionContext {
        EncryptionContext::new().with("zone", zone)
    }

    #[test]
    fn a_bound_key_comes_back_under_the_same_id_and_context() {
        let key = SecretKey::generate().unwrap();
        let bound = bind(&key, "root-1", &context("a"));
        assert_eq!(bound.as_bytes().len(), BOUND_KEY_LEN);
        assert_eq!(format!("{bound:?}"), "BoundKey([REDACTED])");
        let back = unbind(bound.as_bytes(), "root-1", &context("a")).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
    }

    #[test]
    fn another_context_key_id_or_length_is_an_integrity_failure() {
        let key = SecretKey::generate().unwrap();
        let bound = bind(&key, "root-1", &context("a"));
        let bound = bound.as_bytes();
        for (bytes, id, ctx) in [
            (bound, "root-1", context("b")),
            (bound, "root-2", context("a")),
            (bound, "root-1", EncryptionContext::new()),
            (&bound[..BOUND_KEY_LEN - 1], "root-1", context("a")),
            (&bound[..KEY_LEN], "root-1", context("a")),
        ] {
            assert!(matches!(
                unbind(bytes, id, &ctx),
                Err(Error::Integrity {
                    what: "wrapped key",
                    ..
                })
            ));
        }
        let mut flipped = bound.to_vec();
        flipped[KEY_LEN] ^= 1;
        assert!(unbind(&flipped, "root-1", &context("a")).is_err());
    }

    #[test]
    fn the_digest_is_pinned() {
        // Pins the construction: SHA-256 over the domain and the root-wrap
        // encoding of ("root-1", {zone: "a"}).
        let mut key_bytes = [7u8; KEY_LEN];
        let key = SecretKey::from_array(&mut key_bytes);
        let bound = bind(&key, "root-1", &context("a"));
        let bound = bound.as_bytes();
        let mut aad = Vec::new();
        aad.extend_from_slice(&6u32.to_be_bytes());
        aad.extend_from_slice(b"root-1");
        aad.extend_from_slice(&1u32.to_be_bytes());
        aad.extend_from_slice(&4u32.to_be_bytes());
        aad.extend_from_slice(b"zone");
        aad.extend_from_slice(&1u32.to_be_bytes());
        aad.extend_from_slice(b"a");
        assert_eq!(&bound[..KEY_LEN], &[7u8; KEY_LEN]);
        assert_eq!(&bound[KEY_LEN..], &sha256(&[DOMAIN, &aad]));
    }
}
