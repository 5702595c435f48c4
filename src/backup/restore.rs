//! Restoring a backup: into a new encrypted zone (rewrap or re-encrypt) or
//! to plaintext files, resumable after a crash at any point.
//!
//! Destination layout:
//!
//! ```text
//! restore.state      what is restored from which backup into which zone (written first)
//! zone.manifest      the new zone's manifest (encrypted modes)
//! segments/<name>    the restored segments (names as in the backup)
//! ```
//!
//! Order of work, and why a crash anywhere is recoverable:
//!
//! 1. The backup's manifest is read and its zone opened with the backup's
//!    root key (provider calls; nothing is written yet).
//! 2. `restore.state` is written atomically, with the new zone's id drawn
//!    beforehand. A rerun finds it, checks that it is the same backup and
//!    mode, and reuses the zone id; a destination holding anything else is
//!    refused.
//! 3. The new zone is created under that id (its manifest written
//!    atomically), or opened if an earlier run created it.
//! 4. Each segment is written to `.<name>.partial`, checked (its SHA-256
//!    and length against the backup's record, its header and body
//!    authenticated), synced, and renamed to `<name>`, then the directory is
//!    synced. A segment at its final name is complete and verified; a rerun
//!    skips it and overwrites any partial file.
//! 5. Every segment is checked once more (present, of the right length, its
//!    header opening in the new zone) and `restore.state` is marked
//!    complete.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use super::bundle::BundleSegment;
use super::create::{check_record, open_segment, Bundle};
use super::digest::HashingReader;
use super::fs::{commit, Fs, FsFile, FsManifestStore, RealFs};
use super::names::{partial_file_name, segment_file_name};
use super::state::{RestoreMode, RestoreState};
use super::{copy_all, CopyError, Phase, Progress, RESTORE_STATE, SEGMENTS_DIR, ZONE_MANIFEST};
use crate::provider::{KeyProvider, KeyRef};
use crate::zone::{Keyring, SegmentHeader, Zone, ZoneAnchor, ZoneId, ZoneSpec, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// Where restored segments go.
#[derive(Debug)]
enum Target {
    Zone {
        keyring: Arc<Keyring>,
        spec: ZoneSpec,
    },
    Plaintext {
        region: String,
    },
}

/// A restore of one backup into one destination directory. See the
/// [module docs](crate::backup) for the modes, regions and crash safety.
///
/// ```no_run
/// # async fn f(source: std::sync::Arc<cmek::zone::Keyring>, target: std::sync::Arc<cmek::zone::Keyring>,
/// #            spec: cmek::zone::ZoneSpec) -> cmek::Result<()> {
/// use cmek::backup::Restore;
/// let report = Restore::rewrap("backup-dir", "restored-dir", source, target, spec)
///     .run(|p| eprintln!("{}/{} {}", p.done, p.total, p.segment_id))
///     .await?;
/// let zone = report.zone.expect("an encrypted restore has a zone");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Restore {
    bundle_dir: PathBuf,
    dest: PathBuf,
    source: Arc<Keyring>,
    target: Target,
    mode: RestoreMode,
    threads: usize,
    fs: Arc<dyn Fs>,
}

/// Segments restored at once by default: each is independent, and one
/// thread is bound by hashing and AES-GCM of a single stream.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

impl Restore {
    /// Restores into a new zone `spec` (created through `target`) by
    /// rewrapping DEKs; bodies are copied untouched. `source` opens the
    /// backup's EZKs: a keyring whose provider serves the backup's root
    /// key in `spec.region` (for a backup from another region, a provider
    /// of this region, which uses a multi-region key's replica).
    pub fn rewrap(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        target: Arc<Keyring>,
        spec: ZoneSpec,
    ) -> Self {
        Self::new(
            bundle_dir.into(),
            dest.into(),
            source,
            Target::Zone {
                keyring: target,
                spec,
            },
            RestoreMode::Rewrap,
        )
    }

