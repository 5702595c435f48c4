//! A budget for provider calls: [`BudgetedProvider`], a [`KeyProvider`]
//! that spends a rate of calls on the most urgent work first.
//!
//! A KMS bills per call and throttles an account past its quota, and the
//! quota is shared by everything that uses the account. A node that
//! reopens 100,000 zones at once after a restart, while its key monitor
//! checks keys and an operator rotates some, must not fail opens on the
//! data path because it asked for everything at the same moment.
//! `BudgetedProvider` wraps any provider and:
//!
//! * **meters calls** through a token bucket for the whole provider
//!   ([`BudgetConfig::calls_per_second`], [`BudgetConfig::burst`]) and one
//!   per root key ([`BudgetConfig::per_root`]), so that one tenant's key
//!   cannot spend the account's quota alone;
//! * **serves by priority** ([`Priority`]): unwraps on the data path
//!   ([`Priority::Open`]) before the monitor's key checks
//!   ([`Priority::Check`]), and those before administration
//!   ([`Priority::Admin`]: creating zones, rotating). Within a priority,
//!   calls are served in arrival order. A waiting call rises one priority
//!   for every [`BudgetConfig::aging`] it has waited, so no priority
//!   starves while another keeps the budget busy;
//! * **backs off** when the provider throttles anyway ([`Error::Throttled`]:
//!   the quota is shared with others the budget cannot see): the call
//!   waits a pause with full jitter, doubling from
//!   [`BudgetConfig::backoff_initial`] up to [`BudgetConfig::backoff_max`],
//!   and tries again; the tokens the bucket had saved are spent, so calls
//!   queued behind it slow down too. A caller never sees `Throttled`;
//! * **bounds every wait**: a call that has not been made within
//!   [`BudgetConfig::max_wait`] (queueing and backoff together) fails with
//!   [`Error::BudgetExhausted`], which is transient
//!   ([`ErrorKind::Retry`](crate::ErrorKind::Retry));
//! * **coalesces unwraps**: callers unwrapping the same wrapped key under
//!   the same root and context at the same time share one provider call
//!   (single flight), whichever [`Keyring`](crate::zone::Keyring) or
//!   handle they come from. Zones never share a wrap: each zone's EZK is
//!   wrapped with the zone's id in its context (docs/FORMAT.md), so one
//!   call per zone and EZK version is the floor, and the keyring already
//!   coalesces the opens of one zone;
//! * **shows its queue**: [`BudgetedProvider::queue_depth`] and the gauge
//!   [`BUDGET_QUEUE_DEPTH`](crate::metrics::BUDGET_QUEUE_DEPTH).
//!
//! # Priorities
//!
//! A call's priority comes from the task: run a future inside
//! [`with_priority`] and every provider call it makes through a budget
//! has that priority. Outside any scope, the operation decides: an unwrap
//! is [`Priority::Open`], a describe or an alias resolution
//! [`Priority::Check`], a wrap or a key generation [`Priority::Admin`]. The
//! [`KeyMonitor`](crate::monitor::KeyMonitor) runs its checks in a
//! `Check` scope; a check's wait in the queue counts toward its
//! [`check_timeout`](crate::monitor::MonitorConfig::check_timeout), and a
//! check that times out, or finds no slot within `max_wait`, finds the key
//! unreachable (the monitor's
//! [`UnreachablePolicy`](crate::monitor::UnreachablePolicy) then decides).
//! During a storm of opens, keep the grace period longer than the storm.
//!
//! Calls that make no provider call (`key_ref`, `key_in_region`,
//! `access_policy`, `is_legacy_wrap`) pass through, and so does
//! [`admin`](KeyProvider::admin): administration tools call the provider
//! directly.
//!
//! This module must not cache unwrapped keys: a coalesced call's key is
//! handed to the callers that waited for it and kept nowhere.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::provider::{
    EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, RegionAnswer, WrappedKey,
};
use crate::secret::SecretKey;
use crate::{Error, Result};

mod flight;
mod sched;

#[cfg(test)]
mod tests;

use flight::{FlightKey, Flights, Role};
use sched::{Limits, Scheduler, Wait};

/// How urgent a provider call is; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Opening a zone on the data path: a caller is waiting for data.
    Open,
    /// A key-availability check of the monitor.
    Check,
    /// Administration: creating, rotating, rewrapping, validating.
    Admin,
}

