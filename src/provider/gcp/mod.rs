//! The Google Cloud KMS provider: a customer's Cloud KMS key as the root of
//! trust, through the official `google-cloud-kms-v1` client (HTTP/JSON)
//! and `google-cloud-auth` (feature `gcp-kms`). docs/GCP_KMS.md is the
//! operator's guide.
//!
//! * **Keys** are CryptoKeys named in full,
//!   `projects/P/locations/L/keyRings/R/cryptoKeys/K` ([`name`]); a
//!   [`KeyRef`]'s region is the location `L`. The key's primary version
//!   encrypts; Decrypt is called on the CryptoKey and Cloud KMS finds the
//!   version the ciphertext names, so every enabled version decrypts and a
//!   new primary version (Cloud KMS rotation) leaves older wrapped keys
//!   readable. Zones record the key, never a version.
//! * **Wrap / unwrap** are `Encrypt` / `Decrypt` of the 32-byte key with
//!   `additional_authenticated_data` = `u32be(len(key name)) ‖ key name ‖
//!   canonical(context)` (the encoding the local provider authenticates,
//!   docs/FORMAT.md "Root-key wrap by the local and mock providers"): the
//!   context and the key name are both bound. The [`WrappedKey`] is
//!   Cloud KMS's ciphertext behind a versioned header ([`wrapped`]).
//! * **Integrity in transit**: every request carries the CRC32C of its
//!   plaintext or ciphertext and of its associated data, and every answer is
//!   checked as Google documents — `verified_plaintext_crc32c`,
//!   `verified_additional_authenticated_data_crc32c` and `ciphertext_crc32c`
//!   on Encrypt, `plaintext_crc32c` on Decrypt. A mismatch, or a checksum
//!   the server says it did not verify, is
//!   [`Error::ProviderUnreachable`] (transient): the bytes were damaged on
//!   the way, nothing is wrong with the key or the stored data, and Google's
//!   advice is to discard the answer and try again. An answer with no
//!   checksum at all is [`Error::Malformed`].
//! * **States** come from the key's primary version
//!   ([`describe_key`](KeyProvider::describe_key)); a key with no primary
//!   version or another purpose than `ENCRYPT_DECRYPT` is unavailable.
//! * **Regions**: a regional key serves its region; a multi-region or
//!   `global` key serves the regions inside it ([`locations`]), under the
//!   same name. Answered from the table, without a call.
//! * **Administration** ([`KeyProvider::admin`]): `CreateCryptoKey` (and
//!   `CreateKeyRing` when the ring is missing) in
//!   [`GcpKmsOptions::key_ring`]; enable and disable set the state of the
//!   key's primary version (`UpdateCryptoKeyVersion`).
//!   [`KeyProvider::access_policy`] is the IAM document of [`policy`].
//! * **Faults**: the client is built with no retry (this module must not
//!   retry: callers own that) and [`GcpKmsOptions::timeout`] per call.
//!   Google's status codes map onto distinct [`Error`] variants.
//!
//! This module is the only place in cmek that knows what a Cloud KMS
//! resource name or location is. It must not cache: zones own caching and
//! coalescing.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use google_cloud_auth::credentials::{
    anonymous, Builder as CredentialsBuilder, CacheableResource, Credentials, CredentialsProvider,
    EntityTag,
};
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_kms_v1::client::KeyManagementService;
use google_cloud_kms_v1::model::crypto_key::CryptoKeyPurpose;
use google_cloud_kms_v1::model::crypto_key_version::{
    CryptoKeyVersionAlgorithm, CryptoKeyVersionState,
};
use google_cloud_kms_v1::model::{CryptoKey, CryptoKeyVersion, CryptoKeyVersionTemplate, KeyRing};
use zeroize::Zeroizing;

use super::kit::{check_kind, fill_random, region_mismatch, root_wrap_aad};
use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, WrappedKey};
use crate::secret::SecretKey;
use crate::{Error, Result};

