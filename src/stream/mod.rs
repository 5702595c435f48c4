//! The segment body: streaming authenticated encryption in chunks, with
//! random access.
//!
//! A stream is byte-compatible with Tink's **AES-GCM-HKDF Streaming AEAD**
//! (AES-256, HKDF-SHA256, 32-byte derived key), an instance of the STREAM
//! construction of Hoang, Reyhanitabar, Rogaway and Vizár, *Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance* (CRYPTO
//! 2015, <https://eprint.iacr.org/2015/189>):
//!
//! ```text
//! header = 0x28 ‖ salt (32) ‖ nonce prefix (7)
//! key    = HKDF-SHA256(ikm = caller's key, salt, info = associated data), 32 bytes
//! stream = header ‖ seal(0) ‖ seal(1) ‖ … ‖ seal(n-1)
//! seal(i) = AES-256-GCM(key, nonce = prefix ‖ u32be(i) ‖ [i == n-1], chunk i) ‖ tag
//! ```
//!
//! Every ciphertext chunk is [`Params::chunk_size`] bytes (the first
//! one counting the header) except the last, which is shorter or equal and
//! never empty unless the whole message is. The byte layout is documented in
//! `docs/FORMAT.md` and pinned by known-answer vectors produced by Tink.
//!
//! Entry points:
//!
//! * one-shot: [`encrypt`] / [`decrypt`] (default params, a new buffer),
//!   [`encrypt_into`] / [`decrypt_into`] (any params and thread count,
//!   into the caller's buffer); both multi-threaded for large buffers.
//!   [`Params`] only does the layout's arithmetic;
//! * streaming: [`EncryptingWriter`] (`std::io::Write`, explicit
//!   [`finish`](EncryptingWriter::finish), or
//!   [`finish_durable`](EncryptingWriter::finish_durable) to fsync a
//!   [`Durable`] sink such as a `File`) and [`DecryptingReader`]
//!   (`std::io::Read`);
//! * random access: [`SeekableReader`] (`Read + Seek`,
//!   [`read_at`](SeekableReader::read_at) through `&mut self`: one cursor,
//!   one cached chunk); [`RangeDecryptor`], opened once and shared by
//!   many threads: positional [`read_at`](RangeDecryptor::read_at)
//!   through `&self` from any [`ReadAt`] source (a `File`, a buffer), and
//!   for ranged GETs [`plan`](RangeDecryptor::plan) /
//!   [`decrypt`](RangeDecryptor::decrypt) (or [`Params::ciphertext_range`]);
//! * async (feature `tokio`): `AsyncEncryptingWriter` (seals each whole
//!   chunk of a large write straight from the caller's bytes, as
//!   [`EncryptingWriter`] does), `AsyncDecryptingReader`;
//! * one chunk at a time, into and out of the caller's own buffers:
//!   [`ChunkSealer`] and [`ChunkOpener`] (no copies, no I/O).
//!
//! Errors: the `Read`/`Write` adapters (and the tokio ones) speak
//! [`io::Error`]. The inner reader's or writer's own errors pass through
//! as they are; a failure of the stream itself (a chunk that does not
//! authenticate, a malformed stream, a zone that became unavailable)
//! travels inside one — of the kind `From<Error> for io::Error` chooses
//! from [`Error::kind`]: `InvalidData` for a chunk that does not
//! authenticate, `PermissionDenied` for a revoked key, `TimedOut` for an
//! unreachable KMS — carrying the [`Error`]. [`error_of`] borrows it back,
//! and `From<io::Error> for Error` recovers it, so `?` from an adapter's
//! `io::Result` into a [`crate::Result`] gives the original variant
//! (`Integrity` stays `Integrity`). The other entry points return
//! [`Error`] directly.
//!
//! Guarantees: no plaintext is released from a chunk before it
//! authenticated; a flipped bit, truncation (also at a chunk boundary),
//! reordered, dropped, duplicated or foreign chunks, appended bytes and
//! wrong associated data are all errors ([`Error::Integrity`] or
//! [`Error::Malformed`]); memory stays at one chunk per reader or writer.
//!
//! This module owns the body format and its I/O adapters. It takes a raw
//! key and must not know about zones, key providers or wrapped keys.

