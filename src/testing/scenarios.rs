//! The provider scenario suite: what a storage engine does with a
//! provider's keys, run end to end on a live provider.
//!
//! [`conformance`](super::conformance) checks a provider's promises one
//! call at a time. This suite checks that zones, the key monitor and
//! backups work on top of them, through the same small kind of fixture:
//!
//! * `zone_life`: a zone is created under key A; segments are written and
//!   read with no provider call (counted by the suite, and by the server
//!   when the fixture can ask it); the EZK is rotated; the root is rotated
//!   to key B; the zone reopens through its anchor in a new keyring and
//!   every segment decrypts there; with A disabled it still opens; with B
//!   disabled it is refused with [`Error::KeyUnavailable`], and once B is
//!   enabled again it opens and serves.
//! * `monitor_cycle`: a [`KeyMonitor`] watches a zone; the key is disabled
//!   and the zone is gated within one interval plus one check; the key is
//!   enabled and the zone serves again, with no reload. For a provider
//!   whose disabling is final ([`Fixture::disable_is_final`]), enabling
//!   fails and the zone stays gated, and cannot move to another key.
//! * `backup_restore`: a zone with segments under two EZK versions is
//!   backed up, the backup copied, and restored into a new zone under
//!   another key (rewrap and re-encrypt) and to plaintext; the restored
//!   zone reopens from its manifest and decrypts everything with the
//!   backed-up zone's key disabled.
//!
//! ```
//! use std::sync::Arc;
//! use cmek::provider::KeyProvider;
//! use cmek::testing::scenarios::{self, Fixture};
//! use cmek::testing::MockProvider;
//! use cmek::KeyRef;
//!
//! struct Mock(Arc<MockProvider>, std::sync::atomic::AtomicU32);
//!
//! #[async_trait::async_trait]
//! impl Fixture for Mock {
//!     fn provider(&self) -> Arc<dyn KeyProvider> {
//!         self.0.clone()
//!     }
//!     async fn enabled_key(&self) -> cmek::Result<KeyRef> {
//!         let n = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         Ok(self.0.add_key(&format!("key-{n}")))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let fixture = Mock(Arc::new(MockProvider::new()), Default::default());
//! let report = scenarios::run(&fixture).await;
//! report.assert_conforms();
//! # }
//! ```
//!
//! Every scenario runs, whatever failed before it, and the
//! [`Report`] names each one's outcome, as conformance's does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::conformance::{ensure, must, must_fail, Check, Deviations, Outcome, Report};
use crate::backup::{create_backup, Restore, RestoreMode, RestoreReport, SourceTrust};
use crate::monitor::{KeyMonitor, MonitorConfig, MonitorEvent};
use crate::provider::{
    EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, KeyValidation, RegionAnswer,
    WrappedKey,
};
use crate::secret::SecretKey;
use crate::zone::{
    FileManifestStore, Keyring, MemoryManifestStore, Zone, ZoneAvailability, ZoneSpec,
};
use crate::{Error, Result};

