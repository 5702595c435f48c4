//! The Google Cloud KMS provider against the Cloud KMS protocol fake on
//! loopback (`scripts/gcp_kms_fake.py`, started by `scripts/test`), through
//! the official `google-cloud-kms-v1` client over HTTP/JSON.
//!
//! The fake's address comes from `CMEK_GCP_KMS_ENDPOINT`. Without it these
//! tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise say
//! they were skipped. The fake is written from Google's public API
//! reference; docs/GCP_KMS.md lists what it does not model.
//!
//! Against the real service, off by default: `CMEK_GCP_KMS_TEST_KEY` (an
//! existing key) runs the round trip, binding and validation checks on it,
//! and `CMEK_GCP_KMS_TEST_KEY_RING` (a key ring the caller may create keys
//! in) runs the whole conformance suite, both with application-default
//! credentials; a set variable that cannot run fails the test.
#![cfg(all(feature = "gcp-kms", feature = "testing"))]

mod gcp_common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cmek::backup::{Restore, RestoreMode, SourceTrust};
use cmek::provider::{
    GcpCredentials, GcpKmsOptions, GcpKmsProvider, NewKey, StepOutcome, ValidationFailure,
};
use cmek::testing::conformance::{self, Fixture, Forgery, Outcome, ReplicatedKey};
use cmek::testing::scenarios::{self, BackedUp};
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
use cmek::{EncryptionContext, Error, KeyProvider, KeyRef, KeyState, Result, SecretKey};

use gcp_common::{create_key, endpoint, provider, ring, Fake};

/// Regional keys live here.
const REGION: &str = "europe-west1";
/// Another region inside the `europe` multi-region.
const OTHER_REGION: &str = "europe-north1";
/// The multi-region.
const MULTI: &str = "europe";
/// Why no wrap under a Cloud KMS key can be forged.
const NO_PUBLIC_MATERIAL: &str = "no public material: a symmetric (ENCRYPT_DECRYPT) key inside \
     Cloud KMS; every wrap is a Cloud KMS Encrypt call with the key, the context authenticated";

/// The report says the forgery check was skipped, and why.
fn skipped_for(report: &conformance::Report, why: &str) {
    match report.outcome("forged_wrap") {
        Some(Outcome::Skipped(s)) if *s == why => {}
        other => panic!("forged_wrap: {other:?}, expected skipped ({why})\n{report}"),
    }
}

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:zone", zone)
        .with("cmek:purpose", "ezk")
}

struct OnFake {
    regional: GcpKmsProvider,
    multi: GcpKmsProvider,
}

#[async_trait]
impl Fixture for OnFake {
    fn provider(&self) -> &dyn KeyProvider {
        &self.regional
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        self.regional
            .admin()
            .unwrap()
            .create_key(&NewKey::unnamed())
            .await
    }
    fn missing_key(&self) -> KeyRef {
        self.regional
            .key_ref(&format!("{}/cryptoKeys/never-created", ring(REGION)))
    }
    async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(NO_PUBLIC_MATERIAL))
    }
    /// A key of the `europe` multi-region serves the regions inside it.
    async fn replicated_key(&self) -> Result<Option<ReplicatedKey>> {
        let key = self
            .multi
            .admin()
            .unwrap()
            .create_key(&NewKey::unnamed().multi_region())
            .await?;
        Ok(Some(ReplicatedKey {
            key,
            replica_regions: vec![REGION.into(), OTHER_REGION.into()],
        }))
    }
}

#[tokio::test]
async fn gcp_kms_on_the_fake_conforms() {
    let Some(url) = endpoint() else { return };
    let fixture = OnFake {
        regional: provider(&url, REGION).await,
        multi: provider(&url, MULTI).await,
    };
    let report = conformance::run(&fixture).await;
    report.assert_conforms();
    // Nothing is waived: the fake enforces states and binds the context.
    for check in [
        "context_binding",
        "wrong_key",
        "modified_blob",
        "disabled_key",
        "missing_key",
        "validation",
        "replica_regions",
    ] {
        assert_eq!(report.outcome(check), Some(&Outcome::Passed), "{report}");
    }
    skipped_for(&report, NO_PUBLIC_MATERIAL);
    println!("{report}");
}

