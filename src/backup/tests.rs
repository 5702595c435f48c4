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
                    .open_zone(
                        Arc::new(FileManifestStore::new(dest.join(ZONE_MANIFEST))),
                        &anchor_of(&dest.join(ZONE_MANIFEST)),
                    )
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

/// The anchor of the zone whose manifest is at `path`, read from the file
/// itself: for checking what a restore wrote, not for trusting storage.
fn anchor_of(path: &Path) -> crate::zone::ZoneAnchor {
    let m = crate::zone::ZoneManifest::parse(&std::fs::read(path).unwrap()).unwrap();
    crate::zone::ZoneAnchor::new(m.zone_id(), m.root().clone(), m.generation())
}

// ---------------------------------------------------------------------
// A storage attacker: each test plants or edits what someone who can
// write where backups and restores live could, and shows the restore
// refusing it with a typed error, having written nothing where it should
// not — or, for files at their final names, restoring them anew.
// ---------------------------------------------------------------------

use super::state::{RestoreState, RestoreStateV1, StoredState};
use crate::zone::{ZoneId, ZoneManifest};
use crate::StateRejection;

fn seg_file(dest: &Path, id: &str) -> PathBuf {
    dest.join(SEGMENTS_DIR).join(names::segment_file_name(id))
}

fn partial_file(dest: &Path, id: &str) -> PathBuf {
    dest.join(SEGMENTS_DIR).join(names::partial_file_name(id))
}

