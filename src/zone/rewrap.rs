//! Rewrap: move a segment's DEK to the zone's active EZK version by
//! rewriting its 128-byte header, without touching the body. A header of
//! an older format (v1) is rewritten in the current one (v2) on the way,
//! also when its EZK version is already the active one: the body does not
//! depend on the header's format, so this is as safe as any rewrap.
//!
//! Crash safety. A rewrap changes only the header, and both the old and the
//! new header open the same body (the body is bound to the segment's
//! identity, not to the wrapped DEK). The new EZK version is in the
//! persisted manifest before any segment is rewrapped
//! ([`Zone::rotate_ezk`] persists first), and the old one stays until the
//! caller retires it.
//!
//! [`Zone::rewrap_file`] does not rely on the 128-byte overwrite being
//! atomic: it first saves the old header in a journal file beside the
//! segment (`.NAME.cmek-rewrap`: the header ‖ its SHA-256, fsynced), then
//! overwrites and fsyncs, then removes the journal durably. If the write is
//! torn (a short write, a failing disk, a crash), the next `rewrap_file` of
//! that segment finds the journal, keeps the header if it opens, or puts
//! the old one back if not, and goes on. Until then the segment does not
//! open; nothing is lost. [`Zone::rewrap_in_place`] on a caller's file has
//! no journal: it relies on the write not being torn.
//!
//! Journals are storage, and storage is hostile: a journal is used only if
//! it is this zone's, opens as this segment, and equals the current header
//! in every byte a rewrap keeps (zone id, chunk size, key
//! commitment, magic); anything else is [`Error::StateRejected`] with both
//! files left as they are. A header that fails to open because it names an
//! EZK version newer than this zone handle knows is not torn — another
//! process rotated and rewrapped — and is never "repaired" back. The whole
//! of `rewrap_file`, journal included, runs under an exclusive `flock` on
//! the segment file, so two processes rewrapping one directory take turns
//! per file instead of tripping over each other's journals.
//!
//! A batch ([`Zone::rewrap_files`]) is resumable: a segment already under the
//! active version is skipped, so running the batch again after a crash
//! finishes the work without redoing it. It rewraps several files at once
//! (each file still under its own lock and journal), reporting progress
//! and collecting the summary on the calling thread; a rewrap that panics
//! fails that file alone.
//!
//! Readers. A rewrap rewrites the header only. A reader that opened the
//! segment before (a [`DecryptingReader`](crate::stream::DecryptingReader),
//! a seekable reader, an [`OpenedSegment`](super::OpenedSegment)) holds
//! the stream key it derived and keeps reading: the body has not changed.
//! A reader that reads the header while [`Zone::rewrap_file`] overwrites
//! it may see a mix of the old and new bytes: the open then fails —
//! [`Error::Integrity`] as the DEK's wrap does not authenticate, or
//! another header error — never with wrong plaintext, and opening again
//! succeeds. To rule that out, read the
//! header under a shared lock on the segment file (`File::lock_shared`):
//! `rewrap_file` holds the exclusive lock for its whole run. After a crash
//! in the middle of an overwrite, the header may stay torn until the next
//! `rewrap_file` of that segment repairs it from its journal.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::header::{self, SegmentFormat, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{read_header, unwrap_dek, Zone, ZoneId, ZoneState};
use crate::cipher::{fill_random, Nonce, NONCE_LEN};
use crate::error::StateRejection;
use crate::fsutil;
use crate::{Error, Result};

/// The rewrap journal of segment file `segment` (`DIR/.NAME.cmek-rewrap`);
/// it exists only while [`Zone::rewrap_file`] rewrites the header, or after
/// it was interrupted.
pub fn rewrap_journal_path(segment: &Path) -> Option<PathBuf> {
    journal::path_for(segment).ok()
}

/// True if `path` names a rewrap journal rather than a segment (tools that
/// walk a directory of segments skip these).
pub fn is_rewrap_journal(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') && n.ends_with(journal::SUFFIX))
}

/// The header saved in the rewrap journal at `journal`, parsed but not
/// authenticated: `None` if there is no journal, or it is incomplete, or
/// it holds no well-formed header. For tools that sort a directory's
/// journals by zone before handing anything to a zone
/// ([`Zone::rewrap_file`] checks a journal fully before using it).
///
/// # Errors
/// [`Error::Io`] if the journal exists but cannot be read.
pub fn rewrap_journal_header(journal: &Path) -> Result<Option<SegmentHeader>> {
    Ok(match journal::read(journal)? {
        Some(journal::Saved::Complete(bytes)) => SegmentHeader::parse(&bytes).ok(),
        _ => None,
    })
}

/// The rewrap journal: the old header of a segment being rewrapped.
mod journal {
    use std::path::{Path, PathBuf};

    use super::SEGMENT_HEADER_LEN;
    use crate::cipher::{sha256, SHA256_LEN};
    use crate::{fsutil, Error, Result};

    const LEN: usize = SEGMENT_HEADER_LEN + SHA256_LEN;
    pub(super) const SUFFIX: &str = ".cmek-rewrap";

    /// What a journal file holds.
    pub(super) enum Saved {
        /// Not exactly a header and its digest: a crash while the journal
        /// was written, before the segment was touched (or not a journal).
        Incomplete,
        /// A header saved whole.
        Complete([u8; SEGMENT_HEADER_LEN]),
    }

