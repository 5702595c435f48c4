//! The zone manifest: what must persist for a zone to open.
//!
//! Layout, version 3 (big-endian; `str` is `u16be(len) ‖ UTF-8`, `bytes` is
//! `u16be(len) ‖ bytes`), the only version written:
//!
//! ```text
//! magic "CMEK-ZMF" (8) ‖ u16be version = 3
//! zone id (16) ‖ body zone id (16)
//! u64be generation ‖ u64be created ‖ u64be updated
//! str name ‖ str region
//! str root provider ‖ str root key id ‖ str root region ‖ str root alias ("" = none)
//! u32be chunk size ‖ u32be active EZK version
//! u32be count ‖ count × (u32be version ‖ u64be created ‖ u64be wraps reserved ‖ bytes wrapped EZK)
//! tag (32)   = HKDF-SHA256(ikm = EZK[active], salt = zone id,
//!                          info = "cmek.zone.manifest.v3" ‖ SHA-256(every byte before the tag))
//! SHA-256 of every preceding byte (32)
//! ```
//!
//! **Authentication.** The tag is a MAC keyed by the active EZK: HKDF's
//! extract and expand are HMAC-SHA256, so the tag is HMAC under a key only a
//! holder of the unwrapped EZK can compute, over a collision-resistant
//! digest of every field. Whoever can write the manifest but cannot ask the
//! KMS to unwrap the EZK cannot change any field (root key, generation, EZK
//! set, active version, body zone id, wrap reservations) without the zone
//! refusing it at open. The checksum comes last so that plain corruption is
//! [`Error::Malformed`] before any KMS call; the tag is checked after the
//! EZKs are unwrapped ([`Error::Integrity`]).
//!
//! **What the tag cannot do**, and the [`ZoneAnchor`](super::ZoneAnchor)
//! does: an older manifest of the same zone carries a valid tag too, since
//! the EZK that keys it is unchanged (a root rotation rewraps EZKs; a
//! retirement removes one). Rollback and swap are stopped by what the
//! opener independently knows — zone id, root key, lowest generation —
//! checked before any provider call.
//!
//! Versions 1 and 2 (read only, for adopting zones written by older
//! releases): version 1 is version 3 without the body zone id, the root
//! alias, the wraps-reserved field and the tag; version 2 is version 1 with
//! the body zone id after the zone id. Neither is authenticated, so opening
//! one needs [`Keyring::adopt_legacy_zone`](super::Keyring::adopt_legacy_zone),
//! which rewrites it as version 3.
//!
//! Every EZK version is wrapped by the root key with the encryption context
//! `{cmek:zone = zone id, cmek:purpose = ezk, cmek:ezk-version = N}`, so a
//! wrapped EZK moved into another zone's manifest, or to another version
//! number, does not unwrap. The generation grows by one at every change.
//! This module owns the layout; it does no I/O and holds no plaintext key.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use super::ZoneId;
use crate::cipher::{hkdf_sha256, sha256, SHA256_LEN};
use crate::codec::{open_checksummed, put_bytes16, seal_checksummed, start_checksummed};
use crate::provider::{EncryptionContext, KeyRef, WrappedKey};
use crate::secret::SecretKey;
use crate::stream::Params;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CMEK-ZMF";
const WHAT: &str = "zone manifest";
const MAX_NAME: usize = 256;
const MAX_KEY_ID: usize = 2048;
const MAX_WRAPPED: usize = 4096;
const MAC_LABEL: &[u8] = b"cmek.zone.manifest.v3";
/// Length of the manifest's authentication tag.
const TAG_LEN: usize = 32;
/// EZK versions one manifest may hold; rotation past it needs a retirement.
pub const MAX_EZK_VERSIONS: usize = 4096;
/// The largest manifest file a zone reads: `MAX_EZK_VERSIONS` records of the
/// largest wrapped key, with room for the fixed fields.
pub(crate) const MAX_MANIFEST_LEN: u64 = (MAX_EZK_VERSIONS as u64) * (4 + 8 + 8 + 2 + 4096) + 16384;

