//! Moving a segment's DEK from one zone to another without touching its
//! body: what restoring a backup into a new zone by rewrapping needs.
//!
//! A segment body is bound (through its stream's associated data) to the
//! zone's *body zone id* and the segment id, not to the header, so a header
//! rewrapped under another zone's EZK opens the same body — provided the
//! receiving zone binds bodies to the same body zone id. A zone created to
//! receive rewrapped segments records the source's body zone id in its
//! manifest ([`ZoneManifest::body_zone_id`](super::ZoneManifest::body_zone_id)),
//! and this module refuses a transfer into any other zone.
//!
//! This module makes no provider call and does no I/O.

use super::header::{self, SegmentHeader, SEGMENT_HEADER_LEN};
use super::{unwrap_dek, Zone};
use crate::{Error, Result};

impl Zone {
    /// Associated data of segment `segment_id`'s body in this zone.
    pub(super) fn body_aad(&self, segment_id: &str) -> Vec<u8> {
        header::body_aad(&self.state().manifest.body_zone_id, segment_id)
    }

    /// The header of segment `segment_id` rewrapped from this zone into
    /// `target`: the DEK is unwrapped with this zone's EZK (which
    /// authenticates the header), checked against the key commitment, and
    /// wrapped under `target`'s active EZK, bound to `target`'s zone id. The
    /// body is left as it is and opens in `target` unchanged.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `target` binds bodies to another body
    /// zone id (the body would not open there); otherwise as
    /// [`decrypt_segment`](Zone::decrypt_segment) for the header, and the
    /// target's wrap errors ([`Error::LimitExceeded`], [`Error::Random`],
    /// [`Error::ZoneUnavailable`] for an unavailable zone).
    pub(crate) fn rewrap_header_into(
        &self,
        target: &Zone,
        segment_id: &str,
        header_bytes: &[u8],
    ) -> Result<[u8; SEGMENT_HEADER_LEN]> {
        let old = SegmentHeader::parse(header_bytes)?;
        let source = self.state();
        let target_state = target.state();
        if source.manifest.body_zone_id != target_state.manifest.body_zone_id {
            return Err(Error::InvalidArgument(format!(
                "zone {} binds segment bodies to zone {}, not {}: a rewrapped body would not open there",
                target_state.manifest.zone_id,
                target_state.manifest.body_zone_id,
                source.manifest.body_zone_id
            )));
        }
        let dek = unwrap_dek(&source, segment_id, &old)?;
        old.check_commitment(&dek)?;
        let m = &target_state.manifest;
        // Written in the current format whatever the source's was.
        let new = old.rewrap_template(m.zone_id, m.active);
        let wrapped = target_state
            .ezk(m.active)?
            .wrapper
            .wrap(&dek, &new.dek_aad(segment_id))?;
        Ok(new.with_wrapped_dek(wrapped).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Keyring, MemoryManifestStore, ZoneId, ZoneSpec};
    use crate::testing::MockProvider;
    use crate::Error;

    #[tokio::test]
    async fn a_transferred_header_opens_the_same_body_only_where_bodies_match() {
        let kms = Arc::new(MockProvider::new());
        let root = kms.add_key("root");
        let keyring = Keyring::new(kms.clone());
        let spec = ZoneSpec::new("z", "mock-region-1", root);
        let store = || Arc::new(MemoryManifestStore::new());
        let source = keyring.create_zone(store(), spec.clone()).await.unwrap();
        let segment = source.encrypt_segment("s", b"body").unwrap();

        // A zone that binds bodies to its own id cannot take the header.
        let other = keyring.create_zone(store(), spec.clone()).await.unwrap();
        let err = source
            .rewrap_header_into(&other, "s", &segment)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");

        // One that binds them to the source's body zone id can.
        let id = ZoneId::generate().unwrap();
        let target = keyring
            .create_zone_with_ids(store(), spec, id, source.id())
            .await
            .unwrap();
        let header = source.rewrap_header_into(&target, "s", &segment).unwrap();
        let moved = [&header[..], &segment[128..]].concat();
        assert_eq!(&target.decrypt_segment("s", &moved).unwrap()[..], b"body");
        assert_eq!(&moved[8..24], id.as_bytes(), "bound to the target zone");
        // Not under another segment id, and not back in the source zone.
        assert!(source.rewrap_header_into(&target, "t", &segment).is_err());
        assert!(source.decrypt_segment("s", &moved).is_err());
        // A body from the target's own new segments opens there too.
        let fresh = target.encrypt_segment("n", b"new").unwrap();
        assert_eq!(&target.decrypt_segment("n", &fresh).unwrap()[..], b"new");
    }
}
