//! The registry's persisted state and its layout (version 2, written; and
//! version 1, read):
//!
//! ```text
//! magic "CMEK-REG" (8) ‖ u16be version = 2
//! u32be key count ‖ per key: str provider ‖ str key id ‖ str key region ‖
//!     u64be added ‖ u16be region count ‖ region count × str region
//! u32be zone count ‖ per zone: zone id (16) ‖ str name ‖ str region ‖
//!     str key provider ‖ str key id ‖ str key region ‖ u64be generation
//! SHA-256 of every preceding byte (32)
//! ```
//!
//! Version 1 has no per-zone generation (read as 0: the zone's next open
//! records it). The generation is the newest zone manifest generation the
//! registry saw: the [`ZoneAnchor`](crate::zone::ZoneAnchor) a zone is
//! opened with.
//!
//! `str` is `u16be(len) ‖ UTF-8`. This module owns the layout; no I/O.

use std::collections::BTreeMap;

use super::KeyMap;
use crate::codec::{
    open_checksummed, put_bytes16, seal_checksummed, start_checksummed, ByteReader,
};
use crate::provider::KeyRef;
use crate::zone::ZoneId;
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"CMEK-REG";
const VERSION: u16 = 2;
const VERSION_1: u16 = 1;
const WHAT: &str = "key registry state";
const MAX_STR: usize = 2048;
const MAX_ITEMS: usize = 1 << 16;

/// A root key in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKey {
    /// The key.
    pub key: KeyRef,
    /// The regions it serves: its own, and its replicas' for a multi-region
    /// key; sorted.
    pub regions: Vec<String>,
    /// When it was added, seconds since the Unix epoch.
    pub added_unix: u64,
}

/// A zone in the registry, and the key it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredZone {
    /// The zone's id.
    pub zone_id: ZoneId,
    /// Its name.
    pub name: String,
    /// Its region.
    pub region: String,
    /// The root key it uses.
    pub key: KeyRef,
    /// The newest manifest generation seen for the zone (0: never recorded).
    pub generation: u64,
}

impl RegisteredZone {
    /// What the zone must be opened with: its id, root key and the newest
    /// generation recorded.
    pub fn anchor(&self) -> crate::zone::ZoneAnchor {
        crate::zone::ZoneAnchor::new(self.zone_id, self.key.clone(), self.generation)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RegistryState {
    pub(crate) keys: KeyMap,
    pub(crate) zones: BTreeMap<ZoneId, RegisteredZone>,
}

fn put_key_ref(out: &mut Vec<u8>, key: &KeyRef) {
    for s in [key.provider(), key.key_id(), key.region()] {
        put_bytes16(out, s.as_bytes());
    }
}

fn read_key_ref(r: &mut ByteReader<'_>) -> Result<KeyRef> {
    Ok(KeyRef::new(
        r.str("key provider", MAX_STR)?,
        r.str("key id", MAX_STR)?,
        r.str("key region", MAX_STR)?,
    ))
}

impl RegistryState {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = start_checksummed(MAGIC, VERSION);
        out.extend_from_slice(&(self.keys.len() as u32).to_be_bytes());
        for k in self.keys.values() {
            put_key_ref(&mut out, &k.key);
            out.extend_from_slice(&k.added_unix.to_be_bytes());
            out.extend_from_slice(&(k.regions.len() as u16).to_be_bytes());
            for region in &k.regions {
                put_bytes16(&mut out, region.as_bytes());
            }
        }
        out.extend_from_slice(&(self.zones.len() as u32).to_be_bytes());
        for z in self.zones.values() {
            out.extend_from_slice(z.zone_id.as_bytes());
            put_bytes16(&mut out, z.name.as_bytes());
            put_bytes16(&mut out, z.region.as_bytes());
            put_key_ref(&mut out, &z.key);
            out.extend_from_slice(&z.generation.to_be_bytes());
        }
        seal_checksummed(&mut out);
        out
    }

    pub(crate) fn parse(bytes: &[u8]) -> Result<Self> {
        let version = match bytes.get(8..10) {
            Some(&[a, b]) if u16::from_be_bytes([a, b]) == VERSION_1 => VERSION_1,
            _ => VERSION,
        };
        let mut r = open_checksummed(bytes, MAGIC, version, WHAT)?;
        let mut state = Self::default();
        let keys = r.u32()? as usize;
        if keys > MAX_ITEMS {
            return Err(Error::malformed(WHAT, format!("{keys} keys")));
        }
        for _ in 0..keys {
            let key = read_key_ref(&mut r)?;
            let added_unix = r.u64()?;
            let n = usize::from(r.u16()?);
            let regions = (0..n)
                .map(|_| r.str("region", MAX_STR))
                .collect::<Result<Vec<_>>>()?;
            if !regions.iter().any(|x| x == key.region()) {
                return Err(Error::malformed(
                    WHAT,
                    format!("key {key} does not serve its own region"),
                ));
            }
            let entry = RegisteredKey {
                key: key.clone(),
                regions,
                added_unix,
            };
            if state.keys.insert(key.clone(), entry).is_some() {
                return Err(Error::malformed(WHAT, format!("key {key} twice")));
            }
        }
        let zones = r.u32()? as usize;
        if zones > MAX_ITEMS {
            return Err(Error::malformed(WHAT, format!("{zones} zones")));
        }
        for _ in 0..zones {
            let zone_id = ZoneId::from_bytes(r.array()?);
            let zone = RegisteredZone {
                zone_id,
                name: r.str("zone name", MAX_STR)?,
                region: r.str("zone region", MAX_STR)?,
                key: read_key_ref(&mut r)?,
                generation: if version == VERSION_1 { 0 } else { r.u64()? },
            };
            if !state.keys.contains_key(&zone.key) {
                return Err(Error::malformed(
                    WHAT,
                    format!("zone {zone_id} uses an unregistered key"),
                ));
            }
            if state.zones.insert(zone_id, zone).is_some() {
                return Err(Error::malformed(WHAT, format!("zone {zone_id} twice")));
            }
        }
        r.finish()?;
        Ok(state)
    }
}
