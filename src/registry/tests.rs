use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::*;
use crate::provider::LocalKeyProvider;
use crate::testing::{Fault, MockProvider, Operation};
use crate::zone::MemoryManifestStore;

fn registry(limit: usize) -> (tempfile::TempDir, KeyRegistry) {
    let dir = tempfile::tempdir().unwrap();
    let r = KeyRegistry::open_with_limit(dir.path().join("registry"), limit).unwrap();
    (dir, r)
}

fn zone_id(n: u8) -> ZoneId {
    ZoneId::from_bytes([n; 16])
}

#[tokio::test]
async fn the_limit_counts_keys_of_every_provider() {
    let (dir, reg) = registry(3);
    assert_eq!(KeyRegistry::open(dir.path().join("x")).unwrap().limit(), 20);
    let mock = MockProvider::with_region("eu-west-1");
    let local = LocalKeyProvider::create(dir.path().join("root.keys"), "eu-west-1").unwrap();
    reg.add_key(&mock, mock.add_key("m1"), &[]).await.unwrap();
    reg.add_key(&local, local.add_key("l1").unwrap(), &[])
        .await
        .unwrap();
    reg.add_key(&mock, mock.add_key("m2"), &[]).await.unwrap();
    let err = reg
        .add_key(&local, local.add_key("l2").unwrap(), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 3, .. }),
        "{err}"
    );
    assert_eq!(reg.keys().len(), 3);
    // Refused before any provider call.
    let calls = mock.total_calls();
    assert!(reg.add_key(&mock, mock.add_key("m3"), &[]).await.is_err());
    assert_eq!(mock.total_calls(), calls);
}

#[tokio::test]
async fn invalid_and_duplicate_keys_are_refused_with_the_reason() {
    let (_dir, reg) = registry(20);
    let mock = MockProvider::new();
    let k = mock.add_key("k");
    mock.disable_key("k");
    let err = reg.add_key(&mock, k.clone(), &[]).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::KeyValidationFailed {
                step: "encrypt",
                failure: crate::provider::ValidationFailure::KeyState(
                    crate::provider::KeyState::Disabled
                ),
                ..
            }
        ) && err.to_string().contains("disabled"),
        "{err}"
    );
    mock.enable_key("k");
    mock.inject_fault(Fault::AccessDenied, Some(Operation::Unwrap), Some(1));
    let err = reg.add_key(&mock, k.clone(), &[]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("failed validation at decrypt: access denied"),
        "{err}"
    );
    assert!(reg.keys().is_empty());
    reg.add_key(&mock, k.clone(), &[]).await.unwrap();
    let err = reg.add_key(&mock, k, &[]).await.unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");
}

#[tokio::test]
async fn zones_only_use_keys_of_their_region() {
    let (_dir, reg) = registry(20);
    let kms = MockProvider::with_region("us-east-1");
    let single = kms.add_key("single");
    reg.add_key(&kms, single.clone(), &[]).await.unwrap();
    reg.register_zone(zone_id(1), "a", "us-east-1", &single)
        .unwrap();
    let err = reg
        .register_zone(zone_id(2), "b", "eu-west-1", &single)
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");

    // A multi-region key serves the regions it is replicated to, and only
    // once its provider confirms the replica.
    let mrk = kms.add_multi_region_key("mrk-1234abcd12ab34cd56ef1234567890ab");
    let err = reg
        .add_key(&kms, mrk.clone(), &["eu-west-1"])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("no replica")),
        "{err}"
    );
    assert!(reg.keys().iter().all(|k| k.key != mrk));
    assert!(kms.replicate_key("mrk-1234abcd12ab34cd56ef1234567890ab", "eu-west-1"));
    reg.add_key(&kms, mrk.clone(), &["eu-west-1"])
        .await
        .unwrap();
    reg.register_zone(zone_id(2), "b", "eu-west-1", &mrk)
        .unwrap();
    let err = reg
        .register_zone(zone_id(3), "c", "ap-south-1", &mrk)
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
    // Replicas are only for multi-region keys; unknown keys cannot serve.
    let other = kms.add_key("other");
    assert!(reg
        .add_key(&kms, other.clone(), &["eu-west-1"])
        .await
        .is_err());
    assert!(reg
        .register_zone(zone_id(4), "d", "us-east-1", &other)
        .is_err());
    assert!(reg
        .register_zone(zone_id(1), "a-again", "us-east-1", &single)
        .is_err());
    // Moving a zone to another key follows the same rule.
    assert!(matches!(
        reg.set_zone_key(zone_id(2), &single).unwrap_err(),
        Error::RegionMismatch { .. }
    ));
    reg.set_zone_key(zone_id(1), &mrk).unwrap();
    assert_eq!(reg.zone(zone_id(1)).unwrap().key, mrk);
}

