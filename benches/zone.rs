//! Zone costs per segment, and the zone's overhead over the raw stream.
//!
//! * `zone_segment`: setup of a new segment (DEK, wrap, header, stream
//!   header) as `encrypt_segment` of an empty body, and open (parse,
//!   unwrap, commitment, stream key) as `decrypt_segment` of it;
//! * `zone_rewrap`: `rewrap_header` of a header under EZK v1 to v2 — the
//!   crypto part of a rewrap, no I/O — one at a time and as a batch of
//!   1024 (`rewrap_headers`, one OS call for all nonces);
//! * `zone_vs_stream`: `encrypt_segment` against the stream engine's
//!   one-shot encryption of the same buffer, for 64 KiB and 8 MiB;
//! * `zone_lookup`: a 4 KiB read at a random offset of an 8 MiB segment in
//!   memory, the way a table cache serves a lookup: through one
//!   `OpenedSegment` shared by all lookups, against opening a fresh
//!   `segment_seekable` reader per lookup (header parse, DEK unwrap,
//!   commitment, stream key each time), a fresh `open_segment` per
//!   lookup, and one seekable reader reused by a single thread;
//! * `zone_into_64MiB`: a 64 MiB segment into a buffer the caller reuses
//!   (`encrypt_segment_into`, `decrypt_segment_into`) against the stream's
//!   `encrypt_into`/`decrypt_into` of the same buffer (the floor) and the
//!   allocating `encrypt_segment`/`decrypt_segment` (a fresh buffer each
//!   time: page faults and zero-fill).
//!
//! `cargo bench --bench zone`

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cmek::provider::LocalKeyProvider;
use cmek::stream;
use cmek::zone::{
    Keyring, MemoryManifestStore, Zone, ZoneSpec, SEGMENT_HEADER_LEN, SEGMENT_PREFIX_LEN,
};
use cmek::SecretKey;

fn zone() -> (tempfile::TempDir, Zone) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
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

fn segment(c: &mut Criterion) {
    let (_dir, zone) = zone();
    let mut g = c.benchmark_group("zone_segment");
    g.throughput(Throughput::Elements(1));
    g.bench_function("setup", |b| {
        b.iter(|| black_box(zone.encrypt_segment("collection/segment", b"").unwrap()))
    });
    let empty = zone.encrypt_segment("collection/segment", b"").unwrap();
    g.bench_function("open", |b| {
        b.iter(|| black_box(zone.decrypt_segment("collection/segment", &empty).unwrap()))
    });
    g.finish();
}

fn rewrap(c: &mut Criterion) {
    let (_dir, zone) = zone();
    let old = zone.encrypt_segment("collection/segment", b"body").unwrap();
    let header = &old[..SEGMENT_HEADER_LEN];
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(zone.rotate_ezk())
        .unwrap();
    let mut g = c.benchmark_group("zone_rewrap");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rewrap_header", |b| {
        b.iter(|| black_box(zone.rewrap_header("collection/segment", header).unwrap()))
    });
    // The batch form draws all nonces in one OS call.
    let batch: Vec<(&str, &[u8])> = vec![("collection/segment", header); 1024];
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("rewrap_headers_batch_1024", |b| {
        b.iter(|| black_box(zone.rewrap_headers(&batch).unwrap()))
    });
    g.finish();
}

fn versus_stream(c: &mut Criterion) {
    let (_dir, zone) = zone();
    let key = SecretKey::generate().unwrap();
    let mut g = c.benchmark_group("zone_vs_stream");
    for (size, label) in [(64 << 10, "64KiB"), (8 << 20, "8MiB")] {
        let data = vec![0x42u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("stream", label), &data, |b, d| {
            b.iter(|| black_box(stream::encrypt(&key, b"zone body aad", d).unwrap()))
        });
        g.bench_with_input(BenchmarkId::new("zone", label), &data, |b, d| {
            b.iter(|| black_box(zone.encrypt_segment("collection/segment", d).unwrap()))
        });
    }
    g.finish();
}

