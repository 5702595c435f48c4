//! The provider kit: what a [`KeyProvider`](super::KeyProvider) implementation needs beyond the
//! trait, for providers written outside this crate as for the ones inside
//! it, which use nothing else.
//!
//! A provider for another key service (a secrets engine's transit API, a
//! cloud HSM, a key manager) implements [`KeyProvider`](super::KeyProvider) (see "Writing a
//! provider" in [`provider`](super)) and uses this module for the parts
//! that must be right and the same everywhere:
//!
//! * [`root_wrap_aad`] — the associated data that binds a wrap to its
//!   root key's id and the [`EncryptionContext`], for a service whose wrap
//!   (encrypt) call takes associated data (as AWS KMS, Cloud KMS and KMIP
//!   servers do). Pass it as the associated data of both calls.
//! * [`bind`] and [`unbind`] — the same binding for a service whose wrap
//!   call takes none and hands back the bytes it wrapped (AES key wrap in
//!   an HSM, Azure Key Vault's `wrapKey`): wrap the [`BoundKey`] `bind`
//!   makes, and give what the service unwrapped to `unbind`, which returns
//!   the key only if the key id and context are the ones it was bound
//!   with ([`Error::Integrity`] otherwise, the key wiped unreleased).
//! * [`check_kind`] — refuses a [`KeyRef`] of another provider kind; call
//!   it first in every method that takes one.
//! * [`region_mismatch`] — the error for a key used from a region it does
//!   not serve, for [`KeyProvider::key_in_region`](super::KeyProvider::key_in_region).
//! * [`fill_random`] — randomness (salts, nonces, request ids) from the
//!   operating system, or from the FIPS module in a `fips` build.
//! * [`sha256`] — SHA-256 over concatenated parts, for a digest the
//!   service signs.
//!
//! Failures map onto [`Error`] as the trait documents: a disabled or
//! missing key is [`Error::KeyUnavailable`], a refused permission
//! [`Error::AccessDenied`], a network failure [`Error::unreachable`], a
//! wrap that does not authenticate [`Error::tampered`], an answer that
//! does not parse [`Error::Malformed`], any other refusal by the service
//! [`Error::rejected`]. Never put key material or a service's secret in
//! an error.
//!
//! # The security contract
//!
//! **Only the root key's holder may be able to make a wrap the provider
//! accepts.** A zone's manifest is authenticated with its active EZK, and
//! the EZK is whatever the root unwraps: whoever can make a wrap that
//! unwraps can put an EZK of their own into a manifest, authenticate the
//! manifest with it, and read every segment written afterwards.
//!
//! * A symmetric root inside the service (AES-GCM, AES key wrap) meets
//!   the contract by itself: making a wrap needs the key, which never
//!   leaves the service.
//! * A root with public material does not. RSA-OAEP under a key's public
//!   half is something anyone can compute. Such a provider must
//!   authenticate each wrap with an operation only the key holder can
//!   perform (a signature by the key, as the Azure Key Vault provider
//!   asks for), and check it before it unwraps.
//! * Binding the context ([`root_wrap_aad`], [`bind`]) is needed but never
//!   enough: it stops a genuine wrap from being used under another context
//!   or key, but every input to it is public, so it cannot say who
//!   wrapped.
//! * A format that an earlier release wrote and that fails the contract
//!   is refused by [`KeyProvider::unwrap_key`](super::KeyProvider::unwrap_key), and read only through
//!   [`KeyProvider::unwrap_legacy_key`](super::KeyProvider::unwrap_legacy_key) for an explicit adoption.
//!
//! `docs/SECURITY.md` ("Who can make a wrap a root accepts") states, for
//! each provider in this crate, who can make a wrap it accepts. The
//! conformance suite (`cmek::testing::conformance`, feature `testing`)
//! checks the contract with `forged_wrap`. A provider's test fixture either
//! hands it wraps forged from the provider's public material, which must
//! all be refused, or says why there is no public material to forge with.
//! Every provider, inside the crate or out, passes the whole suite.
//!
//! This module holds no key and makes no call; it must not grow anything
//! vendor-specific (that stays in the provider).

