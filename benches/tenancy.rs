//! Many tenants in one process: a `ZoneSet` over 100,000 zones under
//! 10,000 root keys, on a mock KMS that takes 20 ms a call.
//!
//! Measured, in this order, and printed as a table (the time figures that
//! are not criterion's are percentiles over many samples):
//!
//! * **memory per open idle zone**: live heap bytes (a counting global
//!   allocator) after the set opened every zone, minus before, over the
//!   zone count — the set's own map, clock and anchor-reporting task
//!   included; beside it the set's estimate (`ZoneSet::bytes`);
//! * **open on a miss**: p50 and p99 of `ZoneSet::get` for a zone just
//!   evicted, 100 concurrent misses at a time, against the baseline
//!   measured in the same run: one provider round trip (an `unwrap_key`,
//!   the call an open makes), 100 at a time; then the same one miss at a
//!   time;
//! * **a hit**: criterion, `tenancy/hit` (`ZoneSet::get` of an open zone,
//!   polled once, over all zones in turn) against `tenancy/zone_clone`
//!   (cloning and dropping a `Zone` handle: the floor);
//! * **restart storm**: a new set reopens all 100,000 zones at once
//!   through a `BudgetedProvider` of 1,000 calls/s over a KMS that
//!   throttles above 1,000 calls/s; counts the errors reaching callers by
//!   kind (the target is none) and the time to full service. Then 20,000
//!   zones the same way over a KMS that throttles above 900 calls/s (the
//!   budget meets `Throttled` and must absorb it;
//!   `CMEK_TENANCY_TIGHT_ZONES`).
//!
//! `cargo bench --features testing --bench tenancy`
//!
//! `CMEK_TENANCY_ZONES` and `CMEK_TENANCY_ROOTS` scale it down (defaults
//! 100000 and 10000); `CMEK_TENANCY_STORM=0` skips the storm (about 100 s
//! at full size).

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::Criterion;
use futures_util::FutureExt;

use cmek::budget::{BudgetConfig, BudgetedProvider};
use cmek::provider::{EncryptionContext, KeyProvider, KeyRef, KeyState, WrappedKey};
use cmek::tenancy::{ZoneCatalog, ZoneLocation, ZoneSet, ZoneSetConfig};
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, ManifestStore, MemoryManifestStore, ZoneAnchor, ZoneId, ZoneSpec};
use cmek::{Error, SecretKey};

const LATENCY: Duration = Duration::from_millis(20);
const STORM_RATE: f64 = 1_000.0;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Zones = Arc<HashMap<ZoneId, (ZoneAnchor, Arc<dyn ManifestStore>)>>;

/// The engine's catalog: every zone's anchor and store, one keyring.
struct Catalog {
    keyring: Arc<Keyring>,
    zones: Zones,
}

#[async_trait]
impl ZoneCatalog for Catalog {
    async fn locate(&self, id: ZoneId) -> cmek::Result<ZoneLocation> {
        let (anchor, store) = self.zones.get(&id).cloned().ok_or(Error::NotFound {
            what: "zone",
            location: id.to_string(),
        })?;
        Ok(ZoneLocation {
            anchor,
            store,
            keyring: self.keyring.clone(),
        })
    }

    async fn anchor_changed(&self, _anchor: &ZoneAnchor) {}
}

/// A KMS account's quota: above `rate` calls a second (a bucket of one
/// second's calls), a call is answered `Throttled` after a round trip.
#[derive(Debug)]
struct Quota {
    inner: Arc<MockProvider>,
    rate: f64,
    bucket: Mutex<(f64, Instant)>,
    throttled: AtomicU64,
}

impl Quota {
    fn new(inner: Arc<MockProvider>, rate: f64) -> Self {
        Self {
            inner,
            rate,
            bucket: Mutex::new((rate, Instant::now())),
            throttled: AtomicU64::new(0),
        }
    }

