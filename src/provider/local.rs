//! The local key-file provider: root keys kept in one file on disk.
//!
//! The embedded default for demos, tests and single-node deployments. The
//! file holds root keys in the clear (protected by owner-only permissions,
//! `0600`), so it gives key *management* — named keys, disable, re-enable,
//! crypto-shredding by deleting the file — but not the separation a KMS gives.
//! Its layout is versioned and checksummed (docs/FORMAT.md); every change is
//! written atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Wrapping uses [`KeyWrapper`] with associated data binding the root key id
//! and the encryption context. Each key's wrap count is persisted with it, so
//! the wrap limit holds across restarts.
//!
//! # Several processes on one file
//!
//! A service and the `cmek` CLI (or several services) may share one file.
//! The file is the only authority; this type keeps no copy of the keys:
//!
//! * Every change — adding, destroying, a state change, a wrap (which
//!   advances the key's persisted wrap count) — takes an exclusive advisory
//!   lock on `.NAME.lock` beside the file, re-reads and re-parses the file
//!   inside the lock, applies the change and replaces the file atomically
//!   before releasing the lock. No process writes back a stale copy, so no
//!   other process's change is lost.
//! * Every read (`describe_key`, `unwrap_key`, `list_keys`, and the checks
//!   of a wrap) re-reads the file, so a key another process disabled or
//!   destroyed is refused at once. The file is re-read every time rather
//!   than when a cheap fingerprint (inode, length, modification time)
//!   changes, because such a fingerprint can repeat across two writes —
//!   inode numbers are reused after a rename frees them, timestamps are
//!   coarse, and a state change keeps the length — and a repeat would let a
//!   process keep using a key that was disabled. Calls are rare by design
//!   (a zone open, a rotation, a monitor check), the file is small and its
//!   read is capped, so the re-read costs little. Replacements are renames,
//!   so a read without the lock sees one complete version.
//! * Wrap counts never go backwards: they advance only under the lock, from
//!   the count in the file, and a provider also remembers the highest count
//!   it has seen per key and never stores or reports less (should an older
//!   copy of the file be put back).
//!
//! Calls do their (small, blocking) file I/O on the calling thread.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::kit::{check_kind, root_wrap_aad};
use super::{EncryptionContext, KeyAdmin, KeyProvider, KeyRef, KeyState, NewKey, WrappedKey};
use crate::cipher::{KeyWrapper, SHA256_LEN};
use crate::codec::{open_checksummed, seal_checksummed, start_checksummed};
use crate::error::StateRejection;
use crate::fsutil::{self, ExclusiveLock};
use crate::secret::{SecretKey, KEY_LEN};
use crate::{Error, Result};

/// Provider kind of [`LocalKeyProvider`] in a [`KeyRef`].
pub const LOCAL_PROVIDER: &str = "local";

const MAGIC: &[u8; 8] = b"CMEK-LKF";
const FILE_VERSION: u16 = 1;
const FILE_MODE: u32 = 0o600;
const MAX_ID_LEN: usize = 256;
const MAX_REGION_LEN: usize = 64;
/// Keys one file may hold; far above any sensible use, it bounds parsing.
const MAX_KEYS: usize = 4096;
/// The longest well-formed key file (every length at its maximum); a longer
/// file is refused before it is read.
const MAX_FILE_LEN: u64 = (MAGIC.len()
    + 2
    + 2
    + MAX_REGION_LEN
    + 4
    + MAX_KEYS * (2 + MAX_ID_LEN + 1 + 8 + 8 + KEY_LEN)
    + SHA256_LEN) as u64;

const WHAT: &str = "local key file";

/// The keys of a file, by id.
type Keys = BTreeMap<String, LocalKey>;

