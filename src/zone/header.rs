//! The segment header: 128 bytes in front of every segment body.
//!
//! ```text
//! offset len  field
//!   0     4   magic "CMKS"
//!   4     1   format version = 1
//!   5     3   reserved, zero
//!   8    16   zone id
//!  24     4   u32be EZK version that wrapped the DEK
//!  28     4   u32be stream segment size of the body (ciphertext bytes)
//!  32    61   DEK wrapped by the EZK (wrapped-key layout v1)
//!  93    32   key commitment
//! 125     3   reserved, zero
//! ```
//!
//! The DEK's wrap binds `"cmek.segment.dek.v1" ‖ zone id ‖ u32be(EZK
//! version) ‖ u32be(len(segment id)) ‖ segment id`; the body's associated
//! data (HKDF info of the stream) is `"cmek.segment.body.v1" ‖ zone id ‖
//! u32be(len(segment id)) ‖ segment id` — the segment's stable identity,
//! without the wrapped DEK, so rewrapping changes the header alone. The key
//! commitment is HKDF-SHA256(DEK, salt = "", info =
//! "cmek.segment.commitment.v1"), checked in constant time before any body
//! byte is decrypted, so no body opens under two different DEKs.
//!
//! The header is fixed-size so a rewrap rewrites it in place. This module
//! owns the layout and its bindings; it does no I/O and holds no EZK.

use subtle::ConstantTimeEq;

use super::ZoneId;
use crate::cipher::{hkdf_sha256, WRAPPED_KEY_LEN};
use crate::secret::SecretKey;
use crate::stream::Params;
use crate::{Error, Result};

/// Length of a segment header in bytes.
pub const SEGMENT_HEADER_LEN: usize = 128;
/// The header's magic bytes.
pub const SEGMENT_MAGIC: [u8; 4] = *b"CMKS";
/// The header's format version.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;

const WHAT: &str = "segment header";
const DEK_LABEL: &[u8] = b"cmek.segment.dek.v1";
const BODY_LABEL: &[u8] = b"cmek.segment.body.v1";
const COMMITMENT_INFO: &[u8] = b"cmek.segment.commitment.v1";

/// A parsed segment header. Parsing needs no key: it is for inspection and
/// for routing a segment to its zone and EZK version.
#[derive(Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    zone_id: ZoneId,
    ezk_version: u32,
    segment_size: u32,
    wrapped_dek: [u8; WRAPPED_KEY_LEN],
    commitment: [u8; COMMITMENT_LEN],
}

impl SegmentHeader {
    /// Parses the first [`SEGMENT_HEADER_LEN`] bytes of `bytes`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is shorter, the magic, version or
    /// reserved bytes are wrong, or the stream segment size is out of range.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < SEGMENT_HEADER_LEN {
            return Err(Error::malformed(
                WHAT,
                format!("{} bytes, need {SEGMENT_HEADER_LEN}", bytes.len()),
            ));
        }
        if bytes[0..4] != SEGMENT_MAGIC {
            return Err(Error::malformed(WHAT, "not a cmek segment (bad magic)"));
        }
        if bytes[4] != SEGMENT_FORMAT_VERSION {
            return Err(Error::malformed(
                WHAT,
                format!("unsupported version {}", bytes[4]),
            ));
        }
        if bytes[5..8] != [0; 3] || bytes[125..128] != [0; 3] {
            return Err(Error::malformed(WHAT, "reserved bytes are not zero"));
        }
        let header = Self {
            zone_id: ZoneId::from_bytes(bytes[8..24].try_into().expect("16 bytes")),
            ezk_version: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
            segment_size: u32::from_be_bytes(bytes[28..32].try_into().expect("4 bytes")),
            wrapped_dek: bytes[32..93].try_into().expect("61 bytes"),
            commitment: bytes[93..125].try_into().expect("32 bytes"),
        };
        header.stream_params()?;
        Ok(header)
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..4].copy_from_slice(&SEGMENT_MAGIC);
        out[4] = SEGMENT_FORMAT_VERSION;
        out[8..24].copy_from_slice(self.zone_id.as_bytes());
        out[24..28].copy_from_slice(&self.ezk_version.to_be_bytes());
        out[28..32].copy_from_slice(&self.segment_size.to_be_bytes());
        out[32..93].copy_from_slice(&self.wrapped_dek);
        out[93..125].copy_from_slice(&self.commitment);
        out
    }

    /// The zone the segment belongs to.
    pub fn zone_id(&self) -> ZoneId {
        self.zone_id
    }

    /// The EZK version that wrapped the segment's DEK.
    pub fn ezk_version(&self) -> u32 {
        self.ezk_version
    }

    /// The body's stream segment size in bytes.
    pub fn segment_size(&self) -> u32 {
        self.segment_size
    }

    /// The DEK as wrapped by the EZK (not secret).
    pub fn wrapped_dek(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.wrapped_dek
    }

    /// The key commitment (not secret).
    pub fn commitment(&self) -> &[u8; COMMITMENT_LEN] {
        &self.commitment
    }

    /// The body's stream parameters.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the segment size is out of range.
    pub fn stream_params(&self) -> Result<Params> {
        Params::new(self.segment_size as usize).map_err(|_| {
            Error::malformed(WHAT, format!("stream segment size {}", self.segment_size))
        })
    }

    pub(crate) fn new(
        zone_id: ZoneId,
        ezk_version: u32,
        params: Params,
        wrapped_dek: [u8; WRAPPED_KEY_LEN],
        commitment: [u8; COMMITMENT_LEN],
    ) -> Self {
        Self {
            zone_id,
            ezk_version,
            segment_size: params.segment_size() as u32,
            wrapped_dek,
            commitment,
        }
    }

    /// The same header with the DEK rewrapped under another EZK version.
    pub(crate) fn rewrapped(&self, ezk_version: u32, wrapped_dek: [u8; WRAPPED_KEY_LEN]) -> Self {
        Self {
            ezk_version,
            wrapped_dek,
            ..self.clone()
        }
    }

    /// Checks `dek` against the commitment, in constant time.
    pub(crate) fn check_commitment(&self, dek: &SecretKey) -> Result<()> {
        if bool::from(commitment(dek)?.ct_eq(&self.commitment)) {
            Ok(())
        } else {
            Err(Error::Integrity {
                what: "segment key commitment",
            })
        }
    }
}

