//! The segment header: 128 bytes in front of every segment body.
//!
//! ```text
//! offset len  field
//!   0     4   magic "CMKS"
//!   4     1   format version (1 or 2; new segments are written as 2)
//!   5     3   reserved, zero
//!   8    16   zone id
//!  24     4   u32be EZK version that wrapped the DEK
//!  28     4   u32be chunk size of the body (ciphertext bytes)
//!  32    61   DEK wrapped by the EZK (wrapped-key layout v1)
//!  93    32   key commitment
//! 125     3   reserved, zero
//! ```
//!
//! Both versions share the layout; they differ in what the DEK's wrap
//! binds ([`SegmentFormat`]):
//!
//! * **v2** binds `"cmek.segment.dek.v2" ‖ bytes 0..32 ‖ bytes 93..128 ‖
//!   u32be(len(segment id)) ‖ segment id`: every header byte except the
//!   wrap itself — magic, version, zone id, EZK version, the stream
//!   chunk size, the commitment — so changing any of them makes the DEK
//!   fail to unwrap before any body byte is read or any buffer is sized.
//! * **v1** binds `"cmek.segment.dek.v1" ‖ zone id ‖ u32be(EZK version) ‖
//!   u32be(len(segment id)) ‖ segment id`. Its chunk size is bound
//!   by nothing: a body of one chunk decrypts under any value, so
//!   readers size their buffers by the bytes they actually have, never by
//!   this field alone. v1 stays readable; a rewrap rewrites it as v2.
//!
//! The body's associated data (HKDF info of the stream) is the same for
//! both: `"cmek.segment.body.v1" ‖ zone id ‖ u32be(len(segment id)) ‖
//! segment id` — the segment's stable identity, without the wrapped DEK, so
//! rewrapping (and upgrading v1 to v2) changes the header alone. The key
//! commitment is HKDF-SHA256(DEK, salt = "", info =
//! "cmek.segment.commitment.v1"), checked in constant time before any body
//! byte is decrypted, so a header opens its body under one DEK only.
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
/// The format version new segment headers are written with
/// ([`SegmentFormat::CURRENT`]).
pub const SEGMENT_FORMAT_VERSION: u8 = SegmentFormat::CURRENT.as_byte();
/// Length of the key commitment.
pub const COMMITMENT_LEN: usize = 32;

const WHAT: &str = "segment header";
const DEK_LABEL_V1: &[u8] = b"cmek.segment.dek.v1";
const DEK_LABEL_V2: &[u8] = b"cmek.segment.dek.v2";
const BODY_LABEL: &[u8] = b"cmek.segment.body.v1";
const COMMITMENT_INFO: &[u8] = b"cmek.segment.commitment.v1";

/// Header bytes before the wrapped DEK, and where the bytes after it start:
/// a v2 wrap binds both ranges.
const BEFORE_WRAP: std::ops::Range<usize> = 0..32;
const AFTER_WRAP: std::ops::Range<usize> = 93..SEGMENT_HEADER_LEN;

/// The format version of a segment header (byte 4). The layout is the same
/// for every version; what the DEK's wrap authenticates differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SegmentFormat {
    /// Version 1: the wrap binds zone id, EZK version and segment id; the
    /// chunk size is unauthenticated. Read, never written.
    V1,
    /// Version 2: the wrap binds every header byte but itself, and the
    /// segment id.
    V2,
}

impl SegmentFormat {
    /// The version new headers are written with, and rewraps upgrade to.
    pub const CURRENT: Self = Self::V2;

    /// The version byte `byte` names, if it is one this build reads.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The version byte.
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// True if the header authenticates its chunk size (through
    /// the DEK's wrap), so a reader may size buffers by it once the DEK
    /// unwrapped.
    pub const fn binds_stream_params(self) -> bool {
        match self {
            Self::V1 => false,
            Self::V2 => true,
        }
    }
}

/// A parsed segment header. Parsing needs no key: it is for inspection and
/// for routing a segment to its zone and EZK version.
#[derive(Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    format: SegmentFormat,
    zone_id: ZoneId,
    ezk_version: u32,
    chunk_size: u32,
    wrapped_dek: [u8; WRAPPED_KEY_LEN],
    commitment: [u8; COMMITMENT_LEN],
}

