//! The stream engine against its baselines, one group per comparison, all
//! in one run:
//!
//! * `encrypt_64MiB` / `decrypt_64MiB` — single thread, memory to memory,
//!   against a bare baseline written here: copy into a preallocated output
//!   and seal (open) independent 64 KiB chunks with the same
//!   `cmek::cipher::Aes256Gcm`, no header, no key derivation; and the same
//!   chunks sealed (opened) out of place, with no copy; and the blocking
//!   writer (reader) and, with feature `tokio`, the async writer in
//!   writes of 1 MiB and of 16 KiB;
//! * `vs_age_64MiB` — the `age` crate's streaming encryption (X25519
//!   recipient, ChaCha20-Poly1305 64 KiB chunks) against ours, single thread;
//! * `parallel_256MiB` — multi-threaded one-shot encryption against memcpy of
//!   the same buffer, and against the bare out-of-place seal on two threads
//!   (the ceiling of this machine's AES-GCM);
//! * `random_4KiB_read_1GiB` — latency of a 4 KiB `read_at` at a random
//!   offset of a 1 GiB stream (the bench also counts the chunks opened);
//! * `chunk_size` — encryption throughput and random-read latency per
//!   chunk size, the data behind the default;
//! * `aes_gcm_engines` — every AES-256-GCM engine compiled in
//!   (`cmek::engine`), sealing and opening one chunk of 4 KiB, 64 KiB and
//!   1 MiB in cache, and 64 MiB on two threads; the data behind the
//!   run-time choice (printed at the start of the group);
//! * `stream_engines_{encrypt,decrypt}_64MiB` — the one-shot stream on one
//!   thread with each engine forced and with the run-time choice (`auto_*`),
//!   beside `age`'s streaming writer.
//!
//! Run: `cargo bench --bench stream --features fuzzing` (add `tokio` for
//! the async writer in `encrypt_64MiB`)

use std::hint::black_box;
use std::io::{Cursor, Write};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use cmek::cipher::{Aes256Gcm, TAG_LEN};
use cmek::engine::{self, AesGcmEngine};
use cmek::stream::{self, DecryptingReader, EncryptingWriter, Params, SeekableReader, Threads};
use cmek::SecretKey;

const MIB: usize = 1 << 20;
const SEG: usize = 64 * 1024;

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(151)).collect()
}

fn key() -> SecretKey {
    SecretKey::from_slice(&[0x11; 32]).unwrap()
}

/// The one-shot encryption of `pt` under `p`, on every core, into a new
/// buffer: the input of the decryption benchmarks.
fn seal(p: Params, key: &SecretKey, pt: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; p.ciphertext_len(pt.len() as u64).unwrap() as usize];
    stream::encrypt_into(key, b"aad", p, pt, &mut out, Threads::Auto).unwrap();
    out
}

fn nonce(i: usize) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..8].copy_from_slice(&(i as u32).to_be_bytes());
    n
}

/// The bare baseline: copy each 64 KiB chunk's plaintext into place and
/// seal it there.
fn baseline_seal(aead: &Aes256Gcm, pt: &[u8], out: &mut [u8]) {
    for (i, (p, o)) in pt
        .chunks(SEG - TAG_LEN)
        .zip(out.chunks_mut(SEG))
        .enumerate()
    {
        let n = p.len();
        o[..n].copy_from_slice(p);
        let tag = aead.seal_in_place(&nonce(i), &[], &mut o[..n]).unwrap();
        o[n..n + TAG_LEN].copy_from_slice(&tag);
    }
}

/// The same chunks sealed out of place: each byte read once and written
/// once, no copy. Not the baseline the targets name, but the floor of what
/// any chunked AES-GCM can do here.
fn bare_seal_out_of_place(aead: &Aes256Gcm, pt: &[u8], out: &mut [u8]) {
    for (i, (p, o)) in pt
        .chunks(SEG - TAG_LEN)
        .zip(out.chunks_mut(SEG))
        .enumerate()
    {
        let n = p.len();
        let (body, tag) = o.split_at_mut(n);
        let t = aead.seal_into(&nonce(i), &[], p, body).unwrap();
        tag[..TAG_LEN].copy_from_slice(&t);
    }
}

