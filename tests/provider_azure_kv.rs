//! The Azure Key Vault provider against the Key Vault protocol fake on
//! loopback (`scripts/azure_kv_fake.py`, started by `scripts/test`), over
//! HTTPS with the official SDK: the conformance suite for RSA and oct-HSM
//! keys (with wraps forged from an RSA key's public half, which must be
//! refused), context binding, key versions, signed RSA wraps, states
//! (disabled, nbf/exp, soft deleted, purged), validation naming the refused
//! permission, and the bearer token.
//!
//! The fake's address comes from `CMEK_AZURE_KV_VAULT` (with
//! `CMEK_AZURE_KV_TOKEN` and `CMEK_AZURE_KV_CA_FILE`). Without them these
//! tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise say
//! they were skipped. The fake is written from the public REST reference,
//! not Key Vault itself: docs/AZURE_KEY_VAULT.md lists what it does not
//! model.
//!
//! `CMEK_AZURE_KV_TEST_KEY=https://VAULT/keys/NAME` (off by default) also
//! runs the conformance suite against that real key, with the standard
//! credential chain and `CMEK_AZURE_KV_TEST_REGION` (default `westeurope`).
#![cfg(all(feature = "azure-kv", feature = "testing"))]

mod azure_kv_common;

use std::sync::Arc;

use async_trait::async_trait;
use azure_kv_common::forge::PublicHalf;
use azure_kv_common::{fake, Fake};
use cmek::provider::azure::NewKeyType;
use cmek::provider::{
    AzureKeyVaultOptions, AzureKeyVaultProvider, KeyProvider, NewKey, StepOutcome,
    ValidationFailure,
};
use cmek::testing::conformance::{self, Fixture, ForgedWrap, Forgery, Outcome};
use cmek::{EncryptionContext, Error, KeyRef, KeyState, Result, SecretKey, WrappedKey};

/// Why no wrap under an oct-HSM key can be forged.
const OCT_NO_PUBLIC_MATERIAL: &str = "no public material: a 256-bit oct-HSM key inside the \
     Managed HSM; every wrap is the HSM's wrapKey (A256KW) with the key";

struct Azure {
    fake: Fake,
    provider: Arc<AzureKeyVaultProvider>,
    key_type: NewKeyType,
}

/// Wraps of `key` forged from `root`'s public half: in format 1 (as
/// earlier releases accepted them) and in format 2 with the forger's own
/// signature.
async fn forge_rsa(
    p: &AzureKeyVaultProvider,
    root: &KeyRef,
    key: &SecretKey,
    context: &EncryptionContext,
) -> Vec<ForgedWrap> {
    let public = PublicHalf::of(p, root).await;
    vec![
        ForgedWrap {
            label: "format 1: RSA-OAEP-256 under the public half, no signature".into(),
            wrapped: public.legacy_wrap(key, context),
            legacy: true,
        },
        ForgedWrap {
            label: "format 2: RSA-OAEP-256 under the public half, signed by another RSA key".into(),
            wrapped: public.self_signed_wrap(key, context),
            legacy: false,
        },
    ]
}

#[async_trait]
impl Fixture for Azure {
    fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }
    async fn enabled_key(&self) -> Result<KeyRef> {
        let name = self.fake.unique_name("conformance");
        self.provider
            .admin()
            .unwrap()
            .create_key(&NewKey::named(self.fake.key_url(&name)))
            .await
    }
    fn missing_key(&self) -> KeyRef {
        self.provider
            .key_ref(&self.fake.key_url(&self.fake.unique_name("never-created")))
    }
    async fn forge(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<Forgery> {
        Ok(match self.key_type {
            NewKeyType::OctHsm256 => Forgery::NoPublicMaterial(OCT_NO_PUBLIC_MATERIAL),
            _ => Forgery::Wraps(forge_rsa(&self.provider, root, key, context).await),
        })
    }
}