impl SegmentHeader {
    /// Parses the first [`SEGMENT_HEADER_LEN`] bytes of `bytes`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is shorter, the magic, version or
    /// reserved bytes are wrong, or the chunk size is out of range.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let Some(bytes) = bytes.get(..SEGMENT_HEADER_LEN) else {
            return Err(Error::malformed(
                WHAT,
                format!("{} bytes, need {SEGMENT_HEADER_LEN}", bytes.len()),
            ));
        };
        if bytes[0..4] != SEGMENT_MAGIC {
            return Err(Error::malformed(WHAT, "not a cmek segment (bad magic)"));
        }
        let Some(format) = SegmentFormat::from_byte(bytes[4]) else {
            return Err(Error::malformed(
                WHAT,
                format!("unsupported version {}", bytes[4]),
            ));
        };
        if bytes[5..8] != [0; 3] || bytes[125..128] != [0; 3] {
            return Err(Error::malformed(WHAT, "reserved bytes are not zero"));
        }
        let header = Self {
            format,
            zone_id: ZoneId::from_bytes(bytes[8..24].try_into().expect("16 bytes")),
            ezk_version: u32::from_be_bytes(bytes[24..28].try_into().expect("4 bytes")),
            chunk_size: u32::from_be_bytes(bytes[28..32].try_into().expect("4 bytes")),
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
        out[4] = self.format.as_byte();
        out[8..24].copy_from_slice(self.zone_id.as_bytes());
        out[24..28].copy_from_slice(&self.ezk_version.to_be_bytes());
        out[28..32].copy_from_slice(&self.chunk_size.to_be_bytes());
        out[32..93].copy_from_slice(&self.wrapped_dek);
        out[93..125].copy_from_slice(&self.commitment);
        out
    }

    /// The header's format version.
    pub fn format(&self) -> SegmentFormat {
        self.format
    }

    /// The zone the segment belongs to.
    pub fn zone_id(&self) -> ZoneId {
        self.zone_id
    }

    /// The EZK version that wrapped the segment's DEK.
    pub fn ezk_version(&self) -> u32 {
        self.ezk_version
    }

    /// The body's chunk size in bytes. Authenticated (once the DEK
    /// unwrapped) only in a v2 header; see
    /// [`SegmentFormat::binds_stream_params`].
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
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
    /// [`Error::Malformed`] if the chunk size is out of range.
    pub fn stream_params(&self) -> Result<Params> {
        Params::new(self.chunk_size as usize)
            .map_err(|_| Error::malformed(WHAT, format!("chunk size {}", self.chunk_size)))
    }

    /// A header of the current format, not yet holding its wrapped DEK:
    /// wrap the DEK with [`dek_aad`](Self::dek_aad) of this header, then
    /// [`with_wrapped_dek`](Self::with_wrapped_dek).
    pub(crate) fn unwrapped(
        zone_id: ZoneId,
        ezk_version: u32,
        params: Params,
        commitment: [u8; COMMITMENT_LEN],
    ) -> Self {
        Self {
            format: SegmentFormat::CURRENT,
            zone_id,
            ezk_version,
            chunk_size: u32::try_from(params.chunk_size()).expect("chunk sizes fit 32 bits"),
            wrapped_dek: [0; WRAPPED_KEY_LEN],
            commitment,
        }
    }

    /// The same header with `wrapped_dek` in place.
    pub(crate) fn with_wrapped_dek(self, wrapped_dek: [u8; WRAPPED_KEY_LEN]) -> Self {
        Self {
            wrapped_dek,
            ..self
        }
    }

    /// The header this one becomes when its DEK is rewrapped under EZK
    /// `ezk_version` (of the zone `zone_id`): same stream parameters and
    /// commitment, current format, no wrapped DEK yet.
    pub(crate) fn rewrap_template(&self, zone_id: ZoneId, ezk_version: u32) -> Self {
        Self {
            format: SegmentFormat::CURRENT,
            zone_id,
            ezk_version,
            wrapped_dek: [0; WRAPPED_KEY_LEN],
            ..self.clone()
        }
    }

    /// The same header in another format, its wrapped DEK cleared: tests
    /// make v1 segments with it, as older releases wrote them.
    #[cfg(test)]
    pub(crate) fn in_format(&self, format: SegmentFormat) -> Self {
        Self {
            format,
            wrapped_dek: [0; WRAPPED_KEY_LEN],
            ..self.clone()
        }
    }

    /// Associated data of this header's DEK wrap for segment `segment_id`,
    /// as its format defines it.
    pub(crate) fn dek_aad(&self, segment_id: &str) -> Vec<u8> {
        match self.format {
            SegmentFormat::V1 => {
                let mut aad = Vec::with_capacity(DEK_LABEL_V1.len() + 24 + segment_id.len());
                aad.extend_from_slice(DEK_LABEL_V1);
                aad.extend_from_slice(self.zone_id.as_bytes());
                aad.extend_from_slice(&self.ezk_version.to_be_bytes());
                push_segment_id(&mut aad, segment_id);
                aad
            }
            SegmentFormat::V2 => {
                let bytes = self.to_bytes();
                let mut aad = Vec::with_capacity(
                    DEK_LABEL_V2.len()
                        + BEFORE_WRAP.len()
                        + AFTER_WRAP.len()
                        + 4
                        + segment_id.len(),
                );
                aad.extend_from_slice(DEK_LABEL_V2);
                aad.extend_from_slice(&bytes[BEFORE_WRAP]);
                aad.extend_from_slice(&bytes[AFTER_WRAP]);
                push_segment_id(&mut aad, segment_id);
                aad
            }
        }
    }

    /// Checks `dek` against the commitment, in constant time.
    pub(crate) fn check_commitment(&self, dek: &SecretKey) -> Result<()> {
        if bool::from(commitment(dek)?.ct_eq(&self.commitment)) {
            Ok(())
        } else {
            Err(Error::tampered("segment key commitment"))
        }
    }
}