impl Priority {
    /// Its name, as in metrics labels: `open`, `check` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Open => "open",
            Priority::Check => "check",
            Priority::Admin => "admin",
        }
    }

    /// 0 for the most urgent.
    fn rank(self) -> usize {
        match self {
            Priority::Open => 0,
            Priority::Check => 1,
            Priority::Admin => 2,
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `future` with every provider call it makes through a
/// [`BudgetedProvider`] at `priority` (a nested scope overrides it).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use cmek::budget::{current_priority, with_priority, Priority};
/// let inside = with_priority(Priority::Admin, async { current_priority() }).await;
/// assert_eq!(inside, Some(Priority::Admin));
/// assert_eq!(current_priority(), None);
/// # }
/// ```
pub async fn with_priority<F: Future>(priority: Priority, future: F) -> F::Output {
    PRIORITY.scope(priority, future).await
}

/// The priority of the enclosing [`with_priority`] scope, if any.
pub fn current_priority() -> Option<Priority> {
    PRIORITY.try_with(|p| *p).ok()
}

/// The settings of a [`BudgetedProvider`]. [`Default`] suits one node of
/// a service sharing an AWS KMS account's default quota with others.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Calls a second to the provider, all root keys together. Default 100.
    /// Values that are not positive and finite are taken as 1.
    pub calls_per_second: f64,
    /// Calls that may go at once after a quiet spell (the bucket's size).
    /// Default 100; at least 1.
    pub burst: u32,
    /// Calls a second and burst for each root key, on top of the
    /// provider-wide limit; `None` for no per-key limit. Default
    /// `Some((20.0, 20))`.
    pub per_root: Option<(f64, u32)>,
    /// The longest a call waits for its turn, queueing and backoff after
    /// throttling together, before it fails with
    /// [`Error::BudgetExhausted`]. The provider call itself is bounded by
    /// the provider's own timeouts. Default 30 seconds.
    pub max_wait: Duration,
    /// A waiting call rises one priority for every `aging` it has waited:
    /// an `Admin` call waiting `2 × aging` competes as an `Open` one.
    /// Default 5 seconds; zero turns aging off (strict priorities: a
    /// low-priority call under a steady flood of urgent ones then waits
    /// until [`max_wait`](Self::max_wait) and fails).
    pub aging: Duration,
    /// The first pause after the provider throttled a call; each further
    /// throttle of the same call doubles it, up to
    /// [`backoff_max`](Self::backoff_max). The pause is drawn uniformly
    /// from zero to that bound (full jitter), so that throttled callers do
    /// not come back together. Default 100 ms.
    pub backoff_initial: Duration,
    /// The longest pause after a throttle. Default 5 seconds.
    pub backoff_max: Duration,
    /// Share one provider call among concurrent identical unwraps. Default
    /// true.
    pub coalesce_unwraps: bool,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            calls_per_second: 100.0,
            burst: 100,
            per_root: Some((20.0, 20)),
            max_wait: Duration::from_secs(30),
            aging: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            coalesce_unwraps: true,
        }
    }
}

impl BudgetConfig {
    /// The defaults with another provider-wide rate and burst (the burst
    /// is one second's calls), and no per-key limit.
    pub fn with_rate(calls_per_second: f64) -> Self {
        Self {
            calls_per_second,
            burst: calls_per_second.clamp(1.0, u32::MAX as f64) as u32,
            per_root: None,
            ..Self::default()
        }
    }

    fn limits(&self) -> Limits {
        let rate = |r: f64| if r.is_finite() && r > 0.0 { r } else { 1.0 };
        Limits {
            rate: rate(self.calls_per_second),
            burst: f64::from(self.burst.max(1)),
            root: self.per_root.map(|(r, b)| (rate(r), f64::from(b.max(1)))),
            aging: self.aging,
        }
    }
}

/// A [`KeyProvider`] that makes its inner provider's calls within a call
/// budget. See the [module docs](self).
pub struct BudgetedProvider {
    inner: Arc<dyn KeyProvider>,
    config: BudgetConfig,
    scheduler: Arc<Scheduler>,
    flights: Flights,
}

impl fmt::Debug for BudgetedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetedProvider")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

/// A provider operation, for priorities and metrics labels.
#[derive(Clone, Copy)]
enum Op {
    Wrap,
    Unwrap,
    Describe,
    Resolve,
    ServesRegion,
    Generate,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Wrap => "wrap",
            Op::Unwrap => "unwrap",
            Op::Describe => "describe",
            Op::Resolve => "resolve",
            Op::ServesRegion => "serves_region",
            Op::Generate => "generate",
        }
    }

    /// The priority of a call made outside any [`with_priority`] scope.
    fn default_priority(self) -> Priority {
        match self {
            Op::Unwrap => Priority::Open,
            Op::Describe | Op::Resolve | Op::ServesRegion => Priority::Check,
            Op::Wrap | Op::Generate => Priority::Admin,
        }
    }
}

impl BudgetedProvider {
    /// `inner` behind a budget of `config`.
    pub fn new(inner: Arc<dyn KeyProvider>, config: BudgetConfig) -> Arc<Self> {
        let scheduler = Scheduler::new(config.limits(), inner.kind().to_owned());
        Arc::new(Self {
            inner,
            config,
            scheduler,
            flights: Flights::default(),
        })
    }

    /// The provider it calls.
    pub fn inner(&self) -> &Arc<dyn KeyProvider> {
        &self.inner
    }

    /// The settings.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Calls waiting for their turn now (also the gauge
    /// [`BUDGET_QUEUE_DEPTH`](crate::metrics::BUDGET_QUEUE_DEPTH)). Calls
    /// waiting for a coalesced unwrap, and calls pausing after a throttle,
    /// are not counted.
    pub fn queue_depth(&self) -> usize {
        self.scheduler.depth()
    }