    /// `DIR/.NAME.cmek-rewrap` for segment file `DIR/NAME`.
    pub(super) fn path_for(segment: &Path) -> Result<PathBuf> {
        let name = segment.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} is not a file path", segment.display()))
        })?;
        let mut journal = std::ffi::OsString::from(".");
        journal.push(name);
        journal.push(SUFFIX);
        Ok(segment.with_file_name(journal))
    }

    /// Saves `header` durably; fails if a journal exists.
    pub(super) fn write(path: &Path, header: &[u8; SEGMENT_HEADER_LEN]) -> Result<()> {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&sha256(&[header]));
        fsutil::create_new(path, &bytes, 0o600)
    }

    /// `None` if there is no journal. Reads at most one byte more than a
    /// journal has, whatever the file's size.
    pub(super) fn read(path: &Path) -> Result<Option<Saved>> {
        let bytes = match fsutil::read_capped(path, LEN as u64, "rewrap journal") {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(Error::LimitExceeded { .. }) => return Ok(Some(Saved::Incomplete)),
            Err(e) => return Err(e),
        };
        if bytes.len() != LEN
            || sha256(&[&bytes[..SEGMENT_HEADER_LEN]])[..] != bytes[SEGMENT_HEADER_LEN..]
        {
            return Ok(Some(Saved::Incomplete));
        }
        Ok(Some(Saved::Complete(
            bytes[..SEGMENT_HEADER_LEN].try_into().expect("LEN bytes"),
        )))
    }
}

/// What a rewrap did to one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapOutcome {
    /// The header was rewritten: its DEK moved from EZK version `from` to
    /// `to`, the active one. `from == to` when only the header's format was
    /// upgraded (a v1 header already under the active version).
    Rewrapped {
        /// The previous EZK version.
        from: u32,
        /// The active EZK version it now uses.
        to: u32,
    },
    /// The segment already used the active version in the current header
    /// format; nothing was written.
    AlreadyCurrent,
}

/// Progress of a batch rewrap, reported on the calling thread after each
/// segment, in the order the segments finish (with several threads, not
/// quite the order given).
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
    /// Segments moved to the active version (or to the current header
    /// format).
    pub rewrapped: usize,
    /// Segments that already used it.
    pub already_current: usize,
    /// Segments that could not be rewrapped, with the reason; they are
    /// unchanged.
    pub failed: Vec<(PathBuf, Error)>,
}

/// True if `header` needs no rewrap in a zone whose active version is
/// `active`.
fn is_current(header: &SegmentHeader, active: u32) -> bool {
    header.ezk_version() == active && header.format() == SegmentFormat::CURRENT
}

/// The body of [`Zone::rewrap_header`] and [`Zone::rewrap_headers`]: the
/// header rewrapped under the active EZK (with `nonce` if the caller drew
/// one, else a nonce drawn here), or `None` if it is current. The DEK's
/// unwrap authenticates the old header.
fn rewrap_one(
    state: &ZoneState,
    segment_id: &str,
    header_bytes: &[u8],
    nonce: Option<&Nonce>,
) -> Result<Option<[u8; SEGMENT_HEADER_LEN]>> {
    let old = SegmentHeader::parse(header_bytes)?;
    let active = state.manifest.active;
    let dek = unwrap_dek(state, segment_id, &old)?;
    if is_current(&old, active) {
        return Ok(None);
    }
    let new = old.rewrap_template(state.manifest.zone_id, active);
    let wrapper = &state.ezk(active)?.wrapper;
    let aad = new.dek_aad(segment_id);
    let wrapped = match nonce {
        Some(nonce) => wrapper.wrap_with_drawn_nonce(&dek, &aad, nonce)?,
        None => wrapper.wrap(&dek, &aad)?,
    };
    Ok(Some(new.with_wrapped_dek(wrapped).to_bytes()))
}

