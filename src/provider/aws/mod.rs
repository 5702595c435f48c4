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
//!   name (`alias/mrk-x`) or target.
//! * **Regions**: a [`KeyRef`]'s region is the key's home region. A provider
//!   serves its own region. [`key_in_region`](KeyProvider::key_in_region)
//!   names a multi-region key's replica in another region (same ARN but for
//!   the region), and refuses any other key, and any alias, with
//!   [`Error::RegionMismatch`] saying what to use instead;
//!   [`serves_region`](KeyProvider::serves_region) also asks `DescribeKey`
//!   whether a replica really is there (its `MultiRegionConfiguration`).
//!   A multi-region key from another region is used through its replica
//!   here.
//! * **Administration** ([`KeyProvider::admin`]): `CreateKey`, `EnableKey`,
//!   `DisableKey`, for operators' tools; these need their own IAM
//!   permissions, which the [`policy::role_policy`] of a service does not
//!   grant. [`KeyProvider::access_policy`] is that role policy.
//! * **Faults**: throttling, 5xx answers, timeouts and connection failures
//!   are retried with exponential backoff by the SDK's standard retry
//!   strategy, within [`AwsKmsOptions::deadline`] for the whole call. KMS
//!   exceptions map to distinct [`Error`] variants; nothing secret is logged.
//!
//! This module, with its ARN parser and [`policy`], is the only place in cmek that
//! knows what an ARN, an alias or a multi-region key is. It must not cache:
//! zones own caching and coalescing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyState as AwsKeyState, KeyUsageType};
use aws_sdk_kms::Client;
use zeroize::Zeroizing;

use super::kit::{check_kind, region_mismatch};
use super::{
    EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, RegionAnswer, WrappedKey,
};
use crate::secret::SecretKey;
use crate::{Error, Result};

pub(crate) mod arn;
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

    /// The reference of a key given by id, ARN or alias. An ARN's region is
    /// its own; any other identifier names a key in this provider's region.
    pub fn key_ref(&self, key_id: &str) -> KeyRef {
        let region = arn::region_of(key_id).unwrap_or_else(|| self.region.clone());
        KeyRef::new(AWS_KMS_PROVIDER, key_id, region)
    }

    /// The identifier to send to KMS in this region for `root`: its
    /// name here ([`KeyProvider::key_in_region`]).
    fn key_id_here(&self, root: &KeyRef) -> Result<String> {
        let here = self.key_in_region(root, &self.region)?;
        if here.region() != root.region() {
            tracing::debug!(key = %root, replica = %here, "using multi-region replica");
        }
        Ok(here.key_id().to_owned())
    }

    /// The key id (not an alias, nor an ARN) of `key`, as `DescribeKey`
    /// answers it, for the administrative calls that take no alias (and,
    /// on some KMS-compatible servers, no ARN).
    async fn admin_key_id(&self, key: &KeyRef) -> Result<String> {
        let key_id = self.key_id_here(key)?;
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key, "describe"))?;
        out.key_metadata
            .map(|m| m.key_id)
            .ok_or_else(|| Error::malformed("KMS DescribeKey response", "no key metadata"))
    }
}

/// Why a key that is not multi-region cannot leave its home region.
const SINGLE_REGION: &str = "it is a single-region KMS key, which exists only in its home \
     region: use a key of that region, or a multi-region (mrk-) key with a replica there";
/// Why an alias cannot be used from another region.
const ALIAS_ELSEWHERE: &str = "a KMS alias names a key only in its own region: name a \
     multi-region (mrk-) key by its key id or key ARN to use it from another region";
/// Why a multi-region key does not serve a region it has no replica in.
const NO_REPLICA: &str = "the multi-region key has no replica in that region: replicate it \
     there (KMS ReplicateKey) first";

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

    fn key_ref(&self, key_id: &str) -> KeyRef {
        AwsKmsProvider::key_ref(self, key_id)
    }

    /// A multi-region key (`mrk-...`, bare or in a key ARN) is named in
    /// another region by the same id, or the same ARN but for the region;
    /// any other key, and any alias, serves only its home region.
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(AWS_KMS_PROVIDER, root)?;
        if root.region() == region {
            return Ok(root.clone());
        }
        let replica = match KmsArn::parse(root.key_id()) {
            Some(arn) if arn.is_multi_region() => arn.in_region(region).to_string(),
            Some(arn) if arn.key_id().is_none() => {
                return Err(region_mismatch(root, region, ALIAS_ELSEWHERE))
            }
            Some(_) => return Err(region_mismatch(root, region, SINGLE_REGION)),
            // A bare multi-region key id is the same in every region.
            None if is_multi_region_key_id(root.key_id()) => root.key_id().to_owned(),
            None if root.key_id().starts_with("alias/") => {
                return Err(region_mismatch(root, region, ALIAS_ELSEWHERE))
            }
            None => return Err(region_mismatch(root, region, SINGLE_REGION)),
        };
        Ok(KeyRef::new(AWS_KMS_PROVIDER, replica, region))
    }

    /// A multi-region key serves the regions its `DescribeKey`
    /// `MultiRegionConfiguration` lists (its primary's and its replicas'),
    /// asked in this provider's region; every other answer needs no call.
    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        let replica = match RegionAnswer::from_name(self.key_in_region(root, region), root)? {
            RegionAnswer::Replica(replica) => replica,
            answer => return Ok(answer),
        };
        let out = self
            .client
            .describe_key()
            .key_id(self.key_id_here(root)?)
            .send()
            .await
            .map_err(|e| map_error(e, root, "describe"))?;
        let config = out.key_metadata.and_then(|m| m.multi_region_configuration);
        let served = config.is_some_and(|c| {
            c.primary_key
                .iter()
                .chain(c.replica_keys.iter().flatten())
                .any(|k| k.region.as_deref() == Some(region))
        });
        Ok(if served {
            RegionAnswer::Replica(replica)
        } else {
            RegionAnswer::NotServed(NO_REPLICA)
        })
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    /// The IAM role policy of [`policy::role_policy`] on the keys' ARNs.
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        for key in keys {
            check_kind(AWS_KMS_PROVIDER, key)?;
        }
        let arns: Vec<&str> = keys.iter().map(KeyRef::key_id).collect();
        policy::role_policy(&arns).map(Some)
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
}