/// What the scenarios need from the provider under test: the provider,
/// new keys, and a way to disable and enable them.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The provider under test.
    fn provider(&self) -> Arc<dyn KeyProvider>;

    /// A new enabled root key, not used by any other call (the scenarios
    /// disable the keys they get). Zones live in its region.
    async fn enabled_key(&self) -> Result<KeyRef>;

    /// Enables or disables `key`. The default goes through the provider's
    /// [`admin`](KeyProvider::admin); a fixture whose provider has none
    /// overrides it.
    async fn set_enabled(&self, key: &KeyRef, enabled: bool) -> Result<()> {
        let p = self.provider();
        let admin = p.admin().ok_or_else(|| {
            Error::InvalidArgument(
                "the provider has no admin(): the fixture must implement set_enabled".into(),
            )
        })?;
        if enabled {
            admin.enable_key(key).await
        } else {
            admin.disable_key(key).await
        }
    }

    /// True for a provider whose disabled keys can never be enabled again
    /// (KMIP: a revoked key stays Deactivated). The scenarios then check
    /// that enabling fails and the zone stays refused. False by default.
    fn disable_is_final(&self) -> bool {
        false
    }

    /// What a test server is known not to model; the assertions it would
    /// fail are waived and reported so. None by default.
    fn deviations(&self) -> Deviations {
        Deviations::default()
    }

    /// The provider and key a backup is restored under: another key of the
    /// provider (or of another provider instance, e.g. another key type).
    /// The default is the provider under test and a new
    /// [`enabled_key`](Self::enabled_key).
    async fn restore_target(&self) -> Result<(Arc<dyn KeyProvider>, KeyRef)> {
        Ok((self.provider(), self.enabled_key().await?))
    }

    /// How many requests the key service has answered about `key` (or in
    /// all, for a service that cannot tell keys apart), when the fixture
    /// can ask it; `None` (the default) leaves the count to the calls the
    /// suite sees the provider make.
    async fn server_calls(&self, key: &KeyRef) -> Option<u64> {
        let _ = key;
        None
    }

    /// The key monitor's configuration in `monitor_cycle`: checks every
    /// 500 ms by default. The zone must follow its key within one interval
    /// plus one check timeout.
    fn monitor_config(&self) -> MonitorConfig {
        MonitorConfig::with_interval(Duration::from_millis(500))
    }
}

/// Runs every scenario against `fixture`'s provider. Never panics on a
/// provider's failure: see the [`Report`] (or call
/// [`Report::assert_conforms`]).
pub async fn run<F: Fixture + ?Sized>(fixture: &F) -> Report {
    let mut checks = Vec::new();
    macro_rules! scenario {
        ($name:literal, $body:expr) => {
            let outcome = match $body.await {
                Ok(outcome) => outcome,
                Err(why) => Outcome::Failed(why),
            };
            checks.push(($name, outcome));
        };
    }
    scenario!("zone_life", zone_life(fixture));
    scenario!("monitor_cycle", monitor_cycle(fixture));
    scenario!("backup_restore", backup_restore(fixture));
    Report {
        provider: fixture.provider().kind().to_owned(),
        checks,
    }
}

/// A zone backed up: the zone, each segment's id and plaintext, and the
/// backup bundle's directory.
#[derive(Debug)]
pub struct BackedUp {
    /// The backed-up zone, open.
    pub zone: Zone,
    /// Each segment's id and plaintext, in the order written.
    pub segments: Vec<(String, Vec<u8>)>,
    /// A copy of the backup bundle, as an operator would move it.
    pub bundle: PathBuf,
}

/// Creates zone `spec` through `keyring`, writes segments of 0, 100,
/// 70,000 and 200,000 bytes under two EZK versions into `dir/zone`, backs
/// them up into `dir/backup`, and copies the bundle to `dir/backup-copy`.
///
/// # Errors
/// Whatever creating the zone, rotating its EZK, writing or backing up
/// returns.
pub async fn zone_with_backup(
    keyring: &Arc<Keyring>,
    spec: ZoneSpec,
    dir: &Path,
) -> Result<BackedUp> {
    let zone = keyring
        .create_zone(Arc::new(MemoryManifestStore::new()), spec)
        .await?;
    let seg_dir = dir.join("zone");
    std::fs::create_dir_all(&seg_dir)?;
    let mut files = Vec::new();
    let mut segments = Vec::new();
    for (i, len) in [0usize, 100, 70_000, 200_000].into_iter().enumerate() {
        if i == 2 {
            zone.rotate_ezk().await?;
        }
        let id = format!("{}/{i}", zone.manifest().name());
        let pt = pattern(len, i as u8);
        let path = seg_dir.join(i.to_string());
        std::fs::write(&path, zone.encrypt_segment(&id, &pt)?)?;
        files.push((id.clone(), path));
        segments.push((id, pt));
    }
    let bundle = create_backup(&zone.manifest(), files, dir.join("backup"), |_| {})?;
    let copy = dir.join("backup-copy");
    copy_dir(bundle.dir(), &copy)?;
    Ok(BackedUp {
        zone,
        segments,
        bundle: copy,
    })
}

