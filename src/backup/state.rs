//! The restore state file: which backup a destination directory is being
//! restored from, how, under which root key, and into which zone — written
//! before anything else, so that a restore resumed after a crash recognizes
//! its own work and refuses anything it did not start.
//!
//! Layout, version 2 (the checksummed frame shared with the other cmek
//! files; every string `u16be(len) ‖ UTF-8`):
//!
//! ```text
//! magic "CMEK-RST" (8) ‖ u16be version = 2
//! bundle digest (32)  SHA-256 of the backup's manifest file, as read
//! backup id (16)
//! source zone (16)    the backed-up zone's id
//! mode (1)            1 = rewrap into a zone, 2 = re-encrypt into a zone, 3 = plaintext
//! zone id (16)        the new zone's id, drawn before the zone is created; zero for plaintext
//! complete (1)        0 while in progress, 1 once every segment was restored and verified
//! region              1 ..= 256 bytes, where the restore runs
//! modes 1 and 2 only, the new zone:
//!     name            1 ..= 256 bytes
//!     root provider   1 ..= 256 bytes
//!     root key id     1 ..= 2048 bytes
//!     root region     1 ..= 256 bytes
//! checksum (32)       SHA-256 of every preceding byte
//! ```
//!
//! Version 1 (backup id, mode, zone id, complete) still parses, as
//! [`StoredState::V1`], but a restore refuses to resume from it: it names
//! neither the root key nor the backed-up zone, so it cannot show that the
//! destination is the restore the caller asked for. A destination holding
//! one is restored again from an empty directory.
//!
//! This module owns the layout; it does no I/O.

use crate::cipher::SHA256_LEN;
use crate::codec::{open_checksummed, put_bytes16, seal_checksummed, start_checksummed};
use crate::provider::KeyRef;
use crate::zone::ZoneId;
use crate::{Error, Result, StateRejection};

const MAGIC: &[u8; 8] = b"CMEK-RST";
const WHAT: &str = "restore state";
/// Longest name, region or provider kind in a state (as in a zone manifest).
const MAX_NAME: usize = 256;
/// Longest root key id in a state (as in a zone manifest).
const MAX_KEY_ID: usize = 2048;
/// Largest restore state file read: far above the largest valid one
/// (under 7 KiB), so a planted file cannot make a restore allocate more.
pub(crate) const MAX_STATE_FILE: u64 = 64 << 10;

/// The restore state's format versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Backup id, mode, zone id, complete flag.
    V1 = 1,
    /// Version 1 and the whole restore spec: bundle digest, source zone,
    /// region, and the new zone's name and root key.
    V2 = 2,
}

impl Version {
    fn of(bytes: &[u8]) -> Result<Self> {
        match crate::codec::declared_version(bytes, MAGIC, WHAT)? {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            other => Err(crate::codec::unsupported_version(WHAT, other)),
        }
    }
}

/// How segments are restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreMode {
    /// Into a new encrypted zone, each DEK unwrapped with the backup's EZK
    /// and rewrapped under the new zone's; bodies are copied untouched. The
    /// fast default. The backup's keys stay able to decrypt the restored
    /// bodies (same DEKs).
    #[default]
    Rewrap,
    /// Into a new encrypted zone, every segment decrypted and encrypted
    /// again under a fresh DEK: nothing of the backup's keys survives in the
    /// restored zone.
    Reencrypt,
    /// Every segment decrypted to a plaintext file.
    Plaintext,
}

impl RestoreMode {
    fn code(self) -> u8 {
        match self {
            RestoreMode::Rewrap => 1,
            RestoreMode::Reencrypt => 2,
            RestoreMode::Plaintext => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self> {
        match code {
            1 => Ok(RestoreMode::Rewrap),
            2 => Ok(RestoreMode::Reencrypt),
            3 => Ok(RestoreMode::Plaintext),
            other => Err(Error::malformed(WHAT, format!("mode {other}"))),
        }
    }
}

/// The new zone of an encrypted restore, as the caller specified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetSpec {
    pub(crate) name: String,
    pub(crate) root: KeyRef,
}

/// Everything that identifies one restore: what the caller asked for and
/// the backup it read. A resumed run must ask for exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreSpec {
    pub(crate) bundle_digest: [u8; SHA256_LEN],
    pub(crate) backup_id: [u8; 16],
    pub(crate) source_zone: ZoneId,
    pub(crate) mode: RestoreMode,
    pub(crate) region: String,
    /// `Some` exactly for the encrypted modes.
    pub(crate) target: Option<TargetSpec>,
}