    /// Makes `call` within the budget: waits for a token at the task's
    /// priority, and pauses and tries again while the provider throttles,
    /// until `max_wait` has passed.
    async fn call<T, F, Fut>(&self, op: Op, root: &KeyRef, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let priority = current_priority().unwrap_or_else(|| op.default_priority());
        let started = tokio::time::Instant::now();
        let deadline = started + self.config.max_wait;
        let mut throttled = 0u32;
        let mut pause_bound = self.config.backoff_initial;
        loop {
            match self.scheduler.acquire(root, priority, deadline).await? {
                Wait::Granted(waited) => {
                    metrics::histogram!(crate::metrics::BUDGET_WAIT_SECONDS,
                        "provider" => self.inner.kind().to_owned(),
                        "priority" => priority.as_str())
                    .record(waited.as_secs_f64());
                }
                Wait::TimedOut => return Err(self.exhausted(priority, started, throttled)),
            }
            match call().await {
                Err(Error::Throttled { .. }) => {
                    throttled += 1;
                    self.scheduler.throttled();
                    metrics::counter!(crate::metrics::BUDGET_THROTTLED_RETRIES,
                        "provider" => self.inner.kind().to_owned(),
                        "operation" => op.name())
                    .increment(1);
                    let pause = jitter(pause_bound);
                    pause_bound = pause_bound.saturating_mul(2).min(self.config.backoff_max);
                    let now = tokio::time::Instant::now();
                    if now + pause >= deadline {
                        // No attempt could be made in time after the pause:
                        // say so now rather than sleep to the deadline.
                        tokio::time::sleep_until(deadline.max(now)).await;
                        return Err(self.exhausted(priority, started, throttled));
                    }
                    tracing::debug!(target: "cmek::budget", provider = self.inner.kind(),
                        operation = op.name(), throttled, ?pause, "provider throttled a call; pausing");
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    fn exhausted(
        &self,
        priority: Priority,
        started: tokio::time::Instant,
        throttled: u32,
    ) -> Error {
        metrics::counter!(crate::metrics::BUDGET_EXHAUSTED,
            "provider" => self.inner.kind().to_owned(),
            "priority" => priority.as_str())
        .increment(1);
        tracing::warn!(target: "cmek::budget", provider = self.inner.kind(), %priority, throttled,
            "a provider call found no slot in its budget in time");
        Error::BudgetExhausted {
            provider: self.inner.kind().to_owned(),
            priority,
            waited: started.elapsed(),
            throttled,
        }
    }

    async fn unwrap_coalesced(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
        legacy: bool,
    ) -> Result<SecretKey> {
        let make = || async {
            self.call(Op::Unwrap, root, || async {
                if legacy {
                    self.inner.unwrap_legacy_key(root, wrapped, context).await
                } else {
                    self.inner.unwrap_key(root, wrapped, context).await
                }
            })
            .await
        };
        if !self.config.coalesce_unwraps {
            return make().await;
        }
        let key = FlightKey::new(root, wrapped, context, legacy);
        let (outcome, role) = self.flights.run(key, make).await;
        if let Role::Joined = role {
            metrics::counter!(crate::metrics::BUDGET_COALESCED,
                "provider" => self.inner.kind().to_owned())
            .increment(1);
        }
        outcome
    }
}

/// A pause drawn uniformly from zero to `bound` ("full jitter"). Not
/// secret, so a failing random source only makes it the bound.
fn jitter(bound: Duration) -> Duration {
    let nanos = bound.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let draw = getrandom::u64().unwrap_or(u64::MAX);
    Duration::from_nanos(draw % (nanos + 1))
}

#[async_trait]
impl KeyProvider for BudgetedProvider {
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
        self.call(Op::Wrap, root, || self.inner.wrap_key(root, key, context))
            .await
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.unwrap_coalesced(root, wrapped, context, false).await
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
        self.unwrap_coalesced(root, wrapped, context, true).await
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        self.call(Op::Describe, root, || self.inner.describe_key(root))
            .await
    }

    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        self.call(Op::Resolve, root, || self.inner.resolve_key(root))
            .await
    }

    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        self.inner.key_in_region(root, region)
    }

    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        // A key in its home region is answered without a call: no token.
        if root.region() == region {
            return self.inner.serves_region(root, region).await;
        }
        self.call(Op::ServesRegion, root, || {
            self.inner.serves_region(root, region)
        })
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
        self.call(Op::Generate, root, || {
            self.inner.generate_key(root, context)
        })
        .await
    }

    async fn validate_key(&self, root: &KeyRef) -> crate::provider::KeyValidation {
        // A validation is administration (registering a key): all three of
        // its calls go at `Admin`, unless the caller chose a priority.
        let validate = crate::provider::validate_round_trip(self, root);
        match current_priority() {
            Some(_) => validate.await,
            None => with_priority(Priority::Admin, validate).await,
        }
    }
}
