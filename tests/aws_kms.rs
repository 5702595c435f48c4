//! The AWS KMS provider against a real KMS-compatible server on loopback
//! (moto, started by `scripts/test` through `scripts/kms_test_server.py`),
//! through the official `aws-sdk-kms` over HTTP.
//!
//! The server's address comes from `CMEK_KMS_ENDPOINT`. Without it these
//! tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise say
//! they were skipped.
//!
//! What moto does not model (see docs/AWS_KMS.md): it does not enforce key
//! states on Encrypt/Decrypt, nor IAM permissions; it answers a decrypt with
//! the wrong key with AccessDeniedException where KMS answers
//! IncorrectKeyException. State tests therefore go through DescribeKey.
#![cfg(feature = "aws-kms")]

mod common;

use std::time::{Duration, Instant};

use cmek::provider::{
    AwsKmsOptions, AwsKmsProvider, KeyValidation, StepOutcome, ValidationFailure, ValidationStep,
};
use cmek::{EncryptionContext, Error, KeyProvider, KeyRef, KeyState, SecretKey};

const PRIMARY_REGION: &str = "us-east-1";
const REPLICA_REGION: &str = "eu-west-1";

use common::{create_key_with_id, endpoint};

fn provider(endpoint: &str, region: &str) -> AwsKmsProvider {
    common::provider(endpoint, region, &AwsKmsOptions::default())
}

/// Creates a symmetric encryption key and returns its ARN.
async fn create_key(p: &AwsKmsProvider, multi_region: bool) -> String {
    create_key_with_id(p, multi_region).await.0
}

/// Creates a multi-region key in the primary region, replicates it to the
/// replica region, and returns the primary's ARN.
async fn create_replicated_key(url: &str, primary: &AwsKmsProvider) -> String {
    let (arn, id) = create_key_with_id(primary, true).await;
    assert!(arn.contains(":key/mrk-"), "{arn}");
    common::client(url, primary.region())
        .replicate_key()
        .key_id(&id)
        .replica_region(REPLICA_REGION)
        .send()
        .await
        .unwrap();
    arn
}

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:zone", zone)
        .with("cmek:purpose", "ezk")
        .with("cmek:ezk-version", "1")
}

#[tokio::test]
async fn wrap_unwrap_with_context_binding() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, PRIMARY_REGION);
    let arn = create_key(&p, false).await;
    let root = p.key_ref(&arn);
    assert_eq!(root.region(), PRIMARY_REGION);

    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&root, &ezk, &ctx("orders")).await.unwrap();
    assert_eq!(
        p.unwrap_key(&root, &wrapped, &ctx("orders")).await.unwrap(),
        ezk
    );

    // A different or missing context is refused by the server.
    for bad in [ctx("payments"), EncryptionContext::new()] {
        let err = p.unwrap_key(&root, &wrapped, &bad).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }
    // So is a modified blob.
    let mut tampered = wrapped.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let err = p
        .unwrap_key(
            &root,
            &cmek::WrappedKey::from_bytes(tampered),
            &ctx("orders"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");

    // Another key cannot unwrap it. Real KMS answers IncorrectKeyException
    // (mapped to Integrity); moto answers AccessDeniedException.
    let other = p.key_ref(&create_key(&p, false).await);
    let err = p
        .unwrap_key(&other, &wrapped, &ctx("orders"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Integrity { .. } | Error::AccessDenied { .. }),
        "{err}"
    );

    // generate_key is local generation plus Encrypt.
    let (key, wrapped) = p.generate_key(&root, &ctx("z2")).await.unwrap();
    assert_eq!(
        p.unwrap_key(&root, &wrapped, &ctx("z2")).await.unwrap(),
        key
    );
}

#[tokio::test]
async fn aliases_name_the_same_key() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, PRIMARY_REGION);
    let arn = create_key(&p, false).await;
    let alias = format!("alias/cmek-test-{}", &arn[arn.len() - 12..]);
    common::client(&url, PRIMARY_REGION)
        .create_alias()
        .alias_name(&alias)
        .target_key_id(arn.rsplit('/').next().unwrap())
        .send()
        .await
        .unwrap();
    let by_alias = p.key_ref(&alias);
    let by_arn = p.key_ref(&arn);
    let ezk = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&by_alias, &ezk, &ctx("a")).await.unwrap();
    assert_eq!(
        p.unwrap_key(&by_arn, &wrapped, &ctx("a")).await.unwrap(),
        ezk
    );
    assert_eq!(
        p.unwrap_key(&by_alias, &wrapped, &ctx("a")).await.unwrap(),
        ezk
    );
    assert_eq!(p.describe_key(&by_alias).await.unwrap(), KeyState::Enabled);
}

