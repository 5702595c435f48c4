//! The Azure Key Vault provider: a customer's key in an Azure key vault or
//! Managed HSM as the root of trust, through the official
//! `azure_security_keyvault_keys` and `azure_identity` crates (feature
//! `azure-kv`).
//!
//! * **Keys** are named by URL, `https://VAULT/keys/NAME[/VERSION]`
//!   ([`KeyRef::key_id`], canonical: host and name lowercased).
//!   [`resolve_key`](KeyProvider::resolve_key) pins a versionless name to
//!   the key's current version with one `get key`, so that a zone records
//!   one version for good; a versioned name is returned unchanged without a
//!   call. Moving a zone to a newer version of its key is a root rotation
//!   (`Zone::rotate_root` with the versionless name).
//! * **Wrap** is `get key` (the key's type, state, current version and,
//!   for RSA, public half), then `wrapKey` of a *bound key*
//!   (`provider::kit::bind`: the 32-byte key and a SHA-256 binding the key's
//!   versionless id, a fresh salt and the [`EncryptionContext`]) with
//!   RSA-OAEP-256 for `RSA`/`RSA-HSM` keys and `A256KW` for `oct-HSM` keys.
//!   RSA-OAEP-256 is encryption under the *public* half, which anyone can
//!   compute, so an RSA wrap is then signed by the same key version (`sign`,
//!   PS256) over the wrap, the key id and the context; the signature is
//!   checked against the public half before cmek keeps the wrap. The
//!   [`WrappedKey`] records the algorithm, the key version that wrapped,
//!   the salt and the signature (docs/FORMAT.md, "Azure Key Vault wrapped
//!   key"), so it unwraps after the vault made another version current.
//! * **Unwrap** of an RSA wrap first verifies its signature against that
//!   key version's public half, read from the vault with `get key` (over
//!   its authenticated API; never from storage): a wrap the key did not
//!   sign is [`Error::Integrity`] and never reaches `unwrapKey`. Then one
//!   `unwrapKey` with that version, and the binding is checked: another
//!   context is [`Error::Integrity`]. An RSA wrap without a signature (the
//!   format of earlier releases) is [`Error::StateRejected`]: anyone could
//!   have made it. It is read only by
//!   [`unwrap_legacy_key`](KeyProvider::unwrap_legacy_key), for
//!   `Keyring::adopt_legacy_wraps`.
//! * **States** come from the key's attributes: `enabled: false` is
//!   [`KeyState::Disabled`]; outside its `nbf`/`exp` window a key is
//!   [`KeyState::Unavailable`] (Key Vault refuses new wraps then);
//!   a soft-deleted key (recoverable) is [`KeyState::PendingDeletion`]; a
//!   purged or unknown key [`KeyState::NotFound`]; 403 is
//!   [`Error::AccessDenied`].
//! * **Regions**: the data-plane API does not say where a vault lives, so
//!   the region is configuration ([`AzureKeyVaultOptions::region`]): every
//!   key this provider names lives there. Key Vault has no multi-region
//!   keys: a key serves its own region only.
//! * **Administration** ([`KeyProvider::admin`]): create a key (RSA 3072,
//!   or a 256-bit `oct-HSM` key in a Managed HSM), enable and disable it
//!   (its `enabled` attribute). [`KeyProvider::access_policy`] is the
//!   [`policy::access_document`]: the key permissions or Azure role the
//!   identity needs.
//! * **Faults**: 429 and 5xx answers and connection failures are retried by
//!   the SDK's pipeline with exponential backoff within
//!   [`AzureKeyVaultOptions::deadline`]; this module itself neither retries
//!   nor caches (it keeps one SDK client per vault, which holds its
//!   connections and the token).
//!
//! This module is the only place in cmek that knows what a vault URL, a
//! key version or a Key Vault error is.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, EncryptionAlgorithm, JsonWebKey, Key, KeyAttributes,
    KeyClientGetKeyOptions, KeyClientSignOptions, KeyClientUnwrapKeyOptions,
    KeyClientUpdateKeyPropertiesOptions, KeyClientWrapKeyOptions, KeyOperation,
    KeyOperationParameters, KeyType, SignParameters, SignatureAlgorithm,
    UpdateKeyPropertiesParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions};
