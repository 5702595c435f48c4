//! The zone manifest: what must persist for a zone to open.
//!
//! Layout, version 1 (big-endian; `str` is `u16be(len) ‖ UTF-8`, `bytes` is
//! `u16be(len) ‖ bytes`):
//!
//! ```text
//! magic "CMEK-ZMF" (8) ‖ u16be version = 1
//! zone id (16) ‖ u64be generation ‖ u64be created ‖ u64be updated
//! str name ‖ str region
//! str root provider ‖ str root key id ‖ str root region
//! u32be stream segment size ‖ u32be active EZK version
//! u32be count ‖ count × (u32be version ‖ u64be created ‖ bytes wrapped EZK)
//! SHA-256 of every preceding byte (32)
//! ```
//!
//! Version 2 is version 1 with a **body zone id** (16 bytes) right after the
//! zone id: the zone id bound into the associated data of the zone's segment
//! bodies when it is not the zone's own id. Only a zone restored from a
//! backup by rewrapping has one (its bodies were copied untouched from the
//! backed-up zone, so they stay bound to that zone's body zone id); every
//! other manifest is written as version 1, so a version 2 manifest whose
//! body zone id equals its zone id is refused.
//!
//! Every EZK version is wrapped by the root key with the encryption context
//! `{cmek:zone = zone id, cmek:purpose = ezk, cmek:ezk-version = N}`, so a
//! wrapped EZK moved into another zone's manifest, or to another version
//! number, does not unwrap. The generation grows by one at every change.
//! This module owns the layout; it does no I/O and holds no plaintext key.

use std::collections::BTreeMap;

use super::ZoneId;
use crate::codec::{open_checksummed, put_bytes16, seal_checksummed, start_checksummed};
use crate::provider::{EncryptionContext, KeyRef, WrappedKey};
use crate::stream::Params;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CMEK-ZMF";
const FORMAT_VERSION: u16 = 1;
/// The version that carries a body zone id.
const FORMAT_VERSION_BODY_ZONE: u16 = 2;
const WHAT: &str = "zone manifest";
const MAX_NAME: usize = 256;
const MAX_KEY_ID: usize = 2048;
const MAX_WRAPPED: usize = 4096;
/// EZK versions one manifest may hold; rotation past it needs a retirement.
pub const MAX_EZK_VERSIONS: usize = 4096;

/// One EZK version as persisted: wrapped by the zone's root key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EzkRecord {
    /// When the version was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// The EZK wrapped by the root key.
    pub wrapped: WrappedKey,
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
    pub(crate) segment_size: u32,
    pub(crate) active: u32,
    pub(crate) generation: u64,
    pub(crate) created_unix: u64,
    pub(crate) updated_unix: u64,
    pub(crate) ezks: BTreeMap<u32, EzkRecord>,
}

