//! The `ring` backend: AES-256-GCM with VAES and AVX2 (no AVX-512 needed),
//! the fastest code path on x86-64 CPUs that have VAES but not AVX-512.
//!
//! `ring` seals and opens in place only, so the out-of-place calls copy
//! the input into the output first. On one thread that copy does not
//! overlap the cipher: on a 64 MiB stream it cancels `ring`'s lead
//! (docs/PERFORMANCE.md, "AES-GCM engines chosen at run time").

use ring::aead;

use super::{Backend, Nonce, Tag, SHA256_LEN, TAG_LEN};
use crate::secret::KEY_LEN;

/// Primitives from the `ring` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ring;

impl Backend for Ring {
    const NAME: &'static str = "ring";
    super::ring_api::ring_api_primitives!(ring);

    #[inline]
    fn open(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8], tag: &Tag) -> bool {
        key.open_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            aead::Tag::from(*tag),
            in_out,
            0..,
        )
        .is_ok()
    }

    #[inline]
    fn seal_to(
        key: &Self::AeadKey,
        nonce: &Nonce,
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Option<Tag> {
        if input.len() != output.len() {
            return None;
        }
        output.copy_from_slice(input);
        Self::seal(key, nonce, aad, output)
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
        if input.len() != output.len() {
            return false;
        }
        output.copy_from_slice(input);
        Self::open(key, nonce, aad, output, tag)
    }
}
