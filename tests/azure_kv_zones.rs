//! Zones, the key monitor and backups under Azure Key Vault keys, against
//! the Key Vault protocol fake on loopback (`scripts/azure_kv_fake.py`,
//! started by `scripts/test`), over HTTPS with the official SDK.
//!
//! A zone created under a versionless key name records the key's current
//! version; it is written, its EZK rotated, its root rotated to the vault's
//! newer version, and reopened from its manifest with the old version
//! disabled — with no call to the vault while segments are written and
//! read (the fake's own request counter). The monitor gates a zone whose
//! key is disabled and serves it again once enabled. A backup restores
//! into a zone under another Key Vault key in the same region, and is
//! refused in another region (Key Vault has no multi-region keys).
//!
//! Without the fake (`CMEK_AZURE_KV_VAULT`, `CMEK_AZURE_KV_TOKEN`,
//! `CMEK_AZURE_KV_CA_FILE`) these tests fail when `CMEK_REQUIRE_KMS=1` or
//! `CI` is set, and otherwise say they were skipped.
#![cfg(feature = "azure-kv")]

mod azure_kv_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_kv_common::{fake, REGION};
use cmek::backup::{create_backup, Restore, RestoreMode, SourceTrust, SEGMENTS_DIR};
use cmek::provider::azure::NewKeyType;
use cmek::provider::AzureKeyVaultProvider;
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
use cmek::{Error, KeyProvider, KeyState};

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test]
async fn a_zone_is_created_rotated_and_reopened_with_no_call_on_the_data_path() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("zone");
    let v1 = fake.create(&p, &name).await;
    let versionless = p.key_ref(&fake.key_url(&name));
    let keyring = Keyring::new(p.clone() as Arc<dyn KeyProvider>);
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", REGION, versionless.clone()),
        )
        .await
        .unwrap();
    // The zone records the version current at creation.
    assert_eq!(zone.root(), v1);

    // Writing and reading segments calls nothing.
    let before = fake.calls(&name).await;
    let mut segments = Vec::new();
    for i in 0..8u8 {
        let id = format!("orders/{i}");
        let pt = pattern(1000 * usize::from(i) + 1, i);
        let ct = zone.encrypt_segment(&id, &pt).unwrap();
        assert_eq!(&zone.decrypt_segment(&id, &ct).unwrap()[..], &pt[..]);
        segments.push((id, pt, ct));
    }
    assert_eq!(fake.calls(&name).await, before, "a call on the data path");

    // EZK rotation: one wrap, which is two requests (get key, wrapKey),
    // and the counter sees them.
    let at_rotation = fake.calls(&name).await;
    zone.rotate_ezk().await.unwrap();
    let before = fake.calls(&name).await;
    assert_eq!(before, at_rotation + 2);
    let pt = pattern(70_000, 9);
    let ct = zone.encrypt_segment("orders/9", &pt).unwrap();
    assert_eq!(&zone.decrypt_segment("orders/9", &ct).unwrap()[..], &pt[..]);
    segments.push(("orders/9".into(), pt, ct));
    assert_eq!(fake.calls(&name).await, before, "a call on the data path");

    // The vault makes a new version current; rotating the root to the
    // versionless name moves the zone to it.
    let v2 = fake.create(&p, &name).await;
    zone.rotate_root(versionless.clone()).await.unwrap();
    assert_eq!(zone.root(), v2);
    assert_eq!(zone.manifest().root(), &v2);

    // With v1 disabled, the zone reopens from its manifest in a new
    // keyring, and every segment decrypts there.
    p.admin().unwrap().disable_key(&v1).await.unwrap();
    let reopened = Keyring::new(fake.provider() as Arc<dyn KeyProvider>)
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(reopened.root(), v2);
    let before = fake.calls(&name).await;
    for (id, pt, ct) in &segments {
        assert_eq!(
            &reopened.decrypt_segment(id, ct).unwrap()[..],
            &pt[..],
            "{id}"
        );
    }
    let ct = reopened.encrypt_segment("orders/10", b"after").unwrap();
    assert_eq!(
        &zone.decrypt_segment("orders/10", &ct).unwrap()[..],
        b"after"
    );
    assert_eq!(fake.calls(&name).await, before, "a call on the data path");

    // Disabling v2 stops the zone from opening, and says why.
    p.admin().unwrap().disable_key(&v2).await.unwrap();
    let err = Keyring::new(fake.provider() as Arc<dyn KeyProvider>)
        .open_zone(store, &zone.anchor())
        .await
        .unwrap_err();
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
}