/// Every segment a finished restore wrote, by id (in id order), as
/// plaintext: decrypted through the restored zone when the restore made
/// one, read as it is otherwise.
///
/// # Errors
/// [`Error::Io`] reading a file; whatever the restored zone's decryption
/// returns.
pub fn restored_segments(report: &RestoreReport) -> Result<Vec<(String, Vec<u8>)>> {
    report
        .segments
        .iter()
        .map(|s| {
            let bytes = std::fs::read(&s.path)?;
            let plaintext = match &report.zone {
                Some(zone) => zone.decrypt_segment(&s.segment_id, &bytes)?.to_vec(),
                None => bytes,
            };
            Ok((s.segment_id.clone(), plaintext))
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), dest)?;
        }
    }
    Ok(())
}

/// Bytes that differ by length and seed.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> std::result::Result<Self, String> {
        let mut salt = [0u8; 8];
        must("randomness", crate::provider::kit::fill_random(&mut salt))?;
        let name = format!(
            "cmek-scenario-{tag}-{}-{}",
            std::process::id(),
            u64::from_le_bytes(salt)
        );
        let dir = std::env::temp_dir().join(name);
        must(
            "create a scratch directory",
            std::fs::create_dir_all(&dir).map_err(Error::from),
        )?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The provider, counting every call that may reach its key service.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn KeyProvider>,
    calls: AtomicU64,
}

impl Counted {
    fn new(inner: Arc<dyn KeyProvider>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicU64::new(0),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl KeyProvider for Counted {
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn key_ref(&self, key_id: &str) -> KeyRef {
        self.inner.key_ref(key_id)
    }
    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        self.count();
        self.inner.wrap_key(root, key, context).await
    }
    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.count();
        self.inner.unwrap_key(root, wrapped, context).await
    }
    fn is_legacy_wrap(&self, wrapped: &WrappedKey) -> bool {
        self.inner.is_legacy_wrap(wrapped)
    }
    async fn unwrap_legacy_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        self.count();
        self.inner.unwrap_legacy_key(root, wrapped, context).await
    }
    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        self.count();
        self.inner.describe_key(root).await
    }
    async fn resolve_key(&self, root: &KeyRef) -> Result<KeyRef> {
        self.count();
        self.inner.resolve_key(root).await
    }
    fn key_in_region(&self, root: &KeyRef, region: &str) -> Result<KeyRef> {
        self.inner.key_in_region(root, region)
    }
    async fn serves_region(&self, root: &KeyRef, region: &str) -> Result<RegionAnswer> {
        self.count();
        self.inner.serves_region(root, region).await
    }
    fn admin(&self) -> Option<&dyn KeyAdmin> {
        self.inner.admin()
    }
    fn access_policy(&self, keys: &[KeyRef]) -> Result<Option<String>> {
        self.inner.access_policy(keys)
    }
    async fn generate_key(
        &self,
        root: &KeyRef,
        context: &EncryptionContext,
    ) -> Result<(SecretKey, WrappedKey)> {
        self.count();
        self.inner.generate_key(root, context).await
    }
    async fn validate_key(&self, root: &KeyRef) -> KeyValidation {
        self.count();
        self.inner.validate_key(root).await
    }
}

fn is_disabled(e: &Error) -> bool {
    matches!(
        e,
        Error::KeyUnavailable {
            state: KeyState::Disabled,
            ..
        }
    )
}

fn is_zone_disabled(e: &Error) -> bool {
    matches!(
        e,
        Error::ZoneUnavailable {
            state: KeyState::Disabled,
            ..
        }
    )
}

/// Every segment of `segments` decrypts in `zone` to its plaintext.
fn reads_back(
    step: &str,
    zone: &Zone,
    segments: &[(String, Vec<u8>, bytes::Bytes)],
) -> std::result::Result<(), String> {
    for (id, pt, ct) in segments {
        let got = must(
            &format!("{step}: decrypt {id}"),
            zone.decrypt_segment(id, ct),
        )?;
        ensure(got[..] == pt[..], || {
            format!("{step}: {id} decrypted to other bytes")
        })?;
    }
    Ok(())
}