/// The manifest layouts this release reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// Version 1: unauthenticated, no body zone id (read only).
    V1,
    /// Version 2: version 1 with a body zone id (read only).
    V2,
    /// Version 3: authenticated by a MAC under the active EZK; written.
    V3,
}

impl ManifestFormat {
    fn from_u16(version: u16) -> Option<Self> {
        match version {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            3 => Some(Self::V3),
            _ => None,
        }
    }

    fn as_u16(self) -> u16 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }

    /// True for the formats that carry a MAC.
    pub fn is_authenticated(self) -> bool {
        self == Self::V3
    }
}

/// One EZK version as persisted: wrapped by the root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EzkRecord {
    /// When the version was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// The EZK wrapped by the root key.
    pub wrapped: WrappedKey,
    /// DEK wraps reserved under this EZK by every process that wrote
    /// through the zone: never less than the wraps performed, so the
    /// random-nonce limit holds across restarts and nodes.
    pub wraps_reserved: u64,
}

/// How a parsed manifest can be authenticated once its EZKs are unwrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ManifestSeal {
    /// A version 1 or 2 file: nothing to check it with.
    Legacy(ManifestFormat),
    /// A version 3 file: its tag and the digest of the bytes it covers.
    Mac {
        digest: [u8; SHA256_LEN],
        tag: [u8; TAG_LEN],
    },
}

impl ManifestSeal {
    /// True for a version 3 file.
    pub(crate) fn is_authenticated(&self) -> bool {
        matches!(self, ManifestSeal::Mac { .. })
    }

    /// The refusal of a legacy file by [`open_zone`](super::Keyring::open_zone),
    /// without a key: `None` for an authenticated one.
    pub(crate) fn legacy_refusal(&self) -> Option<Error> {
        match self {
            ManifestSeal::Legacy(format) => Some(legacy_refusal(*format)),
            ManifestSeal::Mac { .. } => None,
        }
    }

    /// Checks the tag with the unwrapped active EZK of `manifest`.
    ///
    /// # Errors
    /// [`Error::Integrity`] if the tag does not match;
    /// [`Error::StateRejected`] for a legacy (unauthenticated) file.
    pub(crate) fn verify(&self, manifest: &ZoneManifest, active_ezk: &SecretKey) -> Result<()> {
        match self {
            ManifestSeal::Legacy(format) => Err(legacy_refusal(*format)),
            ManifestSeal::Mac { digest, tag } => {
                let expected = mac_tag(&manifest.zone_id, active_ezk, digest)?;
                if bool::from(expected.ct_eq(tag)) {
                    Ok(())
                } else {
                    Err(Error::tampered(
                        "zone manifest (its fields were changed after it was written)",
                    ))
                }
            }
        }
    }
}

fn legacy_refusal(format: ManifestFormat) -> Error {
    Error::StateRejected {
        what: WHAT,
        reason: crate::StateRejection::Mismatch(format!(
            "version {} manifests are not authenticated; adopt the zone once with \
             Keyring::adopt_legacy_zone (cmek zone adopt) to rewrite it as version 3",
            format.as_u16()
        )),
    }
}

fn mac_tag(
    zone_id: &ZoneId,
    active_ezk: &SecretKey,
    digest: &[u8; SHA256_LEN],
) -> Result<[u8; TAG_LEN]> {
    let mut info = Vec::with_capacity(MAC_LABEL.len() + SHA256_LEN);
    info.extend_from_slice(MAC_LABEL);
    info.extend_from_slice(digest);
    let mut tag = [0u8; TAG_LEN];
    hkdf_sha256(
        active_ezk.expose_secret(),
        zone_id.as_bytes(),
        &info,
        &mut tag,
    )?;
    Ok(tag)
}

