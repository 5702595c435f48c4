//! Cipher backends side by side: AES-256-GCM seal and open in place on
//! 64 KiB and 1 MiB buffers, and wrap/unwrap of a 32-byte key.
//!
//! Run with both backends compiled in, so each group shows the ratio:
//! `cargo bench --bench cipher --features rustcrypto`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use cmek::cipher::{Aes256Gcm, Backend, KeyWrapper};
use cmek::SecretKey;

const SIZES: [(usize, &str); 2] = [(64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];

fn seal<B: Backend>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let key = SecretKey::generate().unwrap();
    let aead = Aes256Gcm::<B>::new(&key);
    let nonce = [7u8; 12];
    for (size, label) in SIZES {
        let mut buf = vec![0x5au8; size];
        c.throughput(Throughput::Bytes(size as u64));
        c.bench_with_input(BenchmarkId::new(B::NAME, label), &size, |b, _| {
            b.iter(|| black_box(aead.seal_in_place(&nonce, b"", &mut buf).unwrap()))
        });
    }
}

fn open<B: Backend>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let key = SecretKey::generate().unwrap();
    let aead = Aes256Gcm::<B>::new(&key);
    let nonce = [7u8; 12];
    for (size, label) in SIZES {
        let original = vec![0x5au8; size];
        let mut sealed = original.clone();
        let tag = aead.seal_in_place(&nonce, b"", &mut sealed).unwrap();
        let mut buf = sealed.clone();
        c.throughput(Throughput::Bytes(size as u64));
        c.bench_with_input(BenchmarkId::new(B::NAME, label), &size, |b, _| {
            // Opening decrypts in place, so each iteration restores the
            // ciphertext first; the copy is measured too and is the same
            // for both backends.
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                aead.open_in_place(&nonce, b"", &mut buf, &tag).unwrap();
                black_box(&buf);
            })
        });
    }
}

fn wrap<B: Backend>(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let kek = SecretKey::generate().unwrap();
    let key = SecretKey::generate().unwrap();
    let wrapper = KeyWrapper::<B>::new(&kek);
    let aad = b"zone=bench;segment=1;ezk=1";
    let wrapped = wrapper.wrap(&key, aad).unwrap();
    c.throughput(Throughput::Elements(1));
    c.bench_function(BenchmarkId::new(B::NAME, "wrap"), |b| {
        // A run performs a few million wraps, far below the 2^32 limit.
        b.iter(|| black_box(wrapper.wrap(&key, aad)))
    });
    c.bench_function(BenchmarkId::new(B::NAME, "unwrap"), |b| {
        b.iter(|| black_box(wrapper.unwrap(&wrapped, aad).unwrap()))
    });
}

/// Drawing a 12-byte nonce from the OS, which every wrap does: on some
/// machines it costs more than the AES-GCM of a 32-byte key.
fn nonce_draw(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let mut nonce = [0u8; 12];
    c.throughput(Throughput::Elements(1));
    c.bench_function("os_nonce_12_bytes", |b| {
        b.iter(|| {
            cmek::cipher::fill_random(&mut nonce).unwrap();
            black_box(&nonce);
        })
    });
}

macro_rules! for_each_backend {
    ($f:ident, $group:expr) => {{
        #[cfg(feature = "aws-lc")]
        $f::<cmek::cipher::AwsLc>($group);
        #[cfg(feature = "rustcrypto")]
        $f::<cmek::cipher::RustCrypto>($group);
    }};
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("aes256gcm_seal");
    for_each_backend!(seal, &mut g);
    g.finish();
    let mut g = c.benchmark_group("aes256gcm_open");
    for_each_backend!(open, &mut g);
    g.finish();
    let mut g = c.benchmark_group("key_wrap");
    for_each_backend!(wrap, &mut g);
    nonce_draw(&mut g);
    g.finish();
}

criterion_group! {
    name = cipher;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cipher);
