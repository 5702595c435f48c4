//! The RustCrypto backend: pure Rust `aes-gcm`, `hkdf` and `sha2`.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use sha2::{Digest, Sha256};

use super::{Backend, Nonce, Tag, SHA256_LEN};
use crate::secret::KEY_LEN;

/// Primitives from the RustCrypto project (pure Rust).
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

impl Backend for RustCrypto {
    const NAME: &'static str = "rustcrypto";
    type AeadKey = aes_gcm::Aes256Gcm;

    fn aead_key(key: &[u8; KEY_LEN]) -> Self::AeadKey {
        aes_gcm::Aes256Gcm::new(&(*key).into())
    }

    #[inline]
    fn seal(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8]) -> Option<Tag> {
        let tag = key
            .encrypt_inout_detached(&(*nonce).into(), aad, in_out.into())
            .ok()?;
        Some(tag.into())
    }

    #[inline]
    fn open(key: &Self::AeadKey, nonce: &Nonce, aad: &[u8], in_out: &mut [u8], tag: &Tag) -> bool {
        key.decrypt_inout_detached(&(*nonce).into(), aad, in_out.into(), &(*tag).into())
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
        let buf = InOutBuf::new(input, output).ok()?;
        let tag = key
            .encrypt_inout_detached(&(*nonce).into(), aad, buf)
            .ok()?;
        Some(tag.into())
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
        let Ok(buf) = InOutBuf::new(input, output) else {
            return false;
        };
        key.decrypt_inout_detached(&(*nonce).into(), aad, buf, &(*tag).into())
            .is_ok()
    }

    fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) -> bool {
        hkdf::Hkdf::<Sha256>::new(Some(salt), ikm)
            .expand(info, out)
            .is_ok()
    }

    fn sha256(parts: &[&[u8]]) -> [u8; SHA256_LEN] {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }
}
