//! The restore state file: which backup a destination directory is being
//! restored from, how, and into which zone — written before anything else,
//! so that a restore resumed after a crash recognizes its own work and
//! refuses to mix two restores.
//!
//! Layout, version 1 (the checksummed frame shared with the other cmek
//! files):
//!
//! ```text
//! magic "CMEK-RST" (8) ‖ u16be version = 1
//! backup id (16)
//! mode (1)       1 = rewrap into a zone, 2 = re-encrypt into a zone, 3 = plaintext
//! zone id (16)   the new zone's id, drawn before the zone is created; zero for plaintext
//! complete (1)   0 while in progress, 1 once every segment was restored and verified
//! checksum (32)  SHA-256 of every preceding byte
//! ```
//!
//! This module owns the layout; it does no I/O.

use crate::codec::{open_checksummed, seal_checksummed, start_checksummed};
use crate::zone::ZoneId;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CMEK-RST";
const VERSION: u16 = 1;
const WHAT: &str = "restore state";

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestoreState {
    pub(crate) backup_id: [u8; 16],
    pub(crate) mode: RestoreMode,
    pub(crate) zone_id: ZoneId,
    pub(crate) complete: bool,
}

impl RestoreState {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = start_checksummed(MAGIC, VERSION);
        out.extend_from_slice(&self.backup_id);
        out.push(self.mode.code());
        out.extend_from_slice(self.zone_id.as_bytes());
        out.push(u8::from(self.complete));
        seal_checksummed(&mut out);
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = open_checksummed(bytes, MAGIC, VERSION, WHAT)?;
        let backup_id = r.array()?;
        let mode = match r.u8()? {
            1 => RestoreMode::Rewrap,
            2 => RestoreMode::Reencrypt,
            3 => RestoreMode::Plaintext,
            other => return Err(Error::malformed(WHAT, format!("mode {other}"))),
        };
        let zone_id = ZoneId::from_bytes(r.array()?);
        let complete = match r.u8()? {
            0 => false,
            1 => true,
            other => return Err(Error::malformed(WHAT, format!("complete flag {other}"))),
        };
        r.finish()?;
        Ok(Self {
            backup_id,
            mode,
            zone_id,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_and_every_flip_and_truncation() {
        let state = RestoreState {
            backup_id: [0x11; 16],
            mode: RestoreMode::Reencrypt,
            zone_id: ZoneId::from_bytes([0x22; 16]),
            complete: true,
        };
        let bytes = state.to_bytes();
        let body: Vec<u8> = [
            &b"CMEK-RST\x00\x01"[..],
            &[0x11; 16],
            &[2],
            &[0x22; 16],
            &[1],
        ]
        .concat();
        assert_eq!(&bytes[..body.len()], &body[..]);
        assert_eq!(bytes.len(), body.len() + 32);
        assert_eq!(RestoreState::parse(&bytes).unwrap(), state);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(RestoreState::parse(&bad).is_err(), "byte {i}");
        }
        for len in 0..bytes.len() {
            assert!(RestoreState::parse(&bytes[..len]).is_err(), "len {len}");
        }
    }
}
