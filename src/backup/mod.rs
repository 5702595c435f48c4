//! Backups of encrypted zones, and their restore into a new zone — with or
//! without encryption, in the zone's region or in another one.
//!
//! A **backup** ([`create_backup`]) is a directory (a [`Bundle`]):
//!
//! ```text
//! backup.manifest    the bundle manifest: backup id, the zone's manifest
//!                    (root key, wrapped EZKs), and per segment its id,
//!                    length and SHA-256 (layout in docs/FORMAT.md)
//! segments/<name>    every segment file exactly as the zone wrote it
//! ```
//!
//! Data stays encrypted: a backup is never plaintext at rest, and making
//! one needs no key. The manifest is written last, so a directory without
//! one is an unfinished backup.
//!
//! A **restore** ([`Restore`]) opens the backup's EZKs with the backup's
//! root key (one provider call per EZK version) and writes a destination
//! directory, in one of three [`RestoreMode`]s. The bundle does not choose
//! that key: the caller names the backed-up zone or the root keys it
//! allows ([`SourceTrust`]), and a backup naming anything else is refused
//! before any provider call.
//!
//! * [`Rewrap`](RestoreMode::Rewrap) (the default, fast): a new encrypted
//!   zone under a root key the caller chooses; each segment's DEK is
//!   unwrapped with the backup's EZK and rewrapped under the new zone's,
//!   and bodies are copied untouched. The new zone binds segment bodies to
//!   the backed-up zone's *body zone id*
//!   ([`ZoneManifest::body_zone_id`](crate::zone::ZoneManifest::body_zone_id)),
//!   which is how the copied bodies keep authenticating there.
//! * [`Reencrypt`](RestoreMode::Reencrypt): a new zone, every segment
//!   decrypted and encrypted again under a fresh DEK, for when nothing of
//!   the old keys may survive.
//! * [`Plaintext`](RestoreMode::Plaintext): every segment decrypted to a
//!   plaintext file.
//!
//! **Across regions**: a backup copied to another region restores there
//! through a provider of that region, and only if the backup's root key
//! serves that region, as its provider answers
//! ([`KeyProvider::serves_region`](crate::KeyProvider::serves_region)): a
//! replicated key (an AWS multi-region key with a replica there) is opened
//! through its replica. A key whose name rules the region out (a
//! single-region key) is refused with [`Error::RegionMismatch`] before any
//! provider call; a replicated key without a replica there, after the
//! provider's check and before any unwrap. The new zone's root key must
//! serve the new zone's region in the same way.
//!
//! **Crash safety and resumption**: a restore records its whole spec —
//! backup, backed-up zone, mode, region, the new zone's name, root key and
//! id (`restore.state`) — before anything else, writes each segment under
//! a temporary name and renames it into place only after it was written,
//! synced and verified (SHA-256 against the backup's record, and
//! authentication of header and body). Running the same restore again
//! after a crash resumes only if the state and the zone manifest found are
//! exactly this restore's (else [`Error::StateRejected`], before any
//! provider call); it verifies the segments already in place again,
//! restores anew any that do not verify, and finishes by checking every
//! segment before it reports success. Segments are independent, so a
//! restore works on several at once ([`Restore::threads`]) without
//! changing any of this.
//!
//! **Hostile destinations**: directories a restore creates are owner-only;
//! ones it finds must be ours and writable by no one else. Temporary files
//! are created new, never through a symbolic link, owner-only; a planted
//! one is refused and left untouched. One restore runs in a destination at
//! a time ([`Error::Conflict`] for a second).
//!
//! This module uses zones through their crate-internal API and must not
//! know the segment or stream byte layouts beyond the header length.

use std::io::{self, Read, Write};
use std::path::Path;

use crate::Error;

mod bundle;
mod create;
mod digest;
mod fs;
mod names;
mod restore;
mod state;
#[cfg(test)]
mod tests;

