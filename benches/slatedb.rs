//! SlateDB, unmodified, on the encrypted object store against the same
//! store unencrypted, in the same run: what an engine's reads and writes
//! cost through cmek.
//!
//! A database of 20,000 keys (values of 10 B to 8 KiB, 80 MB in all) is
//! written, flushed and closed on each of three stores over each backend
//! (`InMemory`, `LocalFileSystem` in a temporary directory):
//!
//! * `plain`: the backend itself;
//! * `encrypted`: `EncryptedStore` at the zone's chunk size (64 KiB);
//! * `encrypted_slatedb`: `EncryptedStore` with `ChunkSizes::slatedb()`
//!   (SSTs in 1 KiB chunks), the setting docs/ENGINES.md recommends.
//!
//! Before measuring it prints, per store, what reading every key once
//! (a new `DbReader`, so a cold block cache, keys in a shuffled order)
//! fetched from the backend — bytes and GETs, counted under the
//! encryption — and the bytes stored, each as a ratio to `plain`.
//!
//! * `slatedb_read_every_key_{in_memory,local_fs}`: the time of that read
//!   (opening the reader is not timed).
//! * `slatedb_write_{in_memory,local_fs}`: 5,000 keys put into a new
//!   database and flushed, per store.
//!
//! `cargo bench --bench slatedb --features slatedb`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::StreamExt;
use object_store_014::local::LocalFileSystem;
use object_store_014::memory::InMemory;
use object_store_014::ObjectStore;
use slatedb::{Db, DbReader};

use cmek::object_store::v014::EncryptedStore;
use cmek::object_store::ChunkSizes;
use cmek::provider::LocalKeyProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec};

#[path = "counting_store/mod.rs"]
mod counting_store;
use counting_store::Counting;

/// Keys in the read benchmark's database.
const KEYS: usize = 20_000;
/// Keys each write-benchmark iteration puts.
const WRITE_KEYS: usize = 5_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn zone(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Zone {
    rt.block_on(async {
        let provider = LocalKeyProvider::create(dir.join("root.keys"), "local").unwrap();
        let root = provider.add_key("root").unwrap();
        Keyring::new(Arc::new(provider))
            .create_zone(
                Arc::new(MemoryManifestStore::new()),
                ZoneSpec::new("slatedb", "local", root),
            )
            .await
            .unwrap()
    })
}

fn key(i: usize) -> String {
    format!("key-{i:08}")
}

/// The value of key `i`: 10 B to 8 KiB, its length and bytes drawn from `i`.
fn value(i: usize) -> Vec<u8> {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..value_len(i))
        .map(|j| (h >> (j % 56)) as u8 ^ j as u8)
        .collect()
}

fn value_len(i: usize) -> usize {
    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    10 + (h >> 40) as usize % (8192 - 10 + 1)
}

/// `0..n` in an order drawn from a fixed seed.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

async fn write_db(store: Arc<dyn ObjectStore>, path: &str, keys: std::ops::Range<usize>) {
    let db = Db::builder(path, store).build().await.unwrap();
    let mut last = None;
    for i in keys {
        last = Some(db.put(key(i), value(i)).await.unwrap());
    }
    if let Some(handle) = last {
        handle.await_durable().await.unwrap();
    }
    db.flush().await.unwrap();
    db.close().await.unwrap();
}

/// Reads every key once through a new reader; returns the time the reads
/// took (not the open).
async fn read_every_key(store: Arc<dyn ObjectStore>, order: &[usize], check: bool) -> Duration {
    let reader = DbReader::builder("db", store).build().await.unwrap();
    let start = Instant::now();
    for &i in order {
        let got = reader
            .get(key(i))
            .await
            .unwrap()
            .expect("every key is there");
        if check {
            assert_eq!(got, Bytes::from(value(i)), "key {i}");
        } else {
            assert_eq!(got.len(), value_len(i));
        }
    }
    let took = start.elapsed();
    reader.close().await.unwrap();
    took
}

/// Bytes stored under the backend.
async fn stored(backend: &Arc<dyn ObjectStore>) -> u64 {
    backend
        .list(None)
        .fold(0u64, |n, m| async move { n + m.unwrap().size })
        .await
}

