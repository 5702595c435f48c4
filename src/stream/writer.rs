//! [`EncryptingWriter`]: a blocking `std::io::Write` adapter that encrypts
//! into an inner writer.
//!
//! This module owns the blocking write loop around [`super::encoder`] and
//! the [`Durable`] sinks a durable finish syncs; it must not decide the
//! format.

use std::fs::File;
use std::io::{self, BufWriter, Write};

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
/// **Call [`finish`](Self::finish)**, or
/// [`finish_durable`](Self::finish_durable) to also sync a file. It seals
/// the last chunk and returns `W`. If the writer is dropped without `finish`, the buffered tail is
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
        super::refuse_if_poisoned(self.poisoned)
    }

    /// Seals the last chunk, writes it, flushes and returns the inner
    /// writer. It does not sync: after a crash the stream may be missing
    /// or cut short on disk (readers then refuse it). For a file that must
    /// survive a crash once this returns, use
    /// [`finish_durable`](Self::finish_durable).
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

impl<W: Write + Durable> EncryptingWriter<W> {
    /// [`finish`](Self::finish), then makes the stream durable
    /// ([`Durable::make_durable`]: `fsync` for a [`File`], flush then
    /// `fsync` for a [`BufWriter<File>`]) before returning the inner
    /// writer: once this returns `Ok`, the whole stream survives a crash
    /// or power loss. Only sinks that can sync have this method, so a
    /// durable finish cannot silently skip the sync.
    ///
    /// The file's *name* is another matter: a newly created file's
    /// directory entry is durable only once its directory is synced too
    /// (or the usual way: write to a temporary name, finish durably,
    /// rename into place, sync the directory).
    ///
    /// ```
    /// use std::io::Write;
    /// use cmek::{stream, SecretKey};
    /// let key = SecretKey::generate()?;
    /// let file = tempfile::tempfile()?;
    /// let mut w = stream::EncryptingWriter::new(file, &key, b"000042.log", stream::Params::default())?;
    /// w.write_all(b"rows")?;
    /// let file = w.finish_durable()?; // written, flushed and fsynced
    /// # drop(file);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`finish`](Self::finish); [`Io`](crate::Error::Io) if the sync
    /// fails. The stream must then be taken as not written: do not retry
    /// the sync and trust it (after a failed `fsync` the system may
    /// have dropped the unwritten data), write it again instead.
    pub fn finish_durable(self) -> Result<W> {
        let mut inner = self.finish()?;
        inner.make_durable()?;
        Ok(inner)
    }
}

/// A sink that can make everything written to it durable, for
/// [`EncryptingWriter::finish_durable`].
///
/// Implemented for [`File`] and `&File` (`sync_all`: data and metadata),
/// for [`BufWriter`] of a durable sink (flush, then sync the sink), and
/// through `&mut T` and `Box<T>`. Implement it for a sink of your own (a
/// file wrapper, a log device) so that it can be finished durably.
pub trait Durable {
    /// Blocks until everything written so far would survive a crash or
    /// power loss.
    ///
    /// # Errors
    /// The sync's error: the data may not be durable.
    fn make_durable(&mut self) -> io::Result<()>;
}