/// Every file under `dir` with its bytes, to show nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && !p.file_name().unwrap().to_string_lossy().ends_with(".lock")
            {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn rejected(err: &Error) -> (&'static str, &StateRejection) {
    match err {
        Error::StateRejected { what, reason } => (what, reason),
        other => panic!("expected StateRejected, got {other:?}"),
    }
}

fn state_of(dest: &Path) -> RestoreState {
    match StoredState::parse(&std::fs::read(dest.join(RESTORE_STATE)).unwrap()).unwrap() {
        StoredState::V2(s) => s,
        StoredState::V1(_) => panic!("version 1"),
    }
}

/// The attack of issue 14: the state and zone manifest of another restore
/// (the attacker's, of the same backup under the attacker's root) planted
/// into the victim's destination. The resumed restore refuses before any
/// provider call and writes nothing.
#[tokio::test]
async fn a_planted_state_and_manifest_of_another_restore_are_refused() {
    let f = fixture(&[100, 5000]).await;
    let bundle = f.backup();
    let evil = f.kms.add_key("evil-root");
    let victim = f.root.join("victim");
    let attacker = f.root.join("attacker");
    f.restore(&bundle, &victim, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap();
    let evil_spec = ZoneSpec::new("restored", "mock-region-1", evil.clone());
    f.restore_as(&bundle, &attacker, RestoreMode::Reencrypt, evil_spec)
        .run(|_| {})
        .await
        .unwrap();
    for file in [RESTORE_STATE, ZONE_MANIFEST] {
        std::fs::copy(attacker.join(file), victim.join(file)).unwrap();
    }
    // A segment still to do, so that a restore that went on would write.
    std::fs::remove_file(seg_file(&victim, "orders/0000.log")).unwrap();
    let before = snapshot(&victim);
    f.kms.reset_calls();
    let err = f
        .restore(&bundle, &victim, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap_err();
    let (what, reason) = rejected(&err);
    assert_eq!(what, "restore state");
    match reason {
        StateRejection::UnexpectedRoot { expected, found } => {
            assert_eq!(expected, &f.kms.key_ref("new-root").to_string());
            assert_eq!(found, &evil.to_string());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.kms.total_calls(), 0, "no provider call");
    assert_eq!(snapshot(&victim), before, "nothing written");
}

/// A state naming another zone: another backed-up zone, or a new zone id
/// that is not the zone manifest's.
#[tokio::test]
async fn a_state_naming_another_zone_is_refused() {
    let f = fixture(&[100, 5000]).await;
    let bundle = f.backup();
    let dest = f.root.join("dest");
    f.restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap();
    let good = state_of(&dest);
    let other = ZoneId::from_bytes([0x5a; 16]);

    let mut planted = good.clone();
    planted.spec.source_zone = other;
    std::fs::write(dest.join(RESTORE_STATE), planted.to_bytes()).unwrap();
    let before = snapshot(&dest);
    f.kms.reset_calls();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            rejected(&err),
            ("restore state", StateRejection::ForeignZone { found, .. }) if *found == other.to_string()
        ),
        "{err}"
    );

    let mut planted = good.clone();
    planted.zone_id = other;
    std::fs::write(dest.join(RESTORE_STATE), planted.to_bytes()).unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap_err();
    match rejected(&err) {
        ("restored zone manifest", StateRejection::ForeignZone { expected, found }) => {
            assert_eq!(expected, &other.to_string());
            assert_eq!(found, &good.zone_id.to_string());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.kms.total_calls(), 0, "no provider call");
    let mut after = snapshot(&dest);
    after.remove(&dest.join(RESTORE_STATE));
    let mut expected = before;
    expected.remove(&dest.join(RESTORE_STATE));
    assert_eq!(after, expected, "nothing written");
}

/// Resuming with a spec that differs from the state's — another root key,
/// region, zone name, mode — is refused, naming the difference.
#[tokio::test]
async fn a_state_whose_spec_differs_is_refused() {
    let f = fixture(&[100, 5000]).await;
    let bundle = f.backup();
    let other_root = f.kms.add_key("other-root");
    let dest = f.root.join("dest");
    f.restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap();
    let before = snapshot(&dest);
    f.kms.reset_calls();
    let spec = f.spec();
    let cases = [
        (
            RestoreMode::Rewrap,
            ZoneSpec {
                root: other_root.clone(),
                ..spec.clone()
            },
        ),
        (
            RestoreMode::Rewrap,
            ZoneSpec {
                name: "renamed".into(),
                ..spec.clone()
            },
        ),
        (RestoreMode::Reencrypt, spec.clone()),
        (RestoreMode::Plaintext, spec.clone()),
    ];
    for (i, (mode, spec)) in cases.into_iter().enumerate() {
        let err = f
            .restore_as(&bundle, &dest, mode, spec)
            .run(|_| {})
            .await
            .unwrap_err();
        let (what, reason) = rejected(&err);
        assert_eq!(what, "restore state");
        match (i, reason) {
            (0, StateRejection::UnexpectedRoot { found, .. }) => {
                assert_eq!(found, &f.kms.key_ref("new-root").to_string())
            }
            (1, StateRejection::Mismatch(m)) => assert!(m.contains("renamed"), "{m}"),
            (2 | 3, StateRejection::Mismatch(m)) => assert!(m.contains("Rewrap"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // Another region: the state records a region, and a zone's root must
    // be in its zone's region, so plant a state that differs only there.
    let mut planted = state_of(&dest);
    planted.spec.region = "mock-region-2".into();
    std::fs::write(dest.join(RESTORE_STATE), planted.to_bytes()).unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(&err), ("restore state", StateRejection::Mismatch(m)) if m.contains("mock-region-2")),
        "{err}"
    );
    // The backup's manifest rewritten (another backup under the same id).
    std::fs::write(dest.join(RESTORE_STATE), state_of(&dest).to_bytes()).unwrap();
    let mut good = state_of(&dest);
    good.spec.region = "mock-region-1".into();
    good.spec.bundle_digest[0] ^= 1;
    std::fs::write(dest.join(RESTORE_STATE), good.to_bytes()).unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(&err), ("restore state", StateRejection::Mismatch(m)) if m.contains("another backup")),
        "{err}"
    );
    assert_eq!(f.kms.total_calls(), 0, "no provider call");
    let mut after = snapshot(&dest);
    let mut expected = before;
    after.remove(&dest.join(RESTORE_STATE));
    expected.remove(&dest.join(RESTORE_STATE));
    assert_eq!(after, expected, "nothing written");
}

/// A zone manifest planted in a restore's destination: this zone's id
/// under another root key, another zone's manifest, or one where a
/// plaintext restore never makes one. Refused before any provider call.
#[tokio::test]
async fn a_planted_zone_manifest_is_refused() {
    let f = fixture(&[100, 5000]).await;
    let bundle = f.backup();
    let evil = f.kms.add_key("evil-root");
    let dest = f.root.join("dest");
    f.restore(&bundle, &dest, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap();
    std::fs::remove_file(seg_file(&dest, "orders/0001.log")).unwrap();
    let good = std::fs::read(dest.join(ZONE_MANIFEST)).unwrap();
    let mut edited = ZoneManifest::parse(&good).unwrap();
    edited.root = evil.clone();
    // Sealed under a key of the attacker's: well formed, refused for its
    // root before its tag could be checked.
    let attacker_ezk = crate::secret::SecretKey::from_array(&mut [7; 32]);
    std::fs::write(
        dest.join(ZONE_MANIFEST),
        edited.seal(&attacker_ezk).unwrap(),
    )
    .unwrap();
    let before = snapshot(&dest);
    f.kms.reset_calls();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap_err();
    match rejected(&err) {
        ("restored zone manifest", StateRejection::UnexpectedRoot { expected, found }) => {
            assert_eq!(expected, &f.kms.key_ref("new-root").to_string());
            assert_eq!(found, &evil.to_string());
        }
        other => panic!("{other:?}"),
    }

    // Another zone's manifest (another restore of the same backup, same
    // root and name).
    let other = f.root.join("other");
    f.restore(&bundle, &other, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap();
    std::fs::copy(other.join(ZONE_MANIFEST), dest.join(ZONE_MANIFEST)).unwrap();
    f.kms.reset_calls();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Reencrypt)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            rejected(&err),
            ("restored zone manifest", StateRejection::ForeignZone { .. })
        ),
        "{err}"
    );
    assert_eq!(f.kms.total_calls(), 0, "no provider call");
    let mut after = snapshot(&dest);
    let mut expected = before;
    after.remove(&dest.join(ZONE_MANIFEST));
    expected.remove(&dest.join(ZONE_MANIFEST));
    assert_eq!(after, expected, "nothing written");

    // A plaintext restore makes no zone manifest.
    let plain = f.root.join("plain");
    f.restore(&bundle, &plain, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap();
    std::fs::write(plain.join(ZONE_MANIFEST), &good).unwrap();
    let err = f
        .restore(&bundle, &plain, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            rejected(&err),
            ("restored zone manifest", StateRejection::Mismatch(_))
        ),
        "{err}"
    );
}

/// Files at their final names replaced before a rerun — by another
/// segment's restored file, by other bytes of the same length, by a
/// symbolic link to a file elsewhere, by a world-readable copy — are
/// verified, found wanting, and restored anew; the link's target is
/// untouched.
#[tokio::test]
async fn files_at_their_final_names_are_verified_again() {
    let f = fixture(&[0, 1, 5000, 9000, 300]).await;
    let bundle = f.backup();
    let outside = f.root.join("outside.txt");
    for mode in [
        RestoreMode::Rewrap,
        RestoreMode::Reencrypt,
        RestoreMode::Plaintext,
    ] {
        std::fs::write(&outside, b"not the restore's").unwrap();
        let dest = f.root.join(format!("dest-{mode:?}"));
        f.restore(&bundle, &dest, mode).run(|_| {}).await.unwrap();
        let ids: Vec<String> = f.plaintexts.keys().cloned().collect();
        // Another segment's (valid) restored file under this one's name.
        std::fs::copy(seg_file(&dest, &ids[3]), seg_file(&dest, &ids[2])).unwrap();
        // Other bytes, same length.
        let mut bytes = std::fs::read(seg_file(&dest, &ids[3])).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(seg_file(&dest, &ids[3]), &bytes).unwrap();
        // A symbolic link to a file elsewhere.
        std::fs::remove_file(seg_file(&dest, &ids[1])).unwrap();
        std::os::unix::fs::symlink(&outside, seg_file(&dest, &ids[1])).unwrap();
        // The right bytes, but readable by everyone.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            seg_file(&dest, &ids[4]),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();

        let report = f.restore(&bundle, &dest, mode).run(|_| {}).await.unwrap();
        assert_eq!(
            (report.replaced, report.restored, report.already_done),
            (4, 4, 1),
            "{mode:?}"
        );
        f.check_restored(&dest, mode).await;
        assert_eq!(std::fs::read(&outside).unwrap(), b"not the restore's");
        for id in &ids {
            let meta = std::fs::symlink_metadata(seg_file(&dest, id)).unwrap();
            assert!(meta.is_file(), "{mode:?} {id}");
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{mode:?} {id}");
        }
    }
}

/// A `.NAME.partial` planted as a symbolic link to a file outside, or as a
/// world-readable file, before a restore resumes: the restore fails with a
/// typed error, nothing reaches the link's target, and the planted entries
/// stay as they were.
#[tokio::test]
async fn planted_partial_files_receive_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(&[100, 5000]).await;
    let bundle = f.backup();
    let outside = f.root.join("outside.txt");
    let id = "orders/0001.log";
    for mode in [
        RestoreMode::Plaintext,
        RestoreMode::Reencrypt,
        RestoreMode::Rewrap,
    ] {
        // The symbolic link.
        std::fs::write(&outside, b"outside").unwrap();
        let dest = f.root.join(format!("dest-{mode:?}"));
        f.restore(&bundle, &dest, mode).run(|_| {}).await.unwrap();
        std::fs::remove_file(seg_file(&dest, id)).unwrap();
        std::os::unix::fs::symlink(&outside, partial_file(&dest, id)).unwrap();
        let err = f
            .restore(&bundle, &dest, mode)
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                rejected(&err),
                ("temporary file", StateRejection::Mismatch(m)) if m.contains("Symlink")
            ),
            "{mode:?}: {err}"
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"outside", "{mode:?}");
        assert!(std::fs::symlink_metadata(partial_file(&dest, id))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(!seg_file(&dest, id).exists());

        // A world-readable file.
        std::fs::remove_file(partial_file(&dest, id)).unwrap();
        std::fs::write(partial_file(&dest, id), b"planted").unwrap();
        std::fs::set_permissions(
            partial_file(&dest, id),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = f
            .restore(&bundle, &dest, mode)
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                rejected(&err),
                ("temporary file", StateRejection::Mismatch(m)) if m.contains("644")
            ),
            "{mode:?}: {err}"
        );
        assert_eq!(std::fs::read(partial_file(&dest, id)).unwrap(), b"planted");
        let meta = std::fs::metadata(partial_file(&dest, id)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        assert!(!seg_file(&dest, id).exists());

        // Once the operator removed it, the restore finishes.
        std::fs::remove_file(partial_file(&dest, id)).unwrap();
        let report = f.restore(&bundle, &dest, mode).run(|_| {}).await.unwrap();
        assert_eq!((report.restored, report.already_done), (1, 1));
        f.check_restored(&dest, mode).await;
    }
}