/// One database per store over one kind of backend.
struct Setup {
    name: &'static str,
    /// Under the counting store; kept for the stored-bytes sum.
    backend: Arc<dyn ObjectStore>,
    counting: Arc<Counting>,
    /// What SlateDB is handed.
    store: Arc<dyn ObjectStore>,
}

fn setups(
    rt: &tokio::runtime::Runtime,
    zone: &Zone,
    backend: &dyn Fn() -> Arc<dyn ObjectStore>,
) -> Vec<Setup> {
    let mut out = Vec::new();
    for name in ["plain", "encrypted", "encrypted_slatedb"] {
        let backend = backend();
        let counting = Arc::new(Counting::new(backend.clone()));
        let under: Arc<dyn ObjectStore> = counting.clone();
        let store: Arc<dyn ObjectStore> = match name {
            "plain" => under,
            "encrypted" => Arc::new(EncryptedStore::new(under, zone.clone())),
            _ => Arc::new(
                EncryptedStore::new(under, zone.clone()).with_chunk_sizes(ChunkSizes::slatedb()),
            ),
        };
        rt.block_on(write_db(store.clone(), "db", 0..KEYS));
        out.push(Setup {
            name,
            backend,
            counting,
            store,
        });
    }
    out
}

fn read_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, group: &str, setups: &[Setup]) {
    let order = shuffled(KEYS);
    let mut base: Option<(u64, u64, u64)> = None;
    for s in setups {
        let stored = rt.block_on(stored(&s.backend));
        s.counting.fetched.store(0, Ordering::SeqCst);
        s.counting.gets.store(0, Ordering::SeqCst);
        rt.block_on(read_every_key(s.store.clone(), &order, true));
        let fetched = s.counting.fetched.load(Ordering::SeqCst);
        let gets = s.counting.gets.load(Ordering::SeqCst);
        let (bf, bg, bs) = *base.get_or_insert((fetched, gets, stored));
        println!(
            "{group}/{}: read every key fetched {fetched} bytes ({:.3}x plain) in {gets} GETs \
             ({:.3}x); stored {stored} bytes ({:.4}x)",
            s.name,
            fetched as f64 / bf as f64,
            gets as f64 / bg as f64,
            stored as f64 / bs as f64,
        );
    }
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for s in setups {
        g.bench_function(s.name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| rt.block_on(read_every_key(s.store.clone(), &order, false)))
                    .sum()
            })
        });
    }
    g.finish();
}

fn write_bench(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    group: &str,
    zone: &Zone,
    backend: &dyn Fn() -> Arc<dyn ObjectStore>,
) {
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    for name in ["plain", "encrypted", "encrypted_slatedb"] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let inner = backend();
                    let store: Arc<dyn ObjectStore> = match name {
                        "plain" => inner,
                        "encrypted" => Arc::new(EncryptedStore::new(inner, zone.clone())),
                        _ => Arc::new(
                            EncryptedStore::new(inner, zone.clone())
                                .with_chunk_sizes(ChunkSizes::slatedb()),
                        ),
                    };
                    let start = Instant::now();
                    rt.block_on(write_db(store, "db", 0..WRITE_KEYS));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let zone = zone(&rt, dir.path());

    let in_memory = || Arc::new(InMemory::new()) as Arc<dyn ObjectStore>;
    let s = setups(&rt, &zone, &in_memory);
    read_bench(c, &rt, "slatedb_read_every_key_in_memory", &s);
    drop(s);

    let files = tempfile::tempdir().unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let local_fs = || {
        let sub = files
            .path()
            .join(next.fetch_add(1, Ordering::SeqCst).to_string());
        std::fs::create_dir_all(&sub).unwrap();
        Arc::new(LocalFileSystem::new_with_prefix(sub).unwrap()) as Arc<dyn ObjectStore>
    };
    let s = setups(&rt, &zone, &local_fs);
    read_bench(c, &rt, "slatedb_read_every_key_local_fs", &s);
    drop(s);

    write_bench(c, &rt, "slatedb_write_in_memory", &zone, &in_memory);
    write_bench(c, &rt, "slatedb_write_local_fs", &zone, &local_fs);
}

criterion_group!(slatedb_benches, benches);
criterion_main!(slatedb_benches);
