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
//! A storage attacker who reads an RSA key's public half forges a wrap of
//! their own EZK (RSA-OAEP-256 is encryption under the public half) and a
//! manifest that keeps the real EZK record, adds theirs as the active one
//! at a higher generation, and carries a MAC made with their EZK: neither
//! `open_zone` with the caller's anchor, nor a running zone's `reload`, nor
//! `open_or_create_zone` on a planted zone takes it in. A zone whose wraps
//! are in the unsigned format of earlier releases opens only through the
//! explicit `Keyring::adopt_legacy_wraps`.
//!
//! Without the fake (`CMEK_AZURE_KV_VAULT`, `CMEK_AZURE_KV_TOKEN`,
//! `CMEK_AZURE_KV_CA_FILE`) these tests fail when `CMEK_REQUIRE_KMS=1` or
//! `CI` is set, and otherwise say they were skipped.
#![cfg(feature = "azure-kv")]

mod azure_kv_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_kv_common::forge::{Manifest, PublicHalf};
use azure_kv_common::{fake, REGION};
use cmek::backup::{create_backup, Restore, RestoreMode, SourceTrust, SEGMENTS_DIR};
use cmek::provider::azure::NewKeyType;
use cmek::provider::AzureKeyVaultProvider;
use cmek::zone::{
    Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneManifest, ZoneOrigin,
    ZoneSpec,
};
use cmek::{Error, KeyProvider, KeyRef, KeyState, SecretKey, WrappedKey};

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

    // EZK rotation: one wrap, which is three requests (get key, wrapKey,
    // sign), and the counter sees them.
    let at_rotation = fake.calls(&name).await;
    zone.rotate_ezk().await.unwrap();
    let before = fake.calls(&name).await;
    assert_eq!(before, at_rotation + 3);
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

/// One forgery: what it is, the attacker's EZK, its forged wrap, and the
/// refusal it must get.
type Forged = (&'static str, [u8; 32], WrappedKey, fn(&Error) -> bool);

/// The attacker's own EZK, and wraps of it as EZK `version` of zone
/// `zone_id` forged from `root`'s public half: in the unsigned format 1
/// (what earlier releases wrote and accepted) and in format 2 with a
/// signature by the attacker's own RSA key. With the refusal each must get.
async fn attackers_ezk(
    p: &AzureKeyVaultProvider,
    root: &KeyRef,
    zone_id: &ZoneId,
    version: u32,
) -> Vec<Forged> {
    let public = PublicHalf::of(p, root).await;
    let context = ZoneManifest::ezk_context(zone_id, version);
    let mut out: Vec<Forged> = Vec::new();
    for label in ["format 1 (unsigned)", "format 2 (signed by another key)"] {
        let mut ezk = [0u8; 32];
        getrandom::fill(&mut ezk).unwrap();
        let key = SecretKey::from_slice(&ezk).unwrap();
        if label.starts_with("format 1") {
            out.push((label, ezk, public.legacy_wrap(&key, &context), |e| {
                matches!(e, Error::StateRejected { .. })
            }));
        } else {
            out.push((label, ezk, public.self_signed_wrap(&key, &context), |e| {
                matches!(e, Error::Integrity { .. })
            }));
        }
    }
    out
}

/// The real manifest `real`, its EZK records kept, with the attacker's
/// wrapped EZK added as the active version, the generation raised past any
/// anchor, and the MAC made with the attacker's EZK.
fn with_attackers_ezk(real: &[u8], wrapped: WrappedKey, ezk: &[u8; 32]) -> Vec<u8> {
    let mut m = Manifest::of(real);
    let next = m.active + 1;
    m.ezks.push((next, m.updated, 0, wrapped));
    m.active = next;
    m.generation += 10;
    m.seal(ezk)
}

fn assert_refused(label: &str, err: &Error, expected: fn(&Error) -> bool) {
    assert!(
        expected(err),
        "{label}: refused with the wrong error: {err:?}"
    );
    assert!(!err.is_transient(), "{label}: refused as transient: {err}");
}

/// A zone under an RSA key, its store, and its anchor.
async fn victim(
    fake: &azure_kv_common::Fake,
    p: &Arc<AzureKeyVaultProvider>,
) -> (KeyRef, Arc<MemoryManifestStore>, cmek::zone::Zone) {
    let root = fake.create(p, &fake.unique_name("victim")).await;
    let store = Arc::new(MemoryManifestStore::new());
    let zone = Keyring::new(p.clone() as Arc<dyn KeyProvider>)
        .create_zone(store.clone(), ZoneSpec::new("orders", REGION, root.clone()))
        .await
        .unwrap();
    (root, store, zone)
}

#[tokio::test]
async fn open_zone_refuses_a_manifest_with_the_attackers_ezk() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let (root, store, zone) = victim(&fake, &p).await;
    let anchor = zone.anchor();
    let real = store.load().unwrap().unwrap();
    for (label, ezk, wrapped, expected) in attackers_ezk(&p, &root, &zone.id(), 2).await {
        let planted = Arc::new(MemoryManifestStore::new());
        planted
            .replace(None, &with_attackers_ezk(&real, wrapped, &ezk))
            .unwrap();
        let result = Keyring::new(p.clone() as Arc<dyn KeyProvider>)
            .open_zone(planted, &anchor)
            .await;
        match result {
            Ok(opened) => panic!(
                "{label}: the forged manifest opened, active EZK version {}",
                opened.manifest().active_version()
            ),
            Err(err) => assert_refused(label, &err, expected),
        }
    }
}