impl std::fmt::Debug for SegmentHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentHeader")
            .field("zone_id", &self.zone_id)
            .field("ezk_version", &self.ezk_version)
            .field("segment_size", &self.segment_size)
            .finish_non_exhaustive()
    }
}

fn push_segment_id(out: &mut Vec<u8>, segment_id: &str) {
    out.extend_from_slice(
        &u32::try_from(segment_id.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(segment_id.as_bytes());
}

/// Associated data of a DEK's wrap under EZK `version`.
pub(crate) fn dek_aad(zone_id: &ZoneId, segment_id: &str, version: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DEK_LABEL.len() + 24 + segment_id.len());
    aad.extend_from_slice(DEK_LABEL);
    aad.extend_from_slice(zone_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    push_segment_id(&mut aad, segment_id);
    aad
}

/// Associated data of a segment's body.
pub(crate) fn body_aad(zone_id: &ZoneId, segment_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(BODY_LABEL.len() + 20 + segment_id.len());
    aad.extend_from_slice(BODY_LABEL);
    aad.extend_from_slice(zone_id.as_bytes());
    push_segment_id(&mut aad, segment_id);
    aad
}

/// The key commitment of `dek`.
pub(crate) fn commitment(dek: &SecretKey) -> Result<[u8; COMMITMENT_LEN]> {
    let mut out = [0u8; COMMITMENT_LEN];
    hkdf_sha256(dek.expose_secret(), b"", COMMITMENT_INFO, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader::new(
            ZoneId::from_bytes([7; 16]),
            3,
            Params::default(),
            [9; WRAPPED_KEY_LEN],
            [5; COMMITMENT_LEN],
        )
    }

    #[test]
    fn round_trips_and_reads_its_fields() {
        let h = sample();
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..5], b"CMKS\x01");
        let back = SegmentHeader::parse(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.ezk_version(), 3);
        assert_eq!(back.zone_id(), ZoneId::from_bytes([7; 16]));
        assert_eq!(
            back.segment_size() as usize,
            Params::default().segment_size()
        );
    }

    #[test]
    fn structural_damage_is_malformed() {
        let good = sample().to_bytes();
        for len in 0..SEGMENT_HEADER_LEN {
            assert!(matches!(
                SegmentHeader::parse(&good[..len]).unwrap_err(),
                Error::Malformed { .. }
            ));
        }
        // Magic, version, reserved bytes, and the segment size's top byte
        // (out of range) are checked structurally; the other fields are
        // checked cryptographically.
        for i in (0..8).chain(28..29).chain(125..128) {
            let mut bad = good;
            bad[i] ^= 0x80;
            assert!(
                matches!(
                    SegmentHeader::parse(&bad).unwrap_err(),
                    Error::Malformed { .. }
                ),
                "byte {i}"
            );
        }
    }

    #[test]
    fn bindings_are_unambiguous() {
        let z = ZoneId::from_bytes([1; 16]);
        assert_ne!(dek_aad(&z, "a", 1), dek_aad(&z, "a", 2));
        assert_ne!(dek_aad(&z, "ab", 1), dek_aad(&z, "a", 1));
        assert_ne!(
            body_aad(&z, "a"),
            body_aad(&ZoneId::from_bytes([2; 16]), "a")
        );
        assert_ne!(body_aad(&z, "seg"), dek_aad(&z, "seg", 0));
    }

    #[test]
    fn commitment_depends_on_the_key() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        let h = SegmentHeader::new(
            ZoneId::from_bytes([1; 16]),
            1,
            Params::default(),
            [0; WRAPPED_KEY_LEN],
            commitment(&a).unwrap(),
        );
        h.check_commitment(&a).unwrap();
        assert!(matches!(
            h.check_commitment(&b).unwrap_err(),
            Error::Integrity { .. }
        ));
    }
}