/// The server's count, unchanged since `before` (when the fixture has one).
async fn server_unchanged<F: Fixture + ?Sized>(
    fixture: &F,
    key: &KeyRef,
    before: Option<u64>,
    step: &str,
) -> std::result::Result<(), String> {
    let now = fixture.server_calls(key).await;
    ensure(now == before, || {
        format!("{step}: the key service saw requests on the data path ({before:?} -> {now:?})")
    })
}

async fn zone_life<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let counted = Counted::new(p.clone());
    let keyring = Keyring::new(counted.clone());
    let a = must("create key A", fixture.enabled_key().await)?;
    let region = a.region().to_owned();
    let store = Arc::new(MemoryManifestStore::new());
    let zone = must(
        "create the zone under A",
        keyring
            .create_zone(store.clone(), ZoneSpec::new("scenario", &region, a.clone()))
            .await,
    )?;
    ensure(zone.root() == a, || {
        format!("the zone's root is {}, not {a}", zone.root())
    })?;

    // The data path: segments written and read, no call.
    let (calls, server) = (counted.calls(), fixture.server_calls(&a).await);
    let mut segments = Vec::new();
    for i in 0..20usize {
        let id = format!("scenario/{i}");
        let pt = pattern(if i == 19 { 70_000 } else { 1000 * i + 1 }, i as u8);
        let ct = must("encrypt a segment", zone.encrypt_segment(&id, &pt))?;
        segments.push((id, pt, ct));
    }
    reads_back("under EZK 1", &zone, &segments)?;
    ensure(counted.calls() == calls, || {
        format!(
            "{} provider calls on the data path",
            counted.calls() - calls
        )
    })?;
    server_unchanged(fixture, &a, server, "writing and reading").await?;

    // EZK rotation wraps a new EZK: a call.
    let version = must("rotate the EZK", zone.rotate_ezk().await)?;
    ensure(version == 2, || {
        format!("the first EZK rotation made version {version}, not 2")
    })?;
    ensure(counted.calls() > calls, || {
        "rotating the EZK made no provider call".into()
    })?;
    if let (Some(before), Some(now)) = (server, fixture.server_calls(&a).await) {
        ensure(now > before, || {
            "rotating the EZK made no request the key service saw".into()
        })?;
    }
    let pt = pattern(5000, 0xE2);
    let ct = must(
        "encrypt under EZK 2",
        zone.encrypt_segment("scenario/ezk-2", &pt),
    )?;
    segments.push(("scenario/ezk-2".into(), pt, ct));

    // Root rotation to key B.
    let b = must("create key B", fixture.enabled_key().await)?;
    must("rotate the root to B", zone.rotate_root(b.clone()).await)?;
    ensure(zone.root() == b && *zone.manifest().root() == b, || {
        format!(
            "after rotating to {b} the zone's root is {} and its manifest's {}",
            zone.root(),
            zone.manifest().root()
        )
    })?;
    let pt = pattern(3000, 0xB0);
    let ct = must(
        "encrypt under B",
        zone.encrypt_segment("scenario/root-b", &pt),
    )?;
    segments.push(("scenario/root-b".into(), pt, ct));

    // Reopened through the anchor, in a new keyring (as another process):
    // every segment decrypts there, with no call.
    let reopened = must(
        "reopen through the anchor",
        Keyring::new(p.clone())
            .open_zone(store.clone(), &zone.anchor())
            .await,
    )?;
    ensure(reopened.id() == zone.id() && reopened.root() == b, || {
        format!(
            "reopened as zone {} under {}, not {} under {b}",
            reopened.id(),
            reopened.root(),
            zone.id()
        )
    })?;
    let server = fixture.server_calls(&b).await;
    reads_back("reopened", &reopened, &segments)?;
    let ct = must(
        "encrypt in the reopened zone",
        reopened.encrypt_segment("scenario/reopened", b"after"),
    )?;
    let got = must(
        "decrypt in the first zone what the reopened one wrote",
        zone.decrypt_segment("scenario/reopened", &ct),
    )?;
    ensure(&got[..] == b"after", || {
        "the reopened zone's segment decrypted to other bytes".into()
    })?;
    server_unchanged(fixture, &b, server, "reading in the reopened zone").await?;

    // A is no longer needed: disabled, the zone still opens.
    must("disable A", fixture.set_enabled(&a, false).await)?;
    let opened = must(
        "reopen with A disabled",
        Keyring::new(p.clone())
            .open_zone(store.clone(), &zone.anchor())
            .await,
    )?;
    reads_back("reopened with A disabled", &opened, &segments[..1])?;

    // B disabled: the zone is refused, and says why.
    must("disable B", fixture.set_enabled(&b, false).await)?;
    let refused = Keyring::new(p.clone())
        .open_zone(store.clone(), &zone.anchor())
        .await;
    let mut outcome = Outcome::Passed;
    match refused {
        Ok(_) if fixture.deviations().key_state_not_enforced => {
            outcome = Outcome::Waived(
                "the zone opened with its key disabled: the test server does not enforce key \
                 states on unwrap (Deviations::key_state_not_enforced)",
            );
        }
        other => {
            must_fail(
                "open with B disabled",
                other,
                "KeyUnavailable (Disabled)",
                is_disabled,
            )?;
        }
    }

    if fixture.disable_is_final() {
        ensure(fixture.set_enabled(&b, true).await.is_err(), || {
            "enabling a key whose disabling is final succeeded".into()
        })?;
    } else {
        // B enabled again: the zone opens and serves.
        must("enable B", fixture.set_enabled(&b, true).await)?;
        let back = must(
            "reopen with B enabled again",
            Keyring::new(p).open_zone(store, &zone.anchor()).await,
        )?;
        reads_back("reopened with B enabled again", &back, &segments)?;
    }
    Ok(outcome)
}

