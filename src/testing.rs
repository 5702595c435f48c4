//! Test support: [`MockProvider`], an in-memory [`KeyProvider`] that counts
//! every call and injects faults, latency and key-state changes;
//! [`conformance`], the suite every provider must pass; and [`scenarios`],
//! zones, the key monitor and backups run end to end on a provider.
//!
//! Compiled for this crate's own tests and, with feature `testing`, for
//! integration tests, benchmarks and downstream users. Its counters are how
//! tests prove that a data path makes no provider call.
//!
//! The mock does real cryptography (the same [`KeyWrapper`] and associated
//! data as [`LocalKeyProvider`](crate::provider::LocalKeyProvider)), so a
//! wrong context or a wrapped key from another root key fails as it would
//! against a real KMS.

pub mod conformance;
pub mod scenarios;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::cipher::KeyWrapper;
use crate::provider::kit::{check_kind, fill_random, region_mismatch, root_wrap_aad};
use crate::provider::{
    EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, RegionAnswer, WrappedKey,
};
use crate::secret::SecretKey;
use crate::{Error, Result};

/// Provider kind of [`MockProvider`] in a [`KeyRef`].
pub const MOCK_PROVIDER: &str = "mock";

/// A provider operation, for counters and fault targeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`KeyProvider::wrap_key`].
    Wrap,
    /// [`KeyProvider::unwrap_key`].
    Unwrap,
    /// [`KeyProvider::describe_key`].
    Describe,
    /// [`KeyProvider::generate_key`].
    Generate,
    /// [`KeyProvider::resolve_key`].
    Resolve,
}

impl Operation {
    const ALL: [Operation; 5] = [
        Operation::Wrap,
        Operation::Unwrap,
        Operation::Describe,
        Operation::Generate,
        Operation::Resolve,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Wrap => "wrap",
            Operation::Unwrap => "unwrap",
            Operation::Describe => "describe",
            Operation::Generate => "generate",
            Operation::Resolve => "resolve",
        }
    }
}

/// A failure the mock can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The provider cannot be reached ([`Error::ProviderUnreachable`];
    /// `describe_key` answers `Ok(KeyState::Unreachable)`).
    Unreachable,
    /// The provider rate-limits the call ([`Error::Throttled`]).
    Throttled,
    /// The caller lacks permission ([`Error::AccessDenied`]).
    AccessDenied,
}

#[derive(Debug)]
struct FaultRule {
    fault: Fault,
    operation: Option<Operation>,
    /// Calls left to fail; `None` means until cleared.
    remaining: Option<u32>,
}

#[derive(Debug)]
struct MockKey {
    material: SecretKey,
    state: KeyState,
    /// Can be replicated to other regions; see
    /// [`MockProvider::add_multi_region_key`].
    multi_region: bool,
    /// The regions it has a replica in, besides the mock's own.
    replicas: BTreeSet<String>,
}

/// An in-memory provider with call counters and fault injection.
///
/// ```
/// use cmek::testing::{Fault, MockProvider, Operation};
/// use cmek::{EncryptionContext, KeyProvider, SecretKey};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cmek::Result<()> {
/// let kms = MockProvider::new();
/// let root = kms.add_key("root");
/// let ctx = EncryptionContext::new().with("zone", "z1");
/// let (ezk, wrapped) = kms.generate_key(&root, &ctx).await?;
/// kms.inject_fault(Fault::Throttled, Some(Operation::Unwrap), Some(1));
/// assert!(kms.unwrap_key(&root, &wrapped, &ctx).await.is_err());
/// assert_eq!(kms.unwrap_key(&root, &wrapped, &ctx).await?, ezk);
/// assert_eq!(kms.calls(Operation::Unwrap), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockProvider {
    region: String,
    keys: Mutex<BTreeMap<String, MockKey>>,
    /// Alias name -> the key id it points to, as KMS aliases do.
    aliases: Mutex<BTreeMap<String, String>>,
    faults: Mutex<VecDeque<FaultRule>>,
    latency: Mutex<Duration>,
    calls: [AtomicU64; 5],
}