use zeroize::Zeroizing;

use super::kit::{self, check_kind, fill_random, region_mismatch, sha256};
use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, WrappedKey};
use crate::secret::SecretKey;
use crate::{Error, Result, StateRejection};

mod credential;
mod errors;
mod key_id;
pub mod policy;
mod wrapped;

pub use credential::BearerToken;

use errors::map_error;
use key_id::KeyId;
use wrapped::{Algorithm, AzureWrapped, Format, SALT_LEN};

/// Provider kind of [`AzureKeyVaultProvider`] in a [`KeyRef`].
pub const AZURE_KV_PROVIDER: &str = "azure-kv";

/// Why a key cannot serve another region.
const SINGLE_REGION: &str = "an Azure Key Vault key lives in its vault's region only (Key Vault \
     has no multi-region keys): use a key in a vault of the region it is used from";

/// The type of a key [`KeyAdmin::create_key`] creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NewKeyType {
    /// A 256-bit `oct-HSM` key in a Managed HSM (`*.managedhsm.*`), an RSA
    /// 3072 key anywhere else (the default).
    #[default]
    Auto,
    /// RSA 3072, software-protected (`RSA`).
    Rsa3072,
    /// RSA 3072 in an HSM (`RSA-HSM`; premium vaults and Managed HSM).
    RsaHsm3072,
    /// A 256-bit AES key in an HSM (`oct-HSM`; Managed HSM only).
    OctHsm256,
}

/// How to reach Key Vault.
#[derive(Clone)]
pub struct AzureKeyVaultOptions {
    /// The Azure region the vaults live in (e.g. `westeurope`): the region
    /// of every key this provider names. Key Vault's data plane does not
    /// tell it; `az keyvault show --query location` does.
    pub region: String,
    /// The credential; `None` uses the standard chain (workload identity,
    /// Azure CLI / Developer CLI, managed identity).
    pub credential: Option<Arc<dyn TokenCredential>>,
    /// The vault a key created by name only (`NewKey::named("orders")`) goes
    /// to, `https://VAULT`.
    pub default_vault: Option<String>,
    /// Extra trusted CA certificates (PEM), e.g. for a private endpoint
    /// behind a TLS-inspecting proxy, or a test server.
    pub ca_certificates_pem: Option<Vec<u8>>,
    /// Whether the SDK checks that the authentication challenge's resource
    /// matches the vault's domain (on by default; turn it off only for a
    /// vault reached under another domain).
    pub verify_challenge_resource: bool,
    /// The type of keys `admin().create_key` makes.
    pub new_key_type: NewKeyType,
    /// Upper bound for one call, retries included.
    pub deadline: Duration,
    /// Upper bound for one attempt.
    pub attempt_timeout: Duration,
    /// Upper bound for establishing a connection.
    pub connect_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; it grows exponentially.
    pub initial_backoff: Duration,
}

impl AzureKeyVaultOptions {
    /// Options for vaults in `region`, with the standard credential chain,
    /// 10 s per call, 3 s per attempt, 1 s to connect, 5 attempts and 100 ms
    /// initial backoff.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            credential: None,
            default_vault: None,
            ca_certificates_pem: None,
            verify_challenge_resource: true,
            new_key_type: NewKeyType::Auto,
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
        }
    }
}

impl fmt::Debug for AzureKeyVaultOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultOptions")
            .field("region", &self.region)
            .field("credential", &self.credential.as_ref().map(|_| ".."))
            .field("default_vault", &self.default_vault)
            .field("ca_certificates_pem", &self.ca_certificates_pem.is_some())
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .field("new_key_type", &self.new_key_type)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .finish()
    }
}

/// Root keys in Azure Key Vault. See the [module docs](self).
pub struct AzureKeyVaultProvider {
    region: String,
    credential: Arc<dyn TokenCredential>,
    client_options: ClientOptions,
    verify_challenge_resource: bool,
    default_vault: Option<String>,
    new_key_type: NewKeyType,
    /// One SDK client per vault URL: its connections and its token.
    clients: Mutex<HashMap<String, Arc<KeyClient>>>,
}

impl fmt::Debug for AzureKeyVaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultProvider")
            .field("region", &self.region)
            .field("default_vault", &self.default_vault)
            .finish_non_exhaustive()
    }
}