async fn conforms(key_type: NewKeyType) {
    let Some(fake) = fake() else { return };
    let fixture = Azure {
        provider: fake.provider_with(key_type),
        fake,
        key_type,
    };
    let report = conformance::run(&fixture).await;
    report.assert_conforms();
    assert_eq!(report.provider, "azure-kv");
    // Key states are enforced and a wrong key is an integrity failure:
    // nothing waived.
    for check in [
        "round_trip",
        "context_binding",
        "wrong_key",
        "modified_blob",
        "disabled_key",
        "missing_key",
        "validation",
        "home_region",
        "generate_key",
    ] {
        assert_eq!(report.outcome(check), Some(&Outcome::Passed), "{report}");
    }
    // Forged wraps are refused under an RSA key; an oct-HSM key has no
    // public material, and the report says so.
    match (key_type, report.outcome("forged_wrap")) {
        (NewKeyType::OctHsm256, Some(Outcome::Skipped(why))) => {
            assert_eq!(*why, OCT_NO_PUBLIC_MATERIAL)
        }
        (NewKeyType::OctHsm256, other) => panic!("forged_wrap: {other:?}\n{report}"),
        (_, outcome) => assert_eq!(outcome, Some(&Outcome::Passed), "{report}"),
    }
    println!("{report}");
}

#[tokio::test]
async fn rsa_keys_conform() {
    conforms(NewKeyType::Rsa3072).await;
}

#[tokio::test]
async fn oct_hsm_keys_conform() {
    conforms(NewKeyType::OctHsm256).await;
}

fn ctx(zone: &str) -> EncryptionContext {
    EncryptionContext::new()
        .with("cmek:zone", zone)
        .with("cmek:purpose", "ezk")
}

#[tokio::test]
async fn the_context_is_bound_and_the_blob_records_algorithm_and_version() {
    let Some(fake) = fake() else { return };
    // (type, algorithm, result length, signature length)
    for (key_type, algorithm, len, signature) in [
        (NewKeyType::Rsa3072, 0x01u8, 384usize, 384usize),
        (NewKeyType::OctHsm256, 0x02, 72, 0),
    ] {
        let p = fake.provider_with(key_type);
        let root = fake.create(&p, &fake.unique_name("bound")).await;
        let version = root.key_id().rsplit('/').next().unwrap().to_owned();
        let key = SecretKey::generate().unwrap();
        let wrapped = p.wrap_key(&root, &key, &ctx("a")).await.unwrap();
        let bytes = wrapped.as_bytes();
        // version 2 ‖ algorithm ‖ len ‖ key version ‖ salt ‖ result
        // ‖ signature (RSA only)
        assert_eq!(bytes[..2], [0x02, algorithm]);
        assert_eq!(usize::from(bytes[2]), version.len());
        assert_eq!(&bytes[3..3 + version.len()], version.as_bytes());
        assert_eq!(bytes.len(), 3 + version.len() + 16 + len + signature);
        assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("a")).await.unwrap(), key);
        // The service unwraps it under any context; cmek refuses another.
        let err = p.unwrap_key(&root, &wrapped, &ctx("b")).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
        // The salt is bound too: moving another blob's salt in fails.
        let mut moved = bytes.to_vec();
        moved[3 + version.len()] ^= 1;
        let err = p
            .unwrap_key(&root, &WrappedKey::from_bytes(moved), &ctx("a"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }
}