/// The backed-up zone's root key must be one the caller allows, and its
/// zone the one the caller names: a bundle rewritten to name the
/// attacker's root (or another zone) is refused before any provider call,
/// and the destination is not even created.
#[tokio::test]
async fn a_bundle_whose_root_is_not_allowed_is_refused() {
    let f = fixture(&[100]).await;
    let bundle = f.backup();
    let evil = f.kms.add_key("evil-root");
    // The attacker rewrites the bundle: same segments, the zone manifest
    // naming the attacker's root.
    let mut manifest = Bundle::open(&bundle).unwrap().manifest().clone();
    let mut zone = manifest.zone.clone();
    zone.root = evil.clone();
    manifest.zone_manifest = zone
        .seal(&crate::secret::SecretKey::from_array(&mut [7; 32]))
        .unwrap();
    manifest.zone = zone;
    std::fs::write(bundle.join(BUNDLE_MANIFEST), manifest.to_bytes()).unwrap();

    f.kms.reset_calls();
    let dest = f.root.join("dest");
    let err = f
        .restore(&bundle, &dest, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    match rejected(&err) {
        ("backup", StateRejection::UnexpectedRoot { expected, found }) => {
            assert!(
                expected.contains(&f.kms.key_ref("backed-up-root").to_string()),
                "{expected}"
            );
            assert_eq!(found, &evil.to_string());
        }
        other => panic!("{other:?}"),
    }
    let k = || f.keyring.clone();
    let source_zone = f.zone.id();
    let other_zone = ZoneId::from_bytes([7; 16]);
    let attempts = [
        SourceTrust::zone(other_zone),
        SourceTrust::zone(source_zone).and_roots([f.kms.key_ref("new-root")]),
        SourceTrust::default(),
        SourceTrust::roots([]),
    ];
    for (i, trust) in attempts.into_iter().enumerate() {
        let err = Restore::plaintext(&bundle, &dest, k(), trust, "mock-region-1")
            .run(|_| {})
            .await
            .unwrap_err();
        match (i, &err) {
            (
                0,
                Error::StateRejected {
                    reason: StateRejection::ForeignZone { .. },
                    ..
                },
            )
            | (
                1,
                Error::StateRejected {
                    reason: StateRejection::UnexpectedRoot { .. },
                    ..
                },
            )
            | (2 | 3, Error::InvalidArgument(_)) => {}
            _ => panic!("{i}: {err:?}"),
        }
    }
    assert_eq!(f.kms.total_calls(), 0, "no provider call");
    assert!(!dest.exists(), "nothing written");
}

/// Segment lengths whose sum overflows a u64: refused as malformed when
/// parsed (no overflow panic in debug, no wrap in release), refused when
/// built, and a restore of such a bundle fails typed.
#[tokio::test]
async fn bundle_lengths_that_overflow_their_sum_are_refused() {
    let mut m = vector_manifest();
    let half = u64::MAX / 2 + 1;
    m.segments[0].len = half;
    m.segments[1].len = half;
    let bytes = m.to_bytes();
    let err = BundleManifest::parse(&bytes).unwrap_err();
    assert!(
        matches!(&err, Error::Malformed { reason, .. } if reason.contains("sum past")),
        "{err}"
    );
    let err =
        BundleManifest::new([0; 16], 0, m.zone_manifest.clone(), m.segments.clone()).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // Lengths summing to exactly u64::MAX still parse (the files will not
    // match); one byte more does not.
    let mut one = vector_manifest();
    one.segments[2].len = u64::MAX - one.segments[0].len - one.segments[1].len;
    let parsed = BundleManifest::parse(&one.to_bytes()).unwrap();
    assert_eq!(parsed.total_bytes(), u64::MAX);
    one.segments[2].len += 1;
    assert!(BundleManifest::parse(&one.to_bytes()).is_err());

    let f = fixture(&[100]).await;
    let bundle = f.root.join("overflow");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join(BUNDLE_MANIFEST), &bytes).unwrap();
    let err = f
        .restore(&bundle, &f.root.join("dest"), RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
}

/// A restore state of version 1 names neither root nor backed-up zone, so
/// it is never resumed; a state file too large to be genuine is not read.
#[tokio::test]
async fn old_and_oversized_states_are_refused() {
    let f = fixture(&[100]).await;
    let bundle = f.backup();
    let dest = f.root.join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let manifest = Bundle::open(&bundle).unwrap().manifest().clone();
    let v1 = RestoreStateV1 {
        backup_id: manifest.backup_id,
        mode: RestoreMode::Plaintext,
        zone_id: ZoneId::from_bytes([0; 16]),
        complete: false,
    };
    std::fs::write(dest.join(RESTORE_STATE), v1.to_bytes()).unwrap();
    f.kms.reset_calls();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(&err), ("restore state", StateRejection::Mismatch(m)) if m.contains("version 1")),
        "{err}"
    );
    std::fs::write(
        dest.join(RESTORE_STATE),
        vec![0u8; super::state::MAX_STATE_FILE as usize + 1],
    )
    .unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
    assert_eq!(f.kms.total_calls(), 0);
    assert!(!dest.join(SEGMENTS_DIR).exists());
}

