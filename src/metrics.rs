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

// --- Zone set (`crate::tenancy::ZoneSet`), each by `set` (the set's
// configured name). ---

/// Gets of a zone the set held open, by `set`.
pub const ZONE_SET_HITS: &str = "cmek_zone_set_hits_total";
/// Gets of a zone the set had to open (callers that joined an open already
/// under way count once each), by `set`.
pub const ZONE_SET_MISSES: &str = "cmek_zone_set_misses_total";
/// Opens the set made, by `set` and `outcome` (`ok` or the error kind).
pub const ZONE_SET_OPENS: &str = "cmek_zone_set_opens_total";
/// Time to open a zone on a miss (catalog, manifest, provider calls), in
/// seconds, by `set`.
pub const ZONE_SET_OPEN_SECONDS: &str = "cmek_zone_set_open_seconds";
/// Idle zones the set evicted (their EZKs dropped and zeroized), by `set`.
pub const ZONE_SET_EVICTIONS: &str = "cmek_zone_set_evictions_total";
/// Zones open in the set now, by `set`.
pub const ZONE_SET_OPEN_ZONES: &str = "cmek_zone_set_open_zones";
/// The set's estimate of the memory its open zones hold, by `set`.
pub const ZONE_SET_BYTES: &str = "cmek_zone_set_bytes";
/// Opens admitted past the set's bounds because every open zone was in
/// use, by `set`.
pub const ZONE_SET_OVER_LIMIT: &str = "cmek_zone_set_over_limit_total";

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
    describe_zone_set();
}

/// The zone set's help texts.
fn describe_zone_set() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        ZONE_SET_HITS,
        Unit::Count,
        "Zone-set gets served by a zone already open."
    );
    describe_counter!(
        ZONE_SET_MISSES,
        Unit::Count,
        "Zone-set gets that waited for an open."
    );
    describe_counter!(
        ZONE_SET_OPENS,
        Unit::Count,
        "Zones the zone set opened, by outcome."
    );
    describe_histogram!(
        ZONE_SET_OPEN_SECONDS,
        Unit::Seconds,
        "Time to open a zone on a zone-set miss."
    );
    describe_counter!(
        ZONE_SET_EVICTIONS,
        Unit::Count,
        "Idle zones evicted from the zone set, their keys zeroized."
    );
    describe_gauge!(
        ZONE_SET_OPEN_ZONES,
        Unit::Count,
        "Zones open in the zone set."
    );
    describe_gauge!(
        ZONE_SET_BYTES,
        Unit::Bytes,
        "Estimated memory held by the zone set's open zones."
    );
    describe_counter!(
        ZONE_SET_OVER_LIMIT,
        Unit::Count,
        "Opens admitted past the zone set's bounds because every open zone was in use."
    );
}
