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
#![cfg(feature = "aws-kms")]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmek::backup::{create_backup, Restore, RestoreMode, SourceTrust, SEGMENTS_DIR};
use cmek::provider::{AwsKmsOptions, AwsKmsProvider};
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec};
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

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 249) as u8 ^ seed).collect()
}

/// A zone in region A under `root_arn`, with segments under two EZK
/// versions, backed up into `dir/backup-a`, and the backup copied to
/// `dir/backup-b` as an operator would copy it to region B.
async fn zone_backed_up_and_copied(
    dir: &Path,
    region_a: &Arc<AwsKmsProvider>,
    root_arn: &str,
) -> (Zone, Vec<(String, Vec<u8>)>, PathBuf) {
    let keyring = Keyring::new(region_a.clone());
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", REGION_A, region_a.key_ref(root_arn)),
        )
        .await
        .unwrap();
    let seg_dir = dir.join("zone-a");
    std::fs::create_dir_all(&seg_dir).unwrap();
    let mut files = Vec::new();
    let mut plaintexts = Vec::new();
    for (i, len) in [0usize, 100, 70_000, 200_000].into_iter().enumerate() {
        if i == 2 {
            zone.rotate_ezk().await.unwrap();
        }
        let id = format!("orders/{i}");
        let pt = pattern(len, i as u8);
        let path = seg_dir.join(i.to_string());
        std::fs::write(&path, zone.encrypt_segment(&id, &pt).unwrap()).unwrap();
        files.push((id.clone(), path));
        plaintexts.push((id, pt));
    }
    let bundle = create_backup(&zone.manifest(), files, dir.join("backup-a"), |_| {}).unwrap();
    let copy = dir.join("backup-b");
    copy_dir(bundle.dir(), &copy);
    (zone, plaintexts, copy)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
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
    let (zone, plaintexts, bundle) = zone_backed_up_and_copied(dir.path(), &region_a, &mrk).await;
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
        for (id, pt) in &plaintexts {
            let bytes =
                std::fs::read(dest.join(SEGMENTS_DIR).join(id.replace('/', "%2F"))).unwrap();
            let got = match &report.zone {
                Some(z) => z.decrypt_segment(id, &bytes).unwrap().to_vec(),
                None => bytes,
            };
            assert_eq!(&got, pt, "{mode:?} {id}");
        }
    }
}

#[tokio::test]
async fn a_single_region_backup_is_refused_in_another_region_and_says_why() {
    let Some(url) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let region_a = provider(&url, REGION_A);
    let region_b = provider(&url, REGION_B);
    let (single, _) = create_key(&region_a, false).await;
    let (zone, plaintexts, bundle) =
        zone_backed_up_and_copied(dir.path(), &region_a, &single).await;

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
