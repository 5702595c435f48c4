//! The AWS KMS provider: a customer's KMS key as the root of trust, through
//! the official `aws-sdk-kms` (feature `aws-kms`).
//!
//! * **Wrap / unwrap** are KMS `Encrypt` / `Decrypt` of the 32-byte key with
//!   the [`EncryptionContext`] as the KMS encryption context; the
//!   [`WrappedKey`] is KMS's ciphertext blob, unchanged. New keys are
//!   generated locally and encrypted (the default
//!   [`generate_key`](KeyProvider::generate_key)), so the provider needs only
//!   `kms:Encrypt`, `kms:Decrypt` and `kms:DescribeKey` — exactly what
//!   [`policy::role_policy`] grants.
//! * **Key identifiers**: key ids, key ARNs, alias names (`alias/...`) and
//!   alias ARNs are passed to KMS as given.
//!   [`resolve_key`](KeyProvider::resolve_key) turns an alias (or a bare
//!   key id) into the key's ARN with `DescribeKey`, so that a zone records
//!   a key nobody can re-point; a key ARN is already that and is returned
//!   unchanged, without a call.
//! * **Multi-region keys** are recognised by their key id (`mrk-...`, bare or
//!   in a key ARN) and by nothing else: an alias is never one, whatever its
//!   name (`alias/mrk-x`) or target ([`KeyProvider::is_multi_region`]).
//! * **Regions**: a [`KeyRef`]'s region is the key's home region. A provider
//!   serves its own region; a multi-region key (`mrk-...`) from another region
//!   is used through its replica here (same ARN but for the region), and any
//!   other key from another region is refused with
//!   [`Error::RegionMismatch`].
//! * **Faults**: throttling, 5xx answers, timeouts and connection failures
//!   are retried with exponential backoff by the SDK's standard retry
//!   strategy, within [`AwsKmsOptions::deadline`] for the whole call. KMS
//!   exceptions map to distinct [`Error`] variants; nothing secret is logged.
//!
//! This module must not cache: zones own caching and coalescing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::KeyState as AwsKeyState;
use aws_sdk_kms::Client;
use zeroize::Zeroizing;

use super::{check_kind, EncryptionContext, KeyProvider, KeyRef, KeyState, WrappedKey};
use crate::secret::SecretKey;
use crate::{Error, Result};

pub mod arn;
pub mod policy;

use arn::{is_multi_region_key_id, KmsArn};

/// Provider kind of [`AwsKmsProvider`] in a [`KeyRef`].
pub const AWS_KMS_PROVIDER: &str = "aws-kms";

/// Timeouts and retries for KMS calls.
#[derive(Debug, Clone)]
pub struct AwsKmsOptions {
    /// The region to use; `None` takes it from the standard configuration
    /// (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// An endpoint to use instead of the public one (a VPC endpoint, or a
    /// KMS-compatible test server).
    pub endpoint_url: Option<String>,
    /// Upper bound for one call, retries included.
    pub deadline: Duration,
    /// Upper bound for one attempt.
    pub attempt_timeout: Duration,
    /// Upper bound for establishing a connection.
    pub connect_timeout: Duration,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the first retry; it grows exponentially (with jitter).
    pub initial_backoff: Duration,
}

impl Default for AwsKmsOptions {
    /// 10 s per call, 3 s per attempt, 1 s to connect, 5 attempts, 100 ms
    /// initial backoff — a zone opening waits at most 10 s for its keys.
    fn default() -> Self {
        Self {
            region: None,
            endpoint_url: None,
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(1),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
        }
    }
}

/// Root keys in AWS KMS. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct AwsKmsProvider {
    client: Client,
    region: String,
}

impl AwsKmsProvider {
    /// A provider configured from the standard AWS chain (environment,
    /// shared config and credentials files, web identity, ECS and EC2
    /// instance roles), with `options` for region, endpoint, timeouts and
    /// retries.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if no region is configured.
    pub async fn from_env(options: AwsKmsOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(retry_config(&options))
            .timeout_config(timeout_config(&options));
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &options.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        Self::from_sdk_config(&loader.load().await)
    }