#[tokio::test]
async fn a_key_in_use_cannot_be_removed() {
    let (_dir, reg) = registry(20);
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    reg.add_key(&kms, k.clone(), &[]).await.unwrap();
    reg.register_zone(zone_id(1), "orders", "mock-region-1", &k)
        .unwrap();
    reg.register_zone(zone_id(2), "users", "mock-region-1", &k)
        .unwrap();
    let err = reg.remove_key(&k).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::KeyInUse { zones, .. } if zones.len() == 2),
        "{msg}"
    );
    assert!(msg.contains("orders") && msg.contains("users"), "{msg}");
    reg.unregister_zone(zone_id(1)).unwrap();
    reg.unregister_zone(zone_id(2)).unwrap();
    reg.remove_key(&k).unwrap();
    assert!(reg.keys().is_empty());
    assert!(reg.remove_key(&k).is_err());
    // The key itself still works in its provider.
    assert!(kms.validate_key(&k).await.is_valid());
}

#[tokio::test]
async fn state_survives_a_restart() {
    let (dir, reg) = registry(20);
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    let mrk = kms.add_multi_region_key("mrk-00000000000000000000000000000000");
    for region in ["r2", "r3"] {
        assert!(kms.replicate_key("mrk-00000000000000000000000000000000", region));
    }
    reg.add_key(&kms, k.clone(), &[]).await.unwrap();
    reg.add_key(&kms, mrk.clone(), &["r2", "r3"]).await.unwrap();
    reg.register_zone(zone_id(7), "orders", "r2", &mrk).unwrap();
    let (keys, zones) = (reg.keys(), reg.zones());
    drop(reg);
    let reopened = KeyRegistry::open(dir.path().join("registry")).unwrap();
    assert_eq!(reopened.keys(), keys);
    assert_eq!(reopened.zones(), zones);
    assert_eq!(keys[1].regions, vec!["mock-region-1", "r2", "r3"]);
}

#[tokio::test]
async fn corrupted_state_is_a_typed_error_and_is_not_overwritten() {
    let (dir, reg) = registry(20);
    let kms = Arc::new(MockProvider::new());
    let k = kms.add_key("k");
    reg.add_key(kms.as_ref(), k.clone(), &[]).await.unwrap();
    reg.register_zone(zone_id(1), "z", "mock-region-1", &k)
        .unwrap();
    let path = dir.path().join("registry");
    let good = std::fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x40;
        assert!(
            matches!(
                state::RegistryState::parse(&bad),
                Err(Error::Malformed { .. })
            ),
            "byte {i}"
        );
    }
    for len in 0..good.len() {
        assert!(
            state::RegistryState::parse(&good[..len]).is_err(),
            "len {len}"
        );
    }
    let mut bad = good.clone();
    bad[12] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        KeyRegistry::open(&path).unwrap_err(),
        Error::Malformed { .. }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), bad);
}

#[tokio::test]
async fn a_failed_save_changes_nothing() {
    use crate::fsutil::faults;
    use crate::fsutil::{Fault, Step};
    let (dir, reg) = registry(20);
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    reg.add_key(&kms, k.clone(), &[]).await.unwrap();
    let saved = std::fs::read(dir.path().join("registry")).unwrap();
    faults::arm(Step::Rename, Fault::NoSpace);
    let err = reg
        .register_zone(zone_id(1), "z", "mock-region-1", &k)
        .unwrap_err();
    faults::disarm();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(reg.zones().is_empty());
    faults::arm(Step::Create, Fault::NoSpace);
    let err = reg.remove_key(&k).unwrap_err();
    faults::disarm();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(reg.keys().len(), 1);
    assert_eq!(std::fs::read(dir.path().join("registry")).unwrap(), saved);
}

