//! Rewrap: move a segment's DEK to the zone's active EZK version by
//! rewriting its 128-byte header, without touching the body.
//!
//! Crash safety. A rewrap changes only the header, and both the old and the
//! new header open the same body (the body is bound to the segment's
//! identity, not to the wrapped DEK). The new EZK version is in the
//! persisted manifest before any segment is rewrapped
//! ([`Zone::rotate_ezk`] persists first), and the old one stays until the
//! caller retires it, so a file holds a decryptable header at every instant
//! — provided the 128-byte write at offset 0 is not torn. It lies within the
//! first 512-byte sector, which storage devices write atomically.
//!
//! A batch ([`Zone::rewrap_files`]) is resumable: a segment already under the
//! active version is skipped, so running the batch again after a crash
//! finishes the work without redoing it.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::header::{self, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{read_header, unwrap_dek, Zone};
use crate::cipher::{fill_random, Nonce, NONCE_LEN};
use crate::{Error, Result};

/// What a rewrap did to one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapOutcome {
    /// The header moved from EZK version `from` to `to`.
    Rewrapped {
        /// The previous EZK version.
        from: u32,
        /// The active EZK version it now uses.
        to: u32,
    },
    /// The segment already used the active version; nothing was written.
    AlreadyCurrent,
}

/// Progress of a batch rewrap, reported after each segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Segments handled so far, this one included.
    pub done: usize,
    /// Segments in the batch.
    pub total: usize,
    /// The segment just handled.
    pub segment_id: String,
    /// Its file.
    pub path: PathBuf,
}

/// The result of a batch rewrap.
#[derive(Debug, Default)]
pub struct RewrapSummary {
    /// Segments moved to the active version.
    pub rewrapped: usize,
    /// Segments that already used it.
    pub already_current: usize,
    /// Segments that could not be rewrapped, with the reason; they are
    /// unchanged.
    pub failed: Vec<(PathBuf, Error)>,
}

impl Zone {
    /// The rewrapped header for a segment's header bytes, or `None` if it
    /// already uses the active EZK version. The DEK is authenticated by its
    /// unwrap; the key commitment is carried over unchanged (it depends on
    /// the DEK only). No provider call.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Zone::decrypt_segment) for the header.
    pub fn rewrap_header(
        &self,
        segment_id: &str,
        header_bytes: &[u8],
    ) -> Result<Option<[u8; SEGMENT_HEADER_LEN]>> {
        let old = SegmentHeader::parse(header_bytes)?;
        let state = self.state();
        let active = state.manifest.active;
        let dek = unwrap_dek(&state, segment_id, &old)?;
        if old.ezk_version() == active {
            return Ok(None);
        }
        let zone_id = state.manifest.zone_id;
        let wrapped = state
            .ezk(active)?
            .wrapper
            .wrap(&dek, &header::dek_aad(&zone_id, segment_id, active))?;
        Ok(Some(old.rewrapped(active, wrapped).to_bytes()))
    }

    /// Rewraps many headers at once: like [`rewrap_header`](Self::rewrap_header)
    /// for each `(segment id, header bytes)`, but with every nonce drawn from
    /// the OS in one call — the OS call, not AES, dominates a single
    /// rewrap's cost. For engines that keep headers in a metadata store.
    ///
    /// # Errors
    /// [`Error::Random`] if no randomness is available; otherwise one result
    /// per header, as [`rewrap_header`](Self::rewrap_header).
    #[allow(clippy::type_complexity)]
    pub fn rewrap_headers(
        &self,
        headers: &[(&str, &[u8])],
    ) -> Result<Vec<Result<Option<[u8; SEGMENT_HEADER_LEN]>>>> {
        let mut nonces = vec![0u8; headers.len() * NONCE_LEN];
        fill_random(&mut nonces)?;
        let state = self.state();
        let active = state.manifest.active;
        let zone_id = state.manifest.zone_id;
        let wrapper = &state.ezk(active)?.wrapper;
        Ok(headers
            .iter()
            .zip(nonces.chunks_exact(NONCE_LEN))
            .map(|((segment_id, bytes), nonce)| {
                let old = SegmentHeader::parse(bytes)?;
                let dek = unwrap_dek(&state, segment_id, &old)?;
                if old.ezk_version() == active {
                    return Ok(None);
                }
                let nonce: &Nonce = nonce.try_into().expect("chunks of NONCE_LEN");
                let wrapped = wrapper.wrap_with_drawn_nonce(
                    &dek,
                    &header::dek_aad(&zone_id, segment_id, active),
                    nonce,
                )?;
                Ok(Some(old.rewrapped(active, wrapped).to_bytes()))
            })
            .collect())
    }

