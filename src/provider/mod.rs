//! Roots of trust: the [`KeyProvider`] trait and its implementations.
//!
//! A provider holds root keys (a customer's KMS keys, or a local key file) and
//! does three things with them: wrap a 256-bit key under a named root key with
//! an [`EncryptionContext`], unwrap it again (only with the same context), and
//! describe a root key's [`KeyState`]. Root key material never leaves the
//! provider.
//!
//! Implementations:
//! * [`LocalKeyProvider`] — root keys in a key file on disk; the embedded
//!   default for demos, tests and single-node users;
//! * `AwsKmsProvider` (feature `aws-kms`) — a customer's AWS KMS key;
//! * `GcpKmsProvider` (feature `gcp-kms`) — a customer's Google Cloud KMS key;
//! * `AzureKeyVaultProvider` (feature `azure-kv`) — a key in an Azure key
//!   vault or Managed HSM;
//! * `Pkcs11Provider` (feature `pkcs11`) — an AES-256 key in an HSM or any
//!   PKCS#11 token;
//! * `KmipProvider` (feature `kmip`) — a key on a KMIP key server, over
//!   mutual TLS;
//! * `cmek::testing::MockProvider` (feature `testing`) — in memory, counts
//!   calls, injects faults and latency.
//!
//! Decorators that wrap any of them: [`MeteredProvider`] counts and times
//! every call through the `metrics` facade;
//! [`BudgetedProvider`](crate::budget::BudgetedProvider) makes calls
//! within a call budget.
//!
//! # Providers own their vendor's rules
//!
//! Everything vendor-specific — how keys are named (ARNs, aliases), which
//! keys are replicated to which regions, the vendor's error codes, its
//! access policies, its administration calls — lives in the provider's own
//! module and is reached only through this trait. The rest of cmek (zones,
//! the registry, backups, the CLI) asks the provider:
//!
//! * [`KeyProvider::key_ref`] — the reference a name stands for;
//! * [`KeyProvider::resolve_key`] — the key an alias points to now;
//! * [`KeyProvider::key_in_region`] and [`KeyProvider::serves_region`] —
//!   whether a key can be used from a region, and under which name
//!   ([`RegionAnswer`]);
//! * [`KeyProvider::admin`] — create, enable, disable keys ([`KeyAdmin`]),
//!   where the provider offers it;
//! * [`KeyProvider::access_policy`] — the policy document granting its calls.
//!
//! # Writing a provider
//!
//! A new provider (another KMS, an HSM over PKCS#11, a KMIP server) must
//! implement [`kind`](KeyProvider::kind), [`key_ref`](KeyProvider::key_ref),
//! [`wrap_key`](KeyProvider::wrap_key), [`unwrap_key`](KeyProvider::unwrap_key)
//! and [`describe_key`](KeyProvider::describe_key), and map its failures
//! onto [`Error`](crate::Error) as the trait documents. The other methods
//! have defaults that are right for a provider without aliases, replicas,
//! administration or policies; a provider that has them overrides the
//! defaults. The [`kit`] module holds what it needs beyond the trait —
//! binding the context to a wrap, checking a key reference's kind and
//! region, randomness — and its security contract; the providers in this
//! crate use it too, and nothing else. `examples/http_key_service.rs` is a
//! provider written outside the crate. It must pass the conformance suite,
//! `cmek::testing::conformance` (feature `testing`), which every provider
//! in this crate passes too: round trips, context binding, wrong keys,
//! modified blobs, key states, validation reports, region answers, error
//! kinds, generated keys, alias resolution, and forged wraps. Only the
//! root key's holder may be able to make a wrap the provider accepts: a
//! provider whose root has public material (an RSA key) must authenticate
//! each wrap with an operation only the holder can perform, as the Azure
//! Key Vault provider does, and binding the context is not that.
//!
//! This module must not cache unwrapped keys or retry: callers (zones) own
//! caching and coalescing, so that every provider call is visible.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::secret::SecretKey;
use crate::Result;
use kit::region_mismatch;