/// A service and the CLI (or two CLI runs) each hold a registry on one
/// file: each change is checked and made against the newest state, and
/// none is lost.
#[tokio::test]
async fn two_registries_on_one_file_lose_no_change_and_keep_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.state");
    let service = KeyRegistry::open_with_limit(&path, 3).unwrap();
    let cli = KeyRegistry::open_with_limit(&path, 3).unwrap();
    let kms = MockProvider::new();
    let (k1, k2, k3, k4) = (
        kms.add_key("k1"),
        kms.add_key("k2"),
        kms.add_key("k3"),
        kms.add_key("k4"),
    );

    // Each adds a key the other has not seen: both stay.
    service.add_key(&kms, k1.clone(), &[]).await.unwrap();
    cli.add_key(&kms, k2.clone(), &[]).await.unwrap();
    // The CLI registers a zone under the key only the service added.
    cli.register_zone(zone_id(1), "orders", "mock-region-1", &k1)
        .unwrap();
    service.add_key(&kms, k3.clone(), &[]).await.unwrap();
    let on_disk = KeyRegistry::open(&path).unwrap();
    let keys: Vec<_> = on_disk.keys().into_iter().map(|k| k.key).collect();
    assert_eq!(keys, [k1.clone(), k2.clone(), k3.clone()]);
    assert_eq!(on_disk.zones().len(), 1);

    // The rules hold against what the other wrote: the limit counts its
    // keys, and a key its zone uses cannot be removed.
    let err = cli.add_key(&kms, k4, &[]).await.unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 3, .. }),
        "{err}"
    );
    let err = service.remove_key(&k1).unwrap_err();
    assert!(
        matches!(&err, Error::KeyInUse { zones, .. } if zones.len() == 1),
        "{err}"
    );
    // A zone the other unregistered cannot be moved.
    service.unregister_zone(zone_id(1)).unwrap();
    let err = cli.set_zone_key(zone_id(1), &k2).unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
    assert!(KeyRegistry::open(&path).unwrap().zones().is_empty());

    // Each sees the other's changes after a change of its own or a reload.
    assert_eq!(service.zones(), cli.zones());
    cli.remove_key(&k3).unwrap();
    assert_eq!(service.keys().len(), 3, "not yet reloaded");
    service.reload().unwrap();
    assert_eq!(service.keys(), cli.keys());
    assert_eq!(service.keys().len(), 2);
}

#[test]
fn concurrent_registries_lose_no_key() {
    const THREADS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.state");
    let kms = MockProvider::new();
    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (path, kms) = (&path, &kms);
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let reg = KeyRegistry::open(path).unwrap();
                let key = kms.add_key(&format!("k{i}"));
                rt.block_on(reg.add_key(kms, key.clone(), &[])).unwrap();
                reg.register_zone(zone_id(i as u8), &format!("z{i}"), "mock-region-1", &key)
                    .unwrap();
            });
        }
    });
    let reg = KeyRegistry::open(&path).unwrap();
    assert_eq!(reg.keys().len(), THREADS);
    assert_eq!(reg.zones().len(), THREADS);
}

#[tokio::test]
async fn an_oversized_state_file_is_refused_and_not_overwritten() {
    let (dir, reg) = registry(20);
    let path = dir.path().join("registry");
    let kms = MockProvider::new();
    reg.add_key(&kms, kms.add_key("k"), &[]).await.unwrap();
    let mut big = std::fs::read(&path).unwrap();
    big.resize(usize::try_from(MAX_STATE_LEN).unwrap() + 1, 0);
    std::fs::write(&path, &big).unwrap();
    for err in [
        KeyRegistry::open(&path).unwrap_err(),
        reg.reload().unwrap_err(),
        reg.unregister_zone(zone_id(1)).unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    what: WHAT,
                    limit: MAX_STATE_LEN
                }
            ),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), big);
    assert_eq!(reg.keys().len(), 1, "memory unchanged");
}

