//! One-shot encryption and decryption of whole buffers, on several threads.
//!
//! Chunks are independent (each has its own nonce), so a large buffer is
//! cut into runs of whole chunks that threads seal or open at once, each
//! writing straight into its part of the output: no per-chunk allocation,
//! and each byte is read once and written once (out-of-place AES-GCM, no
//! copy). This module owns that split; it must not do I/O.

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::thread;

use bytes::Bytes;
use zeroize::Zeroize;

use super::chunk::ChunkCipher;
use super::exceeds_memory;
use super::header::Header;
use super::params::{index_u32, Params, HEADER_LEN};
use crate::cipher::TAG_LEN;
use crate::secret::SecretKey;
use crate::{Error, Result};

/// Below this many bytes per thread, another thread costs more than it saves.
const MIN_BYTES_PER_THREAD: usize = 1 << 20;

/// How many threads a one-shot call may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Threads {
    /// One per available core, for buffers large enough to gain from it.
    #[default]
    Auto,
    /// The calling thread only.
    One,
    /// At most this many (still fewer for small buffers).
    AtMost(NonZeroUsize),
}

impl Threads {
    pub(crate) fn resolve(self, bytes: usize) -> usize {
        let useful = bytes / MIN_BYTES_PER_THREAD;
        if useful < 2 {
            return 1;
        }
        let max = match self {
            Threads::One => 1,
            Threads::AtMost(n) => n.get(),
            Threads::Auto => cores(),
        };
        max.min(useful).max(1)
    }
}

/// The number of cores, asked once: on Linux the standard library reads
/// cgroup files for it, which costs tens of microseconds — more than
/// sealing a small chunk.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// Cuts chunks `0..chunks` into `parts` contiguous runs; returns the run
/// boundaries as chunk indices.
fn runs(chunks: u64, parts: usize) -> Vec<u64> {
    let parts = (parts as u64).min(chunks).max(1);
    (0..=parts).map(|i| chunks * i / parts).collect()
}

