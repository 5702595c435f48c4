//! [`EncryptingWriter`]: a blocking `std::io::Write` adapter that encrypts
//! into an inner writer.
//!
//! This module owns the blocking write loop around [`super::encoder`]; it
//! must not decide the format.

use std::io::{self, Write};

use super::encoder::Encoder;
use super::params::Params;
use super::{pass, to_io, Gate};
use crate::secret::SecretKey;
use crate::Result;

/// Encrypts everything written to it into `W`, one chunk at a time.
///
/// Memory: one ciphertext chunk, whatever the stream length. A `write`
/// holding more than a whole chunk seals it straight from the caller's
/// bytes into that buffer; smaller writes are copied into it. A full
/// chunk is sealed and written to `W` only when more data follows,
/// because the last chunk is sealed differently.
///
/// **Call [`finish`](Self::finish).** It seals the last chunk and returns
/// `W`. If the writer is dropped without `finish`, the buffered tail is
/// discarded and `W` holds only whole non-final chunks (or nothing): that
/// is not a valid stream, and every reader rejects it with
/// [`Integrity`](crate::Error::Integrity) or
/// [`Malformed`](crate::Error::Malformed) — a dropped writer never
/// leaves a truncated stream that decrypts. [`flush`](Write::flush) only
/// flushes chunks already sealed; it cannot make the stream readable
/// early.
///
/// ```
/// use std::io::Write;
/// use cmek::{stream, SecretKey};
/// let key = SecretKey::generate()?;
/// let mut w = stream::EncryptingWriter::new(Vec::new(), &key, b"file 7", stream::Params::default())?;
/// w.write_all(b"hello")?;
/// let ciphertext = w.finish()?;
/// assert_eq!(&stream::decrypt(&key, b"file 7", &ciphertext)?[..], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EncryptingWriter<W: Write> {
    inner: Option<W>,
    enc: Encoder,
    poisoned: bool,
    gate: Option<Gate>,
}

impl<W: Write> EncryptingWriter<W> {
    /// Starts a stream under `key` with associated data `aad`. Nothing is
    /// written to `inner` until the first chunk is sealed.
    ///
    /// # Errors
    /// [`Random`](crate::Error::Random) if no salt can be drawn.
    pub fn new(inner: W, key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        Ok(Self {
            inner: Some(inner),
            enc: Encoder::new(key, aad, params)?,
            poisoned: false,
            gate: None,
        })
    }

    /// A writer with a header the caller drew: zones draw the stream's
    /// salt and nonce prefix with the segment's DEK in one OS call, and
    /// known-answer tests reproduce another implementation's bytes.
    pub(crate) fn with_header(
        inner: W,
        key: &SecretKey,
        aad: &[u8],
        params: Params,
        header: super::header::Header,
    ) -> Result<Self> {
        Ok(Self {
            inner: Some(inner),
            enc: Encoder::with_header(key, aad, params, header)?,
            poisoned: false,
            gate: None,
        })
    }

    /// Runs `gate` before sealing each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        self.inner.as_ref().expect("inner is present until finish")
    }

    fn drain(&mut self) -> io::Result<()> {
        let inner = self.inner.as_mut().expect("inner is present until finish");
        let r = inner.write_all(self.enc.pending());
        if r.is_err() {
            // Part of a chunk may have reached `W`: the stream is broken.
            self.poisoned = true;
        }
        r?;
        let n = self.enc.pending().len();
        self.enc.consume(n);
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        if self.poisoned {
            Err(io::Error::other(
                "stream writer failed earlier; the stream is incomplete",
            ))
        } else {
            Ok(())
        }
    }

    /// Seals the last chunk, writes it, flushes and returns the inner
    /// writer.
    ///
    /// # Errors
    /// [`Io`](crate::Error::Io) if writing fails (also when an earlier
    /// write failed); [`LimitExceeded`](crate::Error::LimitExceeded) past
    /// 2^32 chunks.
    pub fn finish(mut self) -> Result<W> {
        self.check()?;
        pass(&self.gate)?;
        self.enc.seal(true)?;
        self.drain()?;
        let mut inner = self.inner.take().expect("inner is present until finish");
        inner.flush()?;
        Ok(inner)
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if data.is_empty() {
            return Ok(0);
        }
        if self.enc.is_full() {
            pass(&self.gate).map_err(to_io)?;
            if let Err(e) = self.enc.seal(false) {
                self.poisoned = true;
                return Err(to_io(e));
            }
            self.drain()?;
        }
        // While more than a whole chunk remains, seal it straight from
        // `data`: a full chunk needs no copy into the buffer first. The
        // loop stops with at least one byte left, which `accept` takes, so
        // a chunk sealed here is never followed by an empty last one.
        let mut taken = 0;
        while self.enc.is_empty() && data.len() - taken > self.enc.chunk_capacity() {
            if let Err(e) = pass(&self.gate) {
                if taken == 0 {
                    return Err(to_io(e));
                }
                // Report what was taken; the next write meets the gate.
                break;
            }
            let end = taken + self.enc.chunk_capacity();
            if let Err(e) = self.enc.seal_full_from(&data[taken..end]) {
                self.poisoned = true;
                return Err(to_io(e));
            }
            self.drain()?;
            taken = end;
        }
        Ok(taken + self.enc.accept(&data[taken..]))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        self.inner
            .as_mut()
            .expect("inner is present until finish")
            .flush()
    }
}

impl<W: Write> Drop for EncryptingWriter<W> {
    fn drop(&mut self) {
        if self.inner.is_some() && self.enc.has_started() && !self.enc.is_finished() {
            tracing::warn!(
                "stream writer dropped without finish(): the output is incomplete and will not decrypt"
            );
        }
    }
}

impl<W: Write> std::fmt::Debug for EncryptingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptingWriter")
            .field("finished", &self.enc.is_finished())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}
