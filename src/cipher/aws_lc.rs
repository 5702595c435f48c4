//! The aws-lc-rs backend: AES-256-GCM with VAES/AVX-512 where the CPU has it.

use aws_lc_rs::aead;

use super::{Backend, Nonce, Tag, SHA256_LEN, TAG_LEN};
use crate::secret::KEY_LEN;

/// Primitives from aws-lc-rs (AWS-LC, the default backend).
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLc;

impl Backend for AwsLc {
    const NAME: &'static str = "aws-lc-rs";
    super::ring_api::ring_api_primitives!(aws_lc_rs);

    #[inline]
    fn open(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8], tag: &Tag) -> bool {
        key.open_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            tag,
            in_out,
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
        // No extra input: `extra_out_and_tag` receives the tag alone.
        let mut tag = [0u8; TAG_LEN];
        key.seal_out_of_place_scatter(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            input,
            output,
            &[],
            &mut tag,
        )
        .ok()?;
        Some(tag)
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
        key.open_separate_gather(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            input,
            tag,
            output,
        )
        .is_ok()
    }
}