/// A small state, for the known-answer test below.
fn known_state(generation: u64) -> state::RegistryState {
    let key = KeyRef::new("local", "k", "r");
    let mut s = state::RegistryState::default();
    s.keys.insert(
        key.clone(),
        state::RegisteredKey {
            key: key.clone(),
            regions: vec!["r".into()],
            added_unix: 1_700_000_000,
        },
    );
    s.zones.insert(
        zone_id(1),
        state::RegisteredZone {
            zone_id: zone_id(1),
            name: "z".into(),
            region: "r".into(),
            key,
            generation,
        },
    );
    s
}

#[test]
fn state_version_2_known_answer_and_version_1_still_parses() {
    let bytes = known_state(7).to_bytes();
    let hex = hex::encode(&bytes);
    assert_eq!(
        hex,
        "434d454b2d52454700020000000100056c6f63616c00016b000172000000006553f100000100017200000001\
         01010101010101010101010101010101\
         00017a00017200056c6f63616c00016b0001720000000000000007\
         32cbe99dfdfa4df106fa2f087afc3fc8770f8dc57bd3a083667bfbf4c97b94f4"
            .replace(char::is_whitespace, ""),
        "{hex}"
    );
    assert_eq!(state::RegistryState::parse(&bytes).unwrap(), known_state(7));
    // Version 1, as earlier releases wrote it: no generation (read as 0).
    let mut v1 = bytes[..bytes.len() - 32 - 8].to_vec();
    v1[9] = 1;
    crate::codec::seal_checksummed(&mut v1);
    assert_eq!(state::RegistryState::parse(&v1).unwrap(), known_state(0));
}

#[tokio::test]
async fn a_zones_recorded_generation_only_moves_forward() {
    let (_dir, reg) = registry(20);
    let kms = MockProvider::new();
    let key = kms.add_key("k");
    reg.add_key(&kms, key.clone(), &[]).await.unwrap();
    reg.register_zone(zone_id(1), "z", key.region(), &key)
        .unwrap();
    assert_eq!(reg.zone(zone_id(1)).unwrap().generation, 0);
    let anchor = |g| crate::zone::ZoneAnchor::new(zone_id(1), key.clone(), g);
    reg.record_zone(&anchor(5)).unwrap();
    reg.record_zone(&anchor(3)).unwrap();
    let zone = reg.zone(zone_id(1)).unwrap();
    assert_eq!(zone.generation, 5, "an older generation is not recorded");
    assert_eq!(zone.anchor(), anchor(5));
    assert!(reg
        .record_zone(&crate::zone::ZoneAnchor::new(zone_id(9), key.clone(), 1))
        .is_err());
}

#[tokio::test]
async fn only_the_provider_says_a_key_is_multi_region() {
    let (_dir, reg) = registry(20);
    let kms = MockProvider::with_region("us-east-1");
    // A key merely named like a multi-region key, and an alias named like
    // one that points to a real one: neither may claim replicas.
    let named = kms.add_key("mrk-1234abcd12ab34cd56ef1234567890ab");
    let real = kms.add_multi_region_key("real");
    let alias = kms.add_alias("alias/mrk-x", "real").unwrap();
    for key in [named.clone(), alias.clone()] {
        kms.reset_calls();
        let err = reg
            .add_key(&kms, key.clone(), &["eu-west-1"])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("single-region")),
            "{key}: {err}"
        );
        assert_eq!(kms.total_calls(), 0, "refused before any provider call");
    }
    assert!(reg.keys().is_empty());
    assert!(kms.replicate_key("real", "eu-west-1"));
    reg.add_key(&kms, real.clone(), &["eu-west-1"])
        .await
        .unwrap();
    assert_eq!(reg.keys()[0].regions, vec!["eu-west-1", "us-east-1"]);
}

