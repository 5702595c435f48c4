//! The encrypted object store (`object_store` 0.14) over `InMemory`,
//! against the same store unencrypted and the zone's one-shot calls.
//!
//! * `object_store_get_range`: 4 KiB at random offsets of a 1 GiB object:
//!   `EncryptedStore::get_range` at the zone's 64 KiB chunks and at 1 KiB
//!   chunks (`ChunkSizes`, as `ChunkSizes::slatedb` gives SSTs) against
//!   `InMemory`'s own `get_range` of the plaintext. Before measuring, it
//!   prints the bytes the encrypted store fetched from the inner store per
//!   range (counted by a wrapping store) and the stored bytes, against the
//!   plaintext's, and checks the fetch against the bound of the segment's
//!   prefix and the chunks a 4 KiB range can touch.
//! * `object_store_get_256MiB`: a whole-object streaming `get` (the
//!   stream's pieces consumed as they come) against the zone's one-shot
//!   `decrypt_segment` of the same stored bytes (a fresh 256 MiB buffer
//!   each time), `decrypt_segment_into` a buffer allocated once (the
//!   decryption floor), and the unencrypted store's `get`.
//! * `object_store_put_multipart_1GiB`: a 1 GiB object handed to
//!   `put_multipart` in 8 MiB pieces, encrypted against unencrypted, both
//!   into `InMemory` (whose `complete` copies the parts into one buffer),
//!   and encrypted into a store that drops every part (the adapter's own
//!   cost: sealing into fresh part buffers). Before measuring, it prints
//!   the peak heap growth of that last upload: the adapter's own buffers
//!   and the part in flight.
//!
//! `cargo bench --bench object_store --features object-store`

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::stream::{BoxStream, StreamExt};

use cmek::object_store::v014::EncryptedStore;
use cmek::object_store::{ChunkSizes, BLOCK_CHUNK_SIZE};
use cmek::provider::LocalKeyProvider;
use cmek::stream::Params;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec, SEGMENT_PREFIX_LEN};
use object_store_014::memory::InMemory;
use object_store_014::path::Path;
use object_store_014::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

#[allow(dead_code)]
#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;
#[path = "counting_store/mod.rs"]
mod counting_store;
use counting_store::Counting;

const GIB: usize = 1 << 30;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn zone(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Zone) {
    let dir = tempfile::tempdir().unwrap();
    let zone = rt.block_on(async {
        let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap();
        let root = provider.add_key("root").unwrap();
        Keyring::new(Arc::new(provider))
            .create_zone(
                Arc::new(MemoryManifestStore::new()),
                ZoneSpec::new("bench", "local", root),
            )
            .await
            .unwrap()
    });
    (dir, zone)
}

/// Plaintext of `len` bytes, cheap to make and not all equal.
fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect()
}

/// Random offsets for `len`-byte reads in `total` bytes (fixed seed).
fn offsets(total: usize, len: usize, n: usize) -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % (total - len) as u64
        })
        .collect()
}