pub mod locations;
pub mod name;
pub mod policy;
pub mod wrapped;

use name::{CryptoKeyName, KeyRingName};

/// Provider kind of [`GcpKmsProvider`] in a [`KeyRef`].
pub const GCP_KMS_PROVIDER: &str = "gcp-kms";

/// Longest associated data Cloud KMS takes (64 KiB).
const MAX_AAD: usize = 64 * 1024;

/// How the provider authenticates to Cloud KMS.
#[derive(Clone, Default)]
pub enum GcpCredentials {
    /// Application-default credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's user credentials, or the metadata server of the VM or
    /// container the process runs on.
    #[default]
    ApplicationDefault,
    /// No credentials at all (a test server or a private endpoint that
    /// authenticates otherwise).
    Anonymous,
    /// A fixed OAuth2 access token, sent as `Authorization: Bearer ...`
    /// (a token minted elsewhere, or a test server's). Never printed.
    AccessToken(String),
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcpCredentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            GcpCredentials::Anonymous => f.write_str("Anonymous"),
            GcpCredentials::AccessToken(_) => f.write_str("AccessToken(<redacted>)"),
        }
    }
}

/// Endpoint, credentials and limits for Cloud KMS calls.
#[derive(Debug, Clone)]
pub struct GcpKmsOptions {
    /// An endpoint to use instead of `https://cloudkms.googleapis.com`
    /// (a regional or Private Service Connect endpoint, or a test server).
    pub endpoint: Option<String>,
    /// How to authenticate.
    pub credentials: GcpCredentials,
    /// Upper bound for one call (there is one attempt per call).
    pub timeout: Duration,
    /// The key ring `projects/P/locations/L/keyRings/R` that
    /// [`KeyAdmin::create_key`] creates keys in (created if missing). Only
    /// administration needs it.
    pub key_ring: Option<String>,
}

impl Default for GcpKmsOptions {
    /// The public endpoint, application-default credentials, 10 s per
    /// call, no key ring.
    fn default() -> Self {
        Self {
            endpoint: None,
            credentials: GcpCredentials::ApplicationDefault,
            timeout: Duration::from_secs(10),
            key_ring: None,
        }
    }
}

/// Root keys in Google Cloud KMS. See the [module docs](self).
#[derive(Clone)]
pub struct GcpKmsProvider {
    client: KeyManagementService,
    key_ring: Option<KeyRingName>,
}

impl fmt::Debug for GcpKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsProvider")
            .field("key_ring", &self.key_ring.as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

/// A fixed bearer token as Google auth credentials.
#[derive(Clone)]
struct FixedToken(http::HeaderMap);

impl fmt::Debug for FixedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FixedToken(<redacted>)")
    }
}

impl CredentialsProvider for FixedToken {
    async fn headers(
        &self,
        _extensions: http::Extensions,
    ) -> std::result::Result<
        CacheableResource<http::HeaderMap>,
        google_cloud_auth::errors::CredentialsError,
    > {
        Ok(CacheableResource::New {
            entity_tag: EntityTag::new(),
            data: self.0.clone(),
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        Some("googleapis.com".into())
    }
}

fn credentials(which: &GcpCredentials) -> Result<Credentials> {
    match which {
        GcpCredentials::ApplicationDefault => CredentialsBuilder::default().build().map_err(|e| {
            Error::InvalidArgument(format!(
                "no Google application-default credentials: {e} (set \
                 GOOGLE_APPLICATION_CREDENTIALS or run on a machine with a service account)"
            ))
        }),
        GcpCredentials::Anonymous => Ok(anonymous::Builder::new().build()),
        GcpCredentials::AccessToken(token) => {
            let mut value =
                http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    Error::InvalidArgument("the access token is not a header value".into())
                })?;
            value.set_sensitive(true);
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            Ok(Credentials::from(FixedToken(headers)))
        }
    }
}