#[tokio::test]
async fn the_key_name_is_bound_as_well_as_the_context() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let root = create_key(&p).await;
    let key = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&root, &key, &ctx("z1")).await.unwrap();
    assert_eq!(&wrapped.as_bytes()[..3], b"GK\x01", "the versioned header");
    assert_eq!(
        p.unwrap_key(&root, &wrapped, &ctx("z1")).await.unwrap(),
        key
    );
    let err = p.unwrap_key(&root, &wrapped, &ctx("z2")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // Bytes that are not this provider's are refused before any call.
    let fake = Fake::new(&url);
    let before = fake.calls(&root);
    let foreign = cmek::provider::WrappedKey::from_bytes(&b"AWS-ciphertext-blob"[..]);
    let err = p.unwrap_key(&root, &foreign, &ctx("z1")).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    assert_eq!(fake.calls(&root), before);
}

#[tokio::test]
async fn a_new_primary_version_keeps_old_wrapped_keys_readable() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let fake = Fake::new(&url);
    let root = create_key(&p).await;
    let old_key = SecretKey::generate().unwrap();
    let old = p.wrap_key(&root, &old_key, &ctx("r")).await.unwrap();

    // Cloud KMS rotation: version 2 becomes the primary.
    assert_eq!(fake.rotate(&root), 2);
    let new_key = SecretKey::generate().unwrap();
    let new = p.wrap_key(&root, &new_key, &ctx("r")).await.unwrap();
    assert_eq!(p.unwrap_key(&root, &old, &ctx("r")).await.unwrap(), old_key);
    assert_eq!(p.unwrap_key(&root, &new, &ctx("r")).await.unwrap(), new_key);

    // Disabling version 1 (not the primary) stops only what it encrypted;
    // the key, described by its primary, is enabled.
    fake.set_version_state(&root, 1, "DISABLED");
    let err = p.unwrap_key(&root, &old, &ctx("r")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::Disabled,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(p.unwrap_key(&root, &new, &ctx("r")).await.unwrap(), new_key);
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);
}

#[tokio::test]
async fn describe_maps_every_version_state_and_the_key_itself() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let fake = Fake::new(&url);
    let root = create_key(&p).await;
    for (state, expected) in [
        ("DISABLED", KeyState::Disabled),
        ("DESTROY_SCHEDULED", KeyState::PendingDeletion),
        ("DESTROYED", KeyState::NotFound),
        ("PENDING_IMPORT", KeyState::PendingImport),
        ("PENDING_GENERATION", KeyState::Unavailable),
        ("IMPORT_FAILED", KeyState::Unavailable),
        ("GENERATION_FAILED", KeyState::Unavailable),
        ("ENABLED", KeyState::Enabled),
    ] {
        fake.set_version_state(&root, 1, state);
        assert_eq!(p.describe_key(&root).await.unwrap(), expected, "{state}");
        let err = p
            .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx("s"))
            .await;
        if expected == KeyState::Enabled {
            assert!(err.is_ok(), "{state}");
        } else {
            let err = err.unwrap_err();
            assert!(
                matches!(&err, Error::KeyUnavailable { state, .. } if *state == expected),
                "{state}: {err}"
            );
        }
    }

    // A signing key, and a key with no version, are not usable roots.
    let ring_name = ring(REGION);
    for (id, body, query) in [
        ("signing", r#"{"purpose":"ASYMMETRIC_SIGN"}"#, ""),
        (
            "empty",
            r#"{"purpose":1,"versionTemplate":{"algorithm":1}}"#,
            "&skipInitialVersionCreation=true",
        ),
    ] {
        let id = format!("{id}-{}", std::process::id());
        let (status, answer) = fake.request(
            "POST",
            &format!("/v1/{ring_name}/cryptoKeys?cryptoKeyId={id}{query}"),
            body,
        );
        assert_eq!(status, 200, "{answer}");
        let key = p.key_ref(&format!("{ring_name}/cryptoKeys/{id}"));
        assert_eq!(
            p.describe_key(&key).await.unwrap(),
            KeyState::Unavailable,
            "{id}"
        );
    }
}

