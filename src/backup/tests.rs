//! Unit tests of backups and restores that need the crate's internals: the
//! fault-injecting file layer (a crash at every step of a restore and of a
//! backup), and the bundle manifest's golden bytes.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::bundle::{BundleManifest, BundleSegment};
use super::create::create_backup_with;
use super::fs::{Entry, Fs, FsFile, RealFs};
use super::*;
use crate::testing::MockProvider;
use crate::zone::{FileManifestStore, Keyring, MemoryManifestStore, Zone, ZoneSpec};
use crate::{Error, Result};

/// A file layer that counts every operation (each read and write of an
/// open file included) and fails the `fail_at`-th and every later one, as
/// a process that died there would. Records the segment files renamed into
/// place, to prove none is produced twice.
#[derive(Debug)]
struct FaultyFs {
    counter: Arc<Counter>,
    renamed: Mutex<Vec<PathBuf>>,
}

#[derive(Debug)]
struct Counter {
    ops: AtomicU64,
    fail_at: Option<u64>,
}

impl Counter {
    fn step(&self) -> io::Result<()> {
        let n = self.ops.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fail_at {
            Some(f) if n >= f => Err(io::Error::other("injected crash")),
            _ => Ok(()),
        }
    }
}

impl FaultyFs {
    fn new(fail_at: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            counter: Arc::new(Counter {
                ops: AtomicU64::new(0),
                fail_at,
            }),
            renamed: Mutex::new(Vec::new()),
        })
    }

    fn ops(&self) -> u64 {
        self.counter.ops.load(Ordering::SeqCst)
    }

    fn step(&self, path: &Path) -> Result<()> {
        self.counter.step().map_err(|e| Error::io(path, e))
    }

    fn renamed(&self) -> Vec<PathBuf> {
        self.renamed.lock().unwrap().clone()
    }
}

struct FaultyReader {
    inner: Box<dyn Read + Send>,
    counter: Arc<Counter>,
}

impl Read for FaultyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.counter.step()?;
        self.inner.read(buf)
    }
}

