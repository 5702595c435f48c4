//! SlateDB, unmodified, on the encrypted object store (`object_store` 0.14):
//! over `InMemory`, `LocalFileSystem` and S3 (the moto test server). Writes
//! with flushes and compaction, a reopen through the zone's anchor, every
//! key, scans and deletes checked; no plaintext left in the inner store; a
//! tampered SST an error and never a hang under SlateDB's default settings;
//! transient faults of the inner store retried and recovered; a writer
//! killed with SIGKILL loses no acknowledged key.
#![cfg(feature = "object-store")]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmek::object_store::v014::{EncryptedStore, ObjectManifestStore};
use cmek::object_store::ChunkSizes;
use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, ManifestStore, Zone, ZoneAnchor, ZoneSpec};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store_014 as os;
use os::local::LocalFileSystem;
use os::memory::InMemory;
use os::path::Path;
use os::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    UploadPart,
};
use slatedb::config::{
    CompactionWorkerOptions, CompactorOptions, FlushOptions, FlushType, Settings,
};
use slatedb::db_cache::{CachedEntry, CachedKey, DbCache, SplitCache};
use slatedb::{Db, WriteBatch};

mod common;

#[path = "object_store/s3.rs"]
mod s3;

/// The database's path in every store.
const DB: &str = "db";

/// Text in every value of 11 bytes or more: found in a store that holds
/// plaintext.
const MARKER: &[u8] = b"cmek-plain-";

/// The start of every key's text.
const KEY_TEXT: &[u8] = b"key-0";

/// The encrypted store every test puts SlateDB on (the one place that
/// chooses its settings), as docs/ENGINES.md recommends: SSTs in
/// block-sized chunks.
fn encrypted_store(
    inner: Arc<dyn ObjectStore>,
    zone: Zone,
) -> EncryptedStore<Arc<dyn ObjectStore>> {
    EncryptedStore::new(inner, zone).with_chunk_sizes(ChunkSizes::slatedb())
}

fn key(i: usize) -> String {
    format!("key-{i:06}")
}

/// Key `i`'s value: 10 B to 8 KiB, `MARKER` and the key's number repeated.
fn value(i: usize) -> Vec<u8> {
    let len = 10 + (i * 7919) % 8183;
    let unit = format!("cmek-plain-{i:06}.");
    unit.bytes().cycle().take(len).collect()
}

/// Whether key `i` is deleted after it is written.
fn deleted(i: usize) -> bool {
    i % 7 == 3
}

/// Where a database's objects and its zone's manifest live, and the
/// directory of its root key file.
struct Backend {
    name: &'static str,
    inner: Arc<dyn ObjectStore>,
    manifest: Arc<dyn ManifestStore>,
    keys: tempfile::TempDir,
    _objects: Option<tempfile::TempDir>,
}

impl Backend {
    /// `InMemory`, the zone manifest an object beside the database.
    fn in_memory() -> Self {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        Self::with_object_manifest("InMemory", inner, None)
    }

    /// `LocalFileSystem` in a new directory, the zone manifest a file (a
    /// local directory has no conditional replace).
    fn local_files() -> Self {
        let objects = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let inner: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(objects.path()).unwrap());
        Self {
            name: "LocalFileSystem",
            inner,
            manifest: Arc::new(FileManifestStore::new(keys.path().join("zone.manifest"))),
            keys,
            _objects: Some(objects),
        }
    }

    /// A new bucket on the S3 test server, or `None` when the test may be
    /// skipped (see `common::endpoint`).
    fn s3() -> Option<Self> {
        let endpoint = common::endpoint()?;
        let inner: Arc<dyn ObjectStore> = Arc::new(s3::s3_store(&endpoint));
        Some(Self::with_object_manifest("S3", inner, None))
    }

    fn with_object_manifest(
        name: &'static str,
        inner: Arc<dyn ObjectStore>,
        objects: Option<tempfile::TempDir>,
    ) -> Self {
        let manifest = Arc::new(ObjectManifestStore::new(
            Arc::clone(&inner),
            Path::from("_cmek/zone"),
        ));
        Self {
            name,
            inner,
            manifest,
            keys: tempfile::tempdir().unwrap(),
            _objects: objects,
        }
    }

    /// Creates the database's zone on a new local root key; returns it and
    /// its anchor, which the caller keeps.
    async fn create_zone(&self) -> (Zone, ZoneAnchor) {
        let provider =
            LocalKeyProvider::create(self.keys.path().join("root.keys"), "local").unwrap();
        let root = provider.add_key("root").unwrap();
        let zone = Keyring::new(Arc::new(provider))
            .create_zone(Arc::clone(&self.manifest), ZoneSpec::new(DB, "local", root))
            .await
            .unwrap();
        let anchor = zone.anchor();
        (zone, anchor)
    }

    /// Opens the zone again as a restarted process would: a new key
    /// provider and keyring, the manifest checked against the anchor.
    async fn reopen_zone(&self, anchor: &ZoneAnchor) -> Zone {
        let provider = LocalKeyProvider::open(self.keys.path().join("root.keys")).unwrap();
        Keyring::new(Arc::new(provider))
            .open_zone(Arc::clone(&self.manifest), anchor)
            .await
            .unwrap()
    }
}

