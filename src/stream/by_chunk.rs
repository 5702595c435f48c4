//! [`ChunkSealer`] and [`ChunkOpener`]: the stream one chunk at a
//! time, for callers that manage their own buffers.
//!
//! The `Read`/`Write` adapters copy: a writer must keep the bytes it is
//! given until a chunk is full, and a reader must hold a chunk until
//! the caller takes it. A caller that already holds whole chunks — a
//! pipeline with its own I/O buffers, a storage engine that lays out pages
//! itself — can seal from its plaintext buffer straight into its output
//! buffer, and open the other way, touching each byte once. The format is
//! the same stream; this module only moves the chunk boundaries into the
//! caller's hands, and it must not do I/O.

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, too_many_chunks, Params, MAX_CHUNKS};
use super::{pass, Gate};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// Encrypts a stream one chunk at a time into buffers the caller owns.
///
/// Write [`stream_header`](Self::stream_header) first, then each sealed
/// chunk in order. Every chunk but the last takes exactly
/// [`plaintext_len`](Self::plaintext_len) bytes (the first is shorter than
/// the others, because the header shares its space). The last takes at most
/// that, and at least one byte unless it is the only chunk (an empty
/// stream). So **seal a full chunk as not last only once you know more
/// data follows**; at the end, seal what remains with `last = true`.
///
/// The output is byte for byte what [`EncryptingWriter`](super::EncryptingWriter)
/// writes, and every reader of the crate reads it.
///
/// ```
/// use cmek::{stream, SecretKey};
/// use cmek::stream::{Params, ChunkSealer};
/// let key = SecretKey::generate()?;
/// let params = Params::new(4096)?;
/// let data = vec![7u8; 10_000];
/// let mut sealer = ChunkSealer::new(&key, b"file 7", params)?;
/// let mut out = sealer.stream_header().to_vec();
/// let mut rest = &data[..];
/// loop {
///     let n = sealer.plaintext_len();
///     let last = rest.len() <= n; // a full chunk is last only if nothing follows
///     let take = rest.len().min(n);
///     let at = out.len();
///     out.resize(at + take + stream::ChunkSealer::OVERHEAD, 0);
///     sealer.seal(&rest[..take], last, &mut out[at..])?;
///     rest = &rest[take..];
///     if last {
///         break;
///     }
/// }
/// let mut opened = vec![0u8; data.len()];
/// stream::decrypt_into(&key, b"file 7", params, &out, &mut opened, stream::Threads::One)?;
/// assert_eq!(opened, data);
/// # Ok::<(), cmek::Error>(())
/// ```
pub struct ChunkSealer {
    cipher: ChunkCipher,
    header: Header,
    params: Params,
    index: u64,
    finished: bool,
    gate: Option<Gate>,
}

impl ChunkSealer {
    /// Bytes a sealed chunk adds to its plaintext (the GCM tag).
    pub const OVERHEAD: usize = TAG_LEN;

    /// Starts a stream under `key` with associated data `aad`.
    ///
    /// # Errors
    /// [`Error::Random`] if no salt can be drawn.
    pub fn new(key: &SecretKey, aad: &[u8], params: Params) -> Result<Self> {
        Self::with_header(key, aad, params, Header::generate()?)
    }

    /// A sealer with a header the caller drew (zones draw it with the
    /// segment's DEK in one OS call).
    pub(crate) fn with_header(
        key: &SecretKey,
        aad: &[u8],
        params: Params,
        header: Header,
    ) -> Result<Self> {
        Ok(Self {
            cipher: ChunkCipher::new(key, aad, &header)?,
            header,
            params,
            index: 0,
            finished: false,
            gate: None,
        })
    }

    /// Runs `gate` before sealing each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The stream header ([`HEADER_LEN`](super::HEADER_LEN) bytes), to write before the first
    /// chunk.
    pub fn stream_header(&self) -> &[u8] {
        self.header.as_bytes()
    }

    /// The stream's parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Plaintext bytes the next chunk takes (exactly, unless it is the
    /// last).
    pub fn plaintext_len(&self) -> usize {
        if self.index == 0 {
            self.params.first_chunk_plaintext_len()
        } else {
            self.params.plaintext_chunk_len()
        }
    }

    /// Chunks sealed so far.
    pub fn chunks_sealed(&self) -> u64 {
        self.index
    }