/// A zone's persisted state: its id, name, region, root key, stream
/// parameters and every EZK version wrapped by the root key (layout in
/// `docs/FORMAT.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneManifest {
    pub(crate) zone_id: ZoneId,
    /// The zone id segment bodies are bound to; equal to `zone_id` except
    /// in a zone restored by rewrapping (see the module docs).
    pub(crate) body_zone_id: ZoneId,
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) root: KeyRef,
    /// The name the zone's creator gave the root key when it differs from
    /// `root` (an alias resolved at creation), for display only.
    pub(crate) root_alias: Option<String>,
    pub(crate) chunk_size: u32,
    pub(crate) active: u32,
    pub(crate) generation: u64,
    pub(crate) created_unix: u64,
    pub(crate) updated_unix: u64,
    pub(crate) ezks: BTreeMap<u32, EzkRecord>,
    /// The exact bytes this manifest was parsed from or sealed into.
    pub(crate) sealed: SealedBytes,
}

/// A manifest's stored bytes, carried with it so that it can be copied
/// (into a backup) without the key that seals it. Not part of the value:
/// two manifests with the same fields are equal however they were stored.
#[derive(Clone, Debug, Default)]
pub(crate) struct SealedBytes(pub(crate) Option<std::sync::Arc<[u8]>>);

impl PartialEq for SealedBytes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for SealedBytes {}

impl ZoneManifest {
    /// The manifest's bytes as stored, when it was read from storage or
    /// taken from an open [`Zone`](super::Zone): what a backup copies.
    /// `None` for a manifest built in memory.
    pub fn stored_bytes(&self) -> Option<&[u8]> {
        self.sealed.0.as_deref()
    }