#[tokio::test]
async fn status_codes_map_onto_error_kinds() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let fake = Fake::new(&url);
    let root = create_key(&p).await;
    let key = SecretKey::generate().unwrap();

    fake.deny(&root, "cloudkms.cryptoKeyVersions.useToEncrypt", true);
    let err = p.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccessDenied {
                operation: "encrypt",
                ..
            }
        ),
        "{err}"
    );
    fake.deny(&root, "cloudkms.cryptoKeyVersions.useToEncrypt", false);

    fake.fail(&root, "UNAVAILABLE", 1);
    let err = p.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
    assert!(
        matches!(err, Error::ProviderUnreachable { .. }) && err.is_transient(),
        "{err}"
    );
    fake.fail(&root, "DEADLINE_EXCEEDED", 1);
    let err = p.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    fake.fail(&root, "RESOURCE_EXHAUSTED", 1);
    let err = p.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
    assert!(
        matches!(err, Error::Throttled { .. }) && err.is_transient(),
        "{err}"
    );
    fake.fail(&root, "UNAVAILABLE", 1);
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unreachable);
    // The client's error stays reachable as the cause.
    fake.fail(&root, "UNAVAILABLE", 1);
    let err = p.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
    assert!(std::error::Error::source(&err).is_some(), "{err}");

    // Every fault consumed: the key works again.
    let wrapped = p.wrap_key(&root, &key, &ctx("e")).await.unwrap();
    assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("e")).await.unwrap(), key);

    // Credentials the server refuses are access denied (when the fake
    // checks a token at all).
    if gcp_common::token().is_some() {
        let wrong = GcpKmsProvider::new(GcpKmsOptions {
            endpoint: Some(url.clone()),
            credentials: GcpCredentials::AccessToken("not-the-token".into()),
            ..GcpKmsOptions::default()
        })
        .await
        .unwrap();
        let err = wrong.wrap_key(&root, &key, &ctx("e")).await.unwrap_err();
        assert!(matches!(err, Error::AccessDenied { .. }), "{err}");
    }
}

#[tokio::test]
async fn validation_names_the_permission_that_fails() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let fake = Fake::new(&url);
    for (permission, encrypt, decrypt, describe) in [
        (
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            StepOutcome::Failed(ValidationFailure::AccessDenied),
            StepOutcome::Skipped,
            StepOutcome::Passed,
        ),
        (
            "cloudkms.cryptoKeyVersions.useToDecrypt",
            StepOutcome::Passed,
            StepOutcome::Failed(ValidationFailure::AccessDenied),
            StepOutcome::Passed,
        ),
        (
            "cloudkms.cryptoKeys.get",
            StepOutcome::Passed,
            StepOutcome::Passed,
            StepOutcome::Failed(ValidationFailure::AccessDenied),
        ),
    ] {
        let root = create_key(&p).await;
        fake.deny(&root, permission, true);
        let report = p.validate_key(&root).await;
        assert_eq!(
            (&report.encrypt, &report.decrypt, &report.describe),
            (&encrypt, &decrypt, &describe),
            "{permission}: {report}"
        );
    }
}

#[tokio::test]
async fn damaged_answers_are_caught_by_their_checksums() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, REGION).await;
    let fake = Fake::new(&url);
    let root = create_key(&p).await;
    let key = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&root, &key, &ctx("c")).await.unwrap();
    for (field, on_encrypt) in [
        ("ciphertext", true),
        ("ciphertextCrc32c", true),
        ("verifiedPlaintextCrc32c", true),
        ("verifiedAdditionalAuthenticatedDataCrc32c", true),
        ("plaintext", false),
        ("plaintextCrc32c", false),
    ] {
        fake.corrupt(&root, field, 1);
        let err = if on_encrypt {
            p.wrap_key(&root, &key, &ctx("c")).await.unwrap_err()
        } else {
            p.unwrap_key(&root, &wrapped, &ctx("c")).await.unwrap_err()
        };
        assert!(
            matches!(err, Error::ProviderUnreachable { .. }) && err.is_transient(),
            "{field}: {err}"
        );
        assert!(err.to_string().contains("in transit"), "{field}: {err}");
    }
    // Undamaged answers pass the same checks.
    let again = p.wrap_key(&root, &key, &ctx("c")).await.unwrap();
    assert_eq!(p.unwrap_key(&root, &again, &ctx("c")).await.unwrap(), key);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let p = GcpKmsProvider::new(GcpKmsOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        credentials: GcpCredentials::Anonymous,
        timeout: Duration::from_secs(2),
        key_ring: None,
    })
    .await
    .unwrap();
    let root = p.key_ref(&format!("{}/cryptoKeys/k", ring(REGION)));
    let started = Instant::now();
    let err = p
        .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx("u"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ProviderUnreachable { .. }) && err.is_transient(),
        "{err}"
    );
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unreachable);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The scenario suite's fixture: regional keys on the fake, which counts
/// the calls naming each key.
struct Scenarios {
    provider: Arc<GcpKmsProvider>,
    fake: Fake,
}