pub use bundle::{
    BundleManifest, BundleSegment, BUNDLE_FORMAT_VERSION, MAX_BUNDLE_MANIFEST, MAX_SEGMENTS,
    MAX_SEGMENT_ID,
};
pub use create::{create_backup, Bundle};
pub use restore::{PreparedRestore, Restore, RestoreReport, RestoredSegment, SourceTrust};
pub use state::RestoreMode;

/// Parses a restore state file of any version, for the fuzz targets; a
/// version 2 state that parses must survive a round trip.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_restore_state(bytes: &[u8]) -> crate::Result<()> {
    if let state::StoredState::V2(s) = state::StoredState::parse(bytes)? {
        let again = state::RestoreState::parse(&s.to_bytes()).expect("a restore state re-parses");
        assert_eq!(again, s, "restore state changes in a round trip");
    }
    Ok(())
}

/// The bundle manifest's file name in a backup directory.
pub const BUNDLE_MANIFEST: &str = "backup.manifest";
/// The directory of segment files, in a backup and in a restore.
pub const SEGMENTS_DIR: &str = "segments";
/// The restore state's file name in a restore's destination.
pub const RESTORE_STATE: &str = "restore.state";
/// The restored zone's manifest file name in a restore's destination (open
/// it with [`FileManifestStore`](crate::zone::FileManifestStore)).
pub const ZONE_MANIFEST: &str = "zone.manifest";

/// What a long backup or restore is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Copying segments into a backup.
    Backup,
    /// Restoring segments.
    Restore,
    /// Checking segments already written.
    Verify,
}

/// Progress of a backup or restore, reported after each segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress<'a> {
    /// What is being done.
    pub phase: Phase,
    /// Segments handled so far in this phase, this one included.
    pub done: usize,
    /// Segments in this phase.
    pub total: usize,
    /// Bytes of the backup's segment files handled so far.
    pub bytes_done: u64,
    /// Bytes of the backup's segment files in all.
    pub bytes_total: u64,
    /// The segment just handled.
    pub segment_id: &'a str,
    /// True if an earlier, interrupted run had already restored it.
    pub already_done: bool,
}

/// Counts one phase's segments and bytes and reports each step to the
/// caller's progress callback.
pub(crate) struct PhaseProgress {
    phase: Phase,
    total: usize,
    bytes_total: u64,
    done: usize,
    bytes_done: u64,
}

impl PhaseProgress {
    pub(crate) fn new(phase: Phase, total: usize, bytes_total: u64) -> Self {
        Self {
            phase,
            total,
            bytes_total,
            done: 0,
            bytes_done: 0,
        }
    }

    /// Counts segment `segment_id` of `len` bytes as handled and reports it.
    pub(crate) fn step(
        &mut self,
        segment_id: &str,
        len: u64,
        already_done: bool,
        progress: &mut impl FnMut(&Progress<'_>),
    ) {
        self.done += 1;
        self.bytes_done = self.bytes_done.saturating_add(len);
        progress(&Progress {
            phase: self.phase,
            done: self.done,
            total: self.total,
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
            segment_id,
            already_done,
        });
    }
}

/// Which side of a copy failed.
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    /// The error, with the path of the side that failed.
    pub(crate) fn with_paths(self, source: &Path, dest: &Path) -> Error {
        match self {
            CopyError::Read(e) => Error::io(source, e),
            CopyError::Write(e) => Error::io(dest, e),
        }
    }
}

/// Copy buffer: large enough that per-call overhead vanishes, small enough
/// to stay in cache.
const COPY_BUF: usize = 256 * 1024;

/// Copies `r` to the end into `w`, telling which side failed.
pub(crate) fn copy_all(r: &mut dyn Read, w: &mut dyn Write) -> Result<u64, CopyError> {
    // Restores pass plaintext through here: wipe it when done.
    let mut buf = zeroize::Zeroizing::new(vec![0u8; COPY_BUF]);
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}