#[tokio::test]
async fn the_monitor_gates_the_zone_while_its_key_is_disabled() {
    use cmek::monitor::{KeyMonitor, MonitorConfig, MonitorEvent};
    use cmek::zone::ZoneAvailability;

    let Some(fake) = fake() else { return };
    let p = fake.provider_with(NewKeyType::OctHsm256);
    let root = fake.create(&p, &fake.unique_name("monitor")).await;
    let keyring = Keyring::new(p.clone() as Arc<dyn KeyProvider>);
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", REGION, root.clone()),
        )
        .await
        .unwrap();
    let segment = zone.encrypt_segment("orders/1", b"rows").unwrap();

    let interval = Duration::from_millis(500);
    let monitor = KeyMonitor::new(MonitorConfig::with_interval(interval));
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    let _loop = monitor.spawn();
    let deadline = interval + monitor.config().check_timeout;
    async fn next_availability(
        events: &mut tokio::sync::broadcast::Receiver<MonitorEvent>,
        deadline: Duration,
    ) -> ZoneAvailability {
        tokio::time::timeout(deadline, async {
            loop {
                if let MonitorEvent::ZoneAvailabilityChanged { new, .. } =
                    events.recv().await.unwrap()
                {
                    return new;
                }
            }
        })
        .await
        .expect("the zone follows its key within one interval plus one check")
    }

    p.admin().unwrap().disable_key(&root).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        next_availability(&mut events, deadline).await,
        ZoneAvailability::Unavailable(KeyState::Disabled)
    );
    assert!(started.elapsed() < deadline);
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

    p.admin().unwrap().enable_key(&root).await.unwrap();
    assert_eq!(
        next_availability(&mut events, deadline).await,
        ZoneAvailability::Available
    );
    assert_eq!(
        &zone.decrypt_segment("orders/1", &segment).unwrap()[..],
        b"rows"
    );
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
async fn a_backup_restores_under_another_key_and_not_in_another_region() {
    let Some(fake) = fake() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = fake.provider();
    let root = fake.create(&p, &fake.unique_name("backup")).await;
    let keyring = Keyring::new(p.clone() as Arc<dyn KeyProvider>);
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("orders", REGION, root.clone()),
        )
        .await
        .unwrap();
    let seg_dir = dir.path().join("zone");
    std::fs::create_dir_all(&seg_dir).unwrap();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut plaintexts = Vec::new();
    for (i, len) in [0usize, 100, 70_000].into_iter().enumerate() {
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
    let bundle = create_backup(&zone.manifest(), files, dir.path().join("backup"), |_| {}).unwrap();
    let copy = dir.path().join("backup-copy");
    copy_dir(bundle.dir(), &copy);

    // In the same region, into a zone under another key (an oct-HSM one).
    let hsm = fake.provider_with(NewKeyType::OctHsm256);
    let new_root = fake.create(&hsm, &fake.unique_name("restored")).await;
    let trust = SourceTrust::roots([root.clone()]);
    for mode in [RestoreMode::Rewrap, RestoreMode::Reencrypt] {
        let dest = dir.path().join(format!("restored-{mode:?}"));
        let spec = ZoneSpec::new("orders-restored", REGION, new_root.clone());
        let source = Keyring::new(p.clone() as Arc<dyn KeyProvider>);
        let target = Keyring::new(hsm.clone() as Arc<dyn KeyProvider>);
        let restore = match mode {
            RestoreMode::Rewrap => {
                Restore::rewrap(&copy, &dest, source, trust.clone(), target, spec)
            }
            _ => Restore::reencrypt(&copy, &dest, source, trust.clone(), target, spec),
        };
        let report = restore.run(|_| {}).await.unwrap();
        assert_eq!(report.restored, plaintexts.len(), "{mode:?}");
        let restored = report.zone.as_ref().unwrap();
        assert_eq!(restored.root(), new_root);
        for (id, pt) in &plaintexts {
            let bytes =
                std::fs::read(dest.join(SEGMENTS_DIR).join(id.replace('/', "%2F"))).unwrap();
            assert_eq!(&restored.decrypt_segment(id, &bytes).unwrap()[..], &pt[..]);
        }
    }

    // In another region: refused before anything is written, saying that
    // a key of that region is needed.
    let mut options = fake.options(NewKeyType::Rsa3072);
    options.region = "eastus".into();
    let elsewhere = Arc::new(AzureKeyVaultProvider::new(options).unwrap());
    let other_root = fake.create(&elsewhere, &fake.unique_name("eastus")).await;
    assert_eq!(other_root.region(), "eastus");
    let dest = dir.path().join("restored-eastus");
    let err = Restore::rewrap(
        &copy,
        &dest,
        Keyring::new(elsewhere.clone() as Arc<dyn KeyProvider>),
        trust,
        Keyring::new(elsewhere.clone() as Arc<dyn KeyProvider>),
        ZoneSpec::new("orders-eastus", "eastus", other_root),
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
            assert_eq!((key_region.as_str(), region.as_str()), (REGION, "eastus"));
            assert!(reason.contains("region it is used from"), "{reason}");
        }
        other => panic!("expected a region mismatch, got {other}"),
    }
    assert!(!dest.exists(), "refused before anything was written");
}