fn bare_open_out_of_place(aead: &Aes256Gcm, ct: &[u8], out: &mut [u8]) {
    for (i, (c, o)) in ct
        .chunks(SEG)
        .zip(out.chunks_mut(SEG - TAG_LEN))
        .enumerate()
    {
        let n = c.len() - TAG_LEN;
        let tag: [u8; TAG_LEN] = c[n..].try_into().unwrap();
        aead.open_into(&nonce(i), &[], &c[..n], &tag, &mut o[..n])
            .unwrap();
    }
}

fn baseline_open(aead: &Aes256Gcm, ct: &[u8], out: &mut [u8]) {
    for (i, (c, o)) in ct
        .chunks(SEG)
        .zip(out.chunks_mut(SEG - TAG_LEN))
        .enumerate()
    {
        let n = c.len() - TAG_LEN;
        o[..n].copy_from_slice(&c[..n]);
        let tag: [u8; TAG_LEN] = c[n..].try_into().unwrap();
        aead.open_in_place(&nonce(i), &[], &mut o[..n], &tag)
            .unwrap();
    }
}

fn baseline_len(pt_len: usize) -> usize {
    pt_len + pt_len.div_ceil(SEG - TAG_LEN) * TAG_LEN
}

fn single_thread(c: &mut Criterion) {
    let size = 64 * MIB;
    let pt = data(size);
    let key = key();
    let aead = Aes256Gcm::new(&key);
    let p = Params::new(SEG).unwrap();
    let ct_len = p.ciphertext_len(size as u64).unwrap() as usize;

    let mut g = c.benchmark_group("encrypt_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(20);
    let mut out = vec![0u8; baseline_len(size)];
    g.bench_function("baseline_64KiB_chunks", |b| {
        b.iter(|| baseline_seal(&aead, black_box(&pt), &mut out))
    });
    g.bench_function("bare_out_of_place_64KiB_chunks", |b| {
        b.iter(|| bare_seal_out_of_place(&aead, black_box(&pt), &mut out))
    });
    let mut out = vec![0u8; ct_len];
    g.bench_function("cmek_encrypt_into_1_thread", |b| {
        b.iter(|| {
            stream::encrypt_into(&key, b"aad", p, black_box(&pt), &mut out, Threads::One).unwrap()
        })
    });
    let mut sink = vec![0u8; ct_len];
    g.bench_function("cmek_writer", |b| {
        b.iter(|| {
            let mut w = EncryptingWriter::new(Cursor::new(&mut sink[..]), &key, b"aad", p).unwrap();
            for chunk in pt.chunks(MIB) {
                w.write_all(chunk).unwrap();
            }
            w.finish().unwrap();
        })
    });
    #[cfg(feature = "tokio")]
    async_writer(&mut g, &key, p, &pt, &mut sink);
    g.finish();

    let mut g = c.benchmark_group("decrypt_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(20);
    let mut bct = vec![0u8; baseline_len(size)];
    baseline_seal(&aead, &pt, &mut bct);
    let mut out = vec![0u8; size];
    g.bench_function("baseline_64KiB_chunks", |b| {
        b.iter(|| baseline_open(&aead, black_box(&bct), &mut out))
    });
    g.bench_function("bare_out_of_place_64KiB_chunks", |b| {
        b.iter(|| bare_open_out_of_place(&aead, black_box(&bct), &mut out))
    });
    let ct = seal(p, &key, &pt);
    g.bench_function("cmek_decrypt_into_1_thread", |b| {
        b.iter(|| {
            stream::decrypt_into(&key, b"aad", p, black_box(&ct), &mut out, Threads::One).unwrap()
        })
    });
    g.bench_function("cmek_reader", |b| {
        b.iter(|| {
            let mut r = DecryptingReader::new(&ct[..], &key, b"aad", p);
            let mut at = 0;
            loop {
                let n = std::io::Read::read(&mut r, &mut out[at..]).unwrap();
                if n == 0 {
                    break;
                }
                at += n;
            }
            assert_eq!(at, size);
        })
    });
    g.finish();
}

/// The async writer into the same preallocated sink as `cmek_writer`,
/// on a current-thread runtime, in writes of 1 MiB and of 16 KiB (less
/// than a chunk, so every byte is buffered before it is sealed).
#[cfg(feature = "tokio")]
fn async_writer(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    key: &SecretKey,
    p: Params,
    pt: &[u8],
    sink: &mut [u8],
) {
    use stream::AsyncEncryptingWriter;
    use tokio::io::AsyncWriteExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (name, piece) in [
        ("cmek_async_writer", MIB),
        ("cmek_async_writer_16KiB_writes", 16 * 1024),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut w =
                        AsyncEncryptingWriter::new(Cursor::new(&mut sink[..]), key, b"aad", p)
                            .unwrap();
                    for chunk in pt.chunks(piece) {
                        w.write_all(chunk).await.unwrap();
                    }
                    w.shutdown().await.unwrap();
                })
            })
        });
    }
}