impl Default for MockProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl MockProvider {
    /// An empty mock in region `mock-region-1`.
    pub fn new() -> Self {
        Self::with_region("mock-region-1")
    }

    /// An empty mock whose keys live in `region`.
    pub fn with_region(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            keys: Mutex::new(BTreeMap::new()),
            aliases: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(VecDeque::new()),
            latency: Mutex::new(Duration::ZERO),
            calls: Default::default(),
        }
    }

    /// Creates an enabled key named `id` (replacing any key of that name)
    /// and returns its reference.
    ///
    /// # Panics
    /// If the OS random number generator fails (test support only).
    pub fn add_key(&self, id: &str) -> KeyRef {
        self.insert_key(id, false)
    }

    /// As [`add_key`](Self::add_key), for a multi-region key: one that
    /// [`replicate_key`](Self::replicate_key) can replicate to other
    /// regions, where it then serves
    /// ([`KeyProvider::serves_region`]). The mock decides by this flag,
    /// never by the key's name. It has no replica yet.
    ///
    /// # Panics
    /// If the OS random number generator fails (test support only).
    pub fn add_multi_region_key(&self, id: &str) -> KeyRef {
        self.insert_key(id, true)
    }

    /// Replicates multi-region key `id` to `region`: the key then serves
    /// `region` too. Returns false if there is no such key or it is not a
    /// multi-region key.
    pub fn replicate_key(&self, id: &str, region: &str) -> bool {
        match lock(&self.keys).get_mut(id) {
            Some(key) if key.multi_region => {
                if region != self.region {
                    key.replicas.insert(region.to_owned());
                }
                true
            }
            _ => false,
        }
    }

    fn insert_key(&self, id: &str, multi_region: bool) -> KeyRef {
        let material = SecretKey::generate().expect("OS randomness");
        lock(&self.keys).insert(
            id.to_owned(),
            MockKey {
                material,
                state: KeyState::Enabled,
                multi_region,
                replicas: BTreeSet::new(),
            },
        );
        self.key_ref(id)
    }

    /// Creates alias `alias` (e.g. `alias/orders`) pointing to key
    /// `target_id` and returns the alias's reference. Like a KMS alias, it
    /// can be used wherever a key id can (wrap, unwrap and describe follow
    /// it to the key it points to now) and re-pointed with
    /// [`update_alias`](Self::update_alias); [`KeyProvider::resolve_key`]
    /// answers with the key's reference. Returns `None` if `alias` is the
    /// name of a key or `target_id` is not a key.
    pub fn add_alias(&self, alias: &str, target_id: &str) -> Option<KeyRef> {
        let keys = lock(&self.keys);
        if keys.contains_key(alias) || !keys.contains_key(target_id) {
            return None;
        }
        lock(&self.aliases).insert(alias.to_owned(), target_id.to_owned());
        Some(self.key_ref(alias))
    }

    /// Re-points alias `alias` to key `target_id`. Returns false if there
    /// is no such alias or no such key.
    pub fn update_alias(&self, alias: &str, target_id: &str) -> bool {
        if !lock(&self.keys).contains_key(target_id) {
            return false;
        }
        match lock(&self.aliases).get_mut(alias) {
            Some(target) => {
                target_id.clone_into(target);
                true
            }
            None => false,
        }
    }

    /// The key id `root` designates now: the target of an alias, or the id
    /// itself.
    fn target_id(&self, root: &KeyRef) -> String {
        lock(&self.aliases)
            .get(root.key_id())
            .cloned()
            .unwrap_or_else(|| root.key_id().to_owned())
    }

    /// The reference of key `id`, whether or not it exists.
    pub fn key_ref(&self, id: &str) -> KeyRef {
        KeyRef::new(MOCK_PROVIDER, id, &self.region)
    }

    /// Sets key `id`'s state; `KeyState::NotFound` deletes it for good.
    /// Returns false if there is no such key.
    pub fn set_key_state(&self, id: &str, state: KeyState) -> bool {
        let mut keys = lock(&self.keys);
        if state == KeyState::NotFound {
            return keys.remove(id).is_some();
        }
        match keys.get_mut(id) {
            Some(key) => {
                key.state = state;
                true
            }
            None => false,
        }
    }

    /// Disables key `id`.
    pub fn disable_key(&self, id: &str) -> bool {
        self.set_key_state(id, KeyState::Disabled)
    }

    /// Re-enables key `id`.
    pub fn enable_key(&self, id: &str) -> bool {
        self.set_key_state(id, KeyState::Enabled)
    }

    /// Schedules key `id` for deletion.
    pub fn schedule_key_deletion(&self, id: &str) -> bool {
        self.set_key_state(id, KeyState::PendingDeletion)
    }

    /// Deletes key `id` and its material.
    pub fn delete_key(&self, id: &str) -> bool {
        self.set_key_state(id, KeyState::NotFound)
    }

    /// Calls made so far to `operation`, failed ones included.
    pub fn calls(&self, operation: Operation) -> u64 {
        self.calls[operation.index()].load(Ordering::SeqCst)
    }

    /// Calls made so far to every operation.
    pub fn total_calls(&self) -> u64 {
        Operation::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// Resets every counter to zero.
    pub fn reset_calls(&self) {
        for counter in &self.calls {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Delays every call by `latency` (needs a Tokio runtime with time).
    pub fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    /// Makes calls fail with `fault`: calls to `operation` only (or all, for
    /// `None`), for the next `times` matching calls (or until
    /// [`clear_faults`](Self::clear_faults), for `None`). Rules apply in the
    /// order they were added.
    pub fn inject_fault(&self, fault: Fault, operation: Option<Operation>, times: Option<u32>) {
        lock(&self.faults).push_back(FaultRule {
            fault,
            operation,
            remaining: times,
        });
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// Counts the call, waits the injected latency, and returns the fault to
    /// inject, if any.
    async fn enter(&self, operation: Operation, root: &KeyRef) -> Result<Option<Fault>> {
        self.calls[operation.index()].fetch_add(1, Ordering::SeqCst);
        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        check_kind(MOCK_PROVIDER, root)?;
        let mut faults = lock(&self.faults);
        let hit = faults
            .iter_mut()
            .position(|r| r.operation.is_none_or(|op| op == operation));
        let Some(i) = hit else { return Ok(None) };
        let fault = faults[i].fault;
        if let Some(n) = faults[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                faults.remove(i);
            }
        }
        Ok(Some(fault))
    }

    fn fault_error(&self, fault: Fault, operation: Operation, root: &KeyRef) -> Error {
        match fault {
            Fault::Unreachable => Error::unreachable(MOCK_PROVIDER, "injected").with_source(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
            ),
            Fault::Throttled => Error::Throttled {
                provider: MOCK_PROVIDER.into(),
            },
            Fault::AccessDenied => Error::AccessDenied {
                key: root.to_string(),
                operation: operation.name(),
            },
        }
    }

    /// Runs `f` on the enabled key named by `root` (through its alias, if
    /// `root` is one) and that key's id, which the wrapping binds: as with
    /// KMS, what an alias wrapped unwraps under the key's own name.
    fn with_usable_key<T>(
        &self,
        root: &KeyRef,
        f: impl FnOnce(&SecretKey, &str) -> Result<T>,
    ) -> Result<T> {
        let target = self.target_id(root);
        let keys = lock(&self.keys);
        let key = keys.get(&target).ok_or_else(|| Error::KeyUnavailable {
            key: root.to_string(),
            state: KeyState::NotFound,
        })?;
        if !key.state.is_usable() {
            return Err(Error::KeyUnavailable {
                key: root.to_string(),
                state: key.state,
            });
        }
        f(&key.material, &target)
    }

    fn wrap_now(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        self.with_usable_key(root, |material, key_id| {
            let wrapper: KeyWrapper = KeyWrapper::new(material);
            let wrapped = wrapper.wrap(key, &root_wrap_aad(key_id, context))?;
            Ok(WrappedKey::from_bytes(wrapped.to_vec()))
        })
    }
}

#[async_trait]
impl KeyProvider for MockProvider {
    fn kind(&self) -> &str {
        MOCK_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        MockProvider::key_ref(self, key_id)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        if let Some(fault) = self.enter(Operation::Wrap, root).await? {
            return Err(self.fault_error(fault, Operation::Wrap, root));
        }
        self.wrap_now(root, key, context)
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        if let Some(fault) = self.enter(Operation::Unwrap, root).await? {
            return Err(self.fault_error(fault, Operation::Unwrap, root));
        }
        self.with_usable_key(root, |material, key_id| {
            let wrapper: KeyWrapper = KeyWrapper::new(material);
            wrapper.unwrap(wrapped.as_bytes(), &root_wrap_aad(key_id, context))
        })
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        match self.enter(Operation::Describe, root).await? {
            Some(Fault::Unreachable) => return Ok(KeyState::Unreachable),
            Some(fault) => return Err(self.fault_error(fault, Operation::Describe, root)),
            None => {}
        }
        let target = self.target_id(root);
        Ok(lock(&self.keys)
            .get(&target)
            .map_or(KeyState::NotFound, |k| k.state))
    }

    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        if let Some(fault) = self.enter(Operation::Resolve, root).await? {
            return Err(self.fault_error(fault, Operation::Resolve, root));
        }
        // Like KMS DescribeKey: any state but deleted answers.
        let target = self.target_id(root);
        if lock(&self.keys).contains_key(&target) {
            Ok(self.key_ref(&target))
        } else {
            Err(Error::KeyUnavailable {
                key: root.to_string(),
                state: KeyState::NotFound,
            })
        }
    }

    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        check_kind(MOCK_PROVIDER, root)?;
        if root.region() == region {
            return Ok(root.clone());
        }
        // By the key's flag only: an alias is never multi-region itself,
        // whatever its name or target.
        if lock(&self.keys)
            .get(root.key_id())
            .is_some_and(|k| k.multi_region)
        {
            Ok(KeyRef::new(MOCK_PROVIDER, root.key_id(), region))
        } else {
            Err(region_mismatch(
                root,
                region,
                "a single-region key serves only its home region: use a key of that region, \
                 or a multi-region key with a replica there",
            ))
        }
    }

    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        let replica = match RegionAnswer::from_name(self.key_in_region(root, region), root)? {
            RegionAnswer::Replica(replica) => replica,
            answer => return Ok(answer),
        };
        // Which replicas exist is the service's knowledge: a call, as
        // DescribeKey is for AWS KMS.
        if let Some(fault) = self.enter(Operation::Describe, root).await? {
            return Err(self.fault_error(fault, Operation::Describe, root));
        }
        let keys = lock(&self.keys);
        let key = keys
            .get(root.key_id())
            .ok_or_else(|| Error::KeyUnavailable {
                key: root.to_string(),
                state: KeyState::NotFound,
            })?;
        Ok(if key.replicas.contains(region) {
            RegionAnswer::Replica(replica)
        } else {
            RegionAnswer::NotServed(
                "the multi-region key has no replica in that region: replicate it there first",
            )
        })
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    async fn generate_key(
        &self,
        root: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(SecretKey, WrappedKey)> {
        if let Some(fault) = self.enter(Operation::Generate, root).await? {
            return Err(self.fault_error(fault, Operation::Generate, root));
        }
        let key = SecretKey::generate()?;
        let wrapped = self.wrap_now(root, &key, context)?;
        Ok((key, wrapped))
    }
}

/// Keys are created by name (a name is drawn for an unnamed key), enabled
/// and disabled in memory; calls are not counted.
#[async_trait]
impl KeyAdmin for MockProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        let name = match new.name() {
            Some(name) => name.to_owned(),
            None => {
                let mut id = [0u8; 8];
                fill_random(&mut id)?;
                format!(
                    "key-{}",
                    id.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            }
        };
        if lock(&self.keys).contains_key(&name) || lock(&self.aliases).contains_key(&name) {
            return Err(Error::InvalidArgument(format!(
                "mock key {name:?} already exists"
            )));
        }
        Ok(self.insert_key(&name, new.is_multi_region()))
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.admin_set_state(key, KeyState::Enabled)
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.admin_set_state(key, KeyState::Disabled)
    }
}

