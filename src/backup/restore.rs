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
//! 1. The backup's manifest is read (size-capped) and checked against what
//!    the caller trusts ([`SourceTrust`]: the backed-up zone's id, the
//!    root keys allowed to unwrap its EZKs) and the region, before any
//!    provider call: a bundle alone never chooses the key a restore uses.
//! 2. The destination is made owner-only (created `0700`, or found owned
//!    by us and writable by no one else) and locked against a second
//!    restore into it. A `restore.state` there must record exactly this
//!    restore's spec — the backup's manifest digest and id, the backed-up
//!    zone, mode, region, the new zone's name and root key — and a
//!    `zone.manifest` there must be the zone that state names, under the
//!    spec's root, name and region; both are parsed and checked before any
//!    provider call, and anything else is refused
//!    ([`Error::StateRejected`]). A destination with neither must be empty.
//! 3. The backup's zone is opened (provider calls). A new restore writes
//!    `restore.state` atomically, the new zone's id drawn beforehand.
//! 4. The new zone is created under that id (its manifest written
//!    atomically), or opened if an earlier run created it, and checked
//!    again as opened.
//! 5. Each segment is written to `.<name>.partial` — created new, never
//!    through a symbolic link, owner-only; a leftover that is anything but
//!    our own owner-only file is refused — checked (its SHA-256 and length
//!    against the backup's record, its header and body authenticated),
//!    synced, and renamed to `<name>`, then the directory is synced. A rerun
//!    does not trust a file found at its final name: it verifies it again
//!    against the backup (same body bytes and authentication in the new
//!    zone for rewrap, same plaintext otherwise) and restores it anew if it
//!    does not verify.
//! 6. Every segment is checked once more (present, of the right length, its
//!    header opening in the new zone) and `restore.state` is marked
//!    complete.

use std::io::{self, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use super::bundle::BundleSegment;
use super::create::{check_record, open_segment, Bundle};
use super::digest::HashingReader;
use super::fs::{
    commit, create_partial, private_dir, EntryKind, Fs, FsFile, FsManifestStore, RealFs,
};
use super::names::{partial_file_name, segment_file_name};
use super::state::{
    RestoreMode, RestoreSpec, RestoreState, StoredState, TargetSpec, MAX_STATE_FILE,
};
use super::{
    copy_all, CopyError, Phase, PhaseProgress, Progress, RESTORE_STATE, SEGMENTS_DIR, ZONE_MANIFEST,
};
use crate::cipher::SHA256_LEN;
use crate::provider::{KeyProvider, KeyRef};
use crate::zone::{
    Keyring, ManifestStore, SegmentHeader, Zone, ZoneAnchor, ZoneId, ZoneManifest, ZoneSpec,
    SEGMENT_HEADER_LEN,
};
use crate::{fsutil, Error, Result, StateRejection};

/// What the caller independently knows about the backup it restores: the
/// backed-up zone's id, the root keys allowed to unwrap its EZKs, or both.
/// A restore refuses a backup that does not match, before any provider
/// call, so a bundle planted or edited where backups are kept cannot pick
/// the key the restore unwraps with.
///
/// At least one of the two must be given (the CLI defaults to the key
/// registry's keys). A root key matches only if it is the same
/// [`KeyRef`] (provider, key id, region) the backed-up zone's manifest
/// names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTrust {
    zone: Option<ZoneId>,
    roots: Vec<KeyRef>,
}

impl SourceTrust {
    /// Only a backup of zone `zone_id`.
    pub fn zone(zone_id: ZoneId) -> Self {
        Self {
            zone: Some(zone_id),
            roots: Vec::new(),
        }
    }

    /// Only a backup whose zone's root key is one of `roots`.
    pub fn roots(roots: impl IntoIterator<Item = KeyRef>) -> Self {
        Self {
            zone: None,
            roots: roots.into_iter().collect(),
        }
    }

