//! [`DecryptingReader`]: a blocking `std::io::Read` adapter that decrypts a
//! stream read sequentially from an inner reader.
//!
//! This module owns the blocking read loop around [`super::decoder`]; it
//! must not decide the format.

use std::io::{self, Read};

use super::decoder::{Decoder, Step};
use super::params::Params;
use super::{pass, to_io, Gate};
use crate::secret::SecretKey;

/// Decrypts a stream read sequentially from `R`.
///
/// Plaintext is released one chunk at a time, and only after that chunk
/// authenticated; the end of the stream (`Ok(0)`) is reported only after the
/// chunk marked last authenticated, so truncation at a chunk boundary is
/// an error, never a short read. After an error every later read fails.
///
/// Errors are [`io::Error`]s of kind [`io::ErrorKind::InvalidData`] that
/// carry a [`crate::Error`] ([`Integrity`](crate::Error::Integrity) or
/// [`Malformed`](crate::Error::Malformed)); get it with
/// [`super::error_of`].
///
/// Memory: one ciphertext chunk plus one byte.
pub struct DecryptingReader<R: Read> {
    inner: R,
    dec: Decoder,
    gate: Option<Gate>,
}

impl<R: Read> DecryptingReader<R> {
    /// Decrypts the stream in `inner` under `key` and associated data
    /// `aad`. Nothing is read until the first `read`.
    pub fn new(inner: R, key: &SecretKey, aad: &[u8], params: Params) -> Self {
        Self {
            inner,
            dec: Decoder::new(key, aad, params),
            gate: None,
        }
    }

    /// Runs `gate` before reading each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.dec.step_into(out).map_err(to_io)? {
                Step::Direct(n) => return Ok(n),
                Step::Ready => {
                    let pt = self.dec.plaintext();
                    let n = pt.len().min(out.len());
                    out[..n].copy_from_slice(&pt[..n]);
                    self.dec.consume(n);
                    return Ok(n);
                }
                Step::End => return Ok(0),
                Step::NeedInput => {
                    pass(&self.gate).map_err(to_io)?;
                    let n = loop {
                        match self.inner.read(self.dec.input()) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        }
                    };
                    self.dec.filled(n);
                }
            }
        }
    }
}

impl<R: Read> std::fmt::Debug for DecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptingReader").finish_non_exhaustive()
    }
}
