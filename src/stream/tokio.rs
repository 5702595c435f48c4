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
use super::header::Header;
use super::params::Params;
use super::{pass, to_io, Gate};
use crate::secret::SecretKey;
use crate::Result;

/// Encrypts everything written to it into `W` (async).
///
/// **Call `shutdown()`** (`AsyncWriteExt::shutdown`): it seals the last
/// chunk, writes it and shuts `W` down. Dropped without a completed
/// shutdown, the writer leaves `W` holding only whole non-final chunks (or
/// nothing), which every reader rejects — never a truncated stream that
/// decrypts. `flush()` flushes only chunks already sealed.
///
/// Memory: one ciphertext chunk, whatever the stream length. A
/// `poll_write` handed more than a whole chunk while nothing is buffered
/// seals that chunk straight from the caller's bytes into the chunk
/// buffer, with no copy first; smaller writes are copied into it. A
/// `poll_write` that took bytes returns their count even when `W` is not
/// ready for the sealed chunk yet: the next call (write, flush or
/// shutdown) writes it first.
pub struct AsyncEncryptingWriter<W> {
    inner: Option<W>,
    enc: Encoder,
    /// Bytes written to `inner` before the stream (a zone's segment
    /// header), and how many of them were written.
    prefix: Box<[u8]>,
    prefix_written: usize,
    poisoned: bool,
    gate: Option<Gate>,
}

impl<W: AsyncWrite + Unpin> AsyncEncryptingWriter<W> {
    /// Starts a stream under `key` with associated data `aad`.
    ///
    /// # Errors
    /// [`Random`](crate::Error::Random) if no salt can be drawn.
    pub fn new(inner: W, key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        Ok(Self::from_encoder(inner, Encoder::new(key, aad, params)?))
    }

    /// A writer with a header the caller drew (zones draw the stream's
    /// salt and nonce prefix with the segment's DEK).
    pub(crate) fn with_header(
        inner: W,
        key: &SecretKey,
        aad: &[u8],
        params: Params,
        header: Header,
    ) -> Result<Self> {
        Ok(Self::from_encoder(
            inner,
            Encoder::with_header(key, aad, params, header)?,
        ))
    }

    fn from_encoder(inner: W, enc: Encoder) -> Self {
        Self {
            inner: Some(inner),
            enc,
            prefix: Box::default(),
            prefix_written: 0,
            poisoned: false,
            gate: None,
        }
    }

    /// Writes `prefix` to `inner` before the stream, at the first poll of
    /// any kind (a zone's segment header).
    pub(crate) fn with_prefix(mut self, prefix: &[u8]) -> Self {
        self.prefix = prefix.into();
        self.prefix_written = 0;
        self
    }

    /// Runs `gate` before sealing each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
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

    /// Writes the rest of the prefix, then pending sealed bytes, to
    /// `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.prefix_written < self.prefix.len() {
            let n = ready!(self.poll_inner_write(cx, Queued::Prefix))?;
            self.prefix_written += n;
        }
        while !self.enc.pending().is_empty() {
            let n = ready!(self.poll_inner_write(cx, Queued::Sealed))?;
            self.enc.consume(n);
        }
        Poll::Ready(Ok(()))
    }

    /// One `poll_write` of the prefix's or the encoder's pending bytes to
    /// `inner`. A failure poisons the writer: part of a chunk may have
    /// reached `inner`.
    fn poll_inner_write(&mut self, cx: &mut Context<'_>, what: Queued) -> Poll<io::Result<usize>> {
        let bytes = match what {
            Queued::Prefix => &self.prefix[self.prefix_written..],
            Queued::Sealed => self.enc.pending(),
        };
        let inner = self
            .inner
            .as_mut()
            .expect("inner is present until into_inner");
        match ready!(Pin::new(inner).poll_write(cx, bytes)) {
            Ok(0) => {
                self.poisoned = true;
                Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
            }
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => {
                self.poisoned = true;
                Poll::Ready(Err(e))
            }
        }
    }

    /// Drains after a seal without waiting: `Ok(true)` once everything is
    /// written, `Ok(false)` if `inner` is not ready (the sealed bytes stay
    /// pending for the next call). A `poll_write` that sealed must not
    /// return `Pending`: the encoder owes a byte of the caller's data.
    fn try_drain(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        match self.poll_drain(cx) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        self.enc.seal(last).map_err(|e| {
            self.poisoned = true;
            to_io(e)
        })
    }

    fn seal_full_from(&mut self, data: &[u8]) -> io::Result<()> {
        self.enc.seal_full_from(data).map_err(|e| {
            self.poisoned = true;
            to_io(e)
        })
    }
}

