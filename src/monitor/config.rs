//! How often and how thoroughly the monitor checks, and what it does when
//! it cannot ask.

use std::time::Duration;

/// What a zone does when its key's provider cannot be reached (network
/// failure, timeout, throttling that outlasts the retries).
///
/// An unreachable provider says nothing about the key: it may be fine, or
/// it may be revoked and the revocation invisible. The trade-off is
/// availability against the revocation bound:
///
/// * [`FailClosed`](Self::FailClosed) stops serving at the first check that
///   cannot reach the provider. A revocation is never outrun, but every KMS
///   or network incident becomes an outage of every zone under the key.
/// * [`GracePeriod`](Self::GracePeriod) keeps serving from the cached EZKs
///   for at most the given time after the key was **last confirmed
///   usable**, then stops. A KMS incident shorter than the grace period is
///   invisible to readers and writers; a revocation hidden behind an
///   unreachable provider is honoured at most `grace` after the last good
///   check instead of one interval.
///
/// The default is a grace period of 30 minutes (three default intervals):
/// long enough to ride out a regional KMS or network incident, short enough
/// that an operator who cuts the network to the KMS still stops the zone
/// within the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachablePolicy {
    /// Stop serving at the first check that cannot reach the provider.
    FailClosed,
    /// Keep serving for at most this long after the last check that found
    /// the key usable.
    GracePeriod(Duration),
}

impl Default for UnreachablePolicy {
    fn default() -> Self {
        UnreachablePolicy::GracePeriod(Duration::from_secs(30 * 60))
    }
}

/// The monitor's settings. [`Default`] gives the product's defaults.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Time between the starts of two checks of every key. Default 10
    /// minutes. A revoked key stops its zones within this interval plus
    /// the duration of one check (at most [`check_timeout`](Self::check_timeout)
    /// plus the EZK unwraps of recovering zones).
    pub interval: Duration,
    /// Time to the next check when the last one left something unsettled:
    /// a provider unreachable, or a zone that could not be recovered.
    /// Default 30 seconds; never longer than `interval`.
    pub retry_interval: Duration,
    /// Also wrap and unwrap a throwaway key under each root key, not only
    /// describe it. Describe alone misses a permission revoked on the key
    /// policy or a grant (the key stays "enabled" but cmek may no longer
    /// use it). Default true: two extra provider calls per key per check.
    pub test_wrap: bool,
    /// Upper bound on one key's check, retries included; past it the
    /// provider counts as unreachable. Default 30 seconds.
    pub check_timeout: Duration,
    /// Retries of a provider call that failed transiently (unreachable or
    /// throttled) within one check, with a doubling pause from
    /// [`retry_backoff`](Self::retry_backoff). Default 2.
    pub retries: u32,
    /// The first pause between retries. Default 1 second.
    pub retry_backoff: Duration,
    /// What zones do while their key's provider is unreachable.
    pub unreachable: UnreachablePolicy,
    /// Events buffered per subscriber before the slowest one starts losing
    /// the oldest. Default 1024.
    pub event_capacity: usize,
    /// Keys checked (or, with shared verdicts, looked up in the verdict
    /// store) at the same time. A node watching 10,000 keys sends at most
    /// this many requests to its provider and its verdict store at once,
    /// which neither throttles. Default 64; at least 1.
    pub max_concurrent_checks: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10 * 60),
            retry_interval: Duration::from_secs(30),
            test_wrap: true,
            check_timeout: Duration::from_secs(30),
            retries: 2,
            retry_backoff: Duration::from_secs(1),
            unreachable: UnreachablePolicy::default(),
            event_capacity: 1024,
            max_concurrent_checks: 64,
        }
    }
}

impl MonitorConfig {
    /// The defaults with another check interval.
    pub fn with_interval(interval: Duration) -> Self {
        Self {
            interval,
            ..Self::default()
        }
    }
}