impl GcpKmsProvider {
    /// A provider with `options`: its endpoint, credentials, timeout and
    /// key ring. Makes no call.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for credentials that cannot be loaded,
    /// an unusable endpoint or a key ring that is not a key ring name.
    pub async fn new(options: GcpKmsOptions) -> Result<Self> {
        let key_ring = options
            .key_ring
            .as_deref()
            .map(|ring| {
                KeyRingName::parse(ring).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{ring:?} is not a key ring name (projects/P/locations/L/keyRings/R)"
                    ))
                })
            })
            .transpose()?;
        let mut builder = KeyManagementService::builder()
            .with_credentials(credentials(&options.credentials)?)
            .with_retry_policy(NeverRetry)
            .with_attempt_timeout(options.timeout);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let client = builder.build().await.map_err(|e| {
            Error::InvalidArgument(format!("cannot build the Cloud KMS client: {e}"))
        })?;
        Ok(Self { client, key_ring })
    }

    /// The reference of key `name` (a CryptoKey resource name); its region
    /// is the name's location. A name that does not parse gets an empty
    /// region and is refused by every call.
    pub fn key_ref(&self, name: &str) -> KeyRef {
        KeyRef::new(
            GCP_KMS_PROVIDER,
            name,
            name::location_of(name).unwrap_or_default(),
        )
    }

    /// The key ring new keys are created in, if one was configured.
    pub fn key_ring(&self) -> Option<String> {
        self.key_ring.as_ref().map(ToString::to_string)
    }
}

/// `root`'s CryptoKey name, after checking the kind and the name.
fn crypto_key(root: &KeyRef) -> Result<CryptoKeyName> {
    check_kind(GCP_KMS_PROVIDER, root)?;
    CryptoKeyName::parse(root.key_id()).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{:?} is not a Cloud KMS key name (projects/P/locations/L/keyRings/R/cryptoKeys/K)",
            root.key_id()
        ))
    })
}

/// The associated data bound to a wrapped key: the key's name and the context.
fn associated_data(name: &CryptoKeyName, context: &EncryptionContext) -> Result<Bytes> {
    let aad = root_wrap_aad(&name.to_string(), context);
    if aad.len() > MAX_AAD {
        return Err(Error::InvalidArgument(format!(
            "the encryption context encodes to {} bytes; Cloud KMS takes at most {MAX_AAD}",
            aad.len()
        )));
    }
    Ok(Bytes::from(aad))
}

/// CRC32C as Cloud KMS carries it (an int64 holding the unsigned value).
fn crc(bytes: &[u8]) -> i64 {
    i64::from(crc32c::crc32c(bytes))
}

/// A response damaged or unverified in transit: transient, since the
/// request may well succeed when sent again.
fn corrupted_in_transit(operation: &str, what: &str) -> Error {
    Error::unreachable(
        GCP_KMS_PROVIDER,
        format!("{operation}: {what}; the message was damaged in transit, retry"),
    )
}

/// Why a regional key cannot be used from another region.
const REGIONAL: &str = "it is a regional Cloud KMS key, which serves only its own region: use a \
     key in that region, or in a multi-region location (such as europe or nam4) that contains it";
/// Why a multi-region key does not serve a region outside it.
const OUTSIDE: &str = "the region is not inside the Cloud KMS key's multi-region location: use a \
     key whose location contains it";
/// Why a key of an unknown location serves only itself.
const UNKNOWN_LOCATION: &str = "cmek's location table does not list the Cloud KMS key's location: \
     it serves only its own location";

