//! Incremental SHA-256 of a segment as it streams through a backup or a
//! restore, on the crate's cipher backend.
//!
//! [`crate::cipher::sha256`] hashes slices held in memory; a segment may be
//! larger than memory should hold, so backups hash it chunk by chunk here.
//! This module only hashes; it knows no layout.

use std::io::{self, Read};

use crate::cipher::SHA256_LEN;

/// A SHA-256 computation in progress.
pub(crate) struct Sha256(Inner);

#[cfg(feature = "aws-lc")]
type Inner = aws_lc_rs::digest::Context;

#[cfg(not(feature = "aws-lc"))]
type Inner = sha2::Sha256;

impl Sha256 {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "aws-lc")]
        {
            Self(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            use sha2::Digest;
            Self(sha2::Sha256::new())
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        #[cfg(feature = "aws-lc")]
        self.0.update(bytes);
        #[cfg(not(feature = "aws-lc"))]
        sha2::Digest::update(&mut self.0, bytes);
    }

    pub(crate) fn finish(self) -> [u8; SHA256_LEN] {
        #[cfg(feature = "aws-lc")]
        {
            self.0
                .finish()
                .as_ref()
                .try_into()
                .expect("SHA-256 is 32 bytes")
        }
        #[cfg(not(feature = "aws-lc"))]
        {
            use sha2::Digest;
            self.0.finalize().into()
        }
    }
}

/// A reader that hashes and counts every byte it passes on.
pub(crate) struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }

    /// Bytes read so far and their SHA-256.
    pub(crate) fn finish(self) -> (u64, [u8; SHA256_LEN]) {
        (self.len, self.hash.finish())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_hash_equals_the_one_shot_hash() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut h = Sha256::new();
        for chunk in data.chunks(4093) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), crate::cipher::sha256(&[&data]));
        let mut r = HashingReader::new(&data[..]);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.finish(), (100_000, crate::cipher::sha256(&[&data])));
    }
}
