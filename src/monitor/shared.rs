//! One key's verdict for this interval, through the shared verdict store:
//! read another node's, or take the lease, check, and publish.

use std::time::Duration;

use super::check::check_key;
use super::verdict::{now_ms, Lease, Record, RecordVersion, SharedVerdicts, Verdict};
use super::MonitorConfig;
use crate::metrics::{MONITOR_LEASES, MONITOR_VERDICTS_READ};
use crate::provider::{KeyProvider, KeyRef, KeyState};
use crate::Error;

/// Lost lease races, or unreadable records, before a node stops trusting
/// the store for this key and checks it itself.
const MAX_CONFLICTS: u32 = 3;

/// What a node learned of a key this interval.
pub(super) struct Obtained {
    pub(super) state: KeyState,
    /// When a check (this node's or another's) last found the key usable,
    /// in wall-clock milliseconds; `None` if unknown.
    pub(super) last_usable_ms: Option<u64>,
    /// True if this node made the check itself now (not read a verdict,
    /// even one of its own).
    pub(super) checked_here: bool,
}

/// The verdict on `key` for the interval that started at `slot_start_ms`.
pub(super) async fn obtain(
    shared: &SharedVerdicts,
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
    slot_start_ms: u64,
) -> Obtained {
    let retry_ms = config.retry_interval.as_millis() as u64;
    let mut troubles = 0u32;
    loop {
        let now = now_ms();
        let (record, version) = match shared.store.load(key).await {
            Ok(None) => (Record::default(), None),
            Ok(Some((bytes, version))) => match shared.open(key, &bytes, now) {
                Ok(record) => (record, Some(version)),
                Err(e) => {
                    // Hostile or damaged: as if there were no record (it is
                    // replaced by the next lease taken), never a verdict.
                    tracing::warn!(target: "cmek::monitor", key = %key, error = %e.report(),
                        "ignoring a verdict record that does not authenticate");
                    metrics::counter!(MONITOR_VERDICTS_READ, "outcome" => "invalid").increment(1);
                    troubles += 1;
                    (Record::default(), Some(version))
                }
            },
            Err(e) => {
                tracing::warn!(target: "cmek::monitor", key = %key, error = %e.report(),
                    "verdict store unreadable; checking the key here");
                metrics::counter!(MONITOR_LEASES, "outcome" => "error").increment(1);
                return check_here(provider, key, config, None).await;
            }
        };
        if let Some(v) = &record.verdict {
            let this_interval = v.checked_at_ms >= slot_start_ms;
            // An unreachable verdict is worth another try after the retry
            // interval, as the node's own would be.
            let settled =
                v.state != KeyState::Unreachable || v.checked_at_ms.saturating_add(retry_ms) > now;
            if this_interval && settled {
                metrics::counter!(MONITOR_VERDICTS_READ, "outcome" => "used").increment(1);
                return Obtained {
                    state: v.state,
                    last_usable_ms: (v.last_usable_ms > 0).then_some(v.last_usable_ms),
                    checked_here: false,
                };
            }
            metrics::counter!(MONITOR_VERDICTS_READ, "outcome" => "old").increment(1);
        }
        let previous_usable = record.verdict.as_ref().map(|v| v.last_usable_ms);
        if troubles > MAX_CONFLICTS {
            return check_here(provider, key, config, previous_usable).await;
        }
        if let Some(lease) = &record.lease {
            if lease.holder != shared.node && lease.until_ms > now {
                // Another node checks it now: wait for its verdict, or for
                // its lease to run out (then take over).
                let left = Duration::from_millis(lease.until_ms - now);
                tokio::time::sleep(shared.poll.min(left)).await;
                continue;
            }
        }
        let mut taken = record.clone();
        taken.lease = Some(Lease {
            holder: shared.node.clone(),
            until_ms: now.saturating_add(shared.lease.as_millis() as u64),
        });
        let sealed = match shared.seal(key, &taken) {
            Ok(sealed) => sealed,
            Err(_) => return check_here(provider, key, config, previous_usable).await,
        };
        match shared.store.swap(key, version.as_ref(), sealed).await {
            Ok(held) => {
                metrics::counter!(MONITOR_LEASES, "outcome" => "won").increment(1);
                let obtained = check_here(provider, key, config, previous_usable).await;
                publish(shared, key, held, &obtained).await;
                return obtained;
            }
            Err(Error::Conflict { .. }) => {
                metrics::counter!(MONITOR_LEASES, "outcome" => "lost").increment(1);
                troubles += 1;
            }
            Err(e) => {
                tracing::warn!(target: "cmek::monitor", key = %key, error = %e.report(),
                    "could not take a verdict lease; checking the key here");
                metrics::counter!(MONITOR_LEASES, "outcome" => "error").increment(1);
                return check_here(provider, key, config, previous_usable).await;
            }
        }
    }
}

/// Checks `key` with this node's provider.
async fn check_here(
    provider: &dyn KeyProvider,
    key: &KeyRef,
    config: &MonitorConfig,
    previous_usable_ms: Option<u64>,
) -> Obtained {
    let state = check_key(provider, key, config).await;
    Obtained {
        state,
        last_usable_ms: if state.is_usable() {
            Some(now_ms())
        } else {
            previous_usable_ms.filter(|t| *t > 0)
        },
        checked_here: true,
    }
}

/// Writes this node's verdict and releases its lease. A lost race means
/// the lease ran out and another node took over: its verdict stands.
async fn publish(
    shared: &SharedVerdicts,
    key: &KeyRef,
    version: RecordVersion,
    obtained: &Obtained,
) {
    let record = Record {
        lease: None,
        verdict: Some(Verdict {
            state: obtained.state,
            checked_at_ms: now_ms(),
            by: shared.node.clone(),
            last_usable_ms: obtained.last_usable_ms.unwrap_or(0),
        }),
    };
    let Ok(sealed) = shared.seal(key, &record) else {
        return;
    };
    if let Err(e) = shared.store.swap(key, Some(&version), sealed).await {
        tracing::debug!(target: "cmek::monitor", key = %key, error = %e.report(),
            "could not publish a verdict (the lease ran out?)");
    }
}
