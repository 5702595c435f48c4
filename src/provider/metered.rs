//! [`MeteredProvider`]: a provider whose every call is counted and timed
//! through the `metrics` facade.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, RegionAnswer, WrappedKey};
use crate::metrics::{PROVIDER_CALLS, PROVIDER_CALL_SECONDS};
use crate::secret::SecretKey;
use crate::{Error, Result};

/// A [`KeyProvider`] that records each call of its inner provider:
/// [`PROVIDER_CALLS`] by `provider` (its kind), `operation` (`wrap`,
/// `unwrap`, `describe`, `resolve`, `serves_region`, `generate`) and
/// `outcome` (`ok`, or what went wrong: `throttled`, `unreachable`,
/// `access_denied`, `key_unavailable`, `integrity`, `budget_exhausted`,
/// `other`), and [`PROVIDER_CALL_SECONDS`] by `provider` and `operation`.
/// A describe that answers [`KeyState::Unreachable`] counts as
/// `unreachable`. Labels never name a key.
///
/// Put it where the calls to count are: inside a
/// [`BudgetedProvider`](crate::budget::BudgetedProvider) it counts the
/// calls that reach the provider (each retry after a throttle, none for a
/// coalesced unwrap); outside, the calls callers make. Calls that reach no
/// service (`key_ref`, `key_in_region`, `access_policy`) are not counted.
pub struct MeteredProvider {
    inner: Arc<dyn KeyProvider>,
}

impl MeteredProvider {
    /// `inner`, metered.
    pub fn new(inner: Arc<dyn KeyProvider>) -> Arc<Self> {
        Arc::new(Self { inner })
    }

    /// The provider it meters.
    pub fn inner(&self) -> &Arc<dyn KeyProvider> {
        &self.inner
    }

    async fn metered<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
        outcome_of_ok: impl FnOnce(&T) -> &'static str,
    ) -> Result<T> {
        let started = std::time::Instant::now();
        let result = call.await;
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(value) => outcome_of_ok(value),
            Err(e) => outcome_of(e),
        };
        let provider = self.inner.kind().to_owned();
        metrics::counter!(PROVIDER_CALLS, "provider" => provider.clone(),
            "operation" => operation, "outcome" => outcome)
        .increment(1);
        metrics::histogram!(PROVIDER_CALL_SECONDS, "provider" => provider,
            "operation" => operation)
        .record(elapsed.as_secs_f64());
        result
    }
}

/// The `outcome` label of a failed call.
fn outcome_of(error: &Error) -> &'static str {
    match error {
        Error::Throttled { .. } => "throttled",
        Error::ProviderUnreachable { .. } => "unreachable",
        Error::AccessDenied { .. } => "access_denied",
        Error::KeyUnavailable { .. } => "key_unavailable",
        Error::Integrity { .. } => "integrity",
        Error::BudgetExhausted { .. } => "budget_exhausted",
        _ => "other",
    }
}

fn ok<T>(_: &T) -> &'static str {
    "ok"
}

impl fmt::Debug for MeteredProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredProvider")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl KeyProvider for MeteredProvider {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        self.inner.key_ref(key_id)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        self.metered("wrap", self.inner.wrap_key(root, key, context), ok)
            .await
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.metered("unwrap", self.inner.unwrap_key(root, wrapped, context), ok)
            .await
    }

    fn is_legacy_wrap(&self, wrapped: &WrappedKey) -> bool {
        self.inner.is_legacy_wrap(wrapped)
    }

    async fn unwrap_legacy_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.metered(
            "unwrap",
            self.inner.unwrap_legacy_key(root, wrapped, context),
            ok,
        )
        .await
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        self.metered("describe", self.inner.describe_key(root), |state| {
            if *state == KeyState::Unreachable {
                "unreachable"
            } else {
                "ok"
            }
        })
        .await
    }

    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        self.metered("resolve", self.inner.resolve_key(root), ok)
            .await
    }

    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        self.inner.key_in_region(root, region)
    }

    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        self.metered("serves_region", self.inner.serves_region(root, region), ok)
            .await
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        self.inner.admin()
    }

    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        self.inner.access_policy(keys)
    }

    async fn generate_key(
        &self,
        root: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(SecretKey, WrappedKey)> {
        self.metered("generate", self.inner.generate_key(root, context), ok)
            .await
    }

    // `validate_key` keeps the trait's default, so that its wrap, unwrap
    // and describe are metered one by one.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_recorder::Recorded;
    use crate::testing::{Fault, MockProvider, Operation};

    #[tokio::test(flavor = "current_thread")]
    async fn every_call_is_counted_by_operation_and_outcome() {
        let recorded = Recorded::default();
        let _guard = metrics::set_default_local_recorder(&recorded);
        let mock = Arc::new(MockProvider::new());
        let root = mock.add_key("root");
        let metered = MeteredProvider::new(mock.clone());
        let ctx = EncryptionContext::new().with("zone", "z");
        let (_, wrapped) = metered.generate_key(&root, &ctx).await.unwrap();
        metered.unwrap_key(&root, &wrapped, &ctx).await.unwrap();
        mock.inject_fault(Fault::Throttled, Some(Operation::Unwrap), Some(1));
        metered.unwrap_key(&root, &wrapped, &ctx).await.unwrap_err();
        mock.inject_fault(Fault::Unreachable, Some(Operation::Describe), Some(1));
        metered.describe_key(&root).await.unwrap();
        metered.describe_key(&root).await.unwrap();

        let calls = |op: &str, outcome: &str| {
            recorded.counter(&format!(
                "cmek_provider_calls_total{{provider=mock,operation={op},outcome={outcome}}}"
            ))
        };
        assert_eq!(calls("generate", "ok"), 1);
        assert_eq!(calls("unwrap", "ok"), 1);
        assert_eq!(calls("unwrap", "throttled"), 1);
        assert_eq!(calls("describe", "unreachable"), 1);
        assert_eq!(calls("describe", "ok"), 1);
        assert_eq!(
            recorded.samples("cmek_provider_call_seconds{provider=mock,operation=unwrap}"),
            2
        );
        // Labels never name a key.
        for name in recorded.names() {
            assert!(!name.contains("root"), "{name}");
        }
    }
}