/// Encrypts `plaintext` under `key` and `aad` with the default
/// [`Params`], using every core for large buffers; for other params, a
/// thread count or a buffer of your own, see [`encrypt_into`].
///
/// ```
/// use cmek::{stream, SecretKey};
/// let key = SecretKey::generate()?;
/// let ct = stream::encrypt(&key, b"object 42", b"hello")?;
/// assert_eq!(ct.len(), 40 + 5 + 16);
/// assert_eq!(&stream::decrypt(&key, b"object 42", &ct)?[..], b"hello");
/// # Ok::<(), cmek::Error>(())
/// ```
///
/// # Errors
/// As [`encrypt_into`].
pub fn encrypt(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Bytes> {
    encrypt_to_bytes(key, aad, Params::default(), plaintext, Threads::Auto)
}

/// Decrypts a whole stream written with the default [`Params`]; for
/// other params, a thread count or a buffer of your own, see
/// [`decrypt_into`].
///
/// # Errors
/// As [`decrypt_into`].
pub fn decrypt(key: &SecretKey, aad: &[u8], ciphertext: &[u8]) -> Result<Bytes> {
    decrypt_to_bytes(key, aad, Params::default(), ciphertext, Threads::Auto)
}

/// Encrypts `plaintext` under `key` and `aad` into `out`, which must be
/// exactly [`params.ciphertext_len(plaintext.len())`](Params::ciphertext_len)
/// bytes, sealing runs of chunks on up to `threads` threads. The result
/// is the same stream the streaming writer produces; reuse `out` across
/// calls to skip the allocation (and its page faults) that [`encrypt`]
/// pays.
///
/// ```
/// use cmek::{stream, SecretKey};
/// use cmek::stream::{Params, Threads};
/// let key = SecretKey::generate()?;
/// let params = Params::new(4096)?;
/// let data = vec![7u8; 10_000];
/// let mut sealed = vec![0u8; params.ciphertext_len(data.len() as u64)? as usize];
/// stream::encrypt_into(&key, b"file 7", params, &data, &mut sealed, Threads::One)?;
/// let mut opened = vec![0u8; params.plaintext_len(sealed.len() as u64)? as usize];
/// stream::decrypt_into(&key, b"file 7", params, &sealed, &mut opened, Threads::Auto)?;
/// assert_eq!(opened, data);
/// # Ok::<(), cmek::Error>(())
/// ```
///
/// # Errors
/// [`Error::Misuse`] if `out` has the wrong length;
/// [`Error::LimitExceeded`] past 2^32 chunks; [`Error::Random`] if no
/// salt can be drawn.
pub fn encrypt_into(
    key: &SecretKey,
    aad: &[u8],
    params: Params,
    plaintext: &[u8],
    out: &mut [u8],
    threads: Threads,
) -> Result<()> {
    encrypt_with_header(
        key,
        aad,
        params,
        Header::generate()?,
        plaintext,
        out,
        threads,
    )
}

/// Decrypts the whole stream `ciphertext` into `out`, which must be
/// exactly [`params.plaintext_len(ciphertext.len())`](Params::plaintext_len)
/// bytes, opening runs of chunks on up to `threads` threads.
///
/// # Errors
/// [`Error::Malformed`] for a bad header or length;
/// [`Error::Misuse`] if `out` has the wrong length;
/// [`Error::Integrity`] if any chunk fails to authenticate — `out` is
/// then all zeros.
pub fn decrypt_into(
    key: &SecretKey,
    aad: &[u8],
    params: Params,
    ciphertext: &[u8],
    out: &mut [u8],
    threads: Threads,
) -> Result<()> {
    params.open_into(key, aad, ciphertext, out, threads)
}

/// [`encrypt_into`] a new buffer.
pub(crate) fn encrypt_to_bytes(
    key: &SecretKey,
    aad: &[u8],
    params: Params,
    plaintext: &[u8],
    threads: Threads,
) -> Result<Bytes> {
    let len = usize::try_from(params.ciphertext_len(plaintext.len() as u64)?)
        .map_err(|_| exceeds_memory("ciphertext length in bytes"))?;
    let mut out = vec![0u8; len];
    encrypt_into(key, aad, params, plaintext, &mut out, threads)?;
    Ok(Bytes::from(out))
}

/// [`decrypt_into`] a new buffer.
pub(crate) fn decrypt_to_bytes(
    key: &SecretKey,
    aad: &[u8],
    params: Params,
    ciphertext: &[u8],
    threads: Threads,
) -> Result<Bytes> {
    let len = params.plaintext_len(ciphertext.len() as u64)? as usize;
    let mut out = vec![0u8; len];
    decrypt_into(key, aad, params, ciphertext, &mut out, threads)?;
    Ok(Bytes::from(out))
}

/// [`encrypt_into`] with a header the caller drew: zones draw the
/// stream's salt and nonce prefix with the segment's DEK in one OS call,
/// and known-answer tests reproduce another implementation's bytes.
pub(crate) fn encrypt_with_header(
    key: &SecretKey,
    aad: &[u8],
    params: Params,
    header: Header,
    plaintext: &[u8],
    out: &mut [u8],
    threads: Threads,
) -> Result<()> {
    params.seal_into(key, aad, header, plaintext, out, threads)
}

// The work behind the functions above, private to this module: every step
// is the layout's arithmetic, so it sits beside it.
impl Params {
    /// Seals `plaintext` under `header` into `out`, checking its length.
    fn seal_into(
        &self,
        key: &SecretKey,
        aad: &[u8],
        header: Header,
        plaintext: &[u8],
        out: &mut [u8],
        threads: Threads,
    ) -> Result<()> {
        let ct_len = self.ciphertext_len(plaintext.len() as u64)?;
        if out.len() as u64 != ct_len {
            return Err(Error::misuse(format!(
                "output buffer has {} bytes, the ciphertext needs {ct_len}",
                out.len()
            )));
        }
        let cipher = ChunkCipher::new(key, aad, &header)?;
        out[..HEADER_LEN].copy_from_slice(header.as_bytes());
        let chunks = self.chunk_count(plaintext.len() as u64);
        let bounds = runs(chunks, threads.resolve(plaintext.len()));
        let seal_run = |from: u64, to: u64, out: &mut [u8], pt: &[u8]| -> Result<()> {
            // `out` and `pt` start at chunk `from`.
            let (mut o, mut p) = (0usize, 0usize);
            for i in from..to {
                let last = i + 1 == chunks;
                let n = if last {
                    pt.len() - p
                } else if i == 0 {
                    self.first_chunk_plaintext_len()
                } else {
                    self.plaintext_chunk_len()
                };
                cipher.seal_from(
                    index_u32(i)?,
                    last,
                    &pt[p..p + n],
                    &mut out[o..o + n + TAG_LEN],
                )?;
                o += n + TAG_LEN;
                p += n;
            }
            Ok(())
        };
        self.for_each_run(&bounds, out, plaintext, true, seal_run)
    }

    /// Opens the whole stream `ciphertext` into `out`, checking its
    /// length; `out` is all zeros on failure.
    fn open_into(
        &self,
        key: &SecretKey,
        aad: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
        threads: Threads,
    ) -> Result<()> {
        let pt_len = self.plaintext_len(ciphertext.len() as u64)?;
        if out.len() as u64 != pt_len {
            return Err(Error::misuse(format!(
                "output buffer has {} bytes, the plaintext has {pt_len}",
                out.len()
            )));
        }
        let header = Header::parse(ciphertext)?;
        let cipher = ChunkCipher::new(key, aad, &header)?;
        let chunks = self.chunk_count_for_ciphertext(ciphertext.len() as u64)?;
        let bounds = runs(chunks, threads.resolve(out.len()));
        let open_run = |from: u64, to: u64, out: &mut [u8], ct: &[u8]| -> Result<()> {
            // `out` and `ct` start at chunk `from`.
            let (mut o, mut c) = (0usize, 0usize);
            for i in from..to {
                let last = i + 1 == chunks;
                let sealed = if last {
                    ct.len() - c
                } else {
                    self.full_chunk_len(i)
                };
                let n = sealed - TAG_LEN;
                cipher.open_to(index_u32(i)?, last, &ct[c..c + sealed], &mut out[o..o + n])?;
                o += n;
                c += sealed;
            }
            Ok(())
        };
        let r = self.for_each_run(&bounds, out, &ciphertext[HEADER_LEN..], false, open_run);
        if r.is_err() {
            out.zeroize();
        }
        r
    }

    /// Runs `work(from, to, out_part, in_part)` for each run of chunks in
    /// `bounds`, on scoped threads when there is more than one run.
    fn for_each_run<F>(
        &self,
        bounds: &[u64],
        out: &mut [u8],
        input: &[u8],
        sealing: bool,
        work: F,
    ) -> Result<()>
    where
        F: Fn(u64, u64, &mut [u8], &[u8]) -> Result<()> + Sync,
    {
        // Byte offset of chunk `i` in the plaintext and in the sealed body.
        let pt_at = |i: u64| self.plaintext_start(i) as usize;
        let ct_at = |i: u64| (self.ciphertext_start(i) as usize) - HEADER_LEN;
        let (out_at, in_at): (&dyn Fn(u64) -> usize, &dyn Fn(u64) -> usize) = if sealing {
            (&ct_at, &pt_at)
        } else {
            (&pt_at, &ct_at)
        };
        let mut out = if sealing { &mut out[HEADER_LEN..] } else { out };
        if bounds.len() <= 2 {
            return work(bounds[0], bounds[bounds.len() - 1], out, input);
        }
        let mut parts = Vec::with_capacity(bounds.len() - 1);
        for w in bounds.windows(2) {
            let (from, to) = (w[0], w[1]);
            let last_run = to == bounds[bounds.len() - 1];
            let (o_len, i_len) = if last_run {
                (out.len(), input.len() - in_at(from))
            } else {
                (out_at(to) - out_at(from), in_at(to) - in_at(from))
            };
            let (head, tail) = out.split_at_mut(o_len);
            out = tail;
            parts.push((from, to, head, &input[in_at(from)..in_at(from) + i_len]));
        }
        let work = &work;
        thread::scope(|s| {
            let mut iter = parts.into_iter();
            let (f0, t0, o0, i0) = iter.next().expect("at least two runs");
            let handles: Vec<_> = iter
                .map(|(f, t, o, i)| s.spawn(move || work(f, t, o, i)))
                .collect();
            let mut result = work(f0, t0, o0, i0);
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::WorkerPanicked {
                        what: if sealing {
                            "sealing a run of stream chunks"
                        } else {
                            "opening a run of stream chunks"
                        }
                        .into(),
                    })
                });
                result = result.and(r);
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that panics on its thread is a `WorkerPanicked`, whichever
    /// direction, not an argument or integrity error.
    #[test]
    fn a_panicking_worker_is_reported_as_such() {
        let params = Params::new(4096).unwrap();
        let plaintext = vec![7u8; 8 * 4096];
        let ct_len = params.ciphertext_len(plaintext.len() as u64).unwrap() as usize;
        let ciphertext = vec![0u8; ct_len];
        let chunks = params.chunk_count(plaintext.len() as u64);
        let bounds = runs(chunks, 4);
        assert!(bounds.len() > 2, "several runs: {bounds:?}");
        let work = |from: u64, _: u64, _: &mut [u8], _: &[u8]| -> Result<()> {
            // The first run is this thread's; the others are workers.
            assert_eq!(from, 0, "a bug in a worker");
            Ok(())
        };
        let mut out = vec![0u8; ct_len];
        let sealing = params.for_each_run(&bounds, &mut out, &plaintext, true, work);
        let mut out = vec![0u8; plaintext.len()];
        let opening =
            params.for_each_run(&bounds, &mut out, &ciphertext[HEADER_LEN..], false, work);
        for r in [sealing, opening] {
            let err = r.unwrap_err();
            assert!(matches!(err, Error::WorkerPanicked { .. }), "{err:?}");
            assert_eq!(err.kind(), crate::ErrorKind::Bug);
        }
    }
}