    /// The zone's id.
    pub fn zone_id(&self) -> ZoneId {
        self.zone_id
    }
    /// The zone id bound into the associated data of the zone's segment
    /// bodies: the zone's own id, except in a zone restored from a backup by
    /// rewrapping, whose bodies keep the backed-up zone's binding.
    pub fn body_zone_id(&self) -> ZoneId {
        self.body_zone_id
    }
    /// The zone's human-readable name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The region the zone lives in.
    pub fn region(&self) -> &str {
        &self.region
    }
    /// The root key every EZK version is wrapped by.
    pub fn root(&self) -> &KeyRef {
        &self.root
    }
    /// The name the root key was given at zone creation when it was an
    /// alias (`root` is then the key it pointed to). For display and for
    /// noticing that the alias now points elsewhere; never used to wrap.
    pub fn root_alias(&self) -> Option<&str> {
        self.root_alias.as_deref()
    }
    /// True if `key` is what the zone's root was named when it was created
    /// or last rotated: the root itself, or the alias it was resolved from
    /// (same provider and region).
    pub fn was_created_under(&self, key: &KeyRef) -> bool {
        self.root == *key
            || (self.root_alias.as_deref() == Some(key.key_id())
                && self.root.provider() == key.provider()
                && self.root.region() == key.region())
    }
    /// The stream parameters new segments use.
    pub fn stream_params(&self) -> Params {
        Params::new(self.chunk_size as usize).expect("checked when built or parsed")
    }
    /// The EZK version new segments use.
    pub fn active_version(&self) -> u32 {
        self.active
    }
    /// The newest EZK version the zone has: the active one, since a rotation
    /// always adds a newer version and makes it active.
    pub fn newest_version(&self) -> u32 {
        self.ezks
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.active)
            .max(self.active)
    }
    /// Incremented at every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// Creation time, seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }
    /// Time of the last change, seconds since the Unix epoch.
    pub fn updated_unix(&self) -> u64 {
        self.updated_unix
    }
    /// Every EZK version, in version order.
    pub fn ezk_versions(&self) -> impl Iterator<Item = (u32, &EzkRecord)> {
        self.ezks.iter().map(|(v, r)| (*v, r))
    }

    /// The encryption context EZK `version` of zone `zone_id` is wrapped with.
    pub fn ezk_context(zone_id: &ZoneId, version: u32) -> EncryptionContext {
        EncryptionContext::new()
            .with("cmek:zone", zone_id.to_string())
            .with("cmek:purpose", "ezk")
            .with("cmek:ezk-version", version.to_string())
    }

    /// Serializes the manifest as version 3, authenticated with
    /// `active_ezk`, the unwrapped EZK of the active version.
    pub(crate) fn seal(&self, active_ezk: &SecretKey) -> Result<Vec<u8>> {
        let mut out = self.body(ManifestFormat::V3);
        let digest = sha256(&[&out]);
        out.extend_from_slice(&mac_tag(&self.zone_id, active_ezk, &digest)?);
        seal_checksummed(&mut out);
        Ok(out)
    }

    /// Serializes the manifest in a legacy unauthenticated layout (version 1
    /// or 2, whichever holds its body zone id), as older releases wrote it:
    /// for tests of adoption and for known-answer files.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn to_legacy_bytes(&self) -> Vec<u8> {
        let format = if self.body_zone_id == self.zone_id {
            ManifestFormat::V1
        } else {
            ManifestFormat::V2
        };
        let mut out = self.body(format);
        seal_checksummed(&mut out);
        out
    }

    /// Every field before the tag, in `format`'s layout.
    fn body(&self, format: ManifestFormat) -> Vec<u8> {
        let v3 = format == ManifestFormat::V3;
        let mut out = start_checksummed(MAGIC, format.as_u16());
        out.extend_from_slice(self.zone_id.as_bytes());
        if v3 || format == ManifestFormat::V2 {
            out.extend_from_slice(self.body_zone_id.as_bytes());
        }
        out.extend_from_slice(&self.generation.to_be_bytes());
        out.extend_from_slice(&self.created_unix.to_be_bytes());
        out.extend_from_slice(&self.updated_unix.to_be_bytes());
        for s in [
            self.name.as_str(),
            &self.region,
            self.root.provider(),
            self.root.key_id(),
            self.root.region(),
        ] {
            put_bytes16(&mut out, s.as_bytes());
        }
        if v3 {
            put_bytes16(
                &mut out,
                self.root_alias.as_deref().unwrap_or("").as_bytes(),
            );
        }
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&(self.ezks.len() as u32).to_be_bytes());
        for (version, record) in &self.ezks {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&record.created_unix.to_be_bytes());
            if v3 {
                out.extend_from_slice(&record.wraps_reserved.to_be_bytes());
            }
            put_bytes16(&mut out, record.wrapped.as_bytes());
        }
        out
    }

    /// Parses and checks a manifest of any readable version, without
    /// authenticating it (that needs the unwrapped EZK): for inspection.
    /// Opening a zone authenticates it.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a truncated, corrupted (checksum), foreign or
    /// unknown-version file, or one whose fields are inconsistent.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::parse_sealed(bytes).map(|(manifest, _)| manifest)
    }

    /// The layout version of a manifest file, from its first bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a file that is not a manifest or has an
    /// unknown version.
    pub fn format_of(bytes: &[u8]) -> Result<ManifestFormat> {
        let version = crate::codec::declared_version(bytes, MAGIC, WHAT)?;
        ManifestFormat::from_u16(version)
            .ok_or_else(|| crate::codec::unsupported_version(WHAT, version))
    }

    /// Parses a manifest and returns what authenticates it.
    pub(crate) fn parse_sealed(bytes: &[u8]) -> Result<(Self, ManifestSeal)> {
        let format = Self::format_of(bytes)?;
        let v3 = format == ManifestFormat::V3;
        let mut r = open_checksummed(bytes, MAGIC, format.as_u16(), WHAT)?;
        let zone_id = ZoneId::from_bytes(r.array()?);
        let body_zone_id = match format {
            ManifestFormat::V1 => zone_id,
            ManifestFormat::V2 => {
                let body = ZoneId::from_bytes(r.array()?);
                if body == zone_id {
                    return Err(Error::malformed(
                        WHAT,
                        "version 2 with a body zone id equal to the zone id",
                    ));
                }
                body
            }
            ManifestFormat::V3 => ZoneId::from_bytes(r.array()?),
        };
        let generation = r.u64()?;
        let created_unix = r.u64()?;
        let updated_unix = r.u64()?;
        let name = r.str("name", MAX_NAME)?;
        let region = r.str("region", MAX_NAME)?;
        let root = KeyRef::new(
            r.str("root provider", MAX_NAME)?,
            r.str("root key id", MAX_KEY_ID)?,
            r.str("root region", MAX_NAME)?,
        );
        let root_alias = if v3 {
            let alias = r.bytes16("root alias", MAX_KEY_ID)?;
            let alias = std::str::from_utf8(alias)
                .map_err(|_| Error::malformed(WHAT, "root alias is not UTF-8"))?;
            Some(alias.to_owned()).filter(|a| !a.is_empty())
        } else {
            None
        };
        let chunk_size = r.u32()?;
        let active = r.u32()?;
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_EZK_VERSIONS {
            return Err(Error::malformed(WHAT, format!("{count} EZK versions")));
        }
        let mut ezks = BTreeMap::new();
        for _ in 0..count {
            let version = r.u32()?;
            let created_unix = r.u64()?;
            let wraps_reserved = if v3 { r.u64()? } else { 0 };
            let wrapped = r.bytes16("wrapped EZK", MAX_WRAPPED)?;
            if wrapped.is_empty() {
                return Err(Error::malformed(WHAT, "empty wrapped EZK"));
            }
            let record = EzkRecord {
                created_unix,
                wrapped: WrappedKey::from_bytes(wrapped.to_vec()),
                wraps_reserved,
            };
            if ezks.insert(version, record).is_some() {
                return Err(Error::malformed(
                    WHAT,
                    format!("EZK version {version} twice"),
                ));
            }
        }
        let seal = if v3 {
            // The tag covers every byte before it: the whole file but the
            // tag and the checksum.
            let covered = bytes.len() - TAG_LEN - SHA256_LEN;
            let tag: [u8; TAG_LEN] = r.array()?;
            ManifestSeal::Mac {
                digest: sha256(&[&bytes[..covered]]),
                tag,
            }
        } else {
            ManifestSeal::Legacy(format)
        };
        r.finish()?;
        if !ezks.contains_key(&active) {
            return Err(Error::malformed(
                WHAT,
                format!("active EZK version {active} is missing"),
            ));
        }
        if ezks.keys().next_back() != Some(&active) {
            return Err(Error::malformed(
                WHAT,
                format!("active EZK version {active} is not the newest"),
            ));
        }
        if Params::new(chunk_size as usize).is_err() {
            return Err(Error::malformed(WHAT, format!("chunk size {chunk_size}")));
        }
        let manifest = Self {
            zone_id,
            body_zone_id,
            name,
            region,
            root,
            root_alias,
            chunk_size,
            active,
            generation,
            created_unix,
            updated_unix,
            ezks,
            sealed: SealedBytes(Some(bytes.into())),
        };
        Ok((manifest, seal))
    }

    /// Checks fields a caller supplied before they are persisted.
    pub(crate) fn check_new(name: &str, region: &str, root: &KeyRef) -> Result<()> {
        let ok = |s: &str, max: usize| !s.is_empty() && s.len() <= max;
        if !ok(name, MAX_NAME) || !ok(region, MAX_NAME) {
            return Err(Error::InvalidArgument(format!(
                "zone name and region must be 1 to {MAX_NAME} bytes"
            )));
        }
        if !ok(root.provider(), MAX_NAME)
            || !ok(root.key_id(), MAX_KEY_ID)
            || !ok(root.region(), MAX_NAME)
        {
            return Err(Error::InvalidArgument(format!(
                "root key reference {root} is out of range"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_array(&mut [b; 32])
    }

    pub(crate) fn sample() -> ZoneManifest {
        let mut ezks = BTreeMap::new();
        for v in [1, 2] {
            ezks.insert(
                v,
                EzkRecord {
                    created_unix: 1_700_000_000 + u64::from(v),
                    wrapped: WrappedKey::from_bytes(vec![v as u8; 61]),
                    wraps_reserved: u64::from(v) << 16,
                },
            );
        }
        ZoneManifest {
            zone_id: ZoneId::from_bytes([3; 16]),
            body_zone_id: ZoneId::from_bytes([3; 16]),
            name: "orders".into(),
            region: "eu-west-1".into(),
            root: KeyRef::new(
                "aws-kms",
                "arn:aws:kms:eu-west-1:111122223333:key/k",
                "eu-west-1",
            ),
            root_alias: Some("alias/orders".into()),
            chunk_size: 65536,
            active: 2,
            generation: 5,
            created_unix: 1_700_000_000,
            updated_unix: 1_700_000_100,
            ezks,
            sealed: SealedBytes::default(),
        }
    }

    #[test]
    fn version_3_round_trips_and_verifies_under_its_ezk_only() {
        let m = sample();
        let bytes = m.seal(&key(9)).unwrap();
        assert_eq!(&bytes[8..10], &[0, 3]);
        let (back, seal) = ZoneManifest::parse_sealed(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.stored_bytes(), Some(&bytes[..]));
        assert_eq!(back.root_alias(), Some("alias/orders"));
        seal.verify(&back, &key(9)).unwrap();
        assert!(matches!(
            seal.verify(&back, &key(8)).unwrap_err(),
            Error::Integrity { .. }
        ));
        // The tag is bound to the zone id too (its HKDF salt).
        let mut other = back.clone();
        other.zone_id = ZoneId::from_bytes([4; 16]);
        assert!(seal.verify(&other, &key(9)).is_err());
    }

    #[test]
    fn an_edited_field_with_a_fixed_checksum_fails_the_tag() {
        // The storage attacker's edit: change a field, recompute the plain
        // checksum (anyone can), keep the old tag.
        let good = sample().seal(&key(9)).unwrap();
        for (what, edit) in [
            ("generation", 42usize),
            (
                "root key id",
                10 + 16 + 16 + 24 + 2 + 6 + 2 + 9 + 2 + 7 + 2 + 5,
            ),
        ] {
            let mut bad = good[..good.len() - SHA256_LEN].to_vec();
            bad[edit] ^= 0x01;
            seal_checksummed(&mut bad);
            let (m, seal) = ZoneManifest::parse_sealed(&bad).unwrap();
            assert!(
                matches!(seal.verify(&m, &key(9)), Err(Error::Integrity { .. })),
                "{what}"
            );
        }
    }

    #[test]
    fn legacy_versions_parse_and_are_not_authenticated() {
        let mut m = sample();
        m.root_alias = None;
        for record in m.ezks.values_mut() {
            record.wraps_reserved = 0;
        }
        let v1 = m.to_legacy_bytes();
        assert_eq!(&v1[8..10], &[0, 1]);
        let (back, seal) = ZoneManifest::parse_sealed(&v1).unwrap();
        assert_eq!(back, m);
        assert_eq!(seal, ManifestSeal::Legacy(ManifestFormat::V1));
        assert!(matches!(
            seal.verify(&back, &key(9)),
            Err(Error::StateRejected { .. })
        ));
        assert_eq!(ZoneManifest::format_of(&v1).unwrap(), ManifestFormat::V1);

        m.body_zone_id = ZoneId::from_bytes([4; 16]);
        let v2 = m.to_legacy_bytes();
        assert_eq!(&v2[8..10], &[0, 2]);
        assert_eq!(&v2[10..26], &[3; 16], "zone id first");
        assert_eq!(&v2[26..42], &[4; 16], "then the body zone id");
        assert_eq!(ZoneManifest::parse(&v2).unwrap(), m);

        // A version 2 file that repeats the zone id is not canonical.
        let mut body: Vec<u8> = v2[..v2.len() - 32].to_vec();
        body[26..42].copy_from_slice(&[3; 16]);
        seal_checksummed(&mut body);
        let err = ZoneManifest::parse(&body).unwrap_err();
        assert!(err.to_string().contains("body zone id equal"), "{err}");
        // Unknown versions stay refused.
        let mut v4 = v2[..v2.len() - 32].to_vec();
        v4[9] = 4;
        seal_checksummed(&mut v4);
        let err = ZoneManifest::parse(&v4).unwrap_err();
        assert!(err.to_string().contains("unsupported version 4"), "{err}");
    }

    #[test]
    fn every_bit_flip_and_truncation_is_malformed() {
        let mut legacy = sample();
        legacy.root_alias = None;
        for good in [sample().seal(&key(9)).unwrap(), legacy.to_legacy_bytes()] {
            for i in 0..good.len() {
                let mut bad = good.clone();
                bad[i] ^= 0x10;
                assert!(
                    matches!(
                        ZoneManifest::parse(&bad).unwrap_err(),
                        Error::Malformed { .. }
                    ),
                    "byte {i}"
                );
            }
            for len in 0..good.len() {
                assert!(
                    matches!(
                        ZoneManifest::parse(&good[..len]).unwrap_err(),
                        Error::Malformed { .. }
                    ),
                    "len {len}"
                );
            }
        }
    }

    #[test]
    fn inconsistent_fields_are_refused_even_with_a_valid_checksum() {
        let mut m = sample();
        m.active = 9;
        let err = ZoneManifest::parse(&m.seal(&key(1)).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("active EZK version 9 is missing"),
            "{err}"
        );
        let mut m = sample();
        m.active = 1;
        let err = ZoneManifest::parse(&m.seal(&key(1)).unwrap()).unwrap_err();
        assert!(err.to_string().contains("is not the newest"), "{err}");
        let mut m = sample();
        m.chunk_size = 10;
        assert!(ZoneManifest::parse(&m.seal(&key(1)).unwrap()).is_err());
        let err = ZoneManifest::parse(b"CMEK-LKF\x00\x01 some other cmek file").unwrap_err();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[test]
    fn ezk_context_names_zone_purpose_and_version() {
        let z = ZoneId::from_bytes([0xab; 16]);
        let c = ZoneManifest::ezk_context(&z, 7);
        assert_eq!(c.get("cmek:zone"), Some(&*z.to_string()));
        assert_eq!(c.get("cmek:ezk-version"), Some("7"));
        assert_ne!(c, ZoneManifest::ezk_context(&z, 8));
    }

    /// Pins the version 3 layout and tag: `docs/FORMAT.md` shows these
    /// bytes.
    #[test]
    fn version_3_known_answer() {
        let mut m = sample();
        m.ezks.remove(&1);
        m.root = KeyRef::new("local", "root-1", "local");
        m.root_alias = None;
        m.chunk_size = 4096;
        m.region = "local".into();
        let bytes = m.seal(&key(0x11)).unwrap();
        let hex = hex::encode(&bytes);
        assert_eq!(hex, KNOWN_V3, "{hex}");
    }

    /// The tag recomputed with another library's HMAC-SHA256 (ring), as
    /// HKDF-Extract then one block of HKDF-Expand: the construction
    /// `docs/FORMAT.md` describes, not only this crate's code.
    #[test]
    fn version_3_tag_matches_an_independent_hmac() {
        let bytes = hex::decode(KNOWN_V3).unwrap();
        let (body, rest) = bytes.split_at(bytes.len() - 64);
        let prk = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[3; 16]),
            &[0x11; 32],
        );
        let mut info = MAC_LABEL.to_vec();
        info.extend_from_slice(&sha256(&[body]));
        info.push(1);
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, prk.as_ref()),
            &info,
        );
        assert_eq!(tag.as_ref(), &rest[..32]);
    }

    const KNOWN_V3: &str = "434d454b2d5a4d46000303030303030303030303030303030303030303030303030303030303030303030000000000000005000000006553f100000000006553f16400066f726465727300056c6f63616c00056c6f63616c0006726f6f742d3100056c6f63616c000000001000000000020000000100000002000000006553f1020000000000020000003d0202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020290d97438c91bf406de445757eabccecffb7447dba46ddea616b8f87dd3de84fe3a7578dda5779d21b7e48f4d05a3bd3ae81581579df0a9e36ad4b726e8b2cc95";
}