mod admin;
#[cfg(feature = "aws-kms")]
pub mod aws;
#[cfg(feature = "azure-kv")]
pub mod azure;
#[cfg(feature = "gcp-kms")]
pub mod gcp;
pub mod kit;
#[cfg(feature = "kmip")]
pub mod kmip;
pub(crate) mod local;
mod metered;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod region;
mod state;
mod validate;

pub use admin::{KeyAdmin, NewKey};
#[cfg(feature = "aws-kms")]
pub use aws::{AwsKmsOptions, AwsKmsProvider, AWS_KMS_PROVIDER};
#[cfg(feature = "azure-kv")]
pub use azure::{AzureKeyVaultOptions, AzureKeyVaultProvider, AZURE_KV_PROVIDER};
#[cfg(feature = "gcp-kms")]
pub use gcp::{GcpCredentials, GcpKmsOptions, GcpKmsProvider, GCP_KMS_PROVIDER};
#[cfg(feature = "kmip")]
pub use kmip::{KmipOptions, KmipProvider, KMIP_PROVIDER};
pub use local::{LocalKeyInfo, LocalKeyProvider, LOCAL_PROVIDER};
pub use metered::MeteredProvider;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{
    Pkcs11Options, Pkcs11Pin, Pkcs11Provider, TokenSelector, WrapMechanism, PKCS11_PROVIDER,
};
pub use region::RegionAnswer;
pub use state::KeyState;
pub use validate::{KeyValidation, StepOutcome, ValidationFailure, ValidationStep};

/// Names a root key: which provider holds it, its id there, and its region.
///
/// For AWS KMS the id is a key id, key ARN or alias; for the local provider
/// it is the name given to [`LocalKeyProvider::add_key`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    provider: String,
    key_id: String,
    region: String,
}

impl KeyRef {
    /// A reference to key `key_id` of provider kind `provider` in `region`.
    pub fn new(
        provider: impl Into<String>,
        key_id: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            provider: provider.into(),
            key_id: key_id.into(),
            region: region.into(),
        }
    }

    /// The provider kind, e.g. `"local"` or `"aws-kms"`.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The key's id within its provider.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The region the key lives in.
    pub fn region(&self) -> &str {
        &self.region
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.provider, self.region, self.key_id)
    }
}

impl fmt::Debug for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyRef({self})")
    }
}

/// Non-secret key/value pairs bound to a wrapped key: unwrapping with a
/// context that differs in any pair fails.
///
/// Pairs are kept sorted by key, so the order of insertion does not matter.
/// Values are not secret (AWS KMS records them in audit logs): put ids and
/// purposes here, never key material.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a pair, builder style.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds or replaces a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical byte encoding used as associated data (docs/FORMAT.md):
    /// `u32be(count)`, then for each pair in key order
    /// `u32be(len(key)) ‖ key ‖ u32be(len(value)) ‖ value`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        push_len_prefixed_count(&mut out, self.0.len());
        for (k, v) in &self.0 {
            push_len_prefixed(&mut out, k.as_bytes());
            push_len_prefixed(&mut out, v.as_bytes());
        }
        out
    }
}