    /// Restores into a new zone `spec` with fresh DEKs: every segment is
    /// decrypted and encrypted again. As [`rewrap`](Self::rewrap) otherwise.
    pub fn reencrypt(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        target: Arc<Keyring>,
        spec: ZoneSpec,
    ) -> Self {
        Self::new(
            bundle_dir.into(),
            dest.into(),
            source,
            Target::Zone {
                keyring: target,
                spec,
            },
            RestoreMode::Reencrypt,
        )
    }

    /// Restores every segment to a plaintext file, in `region` (where
    /// `source`'s provider serves).
    pub fn plaintext(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        region: impl Into<String>,
    ) -> Self {
        Self::new(
            bundle_dir.into(),
            dest.into(),
            source,
            Target::Plaintext {
                region: region.into(),
            },
            RestoreMode::Plaintext,
        )
    }

    fn new(
        bundle_dir: PathBuf,
        dest: PathBuf,
        source: Arc<Keyring>,
        target: Target,
        mode: RestoreMode,
    ) -> Self {
        Self {
            bundle_dir,
            dest,
            source,
            target,
            mode,
            threads: default_threads(),
            fs: Arc::new(RealFs),
        }
    }

    /// Restores up to `threads` segments at once (at least 1; by default
    /// the number of CPUs, at most 4). Each segment is restored, verified
    /// and renamed into place on its own, so crash safety does not depend
    /// on it.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Replaces the file layer (tests inject faults with it).
    #[cfg(test)]
    pub(crate) fn with_fs(mut self, fs: Arc<dyn Fs>) -> Self {
        self.fs = fs;
        self
    }

    /// The mode.
    pub fn mode(&self) -> RestoreMode {
        self.mode
    }

    /// The region the restore runs in.
    fn region(&self) -> &str {
        match &self.target {
            Target::Zone { spec, .. } => &spec.region,
            Target::Plaintext { region } => region,
        }
    }

    /// Does everything that needs a provider — opens the backup's zone,
    /// creates (or, on a rerun, opens) the new one — and records the
    /// restore in the destination. [`PreparedRestore::run`] does the rest,
    /// with blocking file I/O and no provider call (under tokio, run it in
    /// `spawn_blocking`).
    ///
    /// # Errors
    /// [`Error::RegionMismatch`] if the backup's root key cannot be used in
    /// this region (a single-region key from another region), or the new
    /// zone's root key is not in the new zone's region — both checked before
    /// any provider call; [`Error::InvalidArgument`] if the destination
    /// holds something other than this restore; [`Error::Malformed`] for a
    /// damaged backup manifest; provider errors; [`Error::Io`].
    pub async fn prepare(&self) -> Result<PreparedRestore> {
        let fs = self.fs.clone();
        let bundle = Bundle::open_with(&*fs, self.bundle_dir.clone())?;
        let backup_root = bundle.manifest().zone().root().clone();
        check_region(
            self.source.provider().as_ref(),
            &backup_root,
            self.region(),
            "the backup was made under a single-region key, which exists only in its own \
             region: a backup restores in another region only if its zone's root key is a \
             multi-region (mrk-) key with a replica there",
        )?;
        if let Target::Zone { keyring, spec } = &self.target {
            check_region(
                keyring.provider().as_ref(),
                &spec.root,
                &spec.region,
                "a zone's root key must be in the zone's region (or be a multi-region key \
                 replicated there)",
            )?;
        }

        // The backup's zone, opened read-only: its store is never written.
        let bundled = bundle.manifest().zone();
        let source_anchor = ZoneAnchor::new(bundled.zone_id(), bundled.root().clone(), 0);
        let source = self
            .source
            .open_bundled_zone(&bundle.manifest().zone_manifest, &source_anchor)
            .await?;

        let state = self.load_or_start(&bundle)?;
        let target = match &self.target {
            Target::Zone { keyring, spec } => {
                let store = Arc::new(FsManifestStore {
                    fs: fs.clone(),
                    path: self.dest.join(ZONE_MANIFEST),
                });
                let zone = if crate::zone::ManifestStore::load(&*store)?.is_some() {
                    // Only the zone this restore created, under the target
                    // root it was asked for, is resumed.
                    let anchor = ZoneAnchor::new(state.zone_id, spec.root.clone(), 1);
                    keyring.open_zone(store, &anchor).await?
                } else {
                    let body = match self.mode {
                        RestoreMode::Rewrap => source.manifest().body_zone_id(),
                        _ => state.zone_id,
                    };
                    keyring
                        .create_zone_with_ids(store, spec.clone(), state.zone_id, body)
                        .await?
                };
                Some(zone)
            }
            Target::Plaintext { .. } => None,
        };
        fs.create_dir_all(&self.dest.join(SEGMENTS_DIR))?;
        Ok(PreparedRestore {
            fs,
            bundle,
            dest: self.dest.clone(),
            source,
            target,
            mode: self.mode,
            threads: self.threads,
            state,
        })
    }