#[async_trait]
impl scenarios::Fixture for Scenarios {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.provider.clone()
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        Ok(create_key(&self.provider).await)
    }
    async fn server_calls(&self, key: &KeyRef) -> Option<u64> {
        Some(self.fake.calls(key))
    }
}

#[tokio::test]
async fn gcp_kms_on_the_fake_passes_the_scenarios() {
    let Some(url) = endpoint() else { return };
    let fixture = Scenarios {
        provider: Arc::new(provider(&url, REGION).await),
        fake: Fake::new(&url),
    };
    let report = scenarios::run(&fixture).await;
    // Nothing is waived: the fake enforces key states.
    report.assert_all_passed();
    println!("{report}");
}

#[tokio::test]
async fn a_zone_opens_in_every_region_its_multi_region_key_serves() {
    let Some(url) = endpoint() else { return };
    let multi = Arc::new(provider(&url, MULTI).await);
    let root = multi
        .admin()
        .unwrap()
        .create_key(&NewKey::unnamed().multi_region())
        .await
        .unwrap();
    assert_eq!(root.region(), MULTI);
    let keyring = Keyring::new(multi.clone());
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", REGION, root.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        zone.root(),
        root,
        "the zone records the key, not a region's name"
    );

    // A regional key does not serve another region, and says why.
    let regional = create_key(&provider(&url, REGION).await).await;
    let err = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("elsewhere", OTHER_REGION, regional),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("regional")),
        "{err}"
    );
    // Nor does the multi-region key serve a region outside it.
    let err = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("london", "europe-west2", root),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
}

