//! AWS KMS key identifiers: ARNs, bare key ids, aliases, and the rule that
//! makes two multi-region key ARNs "the same key".
//!
//! A multi-region key (MRK) has the same key id — `mrk-` followed by 32 hex
//! digits — in every region it is replicated to; its ARNs differ only in the
//! region. Two MRK ARNs match when every part but the region is equal.

use std::fmt;

/// A parsed KMS key or alias ARN: `arn:PARTITION:kms:REGION:ACCOUNT:RESOURCE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KmsArn {
    /// `aws`, `aws-cn`, `aws-us-gov`, ...
    pub partition: String,
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// The 12-digit account id.
    pub account: String,
    /// `key/ID` or `alias/NAME`.
    pub resource: String,
}

impl KmsArn {
    /// Parses `s` as a KMS ARN; `None` for anything else (a bare key id, an
    /// alias name, an ARN of another service).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if arn != "arn" || service != "kms" || partition.is_empty() || region.is_empty() {
            return None;
        }
        if !(resource.starts_with("key/") || resource.starts_with("alias/")) {
            return None;
        }
        Some(Self {
            partition: partition.into(),
            region: region.into(),
            account: account.into(),
            resource: resource.into(),
        })
    }

    /// The key id for a `key/...` ARN.
    pub fn key_id(&self) -> Option<&str> {
        self.resource.strip_prefix("key/")
    }

    /// True for the ARN of a multi-region key.
    pub fn is_multi_region(&self) -> bool {
        self.key_id().is_some_and(is_multi_region_key_id)
    }

    /// The same ARN in `region` (the replica's ARN, for a multi-region key).
    pub fn in_region(&self, region: &str) -> Self {
        Self {
            region: region.into(),
            ..self.clone()
        }
    }
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:{}",
            self.partition, self.region, self.account, self.resource
        )
    }
}

/// True for a multi-region key id. AWS documents only the `mrk-` prefix
/// (its ids continue with 32 hex digits; KMS-compatible servers may use a
/// dashed UUID), so the rest is only required to be hex digits and dashes.
pub fn is_multi_region_key_id(id: &str) -> bool {
    id.strip_prefix("mrk-").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    })
}

/// The region a key identifier pins, if it is an ARN.
pub fn region_of(key_id: &str) -> Option<String> {
    KmsArn::parse(key_id).map(|arn| arn.region)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MRK: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn parses_key_and_alias_arns() {
        let arn = KmsArn::parse(MRK).unwrap();
        assert_eq!(arn.region, "us-east-1");
        assert_eq!(arn.account, "111122223333");
        assert_eq!(arn.key_id(), Some("mrk-1234abcd12ab34cd56ef1234567890ab"));
        assert!(arn.is_multi_region());
        assert_eq!(arn.to_string(), MRK);
        let alias = KmsArn::parse("arn:aws:kms:eu-west-1:111122223333:alias/orders").unwrap();
        assert_eq!(alias.key_id(), None);
        assert!(!alias.is_multi_region());
        for bad in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/orders",
            "arn:aws:s3:us-east-1:111122223333:key/x",
            "arn:aws:kms::111122223333:key/x",
            "arn:aws:kms:us-east-1:111122223333:grant/x",
            "arn:aws:kms:us-east-1",
        ] {
            assert!(KmsArn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_replica_arn_differs_only_in_its_region() {
        let primary = KmsArn::parse(MRK).unwrap();
        let replica = primary.in_region("eu-west-1");
        assert_eq!(
            replica.to_string(),
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
    }

    #[test]
    fn recognises_multi_region_ids() {
        assert!(is_multi_region_key_id(
            "mrk-1234abcd12ab34cd56ef1234567890ab"
        ));
        assert!(is_multi_region_key_id(
            "mrk-1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(!is_multi_region_key_id("mrk-"));
        assert!(!is_multi_region_key_id("mrk-../alias"));
        assert!(!is_multi_region_key_id(
            "1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert_eq!(region_of(MRK).as_deref(), Some("us-east-1"));
        assert_eq!(region_of("alias/x"), None);
    }
}
