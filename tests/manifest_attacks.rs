//! A storage attacker against zone manifests: someone who can write where
//! manifests live (put back old files, swap files, edit bytes and fix the
//! plain checksum) but cannot use the KMS. Each test is one attack; each
//! ends in a typed error, before any provider call where that is possible,
//! with the zone's real state intact.
//!
//! Needs the `testing` feature: the mock provider counts calls, which
//! proves each attack is refused before any.

#![cfg(feature = "testing")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmek::testing::MockProvider;
use cmek::zone::{
    FileManifestStore, Keyring, ManifestStore, RetireConfirmation, Zone, ZoneAnchor, ZoneSpec,
};
use cmek::{Error, KeyRef, StateRejection};

struct Site {
    dir: tempfile::TempDir,
    provider: Arc<MockProvider>,
    keyring: Arc<Keyring>,
    root: KeyRef,
}

impl Site {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(MockProvider::new());
        let root = provider.add_key("root-1");
        let keyring = Keyring::new(provider.clone());
        Self {
            dir,
            provider,
            keyring,
            root,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self, name: &str) -> Arc<FileManifestStore> {
        Arc::new(FileManifestStore::new(self.path(name)))
    }

    async fn zone(&self, name: &str) -> Zone {
        self.keyring
            .create_zone(
                self.store(name),
                ZoneSpec::new(name, "mock-region-1", self.root.clone()),
            )
            .await
            .unwrap()
    }
}

fn rejection(err: Error) -> StateRejection {
    match err {
        Error::StateRejected { reason, .. } => reason,
        other => panic!("expected StateRejected, got {other:?}"),
    }
}

/// Replaces the trailing SHA-256 as anyone can: the checksum is not a MAC.
fn fix_checksum(bytes: &mut [u8]) {
    let n = bytes.len() - 32;
    let sum = ring::digest::digest(&ring::digest::SHA256, &bytes[..n]);
    bytes[n..].copy_from_slice(sum.as_ref());
}

fn put_back(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn a_manifest_from_before_a_root_rotation_is_refused() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let segment = zone.encrypt_segment("s", b"rows").unwrap();
    let before = std::fs::read(site.path("orders")).unwrap();
    let new_root = site.provider.add_key("root-2");
    zone.rotate_root(new_root.clone()).await.unwrap();
    let anchor = zone.anchor();
    assert_eq!(anchor.root(), &new_root);

    // The attacker puts the old manifest back: it is authentic (same EZK)
    // and its old root is still enabled.
    put_back(&site.path("orders"), &before);
    site.provider.reset_calls();
    let err = site
        .keyring
        .open_zone(site.store("orders"), &anchor)
        .await
        .unwrap_err();
    assert!(
        matches!(rejection(err), StateRejection::UnexpectedRoot { ref found, .. } if found.contains("root-1")),
    );
    assert_eq!(site.provider.total_calls(), 0, "refused before any call");
    // Disabling the new root stops the zone; the old one is no way around.
    assert!(site.provider.disable_key("root-2"));
    put_back(&site.path("orders"), &before);
    assert!(site
        .keyring
        .open_zone(site.store("orders"), &anchor)
        .await
        .is_err());
    drop(segment);
}

#[tokio::test]
async fn a_manifest_from_before_a_retirement_is_a_rollback() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let old = zone.encrypt_segment("old", b"under v1").unwrap();
    zone.rotate_ezk().await.unwrap();
    let with_v1 = std::fs::read(site.path("orders")).unwrap();
    zone.retire_ezk(1, RetireConfirmation::NoSegmentUsesIt)
        .await
        .unwrap();
    let anchor = zone.anchor();

    put_back(&site.path("orders"), &with_v1);
    let err = site
        .keyring
        .open_zone(site.store("orders"), &anchor)
        .await
        .unwrap_err();
    match rejection(err) {
        StateRejection::Rollback { found, minimum } => assert!(found < minimum),
        other => panic!("{other:?}"),
    }
    // The retired EZK stays gone: nothing under it decrypts.
    assert!(matches!(
        zone.decrypt_segment("old", &old).unwrap_err(),
        Error::UnknownEzkVersion { version: 1, .. }
    ));
}

#[tokio::test]
async fn another_zones_manifest_under_the_same_root_is_refused() {
    let site = Site::new();
    let ours = site.zone("ours").await;
    let _theirs = site.zone("theirs").await;
    let theirs_bytes = std::fs::read(site.path("theirs")).unwrap();
    put_back(&site.path("ours"), &theirs_bytes);
    let err = site
        .keyring
        .open_zone(site.store("ours"), &ours.anchor())
        .await
        .unwrap_err();
    assert!(matches!(rejection(err), StateRejection::ForeignZone { .. }));
}

#[tokio::test]
async fn an_edited_root_key_is_refused_before_any_provider_call() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let attacker_root = site.provider.add_key("root-x");
    // Rewrite the root key id field ("root-1" -> "root-x") and fix the
    // checksum.
    let mut bytes = std::fs::read(site.path("orders")).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"root-1")
        .expect("the root key id is in the manifest");
    bytes[at..at + 6].copy_from_slice(b"root-x");
    fix_checksum(&mut bytes);
    put_back(&site.path("orders"), &bytes);
    site.provider.reset_calls();
    let err = site
        .keyring
        .open_zone(site.store("orders"), &zone.anchor())
        .await
        .unwrap_err();
    assert!(
        matches!(rejection(err), StateRejection::UnexpectedRoot { ref found, .. } if found.contains("root-x"))
    );
    assert_eq!(site.provider.total_calls(), 0, "refused before any call");
    drop(attacker_root);
}

