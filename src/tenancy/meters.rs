//! The zone set's metric handles, registered once per set so that a hit
//! costs an atomic add, not a registry lookup (names and help texts in
//! [`crate::metrics`]).

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::metrics::{
    ZONE_SET_BYTES, ZONE_SET_EVICTIONS, ZONE_SET_HITS, ZONE_SET_MISSES, ZONE_SET_OPENS,
    ZONE_SET_OPEN_SECONDS, ZONE_SET_OPEN_ZONES, ZONE_SET_OVER_LIMIT,
};

pub(super) struct Meters {
    set: String,
    pub(super) hits: Counter,
    pub(super) misses: Counter,
    pub(super) evictions: Counter,
    pub(super) over_limit: Counter,
    pub(super) open_seconds: HistogramSeconds,
    open_zones: Gauge,
    bytes: Gauge,
}

/// A histogram recorded in seconds.
pub(super) struct HistogramSeconds(Histogram);

impl HistogramSeconds {
    pub(super) fn record(&self, d: Duration) {
        self.0.record(d.as_secs_f64());
    }
}

impl Meters {
    pub(super) fn new(set: &str) -> Self {
        let label = || [("set", set.to_owned())];
        Self {
            set: set.to_owned(),
            hits: counter!(ZONE_SET_HITS, &label()),
            misses: counter!(ZONE_SET_MISSES, &label()),
            evictions: counter!(ZONE_SET_EVICTIONS, &label()),
            over_limit: counter!(ZONE_SET_OVER_LIMIT, &label()),
            open_seconds: HistogramSeconds(histogram!(ZONE_SET_OPEN_SECONDS, &label())),
            open_zones: gauge!(ZONE_SET_OPEN_ZONES, &label()),
            bytes: gauge!(ZONE_SET_BYTES, &label()),
        }
    }

    /// Counts an open by outcome (rare: looked up each time).
    pub(super) fn opened(&self, outcome: &'static str) {
        counter!(ZONE_SET_OPENS, "set" => self.set.clone(), "outcome" => outcome).increment(1);
    }

    pub(super) fn gauges(&self, open: usize, bytes: u64) {
        self.open_zones.set(open as f64);
        self.bytes.set(bytes as f64);
    }
}
