//! The decrypting state machine shared by the blocking and async sequential
//! readers.
//!
//! It takes ciphertext in whatever pieces the source yields, reads one byte
//! past each chunk to learn whether that chunk is the last, opens each
//! chunk in place (or straight into the caller's buffer when a whole
//! chunk fits), and releases plaintext only from chunks that
//! authenticated. It holds one ciphertext chunk (plus one byte) of memory
//! at most, and grows to it only as ciphertext arrives: the chunk size
//! may come from an unauthenticated header (a v1 segment header), and a
//! short stream must not make a reader allocate a 16 MiB chunk. It must
//! not do I/O: the adapters in [`super::reader`] and `super::tokio`
//! feed it.

use super::chunk::ChunkCipher;
use super::header::Header;
use super::params::{index_u32, Params, HEADER_LEN};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// The decoder's first buffer: the default chunk size plus its
/// look-ahead byte, so streams under default params allocate once.
const FIRST_BUFFER: usize = super::params::DEFAULT_CHUNK_SIZE + 1;

/// What the decoder needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Plaintext is available in [`Decoder::plaintext`].
    Ready,
    /// A whole chunk was opened straight into the caller's buffer (see
    /// [`Decoder::step_into`]): this many bytes of it are plaintext.
    Direct(usize),
    /// Fill [`Decoder::input`] and report with [`Decoder::filled`].
    NeedInput,
    /// The last chunk authenticated and all its plaintext was consumed.
    End,
}

enum State {
    /// Waiting for the header; the key and associated data are kept until
    /// the salt is known.
    Header {
        key: SecretKey,
        aad: Box<[u8]>,
        have: usize,
    },
    Body {
        // Boxed: the pure-Rust backend's expanded key is large.
        cipher: Box<ChunkCipher>,
    },
    Failed,
}

/// Sans-I/O stream decryptor.
pub(crate) struct Decoder {
    params: Params,
    state: State,
    /// Ciphertext of the current chunk plus one look-ahead byte; after
    /// opening, its plaintext. Grown by [`input`](Self::input) as
    /// ciphertext arrives, up to one chunk plus one byte.
    buf: Vec<u8>,
    /// Ciphertext bytes held in `buf`.
    filled: usize,
    /// Authenticated plaintext `buf[pt..pt_end]` not yet consumed.
    pt: usize,
    pt_end: usize,
    /// Sealed length of the chunk whose plaintext is being served (its
    /// look-ahead byte, if any, sits at `buf[sealed]`).
    sealed: usize,
    index: u64,
    eof: bool,
    done: bool,
}

impl Decoder {
    pub(crate) fn new(key: &SecretKey, aad: &[u8], params: Params) -> Self {
        Self {
            params,
            state: State::Header {
                key: key.duplicate(),
                aad: aad.into(),
                have: 0,
            },
            buf: Vec::new(),
            filled: 0,
            pt: 0,
            pt_end: 0,
            sealed: 0,
            index: 0,
            eof: false,
            done: false,
        }
    }

    /// Where the next ciphertext bytes go. Empty only when no input is
    /// needed.
    pub(crate) fn input(&mut self) -> &mut [u8] {
        let (from, want) = match self.state {
            State::Header { have, .. } => (have, HEADER_LEN),
            State::Body { .. } => (self.filled, self.params.full_chunk_len(self.index) + 1),
            State::Failed => return &mut [],
        };
        self.grow_toward(from);
        let end = want.min(self.buf.len());
        &mut self.buf[from..end]
    }

    /// Makes room past `from` once the buffer is full up to it: to
    /// [`FIRST_BUFFER`] bytes at first, then to twice what has arrived,
    /// never past one chunk and its look-ahead byte. Memory thus stays
    /// within twice the ciphertext actually received (or
    /// [`FIRST_BUFFER`]), whatever chunk size the params claim; the
    /// copies made while growing add up to less than the bytes read; and a
    /// stream under default params allocates once.
    fn grow_toward(&mut self, from: usize) {
        if self.buf.len() > from {
            return;
        }
        let target = from
            .saturating_mul(2)
            .max(FIRST_BUFFER)
            .min(self.params.chunk_size() + 1);
        // Exactly: `resize` alone would round the capacity up to a power
        // of two.
        self.buf.reserve_exact(target - self.buf.len());
        self.buf.resize(target, 0);
    }