#[cfg(feature = "aws-kms")]
#[tokio::test]
async fn an_aws_alias_named_mrk_is_not_a_multi_region_key() {
    use aws_config::{BehaviorVersion, Region};
    let (_dir, reg) = registry(20);
    // No endpoint it could reach: the refusal comes before any KMS call.
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .build();
    let aws = crate::provider::AwsKmsProvider::from_client(
        aws_sdk_kms::Client::from_conf(config),
        "us-east-1",
    );
    for id in [
        "alias/mrk-x",
        "arn:aws:kms:us-east-1:111122223333:alias/mrk-1234abcd12ab34cd56ef1234567890ab",
    ] {
        let err = reg
            .add_key(&aws, aws.key_ref(id), &["eu-west-1"])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::RegionMismatch { reason, .. } if reason.contains("alias")),
            "{id}: {err}"
        );
    }
    assert!(reg.keys().is_empty());
}

#[tokio::test]
async fn get_or_add_is_idempotent() {
    let (dir, reg) = registry(20);
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    let added = reg.get_or_add(&kms, k.clone(), &[]).await.unwrap();
    assert_eq!(added.key, k);
    assert_eq!(added.regions, vec!["mock-region-1"]);
    // Again, from this registry and from another one on the same file (an
    // engine restarted): the same entry, and no provider call.
    kms.reset_calls();
    assert_eq!(reg.get_or_add(&kms, k.clone(), &[]).await.unwrap(), added);
    let restarted = KeyRegistry::open(dir.path().join("registry")).unwrap();
    assert_eq!(
        restarted.get_or_add(&kms, k.clone(), &[]).await.unwrap(),
        added
    );
    assert_eq!(kms.total_calls(), 0);
    assert_eq!(reg.keys().len(), 1);
    // Other settings are refused, not silently kept or replaced.
    let mrk = kms.add_multi_region_key("mrk");
    assert!(kms.replicate_key("mrk", "r2"));
    reg.get_or_add(&kms, mrk.clone(), &["r2"]).await.unwrap();
    let err = reg.get_or_add(&kms, mrk.clone(), &[]).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("already registered")),
        "{err}"
    );
    // An invalid key is still validated and refused.
    let missing = kms.key_ref("missing");
    let err = reg.get_or_add(&kms, missing, &[]).await.unwrap_err();
    assert!(matches!(err, Error::KeyValidationFailed { .. }), "{err}");
    assert_eq!(reg.keys().len(), 2);
}

#[tokio::test]
async fn get_or_add_takes_a_key_another_registry_added_meanwhile() {
    let (dir, reg) = registry(20);
    let other = KeyRegistry::open(dir.path().join("registry")).unwrap();
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    // `other` has not seen the add: it re-reads the file and answers with
    // the entry instead of failing as a duplicate.
    let added = reg.get_or_add(&kms, k.clone(), &[]).await.unwrap();
    assert!(other.keys().is_empty());
    assert_eq!(other.get_or_add(&kms, k, &[]).await.unwrap(), added);
}

/// A store in memory that lets a test act as another writer between a
/// change's load and its replace, and counts replaces and conflicts.
#[derive(Default)]
struct RacingStore {
    inner: Arc<MemoryManifestStore>,
    /// Run at the start of the next replace, once.
    before_replace: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Slept at every replace, so that concurrent changes overlap.
    delay: Duration,
    /// Refuse every replace as a conflict.
    always_conflict: bool,
    replaces: AtomicUsize,
    conflicts: AtomicUsize,
}

impl RacingStore {
    fn over(inner: &Arc<MemoryManifestStore>) -> Self {
        Self {
            inner: Arc::clone(inner),
            ..Self::default()
        }
    }

    fn before_next_replace(&self, act: impl FnOnce() + Send + 'static) {
        *self.before_replace.lock().unwrap() = Some(Box::new(act));
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.replaces.load(Ordering::SeqCst),
            self.conflicts.load(Ordering::SeqCst),
        )
    }
}

impl std::fmt::Debug for RacingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RacingStore").finish_non_exhaustive()
    }
}