/// The state a key version's state means for the key.
fn map_version_state(state: &CryptoKeyVersionState) -> KeyState {
    match state {
        CryptoKeyVersionState::Enabled => KeyState::Enabled,
        CryptoKeyVersionState::Disabled => KeyState::Disabled,
        CryptoKeyVersionState::DestroyScheduled
        | CryptoKeyVersionState::PendingExternalDestruction => KeyState::PendingDeletion,
        // The key material is gone for good: as a deleted key.
        CryptoKeyVersionState::Destroyed => KeyState::NotFound,
        CryptoKeyVersionState::PendingImport => KeyState::PendingImport,
        // Pending generation, failed import or generation, failed external
        // destruction, and states added after this client.
        _ => KeyState::Unavailable,
    }
}

/// The key's state: its primary version's, if it is an encryption key
/// that has one.
fn key_state(key: &CryptoKey) -> KeyState {
    if key.purpose != CryptoKeyPurpose::EncryptDecrypt {
        return KeyState::Unavailable;
    }
    key.primary
        .as_ref()
        .map_or(KeyState::Unavailable, |v| map_version_state(&v.state))
}

/// The state a FAILED_PRECONDITION message names ("... is not enabled,
/// current state is: DISABLED."), else unavailable.
fn state_in_message(message: &str) -> KeyState {
    let upper = message.to_ascii_uppercase();
    let after = upper
        .rsplit_once("STATE IS:")
        .map_or(upper.as_str(), |(_, s)| s);
    let word: String = after
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_uppercase() || *c == '_')
        .collect();
    match word.as_str() {
        "DISABLED" => KeyState::Disabled,
        "DESTROYED" => KeyState::NotFound,
        "DESTROY_SCHEDULED" | "PENDING_EXTERNAL_DESTRUCTION" => KeyState::PendingDeletion,
        "PENDING_IMPORT" => KeyState::PendingImport,
        _ => KeyState::Unavailable,
    }
}

/// Maps a client failure onto the crate's error variants.
fn map_error(err: google_cloud_kms_v1::Error, root: &KeyRef, operation: &'static str) -> Error {
    let unreachable = |reason: String| Error::unreachable(GCP_KMS_PROVIDER, reason);
    let key = root.to_string();
    let mapped = if let Some(status) = err.status() {
        let message = status.message.clone();
        match status.code {
            Code::PermissionDenied | Code::Unauthenticated => {
                Error::AccessDenied { key, operation }
            }
            Code::NotFound => Error::KeyUnavailable {
                key,
                state: KeyState::NotFound,
            },
            Code::FailedPrecondition => Error::KeyUnavailable {
                key,
                state: state_in_message(&message),
            },
            Code::InvalidArgument
                if message.to_ascii_lowercase().contains("checksum")
                    || message.to_ascii_lowercase().contains("crc32c") =>
            {
                corrupted_in_transit(operation, "Cloud KMS refused a request checksum")
            }
            Code::InvalidArgument if operation == "decrypt" => Error::tampered(
                "Cloud KMS ciphertext (wrong key, wrong associated data, or modified)",
            ),
            Code::ResourceExhausted => Error::Throttled {
                provider: GCP_KMS_PROVIDER.into(),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Aborted => {
                unreachable(format!("{operation}: {}", status.code.name()))
            }
            code => Error::rejected(GCP_KMS_PROVIDER, code.name(), message),
        }
    } else if err.is_timeout() {
        unreachable(format!("{operation} timed out"))
    } else if let Some(creds) = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<google_cloud_gax::error::CredentialsError>())
    {
        // No access token: a metadata server that did not answer may answer
        // later; missing or broken credentials will not.
        if creds.is_transient() {
            unreachable(format!("{operation}: no access token could be obtained"))
        } else {
            Error::rejected(
                GCP_KMS_PROVIDER,
                "UNAUTHENTICATED",
                format!("{operation}: no usable Google credentials: {creds}"),
            )
        }
    } else if err.is_deserialization() {
        Error::malformed(
            "Cloud KMS response",
            format!("{operation}: unreadable answer"),
        )
    } else if let Some(code) = err.http_status_code() {
        // An HTTP error without Google's error body (a proxy, a gateway).
        match code {
            401 | 403 => Error::AccessDenied { key, operation },
            404 => Error::KeyUnavailable {
                key,
                state: KeyState::NotFound,
            },
            429 => Error::Throttled {
                provider: GCP_KMS_PROVIDER.into(),
            },
            500..=599 => unreachable(format!("{operation}: HTTP {code}")),
            _ => Error::rejected(GCP_KMS_PROVIDER, format!("HTTP {code}"), String::new()),
        }
    } else {
        // Connection, I/O and TLS failures.
        unreachable(format!("{operation} could not be sent"))
    };
    // The client's error stays reachable as the cause (`Error::source`).
    mapped.with_source(err)
}

