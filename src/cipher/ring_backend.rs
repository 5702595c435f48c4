//! The `ring` backend: AES-256-GCM with VAES and AVX2 (no AVX-512 needed),
//! the fastest code path on x86-64 CPUs that have VAES but not AVX-512.
//!
//! `ring` seals and opens in place only, so the out-of-place calls copy
//! the input into the output first; on 64 KiB chunks that copy stays in
//! cache and costs little next to the cipher.

use ring::{aead, digest, hkdf};

use super::{Backend, Nonce, Tag, SHA256_LEN, TAG_LEN};
use crate::secret::KEY_LEN;

/// Primitives from the `ring` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ring;

/// Output-length marker that ring's HKDF expand asks for.
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

impl Backend for Ring {
    const NAME: &'static str = "ring";
    type AeadKey = aead::LessSafeKey;

    fn aead_key(key: &[u8; KEY_LEN]) -> Self::AeadKey {
        // AES_256_GCM accepts exactly 32 bytes, which the type guarantees.
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, key)
            .expect("a 32-byte key is valid for AES-256-GCM");
        aead::LessSafeKey::new(unbound)
    }

    #[inline]
    fn seal(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Option<Tag> {
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(*nonce),
                aead::Aad::from(aad),
                in_out,
            )
            .ok()?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Some(out)
    }

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

    fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> bool {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
        let info = [info];
        match prk.expand(&info, OutLen(out.len())) {
            Ok(okm) => okm.fill(out).is_ok(),
            Err(_) => false,
        }
    }

    fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0u8; SHA256_LEN];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }
}
