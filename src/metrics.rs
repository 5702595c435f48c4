//! The names of the metrics cmek records, through the [`metrics`] facade.
//!
//! cmek records counters, gauges and histograms with the `metrics` crate's
//! macros and installs no recorder: without one, recording costs a few
//! atomic loads and nothing is kept. An application that wants the numbers
//! installs a recorder of its choice (Prometheus, StatsD, OpenTelemetry)
//! once at start-up; `examples/prometheus.rs` shows one. [`describe`]
//! gives each metric its help text and unit.
//!
//! Names follow Prometheus conventions: `cmek_` prefix, `_total` on
//! counters, base units (`_seconds`, `_bytes`). Labels are low-cardinality
//! (a provider kind, an operation, an outcome, a priority): never a key id
//! or a zone id, which would make one series per tenant.
//!
//! This module owns only names and descriptions; each module records its
//! own metrics where the event happens.

/// Provider calls, by `provider` (its kind), `operation` (`wrap`,
/// `unwrap`, `describe`, …) and `outcome` (`ok` or the error kind).
pub const PROVIDER_CALLS: &str = "cmek_provider_calls_total";
/// Provider call latency in seconds, by `provider` and `operation`.
pub const PROVIDER_CALL_SECONDS: &str = "cmek_provider_call_seconds";

/// Gives the installed recorder the help text of every metric (call
/// it after installing one; without a recorder it does nothing).
pub fn describe() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        PROVIDER_CALLS,
        Unit::Count,
        "Calls to a key provider, by provider kind, operation and outcome."
    );
    describe_histogram!(
        PROVIDER_CALL_SECONDS,
        Unit::Seconds,
        "Latency of calls to a key provider, by provider kind and operation."
    );
}