#[tokio::test]
async fn a_manifest_built_under_the_attackers_own_root_is_refused() {
    // The strongest swap: a fully valid manifest (its EZK wrapped by a key
    // the attacker controls, its tag computed with that EZK) at a high
    // generation. Only the anchor's root stops it.
    let site = Site::new();
    let zone = site.zone("orders").await;
    let attacker = site.provider.add_key("attacker");
    let scratch = site.store("scratch");
    let forged = site
        .keyring
        .create_zone(
            scratch.clone(),
            ZoneSpec::new("orders", "mock-region-1", attacker),
        )
        .await
        .unwrap();
    for _ in 0..5 {
        forged.rotate_ezk().await.unwrap();
    }
    put_back(&site.path("orders"), &scratch.load().unwrap().unwrap());
    let err = site
        .keyring
        .open_zone(site.store("orders"), &zone.anchor())
        .await
        .unwrap_err();
    // Its zone id differs too; either refusal keeps the zone's writes away
    // from an EZK the attacker knows.
    assert!(matches!(
        rejection(err),
        StateRejection::ForeignZone { .. } | StateRejection::UnexpectedRoot { .. }
    ));
}

#[tokio::test]
async fn an_edited_generation_fails_the_manifest_tag() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let old = std::fs::read(site.path("orders")).unwrap();
    zone.rotate_ezk().await.unwrap();
    zone.rotate_ezk().await.unwrap();
    let anchor = zone.anchor();
    // Put back the old manifest with its generation raised past the
    // anchor's, checksum fixed: the rollback check passes, the tag fails.
    let mut bytes = old.clone();
    let generation_at = 8 + 2 + 16 + 16;
    bytes[generation_at..generation_at + 8].copy_from_slice(&1000u64.to_be_bytes());
    fix_checksum(&mut bytes);
    put_back(&site.path("orders"), &bytes);
    let err = site
        .keyring
        .open_zone(site.store("orders"), &anchor)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

/// Needs the `fuzzing` feature for the legacy encoder (the whole suite runs
/// with every feature).
#[cfg(feature = "fuzzing")]
#[tokio::test]
async fn a_downgrade_to_an_unauthenticated_version_is_refused() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    zone.rotate_ezk().await.unwrap();
    // Re-encode the current manifest as version 1 (no tag) with a raised
    // generation, as older releases wrote it.
    let v1 = cmek::fuzzing::legacy_manifest_bytes(&zone.manifest(), 1000);
    put_back(&site.path("orders"), &v1);
    let err = site
        .keyring
        .open_zone(site.store("orders"), &zone.anchor())
        .await
        .unwrap_err();
    assert!(
        matches!(rejection(err), StateRejection::Mismatch(ref m) if m.contains("not authenticated"))
    );
}

#[tokio::test]
async fn two_writers_on_one_manifest_lose_nothing() {
    let site = Site::new();
    let first = site.zone("orders").await;
    let second = site
        .keyring
        .open_zone(site.store("orders"), &first.anchor())
        .await
        .unwrap();
    first.rotate_ezk().await.unwrap();
    // The second handle read the manifest before the rotation: its change
    // would drop EZK version 2. It gets a conflict instead.
    let err = second.rotate_ezk().await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    second.reload().await.unwrap();
    assert_eq!(second.active_version(), 2);
    assert_eq!(second.rotate_ezk().await.unwrap(), 3);
    let reopened = site
        .keyring
        .open_zone(site.store("orders"), &second.anchor())
        .await
        .unwrap();
    assert_eq!(
        reopened
            .manifest()
            .ezk_versions()
            .map(|(v, _)| v)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // Both handles keep writing: wrap reservations of one are taken in by
    // the other without a provider call.
    for i in 0..3 {
        first.reload().await.unwrap();
        let a = first.encrypt_segment(&format!("a{i}"), b"a").unwrap();
        let b = second.encrypt_segment(&format!("b{i}"), b"b").unwrap();
        reopened.decrypt_segment(&format!("b{i}"), &b).unwrap();
        second.decrypt_segment(&format!("a{i}"), &a).unwrap();
    }
}

#[tokio::test]
async fn wrap_reservations_persist_and_only_grow() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let reserved = |z: &Zone| {
        z.manifest()
            .ezk_versions()
            .find(|(v, _)| *v == z.active_version())
            .unwrap()
            .1
            .wraps_reserved
    };
    assert_eq!(reserved(&zone), 0);
    zone.encrypt_segment("s", b"x").unwrap();
    let first = reserved(&zone);
    assert!(first >= 1, "the first wrap reserved a block");
    // A restart starts counting at the reservation, not at zero: its first
    // wrap reserves the next block, past every wrap made before.
    let reopened = site
        .keyring
        .open_zone(site.store("orders"), &zone.anchor())
        .await
        .unwrap();
    reopened.encrypt_segment("t", b"y").unwrap();
    let second = reserved(&reopened);
    assert!(second > first, "{second} > {first}");
    let on_disk =
        cmek::zone::ZoneManifest::parse(&std::fs::read(site.path("orders")).unwrap()).unwrap();
    assert_eq!(
        on_disk.ezk_versions().next().unwrap().1.wraps_reserved,
        second
    );
    assert!(!reopened.needs_ezk_rotation());
}

#[tokio::test]
async fn an_anchor_round_trips_as_text() {
    let site = Site::new();
    let zone = site.zone("orders").await;
    let text = zone.anchor().to_string();
    let anchor: ZoneAnchor = text.parse().unwrap();
    site.keyring
        .open_zone(site.store("orders"), &anchor)
        .await
        .unwrap();
}
