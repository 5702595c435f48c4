use super::*;
use crate::provider::RegionAnswer;
use azure_core::time::OffsetDateTime;

/// A provider whose vault URLs lead nowhere: every answer below is given
/// without a call (a call would fail to connect).
fn provider() -> AzureKeyVaultProvider {
    let mut options = AzureKeyVaultOptions::new("westeurope");
    options.credential = Some(Arc::new(BearerToken::new("unused")));
    AzureKeyVaultProvider::new(options).unwrap()
}

const KEY: &str = "https://v.vault.azure.net/keys/orders/0123456789abcdef0123456789abcdef";

#[test]
fn key_refs_are_canonical_and_in_the_configured_region() {
    let p = provider();
    let r = p.key_ref("https://V.vault.azure.net/keys/Orders/0123456789abcdef0123456789abcdef");
    assert_eq!(r.key_id(), KEY);
    assert_eq!(r.region(), "westeurope");
    assert_eq!(r.provider(), AZURE_KV_PROVIDER);
    assert_eq!(p.key_ref(r.key_id()), r);
    // Not a key identifier: kept, refused when used.
    assert_eq!(p.key_ref("orders").key_id(), "orders");
    assert!(AzureKeyVaultProvider::new(AzureKeyVaultOptions::new("")).is_err());
}