    /// [`prepare`](Self::prepare), then [`PreparedRestore::run`] on the
    /// current thread.
    ///
    /// # Errors
    /// As both.
    pub async fn run(&self, progress: impl FnMut(&Progress<'_>)) -> Result<RestoreReport> {
        self.prepare().await?.run(progress)
    }

    /// The destination's restore state: this restore's, resumed, or a new
    /// one written before anything else.
    fn load_or_start(&self, bundle: &Bundle) -> Result<RestoreState> {
        let path = self.dest.join(RESTORE_STATE);
        let backup_id = bundle.manifest().backup_id;
        if let Some(bytes) = self.fs.read(&path)? {
            let state = RestoreState::parse(&bytes)?;
            if state.backup_id != backup_id || state.mode != self.mode {
                return Err(Error::InvalidArgument(format!(
                    "{} holds a restore of another backup or in another mode ({:?})",
                    self.dest.display(),
                    state.mode
                )));
            }
            tracing::info!(dest = %self.dest.display(), complete = state.complete, "resuming restore");
            return Ok(state);
        }
        // Names starting with '.' are temporary files a crash may leave;
        // anything else is someone's data, not to be mixed with a restore.
        let others: Vec<_> = self
            .fs
            .list(&self.dest)?
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect();
        if !others.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} is not empty and holds no restore state (found {})",
                self.dest.display(),
                others.join(", ")
            )));
        }
        let state = RestoreState {
            backup_id,
            mode: self.mode,
            zone_id: match self.mode {
                RestoreMode::Plaintext => ZoneId::from_bytes([0; 16]),
                _ => ZoneId::generate()?,
            },
            complete: false,
        };
        self.fs.create_dir_all(&self.dest)?;
        self.fs.write_atomic(&path, &state.to_bytes())?;
        Ok(state)
    }
}

/// Refuses a root key that cannot serve `region`: only a multi-region key
/// leaves its home region, and only the key's provider can say which keys
/// are (an alias never is).
fn check_region(
    provider: &dyn KeyProvider,
    root: &KeyRef,
    region: &str,
    reason: &'static str,
) -> Result<()> {
    if root.region() == region || provider.is_multi_region(root) {
        return Ok(());
    }
    Err(Error::RegionMismatch {
        key: root.to_string(),
        key_region: root.region().to_owned(),
        region: region.to_owned(),
        reason,
    })
}

/// A restore whose zones are open: the file work is left, and needs no
/// provider.
#[derive(Debug)]
pub struct PreparedRestore {
    fs: Arc<dyn Fs>,
    bundle: Bundle,
    dest: PathBuf,
    source: Zone,
    target: Option<Zone>,
    mode: RestoreMode,
    threads: usize,
    state: RestoreState,
}

/// One restored segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredSegment {
    /// The segment's id.
    pub segment_id: String,
    /// Its file in the destination.
    pub path: PathBuf,
    /// The file's length.
    pub len: u64,
}