mod bound;

use crate::provider::{EncryptionContext, KeyRef};
use crate::{Error, Result};

pub use bound::{bind, unbind, BoundKey, BOUND_KEY_LEN};

/// Length of a SHA-256 digest, in bytes.
pub const SHA256_LEN: usize = crate::cipher::SHA256_LEN;

/// The associated data a provider binds when it wraps under root key
/// `key_id` with `context`: `u32be(len(key_id)) ‖ key_id ‖
/// context.canonical_bytes()` (docs/FORMAT.md).
///
/// Give the same bytes to the service's wrap and unwrap calls (or to an
/// AEAD's seal and open): an unwrap under another key id or context then
/// fails. `key_id` is whatever names the root key stably in the service
/// (the key's full resource name rather than an alias that can be
/// re-pointed).
pub fn root_wrap_aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::new();
    super::push_len_prefixed(&mut aad, key_id.as_bytes());
    aad.extend_from_slice(&context.canonical_bytes());
    aad
}

/// Refuses a [`KeyRef`] meant for another provider kind: `Ok` if
/// `root.provider()` is `expected` (the provider's
/// [`kind`](super::KeyProvider::kind)).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the key and both kinds.
pub fn check_kind(expected: &str, root: &KeyRef) -> Result<()> {
    if root.provider() == expected {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "key {root} belongs to provider {:?}, not {expected:?}",
            root.provider()
        )))
    }
}

/// The error for `root` used from `region`, a region it does not serve:
/// an [`Error::RegionMismatch`] whose `reason` tells the operator what to
/// do instead (for example "use a key of the region it is used from").
pub fn region_mismatch(root: &KeyRef, region: &str, reason: &'static str) -> Error {
    Error::RegionMismatch {
        key: root.to_string(),
        key_region: root.region().to_owned(),
        region: region.to_owned(),
        reason,
    }
}

/// Fills `buf` with random bytes: from the operating system, or from
/// aws-lc-rs's FIPS module in a build with feature `fips`.
///
/// # Errors
/// [`Error::Random`] if no randomness is available.
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    crate::cipher::fill_random(buf)
}

/// SHA-256 of the concatenation of `parts`, on the crate's cipher backend.
pub fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
    crate::cipher::sha256(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_wrap_aad_is_unambiguous_and_pinned() {
        assert_ne!(
            root_wrap_aad("k", &EncryptionContext::new().with("x", "")),
            root_wrap_aad("kx", &EncryptionContext::new())
        );
        let aad = root_wrap_aad("root-1", &EncryptionContext::new().with("zone", "a"));
        let expected: Vec<u8> = [
            &6u32.to_be_bytes()[..],
            b"root-1",
            &1u32.to_be_bytes(),
            &4u32.to_be_bytes(),
            b"zone",
            &1u32.to_be_bytes(),
            b"a",
        ]
        .concat();
        assert_eq!(aad, expected);
    }

    #[test]
    fn another_kind_is_refused_by_name() {
        let r = KeyRef::new("aws-kms", "mrk-1234", "eu-west-1");
        let err = check_kind("local", &r).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("aws-kms:eu-west-1:mrk-1234") && m.contains("\"local\"")),
            "{err}"
        );
        assert!(check_kind("aws-kms", &r).is_ok());
    }

    #[test]
    fn a_region_mismatch_names_both_regions_and_the_reason() {
        let r = KeyRef::new("p", "k", "r1");
        let err = region_mismatch(&r, "r2", "use a key of r2");
        assert!(
            matches!(&err, Error::RegionMismatch { key_region, region, reason: "use a key of r2", .. }
                if key_region == "r1" && region == "r2"),
            "{err}"
        );
    }

    #[test]
    fn randomness_fills_and_differs() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
        fill_random(&mut []).unwrap();
    }

    #[test]
    fn sha256_is_over_the_concatenation() {
        // FIPS 180-2 example "abc".
        assert_eq!(
            sha256(&[b"a", b"", b"bc"]).to_vec(),
            hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
                .unwrap()
        );
    }
}