impl fmt::Debug for EncryptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EncryptionContext {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

fn push_len_prefixed_count(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32::MAX cannot occur for strings a caller can build
    // sensibly; saturate rather than wrap so two inputs never collide silently.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    push_len_prefixed_count(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A key wrapped by a provider: opaque bytes, meaningful only to the provider
/// and root key that made them. Not secret.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey(Bytes);

impl WrappedKey {
    /// Wraps provider output.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The bytes, to persist.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as a cheaply clonable buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.0.clone()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty (never the case for provider output).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// A root of trust that wraps and unwraps keys under root keys it holds.
///
/// Every method may be slow (a network round trip) and may fail
/// transiently; none caches. Implementations map their failures onto
/// [`Error`](crate::Error) variants: a disabled or missing key is
/// [`KeyUnavailable`](crate::Error::KeyUnavailable), a refused permission
/// [`AccessDenied`](crate::Error::AccessDenied), a network failure
/// [`ProviderUnreachable`](crate::Error::ProviderUnreachable), a rate limit
/// [`Throttled`](crate::Error::Throttled), a wrong context or modified blob
/// [`Integrity`](crate::Error::Integrity).
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The provider kind this implementation serves, matched against
    /// [`KeyRef::provider`].
    fn kind(&self) -> &str;

    /// The reference of the key this provider knows as `key_id`: a key id,
    /// or any other name the provider accepts (an alias, an ARN). The
    /// region is the one the name pins (an AWS key ARN's), else the
    /// provider's own. Makes no call and does not check that the key
    /// exists.
    fn key_ref(&self, key_id: &str) -> KeyRef;

    /// Wraps `key` under root key `root`, binding `context`.
    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey>;

    /// Unwraps a key wrapped under `root`; fails unless `context` equals the
    /// one given to [`wrap_key`](Self::wrap_key).
    ///
    /// Only a wrap made by the root key's holder may unwrap: a wrap that
    /// someone without the root's secret could have made (with public
    /// material such as an RSA public key) must be refused, also when it is
    /// in a format an older release wrote (see
    /// [`is_legacy_wrap`](Self::is_legacy_wrap)).
    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey>;

    /// True if `wrapped` is in a format this provider's
    /// [`unwrap_key`](Self::unwrap_key) refuses because someone without the
    /// root's secret could have made it, and that an older release wrote
    /// (an Azure Key Vault RSA wrap without a signature). Such a wrap is
    /// read only by [`unwrap_legacy_key`](Self::unwrap_legacy_key), for an
    /// explicit adoption. Parses only; makes no call. `false` by default.
    fn is_legacy_wrap(&self, wrapped: &WrappedKey) -> bool {
        let _ = wrapped;
        false
    }

    /// Unwraps `wrapped` like [`unwrap_key`](Self::unwrap_key), but also
    /// when it is a [legacy wrap](Self::is_legacy_wrap): for
    /// `Keyring::adopt_legacy_wraps` only, which an operator runs on a zone
    /// whose stored state they trust, to rewrap such keys in the current
    /// format. Never call it on what storage hands you otherwise: a legacy
    /// wrap is exactly what an attacker can forge. The default is
    /// [`unwrap_key`](Self::unwrap_key).
    async fn unwrap_legacy_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.unwrap_key(root, wrapped, context).await
    }

    /// The root key's state. A missing key is `Ok(KeyState::NotFound)` and an
    /// unreachable provider `Ok(KeyState::Unreachable)`; other failures
    /// (e.g. access denied) are errors.
    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState>;

    /// The stable name of the key `root` designates now. A provider with
    /// key aliases (AWS KMS) answers with the key the alias points to, so
    /// that a zone records a key that cannot be re-pointed under it; the
    /// default, for providers without aliases, returns `root` unchanged.
    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        Ok(root.clone())
    }