/// Settings that flush and compact a small database within a test: L0
/// tables of `l0_bytes` at most, short polls. Retries stay unbounded, as
/// by default.
fn busy_settings(l0_bytes: usize) -> Settings {
    Settings {
        flush_interval: Some(Duration::from_millis(10)),
        manifest_poll_interval: Duration::from_millis(100),
        l0_sst_size_bytes: l0_bytes,
        compactor_options: Some(CompactorOptions {
            poll_interval: Duration::from_millis(100),
            worker: Some(CompactionWorkerOptions {
                compactions_poll_interval: Duration::from_millis(100),
                // One output SST: above 10 MiB, SlateDB writes it as a
                // multipart upload.
                max_subcompactions: 1,
                ..CompactionWorkerOptions::default()
            }),
            ..CompactorOptions::default()
        }),
        ..Settings::default()
    }
}

/// Opens the database on `store` with SlateDB's default caches but for
/// blocks: indexes, filters and stats in [`MetaCache`], every block read
/// from the store.
async fn open_db(store: Arc<dyn ObjectStore>, settings: Settings) -> Db {
    let cache = SplitCache::new()
        .with_meta_cache(Some(Arc::new(MetaCache::default())))
        .build();
    Db::builder(DB, store)
        .with_settings(settings)
        .with_db_cache(Arc::new(cache), 0)
        .build()
        .await
        .unwrap()
}

/// SlateDB's index, filter and stats cache, standing in for its default
/// one (foyer, left out of the build): a map without bound, enough for a
/// test's database.
#[derive(Default)]
struct MetaCache(Mutex<HashMap<CachedKey, CachedEntry>>);

impl MetaCache {
    fn lookup(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
}

#[async_trait::async_trait]
impl DbCache for MetaCache {
    async fn get_block(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        self.lookup(key)
    }

    async fn get_index(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        self.lookup(key)
    }

    async fn get_filter(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        self.lookup(key)
    }

    async fn get_stats(&self, key: &CachedKey) -> Result<Option<CachedEntry>, slatedb::Error> {
        self.lookup(key)
    }

    async fn insert(&self, key: CachedKey, value: CachedEntry) {
        self.0.lock().unwrap().insert(key, value);
    }

    async fn remove(&self, key: &CachedKey) {
        self.0.lock().unwrap().remove(key);
    }

