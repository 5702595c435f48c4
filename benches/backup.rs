//! Restore costs: the same backup of 256 segments of 1 MiB restored by
//! rewrapping (DEKs rewrapped, bodies copied and authenticated on the way)
//! and by re-encryption (every segment decrypted and encrypted under a
//! fresh DEK), on one thread and on the default thread count, with a
//! plaintext restore and a bare copy of the bundle's files (read, write,
//! fsync each, rename; one thread) as baselines, all in one run.
//!
//! `cargo bench --bench backup` (`CMEK_BENCH_SEGMENTS=n` for another
//! count; `CMEK_BENCH_DIR=/dev/shm` to work on a memory file system, where
//! fsync costs nothing and the restores' own work shows)
//!
//! Every restore goes to a fresh directory, removed after the timed part.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use cmek::backup::{create_backup, Bundle, Restore, SourceTrust, SEGMENTS_DIR};
use cmek::provider::LocalKeyProvider;
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};

const SEGMENT_LEN: usize = 1 << 20;

struct Setup {
    dir: tempfile::TempDir,
    keyring: Arc<Keyring>,
    provider: Arc<LocalKeyProvider>,
    bundle: Bundle,
    rt: tokio::runtime::Runtime,
}

fn setup(segments: usize) -> Setup {
    let dir = match std::env::var_os("CMEK_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let provider =
        Arc::new(LocalKeyProvider::create(dir.path().join("root.keys"), "local").unwrap());
    let old_root = provider.add_key("backed-up").unwrap();
    provider.add_key("new").unwrap();
    let keyring = Keyring::new(provider.clone());
    let zone = rt
        .block_on(keyring.create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("bench", "local", old_root),
        ))
        .unwrap();
    let src = dir.path().join("zone");
    std::fs::create_dir_all(&src).unwrap();
    let data: Vec<u8> = (0..SEGMENT_LEN).map(|i| (i % 251) as u8).collect();
    let files: Vec<(String, PathBuf)> = (0..segments)
        .map(|i| {
            let id = format!("collection/{i:06}");
            let path = src.join(i.to_string());
            std::fs::write(&path, zone.encrypt_segment(&id, &data).unwrap()).unwrap();
            (id, path)
        })
        .collect();
    let bundle = create_backup(&zone.manifest(), files, dir.path().join("backup"), |_| {}).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    Setup {
        dir,
        keyring,
        provider,
        bundle,
        rt,
    }
}

impl Setup {
    /// Times `iters` runs of `f`, each into a fresh directory removed after
    /// it is timed.
    fn time(&self, iters: u64, mut f: impl FnMut(&Path)) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let dest = self.dir.path().join("dest");
            let start = Instant::now();
            f(&dest);
            total += start.elapsed();
            std::fs::remove_dir_all(&dest).unwrap();
        }
        total
    }

    fn trust(&self) -> SourceTrust {
        SourceTrust::roots([self.provider.key_ref("backed-up")])
    }

    fn spec(&self) -> ZoneSpec {
        ZoneSpec::new("restored", "local", self.provider.key_ref("new"))
    }
}

/// Copies every segment file of the bundle as a restore writes one: to a
/// temporary name, fsync, rename, fsync of the directory.
fn copy_files(bundle: &Bundle, dest: &Path) {
    let out = dest.join(SEGMENTS_DIR);
    std::fs::create_dir_all(&out).unwrap();
    for seg in bundle.manifest().segments() {
        let tmp = out.join(".partial");
        std::fs::copy(bundle.segment_path(&seg.segment_id), &tmp).unwrap();
        std::fs::File::open(&tmp).unwrap().sync_all().unwrap();
        std::fs::rename(&tmp, out.join(seg.segment_id.replace('/', "%2F"))).unwrap();
        std::fs::File::open(&out).unwrap().sync_all().unwrap();
    }
}

fn restore(c: &mut Criterion) {
    let segments = std::env::var("CMEK_BENCH_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let s = setup(segments);
    let mut g = c.benchmark_group(format!("restore_{segments}x1MiB"));
    g.throughput(Throughput::Bytes(s.bundle.manifest().total_bytes()));
    let bundle = s.bundle.dir().to_path_buf();

    g.bench_function("copy_files_baseline", |b| {
        b.iter_custom(|iters| s.time(iters, |dest| copy_files(&s.bundle, dest)))
    });
    for (name, threads) in [("rewrap_1_thread", 1), ("reencrypt_1_thread", 1)] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                s.time(iters, |dest| {
                    let k = s.keyring.clone();
                    let r = if name.starts_with("rewrap") {
                        Restore::rewrap(&bundle, dest, k.clone(), s.trust(), k, s.spec())
                    } else {
                        Restore::reencrypt(&bundle, dest, k.clone(), s.trust(), k, s.spec())
                    };
                    s.rt.block_on(r.threads(threads).run(|_| {})).unwrap();
                })
            })
        });
    }
    g.bench_function("rewrap", |b| {
        b.iter_custom(|iters| {
            s.time(iters, |dest| {
                let k = s.keyring.clone();
                let r = Restore::rewrap(&bundle, dest, k.clone(), s.trust(), k, s.spec());
                s.rt.block_on(r.run(|_| {})).unwrap();
            })
        })
    });
    g.bench_function("reencrypt", |b| {
        b.iter_custom(|iters| {
            s.time(iters, |dest| {
                let k = s.keyring.clone();
                let r = Restore::reencrypt(&bundle, dest, k.clone(), s.trust(), k, s.spec());
                s.rt.block_on(r.run(|_| {})).unwrap();
            })
        })
    });
    g.bench_function("plaintext", |b| {
        b.iter_custom(|iters| {
            s.time(iters, |dest| {
                let r = Restore::plaintext(&bundle, dest, s.keyring.clone(), s.trust(), "local");
                s.rt.block_on(r.run(|_| {})).unwrap();
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = backup;
    // Each run restores 256 MiB: few samples, short warm-up.
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    targets = restore
}
criterion_main!(backup);