/// An RSA wrap is signed by the key version that wrapped; the signature is
/// checked against the public half the vault gives before `unwrapKey` is
/// called, and a wrap in the unsigned format of earlier releases is refused
/// without any call.
#[tokio::test]
async fn rsa_wraps_are_signed_and_checked_before_the_vault_unwraps() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("signed");
    let root = fake.create(&p, &name).await;
    let key = SecretKey::generate().unwrap();

    // A wrap is three requests: get key, wrapKey, sign.
    let before = fake.calls(&name).await;
    let wrapped = p.wrap_key(&root, &key, &ctx("a")).await.unwrap();
    assert_eq!(fake.calls(&name).await, before + 3);
    assert!(!p.is_legacy_wrap(&wrapped));
    // An unwrap is two: get key (the public half), unwrapKey.
    let before = fake.calls(&name).await;
    assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("a")).await.unwrap(), key);
    assert_eq!(fake.calls(&name).await, before + 2);

    // Any change to the signature, or to what it covers, is an integrity
    // failure after the get key and before any unwrapKey.
    let bytes = wrapped.as_bytes();
    for at in [bytes.len() - 1, bytes.len() - 384, bytes.len() - 385] {
        let mut bad = bytes.to_vec();
        bad[at] ^= 1;
        let before = fake.calls(&name).await;
        let err = p
            .unwrap_key(&root, &WrappedKey::from_bytes(bad), &ctx("a"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "byte {at}: {err}");
        assert!(!err.is_transient());
        assert_eq!(fake.calls(&name).await, before + 1, "only get key");
    }
    // Another context fails the signature too, before the vault unwraps.
    let before = fake.calls(&name).await;
    let err = p.unwrap_key(&root, &wrapped, &ctx("b")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(fake.calls(&name).await, before + 1);

    // The same key wrapped the unsigned way (anyone can: it is encryption
    // under the public half) is refused with no call, as state to adopt,
    // and read only for adoption.
    let legacy = PublicHalf::of(&p, &root).await.legacy_wrap(&key, &ctx("a"));
    assert!(p.is_legacy_wrap(&legacy));
    let before = fake.calls(&name).await;
    let err = p.unwrap_key(&root, &legacy, &ctx("a")).await.unwrap_err();
    assert!(
        matches!(err, Error::StateRejected { .. })
            && err.to_string().contains("adopt_legacy_wraps"),
        "{err}"
    );
    assert!(!err.is_transient());
    assert_eq!(fake.calls(&name).await, before, "refused before any call");
    assert_eq!(
        p.unwrap_legacy_key(&root, &legacy, &ctx("a"))
            .await
            .unwrap(),
        key
    );
}

/// Key Vault refuses an operation a key does not permit (its `key_ops`),
/// as the fake does: an RSA key that may not `sign` cannot wrap until the
/// operation is allowed.
#[tokio::test]
async fn an_rsa_key_that_may_not_sign_cannot_wrap_until_allowed() {
    use azure_security_keyvault_keys::models::{
        CreateKeyParameters, KeyClientUpdateKeyPropertiesOptions, KeyOperation, KeyType,
        UpdateKeyPropertiesParameters,
    };
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("nosign");
    let client = p.key_client(&fake.vault).unwrap();
    let parameters = CreateKeyParameters {
        kty: Some(KeyType::Rsa),
        key_size: Some(2048),
        key_ops: Some(vec![KeyOperation::WrapKey, KeyOperation::UnwrapKey]),
        ..Default::default()
    };
    let created = client
        .create_key(&name, parameters.try_into().unwrap(), None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let root = p.key_ref(created.key.unwrap().kid.as_deref().unwrap());
    let key = SecretKey::generate().unwrap();
    let err = p.wrap_key(&root, &key, &ctx("a")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccessDenied {
                operation: "sign",
                ..
            }
        ),
        "{err}"
    );
    let version = root.key_id().rsplit('/').next().unwrap().to_owned();
    let update = UpdateKeyPropertiesParameters {
        key_ops: Some(vec![
            KeyOperation::WrapKey,
            KeyOperation::UnwrapKey,
            KeyOperation::Sign,
        ]),
        ..Default::default()
    };
    client
        .update_key_properties(
            &name,
            update.try_into().unwrap(),
            Some(KeyClientUpdateKeyPropertiesOptions {
                key_version: Some(version),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let wrapped = p.wrap_key(&root, &key, &ctx("a")).await.unwrap();
    assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("a")).await.unwrap(), key);
}

#[tokio::test]
async fn versions_pin_what_wrapped_and_resolve_to_the_current_one() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("versions");
    let v1 = fake.create(&p, &name).await;
    let versionless = p.key_ref(&fake.key_url(&name));
    assert_eq!(p.resolve_key(&versionless).await.unwrap(), v1);
    assert_eq!(p.resolve_key(&v1).await.unwrap(), v1);

    let key = SecretKey::generate().unwrap();
    let under_v1 = p.wrap_key(&versionless, &key, &ctx("z")).await.unwrap();
    // The vault makes a new version current.
    let v2 = fake.create(&p, &name).await;
    assert_ne!(v1, v2);
    assert_eq!(p.resolve_key(&versionless).await.unwrap(), v2);
    // What v1 wrapped still unwraps, by its version, under either name.
    for root in [&versionless, &v1] {
        assert_eq!(p.unwrap_key(root, &under_v1, &ctx("z")).await.unwrap(), key);
    }
    // Pinned to v2, a v1 blob is refused without a call.
    let before = fake.calls(&name).await;
    let err = p.unwrap_key(&v2, &under_v1, &ctx("z")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert_eq!(fake.calls(&name).await, before);
    // New wraps through the versionless name use v2.
    let under_v2 = p.wrap_key(&versionless, &key, &ctx("z")).await.unwrap();
    assert_eq!(p.unwrap_key(&v2, &under_v2, &ctx("z")).await.unwrap(), key);
    // Disabling v1 stops what it wrapped, not v2.
    p.admin().unwrap().disable_key(&v1).await.unwrap();
    assert_eq!(p.describe_key(&v1).await.unwrap(), KeyState::Disabled);
    assert_eq!(
        p.describe_key(&versionless).await.unwrap(),
        KeyState::Enabled
    );
    let err = p
        .unwrap_key(&versionless, &under_v1, &ctx("z"))
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
    assert_eq!(
        p.unwrap_key(&versionless, &under_v2, &ctx("z"))
            .await
            .unwrap(),
        key
    );
}

#[tokio::test]
async fn states_from_attributes_soft_delete_and_purge() {
    use azure_security_keyvault_keys::models::{KeyAttributes, UpdateKeyPropertiesParameters};
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("states");
    let root = fake.create(&p, &name).await;
    let key = SecretKey::generate().unwrap();
    let wrapped = p.wrap_key(&root, &key, &ctx("s")).await.unwrap();
    let client = p.key_client(&fake.vault).unwrap();
    let set = |attributes: KeyAttributes| {
        let client = client.clone();
        let name = name.clone();
        async move {
            let params = UpdateKeyPropertiesParameters {
                key_attributes: Some(attributes),
                ..Default::default()
            };
            client
                .update_key_properties(&name, params.try_into().unwrap(), None)
                .await
                .unwrap();
        }
    };
    let now = azure_core::time::OffsetDateTime::now_utc();
    let hour = azure_core::time::Duration::hours(1);

    // Expired: no new wraps (refused before the service is asked); what
    // the key wrapped still unwraps, as Key Vault allows.
    set(KeyAttributes {
        expires: Some(now - hour),
        ..Default::default()
    })
    .await;
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unavailable);
    let err = p.wrap_key(&root, &key, &ctx("s")).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyUnavailable {
                state: KeyState::Unavailable,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("s")).await.unwrap(), key);
    // Not yet valid: the same.
    set(KeyAttributes {
        expires: Some(now + hour * 2),
        not_before: Some(now + hour),
        ..Default::default()
    })
    .await;
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unavailable);
    // Inside its window again.
    set(KeyAttributes {
        not_before: Some(now - hour),
        ..Default::default()
    })
    .await;
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);

    // Soft-deleted: recoverable, so pending deletion; calls find no key.
    client.delete_key(&name, None).await.unwrap();
    assert_eq!(
        p.describe_key(&root).await.unwrap(),
        KeyState::PendingDeletion
    );
    let err = p.unwrap_key(&root, &wrapped, &ctx("s")).await.unwrap_err();
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
    // Recovered: back, with what it wrapped.
    client.recover_deleted_key(&name, None).await.unwrap();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Enabled);
    assert_eq!(p.unwrap_key(&root, &wrapped, &ctx("s")).await.unwrap(), key);
    // Purged: gone for good.
    client.delete_key(&name, None).await.unwrap();
    client.purge_deleted_key(&name, None).await.unwrap();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::NotFound);
}

