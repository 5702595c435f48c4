//! The parts of a [`Backend`](super::Backend) that `ring` and aws-lc-rs
//! (whose API follows ring's) spell the same way: the key type and its
//! expansion, sealing in place, HKDF-SHA256 and SHA-256. Each backend
//! invokes [`ring_api_primitives!`] inside its `impl Backend` with its
//! crate's name and writes only what differs (opening, out of place).

/// Expands to the shared `impl Backend` items for the crate `$krate`
/// (`ring` or `aws_lc_rs`). The caller's module must have `Nonce`, `Tag`,
/// `TAG_LEN`, `SHA256_LEN` and `KEY_LEN` in scope.
macro_rules! ring_api_primitives {
    ($krate:ident) => {
        type AeadKey = $krate::aead::LessSafeKey;

        fn aead_key(key: &[u8; KEY_LEN]) -> Self::AeadKey {
            // AES_256_GCM accepts exactly 32 bytes, which the type guarantees.
            let unbound = $krate::aead::UnboundKey::new(&$krate::aead::AES_256_GCM, key)
                .expect("a 32-byte key is valid for AES-256-GCM");
            $krate::aead::LessSafeKey::new(unbound)
        }

        #[inline]
        fn seal(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Option<Tag> {
            let tag = key
                .seal_in_place_separate_tag(
                    $krate::aead::Nonce::assume_unique_for_key(*nonce),
                    $krate::aead::Aad::from(aad),
                    in_out,
                )
                .ok()?;
            let mut out = [0u8; TAG_LEN];
            out.copy_from_slice(tag.as_ref());
            Some(out)
        }

        fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> bool {
            /// Output-length marker that HKDF expand asks for.
            struct OutLen(usize);
            impl $krate::hkdf::KeyType for OutLen {
                fn len(&self) -> usize {
                    self.0
                }
            }
            let prk = $krate::hkdf::Salt::new($krate::hkdf::HKDF_SHA256, salt).extract(ikm);
            let info = [info];
            match prk.expand(&info, OutLen(out.len())) {
                Ok(okm) => okm.fill(out).is_ok(),
                Err(_) => false,
            }
        }

        fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
            let mut ctx = $krate::digest::Context::new(&$krate::digest::SHA256);
            for part in parts {
                ctx.update(part);
            }
            let mut out = [0u8; SHA256_LEN];
            out.copy_from_slice(ctx.finish().as_ref());
            out
        }
    };
}

pub(super) use ring_api_primitives;