/// A restore's state, version 2: its spec, the new zone's id, and whether
/// it finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreState {
    pub(crate) spec: RestoreSpec,
    pub(crate) zone_id: ZoneId,
    pub(crate) complete: bool,
}

/// A restore state of version 1, kept readable to name it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreStateV1 {
    pub(crate) backup_id: [u8; 16],
    pub(crate) mode: RestoreMode,
    pub(crate) zone_id: ZoneId,
    pub(crate) complete: bool,
}

/// A restore state file as found, by format version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredState {
    /// Version 1: no spec; never resumed.
    V1(RestoreStateV1),
    /// Version 2: the current format.
    V2(RestoreState),
}

impl StoredState {
    /// Parses a state file of any known version.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        match Version::of(bytes)? {
            Version::V1 => RestoreStateV1::parse(bytes).map(StoredState::V1),
            Version::V2 => RestoreState::parse(bytes).map(StoredState::V2),
        }
    }
}

impl RestoreStateV1 {
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = start_checksummed(MAGIC, Version::V1 as u16);
        out.extend_from_slice(&self.backup_id);
        out.push(self.mode.code());
        out.extend_from_slice(self.zone_id.as_bytes());
        out.push(u8::from(self.complete));
        seal_checksummed(&mut out);
        out
    }

    fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = open_checksummed(bytes, MAGIC, Version::V1 as u16, WHAT)?;
        let backup_id = r.array()?;
        let mode = RestoreMode::from_code(r.u8()?)?;
        let zone_id = ZoneId::from_bytes(r.array()?);
        let complete = complete_flag(r.u8()?)?;
        r.finish()?;
        Ok(Self {
            backup_id,
            mode,
            zone_id,
            complete,
        })
    }
}

fn complete_flag(byte: u8) -> Result<bool> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(Error::malformed(WHAT, format!("complete flag {other}"))),
    }
}

/// Checks the bounds the parser enforces on a string this side writes.
fn check_str(field: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max {
        return Err(Error::InvalidArgument(format!(
            "the restore's {field} must be 1 to {max} bytes; got {}",
            s.len()
        )));
    }
    Ok(())
}

