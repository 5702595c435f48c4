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

/// A PS256 signature of a version 2 wrap's signed message, made by another
/// implementation (pyca/cryptography, RSASSA-PSS with MGF1-SHA-256 and a
/// 32-byte salt over the message's SHA-256, as Key Vault's `sign` with
/// `PS256`) under an RSA-2048 key: it verifies, and a changed message,
/// signature or key does not. Pins the message layout and the signature
/// parameters (docs/FORMAT.md).
#[test]
fn a_signature_made_elsewhere_verifies() {
    const N: &str = "8fd02189d0533b40540b1d80b50a323218660f21ebf8d39f66058292119c7f2e8d5200a04fbcc4c37b1b1b52d4042845926e77003dbc6a85aacd130616a6854173200b591eb727c714ac1e2dcee6fb14c4fe3f9aa1d08cf93c8012ecd98ebc44a3a4d0a5fbdcb28f3a9d5ca09784e68805aa35562977d1cf9194333c76ee8ddac9d22e87ef67712051ab751675a0460170d092e4f6d5f52b819e13579e7950c0eb80928c16bef114c00c91c470ab0a75e336e12b4e77e9ae2a27475299a227b93d0a2b9ee1612f934b6c8f931b58b5299c25aec7098d18c62669bc7c73155238ed971cac91b2d48bd7017580545cc70972b89fe1273c428a45510e2191513fd5";
    const SIG: &str = "6bbb4be5932b2e3ab82d532394f0cf33fe2e2af5ddff145b22345ef32a3e554ad0bda05f8bb827f528bf5518d8019cd13a0d9714c9fdcb89a593982956104cd2caaecca824232efc7fa73ad5e8b307742e8df2b0dd35f51b70c54af3d69a27249ad6d16198756f06832b9dcdac996ba20822c8c087c30e20669a2f4853140e4a08ef85bb0da0a6b34888f66c7cc629b6d7f5f68442b4c5f6c520de737fbf989d5c57579fa0ab31802d7381da7415d9372c2578ae844bf461685137b27cb3a35e2c676d9d5afa28cdae85a0e8b2e740d50fe856e4b4d9ea63e5931eeca1ab9383fda47cd578e2db258d5363462cbc25860c16c5bb39fa358a26c7e89c240dd38d";
    let signature = hex::decode(SIG).unwrap();
    let wrapped = AzureWrapped {
        format: Format::V2,
        algorithm: Algorithm::RsaOaep256,
        key_version: "v1".into(),
        salt: [0x11; SALT_LEN],
        ciphertext: vec![0x5a; 256],
        signature: signature.clone(),
    };
    let id = "https://v.vault.azure.net/keys/k";
    let ctx = EncryptionContext::new().with("zone", "a");
    // Key Vault may send the modulus with a leading zero byte.
    let mut n = vec![0];
    n.extend(hex::decode(N).unwrap());
    let jwk = JsonWebKey {
        kty: Some(KeyType::Rsa),
        n: Some(n),
        e: Some(vec![1, 0, 1]),
        ..Default::default()
    };
    let message = wrapped.signed_message(id, &ctx);
    verify_signature(&jwk, &message, &signature).unwrap();

    let refused = |jwk: &JsonWebKey, message: &[u8], signature: &[u8]| {
        matches!(
            verify_signature(jwk, message, signature),
            Err(Error::Integrity { .. })
        )
    };
    let other_ctx = wrapped.signed_message(id, &EncryptionContext::new().with("zone", "b"));
    assert!(refused(&jwk, &other_ctx, &signature));
    let other_id = wrapped.signed_message("https://v.vault.azure.net/keys/k2", &ctx);
    assert!(refused(&jwk, &other_id, &signature));
    let mut flipped = signature.clone();
    flipped[100] ^= 1;
    assert!(refused(&jwk, &message, &flipped));
    assert!(refused(&jwk, &message, &signature[1..]));
    let mut other_key = jwk.clone();
    other_key.e = Some(vec![3]);
    assert!(refused(&other_key, &message, &signature));
    // Not an RSA key: malformed, whatever the signature.
    let oct = JsonWebKey {
        kty: Some(KeyType::OctHsm),
        ..Default::default()
    };
    assert!(matches!(
        verify_signature(&oct, &message, &signature),
        Err(Error::Malformed { .. })
    ));
}