impl ZoneManifest {
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
    /// The stream parameters new segments use.
    pub fn stream_params(&self) -> Params {
        Params::new(self.segment_size as usize).expect("checked when built or parsed")
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

    /// Serializes the manifest.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Version 1 whenever it suffices, so zones that never were restored
        // by rewrapping stay readable by releases that know only version 1.
        let own_body_zone = self.body_zone_id == self.zone_id;
        let version = if own_body_zone {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_BODY_ZONE
        };
        let mut out = start_checksummed(MAGIC, version);
        out.extend_from_slice(self.zone_id.as_bytes());
        if !own_body_zone {
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
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&(self.ezks.len() as u32).to_be_bytes());
        for (version, record) in &self.ezks {
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&record.created_unix.to_be_bytes());
            put_bytes16(&mut out, record.wrapped.as_bytes());
        }
        seal_checksummed(&mut out);
        out
    }

    /// Parses and checks a manifest.
    ///
    /// # Errors
    /// [`Error::Malformed`] for a truncated, corrupted (checksum), foreign or
    /// unknown-version file, or one whose fields are inconsistent.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        // The frame check below refuses any version but the one named here;
        // peek at it so that both known versions get there.
        let version = match bytes.get(8..10) {
            Some(&[a, b]) if u16::from_be_bytes([a, b]) == FORMAT_VERSION_BODY_ZONE => {
                FORMAT_VERSION_BODY_ZONE
            }
            _ => FORMAT_VERSION,
        };
        let mut r = open_checksummed(bytes, MAGIC, version, WHAT)?;
        let zone_id = ZoneId::from_bytes(r.array()?);
        let body_zone_id = if version == FORMAT_VERSION_BODY_ZONE {
            let body = ZoneId::from_bytes(r.array()?);
            if body == zone_id {
                return Err(Error::malformed(
                    WHAT,
                    "version 2 with a body zone id equal to the zone id",
                ));
            }
            body
        } else {
            zone_id
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
        let segment_size = r.u32()?;
        let active = r.u32()?;
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_EZK_VERSIONS {
            return Err(Error::malformed(WHAT, format!("{count} EZK versions")));
        }
        let mut ezks = BTreeMap::new();
        for _ in 0..count {
            let version = r.u32()?;
            let created_unix = r.u64()?;
            let wrapped = r.bytes16("wrapped EZK", MAX_WRAPPED)?;
            if wrapped.is_empty() {
                return Err(Error::malformed(WHAT, "empty wrapped EZK"));
            }
            let record = EzkRecord {
                created_unix,
                wrapped: WrappedKey::from_bytes(wrapped.to_vec()),
            };
            if ezks.insert(version, record).is_some() {
                return Err(Error::malformed(
                    WHAT,
                    format!("EZK version {version} twice"),
                ));
            }
        }
        r.finish()?;
        if !ezks.contains_key(&active) {
            return Err(Error::malformed(
                WHAT,
                format!("active EZK version {active} is missing"),
            ));
        }
        if Params::new(segment_size as usize).is_err() {
            return Err(Error::malformed(
                WHAT,
                format!("stream segment size {segment_size}"),
            ));
        }
        Ok(Self {
            zone_id,
            body_zone_id,
            name,
            region,
            root,
            root_alias: None,
            segment_size,
            active,
            generation,
            created_unix,
            updated_unix,
            ezks,
        })
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

    pub(crate) fn sample() -> ZoneManifest {
        let mut ezks = BTreeMap::new();
        for v in [1, 2] {
            ezks.insert(
                v,
                EzkRecord {
                    created_unix: 1_700_000_000 + u64::from(v),
                    wrapped: WrappedKey::from_bytes(vec![v as u8; 61]),
                },
            );
        }
        ZoneManifest {
            zone_id: ZoneId::from_bytes([3; 16]),
            body_zone_id: ZoneId::from_bytes([3; 16]),
            name: "orders".into(),
            region: "eu-west-1".into(),
            root: KeyRef::new("local", "root-1", "eu-west-1"),
            root_alias: None,
            segment_size: 65536,
            active: 2,
            generation: 5,
            created_unix: 1_700_000_000,
            updated_unix: 1_700_000_100,
            ezks,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(ZoneManifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn body_zone_id_needs_version_2_and_only_then() {
        let own = sample().to_bytes();
        assert_eq!(&own[8..10], &[0, 1], "a zone's own binding stays version 1");
        let mut m = sample();
        m.body_zone_id = ZoneId::from_bytes([4; 16]);
        let bytes = m.to_bytes();
        assert_eq!(&bytes[8..10], &[0, 2]);
        assert_eq!(&bytes[10..26], &[3; 16], "zone id first");
        assert_eq!(&bytes[26..42], &[4; 16], "then the body zone id");
        assert_eq!(bytes.len(), own.len() + 16);
        let back = ZoneManifest::parse(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.body_zone_id(), ZoneId::from_bytes([4; 16]));
        assert_eq!(
            ZoneManifest::parse(&own).unwrap().body_zone_id(),
            ZoneId::from_bytes([3; 16])
        );

        // A version 2 file that repeats the zone id is not canonical.
        let mut body: Vec<u8> = bytes[..bytes.len() - 32].to_vec();
        body[26..42].copy_from_slice(&[3; 16]);
        crate::codec::seal_checksummed(&mut body);
        let err = ZoneManifest::parse(&body).unwrap_err();
        assert!(err.to_string().contains("body zone id equal"), "{err}");
        // Unknown versions stay refused.
        let mut v3 = bytes[..bytes.len() - 32].to_vec();
        v3[9] = 3;
        crate::codec::seal_checksummed(&mut v3);
        let err = ZoneManifest::parse(&v3).unwrap_err();
        assert!(err.to_string().contains("unsupported version 3"), "{err}");
    }

    #[test]
    fn every_bit_flip_and_truncation_is_malformed() {
        let mut restored = sample();
        restored.body_zone_id = ZoneId::from_bytes([4; 16]);
        for good in [sample().to_bytes(), restored.to_bytes()] {
            flips_and_truncations_are_malformed(&good);
        }
    }

    fn flips_and_truncations_are_malformed(good: &[u8]) {
        for i in 0..good.len() {
            let mut bad = good.to_vec();
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

    #[test]
    fn inconsistent_fields_are_refused_even_with_a_valid_checksum() {
        let mut m = sample();
        m.active = 9;
        let err = ZoneManifest::parse(&m.to_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("active EZK version 9 is missing"),
            "{err}"
        );
        let mut m = sample();
        m.segment_size = 10;
        assert!(ZoneManifest::parse(&m.to_bytes()).is_err());
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
}