    /// Records that `n` bytes were written into [`input`](Self::input);
    /// `n == 0` means the source reached its end.
    pub(crate) fn filled(&mut self, n: usize) {
        if n == 0 {
            self.eof = true;
            return;
        }
        match &mut self.state {
            State::Header { have, .. } => *have += n,
            State::Body { .. } => self.filled += n,
            State::Failed => {}
        }
    }

    /// The stream's chunk size: no chunk holds more plaintext.
    #[cfg(feature = "tokio")]
    pub(crate) fn chunk_size(&self) -> usize {
        self.params.chunk_size()
    }

    /// Authenticated plaintext ready to be copied out.
    pub(crate) fn plaintext(&self) -> &[u8] {
        &self.buf[self.pt..self.pt_end]
    }

    /// Marks `n` bytes of [`plaintext`](Self::plaintext) as consumed.
    pub(crate) fn consume(&mut self, n: usize) {
        self.pt += n;
        debug_assert!(self.pt <= self.pt_end);
    }

    /// Advances as far as the buffered input allows. A chunk whose
    /// plaintext fits in `out` is opened straight into it
    /// ([`Step::Direct`]) instead of in place and then copied: one pass over
    /// the bytes instead of two. Otherwise its plaintext waits in
    /// [`plaintext`](Self::plaintext) ([`Step::Ready`]).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a bad header or an impossible length,
    /// [`Error::Integrity`] for a chunk that does not authenticate; `out`
    /// then holds no plaintext. Every later call fails too.
    pub(crate) fn step_into(&mut self, out: &mut [u8]) -> Result<Step> {
        match self.advance(out) {
            Ok(step) => Ok(step),
            Err(e) => {
                self.state = State::Failed;
                self.pt = 0;
                self.pt_end = 0;
                self.buf.fill(0);
                Err(e)
            }
        }
    }

    fn advance(&mut self, out: &mut [u8]) -> Result<Step> {
        if self.pt < self.pt_end {
            return Ok(Step::Ready);
        }
        if self.done {
            return Ok(Step::End);
        }
        if let State::Header { key, aad, have } = &self.state {
            if *have < HEADER_LEN {
                if self.eof {
                    return Err(Error::malformed(
                        "stream",
                        format!("ends after {have} bytes, inside the header"),
                    ));
                }
                return Ok(Step::NeedInput);
            }
            let header = Header::parse(&self.buf[..HEADER_LEN])?;
            let cipher = ChunkCipher::new(key, aad, &header)?;
            self.state = State::Body {
                cipher: Box::new(cipher),
            };
        }
        let State::Body { cipher } = &self.state else {
            return Err(Error::tampered("stream (an earlier chunk failed)"));
        };
        // The previous chunk's plaintext is consumed: move its look-ahead
        // byte to the front.
        if self.sealed > 0 {
            self.buf[0] = self.buf[self.sealed];
            self.filled = 1;
            self.sealed = 0;
        }
        let full = self.params.full_chunk_len(self.index);
        let last = if self.filled == full + 1 {
            false
        } else if self.eof {
            true
        } else {
            return Ok(Step::NeedInput);
        };
        let sealed = if last { self.filled } else { full };
        if sealed < TAG_LEN || (last && self.index > 0 && sealed == TAG_LEN) {
            return Err(Error::malformed(
                "stream",
                format!(
                    "chunk {} has {sealed} bytes: truncated or padded",
                    self.index
                ),
            ));
        }
        let index = index_u32(self.index)
            .map_err(|_| Error::malformed("stream", "more chunks than a 32-bit index allows"))?;
        let n = sealed - TAG_LEN;
        let direct = out.len() >= n;
        if direct {
            cipher.open_to(index, last, &self.buf[..sealed], &mut out[..n])?;
            self.pt_end = 0;
        } else {
            cipher.open(index, last, &mut self.buf[..sealed])?;
            self.pt_end = n;
        }
        self.pt = 0;
        self.index += 1;
        if last {
            self.done = true;
            self.sealed = 0;
        } else {
            self.sealed = sealed;
        }
        if direct && n > 0 {
            Ok(Step::Direct(n))
        } else if self.pt < self.pt_end {
            Ok(Step::Ready)
        } else if self.done {
            Ok(Step::End)
        } else {
            // An empty chunk that is not the last: only a forged layout
            // could produce this, and it did not authenticate above.
            Err(Error::malformed("stream", "empty chunk before the last"))
        }
    }
}