impl Durable for File {
    fn make_durable(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

impl Durable for &File {
    fn make_durable(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

impl<W: Write + Durable> Durable for BufWriter<W> {
    fn make_durable(&mut self) -> io::Result<()> {
        self.flush()?;
        self.get_mut().make_durable()
    }
}

impl<T: Durable + ?Sized> Durable for &mut T {
    fn make_durable(&mut self) -> io::Result<()> {
        (**self).make_durable()
    }
}

impl<T: Durable + ?Sized> Durable for Box<T> {
    fn make_durable(&mut self) -> io::Result<()> {
        (**self).make_durable()
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
                // Once a chunk was sealed above as not the last, the stream
                // needs a byte after it: take it, and let the next seal
                // meet the gate.
                if taken == 0 && !self.enc.owes_byte() {
                    return Err(to_io(e));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{decrypt_to_bytes, Threads};

    /// A sink that records its bytes and, at each sync, how many it had.
    #[derive(Debug, Default)]
    struct Recording {
        written: Vec<u8>,
        synced_at: Vec<usize>,
        fail_sync: bool,
    }

    impl Write for Recording {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Durable for Recording {
        fn make_durable(&mut self) -> io::Result<()> {
            if self.fail_sync {
                return Err(io::Error::other("injected sync failure"));
            }
            self.synced_at.push(self.written.len());
            Ok(())
        }
    }

    fn key() -> SecretKey {
        SecretKey::from_slice(&[5; 32]).unwrap()
    }

    fn write_all<W: Write>(inner: W, data: &[u8]) -> EncryptingWriter<W> {
        let params = Params::new(4096).unwrap();
        let mut w = EncryptingWriter::new(inner, &key(), b"ad", params).unwrap();
        w.write_all(data).unwrap();
        w
    }

    #[test]
    fn finish_durable_syncs_once_after_the_last_chunk() {
        let data = vec![3u8; 10_000];
        let sink = write_all(Recording::default(), &data)
            .finish_durable()
            .unwrap();
        assert_eq!(sink.synced_at, [sink.written.len()], "one sync, after all");
        let back = decrypt_to_bytes(
            &key(),
            b"ad",
            Params::new(4096).unwrap(),
            &sink.written,
            Threads::One,
        )
        .unwrap();
        assert_eq!(&back[..], &data[..]);

        // A plain finish does not sync.
        let sink = write_all(Recording::default(), &data).finish().unwrap();
        assert!(sink.synced_at.is_empty());
    }

    #[test]
    fn a_buffered_sink_is_flushed_before_it_syncs() {
        let data = vec![4u8; 10_000];
        let buffered = BufWriter::with_capacity(1 << 20, Recording::default());
        let sink = write_all(buffered, &data).finish_durable().unwrap();
        let inner = sink.into_inner().map_err(|e| e.into_error()).unwrap();
        assert_eq!(inner.synced_at, [inner.written.len()]);
        assert!(inner.written.len() > data.len());

        // Through `&mut`, the caller keeps its sink.
        let mut own = Recording::default();
        write_all(&mut own, &data).finish_durable().unwrap();
        assert_eq!(own.synced_at, [own.written.len()]);
    }

    #[test]
    fn a_failed_sync_is_an_error() {
        let sink = Recording {
            fail_sync: true,
            ..Recording::default()
        };
        let e = write_all(sink, b"data").finish_durable().unwrap_err();
        assert!(matches!(e, crate::Error::Io { .. }), "{e}");
    }

    #[test]
    fn a_gate_that_refuses_between_two_seals_of_one_write_leaves_a_stream_that_ends() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // The gate refuses only its second run: after the full buffer was
        // sealed as not the last (run 1), before the next chunk. The write
        // still takes a byte after the sealed chunk, so the stream ends
        // cleanly once the gate lets `finish` through.
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&runs);
        let gate: Gate = Arc::new(move || {
            if counter.fetch_add(1, Ordering::SeqCst) == 1 {
                Err(crate::Error::misuse("gate closed for the test"))
            } else {
                Ok(())
            }
        });
        let params = Params::new(4096).unwrap();
        let data = vec![6u8; 4 * 4096];
        let mut w = EncryptingWriter::new(Vec::new(), &key(), b"ad", params)
            .unwrap()
            .with_gate(gate);
        let cap0 = params.first_chunk_plaintext_len();
        assert_eq!(w.write(&data[..cap0]).unwrap(), cap0);
        let n = w.write(&data[cap0..]).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(n >= 1);
        let sealed = w.finish().unwrap();
        let back = decrypt_to_bytes(&key(), b"ad", params, &sealed, Threads::One).unwrap();
        assert_eq!(&back[..], &data[..cap0 + n]);
    }

    #[test]
    fn a_file_finishes_durably_and_reads_back() {
        let mut file = write_all(tempfile::tempfile().unwrap(), b"rows")
            .finish_durable()
            .unwrap();
        use std::io::{Read, Seek};
        file.rewind().unwrap();
        let mut sealed = Vec::new();
        file.read_to_end(&mut sealed).unwrap();
        let back = decrypt_to_bytes(
            &key(),
            b"ad",
            Params::new(4096).unwrap(),
            &sealed,
            Threads::One,
        )
        .unwrap();
        assert_eq!(&back[..], b"rows");
    }
}