impl MockProvider {
    fn admin_set_state(&self, key: &KeyRef, state: KeyState) -> Result<()> {
        check_kind(MOCK_PROVIDER, key)?;
        if self.set_key_state(&self.target_id(key), state) {
            Ok(())
        } else {
            Err(Error::KeyUnavailable {
                key: key.to_string(),
                state: KeyState::NotFound,
            })
        }
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves its
/// data consistent, so a panic elsewhere does not invalidate it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EncryptionContext {
        EncryptionContext::new().with("zone", "z")
    }

    #[tokio::test]
    async fn counts_every_call_per_operation() {
        let m = MockProvider::new();
        let root = m.add_key("k");
        let (key, wrapped) = m.generate_key(&root, &ctx()).await.unwrap();
        m.wrap_key(&root, &key, &ctx()).await.unwrap();
        assert_eq!(m.unwrap_key(&root, &wrapped, &ctx()).await.unwrap(), key);
        m.unwrap_key(&root, &wrapped, &EncryptionContext::new())
            .await
            .unwrap_err();
        m.describe_key(&root).await.unwrap();
        assert_eq!(m.calls(Operation::Generate), 1);
        assert_eq!(m.calls(Operation::Wrap), 1);
        assert_eq!(m.calls(Operation::Unwrap), 2);
        assert_eq!(m.calls(Operation::Describe), 1);
        assert_eq!(m.total_calls(), 5);
        m.reset_calls();
        assert_eq!(m.total_calls(), 0);
    }