fn get_range(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, zone) = zone(&rt);
    let plain = InMemory::new();
    let path = Path::from("bench/1GiB");
    let payload: Bytes = data(GIB).into();
    rt.block_on(plain.put(&path, payload.clone().into()))
        .unwrap();
    let block = Params::new(BLOCK_CHUNK_SIZE).unwrap();
    let mut stores = Vec::new();
    for (name, sizes) in [
        ("encrypted_4KiB_in_1GiB", ChunkSizes::default()),
        (
            "encrypted_4KiB_in_1GiB_1KiB_chunks",
            ChunkSizes::default().with_prefix("bench/", block),
        ),
    ] {
        let counting = Counting::new(Arc::new(InMemory::new()));
        let fetched = Arc::clone(&counting.fetched);
        let gets = Arc::clone(&counting.gets);
        let store = EncryptedStore::new(counting, zone.clone()).with_chunk_sizes(sizes);
        rt.block_on(store.put(&path, payload.clone().into()))
            .unwrap();
        let stored = rt.block_on(store.inner().head(&path)).unwrap().size;
        let chunk = rt
            .block_on(store.inner().get_range(&path, 0..SEGMENT_PREFIX_LEN as u64))
            .map(|prefix| {
                cmek::zone::SegmentHeader::parse(&prefix)
                    .unwrap()
                    .chunk_size()
            })
            .unwrap() as u64;

        let reads = offsets(GIB, 4096, 1000);
        fetched.store(0, Ordering::SeqCst);
        gets.store(0, Ordering::SeqCst);
        rt.block_on(async {
            for &at in &reads {
                black_box(store.get_range(&path, at..at + 4096).await.unwrap());
            }
        });
        let per_read = fetched.load(Ordering::SeqCst) as f64 / reads.len() as f64;
        let gets_per_read = gets.load(Ordering::SeqCst) as f64 / reads.len() as f64;
        // The chunks a 4 KiB range can touch, and the segment's prefix.
        let bound = SEGMENT_PREFIX_LEN as u64 + (4096u64.div_ceil(chunk - 16) + 1) * chunk;
        println!(
            "{name}: {chunk}-byte chunks; {per_read:.0} bytes fetched ({:.3}x the 4096 asked) \
             and {gets_per_read:.3} GETs per range on average over {} ranges (bound: prefix \
             {SEGMENT_PREFIX_LEN} + the chunks a range can touch = {bound} bytes); stored \
             {:.4}x the plaintext",
            per_read / 4096.0,
            reads.len(),
            stored as f64 / GIB as f64,
        );
        assert!(
            per_read <= bound as f64,
            "a range fetched more than its bound"
        );
        stores.push((name, store));
    }
    drop(payload);

    let mut g = c.benchmark_group("object_store_get_range");
    g.throughput(Throughput::Elements(1));
    for (name, store) in &stores {
        let reads = offsets(GIB, 4096, 1000);
        let mut i = 0usize;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = (i + 1) % reads.len();
                let at = reads[i];
                rt.block_on(store.get_range(&path, at..at + 4096)).unwrap()
            })
        });
    }
    let reads = offsets(GIB, 4096, 1000);
    let mut i = 0usize;
    g.bench_function("plain_4KiB_in_1GiB", |b| {
        b.iter(|| {
            i = (i + 1) % reads.len();
            let at = reads[i];
            rt.block_on(plain.get_range(&path, at..at + 4096)).unwrap()
        })
    });
    g.finish();
}

