//! Async adapters (feature `tokio`): [`AsyncEncryptingWriter`] and
//! [`AsyncDecryptingReader`], with the same format, memory bound and
//! guarantees as the blocking ones.
//!
//! This module owns the poll loops around [`super::encoder`] and
//! [`super::decoder`]; it must not decide the format.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::decoder::{Decoder, Step};
use super::encoder::Encoder;
use super::params::Params;
use super::to_io;
use crate::secret::SecretKey;
use crate::Result;

/// Encrypts everything written to it into `W` (async).
///
/// **Call `shutdown()`** (`AsyncWriteExt::shutdown`): it seals the last
/// chunk, writes it and shuts `W` down. Dropped without a completed
/// shutdown, the writer leaves `W` holding only whole non-final chunks (or
/// nothing), which every reader rejects — never a truncated stream that
/// decrypts. `flush()` flushes only chunks already sealed.
pub struct AsyncEncryptingWriter<W> {
    inner: Option<W>,
    enc: Encoder,
    poisoned: bool,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptingWriter<W> {
    /// Starts a stream under `key` with associated data `aad`.
    ///
    /// # Errors
    /// [`Random`](crate::Error::Random) if no salt can be drawn.
    pub fn new(inner: W, key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        Ok(Self {
            inner: Some(inner),
            enc: Encoder::new(key, aad, params)?,
            poisoned: false,
        })
    }

    /// The inner writer (complete only after a successful shutdown).
    pub fn into_inner(mut self) -> W {
        self.inner
            .take()
            .expect("inner is present until into_inner")
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        self.inner
            .as_ref()
            .expect("inner is present until into_inner")
    }

    fn inner_pin(&mut self) -> Pin<&mut W> {
        Pin::new(
            self.inner
                .as_mut()
                .expect("inner is present until into_inner"),
        )
    }

    fn check(&self) -> io::Result<()> {
        super::refuse_if_poisoned(self.poisoned)
    }

    /// Writes pending sealed bytes to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.enc.pending().is_empty() {
            match ready!(Pin::new(
                self.inner
                    .as_mut()
                    .expect("inner is present until into_inner")
            )
            .poll_write(cx, self.enc.pending()))
            {
                Ok(0) => {
                    self.poisoned = true;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => self.enc.consume(n),
                Err(e) => {
                    self.poisoned = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        self.enc.seal(last).map_err(|e| {
            self.poisoned = true;
            to_io(e)
        })
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for AsyncEncryptingWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        ready!(this.poll_drain(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.enc.is_finished() {
            return Poll::Ready(Err(io::Error::other("stream writer already shut down")));
        }
        if this.enc.is_full() {
            this.seal(false)?;
            // The sealed chunk stays pending if `inner` is not ready; the
            // next call drains it first.
            ready!(this.poll_drain(cx))?;
        }
        Poll::Ready(Ok(this.enc.accept(data)))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        ready!(this.poll_drain(cx))?;
        this.inner_pin().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        ready!(this.poll_drain(cx))?;
        if !this.enc.is_finished() {
            this.seal(true)?;
            ready!(this.poll_drain(cx))?;
        }
        this.inner_pin().poll_shutdown(cx)
    }
}

impl<W> Drop for AsyncEncryptingWriter<W> {
    fn drop(&mut self) {
        if self.inner.is_some() && self.enc.has_started() && !self.enc.is_finished() {
            tracing::warn!(
                "async stream writer dropped without shutdown(): the output is incomplete and will not decrypt"
            );
        }
    }
}

impl<W> std::fmt::Debug for AsyncEncryptingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEncryptingWriter")
            .field("finished", &self.enc.is_finished())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// Decrypts a stream read sequentially from `R` (async).
///
/// Same guarantees as [`super::DecryptingReader`]: plaintext only from
/// authenticated chunks, end of stream only after the last chunk
/// authenticated, errors of kind `InvalidData` carrying a
/// [`crate::Error`] (see [`super::error_of`]), sticky after the first.
pub struct AsyncDecryptingReader<R> {
    inner: R,
    dec: Decoder,
}

impl<R: AsyncRead + Unpin> AsyncDecryptingReader<R> {
    /// Decrypts the stream in `inner` under `key` and associated data `aad`.
    pub fn new(inner: R, key: &SecretKey, aad: &[u8], params: Params) -> Self {
        Self {
            inner,
            dec: Decoder::new(key, aad, params),
        }
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for AsyncDecryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            // Room for one chunk's plaintext is all a direct open can
            // use; initializing more of a large uninitialized buffer would
            // only cost a memset.
            let room = out.remaining().min(this.dec.chunk_size());
            match this
                .dec
                .step_into(out.initialize_unfilled_to(room))
                .map_err(to_io)?
            {
                Step::Direct(n) => {
                    out.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Step::Ready => {
                    let pt = this.dec.plaintext();
                    let n = pt.len().min(out.remaining());
                    out.put_slice(&pt[..n]);
                    this.dec.consume(n);
                    return Poll::Ready(Ok(()));
                }
                Step::End => return Poll::Ready(Ok(())),
                Step::NeedInput => {
                    let mut rb = ReadBuf::new(this.dec.input());
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
                    let n = rb.filled().len();
                    this.dec.filled(n);
                }
            }
        }
    }
}

impl<R> std::fmt::Debug for AsyncDecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDecryptingReader")
            .finish_non_exhaustive()
    }
}
