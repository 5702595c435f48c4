//! Making a backup: copy a zone's segments, as they are, into a bundle
//! directory, and write the bundle's manifest last.
//!
//! A backup needs no key: segments stay encrypted and are copied byte for
//! byte (only their headers are parsed, to check that they belong to the
//! zone), so whoever makes backups needs no permission to decrypt. Every
//! segment file is written under a temporary name, synced and renamed into
//! place; the manifest is written last, atomically, so a directory without
//! a manifest is an unfinished backup and is never restored from. Running
//! the same backup again after a crash starts over in the same directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::bundle::{BundleManifest, BundleSegment, MAX_BUNDLE_MANIFEST, MAX_SEGMENT_ID};
use super::digest::HashingReader;
use super::fs::{commit, create_partial, Fs, RealFs};
use super::names::{partial_file_name, segment_file_name};
use super::{copy_all, Phase, PhaseProgress, Progress, BUNDLE_MANIFEST, SEGMENTS_DIR};
use crate::cipher::{fill_random, sha256, SHA256_LEN};
use crate::zone::{SegmentHeader, ZoneManifest, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// A backup on disk: a directory holding `backup.manifest` and
/// `segments/`. Opening it reads and checks the manifest only.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: BundleManifest,
    /// SHA-256 of the manifest file as read: what a restore records to
    /// know, when it resumes, that the backup is still the one it started.
    digest: [u8; SHA256_LEN],
}

impl Bundle {
    /// Opens the backup in `dir`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `dir` holds no backup manifest (no
    /// backup, or one that did not finish); [`Error::Malformed`] if the
    /// manifest does not parse; [`Error::LimitExceeded`] for a manifest
    /// file over [`MAX_BUNDLE_MANIFEST`](crate::backup::MAX_BUNDLE_MANIFEST)
    /// bytes; [`Error::Io`].
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(&RealFs, dir.into())
    }

    pub(crate) fn open_with(fs: &dyn Fs, dir: PathBuf) -> Result<Self> {
        let bytes = fs
            .read(
                &dir.join(BUNDLE_MANIFEST),
                MAX_BUNDLE_MANIFEST,
                "backup manifest file",
            )?
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} holds no finished backup (no {BUNDLE_MANIFEST})",
                    dir.display()
                ))
            })?;
        Ok(Self {
            manifest: BundleManifest::parse(&bytes)?,
            digest: sha256(&[&bytes]),
            dir,
        })
    }

    /// The backup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The backup's manifest.
    pub fn manifest(&self) -> &BundleManifest {
        &self.manifest
    }

    /// SHA-256 of the backup's manifest file.
    pub(crate) fn digest(&self) -> [u8; SHA256_LEN] {
        self.digest
    }

    /// The file holding segment `segment_id` in this backup.
    pub fn segment_path(&self, segment_id: &str) -> PathBuf {
        self.dir
            .join(SEGMENTS_DIR)
            .join(segment_file_name(segment_id))
    }

    /// Checks every segment file's length and SHA-256 against the manifest,
    /// with no key: for a backup just copied to another place.
    /// Authentication needs the keys and happens on restore.
    ///
    /// # Errors
    /// [`Error::BackupSegmentCorrupt`] naming the first segment that is
    /// missing or differs; [`Error::Io`].
    pub fn verify_checksums(&self, mut progress: impl FnMut(&Progress<'_>)) -> Result<()> {
        let mut counter = PhaseProgress::new(
            Phase::Verify,
            self.manifest.segments.len(),
            self.manifest.total_bytes(),
        );
        for seg in &self.manifest.segments {
            let path = self.segment_path(&seg.segment_id);
            let file = open_segment(&RealFs, &path, &seg.segment_id)?;
            let mut reader = HashingReader::new(file);
            copy_all(&mut reader, &mut std::io::sink()).map_err(|e| e.with_paths(&path, &path))?;
            check_record(seg, reader.finish())?;
            counter.step(&seg.segment_id, seg.len, false, &mut progress);
        }
        Ok(())
    }
}

/// Opens a segment file of a backup; a missing one is named as such.
pub(crate) fn open_segment(
    fs: &dyn Fs,
    path: &Path,
    segment_id: &str,
) -> Result<Box<dyn Read + Send>> {
    fs.open(path).map_err(|e| match e {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Error::BackupSegmentCorrupt {
                segment: segment_id.to_owned(),
                reason: "missing from the backup".into(),
            }
        }
        other => other,
    })
}

/// Compares what was read of a segment with the backup's record of it.
pub(crate) fn check_record(seg: &BundleSegment, (len, sha256): (u64, [u8; 32])) -> Result<()> {
    if len != seg.len {
        return Err(Error::BackupSegmentCorrupt {
            segment: seg.segment_id.clone(),
            reason: format!("{len} bytes, the backup recorded {}", seg.len),
        });
    }
    if sha256 != seg.sha256 {
        return Err(Error::BackupSegmentCorrupt {
            segment: seg.segment_id.clone(),
            reason: "SHA-256 differs from the backup's record".into(),
        });
    }
    Ok(())
}