    /// Rewraps a segment held in memory, rewriting its first 128 bytes.
    ///
    /// # Errors
    /// As [`rewrap_header`](Self::rewrap_header); `segment` is unchanged on
    /// error.
    pub fn rewrap_segment(&self, segment_id: &str, segment: &mut [u8]) -> Result<RewrapOutcome> {
        let from = SegmentHeader::parse(segment)?.ezk_version();
        match self.rewrap_header(segment_id, segment)? {
            None => Ok(RewrapOutcome::AlreadyCurrent),
            Some(new) => {
                segment[..SEGMENT_HEADER_LEN].copy_from_slice(&new);
                Ok(RewrapOutcome::Rewrapped {
                    from,
                    to: SegmentHeader::parse(&new)?.ezk_version(),
                })
            }
        }
    }

    /// Rewraps the segment at the start of `file` in place: reads the
    /// header, writes the new one over it. The caller syncs `file`.
    ///
    /// # Errors
    /// As [`rewrap_header`](Self::rewrap_header); [`Error::Io`].
    pub fn rewrap_in_place<F: Read + Write + Seek>(
        &self,
        segment_id: &str,
        file: &mut F,
    ) -> Result<RewrapOutcome> {
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = read_header(file)?;
        let outcome = self.rewrap_segment(segment_id, &mut bytes)?;
        if outcome != RewrapOutcome::AlreadyCurrent {
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&bytes)?;
            file.flush()?;
        }
        Ok(outcome)
    }

    /// Rewraps the segment file at `path` in place and fsyncs it before
    /// returning.
    ///
    /// # Errors
    /// As [`rewrap_in_place`](Self::rewrap_in_place), with the path in I/O
    /// errors.
    pub fn rewrap_file(&self, segment_id: &str, path: &Path) -> Result<RewrapOutcome> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let outcome = self
            .rewrap_in_place(segment_id, &mut file)
            .map_err(|e| with_path(e, path))?;
        if outcome != RewrapOutcome::AlreadyCurrent {
            file.sync_data().map_err(|e| Error::io(path, e))?;
        }
        Ok(outcome)
    }

    /// Rewraps many segment files, each given as (segment id, path),
    /// reporting progress after each. A failure is recorded and the batch
    /// goes on; running it again resumes (current segments are skipped).
    pub fn rewrap_files<I>(
        &self,
        files: I,
        mut progress: impl FnMut(&RewrapProgress),
    ) -> RewrapSummary
    where
        I: IntoIterator<Item = (String, PathBuf)>,
    {
        let files: Vec<_> = files.into_iter().collect();
        let total = files.len();
        let mut summary = RewrapSummary::default();
        for (done, (segment_id, path)) in files.into_iter().enumerate() {
            match self.rewrap_file(&segment_id, &path) {
                Ok(RewrapOutcome::AlreadyCurrent) => summary.already_current += 1,
                Ok(RewrapOutcome::Rewrapped { .. }) => summary.rewrapped += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "segment rewrap failed");
                    summary.failed.push((path.clone(), e));
                }
            }
            progress(&RewrapProgress {
                done: done + 1,
                total,
                segment_id,
                path,
            });
        }
        summary
    }
}

fn with_path(err: Error, path: &Path) -> Error {
    match err {
        Error::Io { path: None, source } => Error::io(path, source),
        other => other,
    }
}