/// The result of a finished restore.
#[derive(Debug)]
pub struct RestoreReport {
    /// How the segments were restored.
    pub mode: RestoreMode,
    /// The new zone, open (encrypted modes).
    pub zone: Option<Zone>,
    /// The new zone's manifest file (encrypted modes): reopen the zone with
    /// a [`FileManifestStore`](crate::zone::FileManifestStore) on it.
    pub zone_manifest: Option<PathBuf>,
    /// Every segment of the backup, restored and verified, in id order.
    pub segments: Vec<RestoredSegment>,
    /// Segments restored by this run.
    pub restored: usize,
    /// Segments an earlier, interrupted run had restored.
    pub already_done: usize,
}

impl PreparedRestore {
    /// The new zone (encrypted modes).
    pub fn zone(&self) -> Option<&Zone> {
        self.target.as_ref()
    }

    /// Restores every segment not yet restored, then checks them all,
    /// reporting progress after each segment. Blocking file I/O; no
    /// provider call.
    ///
    /// Segments are restored on up to [`Restore::threads`] threads; the
    /// progress callback runs on the calling thread, once per segment, in
    /// completion order.
    ///
    /// # Errors
    /// [`Error::BackupSegmentCorrupt`] naming a segment that is missing
    /// from the backup, differs from its record or does not authenticate
    /// (the first in id order among those tried; every segment restored
    /// before the error stays restored — fix the backup and run again);
    /// [`Error::Io`]. Run again after any error to resume.
    pub fn run(mut self, mut progress: impl FnMut(&Progress<'_>)) -> Result<RestoreReport> {
        let seg_dir = self.dest.join(SEGMENTS_DIR);
        let segments = self.bundle.manifest().segments().to_vec();
        let total = segments.len();
        let bytes_total = self.bundle.manifest().total_bytes();
        let (mut done, mut already_done, mut bytes_done) = (0, 0, 0);
        let mut pending = Vec::new();
        for seg in &segments {
            let in_place = self
                .fs
                .len(&seg_dir.join(segment_file_name(&seg.segment_id)))?
                .is_some();
            if !in_place {
                pending.push(seg);
                continue;
            }
            already_done += 1;
            done += 1;
            bytes_done += seg.len;
            progress(&Progress {
                phase: Phase::Restore,
                done,
                total,
                bytes_done,
                bytes_total,
                segment_id: &seg.segment_id,
                already_done: true,
            });
        }
        let restored = pending.len();
        self.restore_all(&pending, &seg_dir, |seg| {
            done += 1;
            bytes_done += seg.len;
            progress(&Progress {
                phase: Phase::Restore,
                done,
                total,
                bytes_done,
                bytes_total,
                segment_id: &seg.segment_id,
                already_done: false,
            });
        })?;

        let mut report = Vec::with_capacity(total);
        let mut bytes_done = 0;
        for (i, seg) in segments.iter().enumerate() {
            report.push(self.check_restored(seg, &seg_dir)?);
            bytes_done += seg.len;
            progress(&Progress {
                phase: Phase::Verify,
                done: i + 1,
                total,
                bytes_done,
                bytes_total,
                segment_id: &seg.segment_id,
                already_done: false,
            });
        }
        if !self.state.complete {
            self.state.complete = true;
            self.fs
                .write_atomic(&self.dest.join(RESTORE_STATE), &self.state.to_bytes())?;
        }
        tracing::info!(dest = %self.dest.display(), mode = ?self.mode, restored, already_done,
            "restore complete");
        Ok(RestoreReport {
            mode: self.mode,
            zone_manifest: self.target.as_ref().map(|_| self.dest.join(ZONE_MANIFEST)),
            zone: self.target,
            segments: report,
            restored,
            already_done,
        })
    }

    /// Restores `pending` on up to `self.threads` threads, calling
    /// `finished` on this thread after each segment. On an error no new
    /// segment is started; the error of the first failed segment in id
    /// order is returned.
    fn restore_all(
        &self,
        pending: &[&BundleSegment],
        seg_dir: &Path,
        mut finished: impl FnMut(&BundleSegment),
    ) -> Result<()> {
        let threads = self.threads.min(pending.len());
        if threads <= 1 {
            for seg in pending {
                self.restore_segment(seg, seg_dir)?;
                finished(seg);
            }
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<()>)>();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(seg) = pending.get(i) else { break };
                        let result = self.restore_segment(seg, seg_dir);
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        if tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut first_error: Option<(usize, Error)> = None;
            for (i, result) in rx {
                match result {
                    Ok(()) => finished(pending[i]),
                    Err(e) => {
                        if first_error.as_ref().is_none_or(|(j, _)| i < *j) {
                            first_error = Some((i, e));
                        }
                    }
                }
            }
            first_error.map_or(Ok(()), |(_, e)| Err(e))
        })
    }

    /// Restores one segment to a temporary file, verifies it, and renames
    /// it into place. On failure the temporary file is removed: it may
    /// hold part of a segment that did not verify (plaintext, in plaintext
    /// mode).
    fn restore_segment(&self, seg: &BundleSegment, seg_dir: &Path) -> Result<()> {
        let partial = seg_dir.join(partial_file_name(&seg.segment_id));
        let final_path = seg_dir.join(segment_file_name(&seg.segment_id));
        let result = self.write_segment(seg, &partial, &final_path);
        if result.is_err() {
            // Best effort: a rerun overwrites it anyway.
            let _ = self.fs.remove_file(&partial);
        }
        result
    }

    fn write_segment(&self, seg: &BundleSegment, partial: &Path, final_path: &Path) -> Result<()> {
        let id = seg.segment_id.as_str();
        let src_path = self.bundle.segment_path(id);
        let mut input = HashingReader::new(open_segment(&*self.fs, &src_path, id)?);
        let mut out = self.fs.create(partial)?;
        let paths = Paths {
            segment: id,
            source: &src_path,
            dest: partial,
        };
        match (self.mode, &self.target) {
            (RestoreMode::Rewrap, Some(target)) => {
                let mut header = [0u8; SEGMENT_HEADER_LEN];
                input
                    .read_exact(&mut header)
                    .map_err(|e| paths.read_error(e))?;
                let header = self
                    .source
                    .rewrap_header_into(target, id, &header)
                    .map_err(|e| paths.content_error(e))?;
                out.write_all(&header).map_err(|e| Error::io(partial, e))?;
                // The body is copied as it is, and authenticated on the way
                // through the new zone, as the new zone will read it.
                let mut tee = Tee {
                    input: &mut input,
                    out: &mut *out,
                    failed: None,
                };
                let result = target
                    .segment_reader(id, (&header[..]).chain(&mut tee))
                    .and_then(|mut r| {
                        copy_all(&mut r, &mut io::sink()).map_err(|e| match e {
                            CopyError::Read(e) | CopyError::Write(e) => Error::from(e),
                        })
                    });
                if let Some(failed) = tee.failed.take() {
                    return Err(failed.with_paths(&src_path, partial));
                }
                result.map_err(|e| paths.content_error(e))?;
            }
            (RestoreMode::Reencrypt, Some(target)) => {
                let mut reader = self
                    .source
                    .segment_reader(id, &mut input)
                    .map_err(|e| paths.content_error(e))?;
                let mut writer = target.segment_writer(id, &mut *out)?;
                copy_all(&mut reader, &mut writer).map_err(|e| paths.copy_error(e))?;
                writer.finish().map_err(|e| paths.write_error(e))?;
            }
            (RestoreMode::Plaintext, None) => {
                let mut reader = self
                    .source
                    .segment_reader(id, &mut input)
                    .map_err(|e| paths.content_error(e))?;
                copy_all(&mut reader, &mut *out).map_err(|e| paths.copy_error(e))?;
            }
            _ => unreachable!("the mode and the target are set together"),
        }
        check_record(seg, input.finish())?;
        commit(&*self.fs, out, partial, final_path)
    }

    /// Checks a segment at its final name: present, of the length the
    /// backup implies, and (encrypted modes) its header opens in the new
    /// zone.
    fn check_restored(&self, seg: &BundleSegment, seg_dir: &Path) -> Result<RestoredSegment> {
        let id = seg.segment_id.as_str();
        let path = seg_dir.join(segment_file_name(id));
        let len = self.fs.len(&path)?.ok_or_else(|| {
            Error::io(
                &path,
                io::Error::new(io::ErrorKind::NotFound, "restored segment vanished"),
            )
        })?;
        let header = match self.mode {
            RestoreMode::Plaintext => None,
            _ => Some(read_header(&*self.fs, &path)?),
        };
        let expected = match (self.mode, &header) {
            (RestoreMode::Rewrap, _) => seg.len,
            (RestoreMode::Reencrypt, Some(header)) => {
                let params = SegmentHeader::parse(header)?.stream_params()?;
                SEGMENT_HEADER_LEN as u64 + params.ciphertext_len(self.plaintext_len(seg)?)?
            }
            _ => self.plaintext_len(seg)?,
        };
        if len != expected {
            return Err(Error::malformed(
                "restored segment",
                format!("{} has {len} bytes, expected {expected}", path.display()),
            ));
        }
        if let (Some(target), Some(header)) = (&self.target, &header) {
            target.segment_reader(id, &header[..])?;
        }
        Ok(RestoredSegment {
            segment_id: seg.segment_id.clone(),
            path,
            len,
        })
    }

    /// The plaintext length of a backup segment, from its header and length.
    fn plaintext_len(&self, seg: &BundleSegment) -> Result<u64> {
        let path = self.bundle.segment_path(&seg.segment_id);
        let header = SegmentHeader::parse(&read_header(&*self.fs, &path)?)?;
        header
            .stream_params()?
            .plaintext_len(seg.len - SEGMENT_HEADER_LEN as u64)
    }
}