#[async_trait]
impl KeyProvider for GcpKmsProvider {
    fn kind(&self) -> &str {
        GCP_KMS_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        GcpKmsProvider::key_ref(self, key_id)
    }

    /// The key itself in its own location; for a multi-region or `global`
    /// key, the same name in any region inside it ([`locations`]).
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        let name = crypto_key(root)?;
        if root.region() == region {
            return Ok(root.clone());
        }
        if locations::serves(&name.location, region) {
            return Ok(KeyRef::new(GCP_KMS_PROVIDER, root.key_id(), region));
        }
        let reason = match locations::kind_of(&name.location) {
            locations::LocationKind::Region => REGIONAL,
            locations::LocationKind::Unknown => UNKNOWN_LOCATION,
            _ => OUTSIDE,
        };
        Err(region_mismatch(root, region, reason))
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    /// The IAM document of [`policy::role_document`] on the keys' names.
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        for key in keys {
            check_kind(GCP_KMS_PROVIDER, key)?;
        }
        let names: Vec<&str> = keys.iter().map(KeyRef::key_id).collect();
        policy::role_document(&names).map(Some)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let name = crypto_key(root)?;
        let aad = associated_data(&name, context)?;
        // The client copies the plaintext into its JSON request, which it
        // does not wipe; that copy is outside cmek's control.
        let plaintext = Bytes::copy_from_slice(key.expose_secret());
        let out = self
            .client
            .encrypt()
            .set_name(name.to_string())
            .set_plaintext_crc32c(crc(&plaintext))
            .set_plaintext(plaintext)
            .set_additional_authenticated_data_crc32c(crc(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| map_error(e, root, "encrypt"))?;
        if !out.verified_plaintext_crc32c || !out.verified_additional_authenticated_data_crc32c {
            return Err(corrupted_in_transit(
                "encrypt",
                "Cloud KMS did not verify the request's checksums",
            ));
        }
        match out.ciphertext_crc32c {
            None => {
                return Err(Error::malformed(
                    "Cloud KMS Encrypt response",
                    "no ciphertext_crc32c",
                ))
            }
            Some(sum) if sum != crc(&out.ciphertext) => {
                return Err(corrupted_in_transit(
                    "encrypt",
                    "the ciphertext does not match its checksum",
                ))
            }
            Some(_) => {}
        }
        let version_of_this_key = out
            .name
            .strip_prefix(&format!("{name}/cryptoKeyVersions/"))
            .is_some_and(|v| !v.is_empty() && !v.contains('/'));
        if !version_of_this_key {
            return Err(Error::malformed(
                "Cloud KMS Encrypt response",
                "the key version named is not one of the key's",
            ));
        }
        Ok(WrappedKey::from_bytes(wrapped::encode(&out.ciphertext)?))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let name = crypto_key(root)?;
        let ciphertext = Bytes::copy_from_slice(wrapped::decode(wrapped.as_bytes())?);
        let aad = associated_data(&name, context)?;
        let out = self
            .client
            .decrypt()
            .set_name(name.to_string())
            .set_ciphertext_crc32c(crc(&ciphertext))
            .set_ciphertext(ciphertext)
            .set_additional_authenticated_data_crc32c(crc(&aad))
            .set_additional_authenticated_data(aad)
            .send()
            .await
            .map_err(|e| map_error(e, root, "decrypt"))?;
        let expected = out.plaintext_crc32c;
        let plaintext = Zeroizing::new(Vec::from(out.plaintext));
        match expected {
            None => Err(Error::malformed(
                "Cloud KMS Decrypt response",
                "no plaintext_crc32c",
            )),
            Some(sum) if sum != crc(&plaintext) => Err(corrupted_in_transit(
                "decrypt",
                "the plaintext does not match its checksum",
            )),
            Some(_) => SecretKey::from_slice(&plaintext),
        }
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        let name = crypto_key(root)?;
        match self
            .client
            .get_crypto_key()
            .set_name(name.to_string())
            .send()
            .await
        {
            Ok(key) => Ok(key_state(&key)),
            Err(e) => match map_error(e, root, "describe") {
                Error::KeyUnavailable {
                    state: KeyState::NotFound,
                    ..
                } => Ok(KeyState::NotFound),
                Error::ProviderUnreachable { .. } => Ok(KeyState::Unreachable),
                other => Err(other),
            },
        }
    }
}

