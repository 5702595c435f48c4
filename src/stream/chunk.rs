//! Chunk crypto: the per-stream key and the per-chunk nonce.
//!
//! The stream key is HKDF-SHA256(ikm = caller's key, salt = header salt,
//! info = associated data), 32 bytes. Chunk `i` is sealed with AES-256-GCM
//! under nonce `prefix ‖ u32be(i) ‖ last` (last = 1 on the final chunk),
//! with empty GCM associated data and the 16-byte tag appended.
//!
//! This module owns sealing and opening one chunk, in place or from one
//! buffer into another. It must not decide chunk boundaries (see [`super::params`]) or do I/O.

use super::header::Header;
use super::params::NONCE_PREFIX_LEN;
use crate::cipher::{hkdf_sha256, Aes256Gcm, Nonce, Tag, TAG_LEN};
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

/// A stream's derived AES-GCM key and nonce prefix.
pub(crate) struct ChunkCipher {
    aead: Aes256Gcm,
    prefix: [u8; NONCE_PREFIX_LEN],
}

impl ChunkCipher {
    /// Derives the stream key for `header` and `aad` from `key`.
    pub(crate) fn new(key: &SecretKey, aad: &[u8], header: &Header) -> Result<Self> {
        let mut derived = [0u8; KEY_LEN];
        hkdf_sha256(key.expose_secret(), header.salt(), aad, &mut derived)?;
        // `from_array` wipes `derived`; the expanded key wipes with `stream_key`.
        let stream_key = SecretKey::from_array(&mut derived);
        Ok(Self {
            aead: Aes256Gcm::new(&stream_key),
            prefix: header.nonce_prefix(),
        })
    }

    #[inline]
    fn nonce(&self, index: u32, last: bool) -> Nonce {
        let mut n = [0u8; 12];
        n[..NONCE_PREFIX_LEN].copy_from_slice(&self.prefix);
        n[NONCE_PREFIX_LEN..NONCE_PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
        n[11] = u8::from(last);
        n
    }

    /// Seals `buf[..len - 16]` in place and writes the tag into the last 16
    /// bytes of `buf`.
    #[inline]
    pub(crate) fn seal(&self, index: u32, last: bool, buf: &mut [u8]) -> Result<()> {
        debug_assert!(buf.len() >= TAG_LEN);
        let (body, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let t = self
            .aead
            .seal_in_place(&self.nonce(index, last), &[], body)?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Seals `plaintext` into `out`, which must be exactly 16 bytes longer:
    /// ciphertext, then tag. Same bytes as [`seal`](Self::seal) on a copy,
    /// with one pass over the data instead of two.
    #[inline]
    pub(crate) fn seal_from(
        &self,
        index: u32,
        last: bool,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        debug_assert_eq!(out.len(), plaintext.len() + TAG_LEN);
        let (body, tag) = out.split_at_mut(plaintext.len());
        let t = self
            .aead
            .seal_into(&self.nonce(index, last), &[], plaintext, body)?;
        tag.copy_from_slice(&t);
        Ok(())
    }

    /// Opens the sealed chunk `sealed` (ciphertext, then tag) into `out`,
    /// which must be exactly 16 bytes shorter.
    ///
    /// # Errors
    /// As [`open`](Self::open); `out` is all zeros on failure.
    #[inline]
    pub(crate) fn open_to(
        &self,
        index: u32,
        last: bool,
        sealed: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        if sealed.len() < TAG_LEN {
            return Err(Error::malformed(
                "stream chunk",
                format!("{} bytes is shorter than a tag", sealed.len()),
            ));
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let t: Tag = tag.try_into().expect("split at the tag length");
        self.aead
            .open_into(&self.nonce(index, last), &[], body, &t, out)
            .map_err(|e| match e {
                Error::Integrity { .. } => Error::tampered("stream chunk"),
                other => other,
            })
    }

    /// Opens a sealed chunk in place; on success the plaintext is
    /// `buf[..len - 16]`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `buf` is shorter than a tag;
    /// [`Error::Integrity`] if the chunk does not authenticate as chunk
    /// `index` with this `last` flag — `buf` is then all zeros.
    #[inline]
    pub(crate) fn open(&self, index: u32, last: bool, buf: &mut [u8]) -> Result<()> {
        if buf.len() < TAG_LEN {
            return Err(Error::malformed(
                "stream chunk",
                format!("{} bytes is shorter than a tag", buf.len()),
            ));
        }
        let (body, tag) = buf.split_at_mut(buf.len() - TAG_LEN);
        let r = self.open_detached(index, last, body, tag);
        if r.is_err() {
            tag.fill(0);
        }
        r
    }

    /// Opens `body` in place against the detached 16-byte `tag`.
    ///
    /// # Errors
    /// As [`open`](Self::open); `body` is all zeros on failure.
    #[inline]
    pub(crate) fn open_detached(
        &self,
        index: u32,
        last: bool,
        body: &mut [u8],
        tag: &[u8],
    ) -> Result<()> {
        let t: Tag = tag
            .try_into()
            .map_err(|_| Error::malformed("stream chunk", format!("{}-byte tag", tag.len())))?;
        self.aead
            .open_in_place(&self.nonce(index, last), &[], body, &t)
            .map_err(|_| Error::tampered("stream chunk"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout_is_prefix_index_flag() {
        let key = SecretKey::from_slice(&[1; 32]).unwrap();
        let header = Header::generate().unwrap();
        let c = ChunkCipher::new(&key, b"ad", &header).unwrap();
        let n = c.nonce(0x0102_0304, true);
        assert_eq!(&n[..7], &header.nonce_prefix()[..]);
        assert_eq!(&n[7..11], &[1, 2, 3, 4]);
        assert_eq!(n[11], 1);
        assert_eq!(c.nonce(5, false)[11], 0);
    }

    #[test]
    fn open_checks_index_flag_and_aad() {
        let key = SecretKey::from_slice(&[2; 32]).unwrap();
        let header = Header::generate().unwrap();
        let c = ChunkCipher::new(&key, b"ad", &header).unwrap();
        let mut sealed = b"hello chunk\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec();
        c.seal(3, false, &mut sealed).unwrap();
        let mut ok = sealed.clone();
        c.open(3, false, &mut ok).unwrap();
        assert_eq!(&ok[..11], b"hello chunk");
        for (i, last) in [(2, false), (3, true), (4, false)] {
            let mut bad = sealed.clone();
            assert!(matches!(
                c.open(i, last, &mut bad),
                Err(Error::Integrity { .. })
            ));
            assert!(bad.iter().all(|&b| b == 0));
        }
        let other = ChunkCipher::new(&key, b"other ad", &header).unwrap();
        let mut bad = sealed.clone();
        assert!(other.open(3, false, &mut bad).is_err());
        // Out of place: same bytes, same checks.
        let mut sealed_from = vec![0u8; 11 + TAG_LEN];
        c.seal_from(3, false, b"hello chunk", &mut sealed_from)
            .unwrap();
        assert_eq!(sealed_from, sealed);
        let mut out = [0xffu8; 11];
        c.open_to(3, false, &sealed, &mut out).unwrap();
        assert_eq!(&out, b"hello chunk");
        for (i, last) in [(2, false), (3, true)] {
            let mut out = [0xffu8; 11];
            assert!(matches!(
                c.open_to(i, last, &sealed, &mut out),
                Err(Error::Integrity { .. })
            ));
            assert_eq!(out, [0u8; 11]);
        }
        assert!(matches!(
            c.open(0, true, &mut [0u8; 15]),
            Err(Error::Malformed { .. })
        ));
    }
}