fn read_header(fs: &dyn Fs, path: &Path) -> Result<[u8; SEGMENT_HEADER_LEN]> {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    fs.open(path)?
        .read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    Ok(header)
}

/// Names the segment and the files in errors of one segment's restore.
struct Paths<'a> {
    segment: &'a str,
    source: &'a Path,
    dest: &'a Path,
}

impl Paths<'_> {
    /// A failure of the backup's data: a damaged header, a body that does
    /// not authenticate.
    fn content_error(&self, e: Error) -> Error {
        match e {
            Error::Integrity { .. } | Error::Malformed { .. } => Error::BackupSegmentCorrupt {
                segment: self.segment.to_owned(),
                reason: e.to_string(),
            },
            Error::Io { path: None, source } => self.io_error(source),
            other => other,
        }
    }

    /// An I/O error from a decrypting reader over the backup's file: a
    /// failed authentication arrives as `InvalidData` carrying the error.
    fn io_error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::InvalidData {
            if let Some(inner) = e.into_inner() {
                return match inner.downcast::<Error>() {
                    Ok(err) => self.content_error(*err),
                    Err(other) => Error::io(
                        self.source,
                        io::Error::new(io::ErrorKind::InvalidData, other),
                    ),
                };
            }
            return Error::io(self.source, io::Error::from(io::ErrorKind::InvalidData));
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Error::BackupSegmentCorrupt {
                segment: self.segment.to_owned(),
                reason: "shorter than a segment".into(),
            };
        }
        Error::io(self.source, e)
    }

    fn read_error(&self, e: io::Error) -> Error {
        self.io_error(e)
    }

    fn copy_error(&self, e: CopyError) -> Error {
        match e {
            CopyError::Read(e) => self.io_error(e),
            CopyError::Write(e) => Error::io(self.dest, e),
        }
    }

    fn write_error(&self, e: Error) -> Error {
        match e {
            Error::Io { path: None, source } => Error::io(self.dest, source),
            other => other,
        }
    }
}

/// Reads the backup's segment and copies every byte read to the restored
/// file, remembering which side failed.
struct Tee<'a, R: Read> {
    input: &'a mut R,
    out: &'a mut dyn FsFile,
    failed: Option<CopyError>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.input.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(CopyError::Read(e));
                return Err(io::Error::new(kind, "reading the backup failed"));
            }
        };
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.failed = Some(CopyError::Write(e));
            return Err(io::Error::other("writing the restored segment failed"));
        }
        Ok(n)
    }
}