    /// Also requires the backup to be of zone `zone_id`.
    pub fn and_zone(mut self, zone_id: ZoneId) -> Self {
        self.zone = Some(zone_id);
        self
    }

    /// Also requires the backup's root key to be one of `roots`.
    pub fn and_roots(mut self, roots: impl IntoIterator<Item = KeyRef>) -> Self {
        self.roots = roots.into_iter().collect();
        self
    }

    /// Refuses a backed-up zone the caller does not trust.
    fn check(&self, zone: &ZoneManifest) -> Result<()> {
        const WHAT: &str = "backup";
        if self.zone.is_none() && self.roots.is_empty() {
            return Err(Error::InvalidArgument(
                "a restore must name the backed-up zone's id or the root keys allowed to \
                 unwrap it (SourceTrust); a backup alone does not choose its key"
                    .into(),
            ));
        }
        if let Some(expected) = self.zone {
            if zone.zone_id() != expected {
                return Err(Error::StateRejected {
                    what: WHAT,
                    reason: StateRejection::ForeignZone {
                        expected: expected.to_string(),
                        found: zone.zone_id().to_string(),
                    },
                });
            }
        }
        if !self.roots.is_empty() && !self.roots.contains(zone.root()) {
            let allowed: Vec<String> = self.roots.iter().map(ToString::to_string).collect();
            return Err(Error::StateRejected {
                what: WHAT,
                reason: StateRejection::UnexpectedRoot {
                    expected: format!("one of {}", allowed.join(", ")),
                    found: zone.root().to_string(),
                },
            });
        }
        Ok(())
    }
}

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
/// #            spec: cmek::zone::ZoneSpec, backed_up_root: cmek::KeyRef) -> cmek::Result<()> {
/// use cmek::backup::{Restore, SourceTrust};
/// let trust = SourceTrust::roots([backed_up_root]);
/// let report = Restore::rewrap("backup-dir", "restored-dir", source, trust, target, spec)
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
    trust: SourceTrust,
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
    /// of this region, which uses a multi-region key's replica); `trust`
    /// says which backups it may open.
    pub fn rewrap(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        trust: SourceTrust,
        target: Arc<Keyring>,
        spec: ZoneSpec,
    ) -> Self {
        Self::into_zone(bundle_dir, dest, source, trust, target, spec)
            .with_mode(RestoreMode::Rewrap)
    }

    /// Restores into a new zone `spec` with fresh DEKs: every segment is
    /// decrypted and encrypted again. As [`rewrap`](Self::rewrap) otherwise.
    pub fn reencrypt(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        trust: SourceTrust,
        target: Arc<Keyring>,
        spec: ZoneSpec,
    ) -> Self {
        Self::into_zone(bundle_dir, dest, source, trust, target, spec)
            .with_mode(RestoreMode::Reencrypt)
    }

    /// Restores every segment to a plaintext file (owner-only), in
    /// `region` (where `source`'s provider serves).
    pub fn plaintext(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        trust: SourceTrust,
        region: impl Into<String>,
    ) -> Self {
        Self::new(
            bundle_dir.into(),
            dest.into(),
            source,
            trust,
            Target::Plaintext {
                region: region.into(),
            },
            RestoreMode::Plaintext,
        )
    }

    /// A restore into a new zone; [`rewrap`](Self::rewrap) and
    /// [`reencrypt`](Self::reencrypt) choose how.
    fn into_zone(
        bundle_dir: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        source: Arc<Keyring>,
        trust: SourceTrust,
        target: Arc<Keyring>,
        spec: ZoneSpec,
    ) -> Self {
        let target = Target::Zone {
            keyring: target,
            spec,
        };
        Self::new(
            bundle_dir.into(),
            dest.into(),
            source,
            trust,
            target,
            RestoreMode::Rewrap,
        )
    }

    fn with_mode(mut self, mode: RestoreMode) -> Self {
        self.mode = mode;
        self
    }

    fn new(
        bundle_dir: PathBuf,
        dest: PathBuf,
        source: Arc<Keyring>,
        trust: SourceTrust,
        target: Target,
        mode: RestoreMode,
    ) -> Self {
        Self {
            bundle_dir,
            dest,
            source,
            trust,
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
    /// [`Error::InvalidArgument`] if the restore names neither the
    /// backed-up zone nor allowed root keys, or the destination holds
    /// something other than a restore; [`Error::StateRejected`] for a
    /// backup of another zone or under a root key not allowed, for a
    /// destination directory others own or can write, and when resuming
    /// for a `restore.state` recording another restore (another backup,
    /// zone, mode, region, name or root key, or a version 1 state) or a
    /// `zone.manifest` that is not the zone that state names under this
    /// restore's root key — all before any provider call and before
    /// anything is written; [`Error::Conflict`] while another restore runs
    /// into the same destination; [`Error::RegionMismatch`] if the backup's
    /// root key does not serve this region, or the new zone's root key does
    /// not serve the new zone's region, as their providers answer — a key
    /// whose name rules the region out (a single-region key from another
    /// region) before any provider call, a replicated key's missing
    /// replica after the provider's check;
    /// [`Error::Malformed`] for a damaged backup manifest, state or zone
    /// manifest; [`Error::LimitExceeded`] for one too large to be genuine;
    /// provider errors; [`Error::Io`].
    pub async fn prepare(&self) -> Result<PreparedRestore> {
        let fs = self.fs.clone();
        let bundle = Bundle::open_with(&*fs, self.bundle_dir.clone())?;
        self.trust.check(bundle.manifest().zone())?;
        let backup_root = bundle.manifest().zone().root().clone();
        // The providers say where their keys serve. A key whose name rules
        // the region out is refused here, before any provider call and
        // before anything is written; a replica is confirmed below.
        let source_provider = self.source.provider().as_ref();
        source_provider.key_in_region(&backup_root, self.region())?;
        if let Target::Zone { keyring, spec } = &self.target {
            keyring.provider().key_in_region(&spec.root, &spec.region)?;
        }
        let spec = self.spec(&bundle);
        spec.check()?;

        // The destination: ours alone, one restore at a time, and on a
        // rerun provably this restore's — all before any provider call.
        private_dir(&*fs, &self.dest, true)?;
        let lock = fsutil::ExclusiveLock::try_acquire(&fsutil::lock_path_for(
            &self.dest.join(RESTORE_STATE),
        ))?
        .ok_or_else(|| Error::Conflict {
            what: "restore destination",
            reason: format!("another restore into {} is running", self.dest.display()),
        })?;
        let store = Arc::new(FsManifestStore {
            fs: fs.clone(),
            path: self.dest.join(ZONE_MANIFEST),
        });
        let body_zone = bundle.manifest().zone().body_zone_id();
        let resumed = self.resume(&spec, &*store, body_zone)?;
        check_region(source_provider, &backup_root, self.region()).await?;
        if let Target::Zone { keyring, spec } = &self.target {
            check_region(keyring.provider().as_ref(), &spec.root, &spec.region).await?;
        }

        // The backup's zone, opened read-only: its store is never written.
        let bundled = bundle.manifest().zone();
        let source_anchor = ZoneAnchor::new(bundled.zone_id(), bundled.root().clone(), 0);
        let source = self
            .source
            .open_bundled_zone(&bundle.manifest().zone_manifest, &source_anchor)
            .await?;

        let state = match resumed {
            Some(state) => state,
            None => self.start(spec)?,
        };
        let target = match &self.target {
            Target::Zone { keyring, spec } => {
                let zone = if let Some(bytes) = ManifestStore::load(&*store)? {
                    // Only the zone this restore created, under the target
                    // root it was asked for (checked above; an alias is
                    // recorded as the key it pointed to), is resumed.
                    let recorded = ZoneManifest::parse(&bytes)?;
                    check_restored_zone(&recorded, &state, body_zone)?;
                    let anchor = ZoneAnchor::new(state.zone_id, recorded.root().clone(), 1);
                    keyring.open_zone(store, &anchor).await?
                } else {
                    let body = match self.mode {
                        RestoreMode::Rewrap => body_zone,
                        _ => state.zone_id,
                    };
                    keyring
                        .create_zone_with_ids(store, spec.clone(), state.zone_id, body)
                        .await?
                };
                // The file may have changed since it was checked above.
                check_restored_zone(&zone.manifest(), &state, body_zone)?;
                Some(zone)
            }
            Target::Plaintext { .. } => None,
        };
        private_dir(&*fs, &self.dest.join(SEGMENTS_DIR), false)?;
        Ok(PreparedRestore {
            fs,
            bundle,
            dest: self.dest.clone(),
            source,
            target,
            mode: self.mode,
            threads: self.threads,
            state,
            _lock: lock,
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

    /// This restore's spec: what the caller asked for, and the backup.
    fn spec(&self, bundle: &Bundle) -> RestoreSpec {
        let manifest = bundle.manifest();
        RestoreSpec {
            bundle_digest: bundle.digest(),
            backup_id: manifest.backup_id,
            source_zone: manifest.zone().zone_id(),
            mode: self.mode,
            region: self.region().to_owned(),
            target: match &self.target {
                Target::Zone { spec, .. } => Some(TargetSpec {
                    name: spec.name.clone(),
                    root: spec.root.clone(),
                }),
                Target::Plaintext { .. } => None,
            },
        }
    }

    /// The destination's restore state if a run of this very restore
    /// started it, checked together with the zone manifest beside it;
    /// `None` for an empty destination. Reads and parses only: no provider
    /// call, no write.
    fn resume(
        &self,
        spec: &RestoreSpec,
        store: &dyn ManifestStore,
        body_zone: ZoneId,
    ) -> Result<Option<RestoreState>> {
        let path = self.dest.join(RESTORE_STATE);
        let Some(bytes) = self.fs.read(&path, MAX_STATE_FILE, "restore state file")? else {
            // Names starting with '.' are temporary files a crash may leave
            // (and the lock); anything else — a zone manifest included — is
            // not this restore's, and not to be mixed with it.
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
            return Ok(None);
        };
        let state = match StoredState::parse(&bytes)? {
            StoredState::V1(_) => {
                return Err(Error::StateRejected {
                    what: "restore state",
                    reason: StateRejection::Mismatch(
                        "version 1 records neither the root key nor the backed-up zone, so \
                         this restore cannot tell that it started it: restore into an empty \
                         directory"
                            .into(),
                    ),
                })
            }
            StoredState::V2(state) => state,
        };
        spec.check_resumes(&state.spec)?;
        match (store.load()?, self.mode) {
            (None, _) => {}
            (Some(_), RestoreMode::Plaintext) => {
                return Err(Error::StateRejected {
                    what: "restored zone manifest",
                    reason: StateRejection::Mismatch(
                        "a plaintext restore creates no zone manifest, yet the destination \
                         holds one"
                            .into(),
                    ),
                })
            }
            (Some(bytes), _) => {
                check_restored_zone(&ZoneManifest::parse(&bytes)?, &state, body_zone)?;
            }
        }
        tracing::info!(dest = %self.dest.display(), complete = state.complete, "resuming restore");
        Ok(Some(state))
    }

    /// Records a new restore in an empty destination, before anything else
    /// is written there.
    fn start(&self, spec: RestoreSpec) -> Result<RestoreState> {
        let state = RestoreState {
            zone_id: match spec.mode {
                RestoreMode::Plaintext => ZoneId::from_bytes([0; 16]),
                _ => ZoneId::generate()?,
            },
            spec,
            complete: false,
        };
        self.fs
            .write_atomic(&self.dest.join(RESTORE_STATE), &state.to_bytes())?;
        Ok(state)
    }
}

/// Refuses a zone manifest in the destination that is not the zone the
/// restore state names, under the spec's root key, name and region, bound
/// to the bodies the mode puts there.
fn check_restored_zone(
    zone: &ZoneManifest,
    state: &RestoreState,
    backup_body_zone: ZoneId,
) -> Result<()> {
    const WHAT: &str = "restored zone manifest";
    let reject = |reason| Err(Error::StateRejected { what: WHAT, reason });
    if zone.zone_id() != state.zone_id {
        return reject(StateRejection::ForeignZone {
            expected: state.zone_id.to_string(),
            found: zone.zone_id().to_string(),
        });
    }
    let Some(target) = &state.spec.target else {
        return reject(StateRejection::Mismatch(
            "a plaintext restore has no zone".into(),
        ));
    };
    if !zone.was_created_under(&target.root) {
        return reject(StateRejection::UnexpectedRoot {
            expected: target.root.to_string(),
            found: zone.root().to_string(),
        });
    }
    if zone.name() != target.name || zone.region() != state.spec.region {
        return reject(StateRejection::Mismatch(format!(
            "it is zone {:?} in {:?}, not {:?} in {:?}",
            zone.name(),
            zone.region(),
            target.name,
            state.spec.region
        )));
    }
    let body = match state.spec.mode {
        RestoreMode::Rewrap => backup_body_zone,
        _ => state.zone_id,
    };
    if zone.body_zone_id() != body {
        return reject(StateRejection::Mismatch(format!(
            "its segment bodies belong to zone {}, not {body}",
            zone.body_zone_id()
        )));
    }
    Ok(())
}

/// Refuses a root key that does not serve `region`, as its provider
/// answers ([`KeyProvider::serves_region`]): only a replicated key (an AWS
/// multi-region key with a replica there) leaves its home region.
async fn check_region(provider: &dyn KeyProvider, root: &KeyRef, region: &str) -> Result<()> {
    provider
        .serves_region(root, region)
        .await?
        .require(root, region)
        .map(drop)
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
    /// Held until the restore ends: no second restore into the same
    /// destination meanwhile.
    _lock: fsutil::ExclusiveLock,
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
    /// Segments an earlier, interrupted run had restored (verified again
    /// by this run).
    pub already_done: usize,
    /// Segments found at their final name that did not verify against the
    /// backup, and were restored again (counted in `restored` too).
    pub replaced: usize,
}

/// What became of one segment in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// At its final name, verified.
    AlreadyDone,
    /// Restored by this run.
    Restored,
    /// At its final name but not verifying; restored again over it.
    Replaced,
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
    /// A file an earlier run left at a segment's final name is not trusted:
    /// it is verified against the backup (rewrap: the same body bytes, and
    /// header and body authenticating in the new zone; re-encrypt: the same
    /// plaintext through the new zone; plaintext: the same plaintext) and,
    /// if it does not verify — or is not an owner-only regular file — is
    /// restored again over it ([`RestoreReport::replaced`]).
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
    /// [`Error::StateRejected`] for a temporary file planted in the
    /// destination (a symbolic link, a file others can read), left
    /// untouched; [`Error::Io`]. Run again after any error to resume.
    pub fn run(mut self, mut progress: impl FnMut(&Progress<'_>)) -> Result<RestoreReport> {
        let seg_dir = self.dest.join(SEGMENTS_DIR);
        let segments = self.bundle.manifest().segments().to_vec();
        let total = segments.len();
        let bytes_total = self.bundle.manifest().total_bytes();
        let mut counter = PhaseProgress::new(Phase::Restore, total, bytes_total);
        let (mut restored, mut already_done, mut replaced) = (0, 0, 0);
        let all: Vec<&BundleSegment> = segments.iter().collect();
        self.restore_all(&all, &seg_dir, |seg, outcome| {
            match outcome {
                Outcome::AlreadyDone => already_done += 1,
                Outcome::Restored => restored += 1,
                Outcome::Replaced => {
                    restored += 1;
                    replaced += 1;
                }
            }
            let was_done = outcome == Outcome::AlreadyDone;
            counter.step(&seg.segment_id, seg.len, was_done, &mut progress);
        })?;

        let mut report = Vec::with_capacity(total);
        let mut counter = PhaseProgress::new(Phase::Verify, total, bytes_total);
        for seg in &segments {
            report.push(self.check_restored(seg, &seg_dir)?);
            counter.step(&seg.segment_id, seg.len, false, &mut progress);
        }
        if !self.state.complete {
            self.state.complete = true;
            self.fs
                .write_atomic(&self.dest.join(RESTORE_STATE), &self.state.to_bytes())?;
        }
        tracing::info!(dest = %self.dest.display(), mode = ?self.mode, restored, already_done,
            replaced, "restore complete");
        Ok(RestoreReport {
            mode: self.mode,
            zone_manifest: self.target.as_ref().map(|_| self.dest.join(ZONE_MANIFEST)),
            zone: self.target,
            segments: report,
            restored,
            already_done,
            replaced,
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
        mut finished: impl FnMut(&BundleSegment, Outcome),
    ) -> Result<()> {
        let threads = self.threads.min(pending.len());
        if threads <= 1 {
            for seg in pending {
                let outcome = self.restore_segment(seg, seg_dir)?;
                finished(seg, outcome);
            }
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome>)>();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(seg) = pending.get(i) else { break };
                        // A panic stays in this segment's result: the
                        // restore reports it as what it is, and the other
                        // workers stop at their next segment.
                        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            self.restore_segment(seg, seg_dir)
                        }))
                        .unwrap_or(Err(Error::WorkerPanicked {
                            what: format!("restoring backup segment {:?}", seg.segment_id),
                        }));
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
                    Ok(outcome) => finished(pending[i], outcome),
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

    /// Restores one segment unless a file at its final name verifies:
    /// to a temporary file, verified, renamed into place. On failure the
    /// temporary file is removed if this run created it: it may hold part
    /// of a segment that did not verify (plaintext, in plaintext mode).
    fn restore_segment(&self, seg: &BundleSegment, seg_dir: &Path) -> Result<Outcome> {
        let partial = seg_dir.join(partial_file_name(&seg.segment_id));
        let final_path = seg_dir.join(segment_file_name(&seg.segment_id));
        let outcome = match self.fs.entry(&final_path, false)? {
            None => Outcome::Restored,
            Some(_) => {
                if self.verify_in_place(seg, &final_path)? {
                    return Ok(Outcome::AlreadyDone);
                }
                tracing::warn!(segment = %seg.segment_id, path = %final_path.display(),
                    "a file at a restored segment's name does not verify against the backup; \
                     restoring it again");
                Outcome::Replaced
            }
        };
        let out = create_partial(&*self.fs, &partial)?;
        let result = self.write_segment(seg, out, &partial, &final_path);
        if result.is_err() {
            // Best effort: a rerun replaces it anyway.
            let _ = self.fs.remove_file(&partial);
        }
        result.map(|()| outcome)
    }

    /// True if the file at `final_path` is an owner-only regular file
    /// holding segment `seg` as this restore writes it. Errors only for a
    /// backup that fails its own checks, or a failure to read it.
    fn verify_in_place(&self, seg: &BundleSegment, final_path: &Path) -> Result<bool> {
        match self.fs.entry(final_path, false)? {
            Some(e) if e.kind == EntryKind::File && e.mode & 0o077 == 0 => {}
            _ => return Ok(false),
        }
        let expected = self.expected_digest(seg)?;
        match self.found_digest(seg, final_path) {
            Ok(found) => Ok(found == expected),
            Err(e) => {
                tracing::warn!(segment = %seg.segment_id, error = %e.report(),
                    "a restored segment does not read back");
                Ok(false)
            }
        }
    }

    /// What a restored file of `seg` must hold, from the backup (checked
    /// against its record on the way): the length and SHA-256 of the body
    /// (rewrap) or of the plaintext (other modes).
    fn expected_digest(&self, seg: &BundleSegment) -> Result<(u64, [u8; SHA256_LEN])> {
        let id = seg.segment_id.as_str();
        let src_path = self.bundle.segment_path(id);
        let paths = Paths {
            segment: id,
            source: &src_path,
            dest: &src_path,
        };
        let mut whole = HashingReader::new(open_segment(&*self.fs, &src_path, id)?);
        let digest = match self.mode {
            RestoreMode::Rewrap => {
                let mut header = [0u8; SEGMENT_HEADER_LEN];
                whole
                    .read_exact(&mut header)
                    .map_err(|e| paths.read_error(e))?;
                let mut body = HashingReader::new(&mut whole);
                copy_all(&mut body, &mut io::sink()).map_err(|e| paths.copy_error(e))?;
                body.finish()
            }
            RestoreMode::Reencrypt | RestoreMode::Plaintext => {
                let reader = self
                    .source
                    .segment_reader(id, &mut whole)
                    .map_err(|e| paths.content_error(e))?;
                let mut plain = HashingReader::new(reader);
                copy_all(&mut plain, &mut io::sink()).map_err(|e| paths.copy_error(e))?;
                plain.finish()
            }
        };
        check_record(seg, whole.finish())?;
        Ok(digest)
    }

    /// The same digest as [`expected_digest`](Self::expected_digest), of the
    /// restored file, authenticating it in the new zone where it is
    /// encrypted.
    fn found_digest(&self, seg: &BundleSegment, path: &Path) -> Result<(u64, [u8; SHA256_LEN])> {
        let id = seg.segment_id.as_str();
        let mut file = self.fs.open(path)?;
        match (self.mode, &self.target) {
            (RestoreMode::Rewrap, Some(target)) => {
                let mut header = [0u8; SEGMENT_HEADER_LEN];
                file.read_exact(&mut header)
                    .map_err(|e| Error::io(path, e))?;
                let mut body = HashingReader::new(file);
                let mut reader = target.segment_reader(id, (&header[..]).chain(&mut body))?;
                io::copy(&mut reader, &mut io::sink()).map_err(|e| Error::io(path, e))?;
                drop(reader);
                // Bytes after the last chunk, if any, count too.
                io::copy(&mut body, &mut io::sink()).map_err(|e| Error::io(path, e))?;
                Ok(body.finish())
            }
            (RestoreMode::Reencrypt, Some(target)) => {
                let reader = target.segment_reader(id, file)?;
                let mut plain = HashingReader::new(reader);
                io::copy(&mut plain, &mut io::sink()).map_err(|e| Error::io(path, e))?;
                Ok(plain.finish())
            }
            (RestoreMode::Plaintext, None) => {
                let mut plain = HashingReader::new(file);
                io::copy(&mut plain, &mut io::sink()).map_err(|e| Error::io(path, e))?;
                Ok(plain.finish())
            }
            _ => Err(Error::misuse("the mode and the target are set together")),
        }
    }

    fn write_segment(
        &self,
        seg: &BundleSegment,
        mut out: Box<dyn FsFile>,
        partial: &Path,
        final_path: &Path,
    ) -> Result<()> {
        let id = seg.segment_id.as_str();
        let src_path = self.bundle.segment_path(id);
        let mut input = HashingReader::new(open_segment(&*self.fs, &src_path, id)?);
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
        let body = seg
            .len
            .checked_sub(SEGMENT_HEADER_LEN as u64)
            .ok_or_else(|| Error::BackupSegmentCorrupt {
                segment: seg.segment_id.clone(),
                reason: "shorter than a segment header".into(),
            })?;
        header.stream_params()?.plaintext_len(body)
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