/// Root keys in a key file on disk: named keys that can be disabled,
/// re-enabled and destroyed, in a versioned, checksummed file (owner-only,
/// replaced atomically). Several providers, in one process or several, may
/// share a file: every change is made under an exclusive lock on the file as
/// re-read inside it, and every call re-reads the file, so no change is lost
/// and a key another process disabled or destroyed is refused at once; wrap
/// counts never go backwards. See `docs/FORMAT.md` for the layout.
///
/// ```
/// use cmek::provider::LocalKeyProvider;
/// use cmek::{EncryptionContext, KeyProvider, SecretKey};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cmek::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
/// let root = provider.add_key("root-1")?;
/// let ctx = EncryptionContext::new().with("zone", "orders");
/// let ezk = SecretKey::generate()?;
/// let wrapped = provider.wrap_key(&root, &ezk, &ctx).await?;
/// assert_eq!(provider.unwrap_key(&root, &wrapped, &ctx).await?, ezk);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LocalKeyProvider {
    path: PathBuf,
    lock_path: PathBuf,
    region: String,
    /// The highest wrap count this provider has seen for each key, by id
    /// and creation time (a key destroyed and added again under its id is
    /// another key; one re-added within the same second inherits the count,
    /// which errs on the safe side).
    wraps_seen: Mutex<BTreeMap<(String, u64), u64>>,
}

#[derive(Debug)]
struct LocalKey {
    material: SecretKey,
    state: KeyState,
    created_unix: u64,
    wraps: u64,
}

/// A summary of one root key, without its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKeyInfo {
    /// The key's reference.
    pub key: KeyRef,
    /// Its state.
    pub state: KeyState,
    /// When it was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// How many wraps it has performed.
    pub wraps: u64,
}