/// Backs up the zone described by `zone` — its manifest, holding the wrapped
/// EZKs — and its segments, each given as (segment id, file), into a new
/// bundle directory `dest`. Reports progress after each segment. Needs no
/// key and makes no provider call.
///
/// Take `zone` from [`Zone::manifest`](crate::zone::Zone::manifest) before
/// the backup and do not retire EZK versions while it runs: every segment's
/// EZK version must be in `zone`.
///
/// # Errors
/// [`Error::InvalidArgument`] if `dest` already holds a backup, an id is
/// empty, too long or given twice, or a segment belongs to another zone or
/// to an EZK version `zone` does not have; [`Error::Misuse`] if `zone` was
/// built in memory rather than read; [`Error::Malformed`] for a file
/// that is not a segment; [`Error::Io`]. After an error `dest` holds no
/// manifest, and running the backup again starts over.
pub fn create_backup<I, S>(
    zone: &ZoneManifest,
    segments: I,
    dest: impl AsRef<Path>,
    progress: impl FnMut(&Progress<'_>),
) -> Result<Bundle>
where
    I: IntoIterator<Item = (S, PathBuf)>,
    S: Into<String>,
{
    let segments = segments.into_iter().map(|(id, p)| (id.into(), p)).collect();
    create_backup_with(&RealFs, zone, segments, dest.as_ref(), progress)
}

pub(crate) fn create_backup_with(
    fs: &dyn Fs,
    zone: &ZoneManifest,
    mut segments: Vec<(String, PathBuf)>,
    dest: &Path,
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<Bundle> {
    let manifest_path = dest.join(BUNDLE_MANIFEST);
    if fs.entry(&manifest_path, false)?.is_some() {
        return Err(Error::InvalidArgument(format!(
            "{} already holds a backup",
            dest.display()
        )));
    }
    segments.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (id, _)) in segments.iter().enumerate() {
        if id.is_empty() || id.len() > MAX_SEGMENT_ID {
            return Err(Error::InvalidArgument(format!(
                "segment ids must be 1 to {MAX_SEGMENT_ID} bytes; got {} bytes",
                id.len()
            )));
        }
        if i > 0 && segments[i - 1].0 == *id {
            return Err(Error::InvalidArgument(format!(
                "segment {id:?} given twice"
            )));
        }
    }
    let seg_dir = dest.join(SEGMENTS_DIR);
    fs.create_dir_all(&seg_dir)?;

    let total = segments.len();
    let mut bytes_total = 0;
    for (_, source) in &segments {
        bytes_total = u64::saturating_add(bytes_total, fs.len(source)?.unwrap_or(0));
    }
    let mut counter = PhaseProgress::new(Phase::Backup, total, bytes_total);
    let mut records = Vec::with_capacity(total);
    for (id, source) in &segments {
        let record = copy_segment(fs, zone, id, source, &seg_dir)?;
        counter.step(id, record.len, false, &mut progress);
        records.push(record);
    }
    // The segments are durable (each synced, the directory synced); only
    // now does the manifest make the bundle a backup.
    let mut backup_id = [0u8; 16];
    fill_random(&mut backup_id)?;
    let zone_bytes = zone.stored_bytes().ok_or_else(|| {
        Error::misuse(
            "the zone manifest given was built in memory; take it from Zone::manifest() or \
             ZoneManifest::parse",
        )
    })?;
    let manifest = BundleManifest::new(
        backup_id,
        crate::zone::now_unix(),
        zone_bytes.to_vec(),
        records,
    )?;
    let bytes = manifest.to_bytes();
    fs.write_atomic(&manifest_path, &bytes)?;
    tracing::info!(dir = %dest.display(), zone = %zone.zone_id(), segments = total,
        backup = manifest.backup_id(), "backup written");
    Ok(Bundle {
        dir: dest.to_path_buf(),
        manifest,
        digest: sha256(&[&bytes]),
    })
}

/// Copies one segment into the bundle, checking its header, and returns
/// its record.
fn copy_segment(
    fs: &dyn Fs,
    zone: &ZoneManifest,
    id: &str,
    source: &Path,
    seg_dir: &Path,
) -> Result<BundleSegment> {
    let mut input = HashingReader::new(fs.open(source)?);
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    input.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::malformed(
            "segment header",
            format!("{} is shorter than a segment header", source.display()),
        ),
        _ => Error::io(source, e),
    })?;
    let parsed = SegmentHeader::parse(&header)?;
    if parsed.zone_id() != zone.zone_id() {
        return Err(Error::InvalidArgument(format!(
            "segment {id:?} ({}) belongs to zone {}, not {}",
            source.display(),
            parsed.zone_id(),
            zone.zone_id()
        )));
    }
    if !zone.ezk_versions().any(|(v, _)| v == parsed.ezk_version()) {
        return Err(Error::InvalidArgument(format!(
            "segment {id:?} uses EZK version {}, which the zone manifest given does not hold \
             (take the manifest after the segments were written, and retire nothing during a backup)",
            parsed.ezk_version()
        )));
    }
    let partial = seg_dir.join(partial_file_name(id));
    let target = seg_dir.join(segment_file_name(id));
    let mut out = create_partial(fs, &partial)?;
    out.write_all(&header).map_err(|e| Error::io(&partial, e))?;
    copy_all(&mut input, &mut out).map_err(|e| e.with_paths(source, &partial))?;
    let (len, sha256) = input.finish();
    if len < super::bundle::MIN_SEGMENT_LEN {
        return Err(Error::malformed(
            "segment",
            format!(
                "{} has {len} bytes, too short for a segment",
                source.display()
            ),
        ));
    }
    commit(fs, out, &partial, &target)?;
    Ok(BundleSegment {
        segment_id: id.to_owned(),
        len,
        sha256,
    })
}