impl Zone {
    /// The rewrapped header for a segment's header bytes, or `None` if it
    /// already uses the active EZK version in the current header format. A
    /// v1 header comes back as v2. The DEK is authenticated by its unwrap;
    /// the key commitment is carried over unchanged (it depends on the DEK
    /// only). No provider call.
    ///
    /// # Errors
    /// As [`decrypt_segment`](Zone::decrypt_segment) for the header.
    pub fn rewrap_header(
        &self,
        segment_id: &str,
        header_bytes: &[u8],
    ) -> Result<Option<[u8; SEGMENT_HEADER_LEN]>> {
        rewrap_one(&self.state(), segment_id, header_bytes, None)
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
        Ok(headers
            .iter()
            .zip(nonces.chunks_exact(NONCE_LEN))
            .map(|((segment_id, bytes), nonce)| {
                let nonce: &Nonce = nonce.try_into().expect("chunks of NONCE_LEN");
                rewrap_one(&state, segment_id, bytes, Some(nonce))
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
    /// header, writes the new one over it. The caller syncs `file`, and
    /// keeps other writers away from it meanwhile.
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
    /// returning. The old header is journaled beside the segment first
    /// ([`rewrap_journal_path`]; layout in `docs/FORMAT.md`), so a torn write
    /// loses nothing: the next call first repairs a header that an
    /// interrupted rewrap tore. A journal is used only if it holds this
    /// zone's header of this segment, equal to the current header in every
    /// byte a rewrap keeps (zone id, chunk size, key commitment,
    /// magic); a header under an EZK version newer than this handle knows
    /// is never "repaired" back.
    ///
    /// The whole call holds an exclusive advisory lock (`flock`) on the
    /// segment file: another process rewrapping the same file waits for it,
    /// then finds the header current.
    ///
    /// # Errors
    /// As [`rewrap_in_place`](Self::rewrap_in_place), with the path in I/O
    /// errors; [`Error::StateRejected`] if a journal beside the segment is
    /// another zone's ([`StateRejection::ForeignZone`]) or not this
    /// segment's ([`StateRejection::Mismatch`]) — nothing is written, and
    /// the journal stays for a human to look at; [`Error::UnknownEzkVersion`]
    /// for a header under a version newer than this zone handle holds
    /// (reopen the zone); [`Error::Integrity`] if the header is torn and
    /// its journal cannot repair it.
    pub fn rewrap_file(&self, segment_id: &str, path: &Path) -> Result<RewrapOutcome> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        // Released when `file` is closed, on every return path.
        file.lock().map_err(|e| Error::io(path, e))?;
        let journal = journal::path_for(path)?;
        self.recover_journal(segment_id, &mut file, path, &journal)?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let old = read_header(&mut file).map_err(|e| with_path(e, path))?;
        let mut new = old;
        let outcome = self.rewrap_segment(segment_id, &mut new)?;
        if outcome != RewrapOutcome::AlreadyCurrent {
            journal::write(&journal, &old)?;
            fsutil::overwrite_start(&mut file, path, &new)?;
            fsutil::remove_durably(&journal)?;
        }
        Ok(outcome)
    }

    /// Finishes what an interrupted [`rewrap_file`](Self::rewrap_file)
    /// left: keeps the header if it opens, else puts the journaled one
    /// back; then removes the journal. Called with the segment file locked.
    fn recover_journal(
        &self,
        segment_id: &str,
        file: &mut std::fs::File,
        path: &Path,
        journal: &Path,
    ) -> Result<()> {
        let Some(saved) = journal::read(journal)? else {
            return Ok(());
        };
        // Below, a header that does not open is taken as torn: make sure
        // that is not because the zone cannot open any.
        self.state().ensure_available()?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(path, e))?;
        let current = read_header(file).map_err(|e| with_path(e, path))?;
        let opens = match self.open_header(segment_id, &current) {
            Ok(_) => true,
            Err(e) if is_damage(&e) => false,
            // A newer EZK version than this handle knows (another process
            // rotated and rewrapped), an unavailable key: not torn, and
            // nothing to repair.
            Err(e) => return Err(e),
        };
        let cannot_restore = || {
            Error::tampered(
                "segment header (torn by an interrupted rewrap, and its journal cannot restore it)",
            )
        };
        match saved {
            journal::Saved::Incomplete if opens => {}
            // The journal was cut short before the header was touched, so
            // the header did not tear in this rewrap: it is damaged.
            journal::Saved::Incomplete => return Err(cannot_restore()),
            journal::Saved::Complete(old) => {
                self.check_journal(segment_id, &current, &old)?;
                if !opens {
                    match self.open_header(segment_id, &old) {
                        Ok(_) => {}
                        Err(e @ Error::UnknownEzkVersion { version, newest })
                            if version > newest =>
                        {
                            return Err(e)
                        }
                        Err(Error::Integrity { .. }) => {
                            return Err(rejected(StateRejection::Mismatch(format!(
                                "the journaled header does not open as segment {segment_id:?}"
                            ))))
                        }
                        Err(_) => return Err(cannot_restore()),
                    }
                    tracing::warn!(path = %path.display(), "restoring a segment header torn by an interrupted rewrap");
                    fsutil::overwrite_start(file, path, &old)?;
                }
            }
        }
        fsutil::remove_durably(journal)
    }

    /// Refuses a complete journal that is not this zone's, or whose header
    /// differs from the current one in a byte a rewrap keeps.
    fn check_journal(
        &self,
        segment_id: &str,
        current: &[u8; SEGMENT_HEADER_LEN],
        saved: &[u8; SEGMENT_HEADER_LEN],
    ) -> Result<()> {
        let saved_header = SegmentHeader::parse(saved).map_err(|e| {
            rejected(StateRejection::Mismatch(format!(
                "it holds no segment header ({e})"
            )))
        })?;
        let zone: ZoneId = self.id();
        if saved_header.zone_id() != zone {
            return Err(rejected(StateRejection::ForeignZone {
                expected: zone.to_string(),
                found: saved_header.zone_id().to_string(),
            }));
        }
        if !header::rewrap_preserves(saved, current) {
            return Err(rejected(StateRejection::Mismatch(format!(
                "its header is not an earlier version of segment {segment_id:?}'s: they differ in \
                 bytes a rewrap keeps (chunk size, key commitment, format)"
            ))));
        }
        Ok(())
    }

    /// Rewraps many segment files, each given as (segment id, path), on
    /// up to [`default_rewrap_threads`] threads; see
    /// [`rewrap_files_with`](Self::rewrap_files_with).
    pub fn rewrap_files<I>(&self, files: I, progress: impl FnMut(&RewrapProgress)) -> RewrapSummary
    where
        I: IntoIterator<Item = (String, PathBuf)>,
    {
        self.rewrap_files_with(files, default_rewrap_threads(), progress)
    }

    /// Rewraps many segment files, each given as (segment id, path), each
    /// with [`rewrap_file`](Self::rewrap_file) (its own lock and journal),
    /// on up to `threads` threads at once: each file's rewrap waits on
    /// three `fsync`s, so a few in flight hide the disk's latency.
    ///
    /// `progress` runs on the calling thread after each file, in the order
    /// they finish. A failure is recorded and the batch goes on; running it
    /// again resumes (current segments are skipped). A rewrap that panics
    /// fails that file alone, with an [`Error::Io`] that says so (not an
    /// integrity error: nothing was found damaged); the file is as the
    /// panic left it, which the next rewrap of it finishes or repairs. The
    /// summary lists failures in the order the files were given.
    pub fn rewrap_files_with<I>(
        &self,
        files: I,
        threads: NonZeroUsize,
        mut progress: impl FnMut(&RewrapProgress),
    ) -> RewrapSummary
    where
        I: IntoIterator<Item = (String, PathBuf)>,
    {
        batch::run(
            files.into_iter().collect(),
            threads,
            |segment_id, path| self.rewrap_file(segment_id, path),
            &mut progress,
            &AtomicBool::new(false),
        )
    }

    /// [`rewrap_files`](Self::rewrap_files) for async code, on up to
    /// [`default_rewrap_threads`] threads; see
    /// [`async_rewrap_files_with`](Self::async_rewrap_files_with).
    ///
    /// # Errors
    /// As [`async_rewrap_files_with`](Self::async_rewrap_files_with).
    pub async fn async_rewrap_files<I>(
        &self,
        files: I,
        progress: impl FnMut(&RewrapProgress) + Send + 'static,
    ) -> Result<RewrapSummary>
    where
        I: IntoIterator<Item = (String, PathBuf)>,
    {
        self.async_rewrap_files_with(files, default_rewrap_threads(), progress)
            .await
    }

    /// [`rewrap_files_with`](Self::rewrap_files_with) for async code: the
    /// same batch, run on threads of its own (the rewraps wait on `fsync`s)
    /// while the calling task awaits it, so no executor thread blocks. It
    /// needs no particular runtime. `progress` runs on the batch's thread,
    /// after each file, in the order they finish; if it panics, the panic
    /// resumes in the awaiting task, as it would on the calling thread of
    /// [`rewrap_files_with`](Self::rewrap_files_with).
    ///
    /// Dropping the future stops the batch: files already being rewrapped
    /// finish (each rewrap is crash-safe on its own), no other file starts.
    /// Running the batch again resumes it.
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
    /// std::fs::write(&path, zone.encrypt_segment("000001.sst", b"rows")?)?;
    /// zone.rotate_ezk().await?;
    ///
    /// let summary = zone
    ///     .async_rewrap_files([("000001.sst".to_string(), path)], |p| {
    ///         tracing::info!(done = p.done, total = p.total, "rewrapped");
    ///     })
    ///     .await?;
    /// assert_eq!((summary.rewrapped, summary.failed.len()), (1, 0));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if no thread can be started (nothing was done).
    /// Failures of single files are in the summary, as for
    /// [`rewrap_files_with`](Self::rewrap_files_with).
    pub async fn async_rewrap_files_with<I>(
        &self,
        files: I,
        threads: NonZeroUsize,
        mut progress: impl FnMut(&RewrapProgress) + Send + 'static,
    ) -> Result<RewrapSummary>
    where
        I: IntoIterator<Item = (String, PathBuf)>,
    {
        let files: Vec<_> = files.into_iter().collect();
        let stop = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let (zone, stopped) = (self.clone(), Arc::clone(&stop.0));
        std::thread::Builder::new()
            .name("cmek-rewrap".into())
            .spawn(move || {
                let summary = catch_unwind(AssertUnwindSafe(|| {
                    batch::run(
                        files,
                        threads,
                        |segment_id, path| zone.rewrap_file(segment_id, path),
                        &mut progress,
                        &stopped,
                    )
                }));
                let _ = done_tx.send(summary);
            })
            .map_err(|source| Error::Io { path: None, source })?;
        match done_rx.await {
            Ok(Ok(summary)) => Ok(summary),
            Ok(Err(panic)) => resume_unwind(panic),
            // The thread sends before it ends, whatever happens in it.
            Err(_) => Err(Error::WorkerPanicked {
                what: "the rewrap batch's thread ended without a summary".into(),
            }),
        }
    }
}

/// Stops a batch when dropped: with the future of
/// [`Zone::async_rewrap_files_with`], once it is dropped or done.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The threads [`Zone::rewrap_files`] uses: one per available core, at
/// least 1 and at most 8.
pub fn default_rewrap_threads() -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.clamp(1, 8)).expect("at least 1")
}