impl LocalKeyProvider {
    fn new(path: PathBuf, region: String) -> Self {
        Self {
            lock_path: fsutil::lock_path_for(&path),
            path,
            region,
            wraps_seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// Creates a new, empty key file at `path` (owner-only permissions) for
    /// keys in `region`. Fails if the file exists.
    ///
    /// # Errors
    /// [`Error::Io`] if the file exists or cannot be written;
    /// [`Error::InvalidArgument`] for an empty or overlong region.
    pub fn create(path: impl AsRef<Path>, region: &str) -> Result<Self> {
        check_name("region", region, MAX_REGION_LEN)?;
        let provider = Self::new(path.as_ref().to_path_buf(), region.to_owned());
        // Under the lock, so that of two processes creating the file at once
        // one creates it and the other finds it; the file appears by rename,
        // complete, so a reader never sees it half-written.
        let _lock = ExclusiveLock::acquire(&provider.lock_path)?;
        match fs::symlink_metadata(&provider.path) {
            Ok(_) => {
                return Err(Error::io(
                    &provider.path,
                    std::io::ErrorKind::AlreadyExists.into(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&provider.path, e)),
        }
        let bytes = encode(&provider.region, &BTreeMap::new());
        if let Err(e) = fsutil::write_atomic(&provider.path, &bytes, FILE_MODE) {
            // Nothing existed before (checked under the lock): a file whose
            // creation reported failure must not stay behind.
            let _ = fs::remove_file(&provider.path);
            return Err(e);
        }
        tracing::info!(path = %provider.path.display(), region, "created local key file");
        Ok(provider)
    }

    /// Opens an existing key file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::Malformed`] if it is
    /// truncated, corrupted, of an unknown version or not a key file at all;
    /// [`Error::LimitExceeded`] if it is longer than any key file can be.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = fsutil::read_capped(&path, MAX_FILE_LEN, WHAT)?
            .ok_or_else(|| Error::io(&path, std::io::ErrorKind::NotFound.into()))?;
        let bytes = Zeroizing::new(bytes);
        warn_if_readable_by_others(&path);
        let (region, mut keys) = decode(&bytes)?;
        let provider = Self::new(path, region);
        provider.reconcile_wraps(&mut keys);
        Ok(provider)
    }

    /// Opens the key file at `path`, creating an empty one for `region` if
    /// there is none. An existing file keeps its own region. Safe to call
    /// from several processes at once: one creates the file, the others
    /// open it.
    ///
    /// # Errors
    /// As [`open`](Self::open) and [`create`](Self::create).
    pub fn open_or_create(path: impl AsRef<Path>, region: &str) -> Result<Self> {
        match Self::open(&path) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                match Self::create(&path, region) {
                    // Another process created it between the two calls.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::open(path)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The region every key of this file lives in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The reference of key `id` (whether or not it exists).
    pub fn key_ref(&self, id: &str) -> KeyRef {
        KeyRef::new(LOCAL_PROVIDER, id, &self.region)
    }

    /// Generates a new enabled root key named `id` and persists it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a duplicate or invalid id;
    /// [`Error::LimitExceeded`] past 4096 keys; [`Error::Io`] if the file
    /// cannot be written (the key is then not added).
    pub fn add_key(&self, id: &str) -> Result<KeyRef> {
        check_name("key id", id, MAX_ID_LEN)?;
        let material = SecretKey::generate()?;
        self.update(|keys| {
            if keys.contains_key(id) {
                return Err(Error::InvalidArgument(format!(
                    "local key {id:?} already exists"
                )));
            }
            insert_new(keys, id, material)
        })?;
        tracing::info!(key = id, "added local root key");
        Ok(self.key_ref(id))
    }

    /// The reference of key `id`, generated and persisted first if the
    /// file has no key of that id: what a service calls at every start to
    /// have its root key, the first start included. Idempotent, and safe
    /// when several processes call it at once on one file: the check and
    /// the addition happen under the file's lock, so exactly one key is
    /// made and every caller gets it. An existing key is returned in
    /// whatever state it is in (a disabled one stays disabled:
    /// [`describe_key`](KeyProvider::describe_key) tells); nothing is
    /// written then.
    ///
    /// # Errors
    /// As [`add_key`](Self::add_key), except that an existing id is not one.
    pub fn get_or_add_key(&self, id: &str) -> Result<KeyRef> {
        check_name("key id", id, MAX_ID_LEN)?;
        // Most calls find the key: no lock, no write.
        if self.load_existing()?.contains_key(id) {
            return Ok(self.key_ref(id));
        }
        let material = SecretKey::generate()?;
        let added = self.update_if(|keys| {
            if keys.contains_key(id) {
                // Another process added it since the read above.
                return Ok(None);
            }
            insert_new(keys, id, material).map(Some)
        })?;
        if added.is_some() {
            tracing::info!(key = id, "added local root key");
        }
        Ok(self.key_ref(id))
    }

    /// Disables key `id`: wrap and unwrap fail until it is re-enabled.
    ///
    /// # Errors
    /// [`Error::KeyUnavailable`] (not found) for an unknown id; [`Error::Io`].
    pub fn disable_key(&self, id: &str) -> Result<()> {
        self.set_state(id, KeyState::Disabled)
    }

    /// Re-enables key `id` (from disabled or pending deletion).
    ///
    /// # Errors
    /// As [`disable_key`](Self::disable_key).
    pub fn enable_key(&self, id: &str) -> Result<()> {
        self.set_state(id, KeyState::Enabled)
    }

    /// Marks key `id` pending deletion: unusable, but still recoverable with
    /// [`enable_key`](Self::enable_key). The material stays in the file; to
    /// destroy it, use [`destroy_key`](Self::destroy_key).
    ///
    /// # Errors
    /// As [`disable_key`](Self::disable_key).
    pub fn schedule_key_deletion(&self, id: &str) -> Result<()> {
        self.set_state(id, KeyState::PendingDeletion)
    }

    /// Removes key `id` and its material from the file for good. Every key
    /// wrapped under it becomes unrecoverable (crypto-shredding).
    ///
    /// # Errors
    /// As [`disable_key`](Self::disable_key).
    pub fn destroy_key(&self, id: &str) -> Result<()> {
        self.update(|keys| {
            keys.remove(id)
                .map(drop)
                .ok_or_else(|| not_found(&self.key_ref(id)))
        })?;
        tracing::warn!(key = id, "destroyed local root key");
        Ok(())
    }

    /// Every key, in id order, without material, as the file holds them now.
    ///
    /// # Errors
    /// As [`open`](Self::open) (the file is read again), and
    /// [`Error::StateRejected`] if the file now names another region.
    pub fn list_keys(&self) -> Result<Vec<LocalKeyInfo>> {
        Ok(self
            .load_existing()?
            .iter()
            .map(|(id, k)| LocalKeyInfo {
                key: self.key_ref(id),
                state: k.state,
                created_unix: k.created_unix,
                wraps: k.wraps,
            })
            .collect())
    }

    /// Key `id`'s material, for tests that look for it where it must not be.
    #[cfg(test)]
    pub(crate) fn material_for_tests(&self, id: &str) -> Option<[u8; crate::secret::KEY_LEN]> {
        self.load_existing()
            .ok()?
            .get(id)
            .map(|k| *k.material.expose_secret())
    }

    fn set_state(&self, id: &str, state: KeyState) -> Result<()> {
        self.update(|keys| {
            let key = keys
                .get_mut(id)
                .ok_or_else(|| not_found(&self.key_ref(id)))?;
            key.state = state;
            Ok(())
        })?;
        tracing::info!(key = id, %state, "changed local root key state");
        Ok(())
    }

    /// One read-modify-write of the file, under its lock: re-reads it,
    /// applies `change`, and replaces it. A `change` that fails, or a write
    /// that fails, leaves the file as it was.
    fn update<T>(&self, change: impl FnOnce(&mut Keys) -> Result<T>) -> Result<T> {
        self.update_if(|keys| change(keys).map(Some))
            .map(|out| out.expect("always written"))
    }

    /// As [`update`](Self::update), but a `change` that returns `None`
    /// changed nothing, and the file is not written.
    fn update_if<T>(
        &self,
        change: impl FnOnce(&mut Keys) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let _lock = ExclusiveLock::acquire(&self.lock_path)?;
        // Inside the lock: the copy changed is the newest, whoever wrote it.
        let mut keys = self.load_existing()?;
        let Some(out) = change(&mut keys)? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(encode(&self.region, &keys));
        fsutil::write_atomic(&self.path, &bytes, FILE_MODE)?;
        // Only counts that reached the file are remembered, so a failed
        // wrap (which handed out nothing) is not counted.
        self.reconcile_wraps(&mut keys);
        Ok(Some(out))
    }

    /// The keys as the file holds them now; `None` if the file is gone
    /// (deleted: every key in it is destroyed).
    fn load(&self) -> Result<Option<Keys>> {
        let Some(bytes) = fsutil::read_capped(&self.path, MAX_FILE_LEN, WHAT)? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(bytes);
        let (region, mut keys) = decode(&bytes)?;
        if region != self.region {
            // Another file was put in this one's place: its keys are not
            // the ones this provider's references name.
            return Err(Error::StateRejected {
                what: WHAT,
                reason: StateRejection::Mismatch(format!(
                    "the file now holds keys of region {region:?}, opened for {:?}",
                    self.region
                )),
            });
        }
        self.reconcile_wraps(&mut keys);
        Ok(Some(keys))
    }

    /// As [`load`](Self::load), with a missing file an I/O error: changing
    /// or listing a file that was deleted must not quietly start a new one.
    fn load_existing(&self) -> Result<Keys> {
        self.load()?
            .ok_or_else(|| Error::io(&self.path, std::io::ErrorKind::NotFound.into()))
    }

    /// Raises each key's wrap count to the highest this provider has seen
    /// for it, and remembers the counts now in `keys`: counts never go
    /// backwards, even if an older copy of the file is put back.
    fn reconcile_wraps(&self, keys: &mut Keys) {
        // A panic while holding the lock cannot leave a count lower than
        // one already seen, so a poisoned lock is safe to use.
        let mut seen = self.wraps_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (id, key) in keys.iter_mut() {
            let highest = seen.entry((id.clone(), key.created_unix)).or_insert(0);
            if *highest > key.wraps {
                tracing::warn!(key = %id, in_file = key.wraps, seen = *highest,
                    "local key file holds a lower wrap count than already seen; keeping the higher");
                key.wraps = *highest;
            } else {
                *highest = key.wraps;
            }
        }
    }

    /// The key `root` names, as the file holds it now, if it is usable.
    fn usable_key(&self, root: &KeyRef) -> Result<LocalKey> {
        self.check_ref(root)?;
        let mut keys = self.load()?.ok_or_else(|| not_found(root))?;
        let key = keys.remove(root.key_id()).ok_or_else(|| not_found(root))?;
        check_usable(root, &key)?;
        Ok(key)
    }

    fn check_ref(&self, root: &KeyRef) -> Result<()> {
        check_kind(LOCAL_PROVIDER, root)?;
        if root.region() != self.region {
            return Err(Error::InvalidArgument(format!(
                "key {root} is not in this key file's region {:?}",
                self.region
            )));
        }
        Ok(())
    }
}

/// Adds a new enabled key `id` with `material` to `keys`, within the
/// file's key limit. The caller checked that `id` is free.
fn insert_new(keys: &mut Keys, id: &str, material: SecretKey) -> Result<()> {
    if keys.len() >= MAX_KEYS {
        return Err(Error::LimitExceeded {
            what: "keys in one local key file",
            limit: MAX_KEYS as u64,
        });
    }
    keys.insert(
        id.to_owned(),
        LocalKey {
            material,
            state: KeyState::Enabled,
            created_unix: now_unix(),
            wraps: 0,
        },
    );
    Ok(())
}

fn check_usable(root: &KeyRef, key: &LocalKey) -> Result<()> {
    if key.state.is_usable() {
        Ok(())
    } else {
        Err(Error::KeyUnavailable {
            key: root.to_string(),
            state: key.state,
        })
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn kind(&self) -> &str {
        LOCAL_PROVIDER
    }

    fn key_ref(&self, key_id: &str) -> KeyRef {
        LocalKeyProvider::key_ref(self, key_id)
    }

    fn admin(&self) -> Option<&dyn KeyAdmin> {
        Some(self)
    }

    async fn wrap_key(
        &self,
        root: &KeyRef,
        key: &SecretKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey> {
        self.check_ref(root)?;
        let aad = root_wrap_aad(root.key_id(), context);
        // Under the lock, from the file as it is now: a key another process
        // disabled or destroyed is refused, and the count advances from the
        // newest count any process stored.
        let wrapped = self.update(|keys| {
            let entry = keys.get_mut(root.key_id()).ok_or_else(|| not_found(root))?;
            check_usable(root, entry)?;
            let wrapper: KeyWrapper = KeyWrapper::with_usage(&entry.material, entry.wraps);
            let wrapped = wrapper.wrap(key, &aad)?;
            entry.wraps = wrapper.wraps_performed();
            Ok(wrapped)
        })?;
        Ok(WrappedKey::from_bytes(wrapped.to_vec()))
    }

    async fn unwrap_key(
        &self,
        root: &KeyRef,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<SecretKey> {
        let entry = self.usable_key(root)?;
        let wrapper: KeyWrapper = KeyWrapper::new(&entry.material);
        wrapper.unwrap(wrapped.as_bytes(), &root_wrap_aad(root.key_id(), context))
    }

    async fn describe_key(&self, root: &KeyRef) -> Result<KeyState> {
        self.check_ref(root)?;
        Ok(self
            .load()?
            .and_then(|keys| keys.get(root.key_id()).map(|k| k.state))
            .unwrap_or(KeyState::NotFound))
    }
}

/// Keys are created by name in the file; there are no replicas.
#[async_trait]
impl KeyAdmin for LocalKeyProvider {
    async fn create_key(&self, new: &NewKey) -> Result<KeyRef> {
        if new.is_multi_region() {
            return Err(Error::InvalidArgument(
                "a local key file has no multi-region keys: its keys serve its own region".into(),
            ));
        }
        let name = new
            .name()
            .ok_or_else(|| Error::InvalidArgument("a local key needs a name, its key id".into()))?;
        self.add_key(name)
    }

    async fn enable_key(&self, key: &KeyRef) -> Result<()> {
        self.check_ref(key)?;
        LocalKeyProvider::enable_key(self, key.key_id())
    }

    async fn disable_key(&self, key: &KeyRef) -> Result<()> {
        self.check_ref(key)?;
        LocalKeyProvider::disable_key(self, key.key_id())
    }
}

fn not_found(root: &KeyRef) -> Error {
    Error::KeyUnavailable {
        key: root.to_string(),
        state: KeyState::NotFound,
    }
}

fn check_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() || name.len() > max || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                    "local key file is accessible to users other than its owner");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn state_code(state: KeyState) -> u8 {
    match state {
        KeyState::Disabled => 2,
        KeyState::PendingDeletion => 3,
        // Only the three states above are ever stored; anything else a
        // future caller sets is stored as the safe choice, disabled.
        KeyState::Enabled => 1,
        _ => 2,
    }
}

fn state_from_code(code: u8) -> Option<KeyState> {
    match code {
        1 => Some(KeyState::Enabled),
        2 => Some(KeyState::Disabled),
        3 => Some(KeyState::PendingDeletion),
        _ => None,
    }
}

/// Serializes the file (layout in docs/FORMAT.md). The result holds key
/// material: callers keep it in a `Zeroizing` buffer.
fn encode(region: &str, keys: &BTreeMap<String, LocalKey>) -> Vec<u8> {
    let mut out = start_checksummed(MAGIC, FILE_VERSION);
    out.extend_from_slice(&(region.len() as u16).to_be_bytes());
    out.extend_from_slice(region.as_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for (id, key) in keys {
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id.as_bytes());
        out.push(state_code(key.state));
        out.extend_from_slice(&key.created_unix.to_be_bytes());
        out.extend_from_slice(&key.wraps.to_be_bytes());
        out.extend_from_slice(key.material.expose_secret());
    }
    seal_checksummed(&mut out);
    out
}

/// Parses a key file and counts its keys, for the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_key_file(bytes: &[u8]) -> Result<usize> {
    decode(bytes).map(|(_, keys)| keys.len())
}

fn decode(bytes: &[u8]) -> Result<(String, BTreeMap<String, LocalKey>)> {
    let mut r = open_checksummed(bytes, MAGIC, FILE_VERSION, WHAT)?;
    let region = r.str("region", MAX_REGION_LEN)?;
    let count = r.u32()? as usize;
    if count > MAX_KEYS {
        return Err(Error::malformed(
            WHAT,
            format!("{count} keys exceeds {MAX_KEYS}"),
        ));
    }
    let mut keys = BTreeMap::new();
    for _ in 0..count {
        let id = r.str("key id", MAX_ID_LEN)?;
        let code = r.u8()?;
        let state = state_from_code(code)
            .ok_or_else(|| Error::malformed(WHAT, format!("unknown key state {code}")))?;
        let created_unix = r.u64()?;
        let wraps = r.u64()?;
        let material = SecretKey::from_slice(r.take(KEY_LEN)?)?;
        let key = LocalKey {
            material,
            state,
            created_unix,
            wraps,
        };
        if keys.insert(id, key).is_some() {
            return Err(Error::malformed(WHAT, "duplicate key id"));
        }
    }
    r.finish()?;
    Ok((region, keys))
}

#[cfg(test)]
mod tests;