    async fn admit(&self) -> cmek::Result<()> {
        let ok = {
            let mut b = self.bucket.lock().unwrap();
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(self.rate);
            b.1 = now;
            if b.0 >= 1.0 {
                b.0 -= 1.0;
                true
            } else {
                false
            }
        };
        if ok {
            return Ok(());
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(LATENCY).await;
        Err(Error::Throttled {
            provider: "mock".into(),
        })
    }
}

#[async_trait]
impl KeyProvider for Quota {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn key_ref(&self, key_id: &str) -> KeyRef {
        KeyProvider::key_ref(self.inner.as_ref(), key_id)
    }
    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> cmek::Result<WrappedKey> {
        self.admit().await?;
        self.inner.wrap_key(root, key, context).await
    }
    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> cmek::Result<SecretKey> {
        self.admit().await?;
        self.inner.unwrap_key(root, wrapped, context).await
    }
    async fn describe_key(&self, root: &KeyRef) -> cmek::Result<KeyState> {
        self.admit().await?;
        self.inner.describe_key(root).await
    }
}

/// The context of the baseline's unwraps.
fn probe_context() -> EncryptionContext {
    EncryptionContext::new().with("bench", "round-trip")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    counting_alloc::assert_counting();
    let zones_n = env("CMEK_TENANCY_ZONES", 100_000);
    let roots_n = env("CMEK_TENANCY_ROOTS", 10_000).max(1);
    let storm = env("CMEK_TENANCY_STORM", 1) != 0;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // Setup: the zones, created on a KMS without latency.
    let kms = Arc::new(MockProvider::new());
    let roots: Vec<KeyRef> = (0..roots_n)
        .map(|i| kms.add_key(&format!("project-{i:05}")))
        .collect();
    let started = Instant::now();
    let (ids, zones) = rt.block_on(async {
        let keyring = Keyring::new(kms.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..zones_n {
            let keyring = keyring.clone();
            let root = roots[i % roots_n].clone();
            tasks.spawn(async move {
                let store: Arc<dyn ManifestStore> = Arc::new(MemoryManifestStore::new());
                let spec = ZoneSpec::new(format!("tenant-{i:06}"), "mock-region-1", root);
                let zone = keyring.create_zone(store.clone(), spec).await.unwrap();
                (zone.id(), zone.anchor(), store)
            });
        }
        let mut ids = Vec::with_capacity(zones_n);
        let mut zones = HashMap::with_capacity(zones_n);
        while let Some(done) = tasks.join_next().await {
            let (id, anchor, store) = done.unwrap();
            ids.push(id);
            zones.insert(id, (anchor, store));
        }
        (ids, Arc::new(zones) as Zones)
    });
    eprintln!(
        "setup: {zones_n} zones over {roots_n} root keys created in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    kms.set_latency(LATENCY);

    // Memory per open idle zone.
    let set = ZoneSet::new(
        Arc::new(Catalog {
            keyring: Keyring::new(kms.clone()),
            zones: zones.clone(),
        }),
        ZoneSetConfig::bounded(zones_n + 1, u64::MAX),
    );
    // Warm the runtime's and the set's one-off allocations on one zone.
    rt.block_on(set.get(ids[0])).unwrap();
    let before = counting_alloc::live();
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for id in &ids[1..] {
            let set = set.clone();
            let id = *id;
            tasks.spawn(async move { set.get(id).await.map(drop) });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    });
    let open_all = started.elapsed();
    let after = counting_alloc::live();
    let per_zone = (after.saturating_sub(before)) / (zones_n - 1).max(1);
    let estimate = set.bytes() / set.len() as u64;
    eprintln!(
        "memory: {} zones open; {per_zone} B per open idle zone measured, {estimate} B estimated; \
         all opened (cold, {zones_n} at once) in {:.1} s",
        set.len(),
        open_all.as_secs_f64()
    );

    // The baseline's calls: an unwrap, as an open makes, of a key wrapped
    // beforehand under each of 100 roots.
    let probes: Vec<(KeyRef, WrappedKey)> = rt.block_on(async {
        kms.set_latency(Duration::ZERO);
        let mut probes = Vec::new();
        for root in roots.iter().take(100) {
            let key = SecretKey::generate().unwrap();
            let wrapped = kms.wrap_key(root, &key, &probe_context()).await.unwrap();
            probes.push((root.clone(), wrapped));
        }
        kms.set_latency(LATENCY);
        probes
    });

    // Open on a miss against one provider round trip, 100 at a time.
    let rounds = 50.min(zones_n / 100).max(1);
    let batch = 100.min(zones_n);
    let (miss, trip) = rt.block_on(async {
        let mut miss = Vec::new();
        let mut trip = Vec::new();
        for round in 0..rounds {
            let batch_ids = &ids[round * batch..(round + 1) * batch];
            for id in batch_ids {
                assert!(set.evict(*id));
            }
            let mut tasks = tokio::task::JoinSet::new();
            for id in batch_ids {
                let set = set.clone();
                let id = *id;
                tasks.spawn(async move {
                    let t = Instant::now();
                    set.get(id).await.map(drop).unwrap();
                    t.elapsed()
                });
            }
            while let Some(d) = tasks.join_next().await {
                miss.push(d.unwrap());
            }
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..batch {
                let kms = kms.clone();
                let (root, wrapped) = probes[(round * batch + i) % probes.len()].clone();
                tasks.spawn(async move {
                    let t = Instant::now();
                    kms.unwrap_key(&root, &wrapped, &probe_context())
                        .await
                        .unwrap();
                    t.elapsed()
                });
            }
            while let Some(d) = tasks.join_next().await {
                trip.push(d.unwrap());
            }
        }
        miss.sort();
        trip.sort();
        (miss, trip)
    });
    let (miss99, trip99) = (percentile(&miss, 0.99), percentile(&trip, 0.99));
    eprintln!(
        "open on a miss ({} samples, {batch} concurrent): p50 {}, p99 {}; \
         provider round trip: p50 {}, p99 {}; p99 over one round trip: {}",
        miss.len(),
        ms(percentile(&miss, 0.5)),
        ms(miss99),
        ms(percentile(&trip, 0.5)),
        ms(trip99),
        ms(miss99.saturating_sub(trip99)),
    );

    // One miss at a time: the set's own cost over the round trip, without
    // other opens competing for the CPU.
    let sequential = 200.min(zones_n.saturating_sub(rounds * batch));
    let (alone, alone_trip) = rt.block_on(async {
        let (mut alone, mut trip) = (Vec::new(), Vec::new());
        for (i, id) in ids[rounds * batch..rounds * batch + sequential]
            .iter()
            .enumerate()
        {
            assert!(set.evict(*id));
            let t = Instant::now();
            set.get(*id).await.map(drop).unwrap();
            alone.push(t.elapsed());
            let (root, wrapped) = &probes[i % probes.len()];
            let t = Instant::now();
            kms.unwrap_key(root, wrapped, &probe_context())
                .await
                .unwrap();
            trip.push(t.elapsed());
        }
        alone.sort();
        trip.sort();
        (alone, trip)
    });
    eprintln!(
        "open on a miss, one at a time ({} samples): p50 {}, p99 {}; provider round trip: p50 {}, \
         p99 {}; p99 over one round trip: {}",
        alone.len(),
        ms(percentile(&alone, 0.5)),
        ms(percentile(&alone, 0.99)),
        ms(percentile(&alone_trip, 0.5)),
        ms(percentile(&alone_trip, 0.99)),
        ms(percentile(&alone, 0.99).saturating_sub(percentile(&alone_trip, 0.99))),
    );

    // A hit, against the floor of cloning a handle.
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    {
        let mut g = c.benchmark_group("tenancy");
        let mut i = 0usize;
        g.bench_function("hit", |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                let zone = set.get(black_box(ids[i])).now_or_never();
                black_box(zone.expect("a hit completes at once").unwrap())
            })
        });
        let zone = set.get_if_open(ids[0]).unwrap();
        g.bench_function("zone_clone", |b| b.iter(|| black_box(zone.clone())));
        g.finish();
    }
    drop(set);

    if storm {
        restart_storm(&rt, &kms, &zones, &ids, STORM_RATE);
        // The account's quota 10% below the budget (others spend the
        // rest): the budget meets `Throttled` and must absorb it.
        let tight = env("CMEK_TENANCY_TIGHT_ZONES", 20_000).min(ids.len());
        restart_storm(&rt, &kms, &zones, &ids[..tight], STORM_RATE * 0.9);
    }
    c.final_summary();
}