/// The next availability the monitor reports for a zone, within `deadline`.
async fn next_availability(
    events: &mut tokio::sync::broadcast::Receiver<MonitorEvent>,
    deadline: Duration,
) -> std::result::Result<ZoneAvailability, String> {
    tokio::time::timeout(deadline, async {
        loop {
            match events.recv().await {
                Ok(MonitorEvent::ZoneAvailabilityChanged { new, .. }) => return Ok(new),
                Ok(_) => {}
                Err(e) => return Err(format!("the monitor's events ended: {e}")),
            }
        }
    })
    .await
    .map_err(|_| format!("the zone did not follow its key within {deadline:?}"))?
}

async fn monitor_cycle<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let p = fixture.provider();
    let root = must("create a key", fixture.enabled_key().await)?;
    let zone = must(
        "create the zone",
        Keyring::new(p)
            .create_zone(
                Arc::new(MemoryManifestStore::new()),
                ZoneSpec::new("scenario-monitor", root.region(), root.clone()),
            )
            .await,
    )?;
    let segment = must("encrypt", zone.encrypt_segment("monitor/1", b"rows"))?;

    let config = fixture.monitor_config();
    let interval = config.interval;
    let monitor = KeyMonitor::new(config);
    monitor.watch_zone(&zone);
    let mut events = monitor.subscribe();
    let _loop = monitor.spawn();
    let deadline = interval + monitor.config().check_timeout;
    ensure(zone.is_available(), || {
        "the zone is not available under an enabled key".into()
    })?;

    // Disabled: the zone is gated within one interval plus one check.
    must("disable the key", fixture.set_enabled(&root, false).await)?;
    let started = Instant::now();
    let now = next_availability(&mut events, deadline).await?;
    ensure(
        now == ZoneAvailability::Unavailable(KeyState::Disabled),
        || format!("with its key disabled the zone became {now:?}"),
    )?;
    ensure(started.elapsed() < deadline, || {
        format!("the zone was gated after {:?}", started.elapsed())
    })?;
    let status = monitor.key_status(&root);
    ensure(status == Some(KeyState::Disabled), || {
        format!("the monitor reports the disabled key as {status:?}")
    })?;
    let gated = zone.decrypt_segment("monitor/1", &segment);
    ensure(matches!(&gated, Err(e) if is_zone_disabled(e)), || {
        format!("decrypt in the gated zone: {gated:?}, expected ZoneUnavailable (Disabled)")
    })?;

    if fixture.disable_is_final() {
        // No way back: enabling fails, the zone stays gated, and it cannot
        // move to another key.
        ensure(fixture.set_enabled(&root, true).await.is_err(), || {
            "enabling a key whose disabling is final succeeded".into()
        })?;
        let report = monitor.check_now().await;
        let state = report.key_state(&root);
        ensure(state == Some(KeyState::Disabled), || {
            format!("after a failed enable the key is {state:?}")
        })?;
        ensure(zone.decrypt_segment("monitor/1", &segment).is_err(), || {
            "the zone serves under a key disabled for good".into()
        })?;
        let fresh = must("create another key", fixture.enabled_key().await)?;
        let moved = zone.rotate_root(fresh).await;
        ensure(matches!(&moved, Err(e) if is_zone_disabled(e)), || {
            format!("moving the gated zone to another key: {moved:?}")
        })?;
        return Ok(Outcome::Passed);
    }

    // Enabled again: it serves, with no reload.
    must("enable the key", fixture.set_enabled(&root, true).await)?;
    let now = next_availability(&mut events, deadline).await?;
    ensure(now == ZoneAvailability::Available, || {
        format!("with its key enabled again the zone became {now:?}")
    })?;
    let got = must(
        "decrypt once the key is enabled",
        zone.decrypt_segment("monitor/1", &segment),
    )?;
    ensure(&got[..] == b"rows", || "decrypted to other bytes".into())?;
    let report = monitor.check_now().await;
    let (state, availability) = (report.key_state(&root), report.zone_availability(zone.id()));
    ensure(
        state == Some(KeyState::Enabled) && availability == Some(ZoneAvailability::Available),
        || format!("a check now reports the key {state:?} and the zone {availability:?}"),
    )?;
    Ok(Outcome::Passed)
}