#[tokio::test]
async fn a_key_serves_its_own_region_only_and_says_why() {
    let p = provider();
    let root = p.key_ref(KEY);
    assert_eq!(
        p.serves_region(&root, "westeurope").await.unwrap(),
        RegionAnswer::Home
    );
    let answer = p.serves_region(&root, "eastus").await.unwrap();
    assert!(
        matches!(answer, RegionAnswer::NotServed(r) if r.contains("multi-region")),
        "{answer:?}"
    );
    let elsewhere = KeyRef::new(AZURE_KV_PROVIDER, KEY, "eastus");
    let err = p
        .wrap_key(
            &elsewhere,
            &SecretKey::generate().unwrap(),
            &EncryptionContext::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
    let foreign = KeyRef::new("aws-kms", KEY, "westeurope");
    assert!(matches!(
        p.describe_key(&foreign).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn a_pinned_version_resolves_to_itself_without_a_call() {
    let p = provider();
    let root = p.key_ref(KEY);
    assert_eq!(p.resolve_key(&root).await.unwrap(), root);
    let bad = p.key_ref("https://v.vault.azure.net/secrets/x");
    assert!(matches!(
        p.resolve_key(&bad).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

#[tokio::test]
async fn hostile_blobs_and_other_versions_are_refused_before_any_call() {
    let p = provider();
    let root = p.key_ref(KEY);
    let ctx = EncryptionContext::new().with("zone", "z");
    for junk in [&b""[..], b"\x01", b"\x02\x01\x01a", &[0x01; 100][..]] {
        let err = p
            .unwrap_key(&root, &WrappedKey::from_bytes(junk.to_vec()), &ctx)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }
    let other_version = AzureWrapped {
        format: Format::V2,
        algorithm: Algorithm::RsaOaep256,
        key_version: "ffff".into(),
        salt: [0; SALT_LEN],
        ciphertext: vec![0; 384],
        signature: vec![0; 384],
    };
    let err = p
        .unwrap_key(
            &root,
            &WrappedKey::from_bytes(other_version.encode().unwrap()),
            &ctx,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // An unsigned RSA wrap (format 1) is refused as state to adopt, before
    // the version is even looked at; an unsigned A256KW one is not legacy.
    let unsigned = AzureWrapped {
        format: Format::V1,
        signature: Vec::new(),
        ..other_version.clone()
    };
    let unsigned = WrappedKey::from_bytes(unsigned.encode().unwrap());
    assert!(p.is_legacy_wrap(&unsigned));
    let err = p.unwrap_key(&root, &unsigned, &ctx).await.unwrap_err();
    assert!(matches!(err, Error::StateRejected { .. }), "{err}");
    let aes = AzureWrapped {
        format: Format::V1,
        algorithm: Algorithm::A256Kw,
        ciphertext: vec![0; 72],
        signature: Vec::new(),
        ..other_version
    };
    assert!(!p.is_legacy_wrap(&WrappedKey::from_bytes(aes.encode().unwrap())));
}

#[test]
fn states_follow_enabled_nbf_and_exp() {
    let now = OffsetDateTime::now_utc();
    let hour = azure_core::time::Duration::hours(1);
    let attrs = |enabled, nbf, exp| KeyAttributes {
        enabled,
        not_before: nbf,
        expires: exp,
        ..Default::default()
    };
    assert_eq!(state_of(None, now), KeyState::Enabled);
    assert_eq!(
        state_of(Some(&attrs(Some(true), None, None)), now),
        KeyState::Enabled
    );
    assert_eq!(
        state_of(Some(&attrs(None, None, None)), now),
        KeyState::Enabled
    );
    assert_eq!(
        state_of(Some(&attrs(Some(false), None, None)), now),
        KeyState::Disabled
    );
    assert_eq!(
        state_of(Some(&attrs(Some(true), Some(now + hour), None)), now),
        KeyState::Unavailable
    );
    assert_eq!(
        state_of(Some(&attrs(Some(true), None, Some(now - hour))), now),
        KeyState::Unavailable
    );
    assert_eq!(
        state_of(
            Some(&attrs(Some(true), Some(now - hour), Some(now + hour))),
            now
        ),
        KeyState::Enabled
    );
    // Disabled wins over a window.
    assert_eq!(
        state_of(Some(&attrs(Some(false), None, Some(now - hour))), now),
        KeyState::Disabled
    );
}

#[test]
fn key_types_choose_the_algorithm() {
    let root = provider().key_ref(KEY);
    assert_eq!(
        algorithm_for(Some(&KeyType::Rsa), &root).unwrap(),
        Algorithm::RsaOaep256
    );
    assert_eq!(
        algorithm_for(Some(&KeyType::RsaHsm), &root).unwrap(),
        Algorithm::RsaOaep256
    );
    assert_eq!(
        algorithm_for(Some(&KeyType::OctHsm), &root).unwrap(),
        Algorithm::A256Kw
    );
    assert!(algorithm_for(Some(&KeyType::EcHsm), &root).is_err());
    assert!(algorithm_for(None, &root).is_err());
}

#[test]
fn the_bound_id_is_the_versionless_key_and_the_salt() {
    let id = KeyId::parse(KEY).unwrap();
    let mut salt = [0u8; SALT_LEN];
    salt[0] = 0xab;
    salt[15] = 0x01;
    assert_eq!(
        bound_id(&id, &salt),
        "https://v.vault.azure.net/keys/orders#ab000000000000000000000000000001"
    );
}

#[test]
fn access_policies_name_the_keys() {
    let p = provider();
    let doc = p.access_policy(&[p.key_ref(KEY)]).unwrap().unwrap();
    assert!(
        doc.contains("https://v.vault.azure.net/keys/orders\""),
        "{doc}"
    );
    assert!(doc.contains("unwrapKey") && doc.contains(policy::BUILT_IN_ROLE));
    assert!(p.access_policy(&[]).is_err());
    assert!(p
        .access_policy(&[KeyRef::new("local", KEY, "westeurope")])
        .is_err());
}

#[tokio::test]
async fn admin_refuses_what_key_vault_has_not() {
    let p = provider();
    let admin = p.admin().unwrap();
    assert!(matches!(
        admin.create_key(&NewKey::named("x").multi_region()).await,
        Err(Error::InvalidArgument(_))
    ));
    // A bare name needs a default vault.
    assert!(matches!(
        admin.create_key(&NewKey::named("orders")).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        admin.create_key(&NewKey::named(KEY)).await,
        Err(Error::InvalidArgument(_))
    ));
}