/// Every zone reopened at once, as after a restart, through a budget of
/// 1,000 calls/s over a KMS that throttles above 1,000 calls/s.
fn restart_storm(
    rt: &tokio::runtime::Runtime,
    kms: &Arc<MockProvider>,
    zones: &Zones,
    ids: &[ZoneId],
    quota_rate: f64,
) {
    let quota = Arc::new(Quota::new(kms.clone(), quota_rate));
    let config = BudgetConfig {
        // The last of N zones waits N / rate seconds for its turn.
        max_wait: Duration::from_secs(600),
        ..BudgetConfig::with_rate(STORM_RATE)
    };
    let budget = BudgetedProvider::new(quota.clone(), config);
    let set = ZoneSet::new(
        Arc::new(Catalog {
            keyring: Keyring::new(budget.clone()),
            zones: zones.clone(),
        }),
        ZoneSetConfig::bounded(ids.len() + 1, u64::MAX),
    );
    kms.reset_calls();
    let started = Instant::now();
    let (errors, half, last, max_depth) = rt.block_on(async {
        let depth = Arc::new(AtomicU64::new(0));
        let sampler = {
            let budget = budget.clone();
            let depth = depth.clone();
            tokio::spawn(async move {
                loop {
                    depth.fetch_max(budget.queue_depth() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let set = set.clone();
            let id = *id;
            tasks.spawn(async move { set.get(id).await.map(drop) });
        }
        let mut errors: HashMap<String, usize> = HashMap::new();
        let (mut done, mut half) = (0, Duration::ZERO);
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined.unwrap() {
                let name = format!("{e:?}");
                let variant = name.split([' ', '{', '(']).next().unwrap_or("?").to_owned();
                *errors.entry(variant).or_default() += 1;
            }
            done += 1;
            if done == ids.len() / 2 {
                half = started.elapsed();
            }
        }
        let last = started.elapsed();
        sampler.abort();
        (errors, half, last, depth.load(Ordering::Relaxed))
    });
    let calls = kms.total_calls();
    eprintln!(
        "restart storm: {} zones at a budget of {STORM_RATE} calls/s, a KMS quota of {quota_rate} \
         calls/s: full service after {:.1} s \
         (half after {:.1} s); {calls} provider calls answered, {} throttled by the KMS and \
         retried by the budget; most calls queued {max_depth}; errors reaching callers: {}",
        ids.len(),
        last.as_secs_f64(),
        half.as_secs_f64(),
        quota.throttled.load(Ordering::Relaxed),
        if errors.is_empty() {
            "none".to_string()
        } else {
            format!("{errors:?}")
        }
    );
    assert_eq!(set.len(), ids.len() - errors.values().sum::<usize>());
}
