//! The zone's data path: new segments (a fresh DEK wrapped by the active
//! EZK into the segment header) and opened ones (the header's DEK
//! unwrapped), whole or through the stream's readers, writers, sealers and
//! openers.
//!
//! Nothing here calls the key provider or writes the manifest, except the
//! rare wrap reservation ([`Zone::reserve_wraps`](super::commit)) that
//! keeps the DEK-wrap count honest across processes.

use std::io::{Read, Seek, Write};
use std::sync::Arc;

use bytes::Bytes;
use zeroize::Zeroizing;

use super::header::{self, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{OpenedSegment, Zone, ZoneState};
use crate::cipher::{fill_random, NONCE_LEN};
use crate::secret::{SecretKey, KEY_LEN};
use crate::stream::{
    ChunkOpener, ChunkSealer, DecryptingReader, EncryptingWriter, Header as StreamHeader, Params,
    RangeDecryptor, ReadAt, SeekableReader, Threads,
};
use crate::{Error, IntegrityFailure, Result};

/// Stream header bytes other than its length byte.
const STREAM_RANDOM_LEN: usize = crate::stream::HEADER_LEN - 1;

/// Bytes at the start of every segment before its first sealed chunk:
/// the segment header and the stream header.
pub const SEGMENT_PREFIX_LEN: usize = SEGMENT_HEADER_LEN + crate::stream::HEADER_LEN;

/// What a new segment starts from.
pub(super) struct NewSegment {
    pub(super) header: SegmentHeader,
    pub(super) dek: SecretKey,
    pub(super) params: Params,
    pub(super) stream_header: StreamHeader,
}

impl Zone {
    /// Draws a DEK and builds the header for a new segment under the active
    /// EZK, with the stream header its body will use. No provider call.
    ///
    /// The DEK, the wrap's nonce and the stream's salt and nonce prefix come
    /// from one OS call (disjoint bytes): on some machines the call costs
    /// more than the rest of a segment's setup.
    /// `params` overrides the zone's chunk size for this segment (its header
    /// records whichever is used).
    pub(super) fn new_segment(
        &self,
        segment_id: &str,
        params: Option<Params>,
    ) -> Result<NewSegment> {
        let mut random = Zeroizing::new([0u8; KEY_LEN + NONCE_LEN + STREAM_RANDOM_LEN]);
        fill_random(&mut random[..])?;
        let (dek_bytes, rest) = random.split_at_mut(KEY_LEN);
        let (nonce, stream_random) = rest.split_at(NONCE_LEN);
        let dek = SecretKey::from_array(dek_bytes.try_into().expect("KEY_LEN bytes"));
        let stream_header = StreamHeader::from_random(stream_random.try_into().expect("39 bytes"));

        let state = self.state_with_wrap_reserved()?;
        let m = &state.manifest;
        let params = params.unwrap_or_else(|| m.stream_params());
        // The wrap binds every other header byte (format v2), so the
        // header is laid out first and the wrapped DEK put in last.
        let header =
            SegmentHeader::unwrapped(m.zone_id, m.active, params, header::commitment(&dek)?);
        let wrapped = state.ezk(m.active)?.wrapper.wrap_with_drawn_nonce(
            &dek,
            &header.dek_aad(segment_id),
            nonce.try_into().expect("NONCE_LEN bytes"),
        )?;
        let header = header.with_wrapped_dek(wrapped);
        Ok(NewSegment {
            header,
            dek,
            params,
            stream_header,
        })
    }

    /// Parses a header and recovers its DEK, checking zone, version and key
    /// commitment. No provider call.
    ///
    /// The stream parameters returned are authenticated for a v2 header
    /// (its wrap binds them); a v1 header's are not, which is why the
    /// stream readers size their buffers by the bytes they actually have.
    pub(super) fn open_header(
        &self,
        segment_id: &str,
        bytes: &[u8],
    ) -> Result<(SecretKey, Params)> {
        let header = SegmentHeader::parse(bytes)?;
        let state = self.state();
        let dek = unwrap_dek(&state, segment_id, &header)?;
        header.check_commitment(&dek)?;
        Ok((dek, header.stream_params()?))
    }

    /// The stream parameters of segments this zone writes now.
    #[cfg_attr(not(feature = "object-store-any"), allow(dead_code))]
    pub(crate) fn stream_params(&self) -> Params {
        self.state().manifest.stream_params()
    }

    /// Bytes a segment of `plaintext_len` plaintext bytes takes when this
    /// zone encrypts it: the header and the stream body at the zone's chunk
    /// size. The buffer [`encrypt_segment_into`](Self::encrypt_segment_into)
    /// needs.
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] past the stream's length limit.
    pub fn encrypted_len(&self, plaintext_len: u64) -> Result<u64> {
        let params = self.state().manifest.stream_params();
        Ok(SEGMENT_HEADER_LEN as u64 + params.ciphertext_len(plaintext_len)?)
    }

    /// Encrypts a whole segment: header ‖ body, into a new buffer. Large
    /// segments are sealed on several threads. To reuse a buffer instead
    /// (no allocation, no page faults on a fresh one), see
    /// [`encrypt_segment_into`](Self::encrypt_segment_into).
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] past the EZK's wrap limit or the stream's
    /// length limit; [`Error::Random`].
    pub fn encrypt_segment(&self, segment_id: &str, plaintext: &[u8]) -> Result<Bytes> {
        let len = self.encrypted_len(plaintext.len() as u64)?;
        filled_buffer(len, "segment length in bytes", |out| {
            self.encrypt_segment_into(segment_id, plaintext, out)
        })
    }

    /// Encrypts a whole segment as [`encrypt_segment`](Self::encrypt_segment)
    /// does, but in chunks of `params` instead of the zone's chunk size.
    /// The header records the chunk size, so every reader opens the
    /// segment as it opens any other. Small chunks suit segments read in
    /// small blocks at any offset (see [`Params`]).
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment).
    pub fn encrypt_segment_with(
        &self,
        segment_id: &str,
        plaintext: &[u8],
        params: Params,
    ) -> Result<Bytes> {
        let len = SEGMENT_HEADER_LEN as u64 + params.ciphertext_len(plaintext.len() as u64)?;
        filled_buffer(len, "segment length in bytes", |out| {
            zeroed_on_error(out, |out| {
                self.seal_segment(segment_id, plaintext, out, Some(params))
            })
        })
    }

    /// Encrypts a whole segment, header ‖ body, into `out`, a buffer the
    /// caller owns of exactly [`encrypted_len`](Self::encrypted_len) bytes.
    /// The same segment [`encrypt_segment`](Self::encrypt_segment) makes;
    /// on error `out` is all zeros.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `out` has another length (checked before a DEK
    /// is drawn); otherwise as [`encrypt_segment`](Self::encrypt_segment).
    pub fn encrypt_segment_into(
        &self,
        segment_id: &str,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        let want = self.encrypted_len(plaintext.len() as u64)?;
        if out.len() as u64 != want {
            return Err(Error::misuse(format!(
                "output buffer has {} bytes, the segment needs {want}",
                out.len()
            )));
        }
        zeroed_on_error(out, |out| {
            self.seal_segment(segment_id, plaintext, out, None)
        })
    }

    fn seal_segment(
        &self,
        segment_id: &str,
        plaintext: &[u8],
        out: &mut [u8],
        params: Option<Params>,
    ) -> Result<()> {
        let NewSegment {
            header,
            dek,
            params,
            stream_header,
        } = self.new_segment(segment_id, params)?;
        let (head, body) = out.split_at_mut(SEGMENT_HEADER_LEN);
        head.copy_from_slice(&header.to_bytes());
        let aad = self.body_aad(segment_id);
        crate::stream::encrypt_with_header(
            &dek,
            &aad,
            params,
            stream_header,
            plaintext,
            body,
            Threads::Auto,
        )
    }

    /// Plaintext bytes in `segment` (its header and whole length): the
    /// buffer [`decrypt_segment_into`](Self::decrypt_segment_into) needs.
    /// Reads the header's chunk size and the length only; nothing is
    /// authenticated until the segment is decrypted.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a damaged header or a length no writer
    /// produces.
    pub fn decrypted_len(segment: &[u8]) -> Result<u64> {
        let params = SegmentHeader::parse(segment)?.stream_params()?;
        params.plaintext_len((segment.len() - SEGMENT_HEADER_LEN) as u64)
    }

    /// Decrypts a whole segment written by this zone under `segment_id`
    /// into a new buffer; to reuse a buffer, see
    /// [`decrypt_segment_into`](Self::decrypt_segment_into).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a damaged header; [`Error::Integrity`] with
    /// [`IntegrityFailure::ForeignZone`] for a segment whose header names
    /// another zone (before any decryption), with
    /// [`IntegrityFailure::Tampered`] for another segment id, a failed key
    /// commitment, or a modified or truncated body;
    /// [`Error::UnknownEzkVersion`] for an EZK version the zone does not
    /// have (retired, or newer than this handle has seen:
    /// [`reload`](Zone::reload)); [`Error::ZoneUnavailable`] while the zone
    /// does not serve.
    pub fn decrypt_segment(&self, segment_id: &str, segment: &[u8]) -> Result<Bytes> {
        filled_buffer(
            Self::decrypted_len(segment)?,
            "plaintext length in bytes",
            |out| self.decrypt_segment_into(segment_id, segment, out),
        )
    }

    /// Decrypts a whole segment into `out`, a buffer the caller owns of
    /// exactly [`decrypted_len`](Self::decrypted_len) bytes. No plaintext is
    /// left in `out` unless the whole segment authenticated: on error it is
    /// all zeros.
    ///
    /// # Errors
    /// [`Error::Misuse`] if `out` has another length; otherwise as
    /// [`decrypt_segment`](Self::decrypt_segment).
    pub fn decrypt_segment_into(
        &self,
        segment_id: &str,
        segment: &[u8],
        out: &mut [u8],
    ) -> Result<()> {
        zeroed_on_error(out, |out| self.open_segment_into(segment_id, segment, out))
    }

    fn open_segment_into(&self, segment_id: &str, segment: &[u8], out: &mut [u8]) -> Result<()> {
        let (dek, params) = self.open_header(segment_id, segment)?;
        let aad = self.body_aad(segment_id);
        crate::stream::decrypt_into(
            &dek,
            &aad,
            params,
            &segment[SEGMENT_HEADER_LEN..],
            out,
            Threads::Auto,
        )
    }

    /// Writes the header of a new segment to `sink` and returns a writer for
    /// its body. Call [`EncryptingWriter::finish`] at the end.
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment); [`Error::Io`] if the
    /// header cannot be written.
    pub fn segment_writer<W: Write>(
        &self,
        segment_id: &str,
        mut sink: W,
    ) -> Result<EncryptingWriter<W>> {
        let NewSegment {
            header,
            dek,
            params,
            stream_header,
        } = self.new_segment(segment_id, None)?;
        sink.write_all(&header.to_bytes())?;
        let aad = self.body_aad(segment_id);
        Ok(
            EncryptingWriter::with_header(sink, &dek, &aad, params, stream_header)?
                .with_gate(self.gate()),
        )
    }

    /// Reads a segment's header from `source` and returns a reader of its
    /// plaintext, for sequential reads.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Io`] if it cannot be read.
    pub fn segment_reader<R: Read>(
        &self,
        segment_id: &str,
        mut source: R,
    ) -> Result<DecryptingReader<R>> {
        let (dek, params) = self.open_header(segment_id, &read_header(&mut source)?)?;
        let aad = self.body_aad(segment_id);
        Ok(DecryptingReader::new(source, &dek, &aad, params).with_gate(self.gate()))
    }

    /// Reads a segment's header from `source` (at its start) and returns a
    /// random-access reader of its plaintext (`Read + Seek`, `read_at`).
    ///
    /// # Errors
    /// As [`segment_reader`](Self::segment_reader).
    pub fn segment_seekable<R: Read + Seek>(
        &self,
        segment_id: &str,
        mut source: R,
    ) -> Result<SeekableReader<R>> {
        let (dek, params) = self.open_header(segment_id, &read_header(&mut source)?)?;
        let aad = self.body_aad(segment_id);
        Ok(SeekableReader::new(source, &dek, &aad, params)?.with_gate(self.gate()))
    }

    /// Starts a new segment to be sealed one chunk at a time into
    /// buffers the caller owns (see [`ChunkSealer`]). Returns the
    /// segment header: write it first, then the sealer's
    /// [`stream_header`](ChunkSealer::stream_header), then each sealed
    /// chunk. The result reads like any other segment of the zone.
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment).
    pub fn chunk_sealer(
        &self,
        segment_id: &str,
    ) -> Result<([u8; SEGMENT_HEADER_LEN], ChunkSealer)> {
        self.sealer(segment_id, None)
    }

    /// A [`chunk_sealer`](Self::chunk_sealer) whose segment is cut in
    /// chunks of `params` instead of the zone's chunk size (recorded in its
    /// header, as [`encrypt_segment_with`](Self::encrypt_segment_with)
    /// does).
    ///
    /// # Errors
    /// As [`encrypt_segment`](Self::encrypt_segment).
    pub fn chunk_sealer_with(
        &self,
        segment_id: &str,
        params: Params,
    ) -> Result<([u8; SEGMENT_HEADER_LEN], ChunkSealer)> {
        self.sealer(segment_id, Some(params))
    }

    fn sealer(
        &self,
        segment_id: &str,
        params: Option<Params>,
    ) -> Result<([u8; SEGMENT_HEADER_LEN], ChunkSealer)> {
        let NewSegment {
            header,
            dek,
            params,
            stream_header,
        } = self.new_segment(segment_id, params)?;
        let aad = self.body_aad(segment_id);
        let sealer =
            ChunkSealer::with_header(&dek, &aad, params, stream_header)?.with_gate(self.gate());
        Ok((header.to_bytes(), sealer))
    }

    /// Prepares to open a segment one chunk at a time (see
    /// [`ChunkOpener`]). `prefix` holds at least the segment's first
    /// [`SEGMENT_PREFIX_LEN`] bytes: its header and the stream header; the
    /// sealed chunks follow them.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Malformed`] if `prefix` is shorter than
    /// [`SEGMENT_PREFIX_LEN`].
    pub fn chunk_opener(&self, segment_id: &str, prefix: &[u8]) -> Result<ChunkOpener> {
        check_prefix(prefix)?;
        let (dek, params) = self.open_header(segment_id, &prefix[..SEGMENT_HEADER_LEN])?;
        let aad = self.body_aad(segment_id);
        Ok(
            ChunkOpener::new(&dek, &aad, params, &prefix[SEGMENT_HEADER_LEN..])?
                .with_gate(self.gate()),
        )
    }

    /// Opens a segment for positional reads shared by many threads (see
    /// [`OpenedSegment`]). `prefix` holds at least the segment's first
    /// [`SEGMENT_PREFIX_LEN`] bytes (its header and the stream header);
    /// `segment_len` is the segment's whole stored length (the file's or
    /// object's size), which says where its last chunk is. No provider
    /// call.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Self::decrypt_segment) for the header;
    /// [`Error::Malformed`] if `prefix` is shorter than
    /// [`SEGMENT_PREFIX_LEN`] or no segment has `segment_len` bytes. A
    /// `segment_len` that misstates where the segment ends is found out
    /// by the first read that reaches the end ([`Error::Integrity`]).
    pub fn open_segment(
        &self,
        segment_id: &str,
        prefix: &[u8],
        segment_len: u64,
    ) -> Result<OpenedSegment> {
        check_prefix(prefix)?;
        let Some(body_len) = segment_len.checked_sub(SEGMENT_HEADER_LEN as u64) else {
            return Err(Error::malformed(
                "segment",
                format!("{segment_len} bytes is shorter than its header"),
            ));
        };
        let (dek, params) = self.open_header(segment_id, &prefix[..SEGMENT_HEADER_LEN])?;
        let aad = self.body_aad(segment_id);
        let body =
            RangeDecryptor::new(&dek, &aad, params, &prefix[SEGMENT_HEADER_LEN..], body_len)?
                .with_base(SEGMENT_HEADER_LEN as u64)
                .with_gate(self.gate());
        Ok(OpenedSegment::new(body, segment_len))
    }

    /// Opens the segment stored in `source` — its [`File`](std::fs::File),
    /// its bytes, anything [`ReadAt`] that knows its length — for
    /// positional reads shared by many threads: reads its first
    /// [`SEGMENT_PREFIX_LEN`] bytes and takes its length from
    /// [`ReadAt::source_len`], then opens it as
    /// [`open_segment`](Self::open_segment) does. Read from the same
    /// source afterwards ([`OpenedSegment::read_at`]). No provider call.
    ///
    /// The length is the source's when this is called: open a segment
    /// once it is complete.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cmek::provider::LocalKeyProvider;
    /// # use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
    /// # let root = provider.add_key("root")?;
    /// # let zone = Keyring::new(Arc::new(provider))
    /// #     .create_zone(Arc::new(MemoryManifestStore::new()), ZoneSpec::new("orders", "local", root))
    /// #     .await?;
    /// let path = dir.path().join("000001.sst");
    /// std::fs::write(&path, zone.encrypt_segment("000001.sst", b"rows and rows")?)?;
    ///
    /// let file = std::fs::File::open(&path)?;
    /// let segment = zone.open_segment_from("000001.sst", &file)?;
    /// let mut rows = [0u8; 4];
    /// segment.read_at(&file, 9, &mut rows)?;
    /// assert_eq!(&rows, b"rows");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`open_segment`](Self::open_segment); [`Error::Io`] if `source`
    /// cannot be read or its length cannot be had;
    /// [`Error::Malformed`] if it is shorter than its length said;
    /// [`Error::Misuse`] for a source that does not know its length (give
    /// the length to [`open_segment`](Self::open_segment)).
    pub fn open_segment_from<R: ReadAt + ?Sized>(
        &self,
        segment_id: &str,
        source: &R,
    ) -> Result<OpenedSegment> {
        let segment_len = source.source_len()?.ok_or_else(|| {
            Error::misuse(
                "the segment's source does not know its length: give it to Zone::open_segment",
            )
        })?;
        let mut prefix = [0u8; SEGMENT_PREFIX_LEN];
        // A source shorter than a prefix is refused by open_segment, with
        // the length in the message.
        let prefix_len = segment_len.min(SEGMENT_PREFIX_LEN as u64) as usize;
        let prefix = &mut prefix[..prefix_len];
        source
            .read_exact_at(prefix, 0)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::malformed(
                    "segment",
                    format!("shorter than the {segment_len} bytes its source reported"),
                ),
                _ => Error::from(e),
            })?;
        self.open_segment(segment_id, prefix, segment_len)
    }

    /// The check a segment stream of this zone runs before each chunk:
    /// a stream opened while the zone served stops at its next chunk
    /// once the zone is unavailable. It holds the zone open, not its keys.
    pub(super) fn gate(&self) -> crate::stream::Gate {
        let inner = Arc::clone(&self.inner);
        Arc::new(move || {
            inner
                .state
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .ensure_available()
        })
    }
}

