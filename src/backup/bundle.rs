//! The backup bundle's manifest: what a backup holds and how to check it.
//!
//! Layout, version 1 (big-endian; the checksummed frame shared with the
//! other cmek files):
//!
//! ```text
//! magic "CMEK-BKP" (8) ‖ u16be version = 1
//! backup id (16)      random, drawn when the backup is made
//! created (8)         u64be, seconds since the Unix epoch
//! zone manifest       u32be(len) ‖ the zone manifest, as the zone stored it (1 B ..= 16 MiB)
//! count (4)           u32be, number of segments (at most 2^24)
//! count × segment, in increasing byte order of id, no id twice:
//!     id        u16be(len) ‖ UTF-8, 1 ..= 4096 bytes
//!     length    u64be, bytes of the segment file (header and body), at least 184
//!     sha256    32, SHA-256 of the segment file
//! checksum (32)       SHA-256 of every preceding byte
//! ```
//!
//! The lengths of all segments sum to at most 2^64 - 1 bytes, and the file
//! is at most [`MAX_BUNDLE_MANIFEST`] bytes: a manifest that breaks either
//! is malformed, so no sum over it overflows and no read of it allocates
//! without bound.
//!
//! The segment files themselves are `segments/<name>` beside the manifest,
//! `<name>` derived from the id ([`super::names`]). This module owns the
//! layout; it does no I/O.

use crate::cipher::SHA256_LEN;
use crate::codec::{open_checksummed, put_bytes16, seal_checksummed, start_checksummed};
use crate::zone::{ZoneManifest, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CMEK-BKP";
/// The bundle manifest's format version written.
pub const BUNDLE_FORMAT_VERSION: u16 = BundleVersion::V1 as u16;
/// Largest bundle manifest file read (1 GiB: 2^24 segments with ids of
/// some 20 bytes, and the largest zone manifest).
pub const MAX_BUNDLE_MANIFEST: u64 = 1 << 30;
const WHAT: &str = "backup manifest";
/// Longest segment id a backup holds.
pub const MAX_SEGMENT_ID: usize = 4096;
/// Most segments one backup holds.
pub const MAX_SEGMENTS: usize = 1 << 24;
const MAX_ZONE_MANIFEST: usize = 16 << 20;
/// The shortest segment: a header and an empty stream (header and one tag).
pub(crate) const MIN_SEGMENT_LEN: u64 =
    (SEGMENT_HEADER_LEN + crate::stream::HEADER_LEN + crate::cipher::TAG_LEN) as u64;

/// The bundle manifest's format versions, each parsed by its own function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BundleVersion {
    /// The layout in the module docs.
    V1 = 1,
}

impl BundleVersion {
    /// The version a manifest file declares, if it is one cmek knows.
    fn of(bytes: &[u8]) -> Result<Self> {
        match crate::codec::declared_version(bytes, MAGIC, WHAT)? {
            1 => Ok(BundleVersion::V1),
            other => Err(crate::codec::unsupported_version(WHAT, other)),
        }
    }
}

/// One segment as a backup recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSegment {
    /// The segment's id in its zone.
    pub segment_id: String,
    /// Length of its file (header and body).
    pub len: u64,
    /// SHA-256 of its file.
    pub sha256: [u8; SHA256_LEN],
}

/// A parsed backup manifest (layout in `docs/FORMAT.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleManifest {
    pub(crate) backup_id: [u8; 16],
    pub(crate) created_unix: u64,
    pub(crate) zone_manifest: Vec<u8>,
    pub(crate) zone: ZoneManifest,
    pub(crate) segments: Vec<BundleSegment>,
}