/// The batch runner behind [`Zone::rewrap_files_with`], apart from the
/// rewrap itself so that tests can hand it work that fails or panics.
mod batch {
    use std::any::Any;
    use std::num::NonZeroUsize;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread;

    use super::{RewrapOutcome, RewrapProgress, RewrapSummary};
    use crate::{Error, Result};

    /// Sets the flag when dropped: workers stop taking files once the
    /// calling thread unwinds (a panicking progress callback).
    struct StopOnDrop<'a>(&'a AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Runs `work` on every file, on up to `threads` scoped threads that
    /// take the next file as they finish one; reports and tallies on the
    /// calling thread. Once `stop` is set, no file starts (files not
    /// started are in no count of the summary).
    pub(super) fn run<F>(
        files: Vec<(String, PathBuf)>,
        threads: NonZeroUsize,
        work: F,
        progress: &mut dyn FnMut(&RewrapProgress),
        stop: &AtomicBool,
    ) -> RewrapSummary
    where
        F: Fn(&str, &Path) -> Result<RewrapOutcome> + Sync,
    {
        let total = files.len();
        let mut summary = RewrapSummary::default();
        let mut failed = Vec::new();
        let next = AtomicUsize::new(0);
        let (done_tx, done_rx) = mpsc::channel::<(usize, Result<RewrapOutcome>)>();
        let (files, next, work) = (&files, &next, &work);
        thread::scope(|s| {
            for _ in 0..threads.get().min(total) {
                let done_tx = done_tx.clone();
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((segment_id, path)) = files.get(i) else {
                            break;
                        };
                        let result = catch_unwind(AssertUnwindSafe(|| work(segment_id, path)))
                            .unwrap_or_else(|panic| Err(panicked(path, panic.as_ref())));
                        if done_tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let _stop = StopOnDrop(stop);
            for (done, (i, result)) in done_rx.iter().enumerate() {
                let (segment_id, path) = &files[i];
                match result {
                    Ok(RewrapOutcome::AlreadyCurrent) => summary.already_current += 1,
                    Ok(RewrapOutcome::Rewrapped { .. }) => summary.rewrapped += 1,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e.report(), "segment rewrap failed");
                        failed.push((i, e));
                    }
                }
                progress(&RewrapProgress {
                    done: done + 1,
                    total,
                    segment_id: segment_id.clone(),
                    path: path.clone(),
                });
            }
        });
        failed.sort_by_key(|(i, _)| *i);
        summary.failed = failed
            .into_iter()
            .map(|(i, e)| (files[i].1.clone(), e))
            .collect();
        summary
    }

    /// The error for a file whose rewrap panicked: what it is, a bug
    /// ([`Error::WorkerPanicked`]), deliberately not an integrity error,
    /// which would send an operator looking for damaged data.
    fn panicked(path: &Path, panic: &(dyn Any + Send)) -> Error {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("no message");
        Error::WorkerPanicked {
            what: format!(
                "rewrapping {} ({message}); the file is as the panic left it, and rewrapping \
                 it again finishes or repairs it",
                path.display()
            ),
        }
    }
}