impl GcpKmsProvider {
    /// The name of `key`'s primary version, as `GetCryptoKey` answers.
    async fn primary_version(&self, key: &KeyRef, name: &CryptoKeyName) -> Result<String> {
        let out = self
            .client
            .get_crypto_key()
            .set_name(name.to_string())
            .send()
            .await
            .map_err(|e| map_error(e, key, "describe"))?;
        out.primary
            .map(|v| v.name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::KeyUnavailable {
                key: key.to_string(),
                state: KeyState::Unavailable,
            })
    }

    async fn set_primary_state(
        &self,
        key: &KeyRef,
        state: CryptoKeyVersionState,
        operation: &'static str,
    ) -> Result<()> {
        let name = crypto_key(key)?;
        let version = self.primary_version(key, &name).await?;
        self.client
            .update_crypto_key_version()
            .set_crypto_key_version(CryptoKeyVersion::new().set_name(version).set_state(state))
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["state"]))
            .send()
            .await
            .map_err(|e| map_error(e, key, operation))?;
        Ok(())
    }

    async fn create_crypto_key(&self, ring: &KeyRingName, id: &str, key: &KeyRef) -> Result<()> {
        let template = CryptoKeyVersionTemplate::new()
            .set_algorithm(CryptoKeyVersionAlgorithm::GoogleSymmetricEncryption);
        self.client
            .create_crypto_key()
            .set_parent(ring.to_string())
            .set_crypto_key_id(id)
            .set_crypto_key(
                CryptoKey::new()
                    .set_purpose(CryptoKeyPurpose::EncryptDecrypt)
                    .set_version_template(template),
            )
            .send()
            .await
            .map_err(|e| map_error(e, key, "create"))?;
        Ok(())
    }
}