/// `CreateKey` (a symmetric encryption key; a name becomes its
/// description), `EnableKey` and `DisableKey`. The latter two take a key
/// id, so an alias is resolved first with `DescribeKey`.
#[async_trait]
impl KeyAdmin for AwsKmsProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        let mut request = self
            .client
            .create_key()
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .multi_region(new.is_multi_region());
        if let Some(name) = new.name() {
            request = request.description(format!("cmek root key {name}"));
        }
        let placeholder = KeyRef::new(AWS_KMS_PROVIDER, "(new key)", &self.region);
        let out = request
            .send()
            .await
            .map_err(|e| map_error(e, &placeholder, "create"))?;
        let arn = out
            .key_metadata
            .and_then(|m| m.arn)
            .ok_or_else(|| Error::malformed("KMS CreateKey response", "no key ARN"))?;
        let key = self.key_ref(&arn);
        tracing::info!(key = %key, "created KMS key");
        Ok(key)
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        let key_id = self.admin_key_id(key).await?;
        self.client
            .enable_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key, "enable"))?;
        Ok(())
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        let key_id = self.admin_key_id(key).await?;
        self.client
            .disable_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| map_error(e, key, "disable"))?;
        Ok(())
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
        assert!(err.to_string().contains("single-region"), "{err}");
        let local = KeyRef::new("local", "k", "eu-west-1");
        assert!(matches!(
            p.key_id_here(&local).unwrap_err(),
            Error::InvalidArgument(_)
        ));
    }

    #[tokio::test]
    async fn only_key_ids_and_key_arns_are_multi_region() {
        // The client has no endpoint it could reach: every answer below is
        // given without a call.
        let p = provider("us-east-1");
        let key = |id: &str| p.key_ref(id);
        for yes in [
            "mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
            "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            let replica = p.key_in_region(&key(yes), "ap-south-1").unwrap();
            assert_eq!(replica.region(), "ap-south-1", "{yes}");
            assert!(replica.key_id().contains("mrk-"), "{yes}");
            assert!(!replica.key_id().contains("us-east-1"), "{yes}");
        }
        for (no, why) in [
            ("alias/mrk-x", "alias"),
            ("alias/mrk-1234abcd12ab34cd56ef1234567890ab", "alias"),
            (
                "arn:aws:kms:us-east-1:111122223333:alias/mrk-1234abcd12ab34cd56ef1234567890ab",
                "alias",
            ),
            (
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "single-region",
            ),
            ("1234abcd-12ab-34cd-56ef-1234567890ab", "single-region"),
            ("mrk-", "single-region"),
        ] {
            let answer = p.serves_region(&key(no), "ap-south-1").await.unwrap();
            assert!(
                matches!(answer, RegionAnswer::NotServed(r) if r.contains(why)),
                "{no}: {answer:?}"
            );
            assert_eq!(
                p.serves_region(&key(no), key(no).region()).await.unwrap(),
                RegionAnswer::Home,
                "{no}"
            );
        }
        let foreign = KeyRef::new("local", "mrk-1234abcd12ab34cd56ef1234567890ab", "us-east-1");
        assert!(p.key_in_region(&foreign, "eu-west-1").is_err());
    }

    #[test]
    fn access_policies_name_key_arns() {
        let p = provider("us-east-1");
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let doc = p.access_policy(&[p.key_ref(arn)]).unwrap().unwrap();
        assert!(doc.contains(arn) && doc.contains("kms:Decrypt"), "{doc}");
        assert!(p.access_policy(&[p.key_ref("alias/orders")]).is_err());
        assert!(p.access_policy(&[]).is_err());
        let local = KeyRef::new("local", arn, "us-east-1");
        assert!(p.access_policy(&[local]).is_err());
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