fn get_whole(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, zone) = zone(&rt);
    let len = 256 << 20;
    let store = EncryptedStore::new(InMemory::new(), zone.clone());
    let plain = InMemory::new();
    let path = Path::from("bench/256MiB");
    let payload: Bytes = data(len).into();
    rt.block_on(async {
        store.put(&path, payload.clone().into()).await.unwrap();
        plain.put(&path, payload.clone().into()).await.unwrap();
    });
    let stored = rt.block_on(async {
        store
            .inner()
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    });

    let mut g = c.benchmark_group("object_store_get_256MiB");
    g.throughput(Throughput::Bytes(len as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("encrypted_streaming_get", |b| {
        b.iter(|| rt.block_on(consume(store.get(&path))))
    });
    g.bench_function("zone_decrypt_segment_one_shot", |b| {
        b.iter(|| black_box(zone.decrypt_segment(path.as_ref(), &stored).unwrap()))
    });
    let mut reused = vec![0u8; len];
    g.bench_function("zone_decrypt_segment_into_reused_buffer", |b| {
        b.iter(|| {
            zone.decrypt_segment_into(path.as_ref(), &stored, &mut reused)
                .unwrap()
        })
    });
    g.bench_function("plain_streaming_get", |b| {
        b.iter(|| rt.block_on(consume(plain.get(&path))))
    });
    g.finish();
}

/// Reads a `get`'s stream to its end, piece by piece; returns its length.
async fn consume(
    get: impl std::future::Future<Output = object_store_014::Result<GetResult>>,
) -> usize {
    let mut body = get.await.unwrap().into_stream();
    let mut n = 0;
    while let Some(piece) = body.next().await {
        n += black_box(piece.unwrap()).len();
    }
    n
}

fn put_multipart(c: &mut Criterion) {
    let rt = runtime();
    let (_dir, zone) = zone(&rt);
    let piece: Bytes = data(8 << 20).into();
    let pieces = GIB / piece.len();

    // Peak heap growth of an encrypted 1 GiB upload into a store that
    // drops its parts: the adapter's part, its held-back chunk, and the
    // part in flight.
    let sink = EncryptedStore::new(Discard, zone.clone());
    let path = Path::from("bench/upload");
    let growth = counting_alloc::peak_during(|| {
        rt.block_on(async {
            let mut upload = sink.put_multipart(&path).await.unwrap();
            for _ in 0..pieces {
                upload.put_part(piece.clone().into()).await.unwrap();
            }
            upload.complete().await.unwrap();
        })
    });
    println!(
        "object_store_put_multipart: peak heap growth {:.1} MiB for a 1 GiB upload in 8 MiB \
         pieces (part size {} MiB)",
        growth as f64 / (1 << 20) as f64,
        cmek::object_store::DEFAULT_PART_SIZE >> 20
    );

    let store = EncryptedStore::new(InMemory::new(), zone);
    let plain = InMemory::new();
    let mut g = c.benchmark_group("object_store_put_multipart_1GiB");
    g.throughput(Throughput::Bytes(GIB as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("encrypted", |b| {
        b.iter(|| rt.block_on(upload(&store, &path, &piece, pieces)))
    });
    g.bench_function("plain", |b| {
        b.iter(|| rt.block_on(upload(&plain, &path, &piece, pieces)))
    });
    // The adapter's own cost: sealing into fresh parts that are dropped.
    g.bench_function("encrypted_into_discard", |b| {
        b.iter(|| rt.block_on(upload(&sink, &path, &piece, pieces)))
    });
    g.finish();
}

async fn upload(store: &dyn ObjectStore, path: &Path, piece: &Bytes, pieces: usize) {
    let mut upload = store.put_multipart(path).await.unwrap();
    for _ in 0..pieces {
        upload.put_part(piece.clone().into()).await.unwrap();
    }
    upload.complete().await.unwrap();
}

/// A store whose multipart uploads drop every part: only the writer's own
/// memory is left to measure.
#[derive(Debug)]
struct Discard;

impl std::fmt::Display for Discard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Discard")
    }
}

fn unsupported() -> object_store_014::Error {
    object_store_014::Error::NotImplemented {
        operation: "anything but a multipart upload".into(),
        implementer: "Discard".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for Discard {
    async fn put_opts(
        &self,
        _: &Path,
        _: PutPayload,
        _: PutOptions,
    ) -> object_store_014::Result<PutResult> {
        Err(unsupported())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store_014::Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(DiscardUpload))
    }

    async fn get_opts(&self, _: &Path, _: GetOptions) -> object_store_014::Result<GetResult> {
        Err(unsupported())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store_014::Result<Path>>,
    ) -> BoxStream<'static, object_store_014::Result<Path>> {
        locations
    }

    fn list(&self, _: Option<&Path>) -> BoxStream<'static, object_store_014::Result<ObjectMeta>> {
        futures_util::stream::empty().boxed()
    }

    async fn list_with_delimiter(&self, _: Option<&Path>) -> object_store_014::Result<ListResult> {
        Err(unsupported())
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store_014::Result<()> {
        Err(unsupported())
    }
}

#[derive(Debug)]
struct DiscardUpload;

#[async_trait::async_trait]
impl MultipartUpload for DiscardUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        drop(data);
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store_014::Result<PutResult> {
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store_014::Result<()> {
        Ok(())
    }
}

criterion_group!(benches, get_range, get_whole, put_multipart);
criterion_main!(benches);