impl ManifestStore for RacingStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.inner.load()
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        self.replaces.fetch_add(1, Ordering::SeqCst);
        let act = self.before_replace.lock().unwrap().take();
        if let Some(act) = act {
            act();
        }
        std::thread::sleep(self.delay);
        let result = if self.always_conflict {
            Err(Error::Conflict {
                what: "test store",
                reason: "always".into(),
            })
        } else {
            self.inner.replace(current, new)
        };
        if matches!(result, Err(Error::Conflict { .. })) {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

#[tokio::test]
async fn a_registry_in_a_memory_store_keeps_its_rules_and_state() {
    let store = Arc::new(MemoryManifestStore::new());
    let reg = KeyRegistry::open_in_with_limit(store.clone(), 1).unwrap();
    assert_eq!(reg.path(), None);
    assert_eq!(reg.limit(), 1);
    let kms = MockProvider::new();
    let k = kms.add_key("k");
    reg.add_key(&kms, k.clone(), &[]).await.unwrap();
    reg.register_zone(zone_id(1), "orders", "mock-region-1", &k)
        .unwrap();
    let err = reg.add_key(&kms, kms.add_key("k2"), &[]).await.unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 1, .. }),
        "{err}"
    );
    assert!(matches!(
        reg.remove_key(&k).unwrap_err(),
        Error::KeyInUse { .. }
    ));
    // Stored in the file's layout, and read back by another registry.
    let stored = store.load().unwrap().unwrap();
    assert_eq!(state::RegistryState::parse(&stored).unwrap().keys.len(), 1);
    let other = KeyRegistry::open_in(store.clone()).unwrap();
    assert_eq!(other.limit(), DEFAULT_KEY_LIMIT);
    assert_eq!(other.keys(), reg.keys());
    assert_eq!(other.zones(), reg.zones());
    // A file opened by path says where it is.
    let (dir, file_reg) = registry(20);
    assert_eq!(file_reg.path(), Some(dir.path().join("registry").as_path()));
}

/// Two nodes add keys at once through one shared store: the limit holds
/// against the other's keys, every key added is kept, and every key
/// refused was refused for the limit.
#[test]
fn two_registries_racing_on_one_store_keep_the_limit_and_lose_no_key() {
    const LIMIT: usize = 5;
    let store = Arc::new(RacingStore {
        delay: Duration::from_millis(2),
        ..RacingStore::default()
    });
    let kms = MockProvider::new();
    let barrier = Barrier::new(2);
    let mut added: Vec<KeyRef> = std::thread::scope(|scope| {
        let nodes: Vec<_> = (0..2)
            .map(|node| {
                let (store, kms, barrier) = (&store, &kms, &barrier);
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let reg = KeyRegistry::open_in_with_limit(store.clone(), LIMIT).unwrap();
                    barrier.wait();
                    let mut added = Vec::new();
                    for i in 0..LIMIT {
                        let key = kms.add_key(&format!("node{node}-{i}"));
                        match rt.block_on(reg.add_key(kms, key.clone(), &[])) {
                            Ok(()) => added.push(key),
                            Err(Error::LimitExceeded { .. }) => {}
                            Err(e) => panic!("node {node}: {e}"),
                        }
                        assert!(reg.keys().len() <= LIMIT);
                    }
                    added
                })
            })
            .collect();
        nodes
            .into_iter()
            .flat_map(|node| node.join().unwrap())
            .collect()
    });
    added.sort();
    let stored: Vec<KeyRef> = KeyRegistry::open_in(store.clone())
        .unwrap()
        .keys()
        .into_iter()
        .map(|k| k.key)
        .collect();
    assert_eq!(stored, added);
    assert_eq!(stored.len(), LIMIT);
    let (_, conflicts) = store.counts();
    assert!(conflicts > 0, "the two registries never raced");
}