/// Refuses a prefix too short to hold the segment and stream headers.
fn check_prefix(prefix: &[u8]) -> Result<()> {
    if prefix.len() < SEGMENT_PREFIX_LEN {
        return Err(Error::malformed(
            "segment",
            format!(
                "{} bytes is shorter than its header and stream header",
                prefix.len()
            ),
        ));
    }
    Ok(())
}

/// A new buffer of `len` bytes filled by `fill`: the allocating zone calls
/// built on their `_into` forms. `what` names the length if it does not fit
/// in memory.
fn filled_buffer(
    len: u64,
    what: &'static str,
    fill: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| crate::stream::exceeds_memory(what))?;
    let mut out = vec![0u8; len];
    fill(&mut out)?;
    Ok(Bytes::from(out))
}

/// Runs `fill` on `out` and zeroes `out` if it fails: a caller's buffer
/// never keeps part of a segment or its plaintext after an error.
fn zeroed_on_error(out: &mut [u8], fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<()> {
    let result = fill(out);
    if result.is_err() {
        out.fill(0);
    }
    result
}

/// Reads the header at the start of `source`.
pub(super) fn read_header<R: Read>(source: &mut R) -> Result<[u8; SEGMENT_HEADER_LEN]> {
    let mut bytes = [0u8; SEGMENT_HEADER_LEN];
    source.read_exact(&mut bytes).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::malformed("segment header", "truncated"),
        _ => Error::from(e),
    })?;
    Ok(bytes)
}

/// Recovers a segment's DEK from its header with the zone's EZKs. The DEK
/// is authenticated by its wrap, and with it (format v2) every other header
/// byte; callers that decrypt the body also check the key commitment.
pub(super) fn unwrap_dek(
    state: &ZoneState,
    segment_id: &str,
    header: &SegmentHeader,
) -> Result<SecretKey> {
    let m = &state.manifest;
    if header.zone_id() != m.zone_id {
        return Err(Error::Integrity {
            what: "segment header",
            reason: IntegrityFailure::ForeignZone {
                expected: m.zone_id,
                found: header.zone_id(),
            },
        });
    }
    let version = header.ezk_version();
    let ezk = state.ezk(version)?;
    let dek = ezk
        .wrapper
        .unwrap(header.wrapped_dek(), &header.dek_aad(segment_id))
        .map_err(|e| match e {
            Error::Integrity { .. } => {
                Error::tampered("segment DEK (wrong segment id, or a modified header)")
            }
            other => other,
        })?;
    Ok(dek)
}