    fn entry_count(&self) -> u64 {
        self.0.lock().unwrap().len() as u64
    }
}

/// Writes keys `0..n` in batches of 100, in `l0s` memtable flushes (each
/// an L0 table), waits until a compaction has produced a sorted run,
/// deletes the keys [`deleted`] names, flushes and closes.
async fn write_compact_delete_close(store: Arc<dyn ObjectStore>, n: usize, l0s: usize) {
    let db = open_db(store, busy_settings(64 << 20)).await;
    let per_flush = n.div_ceil(l0s);
    for start in (0..n).step_by(per_flush) {
        let end = (start + per_flush).min(n);
        for batch in (start..end).step_by(100) {
            let mut writes = WriteBatch::new();
            for i in batch..(batch + 100).min(end) {
                writes.put(key(i), value(i));
            }
            db.write(writes).await.unwrap();
        }
        db.flush_with_options(FlushOptions {
            flush_type: FlushType::MemTable,
        })
        .await
        .unwrap();
    }
    wait_for(Duration::from_secs(30), "a compacted sorted run", || {
        !db.manifest().compacted().is_empty()
    })
    .await;
    let mut deletes = WriteBatch::new();
    for i in (0..n).filter(|&i| deleted(i)) {
        deletes.delete(key(i));
    }
    db.write(deletes).await.unwrap();
    db.flush_with_options(FlushOptions {
        flush_type: FlushType::MemTable,
    })
    .await
    .unwrap();
    db.close().await.unwrap();
}

/// Polls `done` every 50 ms until it holds; panics after `limit`.
async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "no {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every key of `0..n` through `get` (every `step`-th one), the whole
/// database and two ranges through `scan`: each exactly what was written,
/// deleted keys absent.
async fn verify(db: &Db, n: usize, step: usize) {
    for i in (0..n).step_by(step) {
        let got = db.get(key(i)).await.unwrap();
        if deleted(i) {
            assert_eq!(got, None, "{} was deleted", key(i));
        } else {
            assert_eq!(got.as_deref(), Some(&value(i)[..]), "{}", key(i));
        }
    }
    let live = |range: std::ops::Range<usize>| -> Vec<(Bytes, Bytes)> {
        range
            .filter(|&i| !deleted(i))
            .map(|i| (Bytes::from(key(i)), Bytes::from(value(i))))
            .collect()
    };
    assert_eq!(scan(db, ..).await, live(0..n), "full scan");
    let (a, b) = (n / 5, n / 2);
    assert_eq!(scan(db, key(a)..key(b)).await, live(a..b), "range scan");
    assert_eq!(
        scan(db, key(a)..=key(b)).await,
        live(a..b + 1),
        "inclusive range scan"
    );
}

async fn scan<R>(db: &Db, range: R) -> Vec<(Bytes, Bytes)>
where
    R: std::ops::RangeBounds<String> + Send,
{
    let bounds = (
        range.start_bound().map(|k| Bytes::from(k.clone())),
        range.end_bound().map(|k| Bytes::from(k.clone())),
    );
    let mut iter = db
        .scan::<(std::ops::Bound<Bytes>, std::ops::Bound<Bytes>)>(bounds)
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(kv) = iter.next().await.unwrap() {
        out.push((kv.key, kv.value));
    }
    out
}

/// How many objects of `store` hold `MARKER` and how many hold key text.
async fn plaintext_hits(store: &dyn ObjectStore) -> (usize, usize) {
    let objects: Vec<ObjectMeta> = store.list(None).try_collect().await.unwrap();
    assert!(!objects.is_empty());
    let (mut markers, mut keys) = (0, 0);
    for meta in objects {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        markers += usize::from(contains(&bytes, MARKER));
        keys += usize::from(contains(&bytes, KEY_TEXT));
    }
    (markers, keys)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(at, _)| haystack[at..].starts_with(needle))
}

/// The whole run on one backend: write, compact, delete, close; reopen
/// through the anchor with default settings; verify; no plaintext stored.
async fn round_trip(backend: Backend, n: usize, get_step: usize) {
    let started = Instant::now();
    let (zone, anchor) = backend.create_zone().await;
    let store = Arc::new(encrypted_store(Arc::clone(&backend.inner), zone));
    write_compact_delete_close(store, n, 4).await;
    eprintln!("{}: written in {:?}", backend.name, started.elapsed());

    let zone = backend.reopen_zone(&anchor).await;
    let store = Arc::new(encrypted_store(Arc::clone(&backend.inner), zone));
    let db = open_db(store.clone(), Settings::default()).await;
    verify(&db, n, get_step).await;
    db.close().await.unwrap();
    eprintln!("{}: verified at {:?}", backend.name, started.elapsed());

    // A read-only reader on the same store sees the same database.
    let reader = slatedb::DbReader::builder(DB, store as Arc<dyn ObjectStore>)
        .build()
        .await
        .unwrap();
    for i in (0..n).step_by(97) {
        let got = reader.get(key(i)).await.unwrap();
        let want = (!deleted(i)).then(|| value(i));
        assert_eq!(got.as_deref(), want.as_deref(), "reader: {}", key(i));
    }
    reader.close().await.unwrap();

    assert_eq!(
        plaintext_hits(backend.inner.as_ref()).await,
        (0, 0),
        "{}: objects with plaintext markers, objects with key text",
        backend.name
    );
    eprintln!("{}: {n} keys in {:?}", backend.name, started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slatedb_over_in_memory() {
    round_trip(Backend::in_memory(), 4000, 1).await;
}

/// Every key is checked by the scans and every fifth by `get` (each a
/// file read on the blocking pool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slatedb_over_local_files() {
    round_trip(Backend::local_files(), 3000, 5).await;
}

/// On S3 every key is checked by the scans and every tenth by `get`
/// (without a block cache each `get` is a GET on the test server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slatedb_over_s3() {
    let Some(backend) = Backend::s3() else {
        return;
    };
    round_trip(backend, 1000, 10).await;
}