    /// The reference under which `root` is used from `region`, decided by
    /// the provider without a call: `root` itself in its home region; for a
    /// key the provider replicates across regions (an AWS multi-region
    /// key), the name of its replica in `region`. A name returned does not
    /// prove that the replica exists: [`serves_region`](Self::serves_region)
    /// asks.
    ///
    /// The default, for providers without replicas, serves only
    /// `root.region()`.
    ///
    /// # Errors
    /// [`Error::RegionMismatch`](crate::Error::RegionMismatch) for a key
    /// that cannot be used from `region` at all, saying what the operator
    /// must do instead.
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        if root.region() == region {
            Ok(root.clone())
        } else {
            Err(region_mismatch(
                root,
                region,
                "it is a single-region key, which serves only its home region: use a key \
                 of the region it is used from, or a multi-region key (of a provider that \
                 has them) with a replica there",
            ))
        }
    }

    /// Whether `root` serves `region`: lives there, has a replica there
    /// that unwraps what it wrapped, or cannot be used from there (and
    /// why). A provider may call its service to find out (AWS KMS asks
    /// `DescribeKey` for a multi-region key's replicas); a key in its home
    /// region is answered without a call.
    ///
    /// The default answers from [`key_in_region`](Self::key_in_region).
    ///
    /// # Errors
    /// Provider errors as they come (unreachable, access denied, a key
    /// that does not exist); a definitive "no" is
    /// `Ok(RegionAnswer::NotServed(..))`, not an error.
    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        RegionAnswer::from_name(self.key_in_region(root, region), root)
    }

    /// Administration of this provider's keys (create, enable, disable),
    /// where the provider offers it; `None` by default. Zones never need
    /// it: it is for operators' tools and tests.
    fn admin(&self) -> Option<&dyn KeyAdmin> {
        None
    }

    /// A policy document granting exactly the calls this provider makes
    /// on exactly `keys` (for AWS KMS, an IAM policy), for the operator to
    /// attach; `Ok(None)` for a provider that has no such thing (the
    /// default). Pass every name a key is used under — for a replicated
    /// key, its name in each region ([`key_in_region`](Self::key_in_region)).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an
    /// empty list or a key the policy cannot name (e.g. an alias).
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        let _ = keys;
        Ok(None)
    }

    /// A fresh key and its wrapping under `root`. The default generates
    /// locally and calls [`wrap_key`](Self::wrap_key); a KMS may generate on
    /// its side instead.
    async fn generate_key(
        &self,
        root: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(SecretKey, WrappedKey)> {
        let key = SecretKey::generate()?;
        let wrapped = self.wrap_key(root, &key, context).await?;
        Ok((key, wrapped))
    }

    /// Validates `root` by a round trip — wrap a throwaway key, unwrap it,
    /// compare, describe — and reports each step's outcome. Never fails:
    /// failures are in the report.
    async fn validate_key(&self, root: &KeyRef) -> KeyValidation {
        validate_round_trip(self, root).await
    }
}

/// The default [`KeyProvider::validate_key`]: a round trip and a describe
/// through `provider`'s own calls (so that a decorator such as a budget or
/// a meter sees each of them).
pub(crate) async fn validate_round_trip<P: KeyProvider + ?Sized>(
    provider: &P,
    root: &KeyRef,
) -> KeyValidation {
    let context = EncryptionContext::new().with("cmek:purpose", "key-validation");
    let (encrypt, decrypt) = match SecretKey::generate() {
        Err(e) => (
            StepOutcome::Failed(ValidationFailure::from_error(&e)),
            StepOutcome::Skipped,
        ),
        Ok(probe) => match provider.wrap_key(root, &probe, &context).await {
            Err(e) => (
                StepOutcome::Failed(ValidationFailure::from_error(&e)),
                StepOutcome::Skipped,
            ),
            Ok(wrapped) => match provider.unwrap_key(root, &wrapped, &context).await {
                Ok(back) if back == probe => (StepOutcome::Passed, StepOutcome::Passed),
                Ok(_) => (
                    StepOutcome::Passed,
                    StepOutcome::Failed(ValidationFailure::RoundTripMismatch),
                ),
                Err(e) => (
                    StepOutcome::Passed,
                    StepOutcome::Failed(ValidationFailure::from_error(&e)),
                ),
            },
        },
    };
    let (describe, state) = match provider.describe_key(root).await {
        Ok(KeyState::Enabled) => (StepOutcome::Passed, Some(KeyState::Enabled)),
        Ok(KeyState::Unreachable) => (
            StepOutcome::Failed(ValidationFailure::Unreachable(
                "no answer to describe".into(),
            )),
            Some(KeyState::Unreachable),
        ),
        Ok(state) => (
            StepOutcome::Failed(ValidationFailure::KeyState(state)),
            Some(state),
        ),
        Err(e) => (StepOutcome::Failed(ValidationFailure::from_error(&e)), None),
    };
    KeyValidation {
        key: root.clone(),
        encrypt,
        decrypt,
        describe,
        state,
    }
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Arc<P> {
    fn kind(&self) -> &str {
        (**self).kind()
    }
    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        (**self).wrap_key(root, key, context).await
    }
    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        (**self).unwrap_key(root, wrapped, context).await
    }
    fn is_legacy_wrap(&self, wrapped: &WrappedKey) -> bool {
        (**self).is_legacy_wrap(wrapped)
    }
    async fn unwrap_legacy_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        (**self).unwrap_legacy_key(root, wrapped, context).await
    }
    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        (**self).describe_key(root).await
    }
    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        (**self).resolve_key(root).await
    }
    fn key_ref(&self, key_id: &str) -> KeyRef {
        (**self).key_ref(key_id)
    }
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        (**self).key_in_region(root, region)
    }
    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        (**self).serves_region(root, region).await
    }
    fn admin(&self) -> Option<&dyn KeyAdmin> {
        (**self).admin()
    }
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        (**self).access_policy(keys)
    }
    async fn generate_key(
        &self,
        root: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(SecretKey, WrappedKey)> {
        (**self).generate_key(root, context).await
    }
    async fn validate_key(&self, root: &KeyRef) -> KeyValidation {
        (**self).validate_key(root).await
    }
}