use std::io;

use crate::Error;

mod by_chunk;
mod chunk;
mod decoder;
mod encoder;
mod header;
mod oneshot;
mod params;
mod range;
mod read_at;
mod reader;
mod seek;
#[cfg(feature = "tokio")]
mod tokio;
mod writer;

#[cfg(test)]
mod tests;

#[cfg(feature = "tokio")]
pub use self::tokio::{AsyncDecryptingReader, AsyncEncryptingWriter};
pub(crate) use header::Header;

/// A check the adapters run before sealing or opening each chunk; an
/// error stops the stream there. Zones use it to stop streams already open
/// when their key becomes unavailable.
pub(crate) type Gate = std::sync::Arc<dyn Fn() -> crate::Result<()> + Send + Sync>;

/// The error a writer returns once an earlier write failed: part of a
/// chunk may have reached the sink, so the stream is incomplete and
/// writing on would hide that. An I/O error, like the failure that broke
/// the stream (most often the sink's own).
fn refuse_if_poisoned(poisoned: bool) -> io::Result<()> {
    if poisoned {
        Err(io::Error::other(
            "stream writer failed earlier; the stream is incomplete",
        ))
    } else {
        Ok(())
    }
}

/// Runs `gate`, if any.
fn pass(gate: &Option<Gate>) -> crate::Result<()> {
    gate.as_ref().map_or(Ok(()), |g| g())
}
pub use by_chunk::{ChunkOpener, ChunkSealer};
pub use oneshot::{decrypt, decrypt_into, encrypt, encrypt_into, Threads};
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(unused_imports))]
pub(crate) use oneshot::{decrypt_to_bytes, encrypt_with_header};
pub use params::{
    Params, DEFAULT_CHUNK_SIZE, HEADER_LEN, MAX_CHUNKS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE,
};
pub use range::{CiphertextRange, RangeDecryptor};
pub use read_at::ReadAt;
pub use reader::DecryptingReader;
pub use seek::SeekableReader;
pub use writer::{Durable, EncryptingWriter};

/// The [`Error`] inside an [`io::Error`] returned by this module's
/// `Read`/`Write` adapters, if it carries one.
///
/// ```
/// use std::io::Read;
/// use cmek::{stream, Error, SecretKey};
/// let key = SecretKey::generate()?;
/// let ct = stream::encrypt(&key, b"a", b"data")?;
/// let mut r = stream::DecryptingReader::new(&ct[..], &key, b"b", stream::Params::default());
/// let err = r.read_to_end(&mut Vec::new()).unwrap_err();
/// assert!(matches!(stream::error_of(&err), Some(Error::Integrity { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn error_of(err: &io::Error) -> Option<&Error> {
    err.get_ref().and_then(|e| e.downcast_ref::<Error>())
}

/// Converts an [`Error`] for the `std::io` traits (and the tokio ones),
/// as every `Read`/`Write` adapter of this module returns it: by
/// `From<Error> for io::Error`, whose table chooses the
/// [`io::ErrorKind`] from [`Error::kind`] (an integrity failure is
/// `InvalidData`, an unavailable zone `PermissionDenied`, or `TimedOut`
/// while its KMS cannot be reached). The `io::Error` carries the
/// [`Error`] itself: [`error_of`] finds it, and `?` into a
/// [`crate::Result`] turns the `io::Error` back into it (see
/// `From<io::Error> for Error`), so an integrity failure is never
/// mistaken for an I/O one.
pub(crate) fn to_io(err: Error) -> io::Error {
    io::Error::from(err)
}

/// The error for a length that fits the stream format but not this
/// platform's address space (a 32-bit target).
pub(crate) fn exceeds_memory(what: &'static str) -> Error {
    Error::LimitExceeded {
        what,
        limit: usize::MAX as u64,
    }
}