    /// True once the last chunk has been sealed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Seals the next chunk from `plaintext` into the start of `out` and
    /// returns how many bytes it wrote (`plaintext.len() +` [`OVERHEAD`](Self::OVERHEAD)).
    ///
    /// # Errors
    /// [`Error::Misuse`] after the last chunk, for a chunk of
    /// the wrong length (see the type's documentation), or if `out` is too
    /// short — nothing is sealed then, and the call can be repeated with
    /// the right arguments; [`Error::LimitExceeded`] past 2^32 chunks;
    /// [`Error::ZoneUnavailable`] when the stream belongs to a zone that
    /// has become unavailable.
    pub fn seal(&mut self, plaintext: &[u8], last: bool, out: &mut [u8]) -> Result<usize> {
        if self.finished {
            return Err(Error::misuse("the stream's last chunk is already sealed"));
        }
        let want = self.plaintext_len();
        let n = plaintext.len();
        if (!last && n != want) || n > want {
            return Err(Error::misuse(format!(
                "chunk {} takes {want} plaintext bytes{}, not {n}",
                self.index,
                if last { " at most" } else { "" }
            )));
        }
        if last && n == 0 && self.index > 0 {
            return Err(Error::misuse(
                "the last chunk must hold at least one byte: seal the one before it as last",
            ));
        }
        if out.len() < n + TAG_LEN {
            return Err(Error::misuse(format!(
                "output buffer has {} bytes, the sealed chunk needs {}",
                out.len(),
                n + TAG_LEN
            )));
        }
        if !last && self.index + 1 >= MAX_CHUNKS {
            return Err(too_many_chunks());
        }
        pass(&self.gate)?;
        let index = index_u32(self.index)?;
        self.cipher
            .seal_from(index, last, plaintext, &mut out[..n + TAG_LEN])?;
        self.index += 1;
        self.finished = last;
        Ok(n + TAG_LEN)
    }
}

impl std::fmt::Debug for ChunkSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSealer")
            .field("chunks_sealed", &self.index)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Decrypts a stream one chunk at a time from buffers the caller owns.
///
/// Give it the stream header, then each sealed chunk in order: every
/// chunk but the last is exactly [`sealed_len`](Self::sealed_len) bytes;
/// the last is at most that and is the one after which the input ends. The
/// `last` flag is authenticated, so a wrong guess is an
/// [`Integrity`](Error::Integrity) error, never wrong plaintext. **The
/// stream is complete only once a chunk opened with `last = true`**
/// ([`is_finished`](Self::is_finished)): input that ends earlier was
/// truncated. After any error every later call fails.
pub struct ChunkOpener {
    cipher: ChunkCipher,
    params: Params,
    index: u64,
    finished: bool,
    failed: bool,
    gate: Option<Gate>,
}

impl ChunkOpener {
    /// Prepares to decrypt the stream whose header is the first
    /// [`HEADER_LEN`](super::HEADER_LEN) bytes of `stream_header`, under `key` and associated
    /// data `aad`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the header is short or not a stream header.
    pub fn new(key: &SecretKey, aad: &[u8], params: Params, stream_header: &[u8]) -> Result<Self> {
        let header = Header::parse(stream_header)?;
        Ok(Self {
            cipher: ChunkCipher::new(key, aad, &header)?,
            params,
            index: 0,
            finished: false,
            failed: false,
            gate: None,
        })
    }

    /// Runs `gate` before opening each chunk.
    pub(crate) fn with_gate(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The stream's parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Sealed length of the next chunk unless it is the last (which may
    /// be shorter).
    pub fn sealed_len(&self) -> usize {
        self.params.full_chunk_len(self.index)
    }

    /// Plaintext bytes the next chunk holds at most.
    pub fn plaintext_len(&self) -> usize {
        self.sealed_len() - TAG_LEN
    }

    /// Chunks opened so far.
    pub fn chunks_opened(&self) -> u64 {
        self.index
    }

    /// True once the chunk marked last has authenticated.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Opens the next chunk, `sealed`, into the start of `out` and
    /// returns the plaintext length.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a chunk of impossible length or data
    /// after the last chunk; [`Error::Misuse`] if `out` is too
    /// short (nothing is opened; repeat with a larger buffer);
    /// [`Error::Integrity`] if the chunk does not authenticate as the
    /// next one with this `last` flag — `out` then holds no plaintext;
    /// [`Error::ZoneUnavailable`] when the stream belongs to a zone that
    /// has become unavailable.
    pub fn open(&mut self, sealed: &[u8], last: bool, out: &mut [u8]) -> Result<usize> {
        if self.failed {
            return Err(Error::tampered("stream (an earlier chunk failed)"));
        }
        if self.finished {
            self.failed = true;
            return Err(Error::malformed("stream", "data after the last chunk"));
        }
        let full = self.sealed_len();
        let len = sealed.len();
        if (!last && len != full)
            || len > full
            || len < TAG_LEN
            || (last && self.index > 0 && len == TAG_LEN)
        {
            self.failed = true;
            return Err(Error::malformed(
                "stream",
                format!("chunk {} has {len} bytes: truncated or padded", self.index),
            ));
        }
        let n = len - TAG_LEN;
        if out.len() < n {
            return Err(Error::misuse(format!(
                "output buffer has {} bytes, the chunk holds {n}",
                out.len()
            )));
        }
        pass(&self.gate)?;
        let index = index_u32(self.index)
            .map_err(|_| Error::malformed("stream", "more chunks than a 32-bit index allows"));
        let opened =
            index.and_then(|index| self.cipher.open_to(index, last, sealed, &mut out[..n]));
        if let Err(e) = opened {
            self.failed = true;
            return Err(e);
        }
        self.index += 1;
        self.finished = last;
        Ok(n)
    }
}

impl std::fmt::Debug for ChunkOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkOpener")
            .field("chunks_opened", &self.index)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{DecryptingReader, EncryptingWriter, Threads, HEADER_LEN};
    use std::io::{Read, Write};