/// A file layer that says files we create belong to another user: a
/// destination directory we did not create is then someone else's.
#[derive(Debug)]
struct OtherOwnerFs;

impl Fs for OtherOwnerFs {
    fn read(&self, path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
        RealFs.read(path, max, what)
    }
    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>> {
        RealFs.open(path)
    }
    fn len(&self, path: &Path) -> Result<Option<u64>> {
        RealFs.len(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn entry(&self, path: &Path, follow: bool) -> Result<Option<Entry>> {
        RealFs.entry(path, follow)
    }
    fn own_uid(&self, dir: &Path) -> Result<Option<u32>> {
        Ok(RealFs.own_uid(dir)?.map(|u| u.wrapping_add(1)))
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>> {
        RealFs.create(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        RealFs.sync_dir(dir)
    }
    fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        RealFs.write_atomic(path, contents)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        RealFs.remove_file(path)
    }
}

/// Destination directories others can write into, or that belong to
/// someone else, are refused before anything is written there; the ones a
/// restore creates are owner-only.
#[tokio::test]
async fn shared_destination_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture(&[100]).await;
    let bundle = f.backup();
    for mode in [0o777, 0o770, 0o1777] {
        let dest = f.root.join(format!("shared-{mode:o}"));
        std::fs::create_dir(&dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = f
            .restore(&bundle, &dest, RestoreMode::Plaintext)
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(rejected(&err), ("restore destination", StateRejection::Mismatch(m)) if m.contains("writable")),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(&dest).unwrap().count(),
            0,
            "nothing written"
        );
    }
    let theirs = f.root.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let err = f
        .restore(&bundle, &theirs, RestoreMode::Plaintext)
        .with_fs(Arc::new(OtherOwnerFs))
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(&err), ("restore destination", StateRejection::Mismatch(m)) if m.contains("belongs to user")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&theirs).unwrap().count(),
        0,
        "nothing written"
    );
    // A planted `segments` link on a resumed restore.
    let dest = f.root.join("dest");
    f.restore(&bundle, &dest, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap();
    let elsewhere = f.root.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::rename(dest.join(SEGMENTS_DIR), f.root.join("moved")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dest.join(SEGMENTS_DIR)).unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(rejected(&err), ("restore destination", StateRejection::Mismatch(m)) if m.contains("not a directory")),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // What a restore creates is owner-only.
    let fresh = f.root.join("a/b/fresh");
    f.restore(&bundle, &fresh, RestoreMode::Plaintext)
        .run(|_| {})
        .await
        .unwrap();
    for dir in [fresh.clone(), fresh.join(SEGMENTS_DIR)] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
}

/// Two restores into one destination at once: the second gets a typed
/// conflict and writes nothing; after the first, it resumes.
#[tokio::test]
async fn a_second_restore_into_the_same_destination_conflicts() {
    let f = fixture(&[100, 200]).await;
    let bundle = f.backup();
    let dest = f.root.join("dest");
    let first = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .prepare()
        .await
        .unwrap();
    let err = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    first.run(|_| {}).unwrap_or_else(|e| panic!("{e}"));
    let report = f
        .restore(&bundle, &dest, RestoreMode::Rewrap)
        .run(|_| {})
        .await
        .unwrap();
    assert_eq!(report.already_done, 2);
}

/// A backup resumed over a planted `.NAME.partial` link does not write
/// through it; a bundle manifest too large to be genuine is not read.
#[tokio::test]
async fn backups_refuse_planted_partials_and_oversized_manifests() {
    let f = fixture(&[100, 200]).await;
    let dest = f.root.join("backup");
    let seg_dir = dest.join(SEGMENTS_DIR);
    std::fs::create_dir_all(&seg_dir).unwrap();
    let outside = f.root.join("outside.txt");
    std::fs::write(&outside, b"outside").unwrap();
    let (id, _) = &f.files[0];
    std::os::unix::fs::symlink(&outside, seg_dir.join(names::partial_file_name(id))).unwrap();
    let err = create_backup_with(&RealFs, &f.zone.manifest(), f.files.clone(), &dest, |_| {})
        .unwrap_err();
    assert!(
        matches!(
            rejected(&err),
            ("temporary file", StateRejection::Mismatch(_))
        ),
        "{err}"
    );
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside");
    assert!(!dest.join(BUNDLE_MANIFEST).exists());

    // A sparse manifest one byte over the cap: refused by its size alone.
    let big = f.root.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::File::create(big.join(BUNDLE_MANIFEST))
        .unwrap()
        .set_len(MAX_BUNDLE_MANIFEST + 1)
        .unwrap();
    let err = Bundle::open(&big).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit, .. } if limit == MAX_BUNDLE_MANIFEST),
        "{err}"
    );
}