    /// A provider from an SDK configuration the caller built.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the configuration has no region.
    pub fn from_sdk_config(config: &SdkConfig) -> Result<Self> {
        let region = config
            .region()
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "no AWS region configured (set AWS_REGION or pass a region)".into(),
                )
            })?
            .to_string();
        Ok(Self {
            client: Client::new(config),
            region,
        })
    }

    /// A provider around a client the caller built, serving `region`.
    pub fn from_client(client: Client, region: impl Into<String>) -> Self {
        Self {
            client,
            region: region.into(),
        }
    }

    /// The region this provider serves.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The underlying SDK client (for administration the provider does not
    /// cover, e.g. creating keys).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The reference of a key given by id, ARN or alias. An ARN's region is
    /// its own; any other identifier names a key in this provider's region.
    pub fn key_ref(&self, key_id: &str) -> KeyRef {
        let region = arn::region_of(key_id).unwrap_or_else(|| self.region.clone());
        KeyRef::new(AWS_KMS_PROVIDER, key_id, region)
    }

    /// The identifier to send to KMS in this region for `root`.
    fn key_id_here(&self, root: &KeyRef) -> Result<String> {
        check_kind(AWS_KMS_PROVIDER, root)?;
        if root.region() == self.region {
            return Ok(root.key_id().to_owned());
        }
        if let Some(arn) = KmsArn::parse(root.key_id()) {
            if arn.is_multi_region() {
                let replica = arn.in_region(&self.region);
                tracing::debug!(key = %root, replica = %replica, "using multi-region replica");
                return Ok(replica.to_string());
            }
        } else if is_multi_region_key_id(root.key_id()) {
            // A bare multi-region key id is the same in every region.
            return Ok(root.key_id().to_owned());
        }
        Err(Error::RegionMismatch {
            key: root.to_string(),
            key_region: root.region().to_owned(),
            region: self.region.clone(),
            reason: "only multi-region (mrk-) keys can be used outside their home region, \
                     through a replica",
        })
    }
}

fn retry_config(options: &AwsKmsOptions) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(options.max_attempts.max(1))
        .with_initial_backoff(options.initial_backoff)
        .with_max_backoff(options.deadline / 4)
}

fn timeout_config(options: &AwsKmsOptions) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(options.deadline)
        .operation_attempt_timeout(options.attempt_timeout)
        .connect_timeout(options.connect_timeout)
        .build()
}

fn context_map(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

/// Maps an SDK failure onto the crate's error variants.
fn map_error<E>(
    err: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    root: &KeyRef,
    operation: &'static str,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let unreachable = |reason: String| Error::unreachable(AWS_KMS_PROVIDER, reason);
    let mapped = match &err {
        SdkError::TimeoutError(_) => unreachable(format!("{operation} timed out")),
        SdkError::DispatchFailure(failure) => {
            if failure.is_timeout() {
                unreachable(format!("{operation} timed out"))
            } else {
                unreachable(format!("{operation} could not be sent"))
            }
        }
        SdkError::ResponseError(_) => unreachable(format!("{operation}: unreadable response")),
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown").to_owned();
            let message = inner.message().unwrap_or_default().to_owned();
            let key = root.to_string();
            match code.as_str() {
                "AccessDeniedException" => Error::AccessDenied { key, operation },
                "DisabledException" => Error::KeyUnavailable {
                    key,
                    state: KeyState::Disabled,
                },
                "NotFoundException" => Error::KeyUnavailable {
                    key,
                    state: KeyState::NotFound,
                },
                "KMSInvalidStateException" => Error::KeyUnavailable {
                    key,
                    state: if message.contains("pending deletion") {
                        KeyState::PendingDeletion
                    } else if message.contains("pending import") {
                        KeyState::PendingImport
                    } else {
                        KeyState::Unavailable
                    },
                },
                "KeyUnavailableException" | "CustomKeyStoreInvalidStateException" => {
                    Error::KeyUnavailable {
                        key,
                        state: KeyState::Unavailable,
                    }
                }
                "InvalidCiphertextException" | "IncorrectKeyException" => Error::tampered(
                    "KMS ciphertext (wrong key, wrong encryption context or modified)",
                ),
                "ThrottlingException" | "LimitExceededException" => Error::Throttled {
                    provider: AWS_KMS_PROVIDER.into(),
                },
                "KMSInternalException"
                | "DependencyTimeoutException"
                | "InternalFailure"
                | "ServiceUnavailable" => unreachable(format!("{operation}: {code}")),
                _ => Error::rejected(AWS_KMS_PROVIDER, code, message),
            }
        }
        _ => unreachable(format!("{operation} failed")),
    };
    // The SDK's error stays reachable as the cause (`Error::source`).
    mapped.with_source(err)
}