/// True for the errors a torn or damaged header gives, as opposed to those
/// of a header this zone handle cannot judge (a newer EZK version) or of a
/// zone that cannot open any header.
fn is_damage(err: &Error) -> bool {
    match err {
        Error::Malformed { .. } | Error::Integrity { .. } => true,
        Error::UnknownEzkVersion { version, newest } => version <= newest,
        _ => false,
    }
}

fn rejected(reason: StateRejection) -> Error {
    Error::StateRejected {
        what: "rewrap journal",
        reason,
    }
}

fn with_path(err: Error, path: &Path) -> Error {
    match err {
        Error::Io { path: None, source } => Error::io(path, source),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    //! Each test is an attack on the journal: a planted or stale journal, a
    //! header another process moved to a newer EZK version, a second
    //! process on the same file. Each ends in a typed error or a correct
    //! result, with nothing overwritten.

    use std::fs;
    use std::sync::Arc;

    use super::*;
    use crate::stream::Params;
    use crate::testing::MockProvider;
    use crate::zone::{Keyring, MemoryManifestStore, ZoneSpec};

    struct Fixture {
        keyring: Arc<Keyring>,
        root: crate::KeyRef,
        store: Arc<MemoryManifestStore>,
        zone: Zone,
        dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let kms = Arc::new(MockProvider::new());
        let root = kms.add_key("root");
        let keyring = Keyring::new(kms);
        let store = Arc::new(MemoryManifestStore::new());
        let zone = keyring
            .create_zone(store.clone(), spec(&root))
            .await
            .unwrap();
        Fixture {
            keyring,
            root,
            store,
            zone,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn spec(root: &crate::KeyRef) -> ZoneSpec {
        ZoneSpec {
            stream: Params::new(4096).unwrap(),
            ..ZoneSpec::new("orders", "mock-region-1", root.clone())
        }
    }

    /// The segment with its header rewritten as format v1 (as an older
    /// release wrote it), under the same DEK and EZK version.
    fn as_v1(zone: &Zone, segment_id: &str, segment: &[u8]) -> Vec<u8> {
        let state = zone.state();
        let header = SegmentHeader::parse(segment).unwrap();
        let dek = unwrap_dek(&state, segment_id, &header).unwrap();
        let v1 = header.in_format(SegmentFormat::V1);
        let wrapped = state
            .ezk(header.ezk_version())
            .unwrap()
            .wrapper
            .wrap(&dek, &v1.dek_aad(segment_id))
            .unwrap();
        let mut out = segment.to_vec();
        out[..SEGMENT_HEADER_LEN].copy_from_slice(&v1.with_wrapped_dek(wrapped).to_bytes());
        out
    }

    fn header_of(bytes: &[u8]) -> [u8; SEGMENT_HEADER_LEN] {
        bytes[..SEGMENT_HEADER_LEN].try_into().unwrap()
    }

    /// A header torn by an interrupted overwrite: the wrapped DEK half
    /// zeroed.
    fn torn(segment: &[u8]) -> Vec<u8> {
        let mut out = segment.to_vec();
        out[60..90].fill(0);
        out
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_planted_journal_of_another_zone_restores_nothing() {
        let f = fixture().await;
        let ours = f.zone.encrypt_segment("seg", b"ours").unwrap();
        // Another zone under the same root, with a segment of the same
        // name: its header is a well-formed, complete journal.
        let other = f
            .keyring
            .create_zone(Arc::new(MemoryManifestStore::new()), spec(&f.root))
            .await
            .unwrap();
        let theirs = other.encrypt_segment("seg", b"theirs").unwrap();
        f.zone.rotate_ezk().await.unwrap();
        let path = f.dir.path().join("seg");
        let journal = journal::path_for(&path).unwrap();

        // Beside a torn header (where a repair would write) and beside an
        // intact one: refused either way, nothing written.
        for segment in [torn(&ours), ours.to_vec()] {
            fs::write(&path, &segment).unwrap();
            journal::write(&journal, &header_of(&theirs)).unwrap();
            let err = f.zone.rewrap_file("seg", &path).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::StateRejected {
                        reason: StateRejection::ForeignZone { .. },
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(fs::read(&path).unwrap(), segment, "segment untouched");
            assert!(journal.exists(), "journal left for a human to look at");
            fs::remove_file(&journal).unwrap();
        }
        // Without the planted journal the segment rewraps as usual.
        assert_eq!(
            f.zone.rewrap_file("seg", &path).unwrap(),
            RewrapOutcome::Rewrapped { from: 1, to: 2 }
        );
        assert_eq!(
            &f.zone
                .decrypt_segment("seg", &fs::read(&path).unwrap())
                .unwrap()[..],
            b"ours"
        );
    }

    #[tokio::test]
    async fn a_stale_journal_that_differs_in_identity_bytes_is_refused() {
        let f = fixture().await;
        let path = f.dir.path().join("seg");
        let journal = journal::path_for(&path).unwrap();
        // A journal left from an earlier segment of the same name in this
        // zone (another DEK, so another commitment): it opens as "seg",
        // but it is not this segment's header.
        let earlier = f.zone.encrypt_segment("seg", b"earlier").unwrap();
        let current = f.zone.encrypt_segment("seg", b"current").unwrap();
        // A v1 journal of this very segment whose chunk size was
        // edited: v1 does not bind the size, so it too opens as "seg".
        let mut resized = as_v1(&f.zone, "seg", &current);
        resized[28..32].copy_from_slice(&(16u32 << 20).to_be_bytes());
        assert_eq!(
            &f.zone.decrypt_segment("seg", &resized).unwrap()[..],
            b"current",
            "v1 cannot tell"
        );
        f.zone.rotate_ezk().await.unwrap();

        for planted in [header_of(&earlier), header_of(&resized)] {
            let damaged = torn(&current);
            fs::write(&path, &damaged).unwrap();
            journal::write(&journal, &planted).unwrap();
            let err = f.zone.rewrap_file("seg", &path).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::StateRejected {
                        reason: StateRejection::Mismatch(_),
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(fs::read(&path).unwrap(), damaged, "nothing restored");
            assert!(journal.exists());
            fs::remove_file(&journal).unwrap();
        }

        // The journal of the interrupted rewrap itself does repair it.
        fs::write(&path, torn(&current)).unwrap();
        journal::write(&journal, &header_of(&current)).unwrap();
        f.zone.rewrap_file("seg", &path).unwrap();
        assert_eq!(
            &f.zone
                .decrypt_segment("seg", &fs::read(&path).unwrap())
                .unwrap()[..],
            b"current"
        );
        assert_eq!(files_in(f.dir.path()), ["seg"]);
    }

    #[tokio::test]
    async fn a_header_under_a_newer_ezk_version_is_not_repaired_back() {
        let f = fixture().await;
        // Two handles on one zone, as two processes have: `stale` does not
        // see the rotation `fresh` makes.
        let stale = &f.zone;
        let segment = stale.encrypt_segment("seg", b"data").unwrap();
        let fresh = f
            .keyring
            .open_zone(f.store.clone(), &stale.anchor())
            .await
            .unwrap();
        let path = f.dir.path().join("seg");
        let journal = journal::path_for(&path).unwrap();
        fs::write(&path, &segment).unwrap();

        // `fresh` rotates and rewraps, and stops before removing its
        // journal (a crash): the header is valid, under version 2.
        fresh.rotate_ezk().await.unwrap();
        let mut moved = segment.to_vec();
        fresh.rewrap_segment("seg", &mut moved).unwrap();
        fs::write(&path, &moved).unwrap();
        journal::write(&journal, &header_of(&segment)).unwrap();

        let err = stale.rewrap_file("seg", &path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnknownEzkVersion {
                    version: 2,
                    newest: 1
                }
            ),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), moved, "not put back to v1");
        assert!(journal.exists());

        // Once the handle sees the rotation, the leftover journal goes.
        let reopened = f
            .keyring
            .open_zone(f.store.clone(), &fresh.anchor())
            .await
            .unwrap();
        assert_eq!(
            reopened.rewrap_file("seg", &path).unwrap(),
            RewrapOutcome::AlreadyCurrent
        );
        assert_eq!(fs::read(&path).unwrap(), moved);
        assert_eq!(files_in(f.dir.path()), ["seg"]);
    }

    #[tokio::test]
    async fn a_file_is_locked_for_its_whole_rewrap() {
        let f = fixture().await;
        let segment = f.zone.encrypt_segment("seg", b"data").unwrap();
        f.zone.rotate_ezk().await.unwrap();
        let path = f.dir.path().join("seg");
        fs::write(&path, &segment).unwrap();

        // Another holder of the file's lock (another process's rewrap).
        let holder = fs::File::open(&path).unwrap();
        holder.lock().unwrap();
        let zone = f.zone.clone();
        let p = path.clone();
        let rewrap = std::thread::spawn(move || zone.rewrap_file("seg", &p));
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!rewrap.is_finished(), "the rewrap waits for the lock");
        assert_eq!(fs::read(&path).unwrap(), segment.to_vec());
        assert!(
            !journal::path_for(&path).unwrap().exists(),
            "no journal yet"
        );
        holder.unlock().unwrap();
        assert_eq!(
            rewrap.join().unwrap().unwrap(),
            RewrapOutcome::Rewrapped { from: 1, to: 2 }
        );
        assert_eq!(files_in(f.dir.path()), ["seg"]);
    }

    #[tokio::test]
    async fn rewrap_upgrades_v1_headers_to_v2() {
        let f = fixture().await;
        let plain = vec![3u8; 10_000];
        let v2 = f.zone.encrypt_segment("seg", &plain).unwrap();
        let v1 = as_v1(&f.zone, "seg", &v2);
        assert_eq!(
            SegmentHeader::parse(&v1).unwrap().format(),
            SegmentFormat::V1
        );
        assert_eq!(&f.zone.decrypt_segment("seg", &v1).unwrap()[..], &plain[..]);

        // Already under the active version: the format alone is upgraded.
        let mut segment = v1.clone();
        assert_eq!(
            f.zone.rewrap_segment("seg", &mut segment).unwrap(),
            RewrapOutcome::Rewrapped { from: 1, to: 1 }
        );
        let header = SegmentHeader::parse(&segment).unwrap();
        assert_eq!(header.format(), SegmentFormat::V2);
        assert_eq!(&segment[SEGMENT_HEADER_LEN..], &v1[SEGMENT_HEADER_LEN..]);
        assert_eq!(
            &f.zone.decrypt_segment("seg", &segment).unwrap()[..],
            &plain[..]
        );
        assert_eq!(
            f.zone.rewrap_segment("seg", &mut segment).unwrap(),
            RewrapOutcome::AlreadyCurrent
        );

        // After a rotation, through a file and through a batch of headers.
        f.zone.rotate_ezk().await.unwrap();
        let path = f.dir.path().join("seg");
        fs::write(&path, &v1).unwrap();
        assert_eq!(
            f.zone.rewrap_file("seg", &path).unwrap(),
            RewrapOutcome::Rewrapped { from: 1, to: 2 }
        );
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            SegmentHeader::parse(&bytes).unwrap().format(),
            SegmentFormat::V2
        );
        assert_eq!(
            &f.zone.decrypt_segment("seg", &bytes).unwrap()[..],
            &plain[..]
        );
        let batch = f.zone.rewrap_headers(&[("seg", &v1[..])]).unwrap();
        let new = batch[0].as_ref().unwrap().unwrap();
        assert_eq!(new[4], 2);
        let moved = [&new[..], &v1[SEGMENT_HEADER_LEN..]].concat();
        assert_eq!(
            &f.zone.decrypt_segment("seg", &moved).unwrap()[..],
            &plain[..]
        );
    }

    #[tokio::test]
    async fn a_torn_v1_to_v2_upgrade_is_repaired_from_its_journal() {
        let f = fixture().await;
        let v2 = f.zone.encrypt_segment("seg", b"data").unwrap();
        let v1 = as_v1(&f.zone, "seg", &v2);
        f.zone.rotate_ezk().await.unwrap();
        let mut upgraded = v1.clone();
        f.zone.rewrap_segment("seg", &mut upgraded).unwrap();
        // The first 40 bytes of the new header reached the disk, the rest
        // did not: version byte new, wrapped DEK half old.
        let mut half = v1.clone();
        half[..40].copy_from_slice(&upgraded[..40]);
        let path = f.dir.path().join("seg");
        fs::write(&path, &half).unwrap();
        journal::write(&journal::path_for(&path).unwrap(), &header_of(&v1)).unwrap();
        assert_eq!(
            f.zone.rewrap_file("seg", &path).unwrap(),
            RewrapOutcome::Rewrapped { from: 1, to: 2 }
        );
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&f.zone.decrypt_segment("seg", &bytes).unwrap()[..], b"data");
        assert_eq!(files_in(f.dir.path()), ["seg"]);
    }

    #[tokio::test]
    async fn a_parallel_batch_rewraps_many_files_once_each() {
        let f = fixture().await;
        let mut files = Vec::new();
        for i in 0..120usize {
            let id = format!("t/{i:03}");
            let path = f.dir.path().join(format!("{i:03}.seg"));
            let body = vec![i as u8; 100 + 37 * i];
            fs::write(&path, f.zone.encrypt_segment(&id, &body).unwrap()).unwrap();
            files.push((id, path, body));
        }
        f.zone.rotate_ezk().await.unwrap();
        // Among them: a file that is no segment, one that is missing, one
        // torn with no journal to repair it, and one listed twice (its two
        // rewraps take turns on the file's lock).
        let bad = f.dir.path().join("bad.seg");
        fs::write(&bad, b"not a segment").unwrap();
        let torn_path = f.dir.path().join("torn.seg");
        fs::write(
            &torn_path,
            torn(&f.zone.encrypt_segment("t/torn", b"x").unwrap()),
        )
        .unwrap();
        let mut batch: Vec<(String, PathBuf)> = files
            .iter()
            .map(|(id, path, _)| (id.clone(), path.clone()))
            .collect();
        batch.insert(10, ("t/bad".into(), bad.clone()));
        batch.insert(50, ("t/missing".into(), f.dir.path().join("missing.seg")));
        batch.insert(90, ("t/torn".into(), torn_path.clone()));
        batch.push(batch[7].clone());
        let total = batch.len();

        let mut seen = Vec::new();
        let summary = f
            .zone
            .rewrap_files_with(batch.clone(), NonZeroUsize::new(4).unwrap(), |p| {
                seen.push(p.clone())
            });
        assert_eq!(summary.rewrapped + summary.already_current, files.len() + 1);
        assert_eq!(summary.already_current, 1, "the file listed twice");
        let failed: Vec<_> = summary.failed.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            failed,
            [bad.clone(), f.dir.path().join("missing.seg"), torn_path],
            "failures in the order given"
        );
        assert!(matches!(summary.failed[0].1, Error::Malformed { .. }));
        assert!(matches!(summary.failed[1].1, Error::Io { .. }));
        assert!(matches!(summary.failed[2].1, Error::Integrity { .. }));
        // Progress: once per file, counting up, on this thread.
        assert_eq!(
            seen.iter().map(|p| p.done).collect::<Vec<_>>(),
            (1..=total).collect::<Vec<_>>()
        );
        assert!(seen.iter().all(|p| p.total == total));
        let mut reported: Vec<_> = seen.iter().map(|p| p.path.clone()).collect();
        let mut given: Vec<_> = batch.iter().map(|(_, p)| p.clone()).collect();
        reported.sort();
        given.sort();
        assert_eq!(reported, given);
        // Every segment moved and reads; no journal is left behind.
        for (id, path, body) in &files {
            let bytes = fs::read(path).unwrap();
            assert_eq!(SegmentHeader::parse(&bytes).unwrap().ezk_version(), 2);
            assert_eq!(&f.zone.decrypt_segment(id, &bytes).unwrap()[..], &body[..]);
        }
        assert!(!files_in(f.dir.path())
            .iter()
            .any(|n| n.ends_with(journal::SUFFIX)));
        assert_eq!(fs::read(&bad).unwrap(), b"not a segment");

        // Run again: nothing left to do.
        let again = f.zone.rewrap_files(batch, |_| {});
        assert_eq!(again.rewrapped, 0);
        assert_eq!(again.already_current, files.len() + 1);
        assert_eq!(again.failed.len(), 3);
    }

    /// `n` segment files under EZK version 1, the zone then rotated to 2.
    async fn segments_to_rewrap(f: &Fixture, n: usize) -> Vec<(String, PathBuf)> {
        let mut files = Vec::new();
        for i in 0..n {
            let id = format!("a/{i:02}");
            let path = f.dir.path().join(format!("{i:02}.seg"));
            fs::write(&path, f.zone.encrypt_segment(&id, &[i as u8; 300]).unwrap()).unwrap();
            files.push((id, path));
        }
        f.zone.rotate_ezk().await.unwrap();
        files
    }

    fn version_of(path: &Path) -> u32 {
        SegmentHeader::parse(&fs::read(path).unwrap())
            .unwrap()
            .ezk_version()
    }

    /// On a one-thread runtime, a task runs while the batch works: the
    /// first file's progress waits for it, and would time out if the batch
    /// held the runtime's only thread.
    #[tokio::test(flavor = "current_thread")]
    async fn an_async_batch_leaves_the_runtime_free_and_reports_like_the_blocking_one() {
        let f = fixture().await;
        let files = segments_to_rewrap(&f, 6).await;
        let (ping_tx, ping_rx) = std::sync::mpsc::channel::<()>();
        let pinger = tokio::spawn(async move { ping_tx.send(()).unwrap() });
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let summary = {
            let seen = seen.clone();
            f.zone
                .async_rewrap_files(files.clone(), move |p| {
                    if p.done == 1 {
                        ping_rx
                            .recv_timeout(std::time::Duration::from_secs(20))
                            .expect("a task ran while the batch worked");
                    }
                    seen.lock().unwrap().push(p.done);
                })
                .await
                .unwrap()
        };
        pinger.await.unwrap();
        assert_eq!((summary.rewrapped, summary.failed.len()), (6, 0));
        assert_eq!(*seen.lock().unwrap(), (1..=6).collect::<Vec<_>>());
        assert!(files.iter().all(|(_, path)| version_of(path) == 2));
        // A progress callback that panics panics in the awaiting task.
        let again = tokio::spawn({
            let zone = f.zone.clone();
            let mut files = files.clone();
            files.push(("a/missing".into(), f.dir.path().join("missing.seg")));
            async move {
                zone.async_rewrap_files(files, |p| {
                    if p.done == 2 {
                        panic!("progress failed");
                    }
                })
                .await
            }
        });
        assert!(again.await.unwrap_err().is_panic());
    }

    /// Dropping the future lets the file in progress finish and starts no
    /// other: the first file is held under its lock while the future is
    /// dropped.
    #[tokio::test]
    async fn a_dropped_async_batch_starts_no_other_file() {
        let f = fixture().await;
        let files = segments_to_rewrap(&f, 8).await;
        let first = fs::File::open(&files[0].1).unwrap();
        first.lock().unwrap();
        let mut batch = Box::pin(f.zone.async_rewrap_files_with(
            files.clone(),
            NonZeroUsize::new(1).unwrap(),
            |_| {},
        ));
        let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut batch).await;
        assert!(waited.is_err(), "the batch waits on the first file's lock");
        drop(batch);
        first.unlock().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while version_of(&files[0].1) != 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "the first file finishes"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let versions: Vec<_> = files.iter().map(|(_, path)| version_of(path)).collect();
        assert_eq!(versions, [2, 1, 1, 1, 1, 1, 1, 1]);
        // Run again: the rest.
        let summary = f.zone.async_rewrap_files(files, |_| {}).await.unwrap();
        assert_eq!((summary.rewrapped, summary.already_current), (7, 1));
    }

    #[test]
    fn a_panicking_rewrap_fails_its_file_alone_and_not_as_damage() {
        let files: Vec<(String, PathBuf)> = (0..40)
            .map(|i| (format!("s{i}"), PathBuf::from(format!("/segments/s{i}"))))
            .collect();
        let mut done = Vec::new();
        let summary = batch::run(
            files,
            NonZeroUsize::new(3).unwrap(),
            |id, _| match id {
                "s13" => panic!("injected"),
                "s20" => Err(Error::tampered("test")),
                _ => Ok(RewrapOutcome::Rewrapped { from: 1, to: 2 }),
            },
            &mut |p| done.push(p.done),
            &AtomicBool::new(false),
        );
        assert_eq!(summary.rewrapped, 38);
        assert_eq!(done, (1..=40).collect::<Vec<_>>());
        let [(first, panicked), (second, damaged)] = &summary.failed[..] else {
            panic!("two failures expected: {:?}", summary.failed);
        };
        assert_eq!(first, Path::new("/segments/s13"));
        assert_eq!(second, Path::new("/segments/s20"));
        assert!(matches!(damaged, Error::Integrity { .. }));
        assert!(
            matches!(panicked, Error::WorkerPanicked { .. }),
            "{panicked:?}"
        );
        assert_eq!(panicked.kind(), crate::ErrorKind::Bug);
        let message = panicked.to_string();
        assert!(
            message.contains("panicked")
                && message.contains("(injected)")
                && message.contains("/segments/s13"),
            "{message}"
        );
    }

    #[test]
    fn one_thread_keeps_the_given_order_and_an_empty_batch_does_nothing() {
        let files: Vec<(String, PathBuf)> = (0..10)
            .map(|i| (format!("s{i}"), PathBuf::from(format!("s{i}"))))
            .collect();
        let mut order = Vec::new();
        let summary = batch::run(
            files.clone(),
            NonZeroUsize::new(1).unwrap(),
            |_, _| Ok(RewrapOutcome::AlreadyCurrent),
            &mut |p| order.push(p.segment_id.clone()),
            &AtomicBool::new(false),
        );
        assert_eq!(summary.already_current, 10);
        assert_eq!(
            order,
            files.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
        );
        let empty = batch::run(
            Vec::new(),
            NonZeroUsize::new(4).unwrap(),
            |_, _| unreachable!("no file"),
            &mut |_| unreachable!("no progress"),
            &AtomicBool::new(false),
        );
        assert_eq!(
            empty.rewrapped + empty.already_current + empty.failed.len(),
            0
        );
        assert!(default_rewrap_threads().get() <= 8);
    }
}
