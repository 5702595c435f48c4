//! Zones, the key monitor and backups under Azure Key Vault keys, against
//! the Key Vault protocol fake on loopback (`scripts/azure_kv_fake.py`,
//! started by `scripts/test`), over HTTPS with the official SDK.
//!
//! The scenario suite runs on the vault's keys: a zone's life with no call
//! to the vault while segments are written and read (the fake's own
//! request counter), the monitor gating a zone whose key is disabled and
//! serving it again once enabled, and a backup restored into a zone under
//! an oct-HSM key. A zone created under a versionless key name records the
//! key's current version and follows the vault's newer one on root
//! rotation. A backup is refused in another region (Key Vault has no
//! multi-region keys).
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
#![cfg(all(feature = "azure-kv", feature = "testing"))]

mod azure_kv_common;

use std::sync::Arc;

use async_trait::async_trait;

use azure_kv_common::forge::{Manifest, PublicHalf};
use azure_kv_common::{fake, REGION};
use cmek::backup::{Restore, SourceTrust};
use cmek::provider::azure::NewKeyType;
use cmek::provider::AzureKeyVaultProvider;
use cmek::testing::scenarios;
use cmek::zone::{
    Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneManifest, ZoneOrigin,
    ZoneSpec,
};
use cmek::{Error, KeyProvider, KeyRef, KeyState, Result, SecretKey, WrappedKey};

/// The scenario suite's fixture: keys of one type in the fake vault, whose
/// request counter is kept per key name; backups restore under a key of
/// the other type.
struct Scenarios {
    fake: azure_kv_common::Fake,
    provider: Arc<AzureKeyVaultProvider>,
    restore_type: NewKeyType,
}

#[async_trait]
impl scenarios::Fixture for Scenarios {
    fn provider(&self) -> Arc<dyn KeyProvider> {
        self.provider.clone()
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        let name = self.fake.unique_name("scenario");
        Ok(self.fake.create(&self.provider, &name).await)
    }
    async fn restore_target(&self) -> Result<(Arc<dyn KeyProvider>, KeyRef)> {
        let other = self.fake.provider_with(self.restore_type);
        let key = self
            .fake
            .create(&other, &self.fake.unique_name("restored"))
            .await;
        Ok((other, key))
    }
    async fn server_calls(&self, key: &KeyRef) -> Option<u64> {
        // `<vault>/keys/<name>/<version>`: the fake counts by name.
        let name = key.key_id().split("/keys/").nth(1)?.split('/').next()?;
        Some(self.fake.calls(name).await)
    }
}

async fn passes_the_scenarios(key_type: NewKeyType, restore_type: NewKeyType) {
    let Some(fake) = fake() else { return };
    let provider = fake.provider_with(key_type);
    let report = scenarios::run(&Scenarios {
        fake,
        provider,
        restore_type,
    })
    .await;
    println!("{report}");
    report.assert_all_passed();
}

#[tokio::test]
async fn rsa_keys_pass_the_scenarios() {
    passes_the_scenarios(NewKeyType::Rsa3072, NewKeyType::OctHsm256).await;
}

#[tokio::test]
async fn oct_hsm_keys_pass_the_scenarios() {
    passes_the_scenarios(NewKeyType::OctHsm256, NewKeyType::Rsa3072).await;
}

#[tokio::test]
async fn a_zone_under_a_versionless_name_follows_the_vaults_versions() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("zone");
    let v1 = fake.create(&p, &name).await;
    let versionless = p.key_ref(&fake.key_url(&name));
    let store = Arc::new(MemoryManifestStore::new());
    let zone = Keyring::new(p.clone() as Arc<dyn KeyProvider>)
        .create_zone(
            store.clone(),
            ZoneSpec::new("orders", REGION, versionless.clone()),
        )
        .await
        .unwrap();
    // The zone records the version current at creation.
    assert_eq!(zone.root(), v1);
    let segment = zone.encrypt_segment("orders/1", b"under v1").unwrap();

    // EZK rotation: one wrap, which is three requests (get key, wrapKey,
    // sign), and the counter sees them.
    let at_rotation = fake.calls(&name).await;
    zone.rotate_ezk().await.unwrap();
    assert_eq!(fake.calls(&name).await, at_rotation + 3);

    // The vault makes a new version current; rotating the root to the
    // versionless name moves the zone to it.
    let v2 = fake.create(&p, &name).await;
    zone.rotate_root(versionless).await.unwrap();
    assert_eq!(zone.root(), v2);
    assert_eq!(zone.manifest().root(), &v2);

    // With v1 disabled, the zone reopens under v2 and reads what v1 wrote;
    // with v2 disabled too, it is refused.
    p.admin().unwrap().disable_key(&v1).await.unwrap();
    let reopened = Keyring::new(fake.provider() as Arc<dyn KeyProvider>)
        .open_zone(store.clone(), &zone.anchor())
        .await
        .unwrap();
    assert_eq!(reopened.root(), v2);
    assert_eq!(
        &reopened.decrypt_segment("orders/1", &segment).unwrap()[..],
        b"under v1"
    );
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
async fn a_backup_is_refused_in_another_region() {
    let Some(fake) = fake() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = fake.provider();
    let root = fake.create(&p, &fake.unique_name("backup")).await;
    let backed = scenarios::zone_with_backup(
        &Keyring::new(p.clone() as Arc<dyn KeyProvider>),
        ZoneSpec::new("orders", REGION, root.clone()),
        dir.path(),
    )
    .await
    .unwrap();

    // Key Vault has no multi-region keys: in another region the restore is
    // refused before anything is written, saying that a key of that region
    // is needed.
    let mut options = fake.options(NewKeyType::Rsa3072);
    options.region = "eastus".into();
    let elsewhere = Arc::new(AzureKeyVaultProvider::new(options).unwrap());
    let other_root = fake.create(&elsewhere, &fake.unique_name("eastus")).await;
    assert_eq!(other_root.region(), "eastus");
    let dest = dir.path().join("restored-eastus");
    let err = Restore::rewrap(
        &backed.bundle,
        &dest,
        Keyring::new(elsewhere.clone() as Arc<dyn KeyProvider>),
        SourceTrust::roots([root]),
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