    fn key() -> SecretKey {
        SecretKey::from_slice(&[0x42; 32]).unwrap()
    }

    /// Seals `data` in chunks, the whole way, into one buffer.
    fn seal_all(sealer: &mut ChunkSealer, data: &[u8]) -> Vec<u8> {
        let mut out = sealer.stream_header().to_vec();
        let mut rest = data;
        loop {
            let n = sealer.plaintext_len();
            let last = rest.len() <= n;
            let take = rest.len().min(n);
            let at = out.len();
            out.resize(at + take + ChunkSealer::OVERHEAD, 0);
            let wrote = sealer.seal(&rest[..take], last, &mut out[at..]).unwrap();
            assert_eq!(wrote, take + TAG_LEN);
            rest = &rest[take..];
            if last {
                return out;
            }
        }
    }

    /// Opens a whole stream chunk by chunk.
    fn open_all(params: Params, ct: &[u8]) -> Result<Vec<u8>> {
        let mut opener = ChunkOpener::new(&key(), b"ad", params, ct)?;
        let mut rest = &ct[HEADER_LEN..];
        let mut out = Vec::new();
        let mut buf = vec![0u8; params.chunk_size()];
        loop {
            let full = opener.sealed_len();
            let last = rest.len() <= full;
            let take = rest.len().min(full);
            let n = opener.open(&rest[..take], last, &mut buf)?;
            out.extend_from_slice(&buf[..n]);
            rest = &rest[take..];
            if last {
                assert!(opener.is_finished());
                return Ok(out);
            }
        }
    }

    #[test]
    fn round_trips_with_every_reader_and_writer() {
        let params = Params::new(4096).unwrap();
        let first = params.first_chunk_plaintext_len();
        let later = params.plaintext_chunk_len();
        for len in [
            0,
            1,
            first - 1,
            first,
            first + 1,
            first + later,
            first + later + 1,
            50_000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
            let mut sealer = ChunkSealer::new(&key(), b"ad", params).unwrap();
            let ct = seal_all(&mut sealer, &data);
            assert!(sealer.is_finished());
            assert_eq!(ct.len() as u64, params.ciphertext_len(len as u64).unwrap());
            // Every reader reads it.
            assert_eq!(
                &crate::stream::decrypt_to_bytes(&key(), b"ad", params, &ct, Threads::One).unwrap()
                    [..],
                &data[..]
            );
            let mut via_reader = Vec::new();
            DecryptingReader::new(&ct[..], &key(), b"ad", params)
                .read_to_end(&mut via_reader)
                .unwrap();
            assert_eq!(via_reader, data);
            // And the opener reads what the writer writes.
            let mut w = EncryptingWriter::new(Vec::new(), &key(), b"ad", params).unwrap();
            w.write_all(&data).unwrap();
            let from_writer = w.finish().unwrap();
            assert_eq!(open_all(params, &from_writer).unwrap(), data, "{len}");
            assert_eq!(open_all(params, &ct).unwrap(), data, "{len}");
        }
    }