#[tokio::test]
async fn describe_maps_every_state() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, PRIMARY_REGION);
    let (arn, id) = create_key_with_id(&p, false).await;
    let root = p.key_ref(&arn);
    let kms = common::client(&url, PRIMARY_REGION);
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);

    kms.disable_key().key_id(&id).send().await.unwrap();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Disabled);
    kms.enable_key().key_id(&id).send().await.unwrap();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);

    kms.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(
        p.describe_key(&root).await.unwrap(),
        KeyState::PendingDeletion
    );
    kms.cancel_key_deletion().key_id(&id).send().await.unwrap();
    // KMS leaves a key disabled after its deletion is cancelled.
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Disabled);

    // moto reports a key created for imported material (Origin EXTERNAL) as
    // Enabled where KMS reports PendingImport; that mapping is covered by
    // the provider's unit tests only.

    let missing = p.key_ref("11111111-2222-3333-4444-555555555555");
    assert_eq!(p.describe_key(&missing).await.unwrap(), KeyState::NotFound);
    let err = p
        .wrap_key(&missing, &SecretKey::generate().unwrap(), &ctx("m"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn validation_reports_success_and_the_failing_step() {
    let Some(url) = endpoint() else { return };
    let p = provider(&url, PRIMARY_REGION);
    let arn = create_key(&p, false).await;
    let root = p.key_ref(&arn);
    let ok: KeyValidation = p.validate_key(&root).await;
    assert!(ok.is_valid(), "{ok}");

    // moto still encrypts under a disabled key, so only describe fails here;
    // against real KMS encrypt fails too (DisabledException).
    p.admin().unwrap().disable_key(&root).await.unwrap();
    let v = p.validate_key(&root).await;
    assert!(!v.is_valid());
    assert_eq!(
        v.describe,
        StepOutcome::Failed(ValidationFailure::KeyState(KeyState::Disabled))
    );
    assert!(v.to_string().contains("disabled"), "{v}");

    let missing = p.key_ref("11111111-2222-3333-4444-555555555555");
    let v = p.validate_key(&missing).await;
    assert_eq!(
        v.first_failure(),
        Some((
            ValidationStep::Encrypt,
            &ValidationFailure::KeyState(KeyState::NotFound)
        ))
    );
    assert_eq!(v.decrypt, StepOutcome::Skipped);
    assert_eq!(v.state, Some(KeyState::NotFound));
}

#[tokio::test]
async fn multi_region_key_unwraps_in_the_replica_region() {
    let Some(url) = endpoint() else { return };
    let primary = provider(&url, PRIMARY_REGION);
    let replica = provider(&url, REPLICA_REGION);
    let arn = create_replicated_key(&url, &primary).await;

    // Wrapped in region A under the primary, as a zone manifest records it...
    let root = primary.key_ref(&arn);
    let ezk = SecretKey::generate().unwrap();
    let wrapped = primary.wrap_key(&root, &ezk, &ctx("orders")).await.unwrap();

    // ...and unwrapped in region B, through the replica, from the same KeyRef.
    assert_eq!(root.region(), PRIMARY_REGION);
    assert_eq!(
        replica
            .unwrap_key(&root, &wrapped, &ctx("orders"))
            .await
            .unwrap(),
        ezk
    );
    assert_eq!(
        replica.describe_key(&root).await.unwrap(),
        KeyState::Enabled
    );
    assert!(replica.validate_key(&root).await.is_valid());

    // A single-region key from region A is refused in region B, by name.
    let single = primary.key_ref(&create_key(&primary, false).await);
    let wrapped = primary.wrap_key(&single, &ezk, &ctx("o")).await.unwrap();
    let err = replica
        .unwrap_key(&single, &wrapped, &ctx("o"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
    assert!(err.to_string().contains("multi-region"), "{err}");
}

#[tokio::test]
async fn a_stopped_server_fails_within_the_deadline() {
    // Runs without a server: a port that was just free and is now closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = AwsKmsOptions {
        deadline: Duration::from_millis(1500),
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(200),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        ..AwsKmsOptions::default()
    };
    let p = common::provider(
        &format!("http://127.0.0.1:{port}"),
        PRIMARY_REGION,
        &options,
    );
    let root: KeyRef = p.key_ref("11111111-2222-3333-4444-555555555555");

    let start = Instant::now();
    let err = p
        .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx("z"))
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    // The SDK's own error is the cause, and the report goes down to it.
    type EncryptFailure = aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::encrypt::EncryptError,
        aws_sdk_kms::config::http::HttpResponse,
    >;
    let cause = std::error::Error::source(&err).expect("the SDK's error");
    assert!(
        cause.downcast_ref::<EncryptFailure>().is_some(),
        "{cause:?}"
    );
    assert!(
        err.report().len() > err.to_string().len(),
        "{}",
        err.report()
    );

    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unreachable);
    let v = p.validate_key(&root).await;
    assert!(matches!(
        v.encrypt,
        StepOutcome::Failed(ValidationFailure::Unreachable(_))
    ));
}

#[tokio::test]
async fn from_env_reads_the_standard_configuration() {
    let Some(url) = endpoint() else { return };
    // Options override region and endpoint; credentials come from the
    // standard chain: scripts/test exports test credentials for the server.
    let p = AwsKmsProvider::from_env(AwsKmsOptions {
        region: Some(REPLICA_REGION.into()),
        endpoint_url: Some(url),
        ..AwsKmsOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(p.region(), REPLICA_REGION);
    let arn = create_key(&p, false).await;
    assert!(arn.contains(REPLICA_REGION), "{arn}");
    assert!(p.validate_key(&p.key_ref(&arn)).await.is_valid());
}

#[tokio::test]
async fn a_zone_end_to_end_and_its_manifest_in_the_replica_region() {
    use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
    use std::sync::Arc;

    let Some(url) = endpoint() else { return };
    let primary = provider(&url, PRIMARY_REGION);
    let arn = create_replicated_key(&url, &primary).await;

    // Region A: create a zone under the multi-region key, write, rotate.
    let keyring_a = Keyring::new(Arc::new(primary.clone()));
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring_a
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", PRIMARY_REGION, primary.key_ref(&arn)),
        )
        .await
        .unwrap();
    let first = zone
        .encrypt_segment("orders/1", b"written under v1")
        .unwrap();
    zone.rotate_ezk().await.unwrap();
    let second = zone
        .encrypt_segment("orders/2", b"written under v2")
        .unwrap();

    // Region B: the same manifest opens through the replica, and every
    // segment decrypts there.
    let keyring_b = Keyring::new(Arc::new(provider(&url, REPLICA_REGION)));
    let replica_zone = keyring_b
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(replica_zone.id(), zone.id());
    assert_eq!(
        &replica_zone.decrypt_segment("orders/1", &first).unwrap()[..],
        b"written under v1"
    );
    assert_eq!(
        &replica_zone.decrypt_segment("orders/2", &second).unwrap()[..],
        b"written under v2"
    );

    // A zone under a single-region key does not open in region B, and says why.
    let single = primary.key_ref(&create_key(&primary, false).await);
    let store = Arc::new(MemoryManifestStore::new());
    let local_only = keyring_a
        .create_zone(
            store.clone(),
            ZoneSpec::new("local-only", PRIMARY_REGION, single),
        )
        .await
        .unwrap();
    let err = keyring_b
        .open_zone(store, &local_only.anchor())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
}

/// Creates alias `alias/cmek-<tag>-<key id>` for `key_id` and returns its name
/// (unique per key, since the server is shared by every test).
async fn create_alias(url: &str, p: &AwsKmsProvider, tag: &str, key_id: &str) -> String {
    let alias = format!("alias/{tag}-{key_id}");
    common::client(url, p.region())
        .create_alias()
        .alias_name(&alias)
        .target_key_id(key_id)
        .send()
        .await
        .unwrap();
    alias
}

#[tokio::test]
async fn aliases_and_key_ids_resolve_to_the_key_arn() {
    let Some(url) = endpoint() else { return };
    let kms = provider(&url, PRIMARY_REGION);
    let (arn, key_id) = create_key_with_id(&kms, false).await;
    let key = kms.key_ref(&arn);
    let alias = create_alias(&url, &kms, "cmek-resolve", &key_id).await;
    let account = arn.split(':').nth(4).unwrap();
    let alias_arn = format!("arn:aws:kms:{PRIMARY_REGION}:{account}:{alias}");
    for named in [&alias, &alias_arn, &key_id, &arn] {
        assert_eq!(
            kms.resolve_key(&kms.key_ref(named)).await.unwrap(),
            key,
            "{named}"
        );
    }
    let err = kms
        .resolve_key(&kms.key_ref("alias/cmek-does-not-exist"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }
        ),
        "{err}"
    );
    let nowhere = provider("http://127.0.0.1:9", PRIMARY_REGION);
    let err = nowhere
        .resolve_key(&nowhere.key_ref(&alias))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
}

#[tokio::test]
async fn the_registry_takes_replicas_only_for_a_real_multi_region_key() {
    use cmek::registry::KeyRegistry;

    let Some(url) = endpoint() else { return };
    let kms = provider(&url, PRIMARY_REGION);
    let arn = create_replicated_key(&url, &kms).await;
    let mrk_id = arn.rsplit('/').next().unwrap().to_owned();
    // An alias named like a multi-region key, pointing to one.
    let alias = format!("alias/{mrk_id}");
    common::client(&url, PRIMARY_REGION)
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&mrk_id)
        .send()
        .await
        .unwrap();
    assert!(alias.starts_with("alias/mrk-"), "{alias}");
    let dir = tempfile::tempdir().unwrap();
    let registry = KeyRegistry::open(dir.path().join("registry")).unwrap();
    let err = registry
        .add_key(&kms, kms.key_ref(&alias), &[REPLICA_REGION])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("alias")),
        "{err}"
    );
    assert!(registry.keys().is_empty());
    let key = kms.key_ref(&arn);
    registry
        .add_key(&kms, key.clone(), &[REPLICA_REGION])
        .await
        .unwrap();
    assert_eq!(
        registry.keys()[0].regions,
        vec![REPLICA_REGION, PRIMARY_REGION]
    );
    // A multi-region key without a replica in a region does not serve it:
    // the provider asks DescribeKey, and the registry refuses.
    let unreplicated = kms.key_ref(&create_key(&kms, true).await);
    let err = registry
        .add_key(&kms, unreplicated.clone(), &[REPLICA_REGION])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("no replica")),
        "{err}"
    );
    assert_eq!(registry.keys().len(), 1);
    // Asked from the replica's region, the provider sees the same replicas.
    let replica = provider(&url, REPLICA_REGION);
    assert_eq!(
        replica.serves_region(&key, REPLICA_REGION).await.unwrap(),
        cmek::provider::RegionAnswer::Replica(replica.key_in_region(&key, REPLICA_REGION).unwrap())
    );
    assert!(!replica
        .serves_region(&key, "ap-south-1")
        .await
        .unwrap()
        .serves());
    // The alias stands for the key: resolved, it is the key's ARN.
    assert_eq!(kms.resolve_key(&kms.key_ref(&alias)).await.unwrap(), key);
}