fn duration(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
}

impl AzureKeyVaultProvider {
    /// A provider for vaults in `options.region`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty region, CA certificates that
    /// do not parse, a default vault that is not `https://HOST`, or a
    /// credential chain that cannot be set up.
    pub fn new(options: AzureKeyVaultOptions) -> Result<Self> {
        if options.region.is_empty() {
            return Err(Error::InvalidArgument(
                "an Azure Key Vault provider needs the vaults' region".into(),
            ));
        }
        if let Some(vault) = &options.default_vault {
            KeyId::parse(&format!("{}/keys/probe", vault.trim_end_matches('/')))?;
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &options.ca_certificates_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                Error::InvalidArgument("the CA certificates do not parse as PEM".into())
                    .with_source(e)
            })?;
            if certs.is_empty() {
                return Err(Error::InvalidArgument(
                    "no CA certificate in the PEM given".into(),
                ));
            }
            http = http.tls_certs_merge(certs);
        }
        let http = http.build().map_err(|e| {
            Error::InvalidArgument("cannot build the HTTPS client".into()).with_source(e)
        })?;
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: duration(options.initial_backoff),
            max_retries: options.max_attempts.max(1) - 1,
            max_total_elapsed: duration(options.deadline),
            max_delay: duration(options.deadline / 4),
        });
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            retry,
            ..ClientOptions::default()
        };
        let credential = match options.credential {
            Some(c) => c,
            None => credential::default_chain()?,
        };
        Ok(Self {
            region: options.region,
            credential,
            client_options,
            verify_challenge_resource: options.verify_challenge_resource,
            default_vault: options
                .default_vault
                .map(|v| v.trim_end_matches('/').to_ascii_lowercase()),
            new_key_type: options.new_key_type,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The reference of the key named by `key_id`
    /// (`https://VAULT/keys/NAME[/VERSION]`), in canonical form, in this
    /// provider's region. A name that does not parse is kept as given, and
    /// refused when used.
    pub fn key_ref(&self, key_id: &str) -> KeyRef {
        let id = KeyId::parse(key_id).map_or_else(|_| key_id.to_owned(), |k| k.to_string());
        KeyRef::new(AZURE_KV_PROVIDER, id, &self.region)
    }

    /// The SDK client this provider uses for the vault at `vault_url`
    /// (`https://HOST[:PORT]`), for calls cmek does not make (deleting,
    /// recovering or rotating keys, setting `nbf`/`exp`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the client cannot be built for that URL.
    pub fn key_client(&self, vault_url: &str) -> Result<Arc<KeyClient>> {
        let vault = vault_url.trim_end_matches('/').to_ascii_lowercase();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&vault) {
            return Ok(client.clone());
        }
        let options = KeyClientOptions {
            client_options: self.client_options.clone(),
            verify_challenge_resource: Some(self.verify_challenge_resource),
            ..KeyClientOptions::default()
        };
        let client =
            KeyClient::new(&vault, self.credential.clone(), Some(options)).map_err(|e| {
                Error::InvalidArgument(format!("cannot build a Key Vault client for {vault}"))
                    .with_source(e)
            })?;
        let client = Arc::new(client);
        clients.insert(vault, client.clone());
        Ok(client)
    }

    /// The parsed id of `root`, after checking it is this provider's and
    /// usable from its region.
    fn key_here(&self, root: &KeyRef) -> Result<KeyId> {
        self.key_in_region(root, &self.region)?;
        KeyId::parse(root.key_id())
    }

    /// `get key` of `id` (its version, else the current one).
    async fn get_key(&self, root: &KeyRef, id: &KeyId) -> Result<Key> {
        let client = self.key_client(id.vault())?;
        let options = KeyClientGetKeyOptions {
            key_version: id.version().map(str::to_owned),
            ..Default::default()
        };
        client
            .get_key(id.name(), Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(e, root, "get"))
    }

    /// Whether the key named `id` is soft-deleted (and so recoverable).
    async fn is_soft_deleted(&self, id: &KeyId) -> Result<bool> {
        let client = self.key_client(id.vault())?;
        match client.get_deleted_key(id.name(), None).await {
            Ok(_) => Ok(true),
            Err(e) if e.http_status().is_some() => Ok(false),
            Err(e) => Err(map_error(e, &self.key_ref(&id.to_string()), "get deleted")),
        }
    }

    /// Key Vault `sign` (PS256) of the SHA-256 of `wrapped`'s signed
    /// message, by the key version that wrapped.
    async fn sign(
        &self,
        client: &KeyClient,
        root: &KeyRef,
        id: &KeyId,
        wrapped: &AzureWrapped,
        context: &EncryptionContext,
    ) -> Result<Vec<u8>> {
        let message = wrapped.signed_message(&id.versionless(), context);
        let parameters = SignParameters {
            algorithm: Some(SignatureAlgorithm::Ps256),
            value: Some(sha256(&[&message]).to_vec()),
        };
        let options = KeyClientSignOptions {
            key_version: Some(wrapped.key_version.clone()),
            ..Default::default()
        };
        let out = client
            .sign(id.name(), request(parameters)?, Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(e, root, "sign"))?;
        let answered = version_of(out.kid.as_deref(), "Key Vault sign response")?;
        if answered != wrapped.key_version {
            return Err(Error::malformed(
                "Key Vault sign response",
                "it names another key version than the one asked",
            ));
        }
        out.result
            .ok_or_else(|| Error::malformed("Key Vault sign response", "no result"))
    }

    /// Unwraps a wrap of the current format: the key version pinned by
    /// `root` (if any) must be the one that wrapped, and an RSA wrap's
    /// signature must verify under that version's public half, read from
    /// the vault, before the vault is asked to unwrap.
    async fn unwrap_checked(
        &self,
        root: &KeyRef,
        id: &KeyId,
        blob: &AzureWrapped,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        if id.version().is_some_and(|v| v != blob.key_version) {
            // Wrapped under another version (or another key) than the
            // one named: never sent to the service.
            return Err(Error::tampered("wrapped key"));
        }
        if blob.algorithm.is_signed() {
            let signer = id.with_version(&blob.key_version);
            let jwk = self
                .get_key(root, &signer)
                .await?
                .key
                .ok_or_else(|| Error::malformed("Key Vault get key response", "no key"))?;
            let named = version_of(jwk.kid.as_deref(), "Key Vault get key response")?;
            if named != blob.key_version {
                return Err(Error::malformed(
                    "Key Vault get key response",
                    "it names another key version than the one asked",
                ));
            }
            let message = blob.signed_message(&id.versionless(), context);
            verify_signature(&jwk, &message, &blob.signature)?;
        }
        self.vault_unwrap(root, id, blob, context).await
    }

    /// `unwrapKey` of `blob` by the version that wrapped it, then the
    /// context binding checked.
    async fn vault_unwrap(
        &self,
        root: &KeyRef,
        id: &KeyId,
        blob: &AzureWrapped,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        if id.version().is_some_and(|v| v != blob.key_version) {
            return Err(Error::tampered("wrapped key"));
        }
        let parameters = KeyOperationParameters {
            algorithm: Some(encryption_algorithm(blob.algorithm)),
            value: Some(blob.ciphertext.clone()),
            ..Default::default()
        };
        let out = self
            .key_client(id.vault())?
            .unwrap_key(
                id.name(),
                &blob.key_version,
                request(parameters)?,
                None::<KeyClientUnwrapKeyOptions<'_>>,
            )
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(e, root, "unwrap"))?;
        let bound = Zeroizing::new(
            out.result
                .ok_or_else(|| Error::malformed("Key Vault unwrapKey response", "no result"))?,
        );
        kit::unbind(&bound, &bound_id(id, &blob.salt), context)
    }

    async fn set_enabled(&self, key: &KeyRef, enabled: bool) -> Result<()> {
        check_kind(AZURE_KV_PROVIDER, key)?;
        let id = KeyId::parse(key.key_id())?;
        let client = self.key_client(id.vault())?;
        let parameters = UpdateKeyPropertiesParameters {
            key_attributes: Some(KeyAttributes {
                enabled: Some(enabled),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = KeyClientUpdateKeyPropertiesOptions {
            key_version: id.version().map(str::to_owned),
            ..Default::default()
        };
        let operation = if enabled { "enable" } else { "disable" };
        client
            .update_key_properties(id.name(), request(parameters)?, Some(options))
            .await
            .map_err(|e| map_error(e, key, operation))?;
        tracing::info!(key = %key, enabled, "updated Key Vault key");
        Ok(())
    }
}

/// A request body, serialized.
fn request<T>(value: T) -> Result<azure_core::http::RequestContent<T>>
where
    T: TryInto<azure_core::http::RequestContent<T>, Error = azure_core::Error>,
{
    value
        .try_into()
        .map_err(|e| Error::InvalidArgument("cannot serialize a request".into()).with_source(e))
}

/// The state a key's attributes give at `now`.
fn state_of(attributes: Option<&KeyAttributes>, now: azure_core::time::OffsetDateTime) -> KeyState {
    let Some(a) = attributes else {
        return KeyState::Enabled;
    };
    if a.enabled == Some(false) {
        KeyState::Disabled
    } else if a.not_before.is_some_and(|nbf| now < nbf) || a.expires.is_some_and(|exp| now >= exp) {
        KeyState::Unavailable
    } else {
        KeyState::Enabled
    }
}

/// The wrap algorithm for a key type.
fn algorithm_for(kty: Option<&KeyType>, root: &KeyRef) -> Result<Algorithm> {
    match kty {
        Some(KeyType::Rsa | KeyType::RsaHsm) => Ok(Algorithm::RsaOaep256),
        Some(KeyType::OctHsm | KeyType::Oct) => Ok(Algorithm::A256Kw),
        other => Err(Error::InvalidArgument(format!(
            "key {root} is of type {} and cannot wrap keys: use an RSA, RSA-HSM or oct-HSM key",
            other.map_or_else(|| "(none)".to_owned(), |t| t.to_string())
        ))),
    }
}

fn encryption_algorithm(a: Algorithm) -> EncryptionAlgorithm {
    match a {
        Algorithm::RsaOaep256 => EncryptionAlgorithm::RsaOaep256,
        Algorithm::A256Kw => EncryptionAlgorithm::A256Kw,
    }
}

/// What the context is bound to: the key's versionless id and the salt.
fn bound_id(id: &KeyId, salt: &[u8; SALT_LEN]) -> String {
    let mut s = id.versionless();
    s.push('#');
    for b in salt {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The version a key identifier the service returned names.
fn version_of(kid: Option<&str>, what: &'static str) -> Result<String> {
    kid.and_then(|k| KeyId::parse(k).ok())
        .and_then(|k| k.version().map(str::to_owned))
        .ok_or_else(|| Error::malformed(what, "no key identifier with a version"))
}

/// A big-endian integer of a JSON web key without its leading zero bytes
/// (Key Vault may send the modulus with one).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// Checks that `signature` is a PS256 signature of `message` by the RSA
/// key `jwk` (the public half `get key` returned), as long as the key's
/// modulus.
///
/// # Errors
/// [`Error::Malformed`] if `jwk` is not an RSA public key;
/// [`Error::Integrity`] if the signature does not verify.
fn verify_signature(jwk: &JsonWebKey, message: &[u8], signature: &[u8]) -> Result<()> {
    use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PSS_2048_8192_SHA256};
    let what = "Key Vault get key response";
    if !matches!(jwk.kty, Some(KeyType::Rsa | KeyType::RsaHsm)) {
        return Err(Error::malformed(
            what,
            "the key that signed is not an RSA key",
        ));
    }
    let (Some(n), Some(e)) = (jwk.n.as_deref(), jwk.e.as_deref()) else {
        return Err(Error::malformed(
            what,
            "an RSA key without its modulus or exponent",
        ));
    };
    let (n, e) = (unsigned(n), unsigned(e));
    if n.len() != signature.len() {
        return Err(Error::tampered(
            "Azure Key Vault wrapped key (its signature is not as long as the key's modulus)",
        ));
    }
    RsaPublicKeyComponents { n, e }
        .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
        .map_err(|_| {
            Error::tampered(
                "Azure Key Vault wrapped key (no signature by the key version it names: \
                 not made by the key's holder)",
            )
        })
}

/// The refusal of an RSA wrap without a signature.
fn legacy_refusal(root: &KeyRef) -> Error {
    Error::StateRejected {
        what: "Azure Key Vault wrapped key",
        reason: StateRejection::Mismatch(format!(
            "an RSA wrap under {root} without a signature (format version 1): anyone \
             holding the key's public half could have made it, so it is refused. A zone \
             written before wraps were signed is adopted once, by an operator who trusts \
             its stored state, with Keyring::adopt_legacy_wraps (docs/AZURE_KEY_VAULT.md)"
        )),
    }
}

#[async_trait]
impl KeyProvider for AzureKeyVaultProvider {
    fn kind(&self) -> &str {
        AZURE_KV_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        AzureKeyVaultProvider::key_ref(self, key_id)
    }

    /// A key serves its own region only.
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(AZURE_KV_PROVIDER, root)?;
        if root.region() == region {
            Ok(root.clone())
        } else {
            Err(region_mismatch(root, region, SINGLE_REGION))
        }
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    /// [`policy::access_document`] on the keys.
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        for key in keys {
            check_kind(AZURE_KV_PROVIDER, key)?;
        }
        let ids: Vec<&str> = keys.iter().map(KeyRef::key_id).collect();
        policy::access_document(&ids).map(Some)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let id = self.key_here(root)?;
        let bundle = self.get_key(root, &id).await?;
        let state = state_of(
            bundle.attributes.as_ref(),
            azure_core::time::OffsetDateTime::now_utc(),
        );
        if state != KeyState::Enabled {
            return Err(Error::KeyUnavailable {
                key: root.to_string(),
                state,
            });
        }
        let jwk = bundle
            .key
            .ok_or_else(|| Error::malformed("Key Vault get key response", "no key"))?;
        let algorithm = algorithm_for(jwk.kty.as_ref(), root)?;
        let key_version = version_of(jwk.kid.as_deref(), "Key Vault get key response")?;
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        let bound = kit::bind(key, &bound_id(&id, &salt), context);
        // The SDK copies the bound key into its request body, which it does
        // not wipe; that copy is outside cmek's control.
        let parameters = KeyOperationParameters {
            algorithm: Some(encryption_algorithm(algorithm)),
            value: Some(bound.as_bytes().to_vec()),
            ..Default::default()
        };
        let options = KeyClientWrapKeyOptions {
            key_version: Some(key_version.clone()),
            ..Default::default()
        };
        let client = self.key_client(id.vault())?;
        let out = client
            .wrap_key(id.name(), request(parameters)?, Some(options))
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(e, root, "wrap"))?;
        let answered = version_of(out.kid.as_deref(), "Key Vault wrapKey response")?;
        if answered != key_version {
            return Err(Error::malformed(
                "Key Vault wrapKey response",
                "it names another key version than the one asked",
            ));
        }
        let ciphertext = out
            .result
            .ok_or_else(|| Error::malformed("Key Vault wrapKey response", "no result"))?;
        let mut wrapped = AzureWrapped {
            format: Format::V2,
            algorithm,
            key_version,
            salt,
            ciphertext,
            signature: Vec::new(),
        };
        if algorithm.is_signed() {
            wrapped.signature = self.sign(&client, root, &id, &wrapped, context).await?;
            // The vault's answer is checked as unwrapping will check it.
            let message = wrapped.signed_message(&id.versionless(), context);
            verify_signature(&jwk, &message, &wrapped.signature)?;
        }
        Ok(WrappedKey::from_bytes(wrapped.encode()?))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let id = self.key_here(root)?;
        let blob = AzureWrapped::decode(wrapped.as_bytes())?;
        if blob.is_legacy() {
            return Err(legacy_refusal(root));
        }
        self.unwrap_checked(root, &id, &blob, context).await
    }

    /// An RSA wrap without a signature (format version 1).
    fn is_legacy_wrap(&self, wrapped: &WrappedKey) -> bool {
        AzureWrapped::decode(wrapped.as_bytes()).is_ok_and(|b| b.is_legacy())
    }

    /// Also an RSA wrap without a signature, unwrapped by the vault with
    /// only the context binding checked: for `Keyring::adopt_legacy_wraps`.
    async fn unwrap_legacy_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let id = self.key_here(root)?;
        let blob = AzureWrapped::decode(wrapped.as_bytes())?;
        if !blob.is_legacy() {
            return self.unwrap_checked(root, &id, &blob, context).await;
        }
        tracing::warn!(key = %root, "unwrapping an unsigned RSA wrap for adoption");
        self.vault_unwrap(root, &id, &blob, context).await
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        let id = self.key_here(root)?;
        match self.get_key(root, &id).await {
            Ok(bundle) => Ok(state_of(
                bundle.attributes.as_ref(),
                azure_core::time::OffsetDateTime::now_utc(),
            )),
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }) => Ok(if self.is_soft_deleted(&id).await.unwrap_or(false) {
                KeyState::PendingDeletion
            } else {
                KeyState::NotFound
            }),
            Err(Error::ProviderUnreachable { .. }) => Ok(KeyState::Unreachable),
            Err(other) => Err(other),
        }
    }

    /// A versionless key resolves to its current version (one `get key`);
    /// a versioned one to itself, without a call.
    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        check_kind(AZURE_KV_PROVIDER, root)?;
        let id = KeyId::parse(root.key_id())?;
        if id.version().is_some() {
            return Ok(root.clone());
        }
        let bundle = self.get_key(root, &id).await?;
        let version = version_of(
            bundle.key.as_ref().and_then(|k| k.kid.as_deref()),
            "Key Vault get key response",
        )?;
        let resolved = KeyRef::new(
            AZURE_KV_PROVIDER,
            id.with_version(&version).to_string(),
            root.region(),
        );
        tracing::debug!(key = %root, resolved = %resolved, "resolved key version");
        Ok(resolved)
    }
}