/// A file layer whose `create` panics for one file name: a bug in a
/// restore worker, as far as the restore can tell.
#[derive(Debug)]
struct PanicsCreating(String);

impl Fs for PanicsCreating {
    fn read(&self, path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
        RealFs.read(path, max, what)
    }
    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>> {
        RealFs.open(path)
    }
    fn len(&self, path: &Path) -> Result<Option<u64>> {
        RealFs.len(path)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn entry(&self, path: &Path, follow: bool) -> Result<Option<Entry>> {
        RealFs.entry(path, follow)
    }
    fn own_uid(&self, dir: &Path) -> Result<Option<u32>> {
        RealFs.own_uid(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>> {
        if path.file_name().is_some_and(|n| n == self.0.as_str()) {
            panic!("a bug while creating {}", path.display());
        }
        RealFs.create(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        RealFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        RealFs.sync_dir(dir)
    }
    fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        RealFs.write_atomic(path, contents)
    }
    fn remove_file(&self, path: &Path) -> Result<()> {
        RealFs.remove_file(path)
    }
}

/// A restore worker that panics ends the restore with `WorkerPanicked`
/// (not a panic of the whole restore, not an I/O or integrity error); the
/// restore resumes afterwards and completes.
#[tokio::test]
async fn a_panicking_restore_worker_is_reported_as_such() {
    let f = fixture(&[100, 5000, 100, 7000, 100, 9000]).await;
    let bundle = f.backup();
    for mode in [RestoreMode::Plaintext, RestoreMode::Rewrap] {
        let dest = f.root.join(format!("dest-{mode:?}"));
        let err = f
            .restore(&bundle, &dest, mode)
            .threads(3)
            .with_fs(Arc::new(PanicsCreating(names::partial_file_name(
                "orders/0003.log",
            ))))
            .run(|_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, Error::WorkerPanicked { .. }), "{err:?}");
        assert_eq!(err.kind(), crate::ErrorKind::Bug);
        f.restore(&bundle, &dest, mode)
            .threads(3)
            .run(|_| {})
            .await
            .unwrap();
        f.check_restored(&dest, mode).await;
    }
}