/// A zone in `REGION` under `root`, segments under two EZK versions,
/// backed up into `dir`.
async fn zone_backed_up(dir: &Path, p: &Arc<GcpKmsProvider>, root: KeyRef) -> BackedUp {
    scenarios::zone_with_backup(
        &Keyring::new(p.clone()),
        ZoneSpec::new("orders", REGION, root),
        dir,
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_backup_restores_in_another_region_of_its_keys_multi_region() {
    let Some(url) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let multi = Arc::new(provider(&url, MULTI).await);
    let root = multi
        .admin()
        .unwrap()
        .create_key(&NewKey::unnamed().multi_region())
        .await
        .unwrap();
    let BackedUp {
        segments: plaintexts,
        bundle,
        ..
    } = zone_backed_up(dir.path(), &multi, root.clone()).await;

    // In europe-north1 — another region of the `europe` multi-region — the
    // backup's EZKs open under the same key, and the new zone lives under
    // a key of that region.
    let there = Arc::new(provider(&url, OTHER_REGION).await);
    let new_root = create_key(&there).await;
    let spec = ZoneSpec::new("orders-restored", OTHER_REGION, new_root.clone());
    let trust = SourceTrust::roots([root.clone()]);
    for mode in [RestoreMode::Rewrap, RestoreMode::Plaintext] {
        let dest = dir.path().join(format!("restored-{mode:?}"));
        let source = Keyring::new(multi.clone());
        let restore = match mode {
            RestoreMode::Rewrap => Restore::rewrap(
                &bundle,
                &dest,
                source,
                trust.clone(),
                Keyring::new(there.clone()),
                spec.clone(),
            ),
            _ => Restore::plaintext(&bundle, &dest, source, trust.clone(), OTHER_REGION),
        };
        let report = restore.run(|_| {}).await.unwrap();
        assert_eq!(report.restored, plaintexts.len(), "{mode:?}");
        if let Some(z) = &report.zone {
            assert_eq!(z.manifest().region(), OTHER_REGION);
            assert_eq!(z.root(), new_root);
        }
        assert_eq!(
            scenarios::restored_segments(&report).unwrap(),
            plaintexts,
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn a_regional_keys_backup_is_refused_in_another_region() {
    let Some(url) = endpoint() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(provider(&url, REGION).await);
    let root = create_key(&p).await;
    let BackedUp {
        zone,
        segments: plaintexts,
        bundle,
    } = zone_backed_up(dir.path(), &p, root.clone()).await;

    let dest = dir.path().join("restored");
    let trust = SourceTrust::zone(zone.id());
    let err = Restore::plaintext(
        &bundle,
        &dest,
        Keyring::new(p.clone()),
        trust.clone(),
        OTHER_REGION,
    )
    .run(|_| {})
    .await
    .unwrap_err();
    match &err {
        Error::RegionMismatch {
            key_region,
            region,
            reason,
            ..
        } => {
            assert_eq!(
                (key_region.as_str(), region.as_str()),
                (REGION, OTHER_REGION)
            );
            assert!(reason.contains("regional"), "{reason}");
        }
        other => panic!("expected a region mismatch, got {other}"),
    }
    assert!(!dest.exists(), "refused before anything was written");

    // In its own region it restores.
    let report = Restore::plaintext(&bundle, &dest, Keyring::new(p), trust, REGION)
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(report.segments.len(), plaintexts.len());
}

/// The real Cloud KMS, with application-default credentials.
async fn real_provider(key_ring: Option<String>) -> GcpKmsProvider {
    GcpKmsProvider::new(GcpKmsOptions {
        key_ring,
        ..GcpKmsOptions::default()
    })
    .await
    .expect("application-default credentials for the real Cloud KMS")
}

#[tokio::test]
async fn the_real_cloud_kms_key_round_trips_when_asked() {
    let Ok(name) = std::env::var("CMEK_GCP_KMS_TEST_KEY") else {
        eprintln!("skipped: set CMEK_GCP_KMS_TEST_KEY to a Cloud KMS key to test the real service");
        return;
    };
    let p = real_provider(None).await;
    let root = p.key_ref(&name);
    let report = p.validate_key(&root).await;
    assert!(report.is_valid(), "{report}");
    let key = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&root, &key, &ctx("real")).await.unwrap();
    assert_eq!(
        p.unwrap_key(&root, &wrapped, &ctx("real")).await.unwrap(),
        key
    );
    let err = p
        .unwrap_key(&root, &wrapped, &ctx("other"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

struct Real(GcpKmsProvider, KeyRef);

#[async_trait]
impl Fixture for Real {
    fn provider(&self) -> &dyn KeyProvider {
        &self.0
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        self.0.admin().unwrap().create_key(&NewKey::unnamed()).await
    }
    fn missing_key(&self) -> KeyRef {
        self.1.clone()
    }
    async fn forge(&self, _: &KeyRef, _: &SecretKey, _: &EncryptionContext) -> Result<Forgery> {
        Ok(Forgery::NoPublicMaterial(NO_PUBLIC_MATERIAL))
    }
}

#[tokio::test]
async fn the_real_cloud_kms_conforms_when_asked() {
    let Ok(ring_name) = std::env::var("CMEK_GCP_KMS_TEST_KEY_RING") else {
        eprintln!(
            "skipped: set CMEK_GCP_KMS_TEST_KEY_RING to a key ring to run the conformance suite \
             on the real service (it creates keys there)"
        );
        return;
    };
    let p = real_provider(Some(ring_name.clone())).await;
    let missing = p.key_ref(&format!("{ring_name}/cryptoKeys/cmek-never-created"));
    let report = conformance::run(&Real(p, missing)).await;
    report.assert_conforms();
    println!("{report}");
}