impl std::fmt::Debug for SegmentHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentHeader")
            .field("format", &self.format)
            .field("zone_id", &self.zone_id)
            .field("ezk_version", &self.ezk_version)
            .field("chunk_size", &self.chunk_size)
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

/// Associated data of a segment's body.
pub(crate) fn body_aad(zone_id: &ZoneId, segment_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(BODY_LABEL.len() + 20 + segment_id.len());
    aad.extend_from_slice(BODY_LABEL);
    aad.extend_from_slice(zone_id.as_bytes());
    push_segment_id(&mut aad, segment_id);
    aad
}

/// Header bytes a rewrap never changes: magic, reserved, zone id, stream
/// chunk size, key commitment. (It changes the EZK version, bytes 24..28,
/// and the wrapped DEK, 32..93, and may upgrade the format version, byte 4.)
const KEPT_BY_REWRAP: [std::ops::Range<usize>; 4] = [0..4, 5..24, 28..32, 93..SEGMENT_HEADER_LEN];

/// True if header bytes `now` can be `before` after a rewrap of it, or
/// after a rewrap torn part-way (each byte old or new): equal in every byte
/// a rewrap keeps ([`KEPT_BY_REWRAP`]), and a format version that is
/// `before`'s or the current one. Compares bytes, not parsed headers, so a
/// torn header that no longer parses can still be recognised.
pub(crate) fn rewrap_preserves(
    before: &[u8; SEGMENT_HEADER_LEN],
    now: &[u8; SEGMENT_HEADER_LEN],
) -> bool {
    KEPT_BY_REWRAP
        .iter()
        .all(|r| before[r.clone()] == now[r.clone()])
        && (now[4] == before[4] || now[4] == SEGMENT_FORMAT_VERSION)
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
    use crate::cipher::KeyWrapper;

    fn sample() -> SegmentHeader {
        SegmentHeader::unwrapped(
            ZoneId::from_bytes([7; 16]),
            3,
            Params::default(),
            [5; COMMITMENT_LEN],
        )
        .with_wrapped_dek([9; WRAPPED_KEY_LEN])
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The known-answer inputs of `docs/FORMAT.md` (segment header).
    struct Kat {
        ezk: SecretKey,
        dek: SecretKey,
        nonce: [u8; 12],
        zone: ZoneId,
        segment_id: &'static str,
    }

    fn kat() -> Kat {
        let range = |from: u8| -> [u8; 32] { std::array::from_fn(|i| from + i as u8) };
        Kat {
            ezk: SecretKey::from_array(&mut range(0x00)),
            dek: SecretKey::from_array(&mut range(0x40)),
            nonce: std::array::from_fn(|i| 0xa0 + i as u8),
            zone: ZoneId::from_bytes(std::array::from_fn(|i| 0x10 + i as u8)),
            segment_id: "collection-7/segment-42",
        }
    }

    const KAT_V2: &str = "
        434d4b5302000000101112131415161718191a1b1c1d1e1f0000000300010000
        01a0a1a2a3a4a5a6a7a8a9aaaba6593e6e018e44f82a2ccd984b378e9120fd0b
        43c6e2143bc4577cdd23f62b5ecfc7dbf9a2f0c98f671bdfbe371ebdc66db5fe
        fcc97760e185131a35997ab784a5074d10f10cd997689bd12afba14b7b000000";
    const KAT_V1: &str = "
        434d4b5301000000101112131415161718191a1b1c1d1e1f0000000300010000
        01a0a1a2a3a4a5a6a7a8a9aaaba6593e6e018e44f82a2ccd984b378e9120fd0b
        43c6e2143bc4577cdd23f62b5ebfbfc7fad90b58b891942dd2140bf4c56db5fe
        fcc97760e185131a35997ab784a5074d10f10cd997689bd12afba14b7b000000";

    /// Fixed EZK, DEK, nonce, zone and segment id give exactly the bytes in
    /// `docs/FORMAT.md` (computed independently with pyca/cryptography).
    #[test]
    fn v2_known_answer() {
        let k = kat();
        let template = SegmentHeader::unwrapped(
            k.zone,
            3,
            Params::new(65536).unwrap(),
            commitment(&k.dek).unwrap(),
        );
        let wrapped = KeyWrapper::<crate::cipher::DefaultBackend>::new(&k.ezk)
            .wrap_with_nonce(&k.dek, &template.dek_aad(k.segment_id), &k.nonce)
            .unwrap();
        let header = template.with_wrapped_dek(wrapped);
        assert_eq!(header.to_bytes().to_vec(), unhex(KAT_V2));
        let parsed = SegmentHeader::parse(&unhex(KAT_V2)).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(parsed.format(), SegmentFormat::V2);
        let dek = KeyWrapper::<crate::cipher::DefaultBackend>::new(&k.ezk)
            .unwrap(parsed.wrapped_dek(), &parsed.dek_aad(k.segment_id))
            .unwrap();
        assert_eq!(dek.expose_secret(), k.dek.expose_secret());
        parsed.check_commitment(&dek).unwrap();
    }

    /// The v1 vector still parses, and its DEK unwraps under the v1
    /// binding.
    #[test]
    fn v1_known_answer_still_reads() {
        let k = kat();
        let parsed = SegmentHeader::parse(&unhex(KAT_V1)).unwrap();
        assert_eq!(parsed.format(), SegmentFormat::V1);
        assert_eq!(parsed.to_bytes().to_vec(), unhex(KAT_V1));
        assert_eq!(parsed.chunk_size(), 65536);
        let dek = KeyWrapper::<crate::cipher::DefaultBackend>::new(&k.ezk)
            .unwrap(parsed.wrapped_dek(), &parsed.dek_aad(k.segment_id))
            .unwrap();
        assert_eq!(dek.expose_secret(), k.dek.expose_secret());
        parsed.check_commitment(&dek).unwrap();
    }

    /// Every header byte a reader acts on is bound by a v2 wrap: changing
    /// any of them to another well-formed value makes the DEK fail to
    /// unwrap. In v1 the chunk size (and the commitment) are not.
    #[test]
    fn v2_wrap_binds_every_byte_but_itself() {
        let k = kat();
        let wrapper = KeyWrapper::<crate::cipher::DefaultBackend>::new(&k.ezk);
        for (vector, format) in [(KAT_V2, SegmentFormat::V2), (KAT_V1, SegmentFormat::V1)] {
            let good = unhex(vector);
            for i in (0..32).chain(93..SEGMENT_HEADER_LEN) {
                for flip in [0x01u8, 0x80] {
                    let mut bad = good.clone();
                    bad[i] ^= flip;
                    let Ok(header) = SegmentHeader::parse(&bad) else {
                        continue; // refused structurally
                    };
                    let opened =
                        wrapper.unwrap(header.wrapped_dek(), &header.dek_aad(k.segment_id));
                    let bound_in_v1 = (8..28).contains(&i);
                    if format == SegmentFormat::V2 || bound_in_v1 {
                        assert!(
                            matches!(opened, Err(Error::Integrity { .. })),
                            "{format:?} byte {i} ^ {flip:#x}"
                        );
                    } else {
                        assert!(opened.is_ok(), "{format:?} byte {i} is not bound in v1");
                    }
                }
            }
        }
    }

    #[test]
    fn format_versions_are_a_type() {
        assert_eq!(SegmentFormat::CURRENT, SegmentFormat::V2);
        assert_eq!(SEGMENT_FORMAT_VERSION, 2);
        for v in [SegmentFormat::V1, SegmentFormat::V2] {
            assert_eq!(SegmentFormat::from_byte(v.as_byte()), Some(v));
        }
        for b in [0u8, 3, 0xff] {
            assert_eq!(SegmentFormat::from_byte(b), None);
        }
        assert!(!SegmentFormat::V1.binds_stream_params());
        assert!(SegmentFormat::V2.binds_stream_params());
    }

    #[test]
    fn round_trips_and_reads_its_fields() {
        let h = sample();
        let bytes = h.to_bytes();
        assert_eq!(&bytes[..5], b"CMKS\x02");
        let back = SegmentHeader::parse(&bytes).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.ezk_version(), 3);
        assert_eq!(back.zone_id(), ZoneId::from_bytes([7; 16]));
        assert_eq!(back.chunk_size() as usize, Params::default().chunk_size());
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
        // Magic, version, reserved bytes, and the chunk size's top byte
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
        let at =
            |version| SegmentHeader::unwrapped(z, version, Params::default(), [0; COMMITMENT_LEN]);
        assert_ne!(at(1).dek_aad("a"), at(2).dek_aad("a"));
        assert_ne!(at(1).dek_aad("ab"), at(1).dek_aad("a"));
        let mut v1 = at(1);
        v1.format = SegmentFormat::V1;
        assert_ne!(v1.dek_aad("a"), at(1).dek_aad("a"));
        assert_ne!(
            body_aad(&z, "a"),
            body_aad(&ZoneId::from_bytes([2; 16]), "a")
        );
        assert_ne!(body_aad(&z, "seg"), at(0).dek_aad("seg"));
    }

    #[test]
    fn a_rewrap_keeps_identity_bytes_only() {
        let mut v1 = sample();
        v1.format = SegmentFormat::V1;
        let before = v1.to_bytes();
        let after = v1
            .rewrap_template(v1.zone_id(), 9)
            .with_wrapped_dek([1; WRAPPED_KEY_LEN])
            .to_bytes();
        assert!(rewrap_preserves(&before, &after));
        assert!(rewrap_preserves(&before, &before));
        // Torn half-way: each byte old or new.
        let mut torn = before;
        torn[..64].copy_from_slice(&after[..64]);
        assert!(rewrap_preserves(&before, &torn));
        // But not back from v2 to v1, nor any change of zone, stream
        // chunk size, commitment, magic or reserved bytes.
        assert!(!rewrap_preserves(&after, &before));
        for i in (0..4).chain(5..24).chain(28..32).chain(93..128) {
            let mut other = after;
            other[i] ^= 1;
            assert!(!rewrap_preserves(&before, &other), "byte {i}");
        }
    }

    #[test]
    fn commitment_depends_on_the_key() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        let h = SegmentHeader::unwrapped(
            ZoneId::from_bytes([1; 16]),
            1,
            Params::default(),
            commitment(&a).unwrap(),
        );
        h.check_commitment(&a).unwrap();
        assert!(matches!(
            h.check_commitment(&b).unwrap_err(),
            Error::Integrity { .. }
        ));
    }
}