fn map_state(state: &AwsKeyState) -> KeyState {
    match state {
        AwsKeyState::Enabled => KeyState::Enabled,
        AwsKeyState::Disabled => KeyState::Disabled,
        AwsKeyState::PendingDeletion | AwsKeyState::PendingReplicaDeletion => {
            KeyState::PendingDeletion
        }
        AwsKeyState::PendingImport => KeyState::PendingImport,
        // Unavailable, Creating, Updating and states added after this SDK.
        _ => KeyState::Unavailable,
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn kind(&self) -> &str {
        AWS_KMS_PROVIDER
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        let key_id = self.key_id_here(root)?;
        // The SDK copies the plaintext into its request buffers, which it does
        // not wipe; that copy is outside cmek's control.
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(key.expose_secret().to_vec()))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| map_error(e, root, "encrypt"))?;
        let blob = out
            .ciphertext_blob
            .ok_or_else(|| Error::malformed("KMS Encrypt response", "no ciphertext blob"))?;
        Ok(WrappedKey::from_bytes(blob.into_inner()))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let key_id = self.key_id_here(root)?;
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped.as_bytes().to_vec()))
            .set_encryption_context(context_map(context))
            .send()
            .await
            .map_err(|e| map_error(e, root, "decrypt"))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| Error::malformed("KMS Decrypt response", "no plaintext"))?
                .into_inner(),
        );
        SecretKey::from_slice(&plaintext)
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        let key_id = self.key_id_here(root)?;
        match self.client.describe_key().key_id(key_id).send().await {
            Ok(out) => Ok(out
                .key_metadata
                .and_then(|m| m.key_state)
                .as_ref()
                .map_or(KeyState::Unavailable, map_state)),
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

    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        check_kind(AWS_KMS_PROVIDER, root)?;
        if KmsArn::parse(root.key_id()).is_some_and(|arn| arn.key_id().is_some()) {
            // A key ARN names one key for good (a multi-region key's ARN
            // keeps its home region: it is not swapped for the replica).
            return Ok(root.clone());
        }
        let key_id = self.key_id_here(root)?;
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, root, "describe"))?;
        let arn = out
            .key_metadata
            .and_then(|m| m.arn)
            .ok_or_else(|| Error::malformed("KMS DescribeKey response", "no key ARN"))?;
        match KmsArn::parse(&arn) {
            Some(parsed) if parsed.key_id().is_some() => {
                let resolved = self.key_ref(&arn);
                tracing::debug!(key = %root, resolved = %resolved, "resolved key");
                Ok(resolved)
            }
            _ => Err(Error::malformed(
                "KMS DescribeKey response",
                "the key ARN is not a KMS key ARN",
            )),
        }
    }

    fn is_multi_region(&self, root: &KeyRef) -> bool {
        root.provider() == AWS_KMS_PROVIDER
            && match KmsArn::parse(root.key_id()) {
                // An alias ARN has no key id and is never multi-region.
                Some(arn) => arn.is_multi_region(),
                // `alias/mrk-x` does not start with `mrk-`: refused here.
                None => is_multi_region_key_id(root.key_id()),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(region: &str) -> AwsKmsProvider {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_owned()))
            .build();
        AwsKmsProvider::from_client(Client::from_conf(config), region)
    }

    #[test]
    fn key_refs_take_the_region_of_their_arn() {
        let p = provider("eu-west-1");
        assert_eq!(p.key_ref("alias/orders").region(), "eu-west-1");
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(p.key_ref(arn).region(), "us-east-1");
    }

    #[test]
    fn cross_region_use_needs_a_multi_region_key() {
        let p = provider("eu-west-1");
        let mrk = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(
            p.key_id_here(&p.key_ref(mrk)).unwrap(),
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        let bare = KeyRef::new(
            AWS_KMS_PROVIDER,
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "us-east-1",
        );
        assert_eq!(
            p.key_id_here(&bare).unwrap(),
            "mrk-1234abcd12ab34cd56ef1234567890ab"
        );
        let single = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let err = p.key_id_here(&p.key_ref(single)).unwrap_err();
        assert!(matches!(err, Error::RegionMismatch { .. }), "{err}");
        assert!(err.to_string().contains("only multi-region"), "{err}");
        let local = KeyRef::new("local", "k", "eu-west-1");
        assert!(matches!(
            p.key_id_here(&local).unwrap_err(),
            Error::InvalidArgument(_)
        ));
    }

    #[test]
    fn only_key_ids_and_key_arns_are_multi_region() {
        let p = provider("us-east-1");
        let key = |id: &str| p.key_ref(id);
        for yes in [
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            assert!(p.is_multi_region(&key(yes)), "{yes}");
        }
        for no in [
            "alias/mrk-x",
            "alias/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:alias/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-",
        ] {
            assert!(!p.is_multi_region(&key(no)), "{no}");
        }
        let foreign = KeyRef::new("local", "mrk-1234abcd12ab34cd56ef1234567890ab", "us-east-1");
        assert!(!p.is_multi_region(&foreign));
    }

    #[tokio::test]
    async fn key_arns_resolve_to_themselves_without_a_call() {
        // The client has no endpoint it could reach: an answer proves no call.
        let p = provider("us-east-1");
        let arn = p
            .key_ref("arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab");
        assert_eq!(p.resolve_key(&arn).await.unwrap(), arn);
        let local = KeyRef::new("local", "k", "us-east-1");
        assert!(matches!(
            p.resolve_key(&local).await.unwrap_err(),
            Error::InvalidArgument(_)
        ));
    }

    #[test]
    fn states_map_one_to_one_where_they_exist() {
        assert_eq!(map_state(&AwsKeyState::Enabled), KeyState::Enabled);
        assert_eq!(map_state(&AwsKeyState::Disabled), KeyState::Disabled);
        assert_eq!(
            map_state(&AwsKeyState::PendingDeletion),
            KeyState::PendingDeletion
        );
        assert_eq!(
            map_state(&AwsKeyState::PendingReplicaDeletion),
            KeyState::PendingDeletion
        );
        assert_eq!(
            map_state(&AwsKeyState::PendingImport),
            KeyState::PendingImport
        );
        assert_eq!(map_state(&AwsKeyState::Unavailable), KeyState::Unavailable);
        assert_eq!(map_state(&AwsKeyState::Creating), KeyState::Unavailable);
    }
}