impl RestoreSpec {
    /// Refuses a spec the state file could not record (an empty or
    /// oversized name, region or root), before anything is written.
    pub(crate) fn check(&self) -> Result<()> {
        check_str("region", &self.region, MAX_NAME)?;
        if let Some(t) = &self.target {
            check_str("zone name", &t.name, MAX_NAME)?;
            check_str("root key provider", t.root.provider(), MAX_NAME)?;
            check_str("root key id", t.root.key_id(), MAX_KEY_ID)?;
            check_str("root key region", t.root.region(), MAX_NAME)?;
        }
        if self.target.is_some() == (self.mode == RestoreMode::Plaintext) {
            return Err(Error::InvalidArgument(
                "an encrypted restore needs a target zone, a plaintext one has none".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a state recorded by another restore than this one. The zone
    /// and root come first: they are what an attacker planting a state
    /// would change.
    pub(crate) fn check_resumes(&self, found: &RestoreSpec) -> Result<()> {
        let reject = |reason| Err(Error::StateRejected { what: WHAT, reason });
        if found.source_zone != self.source_zone {
            return reject(StateRejection::ForeignZone {
                expected: self.source_zone.to_string(),
                found: found.source_zone.to_string(),
            });
        }
        if let (Some(want), Some(got)) = (&self.target, &found.target) {
            if want.root != got.root {
                return reject(StateRejection::UnexpectedRoot {
                    expected: want.root.to_string(),
                    found: got.root.to_string(),
                });
            }
        }
        if found.bundle_digest != self.bundle_digest || found.backup_id != self.backup_id {
            return reject(StateRejection::Mismatch(
                "it records another backup (or this backup's manifest changed since)".into(),
            ));
        }
        if found.mode != self.mode {
            return reject(StateRejection::Mismatch(format!(
                "it records a {:?} restore, not {:?}",
                found.mode, self.mode
            )));
        }
        if found.region != self.region {
            return reject(StateRejection::Mismatch(format!(
                "it records region {:?}, not {:?}",
                found.region, self.region
            )));
        }
        if let (Some(want), Some(got)) = (&self.target, &found.target) {
            if want.name != got.name {
                return reject(StateRejection::Mismatch(format!(
                    "it records zone name {:?}, not {:?}",
                    got.name, want.name
                )));
            }
        }
        Ok(())
    }
}

impl RestoreState {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let s = &self.spec;
        let mut out = start_checksummed(MAGIC, Version::V2 as u16);
        out.extend_from_slice(&s.bundle_digest);
        out.extend_from_slice(&s.backup_id);
        out.extend_from_slice(s.source_zone.as_bytes());
        out.push(s.mode.code());
        out.extend_from_slice(self.zone_id.as_bytes());
        out.push(u8::from(self.complete));
        put_bytes16(&mut out, s.region.as_bytes());
        if let Some(t) = &s.target {
            for field in [
                t.name.as_str(),
                t.root.provider(),
                t.root.key_id(),
                t.root.region(),
            ] {
                put_bytes16(&mut out, field.as_bytes());
            }
        }
        seal_checksummed(&mut out);
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = open_checksummed(bytes, MAGIC, Version::V2 as u16, WHAT)?;
        let bundle_digest = r.array()?;
        let backup_id = r.array()?;
        let source_zone = ZoneId::from_bytes(r.array()?);
        let mode = RestoreMode::from_code(r.u8()?)?;
        let zone_id = ZoneId::from_bytes(r.array()?);
        let complete = complete_flag(r.u8()?)?;
        let region = r.str("region", MAX_NAME)?;
        let target = match mode {
            RestoreMode::Plaintext => {
                if zone_id != ZoneId::from_bytes([0; 16]) {
                    return Err(Error::malformed(WHAT, "a plaintext restore with a zone id"));
                }
                None
            }
            RestoreMode::Rewrap | RestoreMode::Reencrypt => Some(TargetSpec {
                name: r.str("zone name", MAX_NAME)?,
                root: KeyRef::new(
                    r.str("root provider", MAX_NAME)?,
                    r.str("root key id", MAX_KEY_ID)?,
                    r.str("root region", MAX_NAME)?,
                ),
            }),
        };
        r.finish()?;
        Ok(Self {
            spec: RestoreSpec {
                bundle_digest,
                backup_id,
                source_zone,
                mode,
                region,
                target,
            },
            zone_id,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RestoreState {
        RestoreState {
            spec: RestoreSpec {
                bundle_digest: [0x33; 32],
                backup_id: [0x11; 16],
                source_zone: ZoneId::from_bytes([0x44; 16]),
                mode: RestoreMode::Reencrypt,
                region: "eu-west-1".into(),
                target: Some(TargetSpec {
                    name: "restored".into(),
                    root: KeyRef::new("local", "root-2", "eu-west-1"),
                }),
            },
            zone_id: ZoneId::from_bytes([0x22; 16]),
            complete: true,
        }
    }

    /// The vector in docs/FORMAT.md ("Restore state, version 2").
    #[test]
    fn golden_bytes_and_every_flip_and_truncation() {
        let state = sample();
        let bytes = state.to_bytes();
        let body: Vec<u8> = [
            &b"CMEK-RST\x00\x02"[..],
            &[0x33; 32],
            &[0x11; 16],
            &[0x44; 16],
            &[2],
            &[0x22; 16],
            &[1],
            b"\x00\x09eu-west-1",
            b"\x00\x08restored",
            b"\x00\x05local",
            b"\x00\x06root-2",
            b"\x00\x09eu-west-1",
        ]
        .concat();
        assert_eq!(&bytes[..body.len()], &body[..]);
        assert_eq!(bytes.len(), body.len() + 32);
        assert_eq!(
            hex(&bytes[body.len()..]),
            hex(&crate::cipher::sha256(&[&body]))
        );
        assert_eq!(
            std::fs::read(vector()).unwrap(),
            bytes,
            "the restore state layout changed"
        );
        assert_eq!(
            StoredState::parse(&bytes).unwrap(),
            StoredState::V2(state.clone())
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(StoredState::parse(&bad).is_err(), "byte {i}");
        }
        for len in 0..bytes.len() {
            assert!(StoredState::parse(&bytes[..len]).is_err(), "len {len}");
        }
    }

    fn vector() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/backup/restore.state")
    }

    #[test]
    #[ignore = "writes the restore state vector; run only for a new format version"]
    fn generate_restore_state_vector() {
        std::fs::write(vector(), sample().to_bytes()).unwrap();
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn plaintext_state_has_no_target_and_a_zero_zone() {
        let mut state = sample();
        state.spec.mode = RestoreMode::Plaintext;
        state.spec.target = None;
        state.zone_id = ZoneId::from_bytes([0; 16]);
        state.spec.check().unwrap();
        let bytes = state.to_bytes();
        assert_eq!(RestoreState::parse(&bytes).unwrap(), state);
        state.zone_id = ZoneId::from_bytes([1; 16]);
        assert!(matches!(
            RestoreState::parse(&state.to_bytes()),
            Err(Error::Malformed { .. })
        ));
    }

    /// Version 1 files still parse (to be named in the refusal); the
    /// version 1 vector of docs/FORMAT.md.
    #[test]
    fn version_1_still_parses() {
        let v1 = RestoreStateV1 {
            backup_id: [0x11; 16],
            mode: RestoreMode::Reencrypt,
            zone_id: ZoneId::from_bytes([0x22; 16]),
            complete: true,
        };
        let bytes = v1.to_bytes();
        let body: Vec<u8> = [
            &b"CMEK-RST\x00\x01"[..],
            &[0x11; 16],
            &[2],
            &[0x22; 16],
            &[1],
        ]
        .concat();
        assert_eq!(&bytes[..body.len()], &body[..]);
        assert_eq!(StoredState::parse(&bytes).unwrap(), StoredState::V1(v1));
        let mut v3 = bytes.clone();
        v3[9] = 3;
        let err = StoredState::parse(&v3).unwrap_err();
        assert!(err.to_string().contains("unsupported version 3"), "{err}");
    }

    #[test]
    fn a_spec_that_differs_in_any_field_is_refused() {
        let want = sample().spec;
        want.check_resumes(&want).unwrap();
        let kind = |found: &RestoreSpec| match want.check_resumes(found) {
            Err(Error::StateRejected { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        let mut f = want.clone();
        f.source_zone = ZoneId::from_bytes([9; 16]);
        assert!(matches!(kind(&f), StateRejection::ForeignZone { .. }));
        let mut f = want.clone();
        f.target.as_mut().unwrap().root = KeyRef::new("local", "evil", "eu-west-1");
        assert!(matches!(kind(&f), StateRejection::UnexpectedRoot { .. }));
        for change in [
            (|f: &mut RestoreSpec| f.bundle_digest[0] ^= 1) as fn(&mut RestoreSpec),
            |f| f.backup_id[0] ^= 1,
            |f| f.mode = RestoreMode::Rewrap,
            |f| f.region = "us-east-1".into(),
            |f| f.target.as_mut().unwrap().name = "other".into(),
        ] {
            let mut f = want.clone();
            change(&mut f);
            assert!(matches!(kind(&f), StateRejection::Mismatch(_)), "{f:?}");
        }
    }
}