/// Another writer changes the state between a change's load and its
/// replace: the change is made again on the newest state, rules included.
#[tokio::test]
async fn a_change_that_meets_a_conflict_is_retried_on_the_newest_state() {
    let inner = Arc::new(MemoryManifestStore::new());
    let kms = MockProvider::new();
    let (k1, k2) = (kms.add_key("k1"), kms.add_key("k2"));
    let other = Arc::new(KeyRegistry::open_in(inner.clone()).unwrap());
    other.add_key(&kms, k1.clone(), &[]).await.unwrap();
    let store = Arc::new(RacingStore::over(&inner));
    let reg = KeyRegistry::open_in(store.clone()).unwrap();

    // The other writer's zone lands first; the key is added after it.
    let (o, k) = (other.clone(), k1.clone());
    store.before_next_replace(move || {
        o.register_zone(zone_id(1), "orders", "mock-region-1", &k)
            .unwrap()
    });
    reg.add_key(&kms, k2.clone(), &[]).await.unwrap();
    assert_eq!(store.counts(), (2, 1), "one conflict, one retry");
    other.reload().unwrap();
    let keys: Vec<_> = other.keys().into_iter().map(|k| k.key).collect();
    assert_eq!(keys, [k1.clone(), k2.clone()]);
    assert_eq!(other.zones().len(), 1, "the other writer's zone is kept");
    assert_eq!(reg.zones(), other.zones(), "memory shows the newest state");

    // A zone registered under k2 while it is being removed: the retry
    // sees it, and the key stays.
    let (o, k) = (other.clone(), k2.clone());
    store.before_next_replace(move || {
        o.register_zone(zone_id(2), "users", "mock-region-1", &k)
            .unwrap()
    });
    let err = reg.remove_key(&k2).unwrap_err();
    assert!(
        matches!(&err, Error::KeyInUse { zones, .. } if zones.len() == 1),
        "{err}"
    );
    assert_eq!(store.counts(), (3, 2), "refused on the retry's state");
    other.reload().unwrap();
    assert_eq!(other.keys().len(), 2);
    assert_eq!(other.zones().len(), 2);
}

#[tokio::test]
async fn a_store_that_always_conflicts_gives_a_typed_conflict() {
    let inner = Arc::new(MemoryManifestStore::new());
    let store = Arc::new(RacingStore {
        always_conflict: true,
        ..RacingStore::over(&inner)
    });
    let reg = KeyRegistry::open_in(store.clone()).unwrap();
    let kms = MockProvider::new();
    let err = reg.add_key(&kms, kms.add_key("k"), &[]).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { what: WHAT, .. }) && err.is_transient(),
        "{err}"
    );
    assert_eq!(store.counts(), (MAX_ATTEMPTS, MAX_ATTEMPTS));
    assert!(reg.keys().is_empty());
    assert_eq!(inner.load().unwrap(), None, "nothing written");
}

#[test]
fn a_state_over_the_cap_from_any_store_is_refused_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry");
    let mut big = RegistryState::default().to_bytes();
    big.resize(usize::try_from(MAX_STATE_LEN).unwrap() + 1, 0);
    std::fs::write(&path, &big).unwrap();
    let memory = Arc::new(MemoryManifestStore::new());
    memory.replace(None, &big).unwrap();
    // The zone manifest's cap is not the registry's: the registry checks
    // its own on whatever a store returns.
    let file = Arc::new(crate::zone::FileManifestStore::new(&path));
    assert!(file.load().unwrap().is_some());
    let stores: [Arc<dyn ManifestStore>; 2] = [memory.clone(), file];
    for store in stores {
        let err = KeyRegistry::open_in(store).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LimitExceeded {
                    what: WHAT,
                    limit: MAX_STATE_LEN
                }
            ),
            "{err}"
        );
    }
    assert_eq!(memory.load().unwrap().unwrap(), big);
    assert_eq!(std::fs::read(&path).unwrap(), big);
}

#[test]
fn a_corrupted_state_in_a_store_is_malformed_and_not_overwritten() {
    let store = Arc::new(MemoryManifestStore::new());
    let mut bad = known_state(1).to_bytes();
    bad[12] ^= 1;
    store.replace(None, &bad).unwrap();
    assert!(matches!(
        KeyRegistry::open_in(store.clone()).unwrap_err(),
        Error::Malformed { .. }
    ));
    assert_eq!(store.load().unwrap().unwrap(), bad);
}