#[tokio::test]
async fn validation_names_the_refused_permission() {
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let name = fake.unique_name("perms");
    let root = fake.create(&p, &name).await;
    assert!(p.validate_key(&root).await.is_valid());

    fake.deny(&name, Some("unwrapKey")).await;
    let report = p.validate_key(&root).await;
    assert_eq!(report.encrypt, StepOutcome::Passed, "{report}");
    assert_eq!(
        report.decrypt,
        StepOutcome::Failed(ValidationFailure::AccessDenied),
        "{report}"
    );
    assert_eq!(report.describe, StepOutcome::Passed, "{report}");
    fake.allow(&name).await;

    fake.deny(&name, Some("wrapKey")).await;
    let report = p.validate_key(&root).await;
    assert_eq!(
        report.encrypt,
        StepOutcome::Failed(ValidationFailure::AccessDenied),
        "{report}"
    );
    assert_eq!(report.decrypt, StepOutcome::Skipped);
    assert_eq!(report.describe, StepOutcome::Passed, "{report}");
    fake.allow(&name).await;

    // Without `get`, describe is refused (an error, not a state), and so
    // is wrap, which reads the key first.
    fake.deny(&name, Some("get")).await;
    let err = p.describe_key(&root).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::AccessDenied {
                operation: "get",
                ..
            }
        ),
        "{err}"
    );
    let report = p.validate_key(&root).await;
    assert_eq!(
        report.describe,
        StepOutcome::Failed(ValidationFailure::AccessDenied),
        "{report}"
    );
    fake.allow(&name).await;
    assert!(p.validate_key(&root).await.is_valid());
}