fn into_buffers(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let (_dir, zone) = zone();
    let key = SecretKey::generate().unwrap();
    let params = stream::Params::default();
    // The zone's calls use every core, as the baseline does.
    let threads = stream::Threads::Auto;
    let data = vec![0x42u8; LEN];
    let id = "collection/segment";
    let mut g = c.benchmark_group("zone_into_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);

    let mut body = vec![0u8; params.ciphertext_len(LEN as u64).unwrap() as usize];
    g.bench_function("encrypt/stream_encrypt_into", |b| {
        b.iter(|| stream::encrypt_into(&key, b"aad", params, &data, &mut body, threads).unwrap())
    });
    let mut segment = vec![0u8; zone.encrypted_len(LEN as u64).unwrap() as usize];
    g.bench_function("encrypt/zone_encrypt_segment_into", |b| {
        b.iter(|| zone.encrypt_segment_into(id, &data, &mut segment).unwrap())
    });
    g.bench_function("encrypt/zone_encrypt_segment", |b| {
        b.iter(|| black_box(zone.encrypt_segment(id, &data).unwrap()))
    });

    let mut plain = vec![0u8; LEN];
    g.bench_function("decrypt/stream_decrypt_into", |b| {
        b.iter(|| stream::decrypt_into(&key, b"aad", params, &body, &mut plain, threads).unwrap())
    });
    g.bench_function("decrypt/zone_decrypt_segment_into", |b| {
        b.iter(|| zone.decrypt_segment_into(id, &segment, &mut plain).unwrap())
    });
    g.bench_function("decrypt/zone_decrypt_segment", |b| {
        b.iter(|| black_box(zone.decrypt_segment(id, &segment).unwrap()))
    });
    g.finish();
}

/// A small xorshift for reproducible random offsets.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn lookup(c: &mut Criterion) {
    const LEN: usize = 8 << 20;
    const READ: usize = 4096;
    let (_dir, zone) = zone();
    let id = "collection/segment";
    let plain: Vec<u8> = (0..LEN).map(|i| (i as u8).wrapping_mul(151)).collect();
    let segment = zone.encrypt_segment(id, &plain).unwrap();
    let prefix = &segment[..SEGMENT_PREFIX_LEN];
    let len = segment.len() as u64;
    let span = (LEN - READ) as u64;
    let mut buf = [0u8; READ];
    let mut g = c.benchmark_group("zone_lookup");
    g.throughput(Throughput::Elements(1));

    let shared = Arc::new(zone.open_segment(id, prefix, len).unwrap());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    g.bench_function("shared_opened_segment", |b| {
        b.iter(|| {
            let at = rng.below(span);
            black_box(shared.read_at(&segment, at, &mut buf).unwrap())
        })
    });
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    g.bench_function("fresh_seekable_per_lookup", |b| {
        b.iter(|| {
            let at = rng.below(span);
            let mut r = zone
                .segment_seekable(id, Cursor::new(&segment[..]))
                .unwrap();
            black_box(r.read_at(at, &mut buf).unwrap())
        })
    });
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    g.bench_function("fresh_open_segment_per_lookup", |b| {
        b.iter(|| {
            let at = rng.below(span);
            let opened = zone.open_segment(id, prefix, len).unwrap();
            black_box(opened.read_at(&segment, at, &mut buf).unwrap())
        })
    });
    let mut reused = zone
        .segment_seekable(id, Cursor::new(&segment[..]))
        .unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    g.bench_function("reused_seekable_one_thread", |b| {
        b.iter(|| {
            let at = rng.below(span);
            black_box(reused.read_at(at, &mut buf).unwrap())
        })
    });
    g.finish();
    let at = 3 * LEN as u64 / 4;
    assert_eq!(shared.read_at(&segment, at, &mut buf).unwrap(), READ);
    assert_eq!(&buf[..], &plain[at as usize..at as usize + READ]);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = segment, rewrap, versus_stream, lookup, into_buffers
}
criterion_main!(benches);