#[tokio::test]
async fn a_zone_under_an_alias_stays_on_its_key_when_the_alias_moves() {
    use cmek::monitor::{KeyMonitor, MonitorConfig, MonitorEvent};
    use cmek::zone::{Keyring, MemoryManifestStore, ZoneAvailability, ZoneSpec};
    use std::sync::Arc;

    let Some(url) = endpoint() else { return };
    let kms = provider(&url, PRIMARY_REGION);
    let (arn_a, id_a) = create_key_with_id(&kms, false).await;
    let (arn_b, id_b) = create_key_with_id(&kms, false).await;
    let (key_a, key_b) = (kms.key_ref(&arn_a), kms.key_ref(&arn_b));
    let alias = create_alias(&url, &kms, "cmek-zone", &id_a).await;
    let keyring = Keyring::new(Arc::new(kms.clone()));
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", PRIMARY_REGION, kms.key_ref(&alias)),
        )
        .await
        .unwrap();
    // The zone records the key the alias pointed to, and the alias.
    assert_eq!(zone.root(), key_a);
    assert_eq!(zone.manifest().root_alias(), Some(alias.as_str()));
    let segment = zone.encrypt_segment("orders/1", b"rows").unwrap();

    let interval = Duration::from_millis(500);
    let monitor = KeyMonitor::new(MonitorConfig::with_interval(interval));
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    let _loop = monitor.spawn();
    let deadline = interval + monitor.config().check_timeout;
    tokio::time::sleep(interval).await;
    assert!(zone.is_available());

    // The alias is re-pointed to key B and key A disabled: the zone stops
    // within one interval (it is not kept serving through the alias) and
    // the move is reported.
    common::client(&url, PRIMARY_REGION)
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&id_b)
        .send()
        .await
        .unwrap();
    kms.admin().unwrap().disable_key(&key_a).await.unwrap();
    let started = Instant::now();
    let (mut stopped, mut moved) = (false, false);
    tokio::time::timeout(deadline, async {
        while !(stopped && moved) {
            match events.recv().await.unwrap() {
                MonitorEvent::ZoneAvailabilityChanged { new, .. } => {
                    assert_eq!(new, ZoneAvailability::Unavailable(KeyState::Disabled));
                    stopped = true;
                }
                MonitorEvent::RootAliasMoved {
                    zone: z,
                    alias: a,
                    recorded,
                    now,
                    ..
                } => {
                    assert_eq!((z, &a[..]), (zone.id(), alias.as_str()));
                    assert_eq!((&recorded, &now), (&key_a, &key_b));
                    moved = true;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the zone stops and the move is reported within one interval plus one check");
    assert!(started.elapsed() < deadline);
    assert_eq!(zone.root(), key_a);
    assert_eq!(
        monitor.key_status(&key_b),
        None,
        "the alias is never followed"
    );
    let err = zone.decrypt_segment("orders/1", &segment).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ZoneUnavailable {
                state: KeyState::Disabled,
                ..
            }
        ),
        "{err}"
    );
}