#[tokio::test]
async fn a_running_zone_refuses_to_reload_a_manifest_with_the_attackers_ezk() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let (root, store, zone) = victim(&fake, &p).await;
    let segment = zone.encrypt_segment("orders/1", b"rows").unwrap();
    let real = store.load().unwrap().unwrap();
    for (label, ezk, wrapped, expected) in attackers_ezk(&p, &root, &zone.id(), 2).await {
        let forged = with_attackers_ezk(&real, wrapped, &ezk);
        store.replace(Some(&real), &forged).unwrap();
        match zone.reload().await {
            Ok(()) => panic!(
                "{label}: the running zone took in the forged manifest, active EZK version {}",
                zone.manifest().active_version()
            ),
            Err(err) => assert_refused(label, &err, expected),
        }
        // Nothing changed: still the zone's own EZK, still serving.
        assert_eq!(zone.manifest().active_version(), 1, "{label}");
        assert_eq!(
            &zone.decrypt_segment("orders/1", &segment).unwrap()[..],
            b"rows"
        );
        store.replace(Some(&forged), &real).unwrap();
    }
}

#[tokio::test]
async fn open_or_create_zone_refuses_a_zone_planted_with_the_attackers_ezk() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("planted");
    let root = fake.create(&p, &name).await;
    let versionless = p.key_ref(&fake.key_url(&name));
    let spec = ZoneSpec::new("orders", REGION, versionless.clone());
    let zone_id = ZoneId::generate().unwrap();
    for (label, ezk, wrapped, expected) in attackers_ezk(&p, &root, &zone_id, 1).await {
        // A whole zone under the customer's key, made for the spec's name,
        // region and chunk size: everything a node that creates the zone
        // with the others checks.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let planted = Manifest {
            zone_id,
            body_zone_id: zone_id,
            generation: 1,
            created: now,
            updated: now,
            name: spec.name.clone(),
            region: spec.region.clone(),
            root: root.clone(),
            root_alias: versionless.key_id().to_owned(),
            chunk_size: spec.stream.chunk_size() as u32,
            active: 1,
            ezks: vec![(1, now, 0, wrapped)],
        }
        .seal(&ezk);
        let store = Arc::new(MemoryManifestStore::new());
        store.replace(None, &planted).unwrap();
        let result = Keyring::new(p.clone() as Arc<dyn KeyProvider>)
            .open_or_create_zone(store, spec.clone())
            .await;
        match result {
            Ok((_, origin)) => panic!("{label}: the planted zone was taken, as {origin:?}"),
            Err(err) => assert_refused(label, &err, expected),
        }
    }
    // The spec itself is fine: in an empty store the zone is created.
    let (_, origin) = Keyring::new(p.clone() as Arc<dyn KeyProvider>)
        .open_or_create_zone(Arc::new(MemoryManifestStore::new()), spec)
        .await
        .unwrap();
    assert_eq!(origin, ZoneOrigin::Created);
}

/// A zone whose EZK is wrapped in the unsigned format earlier releases
/// wrote opens only through `adopt_legacy_wraps`, which rewraps it signed;
/// then it opens as any other.
#[tokio::test]
async fn unsigned_wraps_are_taken_in_only_by_an_explicit_adoption() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let root = fake.create(&p, &fake.unique_name("adopt")).await;
    // The zone as an earlier release left it: its EZK wrapped without a
    // signature (the same bytes as a forgery: that is the point).
    let zone_id = ZoneId::generate().unwrap();
    let mut ezk = [0u8; 32];
    getrandom::fill(&mut ezk).unwrap();
    let wrapped = PublicHalf::of(&p, &root).await.legacy_wrap(
        &SecretKey::from_slice(&ezk).unwrap(),
        &ZoneManifest::ezk_context(&zone_id, 1),
    );
    let bytes = Manifest {
        zone_id,
        body_zone_id: zone_id,
        generation: 3,
        created: 1_700_000_000,
        updated: 1_700_000_000,
        name: "orders".into(),
        region: REGION.into(),
        root: root.clone(),
        root_alias: String::new(),
        chunk_size: 65536,
        active: 1,
        ezks: vec![(1, 1_700_000_000, 0, wrapped)],
    }
    .seal(&ezk);
    let store = Arc::new(MemoryManifestStore::new());
    store.replace(None, &bytes).unwrap();
    let anchor = ZoneAnchor::new(zone_id, root.clone(), 3);
    let keyring = Keyring::new(p.clone() as Arc<dyn KeyProvider>);

    let err = keyring.open_zone(store.clone(), &anchor).await.unwrap_err();
    assert!(
        matches!(err, Error::StateRejected { .. })
            && err.to_string().contains("adopt_legacy_wraps"),
        "{err}"
    );
    // The anchor still rules the adoption.
    let other = ZoneAnchor::new(ZoneId::generate().unwrap(), root.clone(), 3);
    assert!(matches!(
        keyring.adopt_legacy_wraps(store.clone(), &other).await,
        Err(Error::StateRejected { .. })
    ));
    assert_eq!(store.load().unwrap().unwrap(), bytes, "nothing written");

    let zone = keyring
        .adopt_legacy_wraps(store.clone(), &anchor)
        .await
        .unwrap();
    assert_eq!(zone.manifest().generation(), 4);
    for (version, record) in zone.manifest().ezk_versions() {
        assert!(!p.is_legacy_wrap(&record.wrapped), "EZK version {version}");
    }
    let segment = zone.encrypt_segment("orders/1", b"rows").unwrap();
    let reopened = Keyring::new(fake.provider() as Arc<dyn KeyProvider>)
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(
        &reopened.decrypt_segment("orders/1", &segment).unwrap()[..],
        b"rows"
    );
    // Once adopted, adopting again writes nothing: it opens.
    let stored = store.load().unwrap().unwrap();
    let again = keyring
        .adopt_legacy_wraps(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(again.manifest().generation(), zone.manifest().generation());
    assert_eq!(store.load().unwrap().unwrap(), stored);
}