/// The region a key's name pins by itself, known without a provider: an
/// AWS KMS key or alias ARN names its region, a Cloud KMS key name its
/// location. `None` for a name that pins
/// none (a key id, an alias name, a local key's name) and for a kind this
/// build does not know. For callers that build providers on demand and
/// must pick the region to build one for; the provider's
/// [`KeyProvider::key_ref`] gives the same region.
pub fn region_named_by(kind: &str, key_id: &str) -> Option<String> {
    #[cfg(feature = "aws-kms")]
    if kind == AWS_KMS_PROVIDER {
        return aws::arn::region_of(key_id);
    }
    #[cfg(feature = "gcp-kms")]
    if kind == GCP_KMS_PROVIDER {
        return gcp::name::location_of(key_id);
    }
    let _ = (kind, key_id);
    None
}

#[cfg(test)]
mod tests {
    use super::kit::{check_kind, root_wrap_aad};
    use super::*;

    #[test]
    fn context_is_order_independent_and_canonical() {
        let a = EncryptionContext::new()
            .with("zone", "z1")
            .with("purpose", "ezk");
        let b: EncryptionContext = [("purpose", "ezk"), ("zone", "z1")].into_iter().collect();
        assert_eq!(a, b);
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
        let expected: Vec<u8> = [
            &2u32.to_be_bytes()[..],
            &7u32.to_be_bytes(),
            b"purpose",
            &3u32.to_be_bytes(),
            b"ezk",
            &4u32.to_be_bytes(),
            b"zone",
            &2u32.to_be_bytes(),
            b"z1",
        ]
        .concat();
        assert_eq!(a.canonical_bytes(), expected);
    }

    #[test]
    fn context_encoding_is_unambiguous() {
        // Moving bytes between key and value, or between pairs, changes the encoding.
        let a = EncryptionContext::new().with("ab", "c");
        let b = EncryptionContext::new().with("a", "bc");
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_ne!(
            root_wrap_aad("k", &EncryptionContext::new().with("x", "")),
            root_wrap_aad("kx", &EncryptionContext::new())
        );
    }

    #[test]
    fn only_names_that_pin_a_region_name_one() {
        assert_eq!(
            region_named_by(LOCAL_PROVIDER, "arn:aws:kms:x:1:key/k"),
            None
        );
        assert_eq!(region_named_by("aws-kms", "alias/orders"), None);
        #[cfg(feature = "aws-kms")]
        assert_eq!(
            region_named_by(AWS_KMS_PROVIDER, "arn:aws:kms:eu-west-1:111122223333:key/k")
                .as_deref(),
            Some("eu-west-1")
        );
    }

    #[test]
    fn key_ref_displays_all_parts() {
        let r = KeyRef::new("aws-kms", "mrk-1234", "eu-west-1");
        assert_eq!(r.to_string(), "aws-kms:eu-west-1:mrk-1234");
        assert_eq!(format!("{r:?}"), "KeyRef(aws-kms:eu-west-1:mrk-1234)");
        assert!(check_kind("local", &r).is_err());
        assert!(check_kind("aws-kms", &r).is_ok());
    }
}