    #[tokio::test]
    async fn faults_map_to_distinct_errors_and_expire() {
        let m = MockProvider::new();
        let root = m.add_key("k");
        let key = SecretKey::generate().unwrap();
        m.inject_fault(Fault::Throttled, Some(Operation::Wrap), Some(1));
        m.inject_fault(Fault::AccessDenied, Some(Operation::Wrap), Some(1));
        m.inject_fault(Fault::Unreachable, None, Some(2));
        let e1 = m.wrap_key(&root, &key, &ctx()).await.unwrap_err();
        let e2 = m.wrap_key(&root, &key, &ctx()).await.unwrap_err();
        let e3 = m.wrap_key(&root, &key, &ctx()).await.unwrap_err();
        assert!(matches!(e1, Error::Throttled { .. }), "{e1}");
        assert!(
            matches!(
                e2,
                Error::AccessDenied {
                    operation: "wrap",
                    ..
                }
            ),
            "{e2}"
        );
        assert!(matches!(e3, Error::ProviderUnreachable { .. }), "{e3}");
        assert!(e1.is_transient() && !e2.is_transient() && e3.is_transient());
        // The remaining unreachable call makes describe report the state.
        assert_eq!(m.describe_key(&root).await.unwrap(), KeyState::Unreachable);
        assert!(m.wrap_key(&root, &key, &ctx()).await.is_ok());

        m.inject_fault(Fault::Unreachable, Some(Operation::Unwrap), None);
        let wrapped = m.wrap_key(&root, &key, &ctx()).await.unwrap();
        for _ in 0..3 {
            assert!(m.unwrap_key(&root, &wrapped, &ctx()).await.is_err());
        }
        m.clear_faults();
        assert_eq!(m.unwrap_key(&root, &wrapped, &ctx()).await.unwrap(), key);
    }