    #[test]
    fn wrong_lengths_are_refused_before_sealing() {
        let params = Params::new(4096).unwrap();
        let mut s = ChunkSealer::new(&key(), b"ad", params).unwrap();
        let n = s.plaintext_len();
        let data = vec![1u8; n + 1];
        let mut out = vec![0u8; n + 1 + TAG_LEN];
        for (len, last) in [(n - 1, false), (n + 1, false), (n + 1, true)] {
            assert!(matches!(
                s.seal(&data[..len], last, &mut out),
                Err(Error::Misuse { .. })
            ));
        }
        assert!(matches!(
            s.seal(&data[..n], false, &mut out[..n + TAG_LEN - 1]),
            Err(Error::Misuse { .. })
        ));
        assert_eq!(s.chunks_sealed(), 0, "nothing sealed by a refused call");
        s.seal(&data[..n], false, &mut out).unwrap();
        // An empty last chunk after a full one is refused.
        assert!(matches!(
            s.seal(&[], true, &mut out),
            Err(Error::Misuse { .. })
        ));
        s.seal(&data[..1], true, &mut out).unwrap();
        assert!(matches!(
            s.seal(&data[..1], true, &mut out),
            Err(Error::Misuse { .. })
        ));
    }

    #[test]
    fn truncation_reordering_and_false_last_flags_fail() {
        let params = Params::new(4096).unwrap();
        let data = vec![9u8; 14_000]; // four chunks
        let mut s = ChunkSealer::new(&key(), b"ad", params).unwrap();
        let ct = seal_all(&mut s, &data);
        let body = &ct[HEADER_LEN..];
        let full0 = params.full_chunk_len(0);
        let full1 = params.full_chunk_len(1);
        let (seg0, rest) = body.split_at(full0);
        let (seg1, rest) = rest.split_at(full1);
        let (seg2, seg3) = rest.split_at(full1);
        let mut buf = vec![0u8; 4096];

        // Claiming a middle chunk is the last: truncation at a boundary.
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct).unwrap();
        o.open(seg0, false, &mut buf).unwrap();
        assert!(matches!(
            o.open(seg1, true, &mut buf),
            Err(Error::Integrity { .. })
        ));
        assert!(buf.iter().all(|&b| b == 0), "no plaintext after a failure");
        assert!(o.open(seg2, false, &mut buf).is_err(), "fails for good");

        // Chunks out of order, or one dropped.
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct).unwrap();
        o.open(seg0, false, &mut buf).unwrap();
        assert!(matches!(
            o.open(seg2, false, &mut buf),
            Err(Error::Integrity { .. })
        ));

        // Wrong associated data.
        let mut o = ChunkOpener::new(&key(), b"other", params, &ct).unwrap();
        assert!(o.open(seg0, false, &mut buf).is_err());

        // A short middle chunk, or data after the last one.
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct).unwrap();
        assert!(matches!(
            o.open(&seg0[..full0 - 1], false, &mut buf),
            Err(Error::Malformed { .. })
        ));
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct).unwrap();
        o.open(seg0, false, &mut buf).unwrap();
        o.open(seg1, false, &mut buf).unwrap();
        assert!(!o.is_finished());
        o.open(seg2, false, &mut buf).unwrap();
        o.open(seg3, true, &mut buf).unwrap();
        assert!(o.is_finished());
        assert!(matches!(
            o.open(seg3, true, &mut buf),
            Err(Error::Malformed { .. })
        ));

        // A buffer too small is a misuse that consumes nothing.
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct).unwrap();
        assert!(matches!(
            o.open(seg0, false, &mut buf[..10]),
            Err(Error::Misuse { .. })
        ));
        assert_eq!(o.open(seg0, false, &mut buf).unwrap(), full0 - TAG_LEN);
    }

    #[test]
    fn the_gate_stops_sealing_and_opening() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let open = Arc::new(AtomicBool::new(true));
        let gate_flag = Arc::clone(&open);
        let gate: Gate = Arc::new(move || {
            if gate_flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(Error::KeyUnavailable {
                    key: "local:test".into(),
                    state: crate::provider::KeyState::Disabled,
                })
            }
        });
        let params = Params::new(4096).unwrap();
        let mut s = ChunkSealer::new(&key(), b"ad", params)
            .unwrap()
            .with_gate(Arc::clone(&gate));
        let n = s.plaintext_len();
        let mut out = vec![0u8; 4096];
        let wrote = s.seal(&vec![1u8; n], false, &mut out).unwrap();
        open.store(false, Ordering::SeqCst);
        assert!(matches!(
            s.seal(&[1u8; 5], true, &mut out),
            Err(Error::KeyUnavailable { .. })
        ));
        open.store(true, Ordering::SeqCst);
        let mut ct = s.stream_header().to_vec();
        ct.extend_from_slice(&out[..wrote]);
        let mut o = ChunkOpener::new(&key(), b"ad", params, &ct)
            .unwrap()
            .with_gate(gate);
        open.store(false, Ordering::SeqCst);
        let mut buf = vec![0u8; 4096];
        assert!(matches!(
            o.open(&ct[HEADER_LEN..], false, &mut buf),
            Err(Error::KeyUnavailable { .. })
        ));
    }
}
