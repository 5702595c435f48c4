//! Backup and cross-region restore against a KMS-compatible server on
//! loopback (moto, started by `scripts/test`), through the official SDK.
//!
//! A zone in region A under a multi-region key is backed up, the backup is
//! copied, and it is restored in region B — into new zones under a key of
//! region B (rewrap and re-encrypt) and to plaintext — through the key's
//! replica in B. A backup made under a single-region key is refused in
//! region B with `Error::RegionMismatch`.
//!
//! The server's address comes from `CMEK_KMS_ENDPOINT`. Without it these
//! tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise say
//! they were skipped.
#![cfg(all(feature = "aws-kms", feature = "testing"))]

mod common;

use std::path::Path;
use std::sync::Arc;

use cmek::backup::{Restore, RestoreMode, SourceTrust};
use cmek::provider::{AwsKmsOptions, AwsKmsProvider};
use cmek::testing::scenarios::{self, BackedUp};
use cmek::zone::{Keyring, ZoneSpec};
use cmek::Error;

const REGION_A: &str = "us-east-1";
const REGION_B: &str = "eu-west-1";

use common::endpoint;

fn provider(endpoint: &str, region: &str) -> Arc<AwsKmsProvider> {
    Arc::new(common::provider(
        endpoint,
        region,
        &AwsKmsOptions::default(),
    ))
}

/// Creates a symmetric encryption key and returns its ARN and key id.
async fn create_key(p: &AwsKmsProvider, multi_region: bool) -> (String, String) {
    common::create_key_with_id(p, multi_region).await
}

/// A zone in region A under `root_arn`, with segments under two EZK
/// versions, backed up, and the backup copied as an operator would copy it
/// to region B.
async fn zone_backed_up_and_copied(
    dir: &Path,
    region_a: &Arc<AwsKmsProvider>,
    root_arn: &str,
) -> BackedUp {
    scenarios::zone_with_backup(
        &Keyring::new(region_a.clone()),
        ZoneSpec::new("orders", REGION_A, region_a.key_ref(root_arn)),
        dir,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_backup_restores_in_another_region_through_the_multi_region_replica() {
    let Some(url) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let region_a = provider(&url, REGION_A);
    let region_b = provider(&url, REGION_B);
    let (mrk, mrk_id) = create_key(&region_a, true).await;
    assert!(mrk.contains(":key/mrk-"), "{mrk}");
    common::client(&url, REGION_A)
        .replicate_key()
        .key_id(&mrk_id)
        .replica_region(REGION_B)
        .send()
        .await
        .unwrap();
    let BackedUp {
        zone,
        segments: plaintexts,
        bundle,
    } = zone_backed_up_and_copied(dir.path(), &region_a, &mrk).await;
    assert_eq!(zone.root().region(), REGION_A);

    // In region B: the backup's EZKs open through region B's provider (the
    // replica), and the new zones live under a key of region B.
    let source_b = Keyring::new(region_b.clone());
    let (new_root, _) = create_key(&region_b, false).await;
    let spec = ZoneSpec::new("orders-restored", REGION_B, region_b.key_ref(&new_root));
    // The caller names the backed-up zone's key as it knows it: the
    // multi-region key of region A.
    let trust = SourceTrust::roots([region_a.key_ref(&mrk)]);
    for mode in [
        RestoreMode::Rewrap,
        RestoreMode::Reencrypt,
        RestoreMode::Plaintext,
    ] {
        let dest = dir.path().join(format!("restored-{mode:?}"));
        let target_b = Keyring::new(region_b.clone());
        let restore = match mode {
            RestoreMode::Rewrap => Restore::rewrap(
                &bundle,
                &dest,
                source_b.clone(),
                trust.clone(),
                target_b,
                spec.clone(),
            ),
            RestoreMode::Reencrypt => Restore::reencrypt(
                &bundle,
                &dest,
                source_b.clone(),
                trust.clone(),
                target_b,
                spec.clone(),
            ),
            RestoreMode::Plaintext => {
                Restore::plaintext(&bundle, &dest, source_b.clone(), trust.clone(), REGION_B)
            }
        };
        let report = restore.run(|_| {}).await.unwrap();
        assert_eq!(report.restored, plaintexts.len(), "{mode:?}");
        if let Some(z) = &report.zone {
            assert_eq!(z.manifest().region(), REGION_B);
            assert_eq!(z.root().region(), REGION_B);
        }
        assert_eq!(
            scenarios::restored_segments(&report).unwrap(),
            plaintexts,
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_single_region_backup_is_refused_in_another_region_and_says_why() {
    let Some(url) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let region_a = provider(&url, REGION_A);
    let region_b = provider(&url, REGION_B);
    let (single, _) = create_key(&region_a, false).await;
    let BackedUp {
        zone,
        segments: plaintexts,
        bundle,
    } = zone_backed_up_and_copied(dir.path(), &region_a, &single).await;

    let source_b = Keyring::new(region_b.clone());
    let (new_root, _) = create_key(&region_b, false).await;
    let spec = ZoneSpec::new("orders-restored", REGION_B, region_b.key_ref(&new_root));
    let dest = dir.path().join("restored");
    let trust = SourceTrust::zone(zone.id());
    let err = Restore::rewrap(
        &bundle,
        &dest,
        source_b.clone(),
        trust.clone(),
        source_b.clone(),
        spec,
    )
    .run(|_| {})
    .await
    .unwrap_err();
    match &err {
        Error::RegionMismatch {
            key,
            key_region,
            region,
            reason,
        } => {
            assert!(key.contains(&single), "{key}");
            assert_eq!((key_region.as_str(), region.as_str()), (REGION_A, REGION_B));
            assert!(reason.contains("single-region"), "{reason}");
        }
        other => panic!("expected a region mismatch, got {other}"),
    }
    assert!(!dest.exists(), "refused before anything was written");

    // The same backup restores in its own region.
    let source_a = Keyring::new(region_a.clone());
    let dest = dir.path().join("restored-a");
    let report = Restore::plaintext(&bundle, &dest, source_a, trust, REGION_A)
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(report.segments.len(), plaintexts.len());
}