#[tokio::test]
async fn only_the_right_bearer_token_is_accepted() {
    use cmek::provider::azure::BearerToken;
    let Some(fake) = fake() else { return };
    let p = fake.provider();
    let root = fake.create(&p, &fake.unique_name("token")).await;
    let mut options = fake.options(NewKeyType::Rsa3072);
    options.credential = Some(Arc::new(BearerToken::new("not-the-token")));
    let wrong = AzureKeyVaultProvider::new(options).unwrap();
    let err = wrong.describe_key(&root).await.unwrap_err();
    assert!(
        matches!(err, Error::AccessDenied { .. }),
        "{}",
        err.report()
    );
    let report = wrong.validate_key(&root).await;
    assert_eq!(
        report.encrypt,
        StepOutcome::Failed(ValidationFailure::AccessDenied)
    );
    // Without the test CA the server's certificate is not trusted.
    let mut options = fake.options(NewKeyType::Rsa3072);
    options.ca_certificates_pem = None;
    let untrusting = AzureKeyVaultProvider::new(options).unwrap();
    assert_eq!(
        untrusting.describe_key(&root).await.unwrap(),
        KeyState::Unreachable
    );
}

#[tokio::test]
async fn a_stopped_server_is_unreachable_within_the_deadline() {
    let Some(fake) = fake() else { return };
    let mut options = fake.options(NewKeyType::Rsa3072);
    options.deadline = std::time::Duration::from_secs(2);
    let p = AzureKeyVaultProvider::new(options).unwrap();
    // Nothing listens on port 9.
    let root = p.key_ref("https://127.0.0.1:9/keys/nowhere/0123");
    let started = std::time::Instant::now();
    assert_eq!(p.describe_key(&root).await.unwrap(), KeyState::Unreachable);
    let err = p
        .wrap_key(&root, &SecretKey::generate().unwrap(), &ctx("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// The conformance suite against a real Key Vault key, with the standard
/// credential chain: only when `CMEK_AZURE_KV_TEST_KEY` is set, and then it
/// must pass. The fixture creates new versions of that key's name in its
/// vault (each check wants a fresh key) and disables some of them.
#[tokio::test]
async fn a_real_key_vault_conforms_when_asked() {
    let Ok(key) = std::env::var("CMEK_AZURE_KV_TEST_KEY") else {
        eprintln!(
            "skipped: set CMEK_AZURE_KV_TEST_KEY=https://VAULT/keys/NAME to run against Azure"
        );
        return;
    };
    let region = std::env::var("CMEK_AZURE_KV_TEST_REGION").unwrap_or_else(|_| "westeurope".into());
    let provider = Arc::new(AzureKeyVaultProvider::new(AzureKeyVaultOptions::new(region)).unwrap());
    struct Real {
        provider: Arc<AzureKeyVaultProvider>,
        key: String,
    }
    #[async_trait]
    impl Fixture for Real {
        fn provider(&self) -> &dyn KeyProvider {
            self.provider.as_ref()
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            let versionless = self.key.trim_end_matches('/');
            self.provider
                .admin()
                .unwrap()
                .create_key(&NewKey::named(versionless))
                .await
        }
        fn missing_key(&self) -> KeyRef {
            let vault = self.key.split("/keys/").next().unwrap();
            self.provider
                .key_ref(&format!("{vault}/keys/cmek-never-created"))
        }
        async fn forge(
            &self,
            root: &KeyRef,
            key: &SecretKey,
            context: &EncryptionContext,
        ) -> Result<Forgery> {
            // The key is created as an oct-HSM key in a Managed HSM, RSA
            // elsewhere.
            Ok(if root.key_id().contains(".managedhsm.") {
                Forgery::NoPublicMaterial(OCT_NO_PUBLIC_MATERIAL)
            } else {
                Forgery::Wraps(forge_rsa(&self.provider, root, key, context).await)
            })
        }
    }
    let report = conformance::run(&Real { provider, key }).await;
    println!("{report}");
    report.assert_conforms();
}