    #[tokio::test]
    async fn state_changes_gate_use() {
        let m = MockProvider::new();
        let root = m.add_key("k");
        let (key, wrapped) = m.generate_key(&root, &ctx()).await.unwrap();
        for state in [
            KeyState::Disabled,
            KeyState::PendingDeletion,
            KeyState::Unavailable,
        ] {
            assert!(m.set_key_state("k", state));
            assert_eq!(m.describe_key(&root).await.unwrap(), state);
            let err = m.unwrap_key(&root, &wrapped, &ctx()).await.unwrap_err();
            assert!(
                matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
                "{err}"
            );
        }
        assert!(m.enable_key("k"));
        assert_eq!(m.unwrap_key(&root, &wrapped, &ctx()).await.unwrap(), key);
        assert!(m.delete_key("k"));
        assert_eq!(m.describe_key(&root).await.unwrap(), KeyState::NotFound);
        assert!(!m.enable_key("k"));
        // Re-creating the name makes a new key that cannot open old wraps.
        m.add_key("k");
        let err = m.unwrap_key(&root, &wrapped, &ctx()).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_calls() {
        let m = MockProvider::new();
        let root = m.add_key("k");
        m.set_latency(Duration::from_millis(250));
        let start = tokio::time::Instant::now();
        m.describe_key(&root).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn validation_names_the_failing_step() {
        use crate::provider::{StepOutcome, ValidationFailure, ValidationStep};
        let m = MockProvider::new();
        let root = m.add_key("k");
        let ok = m.validate_key(&root).await;
        assert!(ok.is_valid(), "{ok}");
        assert_eq!(ok.state, Some(KeyState::Enabled));

        m.inject_fault(Fault::AccessDenied, Some(Operation::Unwrap), Some(1));
        let v = m.validate_key(&root).await;
        assert!(!v.is_valid());
        assert_eq!(v.encrypt, StepOutcome::Passed);
        assert_eq!(
            v.first_failure(),
            Some((ValidationStep::Decrypt, &ValidationFailure::AccessDenied))
        );
        assert_eq!(v.describe, StepOutcome::Passed);
        assert!(
            v.to_string().contains("failed decrypt: access denied"),
            "{v}"
        );

        m.disable_key("k");
        let v = m.validate_key(&root).await;
        assert_eq!(
            v.encrypt,
            StepOutcome::Failed(ValidationFailure::KeyState(KeyState::Disabled))
        );
        assert_eq!(v.decrypt, StepOutcome::Skipped);
        assert_eq!(v.state, Some(KeyState::Disabled));

        m.enable_key("k");
        m.inject_fault(Fault::Unreachable, None, None);
        let v = m.validate_key(&root).await;
        assert!(matches!(
            v.encrypt,
            StepOutcome::Failed(ValidationFailure::Unreachable(_))
        ));
        assert_eq!(v.state, Some(KeyState::Unreachable));
        m.clear_faults();

        let missing = m.key_ref("nope");
        let v = m.validate_key(&missing).await;
        assert_eq!(v.state, Some(KeyState::NotFound));
        assert_eq!(
            v.first_failure(),
            Some((
                ValidationStep::Encrypt,
                &ValidationFailure::KeyState(KeyState::NotFound)
            ))
        );
    }

    #[tokio::test]
    async fn aliases_resolve_to_their_key_and_can_be_re_pointed() {
        let m = MockProvider::new();
        let a = m.add_key("key-a");
        let b = m.add_key("key-b");
        assert!(m.add_alias("alias/x", "nope").is_none());
        assert!(m.add_alias("key-b", "key-a").is_none());
        let alias = m.add_alias("alias/x", "key-a").unwrap();
        assert_eq!(m.resolve_key(&alias).await.unwrap(), a);
        assert_eq!(m.resolve_key(&a).await.unwrap(), a);
        assert_eq!(m.calls(Operation::Resolve), 2);
        // Through the alias is through its key: what one wraps, the other
        // unwraps.
        let key = SecretKey::generate().unwrap();
        let wrapped = m.wrap_key(&alias, &key, &ctx()).await.unwrap();
        assert_eq!(m.unwrap_key(&a, &wrapped, &ctx()).await.unwrap(), key);

        assert!(m.update_alias("alias/x", "key-b"));
        assert!(!m.update_alias("alias/y", "key-b"));
        assert!(!m.update_alias("alias/x", "nope"));
        assert_eq!(m.resolve_key(&alias).await.unwrap(), b);
        m.disable_key("key-a");
        assert_eq!(m.describe_key(&alias).await.unwrap(), KeyState::Enabled);
        assert_eq!(m.describe_key(&a).await.unwrap(), KeyState::Disabled);
        let err = m.unwrap_key(&alias, &wrapped, &ctx()).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{err}");

        let missing = m.resolve_key(&m.key_ref("alias/none")).await.unwrap_err();
        assert!(
            matches!(
                missing,
                Error::KeyUnavailable {
                    state: KeyState::NotFound,
                    ..
                }
            ),
            "{missing}"
        );
        m.inject_fault(Fault::Unreachable, Some(Operation::Resolve), Some(1));
        let err = m.resolve_key(&alias).await.unwrap_err();
        assert!(matches!(err, Error::ProviderUnreachable { .. }), "{err}");
    }

    #[tokio::test]
    async fn only_flagged_keys_serve_their_replica_regions() {
        let m = MockProvider::new();
        let mrk = m.add_multi_region_key("any-name");
        let named = m.add_key("mrk-1234abcd12ab34cd56ef1234567890ab");
        let alias = m.add_alias("alias/mrk-x", "any-name").unwrap();
        assert!(m.replicate_key("any-name", "r2"));
        assert!(!m.replicate_key("mrk-1234abcd12ab34cd56ef1234567890ab", "r2"));
        let home = m.serves_region(&mrk, "mock-region-1").await.unwrap();
        assert_eq!(home, RegionAnswer::Home);
        assert_eq!(m.calls(Operation::Describe), 0, "home needs no call");
        assert_eq!(
            m.serves_region(&mrk, "r2").await.unwrap(),
            RegionAnswer::Replica(KeyRef::new(MOCK_PROVIDER, "any-name", "r2"))
        );
        assert_eq!(m.calls(Operation::Describe), 1);
        assert!(matches!(
            m.serves_region(&mrk, "r3").await.unwrap(),
            RegionAnswer::NotServed(r) if r.contains("no replica")
        ));
        for single in [&named, &alias] {
            assert!(matches!(
                m.serves_region(single, "r2").await.unwrap(),
                RegionAnswer::NotServed(r) if r.contains("single-region")
            ));
            assert!(matches!(
                m.key_in_region(single, "r2").unwrap_err(),
                Error::RegionMismatch { .. }
            ));
        }
        m.inject_fault(Fault::Unreachable, Some(Operation::Describe), Some(1));
        let err = m.serves_region(&mrk, "r2").await.unwrap_err();
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn admin_creates_enables_and_disables() {
        let m = MockProvider::new();
        let admin = m.admin().unwrap();
        let named = admin.create_key(&NewKey::named("k")).await.unwrap();
        assert_eq!(named, m.key_ref("k"));
        assert!(admin.create_key(&NewKey::named("k")).await.is_err());
        let drawn = admin.create_key(&NewKey::unnamed()).await.unwrap();
        assert_ne!(drawn, named);
        admin.disable_key(&named).await.unwrap();
        assert_eq!(m.describe_key(&named).await.unwrap(), KeyState::Disabled);
        admin.enable_key(&named).await.unwrap();
        assert_eq!(m.describe_key(&named).await.unwrap(), KeyState::Enabled);
        let err = admin.disable_key(&m.key_ref("nope")).await.unwrap_err();
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
    }

    #[tokio::test]
    async fn refuses_other_providers_refs() {
        let m = MockProvider::new();
        m.add_key("k");
        let local = KeyRef::new("local", "k", "mock-region-1");
        assert!(matches!(
            m.describe_key(&local).await.unwrap_err(),
            Error::InvalidArgument(_)
        ));
    }
}