/// The plaintext check can fail: the same database on the plain store
/// leaves its values and keys readable there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_store_control_holds_plaintext() {
    let plain: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    write_compact_delete_close(Arc::clone(&plain), 1000, 4).await;
    let (markers, keys) = plaintext_hits(plain.as_ref()).await;
    assert!(markers > 0 && keys > 0, "{markers} {keys}");
}

// ---------------------------------------------------------------------
// A tampered SST under SlateDB's default settings (retries unbounded).
// ---------------------------------------------------------------------

/// How long a read may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);

/// Writes and compacts a database, flips one byte in the middle of a live
/// SST of its sorted run in the inner store, reopens it with
/// `Settings::default()` and reads every key: one read must fail within a
/// second, and none may return wrong data or hang.
async fn tampered_sst_is_an_error(backend: Backend) {
    let n = 1500;
    let (zone, anchor) = backend.create_zone().await;
    let store = Arc::new(encrypted_store(Arc::clone(&backend.inner), zone));
    let db = open_db(store.clone(), busy_settings(64 << 20)).await;
    for l0 in (0..n).step_by(n / 4) {
        let mut writes = WriteBatch::new();
        for i in l0..l0 + n / 4 {
            writes.put(key(i), value(i));
        }
        db.write(writes).await.unwrap();
        db.flush_with_options(FlushOptions {
            flush_type: FlushType::MemTable,
        })
        .await
        .unwrap();
    }
    wait_for(Duration::from_secs(30), "compaction of every L0", || {
        let m = db.manifest();
        m.l0().is_empty() && !m.compacted().is_empty()
    })
    .await;
    let run = db.manifest().compacted()[0].clone();
    db.close().await.unwrap();

    // The largest SST of the sorted run: one byte flipped mid-way.
    let view = run
        .sst_views()
        .iter()
        .max_by_key(|v| v.sst.info.filter_offset)
        .unwrap();
    let sst = Path::from(format!("{DB}/compacted/{}.sst", view.sst.id.value()));
    let mut bytes = backend
        .inner
        .get(&sst)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    backend.inner.put(&sst, bytes.into()).await.unwrap();

    let zone = backend.reopen_zone(&anchor).await;
    let store = Arc::new(encrypted_store(Arc::clone(&backend.inner), zone));
    let db = open_db(store, Settings::default()).await;
    let mut failed = None;
    for i in 0..n {
        let start = Instant::now();
        match tokio::time::timeout(HANG, db.get(key(i))).await {
            Err(_) => panic!(
                "{}: reading {} hung (no answer in {HANG:?}) on a tampered SST",
                backend.name,
                key(i)
            ),
            Ok(Ok(got)) => assert_eq!(got.as_deref(), Some(&value(i)[..]), "{}", key(i)),
            Ok(Err(e)) => {
                failed = Some((i, start.elapsed(), e));
                break;
            }
        }
    }
    let (i, took, err) = failed.unwrap_or_else(|| panic!("{}: no read failed", backend.name));
    eprintln!("{}: {} failed after {took:?}: {err}", backend.name, key(i));
    assert!(
        took < Duration::from_secs(1),
        "{}: the error took {took:?}",
        backend.name
    );
    assert!(
        cmek_error_in(&err).is_some(),
        "{}: not a cmek error: {err:?}",
        backend.name
    );
}