async fn backup_restore<F: Fixture + ?Sized>(fixture: &F) -> Check {
    let scratch = Scratch::new("backup")?;
    let dir = &scratch.0;
    let p = fixture.provider();
    let a = must("create key A", fixture.enabled_key().await)?;
    let region = a.region().to_owned();
    let source = Keyring::new(p.clone());
    let backed = must(
        "back up a zone under A",
        zone_with_backup(
            &source,
            ZoneSpec::new("scenario-backup", &region, a.clone()),
            dir,
        )
        .await,
    )?;
    let (target_p, b) = must("the restore target", fixture.restore_target().await)?;
    let trust = SourceTrust::roots([a.clone()]);
    let mut restored = Vec::new();
    for mode in [
        RestoreMode::Rewrap,
        RestoreMode::Reencrypt,
        RestoreMode::Plaintext,
    ] {
        let dest = dir.join(format!("restored-{mode:?}"));
        let spec = ZoneSpec::new("scenario-restored", &region, b.clone());
        let target = Keyring::new(target_p.clone());
        let restore = match mode {
            RestoreMode::Rewrap => Restore::rewrap(
                &backed.bundle,
                &dest,
                source.clone(),
                trust.clone(),
                target,
                spec,
            ),
            RestoreMode::Reencrypt => Restore::reencrypt(
                &backed.bundle,
                &dest,
                source.clone(),
                trust.clone(),
                target,
                spec,
            ),
            RestoreMode::Plaintext => Restore::plaintext(
                &backed.bundle,
                &dest,
                source.clone(),
                trust.clone(),
                &region,
            ),
        };
        let report = must(&format!("restore ({mode:?})"), restore.run(|_| {}).await)?;
        ensure(report.restored == backed.segments.len(), || {
            format!(
                "{mode:?}: restored {} of {} segments",
                report.restored,
                backed.segments.len()
            )
        })?;
        let files: Vec<(String, PathBuf)> = report
            .segments
            .iter()
            .map(|s| (s.segment_id.clone(), s.path.clone()))
            .collect();
        match (&report.zone, &report.zone_manifest, mode) {
            (None, None, RestoreMode::Plaintext) => {
                for (id, pt) in &backed.segments {
                    let path = find(&files, id, mode)?;
                    let got = must(
                        "read a plaintext file",
                        std::fs::read(path).map_err(Error::from),
                    )?;
                    ensure(got == *pt, || {
                        format!("{mode:?}: {id} restored other bytes")
                    })?;
                }
            }
            (Some(zone), Some(manifest), RestoreMode::Rewrap | RestoreMode::Reencrypt) => {
                ensure(
                    zone.root() == b && zone.manifest().region() == region,
                    || {
                        format!(
                            "{mode:?}: restored under {} in {}, not {b} in {region}",
                            zone.root(),
                            zone.manifest().region()
                        )
                    },
                )?;
                restored.push((mode, zone.anchor(), manifest.clone(), files));
            }
            (zone, manifest, _) => {
                return Err(format!(
                    "{mode:?}: restored zone {:?}, manifest {manifest:?}",
                    zone.as_ref().map(|z| z.id())
                ))
            }
        }
    }

    // A can go: the restored zones reopen from their manifests, under B
    // alone, and every segment decrypts.
    must("disable A", fixture.set_enabled(&a, false).await)?;
    for (mode, anchor, manifest, files) in restored {
        let zone = must(
            &format!("{mode:?}: reopen the restored zone with A disabled"),
            Keyring::new(target_p.clone())
                .open_zone(Arc::new(FileManifestStore::new(manifest)), &anchor)
                .await,
        )?;
        for (id, pt) in &backed.segments {
            let path = find(&files, id, mode)?;
            let bytes = must(
                "read a restored segment",
                std::fs::read(path).map_err(Error::from),
            )?;
            let got = must(
                &format!("{mode:?}: decrypt restored {id}"),
                zone.decrypt_segment(id, &bytes),
            )?;
            ensure(got[..] == pt[..], || {
                format!("{mode:?}: {id} decrypted to other bytes")
            })?;
        }
    }
    Ok(Outcome::Passed)
}