/// `create key` (the [`NewKeyType`] of the options, for wrapKey, unwrapKey
/// and, for an RSA key, sign only), and `update key` of the `enabled` attribute (of the
/// named version, else of the current one).
#[async_trait]
impl KeyAdmin for AzureKeyVaultProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        if new.is_multi_region() {
            return Err(Error::InvalidArgument(
                "Azure Key Vault has no multi-region keys".into(),
            ));
        }
        let name = match new.name() {
            Some(n) => n.to_owned(),
            None => {
                let mut r = [0u8; 8];
                fill_random(&mut r)?;
                let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
                format!("cmek-{hex}")
            }
        };
        let id = if name.starts_with("https://") {
            KeyId::parse(&name)?
        } else {
            let vault = self.default_vault.as_deref().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "key {name:?}: name it by URL (https://VAULT/keys/NAME) or configure \
                     a default vault"
                ))
            })?;
            KeyId::parse(&format!("{vault}/keys/{name}"))?
        };
        if id.version().is_some() {
            return Err(Error::InvalidArgument(format!(
                "key {id}: a new key has no version yet"
            )));
        }
        let key_type = match self.new_key_type {
            NewKeyType::Auto if id.is_managed_hsm() => NewKeyType::OctHsm256,
            NewKeyType::Auto => NewKeyType::Rsa3072,
            t => t,
        };
        let (kty, size) = match key_type {
            NewKeyType::OctHsm256 => (KeyType::OctHsm, 256),
            NewKeyType::RsaHsm3072 => (KeyType::RsaHsm, 3072),
            _ => (KeyType::Rsa, 3072),
        };
        // An RSA key also signs its wraps (see the module docs).
        let mut key_ops = vec![KeyOperation::WrapKey, KeyOperation::UnwrapKey];
        if kty != KeyType::OctHsm {
            key_ops.push(KeyOperation::Sign);
        }
        let parameters = CreateKeyParameters {
            kty: Some(kty),
            key_size: Some(size),
            key_ops: Some(key_ops),
            key_attributes: Some(KeyAttributes {
                enabled: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let placeholder = self.key_ref(&id.to_string());
        let created = self
            .key_client(id.vault())?
            .create_key(id.name(), request(parameters)?, None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| map_error(e, &placeholder, "create"))?;
        let version = version_of(
            created.key.as_ref().and_then(|k| k.kid.as_deref()),
            "Key Vault create key response",
        )?;
        let key = self.key_ref(&id.with_version(&version).to_string());
        tracing::info!(key = %key, "created Key Vault key");
        Ok(key)
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_enabled(key, true).await
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_enabled(key, false).await
    }
}

#[cfg(test)]
mod tests;