/// The `cmek::Error` among `err`'s sources (looking inside `io::Error`s).
fn cmek_error_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a cmek::Error> {
    let mut err = err;
    loop {
        if let Some(e) = err.downcast_ref::<cmek::Error>() {
            return Some(e);
        }
        err = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => err.source()?,
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_sst_is_an_error_over_in_memory() {
    tampered_sst_is_an_error(Backend::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_sst_is_an_error_over_local_files() {
    tampered_sst_is_an_error(Backend::local_files()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_sst_is_an_error_over_s3() {
    let Some(backend) = Backend::s3() else {
        return;
    };
    tampered_sst_is_an_error(backend).await;
}

// ---------------------------------------------------------------------
// Faults of the inner store, on a deterministic seeded schedule.
// ---------------------------------------------------------------------

/// A fault the flaky store injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fault {
    /// The call waits, then fails as a timed-out request; nothing written.
    Timeout,
    /// The call fails at once as a 503 would; nothing written.
    Unavailable,
    /// A GET's body ends half-way with a connection error.
    ShortBody,
    /// A PUT is applied, then its answer is lost (a timeout).
    LostReply,
    /// A multipart upload's part fails.
    FailedPart,
}

/// The calls of one kind and the faults they may get.
struct Class {
    menu: &'static [Fault],
    /// One call in `one_in` faults.
    one_in: u64,
    calls: AtomicU64,
    faults: AtomicU64,
}

impl Class {
    const fn new(menu: &'static [Fault], one_in: u64) -> Self {
        Self {
            menu,
            one_in,
            calls: AtomicU64::new(0),
            faults: AtomicU64::new(0),
        }
    }
}

/// Which call faults, a function of the seed and the call's number in its
/// class alone; at most `budget` faults per class, each from its menu in
/// turn.
struct Schedule {
    seed: u64,
    budget: u64,
    gets: Class,
    puts: Class,
    parts: Class,
    injected: Mutex<Vec<(Fault, String)>>,
}

impl Schedule {
    fn new(seed: u64, budget: u64) -> Self {
        Self {
            seed,
            budget,
            gets: Class::new(&[Fault::Timeout, Fault::Unavailable, Fault::ShortBody], 8),
            puts: Class::new(&[Fault::Timeout, Fault::Unavailable, Fault::LostReply], 6),
            parts: Class::new(&[Fault::FailedPart], 5),
            injected: Mutex::new(Vec::new()),
        }
    }

    fn next(&self, class: &Class, salt: u64, what: &Path) -> Option<Fault> {
        let n = class.calls.fetch_add(1, Ordering::Relaxed);
        if !splitmix64(self.seed ^ salt ^ n.wrapping_mul(0x9e37_79b9)).is_multiple_of(class.one_in)
        {
            return None;
        }
        let k = class.faults.fetch_add(1, Ordering::Relaxed);
        if k >= self.budget {
            return None;
        }
        let fault = class.menu[k as usize % class.menu.len()];
        self.injected
            .lock()
            .unwrap()
            .push((fault, what.to_string()));
        Some(fault)
    }

    fn count(&self, fault: Fault) -> usize {
        let injected = self.injected.lock().unwrap();
        injected.iter().filter(|(f, _)| *f == fault).count()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A transient error as an HTTP store reports one.
fn transient(what: &str) -> os::Error {
    let kind = if what.contains("timed out") {
        std::io::ErrorKind::TimedOut
    } else {
        std::io::ErrorKind::Other
    };
    os::Error::Generic {
        store: "flaky",
        source: Box::new(std::io::Error::new(kind, what.to_owned())),
    }
}

const TIMEOUT: &str = "request timed out";
const UNAVAILABLE: &str = "HTTP status server error (503 Service Unavailable)";
const CUT: &str = "connection closed before message completed";

/// An inner store whose calls fail now and then, as `Schedule` says.
#[derive(Debug)]
struct Flaky {
    inner: Arc<dyn ObjectStore>,
    schedule: Arc<Schedule>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("seed", &self.seed)
            .finish()
    }
}

impl std::fmt::Display for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> os::Result<PutResult> {
        match self.schedule.next(&self.schedule.puts, 1, location) {
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err(transient(TIMEOUT))
            }
            Some(Fault::LostReply) => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(transient(TIMEOUT))
            }
            Some(_) => Err(transient(UNAVAILABLE)),
            None => self.inner.put_opts(location, payload, opts).await,
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> os::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FlakyUpload {
            inner,
            location: location.clone(),
            schedule: Arc::clone(&self.schedule),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> os::Result<GetResult> {
        let head = options.head;
        match self.schedule.next(&self.schedule.gets, 2, location) {
            None => self.inner.get_opts(location, options).await,
            Some(Fault::Timeout) => {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Err(transient(TIMEOUT))
            }
            Some(Fault::ShortBody) if !head => {
                let result = self.inner.get_opts(location, options).await?;
                let (meta, range, attributes, extensions) = (
                    result.meta.clone(),
                    result.range.clone(),
                    result.attributes.clone(),
                    result.extensions.clone(),
                );
                let body = result.bytes().await?;
                let half = body.slice(..body.len() / 2);
                let payload = futures_util::stream::iter([Ok(half), Err(transient(CUT))]).boxed();
                Ok(GetResult {
                    payload: GetResultPayload::Stream(payload),
                    meta,
                    range,
                    attributes,
                    extensions,
                })
            }
            Some(_) => Err(transient(UNAVAILABLE)),
        }
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, os::Result<Path>>,
    ) -> BoxStream<'static, os::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, os::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> os::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> os::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A multipart upload whose parts fail now and then.
#[derive(Debug)]
struct FlakyUpload {
    inner: Box<dyn MultipartUpload>,
    location: Path,
    schedule: Arc<Schedule>,
}

#[async_trait::async_trait]
impl MultipartUpload for FlakyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.schedule.next(&self.schedule.parts, 3, &self.location) {
            Some(_) => Box::pin(async { Err(transient(UNAVAILABLE)) }),
            None => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> os::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> os::Result<()> {
        self.inner.abort().await
    }
}

/// Runs `f` and fails the test if it takes longer than `limit`.
async fn bounded<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {limit:?}"))
}

/// SlateDB on the encrypted store over a flaky `InMemory`: timeouts, 503s,
/// bodies that end early, answers lost after a write, failed multipart
/// parts. Every fault is retried and recovered: the database closes,
/// reopens clean over the same objects without faults, and holds every
/// key, each with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_recovered() {
    let seed = 0x5eed_c0de;
    let schedule = Arc::new(Schedule::new(seed, 12));
    let backend = Backend::in_memory();
    let flaky: Arc<dyn ObjectStore> = Arc::new(Flaky {
        inner: Arc::clone(&backend.inner),
        schedule: Arc::clone(&schedule),
    });
    let (zone, anchor) = backend.create_zone().await;
    // Parts of 1 MiB, so that an SST above SlateDB's 10 MiB multipart
    // threshold is an upload of many parts.
    let store: Arc<dyn ObjectStore> =
        Arc::new(encrypted_store(Arc::clone(&flaky), zone).with_part_size(1 << 20));

    // About 12 MiB in four L0 tables, compacted into one SST written as a
    // multipart upload.
    let n = 3000;
    bounded(Duration::from_secs(60), "writing under faults", async {
        write_compact_delete_close(Arc::clone(&store), n, 4).await;
        let db = open_db(Arc::clone(&store), Settings::default()).await;
        verify(&db, n, 3).await;
        db.close().await.unwrap();
    })
    .await;

    let injected = schedule.injected.lock().unwrap().len();
    eprintln!(
        "seed {seed:#x}: {injected} faults: {} timeouts, {} 503s, {} short bodies, {} lost replies, {} failed parts",
        schedule.count(Fault::Timeout),
        schedule.count(Fault::Unavailable),
        schedule.count(Fault::ShortBody),
        schedule.count(Fault::LostReply),
        schedule.count(Fault::FailedPart),
    );
    for fault in [
        Fault::Timeout,
        Fault::Unavailable,
        Fault::ShortBody,
        Fault::LostReply,
        Fault::FailedPart,
    ] {
        assert!(schedule.count(fault) > 0, "no {fault:?} was injected");
    }

    // Reopened clean: the same objects without faults, the zone through
    // its anchor.
    let zone = backend.reopen_zone(&anchor).await;
    let store = Arc::new(encrypted_store(Arc::clone(&backend.inner), zone));
    let db = open_db(store, Settings::default()).await;
    bounded(
        Duration::from_secs(30),
        "reading after faults",
        verify(&db, n, 1),
    )
    .await;
    db.close().await.unwrap();
}

// ---------------------------------------------------------------------
// SIGKILL during writes on LocalFileSystem.
// ---------------------------------------------------------------------

/// The environment variable naming the directory the child writer works
/// in (its objects, zone manifest, anchor and root key file).
const CHILD_DIR: &str = "CMEK_SLATEDB_CHILD_DIR";

/// The most keys the child writes before it stops by itself.
const CHILD_KEYS: usize = 20_000;

/// A database on the encrypted store over `dir/objects`, its zone opened
/// through the anchor in `dir/anchor`.
async fn open_local_db(dir: &std::path::Path, settings: Settings) -> Db {
    let anchor: ZoneAnchor = std::fs::read_to_string(dir.join("anchor"))
        .unwrap()
        .parse()
        .unwrap();
    let provider = LocalKeyProvider::open(dir.join("root.keys")).unwrap();
    let zone = Keyring::new(Arc::new(provider))
        .open_zone(
            Arc::new(FileManifestStore::new(dir.join("zone.manifest"))),
            &anchor,
        )
        .await
        .unwrap();
    let inner: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.join("objects")).unwrap());
    open_db(Arc::new(encrypted_store(inner, zone)), settings).await
}

/// The child process of `sigkill_during_writes_loses_no_acknowledged_key`:
/// writes keys in batches of ten, and prints `ack KEY` for each key once
/// its write is durable, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of sigkill_during_writes_loses_no_acknowledged_key"]
async fn sigkill_child_writer() {
    use std::io::Write;
    let dir = std::env::var_os(CHILD_DIR).expect(
        "run by sigkill_during_writes_loses_no_acknowledged_key, which sets CMEK_SLATEDB_CHILD_DIR",
    );
    let db = open_local_db(std::path::Path::new(&dir), busy_settings(1 << 20)).await;
    let mut out = std::io::stdout().lock();
    for batch in (0..CHILD_KEYS).step_by(10) {
        let mut writes = WriteBatch::new();
        for i in batch..batch + 10 {
            writes.put(key(i), value(i));
        }
        db.write(writes)
            .await
            .unwrap()
            .await_durable()
            .await
            .unwrap();
        for i in batch..batch + 10 {
            writeln!(out, "ack {}", key(i)).unwrap();
        }
        out.flush().unwrap();
    }
}

/// A writer on the encrypted store over `LocalFileSystem` is killed with
/// SIGKILL at a seeded point while it writes, flushes L0 tables and
/// compacts; reopened through the zone's anchor, the database holds every
/// key whose write was acknowledged as durable, and every key it holds has
/// its own value.
#[test]
fn sigkill_during_writes_loses_no_acknowledged_key() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap();
        let root = provider.add_key("root").unwrap();
        let zone = Keyring::new(Arc::new(provider))
            .create_zone(
                Arc::new(FileManifestStore::new(dir.path().join("zone.manifest"))),
                ZoneSpec::new(DB, "local", root),
            )
            .await
            .unwrap();
        std::fs::write(dir.path().join("anchor"), zone.anchor().to_string()).unwrap();
        std::fs::create_dir(dir.path().join("objects")).unwrap();
    });

    // Killed after 1,000 to 1,999 acknowledged keys (4 to 8 MiB: several
    // L0 tables, compaction under way).
    let kill_after = 1000 + (splitmix64(0x51_6b11) % 1000) as usize;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "sigkill_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(k) = line.strip_prefix("ack ") {
                if tx.send(k.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acked = Vec::new();
    while acked.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(k) => acked.push(k),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!(
                    "{} keys acknowledged, then {e:?}; the child: {status}",
                    acked.len()
                );
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "{status}");
    // Keys acknowledged before the kill still in the pipe count too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());

    rt.block_on(async {
        let db = open_local_db(dir.path(), Settings::default()).await;
        for k in &acked {
            let i: usize = k["key-".len()..].parse().unwrap();
            let got = db.get(k).await.unwrap();
            assert_eq!(got.as_deref(), Some(&value(i)[..]), "acknowledged {k}");
        }
        let all = scan(&db, ..).await;
        for (i, (k, v)) in all.iter().enumerate() {
            assert_eq!(k, key(i).as_bytes(), "keys are written in order");
            assert_eq!(v, &value(i)[..], "{}", key(i));
        }
        eprintln!(
            "killed after {} acknowledged keys; {} keys after reopening",
            acked.len(),
            all.len()
        );
        db.close().await.unwrap();
    });
}