/// `CreateCryptoKey` (purpose `ENCRYPT_DECRYPT`, algorithm
/// `GOOGLE_SYMMETRIC_ENCRYPTION`) in the configured key ring, creating the
/// ring first if Cloud KMS says it is missing; enable and disable set the
/// primary version's state with `UpdateCryptoKeyVersion` (update mask
/// `state`), after `GetCryptoKey` names the primary.
#[async_trait]
impl KeyAdmin for GcpKmsProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        let ring = self.key_ring.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "no key ring to create Cloud KMS keys in (GcpKmsOptions::key_ring)".into(),
            )
        })?;
        if new.is_multi_region()
            && matches!(
                locations::kind_of(&ring.location),
                locations::LocationKind::Region | locations::LocationKind::Unknown
            )
        {
            return Err(Error::InvalidArgument(format!(
                "key ring {ring} is in a regional location: a key that serves several \
                 regions needs a key ring in a multi-region location (such as europe or nam4)"
            )));
        }
        let id = match new.name() {
            Some(id) if name::is_resource_id(id) => id.to_owned(),
            Some(id) => {
                return Err(Error::InvalidArgument(format!(
                    "{id:?} is not a Cloud KMS key id (1 to 63 letters, digits, '_' or '-')"
                )))
            }
            None => {
                let mut random = [0u8; 8];
                fill_random(&mut random)?;
                let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
                format!("cmek-{hex}")
            }
        };
        let key = self.key_ref(&ring.key(&id).to_string());
        match self.create_crypto_key(ring, &id, &key).await {
            Err(Error::KeyUnavailable {
                state: KeyState::NotFound,
                ..
            }) => {
                // The key ring does not exist yet.
                self.client
                    .create_key_ring()
                    .set_parent(ring.parent())
                    .set_key_ring_id(&ring.key_ring)
                    .set_key_ring(KeyRing::new())
                    .send()
                    .await
                    .map_err(|e| map_error(e, &key, "create"))?;
                self.create_crypto_key(ring, &id, &key).await?;
            }
            Err(Error::ProviderRejected { code, .. }) if code == Code::AlreadyExists.name() => {
                return Err(Error::InvalidArgument(format!(
                    "a Cloud KMS key named {} already exists",
                    key.key_id()
                )))
            }
            other => other?,
        }
        tracing::info!(key = %key, "created Cloud KMS key");
        Ok(key)
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_primary_state(key, CryptoKeyVersionState::Enabled, "enable")
            .await
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.set_primary_state(key, CryptoKeyVersionState::Disabled, "disable")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::RegionAnswer;

    async fn provider() -> GcpKmsProvider {
        // An endpoint nothing listens on: an answer proves no call was made.
        GcpKmsProvider::new(GcpKmsOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            credentials: GcpCredentials::Anonymous,
            ..GcpKmsOptions::default()
        })
        .await
        .unwrap()
    }

    fn key(location: &str) -> String {
        format!("projects/acme/locations/{location}/keyRings/cmek/cryptoKeys/orders")
    }

    #[tokio::test]
    async fn key_refs_take_their_location_as_region() {
        let p = provider().await;
        assert_eq!(p.key_ref(&key("europe-west1")).region(), "europe-west1");
        assert_eq!(p.key_ref(&key("europe")).region(), "europe");
        assert_eq!(p.key_ref("not-a-name").region(), "");
        let err = p
            .wrap_key(
                &p.key_ref("not-a-name"),
                &SecretKey::generate().unwrap(),
                &EncryptionContext::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    }

    #[tokio::test]
    async fn regions_are_answered_from_the_location_table_without_a_call() {
        let p = provider().await;
        let multi = p.key_ref(&key("europe"));
        let answer = p.serves_region(&multi, "europe-west1").await.unwrap();
        let RegionAnswer::Replica(there) = answer else {
            panic!("{answer:?}")
        };
        assert_eq!(
            there.key_id(),
            multi.key_id(),
            "the same key, by the same name"
        );
        assert_eq!(there.region(), "europe-west1");
        assert_eq!(
            p.serves_region(&multi, "europe").await.unwrap(),
            RegionAnswer::Home
        );
        let cases = [
            (key("europe"), "us-east1", "multi-region"),
            (key("europe-west1"), "europe-west4", "regional"),
            (key("mars"), "mars-north1", "location table"),
        ];
        for (name, region, why) in cases {
            let answer = p.serves_region(&p.key_ref(&name), region).await.unwrap();
            assert!(
                matches!(answer, RegionAnswer::NotServed(r) if r.contains(why)),
                "{name} in {region}: {answer:?}"
            );
        }
        let global = p.key_ref(&key("global"));
        assert!(p
            .serves_region(&global, "asia-south1")
            .await
            .unwrap()
            .serves());
        let foreign = KeyRef::new("aws-kms", key("europe"), "europe");
        assert!(p.key_in_region(&foreign, "europe-west1").is_err());
    }

    #[tokio::test]
    async fn access_policies_name_keys_once() {
        let p = provider().await;
        let multi = p.key_ref(&key("europe"));
        let there = p.key_in_region(&multi, "europe-west4").unwrap();
        let doc = p.access_policy(&[multi.clone(), there]).unwrap().unwrap();
        assert_eq!(doc.matches(multi.key_id()).count(), 1, "{doc}");
        assert!(
            doc.contains("cloudkms.cryptoKeyVersions.useToDecrypt"),
            "{doc}"
        );
        assert!(p.access_policy(&[]).is_err());
        assert!(p.access_policy(&[p.key_ref("alias/x")]).is_err());
    }

    #[tokio::test]
    async fn admin_needs_a_key_ring_and_a_multi_region_ring_for_multi_region_keys() {
        let p = provider().await;
        let err = p.create_key(&NewKey::named("k")).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let regional = GcpKmsProvider::new(GcpKmsOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            credentials: GcpCredentials::Anonymous,
            key_ring: Some("projects/acme/locations/europe-west1/keyRings/cmek".into()),
            ..GcpKmsOptions::default()
        })
        .await
        .unwrap();
        let err = regional
            .create_key(&NewKey::named("k").multi_region())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("multi-region"), "{err}");
        let err = regional
            .create_key(&NewKey::named("not a key id"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        let bad_ring = GcpKmsProvider::new(GcpKmsOptions {
            key_ring: Some("projects/acme".into()),
            credentials: GcpCredentials::Anonymous,
            ..GcpKmsOptions::default()
        })
        .await;
        assert!(bad_ring.is_err());
    }

    #[test]
    fn states_map_from_the_primary_version() {
        use CryptoKeyVersionState as S;
        for (state, expected) in [
            (S::Enabled, KeyState::Enabled),
            (S::Disabled, KeyState::Disabled),
            (S::DestroyScheduled, KeyState::PendingDeletion),
            (S::Destroyed, KeyState::NotFound),
            (S::PendingImport, KeyState::PendingImport),
            (S::PendingGeneration, KeyState::Unavailable),
            (S::ImportFailed, KeyState::Unavailable),
            (S::GenerationFailed, KeyState::Unavailable),
        ] {
            assert_eq!(map_version_state(&state), expected, "{state:?}");
        }
        let enabled = CryptoKeyVersion::new().set_state(S::Enabled);
        let key = CryptoKey::new()
            .set_purpose(CryptoKeyPurpose::EncryptDecrypt)
            .set_primary(enabled.clone());
        assert_eq!(key_state(&key), KeyState::Enabled);
        let signing = CryptoKey::new()
            .set_purpose(CryptoKeyPurpose::AsymmetricSign)
            .set_primary(enabled);
        assert_eq!(key_state(&signing), KeyState::Unavailable);
        let no_primary = CryptoKey::new().set_purpose(CryptoKeyPurpose::EncryptDecrypt);
        assert_eq!(key_state(&no_primary), KeyState::Unavailable);
    }

    #[test]
    fn failed_preconditions_name_the_version_state() {
        let msg = "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1 is not \
                   enabled, current state is: DISABLED.";
        assert_eq!(state_in_message(msg), KeyState::Disabled);
        assert_eq!(
            state_in_message("current state is: DESTROY_SCHEDULED."),
            KeyState::PendingDeletion
        );
        assert_eq!(
            state_in_message("current state is: DESTROYED."),
            KeyState::NotFound
        );
        assert_eq!(state_in_message("something else"), KeyState::Unavailable);
    }

    #[test]
    fn checksums_are_castagnoli() {
        // The CRC-32C check value (RFC 3720, appendix B.4).
        assert_eq!(crc(b"123456789"), 0xe306_9283);
        assert_eq!(crc(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn tokens_are_never_printed() {
        let which = GcpCredentials::AccessToken("ya29.secret".into());
        assert!(!format!("{which:?}").contains("secret"));
    }
}