/// Which bytes [`AsyncEncryptingWriter::poll_inner_write`] writes.
#[derive(Clone, Copy)]
enum Queued {
    Prefix,
    Sealed,
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
        // Every path that seals a chunk as not the last ends in `accept`
        // below, which takes at least one more byte (into the buffer, or
        // carried while `inner` is not ready): the stream can always be
        // shut down after this call returns.
        let mut drained = true;
        if this.enc.is_full() {
            pass(&this.gate).map_err(to_io)?;
            this.seal(false)?;
            drained = this.try_drain(cx)?;
        }
        // While nothing is buffered and more than a whole chunk remains,
        // seal it straight from `data` into the chunk buffer: no copy
        // first. At least one byte is left for `accept`, so a chunk sealed
        // here is never the stream's last.
        let mut taken = 0;
        while drained && this.enc.is_empty() && data.len() - taken > this.enc.chunk_capacity() {
            if let Err(e) = pass(&this.gate) {
                if taken == 0 && !this.enc.owes_byte() {
                    return Poll::Ready(Err(to_io(e)));
                }
                // Report what was taken; the next seal meets the gate.
                break;
            }
            let end = taken + this.enc.chunk_capacity();
            this.seal_full_from(&data[taken..end])?;
            taken = end;
            drained = this.try_drain(cx)?;
        }
        Poll::Ready(Ok(taken + this.enc.accept(&data[taken..])))
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
            pass(&this.gate).map_err(to_io)?;
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
    gate: Option<Gate>,
}

impl<R: AsyncRead + Unpin> AsyncDecryptingReader<R> {
    /// Decrypts the stream in `inner` under `key` and associated data `aad`.
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
                    pass(&this.gate).map_err(to_io)?;
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Waker;

    use proptest::prelude::*;

    use super::*;
    use crate::stream::{encrypt_with_header, Threads};
    use crate::Error;

    const CHUNK: usize = 4096;

    fn key() -> SecretKey {
        SecretKey::from_slice(&[9; 32]).unwrap()
    }

    fn params() -> Params {
        Params::new(CHUNK).unwrap()
    }