struct FaultyFile {
    inner: Box<dyn FsFile>,
    counter: Arc<Counter>,
    path: PathBuf,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.counter.step()?;
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl FsFile for FaultyFile {
    fn sync(&mut self) -> Result<()> {
        self.counter.step().map_err(|e| Error::io(&self.path, e))?;
        self.inner.sync()
    }
}

impl Fs for FaultyFs {
    fn read(&self, path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
        self.step(path)?;
        RealFs.read(path, max, what)
    }
    fn entry(&self, path: &Path, follow: bool) -> Result<Option<Entry>> {
        self.step(path)?;
        RealFs.entry(path, follow)
    }
    fn own_uid(&self, dir: &Path) -> Result<Option<u32>> {
        self.step(dir)?;
        RealFs.own_uid(dir)
    }
    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>> {
        self.step(path)?;
        Ok(Box::new(FaultyReader {
            inner: RealFs.open(path)?,
            counter: self.counter.clone(),
        }))
    }
    fn len(&self, path: &Path) -> Result<Option<u64>> {
        self.step(path)?;
        RealFs.len(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.step(dir)?;
        RealFs.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.step(dir)?;
        RealFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>> {
        self.step(path)?;
        Ok(Box::new(FaultyFile {
            inner: RealFs.create(path)?,
            counter: self.counter.clone(),
            path: path.to_path_buf(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.step(to)?;
        RealFs.rename(from, to)?;
        self.renamed.lock().unwrap().push(to.to_path_buf());
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.step(dir)?;
        RealFs.sync_dir(dir)
    }
    fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        // Atomic by construction (fsutil's own tests): a crash leaves the
        // old file or the new one; fail before it or after it.
        self.step(path)?;
        RealFs.write_atomic(path, contents)?;
        self.step(path)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        self.step(path)?;
        RealFs.remove_file(path)
    }
}

/// A zone with segments under two EZK versions, its files on disk, and
/// their plaintexts.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    kms: Arc<MockProvider>,
    keyring: Arc<Keyring>,
    zone: Zone,
    files: Vec<(String, PathBuf)>,
    plaintexts: BTreeMap<String, Vec<u8>>,
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

async fn fixture(sizes: &[usize]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let kms = Arc::new(MockProvider::new());
    let old_root = kms.add_key("backed-up-root");
    kms.add_key("new-root");
    let keyring = Keyring::new(kms.clone());
    let zone = keyring
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec {
                stream: crate::stream::Params::new(4096).unwrap(),
                ..ZoneSpec::new("orders", "mock-region-1", old_root)
            },
        )
        .await
        .unwrap();
    let src = root.join("zone");
    std::fs::create_dir_all(&src).unwrap();
    let mut files = Vec::new();
    let mut plaintexts = BTreeMap::new();
    for (i, &len) in sizes.iter().enumerate() {
        if i == sizes.len() / 2 {
            zone.rotate_ezk().await.unwrap();
        }
        let id = format!("orders/{i:04}.log");
        let pt = pattern(len, i as u8);
        let path = src.join(format!("{i}.seg"));
        std::fs::write(&path, zone.encrypt_segment(&id, &pt).unwrap()).unwrap();
        files.push((id.clone(), path));
        plaintexts.insert(id, pt);
    }
    Fixture {
        _dir: dir,
        root,
        kms,
        keyring,
        zone,
        files,
        plaintexts,
    }
}

impl Fixture {
    fn backup(&self) -> PathBuf {
        let dest = self.root.join("backup");
        create_backup_with(
            &RealFs,
            &self.zone.manifest(),
            self.files.clone(),
            &dest,
            |_| {},
        )
        .unwrap();
        dest
    }

    /// What a caller of the fixture trusts: the backed-up zone's root.
    fn trust(&self) -> SourceTrust {
        SourceTrust::roots([self.kms.key_ref("backed-up-root")])
    }

    fn restore(&self, bundle: &Path, dest: &Path, mode: RestoreMode) -> Restore {
        self.restore_as(bundle, dest, mode, self.spec())
    }

    fn spec(&self) -> ZoneSpec {
        ZoneSpec::new("restored", "mock-region-1", self.kms.key_ref("new-root"))
    }

    fn restore_as(&self, bundle: &Path, dest: &Path, mode: RestoreMode, spec: ZoneSpec) -> Restore {
        let k = || self.keyring.clone();
        match mode {
            RestoreMode::Rewrap => Restore::rewrap(bundle, dest, k(), self.trust(), k(), spec),
            RestoreMode::Reencrypt => {
                Restore::reencrypt(bundle, dest, k(), self.trust(), k(), spec)
            }
            RestoreMode::Plaintext => {
                Restore::plaintext(bundle, dest, k(), self.trust(), spec.region)
            }
        }
    }

    /// Checks that `dest` holds every segment, restored correctly, opening
    /// the restored zone afresh from its manifest file.
    async fn check_restored(&self, dest: &Path, mode: RestoreMode) {
        let seg_dir = dest.join(SEGMENTS_DIR);
        let zone = match mode {
            RestoreMode::Plaintext => None,
            _ => Some(
                self.keyring
                    .open_zone(Arc::new(FileManifestStore::new(dest.join(ZONE_MANIFEST))))
                    .await
                    .unwrap(),
            ),
        };
        for (id, pt) in &self.plaintexts {
            let bytes = std::fs::read(seg_dir.join(names::segment_file_name(id))).unwrap();
            let got = match &zone {
                Some(z) => z.decrypt_segment(id, &bytes).unwrap().to_vec(),
                None => bytes,
            };
            assert_eq!(&got, pt, "{id}");
        }
        let mut names: Vec<_> = std::fs::read_dir(&seg_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert_eq!(names.len(), self.plaintexts.len(), "{names:?}");
    }
}

/// Crashes a restore at every one of its file operations in turn; after
/// each crash a clean rerun must finish, restore every segment correctly,
/// and never put a segment into place twice.
///
/// With several threads the operations interleave differently from run to
/// run, but their number does not, so a crash at step `n` always happens.
async fn crash_at_every_step(mode: RestoreMode, threads: usize) {
    let f = fixture(&[0, 1, 5000, 9000, 300]).await;
    let bundle = f.backup();
    let total_segments = f.plaintexts.len();

    let clean = FaultyFs::new(None);
    let report = f
        .restore(&bundle, &f.root.join("clean"), mode)
        .threads(threads)
        .with_fs(clean.clone())
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(report.restored, total_segments);
    f.check_restored(&f.root.join("clean"), mode).await;
    let steps = clean.ops();
    assert!(steps > 30, "{steps} steps");

    for n in 1..=steps {
        let dest = f.root.join(format!("crash-{n}"));
        let crashed = FaultyFs::new(Some(n));
        let err = f
            .restore(&bundle, &dest, mode)
            .threads(threads)
            .with_fs(crashed.clone())
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("injected crash"),
            "step {n}: {err}"
        );

        let rerun = FaultyFs::new(None);
        let report = f
            .restore(&bundle, &dest, mode)
            .threads(threads)
            .with_fs(rerun.clone())
            .run(|_| {})
            .await
            .unwrap_or_else(|e| panic!("rerun after a crash at step {n}: {e}"));
        let mut placed: Vec<PathBuf> = crashed
            .renamed()
            .into_iter()
            .chain(rerun.renamed())
            .filter(|p| p.parent().is_some_and(|d| d.ends_with(SEGMENTS_DIR)))
            .collect();
        let before = placed.len();
        placed.sort();
        placed.dedup();
        assert_eq!(
            before,
            placed.len(),
            "step {n}: a segment was put in place twice"
        );
        assert_eq!(
            placed.len(),
            total_segments,
            "step {n}: a segment is missing"
        );
        assert_eq!(report.restored + report.already_done, total_segments);
        assert_eq!(report.restored, rerun.renamed().len(), "step {n}");
        f.check_restored(&dest, mode).await;

        // A third run finds everything done and changes nothing.
        let again = FaultyFs::new(None);
        let report = f
            .restore(&bundle, &dest, mode)
            .with_fs(again.clone())
            .run(|_| {})
            .await
            .unwrap();
        assert_eq!((report.restored, report.already_done), (0, total_segments));
        assert!(again.renamed().is_empty());
    }
}

#[tokio::test]
async fn rewrap_restore_survives_a_crash_at_every_step() {
    crash_at_every_step(RestoreMode::Rewrap, 1).await;
}

#[tokio::test]
async fn a_restore_on_three_threads_survives_a_crash_at_every_step() {
    crash_at_every_step(RestoreMode::Rewrap, 3).await;
}

#[tokio::test]
async fn reencrypt_restore_survives_a_crash_at_every_step() {
    crash_at_every_step(RestoreMode::Reencrypt, 1).await;
}

#[tokio::test]
async fn plaintext_restore_survives_a_crash_at_every_step() {
    crash_at_every_step(RestoreMode::Plaintext, 2).await;
}

#[tokio::test]
async fn backup_survives_a_crash_at_every_step() {
    let f = fixture(&[10, 7000, 0]).await;
    let clean = FaultyFs::new(None);
    create_backup_with(
        &*clean,
        &f.zone.manifest(),
        f.files.clone(),
        &f.root.join("clean"),
        |_| {},
    )
    .unwrap();
    for n in 1..=clean.ops() {
        let dest = f.root.join(format!("crash-{n}"));
        let crashed = FaultyFs::new(Some(n));
        create_backup_with(
            &*crashed,
            &f.zone.manifest(),
            f.files.clone(),
            &dest,
            |_| {},
        )
        .unwrap_err();
        // An unfinished backup is never taken for one.
        if crashed.ops() <= clean.ops() && !dest.join(BUNDLE_MANIFEST).exists() {
            assert!(Bundle::open(&dest).is_err());
        }
        let bundle = match Bundle::open(&dest) {
            // The crash came after the manifest was in place.
            Ok(bundle) => bundle,
            Err(_) => {
                create_backup_with(&RealFs, &f.zone.manifest(), f.files.clone(), &dest, |_| {})
                    .unwrap()
            }
        };
        bundle.verify_checksums(|_| {}).unwrap();
        let out = f.root.join(format!("restored-{n}"));
        f.restore(&dest, &out, RestoreMode::Plaintext)
            .run(|_| {})
            .await
            .unwrap();
        f.check_restored(&out, RestoreMode::Plaintext).await;
    }
}

#[tokio::test]
async fn progress_counts_every_segment_and_byte() {
    let f = fixture(&[100, 200, 300]).await;
    let mut seen = Vec::new();
    let bundle = create_backup_with(
        &RealFs,
        &f.zone.manifest(),
        f.files.clone(),
        &f.root.join("b"),
        |p| seen.push((p.phase, p.done, p.total, p.bytes_done, p.bytes_total)),
    )
    .unwrap();
    let total = bundle.manifest().total_bytes();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], (Phase::Backup, 3, 3, total, total));
    let mut seen = Vec::new();
    f.restore(bundle.dir(), &f.root.join("r"), RestoreMode::Rewrap)
        .run(|p| seen.push((p.phase, p.done, p.bytes_done, p.already_done)))
        .await
        .unwrap();
    assert_eq!(
        seen.iter().filter(|s| s.0 == Phase::Restore).count(),
        3,
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap(), &(Phase::Verify, 3, total, false));
}

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// The bundle manifest of `tests/vectors/backup`, rebuilt from its parts:
/// the zone vectors' manifest and segments, a fixed backup id and time.
fn vector_manifest() -> BundleManifest {
    let zone_dir = vectors().join("zone");
    let segments = [
        ("a", "segment-a.cmek"),
        ("b", "segment-b.cmek"),
        ("c", "segment-c.cmek"),
    ]
    .into_iter()
    .map(|(id, file)| {
        let bytes = std::fs::read(zone_dir.join(file)).unwrap();
        BundleSegment {
            segment_id: id.into(),
            len: bytes.len() as u64,
            sha256: crate::cipher::sha256(&[&bytes]),
        }
    })
    .collect();
    BundleManifest::new(
        [0xb0; 16],
        1_764_288_000,
        std::fs::read(zone_dir.join("zone.manifest")).unwrap(),
        segments,
    )
    .unwrap()
}

#[test]
fn bundle_manifest_golden_bytes() {
    let m = vector_manifest();
    let bytes = m.to_bytes();
    let committed = std::fs::read(vectors().join("backup").join(BUNDLE_MANIFEST)).unwrap();
    assert_eq!(bytes, committed, "the bundle manifest layout changed");
    // The frame and the fixed fields, spelled out.
    assert_eq!(&bytes[..10], b"CMEK-BKP\x00\x01");
    assert_eq!(&bytes[10..26], &[0xb0; 16]);
    assert_eq!(&bytes[26..34], &1_764_288_000u64.to_be_bytes());
    let zone_len = std::fs::metadata(vectors().join("zone/zone.manifest"))
        .unwrap()
        .len();
    assert_eq!(&bytes[34..38], &(zone_len as u32).to_be_bytes());
    let at = 38 + zone_len as usize;
    assert_eq!(&bytes[at..at + 4], &3u32.to_be_bytes());
    assert_eq!(&bytes[at + 4..at + 7], b"\x00\x01a");
    assert_eq!(&bytes[at + 7..at + 15], &1184u64.to_be_bytes());
    assert_eq!(BundleManifest::parse(&committed).unwrap(), m);
    assert_eq!(m.backup_id(), "b0".repeat(16));
}

#[test]
#[ignore = "writes the backup vector set; run only for a new format version"]
fn generate_backup_vectors() {
    let out = vectors().join("backup");
    let seg_dir = out.join(SEGMENTS_DIR);
    std::fs::create_dir_all(&seg_dir).unwrap();
    for (id, file) in [
        ("a", "segment-a.cmek"),
        ("b", "segment-b.cmek"),
        ("c", "segment-c.cmek"),
    ] {
        std::fs::copy(vectors().join("zone").join(file), seg_dir.join(id)).unwrap();
    }
    std::fs::write(out.join(BUNDLE_MANIFEST), vector_manifest().to_bytes()).unwrap();
}

#[test]
fn bundle_manifest_every_flip_and_truncation_is_malformed() {
    let good = vector_manifest().to_bytes();
    // Every byte of a smaller manifest (the zone manifest part is covered
    // by the zone's own sweep).
    for i in (0..good.len())
        .step_by(7)
        .chain(good.len() - 40..good.len())
    {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(
            matches!(BundleManifest::parse(&bad), Err(Error::Malformed { .. })),
            "byte {i}"
        );
    }
    for len in 0..good.len() {
        assert!(BundleManifest::parse(&good[..len]).is_err(), "len {len}");
    }
}

#[test]
fn inconsistent_bundle_manifests_are_refused_even_with_a_valid_checksum() {
    let m = vector_manifest();
    let mut twice = m.clone();
    twice.segments[1].segment_id = "a".into();
    let err = BundleManifest::parse(&twice.to_bytes()).unwrap_err();
    assert!(err.to_string().contains("out of order or twice"), "{err}");
    let mut short = m.clone();
    short.segments[0].len = 100;
    let err = BundleManifest::parse(&short.to_bytes()).unwrap_err();
    assert!(err.to_string().contains("of 100 bytes"), "{err}");
    let err = BundleManifest::new([0; 16], 0, m.zone_manifest.clone(), twice.segments).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}
