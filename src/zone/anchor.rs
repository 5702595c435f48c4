//! The [`ZoneAnchor`]: what the opener of a zone knows independently of the
//! storage that holds the zone's manifest.
//!
//! A manifest is authenticated by its own EZK (see
//! [`ZoneManifest`](super::ZoneManifest)), which proves who wrote it but
//! not that it is the latest: every older manifest of the zone carries a
//! valid tag too. Whoever can write where the manifest lives could put back
//! one from before a root rotation (the zone would open under the old root,
//! which may still be enabled), from before a retirement (the retired EZK
//! would return), or another zone's under the same root. The anchor closes
//! that: opening checks the manifest against it before any provider call.
//!
//! Keep the anchor where the storage attacker cannot write, and update it
//! after every change the zone reports ([`Zone::watch_anchor`](super::Zone::watch_anchor)
//! tells of each, [`Zone::anchor`](super::Zone::anchor) reads it):
//! in the engine's own catalog or control plane, next to the KMS key ARN the
//! customer configured. The CLI keeps it in its key registry.

use std::fmt;
use std::str::FromStr;

use super::{ZoneId, ZoneManifest};
use crate::provider::KeyRef;
use crate::{Error, Result, StateRejection};

const TEXT_PREFIX: &str = "cmek-anchor-v1";

/// What a caller independently knows about a zone: its id, its root key and
/// the newest manifest generation it has seen.
///
/// A manifest is authenticated by its own EZK, which proves who wrote it but
/// not that it is the latest: every older manifest of the zone carries a
/// valid tag too. Whoever can write where the manifest lives could put back
/// one from before a root rotation, from before a retirement, or another
/// zone's under the same root. Opening checks the manifest against the
/// anchor before any provider call and refuses each of those with
/// [`Error::StateRejected`].
///
/// Keep the anchor where that storage attacker cannot write — the engine's
/// own catalog or control plane, next to the KMS key ARN the customer
/// configured — and update it after every change the zone reports
/// ([`Zone::watch_anchor`](super::Zone::watch_anchor)). Its [`Display`](fmt::Display)
/// form, which [`FromStr`] parses, is one line for that.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ZoneAnchor {
    zone_id: ZoneId,
    root: KeyRef,
    min_generation: u64,
}

impl ZoneAnchor {
    /// An anchor for zone `zone_id` under root key `root` that accepts
    /// manifests of generation `min_generation` or newer.
    ///
    /// A `min_generation` of 0 accepts every generation: the zone id and
    /// root still stop a swapped or re-rooted manifest, but not a rollback
    /// to an older state of the same zone under the same root (a retired
    /// EZK could come back). Pass the generation you last saw.
    pub fn new(zone_id: ZoneId, root: KeyRef, min_generation: u64) -> Self {
        Self {
            zone_id,
            root,
            min_generation,
        }
    }

    /// The zone's id.
    pub fn zone_id(&self) -> ZoneId {
        self.zone_id
    }

    /// The root key the zone's manifest must name.
    pub fn root(&self) -> &KeyRef {
        &self.root
    }

    /// The oldest manifest generation accepted.
    pub fn min_generation(&self) -> u64 {
        self.min_generation
    }

    /// Checks a parsed manifest against the anchor. Runs before any
    /// provider call: a refused manifest costs nothing and reveals nothing.
    ///
    /// # Errors
    /// [`Error::StateRejected`] with the reason: another zone, another root
    /// key, or an older generation.
    pub(crate) fn check(&self, manifest: &ZoneManifest) -> Result<()> {
        let reject = |reason| Error::StateRejected {
            what: "zone manifest",
            reason,
        };
        if manifest.zone_id != self.zone_id {
            return Err(reject(StateRejection::ForeignZone {
                expected: self.zone_id.to_string(),
                found: manifest.zone_id.to_string(),
            }));
        }
        if manifest.root != self.root {
            return Err(reject(StateRejection::UnexpectedRoot {
                expected: self.root.to_string(),
                found: manifest.root.to_string(),
            }));
        }
        if manifest.generation < self.min_generation {
            return Err(reject(StateRejection::Rollback {
                found: manifest.generation,
                minimum: self.min_generation,
            }));
        }
        Ok(())
    }
}

/// `cmek-anchor-v1:ZONE_ID:GENERATION:PROVIDER:REGION:KEY_ID` — one line an
/// engine can keep in its own metadata. The key id comes last because it
/// may hold colons (an ARN).
impl fmt::Display for ZoneAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TEXT_PREFIX}:{}:{}:{}:{}:{}",
            self.zone_id,
            self.min_generation,
            self.root.provider(),
            self.root.region(),
            self.root.key_id()
        )
    }
}

impl FromStr for ZoneAnchor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "zone anchor";
        let mut parts = s.trim().splitn(6, ':');
        if parts.next() != Some(TEXT_PREFIX) {
            return Err(Error::malformed(
                WHAT,
                format!("must start with {TEXT_PREFIX}:"),
            ));
        }
        let mut next = |field: &str| {
            parts
                .next()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| Error::malformed(WHAT, format!("missing {field}")))
        };
        let zone_id = ZoneId::parse(next("zone id")?)?;
        let generation = next("generation")?
            .parse::<u64>()
            .map_err(|_| Error::malformed(WHAT, "generation is not a number"))?;
        let provider = next("provider")?.to_string();
        let region = next("region")?.to_string();
        let key_id = next("key id")?.to_string();
        Ok(Self::new(
            zone_id,
            KeyRef::new(provider, key_id, region),
            generation,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_with_colons_in_the_key_id() {
        let anchor = ZoneAnchor::new(
            ZoneId::from_bytes([7; 16]),
            KeyRef::new(
                "aws-kms",
                "arn:aws:kms:eu-west-1:111122223333:key/mrk-1",
                "eu-west-1",
            ),
            42,
        );
        let text = anchor.to_string();
        assert!(text.starts_with("cmek-anchor-v1:"), "{text}");
        assert_eq!(text.parse::<ZoneAnchor>().unwrap(), anchor);
        for bad in [
            "",
            "cmek-anchor-v2:x",
            "cmek-anchor-v1:zz:1:p:r:k",
            "cmek-anchor-v1:07070707070707070707070707070707:x:p:r:k",
            "cmek-anchor-v1:07070707070707070707070707070707:1:p:r",
        ] {
            assert!(
                matches!(bad.parse::<ZoneAnchor>(), Err(Error::Malformed { .. })),
                "{bad}"
            );
        }
    }
}