    fn header() -> Header {
        Header::from_random(&[0x5a; super::super::HEADER_LEN - 1])
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(73) ^ 0x11).collect()
    }

    /// What the one-shot encryption makes of `pt` under the fixed header:
    /// the bytes every writer must produce.
    fn one_shot(pt: &[u8]) -> Vec<u8> {
        let p = params();
        let mut out = vec![0u8; p.ciphertext_len(pt.len() as u64).unwrap() as usize];
        encrypt_with_header(&key(), b"ad", p, header(), pt, &mut out, Threads::One).unwrap();
        out
    }

    /// A sink that, poll by poll, follows `schedule` (cycled): `None` is
    /// not ready (it wakes the task and returns `Pending`), `Some(n)`
    /// takes at most `n` bytes.
    struct Flaky {
        written: Vec<u8>,
        schedule: Vec<Option<usize>>,
        polls: usize,
    }

    impl Flaky {
        fn new(schedule: Vec<Option<usize>>) -> Self {
            Self {
                written: Vec::new(),
                schedule,
                polls: 0,
            }
        }

        fn next(&mut self, cx: &mut Context<'_>) -> Option<usize> {
            let step = self.schedule[self.polls % self.schedule.len()];
            self.polls += 1;
            if step.is_none() {
                cx.waker().wake_by_ref();
            }
            step
        }
    }

    impl AsyncWrite for Flaky {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            match this.next(cx) {
                None => Poll::Pending,
                Some(max) => {
                    let n = buf.len().min(max.max(1));
                    this.written.extend_from_slice(&buf[..n]);
                    Poll::Ready(Ok(n))
                }
            }
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.get_mut().next(cx) {
                None => Poll::Pending,
                Some(_) => Poll::Ready(Ok(())),
            }
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    /// Polls `f` until it is ready (the sinks here wake at once), at most
    /// a few thousand times.
    fn block_on<T>(mut f: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10_000 {
            if let Poll::Ready(v) = f(&mut cx) {
                return v;
            }
        }
        panic!("never ready");
    }

    fn writer(sink: Flaky) -> AsyncEncryptingWriter<Flaky> {
        AsyncEncryptingWriter::with_header(sink, &key(), b"ad", params(), header()).unwrap()
    }

    /// Writes `pt` in pieces of `sizes` (cycled), each `poll_write` polled
    /// once: a `Pending` one is given up, as a cancelled write would be,
    /// and the next piece starts where the last accepted byte ended. After
    /// `attempts` writes, or all of `pt`, shuts down. Returns the sink's
    /// bytes and how much of `pt` the writer reported taken.
    fn write_giving_up(
        pt: &[u8],
        sizes: &[usize],
        schedule: Vec<Option<usize>>,
        attempts: usize,
    ) -> (Vec<u8>, usize) {
        let mut w = writer(Flaky::new(schedule));
        let mut cx = Context::from_waker(Waker::noop());
        let mut at = 0;
        for &size in sizes.iter().cycle().take(attempts) {
            if at == pt.len() {
                break;
            }
            let end = (at + size.max(1)).min(pt.len());
            if let Poll::Ready(r) = Pin::new(&mut w).poll_write(&mut cx, &pt[at..end]) {
                let n = r.unwrap();
                assert!(n > 0 && n <= end - at, "took {n} of {}", end - at);
                at += n;
            }
        }
        block_on(|cx| Pin::new(&mut w).poll_shutdown(cx)).unwrap();
        (w.into_inner().written, at)
    }

    #[test]
    fn bytes_match_the_one_shot_however_the_writes_fall() {
        let cap0 = params().first_chunk_plaintext_len();
        let cap = params().plaintext_chunk_len();
        for len in [
            0,
            1,
            cap0 - 1,
            cap0,
            cap0 + 1,
            cap0 + cap,
            cap0 + cap + 1,
            5 * cap + 7,
        ] {
            let pt = data(len);
            let want = one_shot(&pt);
            for sizes in [
                vec![1usize << 20],
                vec![cap0, cap],
                vec![cap0 + 1, cap + 1],
                vec![2 * cap + 3],
                vec![1, 4095, 3 * cap],
                vec![cap - 1],
            ] {
                let (got, taken) = write_giving_up(&pt, &sizes, vec![Some(usize::MAX)], usize::MAX);
                assert_eq!(taken, len);
                assert_eq!(got, want, "{len} bytes in writes of {sizes:?}");
            }
        }
    }

    #[test]
    fn a_whole_chunk_from_the_caller_is_sealed_without_being_buffered() {
        // One write of more than a chunk: the first chunk leaves at once,
        // sealed from the caller's bytes; the encoder keeps the rest, less
        // than a chunk, and the stream ends after it.
        let cap0 = params().first_chunk_plaintext_len();
        let pt = data(cap0 + 10);
        let mut w = writer(Flaky::new(vec![Some(usize::MAX)]));
        let n = block_on(|cx| Pin::new(&mut w).poll_write(cx, &pt)).unwrap();
        assert_eq!(n, pt.len());
        assert_eq!(w.get_ref().written.len(), CHUNK, "the first chunk is out");
        block_on(|cx| Pin::new(&mut w).poll_shutdown(cx)).unwrap();
        assert_eq!(w.into_inner().written, one_shot(&pt));
    }

    #[test]
    fn a_write_that_meets_a_busy_sink_still_leaves_a_stream_that_ends() {
        // The sink is busy right after the first chunk is sealed: the
        // write reports what it took, the caller gives up on the rest and
        // shuts down, and the stream decrypts to exactly what was taken.
        let cap0 = params().first_chunk_plaintext_len();
        for pt_len in [cap0 + 1, cap0 + 2, 3 * CHUNK] {
            let pt = data(pt_len);
            for schedule in [
                vec![None, Some(usize::MAX)],
                vec![Some(100), None],
                vec![Some(CHUNK), None, None],
            ] {
                // Fill exactly one chunk first, then offer the rest once.
                let mut w = writer(Flaky::new(schedule.clone()));
                let mut cx = Context::from_waker(Waker::noop());
                let first = block_on(|cx| Pin::new(&mut w).poll_write(cx, &pt[..cap0])).unwrap();
                assert_eq!(first, cap0);
                let more = match Pin::new(&mut w).poll_write(&mut cx, &pt[cap0..]) {
                    Poll::Ready(r) => r.unwrap(),
                    Poll::Pending => 0,
                };
                block_on(|cx| Pin::new(&mut w).poll_shutdown(cx)).unwrap();
                let taken = cap0 + more;
                assert_eq!(
                    w.into_inner().written,
                    one_shot(&pt[..taken]),
                    "{pt_len} bytes, sink {schedule:?}"
                );
            }
        }
    }

    #[test]
    fn the_header_prefix_goes_first_even_for_an_empty_stream() {
        let mut w = writer(Flaky::new(vec![Some(3), None])).with_prefix(b"segment header");
        block_on(|cx| Pin::new(&mut w).poll_shutdown(cx)).unwrap();
        let got = w.into_inner().written;
        assert_eq!(&got[..14], b"segment header");
        assert_eq!(&got[14..], &one_shot(b"")[..]);

        // Nothing is written before the first poll.
        let w = writer(Flaky::new(vec![Some(1)])).with_prefix(b"h");
        assert!(w.get_ref().written.is_empty());
    }

    /// A gate that refuses exactly its `fail_at`-th run (counting from 1).
    fn gate_failing_once(fail_at: usize) -> (Gate, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let gate: Gate = Arc::new(move || {
            if counter.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
                Err(Error::misuse("gate closed for the test"))
            } else {
                Ok(())
            }
        });
        (gate, runs)
    }

    #[test]
    fn a_gate_that_refuses_between_two_seals_of_one_write_leaves_a_stream_that_ends() {
        // A full buffer is sealed (gate run 1), then the gate refuses
        // before the next chunk (run 2): the write still takes a byte after
        // the sealed chunk, so the stream can end there once the gate
        // opens again.
        let cap0 = params().first_chunk_plaintext_len();
        let pt = data(cap0 + 3 * CHUNK);
        let (gate, runs) = gate_failing_once(2);
        let mut w = writer(Flaky::new(vec![Some(usize::MAX)])).with_gate(gate);
        assert_eq!(
            block_on(|cx| Pin::new(&mut w).poll_write(cx, &pt[..cap0])).unwrap(),
            cap0
        );
        let n = block_on(|cx| Pin::new(&mut w).poll_write(cx, &pt[cap0..])).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(n >= 1);
        block_on(|cx| Pin::new(&mut w).poll_shutdown(cx)).unwrap();
        assert_eq!(w.into_inner().written, one_shot(&pt[..cap0 + n]));

        // Refused before anything is sealed: an error, nothing taken.
        let (gate, _) = gate_failing_once(1);
        let mut w = writer(Flaky::new(vec![Some(usize::MAX)])).with_gate(gate);
        let e = block_on(|cx| Pin::new(&mut w).poll_write(cx, &pt)).unwrap_err();
        assert!(matches!(
            super::super::error_of(&e),
            Some(Error::Misuse { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the write sizes, the sink's readiness and partial
        /// writes, and the writes given up on `Pending`, the stream is
        /// byte for byte the one-shot encryption of exactly the bytes the
        /// writer reported taken.
        #[test]
        fn every_reported_byte_and_no_other_reaches_the_stream(
            len in 0usize..6 * CHUNK,
            sizes in proptest::collection::vec(1usize..3 * CHUNK, 1..8),
            schedule in proptest::collection::vec(
                prop_oneof![Just(None), (1usize..2 * CHUNK).prop_map(Some)],
                1..6,
            ),
            attempts in 0usize..30,
        ) {
            let mut schedule = schedule;
            schedule.push(Some(usize::MAX)); // never stuck
            let pt = data(len);
            let (got, taken) = write_giving_up(&pt, &sizes, schedule, attempts);
            prop_assert_eq!(got, one_shot(&pt[..taken]));
        }
    }
}