/// The restored file of segment `id`.
fn find<'a>(
    files: &'a [(String, PathBuf)],
    id: &str,
    mode: RestoreMode,
) -> std::result::Result<&'a Path, String> {
    files
        .iter()
        .find(|(s, _)| s == id)
        .map(|(_, p)| p.as_path())
        .ok_or_else(|| format!("{mode:?}: segment {id} was not restored"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MockProvider;
    use std::sync::atomic::AtomicU32;

    struct Mock(Arc<MockProvider>, AtomicU32);

    #[async_trait]
    impl Fixture for Mock {
        fn provider(&self) -> Arc<dyn KeyProvider> {
            self.0.clone()
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            let n = self.1.fetch_add(1, Ordering::Relaxed);
            Ok(self.0.add_key(&format!("key-{n}")))
        }
    }

    #[tokio::test]
    async fn the_mock_passes_every_scenario() {
        let report = run(&Mock(Arc::new(MockProvider::new()), AtomicU32::new(0))).await;
        report.assert_all_passed();
        assert_eq!(report.checks.len(), 3);
    }

    /// A fixture whose disabling does nothing: the zone keeps opening and
    /// the monitor never gates it, and both scenarios say so.
    struct NeverDisables(Mock);

    #[async_trait]
    impl Fixture for NeverDisables {
        fn provider(&self) -> Arc<dyn KeyProvider> {
            self.0.provider()
        }
        async fn enabled_key(&self) -> Result<KeyRef> {
            self.0.enabled_key().await
        }
        async fn set_enabled(&self, _: &KeyRef, _: bool) -> Result<()> {
            Ok(())
        }
        fn monitor_config(&self) -> MonitorConfig {
            let mut config = MonitorConfig::with_interval(Duration::from_millis(50));
            config.check_timeout = Duration::from_millis(500);
            config
        }
    }

    #[tokio::test]
    async fn a_key_that_is_never_disabled_fails_the_scenarios() {
        let fixture = NeverDisables(Mock(Arc::new(MockProvider::new()), AtomicU32::new(0)));
        let report = run(&fixture).await;
        assert!(!report.conforms());
        for name in ["zone_life", "monitor_cycle"] {
            assert!(
                matches!(report.outcome(name), Some(Outcome::Failed(_))),
                "{name}: {report}"
            );
        }
        assert_eq!(report.outcome("backup_restore"), Some(&Outcome::Passed));
    }
}
