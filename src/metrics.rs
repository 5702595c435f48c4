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

// ---- Provider calls, the call budget and the key monitor ----------------
// (`cmek::provider::MeteredProvider`, `cmek::budget`, `cmek::monitor`)

/// Time a call waited for its turn in a call budget, in seconds, by
/// `provider` and `priority` (`open`, `check`, `admin`).
pub const BUDGET_WAIT_SECONDS: &str = "cmek_budget_wait_seconds";
/// Calls waiting for their turn in a call budget, by `provider`.
pub const BUDGET_QUEUE_DEPTH: &str = "cmek_budget_queue_depth";
/// Calls the provider throttled and the budget paused and tried again, by
/// `provider` and `operation`.
pub const BUDGET_THROTTLED_RETRIES: &str = "cmek_budget_throttled_retries_total";
/// Calls that found no turn within the budget's longest wait
/// (`Error::BudgetExhausted`), by `provider` and `priority`.
pub const BUDGET_EXHAUSTED: &str = "cmek_budget_exhausted_total";
/// Unwraps answered by another caller's identical call in flight (no
/// provider call of their own), by `provider`.
pub const BUDGET_COALESCED: &str = "cmek_budget_coalesced_unwraps_total";
/// Key checks a monitor made itself (provider calls), by `outcome` (the
/// state found: `enabled`, `disabled`, `unreachable`, …).
pub const MONITOR_CHECKS: &str = "cmek_monitor_key_checks_total";
/// Verdicts a monitor took from the shared verdict store instead of
/// checking, by `outcome`: `used` (fresh, authentic), `stale` (older than
/// the grace: fails closed), `invalid` (malformed or not authentic:
/// ignored).
pub const MONITOR_VERDICTS_READ: &str = "cmek_monitor_verdicts_read_total";
/// Check leases a monitor took in the verdict store, by `outcome` (`won`,
/// `lost`, `error`).
pub const MONITOR_LEASES: &str = "cmek_monitor_leases_total";
/// Zones a monitor watches that do not serve (gated) after its last check
/// (a process runs one monitor; several would overwrite each other's).
pub const MONITOR_GATED_ZONES: &str = "cmek_monitor_gated_zones";

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
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
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
    describe_histogram!(
        BUDGET_WAIT_SECONDS,
        Unit::Seconds,
        "Time a provider call waited for its turn in a call budget, by provider and priority."
    );
    describe_gauge!(
        BUDGET_QUEUE_DEPTH,
        Unit::Count,
        "Provider calls waiting for their turn in a call budget, by provider."
    );
    describe_counter!(
        BUDGET_THROTTLED_RETRIES,
        Unit::Count,
        "Provider calls throttled by the provider and retried after a pause, by provider and operation."
    );
    describe_counter!(
        BUDGET_EXHAUSTED,
        Unit::Count,
        "Provider calls that found no turn in their budget in time, by provider and priority."
    );
    describe_counter!(
        BUDGET_COALESCED,
        Unit::Count,
        "Unwraps answered by an identical call in flight, by provider."
    );
    describe_counter!(
        MONITOR_CHECKS,
        Unit::Count,
        "Key checks a monitor made itself, by the state found."
    );
    describe_counter!(
        MONITOR_VERDICTS_READ,
        Unit::Count,
        "Verdicts a monitor read from the shared verdict store instead of checking, by outcome."
    );
    describe_counter!(
        MONITOR_LEASES,
        Unit::Count,
        "Check leases a monitor tried to take in the shared verdict store, by outcome."
    );
    describe_gauge!(
        MONITOR_GATED_ZONES,
        Unit::Count,
        "Watched zones that do not serve after the monitor's last check."
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

/// A recorder for tests: counters and gauges by name and labels
/// (`name{label=value,...}`), histograms by their number of samples.
#[cfg(test)]
pub(crate) mod test_recorder {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    /// What was recorded.
    #[derive(Default)]
    pub(crate) struct Recorded {
        counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
    }

    #[derive(Default)]
    struct Samples(Mutex<Vec<f64>>);

    impl HistogramFn for Samples {
        fn record(&self, value: f64) {
            self.0.lock().unwrap().push(value);
        }
    }

    fn name(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        if labels.is_empty() {
            key.name().to_owned()
        } else {
            format!("{}{{{}}}", key.name(), labels.join(","))
        }
    }

    impl Recorder for Recorded {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut counters = self.counters.lock().unwrap();
            Counter::from_arc(counters.entry(name(key)).or_default().clone())
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut gauges = self.gauges.lock().unwrap();
            Gauge::from_arc(gauges.entry(name(key)).or_default().clone())
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut histograms = self.histograms.lock().unwrap();
            Histogram::from_arc(histograms.entry(name(key)).or_default().clone())
        }
    }

    impl Recorded {
        pub(crate) fn counter(&self, name: &str) -> u64 {
            self.counters
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        }
        pub(crate) fn samples(&self, name: &str) -> usize {
            self.histograms
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |h| h.0.lock().unwrap().len())
        }

        pub(crate) fn gauge(&self, name: &str) -> f64 {
            self.gauges
                .lock()
                .unwrap()
                .get(name)
                .map_or(0.0, |g| f64::from_bits(g.load(Ordering::Relaxed)))
        }

        pub(crate) fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = self.counters.lock().unwrap().keys().cloned().collect();
            names.extend(self.gauges.lock().unwrap().keys().cloned());
            names.extend(self.histograms.lock().unwrap().keys().cloned());
            names
        }
    }
}