fn versus_age(c: &mut Criterion) {
    let size = 64 * MIB;
    let pt = data(size);
    let key = key();
    let p = Params::new(SEG).unwrap();
    let mut g = c.benchmark_group("vs_age_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let mut out = Vec::with_capacity(size + size / 1000 + 4096);
    g.bench_function("age_stream_writer", |b| {
        b.iter(|| {
            out.clear();
            let enc =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .unwrap();
            let mut w = enc.wrap_output(&mut out).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            w.finish().unwrap();
        })
    });
    let mut sink = Vec::with_capacity(p.ciphertext_len(size as u64).unwrap() as usize);
    g.bench_function("cmek_writer", |b| {
        b.iter(|| {
            sink.clear();
            let mut w = EncryptingWriter::new(&mut sink, &key, b"aad", p).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            w.finish().unwrap();
        })
    });
    g.finish();
}

fn parallel(c: &mut Criterion) {
    let size = 256 * MIB;
    let pt = data(size);
    let key = key();
    let p = Params::new(SEG).unwrap();
    let mut g = c.benchmark_group("parallel_256MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let mut out = vec![0u8; size];
    g.bench_function("memcpy", |b| b.iter(|| out.copy_from_slice(black_box(&pt))));
    drop(out);
    // The ceiling for any chunked AES-GCM on this machine: the bare
    // out-of-place seal of 64 KiB chunks, the buffer split between two
    // threads, no header, no key derivation, no bookkeeping.
    let aead = Aes256Gcm::new(&key);
    let mut out = vec![0u8; baseline_len(size)];
    g.bench_function("bare_out_of_place_2_threads", |b| {
        b.iter(|| {
            on_two_threads(black_box(&pt), &mut out, |p, o| {
                bare_seal_out_of_place(&aead, p, o)
            })
        })
    });
    drop(out);
    let mut out = vec![0u8; p.ciphertext_len(size as u64).unwrap() as usize];
    g.bench_function("cmek_encrypt_into_all_threads", |b| {
        b.iter(|| {
            stream::encrypt_into(&key, b"aad", p, black_box(&pt), &mut out, Threads::Auto).unwrap()
        })
    });
    g.bench_function("cmek_encrypt_into_1_thread", |b| {
        b.iter(|| {
            stream::encrypt_into(&key, b"aad", p, black_box(&pt), &mut out, Threads::One).unwrap()
        })
    });
    drop(out);
    g.bench_function("to_vec", |b| b.iter(|| black_box(pt.to_vec())));
    g.bench_function("cmek_encrypt_alloc_all_threads", |b| {
        b.iter(|| black_box(stream::encrypt(&key, b"aad", &pt).unwrap()))
    });
    g.finish();
}

/// A small xorshift for reproducible random offsets.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_read(c: &mut Criterion) {
    let size = 1024 * MIB;
    let key = key();
    let p = Params::new(SEG).unwrap();
    let ct = seal(p, &key, &data(size));
    let mut r = SeekableReader::new(Cursor::new(&ct[..]), &key, b"aad", p).unwrap();
    let mut g = c.benchmark_group("random_4KiB_read_1GiB");
    g.throughput(Throughput::Bytes(4096));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut buf = [0u8; 4096];
    let (mut reads, mut worst) = (0u64, 0u64);
    g.bench_function("cmek_read_at", |b| {
        b.iter(|| {
            let at = rng.next() % (size as u64 - 4096);
            let before = r.chunks_decrypted();
            let n = r.read_at(at, &mut buf).unwrap();
            let opened = r.chunks_decrypted() - before;
            worst = worst.max(opened);
            reads += 1;
            black_box(n)
        })
    });
    g.finish();
    eprintln!("random_4KiB_read_1GiB: {reads} reads, at most {worst} chunks opened per read");
    assert!(worst <= 2, "a 4 KiB read opened {worst} chunks");
}

fn chunk_sizes(c: &mut Criterion) {
    let size = 64 * MIB;
    let pt = data(size);
    let key = key();
    let sizes = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
    let mut g = c.benchmark_group("chunk_size_encrypt_64MiB_1_thread");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    for seg in sizes {
        let p = Params::new(seg).unwrap();
        let mut out = vec![0u8; p.ciphertext_len(size as u64).unwrap() as usize];
        g.bench_with_input(BenchmarkId::from_parameter(seg), &seg, |b, _| {
            b.iter(|| stream::encrypt_into(&key, b"aad", p, &pt, &mut out, Threads::One).unwrap())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("chunk_size_random_4KiB_read");
    g.throughput(Throughput::Bytes(4096));
    let ct_by_size: Vec<_> = sizes
        .iter()
        .map(|&seg| {
            let p = Params::new(seg).unwrap();
            (seg, p, seal(p, &key, &pt))
        })
        .collect();
    for (seg, p, ct) in &ct_by_size {
        let mut r = SeekableReader::new(Cursor::new(&ct[..]), &key, b"aad", *p).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 4096];
        g.bench_with_input(BenchmarkId::from_parameter(seg), seg, |b, _| {
            b.iter(|| {
                let at = rng.next() % (size as u64 - 4096);
                black_box(r.read_at(at, &mut buf).unwrap())
            })
        });
    }
    g.finish();
}

/// ring seals in place only: copy each chunk into the output, then seal
/// it there, as the bare baseline does with aws-lc-rs.
/// Runs `seal(pt, out)` on two threads, each on half the chunks.
fn on_two_threads(pt: &[u8], out: &mut [u8], seal: impl Fn(&[u8], &mut [u8]) + Sync) {
    let half = pt.len() / 2 / (SEG - TAG_LEN) * (SEG - TAG_LEN);
    let (p0, p1) = pt.split_at(half);
    let (o0, o1) = out.split_at_mut(baseline_len(half));
    std::thread::scope(|s| {
        s.spawn(|| seal(p1, o1));
        seal(p0, o0);
    });
}

/// Every AES-256-GCM engine compiled in, sealing and opening in place one
/// chunk of 4 KiB, 64 KiB and 1 MiB (in cache), side by side; and the 64
/// KiB chunks of 64 MiB on two threads, out of place, per engine.
fn aes_gcm_engines(c: &mut Criterion) {
    let key = key();
    println!(
        "run-time choice on this machine: {} ({})",
        engine::aes_gcm_engine(),
        engine::engine_choice().reason
    );
    let engines: Vec<(AesGcmEngine, Aes256Gcm)> = AesGcmEngine::compiled_in()
        .into_iter()
        .filter_map(|e| Aes256Gcm::on_engine(&key, e).ok().map(|a| (e, a)))
        .collect();
    let mut g = c.benchmark_group("aes_gcm_engines");
    for size in [4 * 1024, SEG, MIB] {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        for (engine, aead) in &engines {
            let label = format!("{}KiB", size / 1024);
            g.bench_with_input(
                BenchmarkId::new(format!("{engine}/seal"), &label),
                &size,
                |b, _| b.iter(|| black_box(aead.seal_in_place(&[0; 12], &[], &mut buf).unwrap())),
            );
            let tag = aead.seal_in_place(&[1; 12], &[], &mut buf).unwrap();
            let sealed = buf.clone();
            g.bench_with_input(
                BenchmarkId::new(format!("{engine}/open"), &label),
                &size,
                |b, _| {
                    b.iter(|| {
                        buf.copy_from_slice(&sealed);
                        aead.open_in_place(&[1; 12], &[], &mut buf, &tag).unwrap()
                    })
                },
            );
        }
    }
    let size = 64 * MIB;
    let pt = data(size);
    let mut out = vec![0u8; baseline_len(size)];
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    for (engine, aead) in &engines {
        g.bench_function(format!("{engine}/seal_2_threads_64MiB"), |b| {
            b.iter(|| {
                on_two_threads(black_box(&pt), &mut out, |p, o| {
                    bare_seal_out_of_place(aead, p, o)
                })
            })
        });
    }
    g.finish();
}

/// The 64 MiB single-thread one-shot stream, encrypt and decrypt, on each
/// engine forced in turn (aws-lc-rs alone is the build before the
/// run-time choice) and on the run-time choice, beside `age`'s streaming
/// writer on the same plaintext.
fn stream_engines(c: &mut Criterion) {
    let size = 64 * MIB;
    let pt = data(size);
    let key = key();
    let p = Params::new(SEG).unwrap();
    let ct_len = p.ciphertext_len(size as u64).unwrap() as usize;
    let mut choices: Vec<(String, Option<AesGcmEngine>)> = AesGcmEngine::compiled_in()
        .into_iter()
        .map(|e| (e.name().to_owned(), Some(e)))
        .collect();
    choices.push((format!("auto_{}", engine::aes_gcm_engine()), None));

    let mut g = c.benchmark_group("stream_engines_encrypt_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let mut out = vec![0u8; ct_len];
    for (name, choice) in &choices {
        if engine::set_aes_gcm_engine(*choice).is_err() {
            continue;
        }
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                stream::encrypt_into(&key, b"aad", p, black_box(&pt), &mut out, Threads::One)
                    .unwrap()
            })
        });
    }
    engine::set_aes_gcm_engine(None).unwrap();
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public();
    let mut age_out = Vec::with_capacity(size + size / 1000 + 4096);
    g.bench_function("age_stream_writer", |b| {
        b.iter(|| {
            age_out.clear();
            let enc =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .unwrap();
            let mut w = enc.wrap_output(&mut age_out).unwrap();
            w.write_all(black_box(&pt)).unwrap();
            w.finish().unwrap();
        })
    });
    g.finish();

    let mut g = c.benchmark_group("stream_engines_decrypt_64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let ct = seal(p, &key, &pt);
    let mut back = vec![0u8; size];
    for (name, choice) in &choices {
        if engine::set_aes_gcm_engine(*choice).is_err() {
            continue;
        }
        g.bench_function(name.as_str(), |b| {
            b.iter(|| {
                stream::decrypt_into(&key, b"aad", p, black_box(&ct), &mut back, Threads::One)
                    .unwrap()
            })
        });
    }
    engine::set_aes_gcm_engine(None).unwrap();
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = single_thread, versus_age, parallel, random_read, chunk_sizes, aes_gcm_engines, stream_engines
}
criterion_main!(benches);