impl BundleManifest {
    /// The backup's random id, as 32 hex digits.
    pub fn backup_id(&self) -> String {
        self.backup_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// When the backup was made, in seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    /// The backed-up zone's manifest: its id, root key and wrapped EZKs.
    pub fn zone(&self) -> &ZoneManifest {
        &self.zone
    }

    /// The segments, in id order.
    pub fn segments(&self) -> &[BundleSegment] {
        &self.segments
    }

    /// Total bytes of the segment files. A parsed manifest's lengths never
    /// sum past `u64::MAX` (checked when parsed).
    pub fn total_bytes(&self) -> u64 {
        self.segments
            .iter()
            .fold(0u64, |sum, s| sum.saturating_add(s.len))
    }

    /// Builds a manifest, checking what [`parse`](Self::parse) checks.
    pub(crate) fn new(
        backup_id: [u8; 16],
        created_unix: u64,
        zone_manifest: Vec<u8>,
        mut segments: Vec<BundleSegment>,
    ) -> Result<Self> {
        segments.sort_by(|a, b| a.segment_id.cmp(&b.segment_id));
        let m = Self {
            backup_id,
            created_unix,
            zone: ZoneManifest::parse(&zone_manifest)?,
            zone_manifest,
            segments,
        };
        m.check().map_err(|e| match e {
            Error::Malformed { reason, .. } => Error::InvalidArgument(reason),
            other => other,
        })?;
        Ok(m)
    }

    /// Serializes the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = start_checksummed(MAGIC, BUNDLE_FORMAT_VERSION);
        out.extend_from_slice(&self.backup_id);
        out.extend_from_slice(&self.created_unix.to_be_bytes());
        out.extend_from_slice(&(self.zone_manifest.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.zone_manifest);
        out.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for s in &self.segments {
            put_bytes16(&mut out, s.segment_id.as_bytes());
            out.extend_from_slice(&s.len.to_be_bytes());
            out.extend_from_slice(&s.sha256);
        }
        seal_checksummed(&mut out);
        out
    }

    /// Parses and checks a manifest.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a truncated, corrupted (checksum), foreign
    /// or unknown-version file, or inconsistent fields (segments out of
    /// order or twice, a length no segment has, a zone manifest that does
    /// not parse).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        match BundleVersion::of(bytes)? {
            BundleVersion::V1 => Self::parse_v1(bytes),
        }
    }

    fn parse_v1(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_BUNDLE_MANIFEST {
            return Err(Error::malformed(
                WHAT,
                format!("{} bytes, at most {MAX_BUNDLE_MANIFEST}", bytes.len()),
            ));
        }
        let mut r = open_checksummed(bytes, MAGIC, BundleVersion::V1 as u16, WHAT)?;
        let backup_id = r.array()?;
        let created_unix = r.u64()?;
        let zone_len = r.u32()? as usize;
        if zone_len == 0 || zone_len > MAX_ZONE_MANIFEST {
            return Err(Error::malformed(
                WHAT,
                format!("zone manifest length {zone_len}"),
            ));
        }
        let zone_manifest = r.take(zone_len)?.to_vec();
        let zone = ZoneManifest::parse(&zone_manifest)?;
        let count = r.u32()? as usize;
        if count > MAX_SEGMENTS {
            return Err(Error::malformed(WHAT, format!("{count} segments")));
        }
        // Each entry takes at least 43 bytes; do not trust `count` for the
        // allocation before the bytes are there.
        let mut segments = Vec::with_capacity(count.min(bytes.len() / 43));
        for _ in 0..count {
            segments.push(BundleSegment {
                segment_id: r.str("segment id", MAX_SEGMENT_ID)?,
                len: r.u64()?,
                sha256: r.array()?,
            });
        }
        r.finish()?;
        let m = Self {
            backup_id,
            created_unix,
            zone_manifest,
            zone,
            segments,
        };
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        if self.zone_manifest.is_empty() || self.zone_manifest.len() > MAX_ZONE_MANIFEST {
            return Err(Error::malformed(
                WHAT,
                format!("zone manifest length {}", self.zone_manifest.len()),
            ));
        }
        if self.segments.len() > MAX_SEGMENTS {
            return Err(Error::malformed(
                WHAT,
                format!("{} segments, at most {MAX_SEGMENTS}", self.segments.len()),
            ));
        }
        for pair in self.segments.windows(2) {
            if pair[0].segment_id >= pair[1].segment_id {
                return Err(Error::malformed(
                    WHAT,
                    format!("segment {:?} out of order or twice", pair[1].segment_id),
                ));
            }
        }
        let mut total = 0u64;
        // The encoded size: frame, fixed fields, zone manifest, entries.
        let mut encoded = (10 + 16 + 8 + 4 + 4 + SHA256_LEN + self.zone_manifest.len()) as u64;
        for s in &self.segments {
            encoded = encoded.saturating_add((2 + s.segment_id.len() + 8 + SHA256_LEN) as u64);
            total = total.checked_add(s.len).ok_or_else(|| {
                Error::malformed(
                    WHAT,
                    format!(
                        "segment lengths sum past 2^64 bytes (at {:?})",
                        s.segment_id
                    ),
                )
            })?;
            if s.segment_id.is_empty() || s.segment_id.len() > MAX_SEGMENT_ID {
                return Err(Error::malformed(
                    WHAT,
                    format!("segment id of {} bytes", s.segment_id.len()),
                ));
            }
            if s.len < MIN_SEGMENT_LEN {
                return Err(Error::malformed(
                    WHAT,
                    format!("segment {:?} of {} bytes", s.segment_id, s.len),
                ));
            }
        }
        if encoded > MAX_BUNDLE_MANIFEST {
            return Err(Error::malformed(
                WHAT,
                format!("{encoded} bytes, at most {MAX_BUNDLE_MANIFEST}"),
            ));
        }
        Ok(())
    }
}
