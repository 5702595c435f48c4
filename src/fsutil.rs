//! Crash-safe file replacement.
//!
//! [`write_atomic`] writes a temporary file beside the target, syncs it,
//! renames it over the target and syncs the directory, so that after a crash
//! the target holds either the old contents or the new, never a mix, and the
//! old stays in place until the new is durable.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

#[cfg(test)]
pub(crate) use faults::{Fault, Step};

/// Test builds can make one step of the next file write fail, as a full
/// disk or a failing device would; other builds compile this away.
#[cfg(not(test))]
#[inline(always)]
fn inject(_step: Step) -> std::io::Result<()> {
    Ok(())
}
#[cfg(not(test))]
#[derive(Clone, Copy)]
enum Step {
    Create,
    Write,
    SyncFile,
    Rename,
    SyncDir,
}
#[cfg(test)]
use faults::inject;

/// Replaces `path` with `contents` atomically and durably. On Unix the new
/// file gets permission bits `mode` (e.g. `0o600`) from its creation on, so
/// the contents are never readable by others, even briefly.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_path(path)?;
    let result = write_synced(&tmp, contents, mode)
        .and_then(|()| {
            inject(Step::Rename)
                .and_then(|()| fs::rename(&tmp, path))
                .map_err(|e| Error::io(path, e))
        })
        .and_then(|()| sync_dir(&dir));
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `path` with `contents`, failing if it already exists; durable like
/// [`write_atomic`].
pub(crate) fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let result = write_synced(path, contents, mode).and_then(|()| sync_dir(&parent_dir(path)));
    if result.is_err() {
        // Nothing existed before: a partial file must not stay behind to
        // be mistaken for a complete one (it would fail its checksum).
        let _ = fs::remove_file(path);
    }
    result
}

/// Overwrites the first `bytes.len()` bytes of `file` (open at `path`) and
/// fsyncs its data.
pub(crate) fn overwrite_start(file: &mut File, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    inject_write(file, bytes)
        .and_then(|()| file.write_all(bytes))
        .map_err(|e| Error::io(path, e))?;
    inject(Step::SyncFile)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(path, e))
}

/// Removes `path` (gone already is fine) and syncs its directory, so that
/// the removal survives a crash.
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    sync_dir(&parent_dir(path))
}

/// Reads the whole of `path`, refusing a file longer than `max` bytes before
/// reading it (and one that grows past `max` while it is read), so that a
/// planted or damaged file cannot make cmek allocate without bound.
/// `Ok(None)` if it does not exist.
///
/// # Errors
/// [`Error::LimitExceeded`] past `max`; [`Error::Io`] otherwise.
#[allow(dead_code)] // first callers arrive with the key file and bundle readers
pub(crate) fn read_capped(path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > max {
        return Err(Error::LimitExceeded { what, limit: max });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::LimitExceeded { what, limit: max });
    }
    Ok(Some(bytes))
}

/// An exclusive advisory lock (`flock`) on a lock file, released on drop.
/// Every process that reads, changes and rewrites a shared file takes it
/// around the whole read-modify-write, so no update is lost. The lock file
/// is separate from the file it guards because that file is replaced by
/// rename, and a lock on a replaced inode guards nothing.
#[derive(Debug)]
#[allow(dead_code)] // first callers arrive with the key file and rewrap locks
pub(crate) struct ExclusiveLock {
    file: File,
}

#[allow(dead_code)]
impl ExclusiveLock {
    /// Blocks until the lock on `lock_path` (created owner-only if missing)
    /// is held.
    pub(crate) fn acquire(lock_path: &Path) -> Result<Self> {
        let file = Self::open(lock_path)?;
        file.lock().map_err(|e| Error::io(lock_path, e))?;
        Ok(Self { file })
    }

    /// Takes the lock if no one holds it; `Ok(None)` if another holder has it.
    pub(crate) fn try_acquire(lock_path: &Path) -> Result<Option<Self>> {
        let file = Self::open(lock_path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(lock_path, e)),
        }
    }

    fn open(lock_path: &Path) -> Result<File> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options.open(lock_path).map_err(|e| Error::io(lock_path, e))
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// The lock file that guards `path`: `.NAME.lock` beside it.
#[allow(dead_code)]
pub(crate) fn lock_path_for(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".lock");
    parent_dir(path).join(name)
}

fn write_synced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut file = open_new(path, mode)?;
    inject_write(&mut file, contents)
        .and_then(|()| file.write_all(contents))
        .map_err(|e| Error::io(path, e))?;
    inject(Step::SyncFile)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}

/// A short write: part of `contents` reaches the file, then the error.
#[cfg(test)]
fn inject_write(file: &mut File, contents: &[u8]) -> std::io::Result<()> {
    if faults::armed_for(Step::Write) == Some(Fault::ShortWrite) {
        file.write_all(&contents[..contents.len() / 2])?;
    }
    inject(Step::Write)
}
#[cfg(not(test))]
#[inline(always)]
fn inject_write(_file: &mut File, _contents: &[u8]) -> std::io::Result<()> {
    inject(Step::Write)
}

fn open_new(path: &Path, mode: u32) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    inject(Step::Create)
        .and_then(|()| options.open(path))
        .map_err(|e| Error::io(path, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let mut nonce = [0u8; 8];
    crate::cipher::fill_random(&mut nonce)?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", u64::from_be_bytes(nonce)));
    Ok(parent_dir(path).join(tmp_name))
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        inject(Step::SyncDir)
            .and_then(|()| File::open(dir))
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(dir, e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// One-shot I/O faults for tests, armed per thread.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::Cell;
    use std::io;

    /// A step of a durable file write.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Step {
        /// Creating the (temporary) file.
        Create,
        /// Writing its contents.
        Write,
        /// fsync of the file.
        SyncFile,
        /// Renaming it over the target.
        Rename,
        /// fsync of the directory.
        SyncDir,
    }

    /// How the step fails.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// ENOSPC.
        NoSpace,
        /// Half the bytes written, then ENOSPC (only at [`Step::Write`]).
        ShortWrite,
        /// EIO, as a failing fsync reports.
        SyncFailed,
    }

    /// Every step, with the faults that make sense there.
    pub(crate) const ALL: [(Step, Fault); 6] = [
        (Step::Create, Fault::NoSpace),
        (Step::Write, Fault::NoSpace),
        (Step::Write, Fault::ShortWrite),
        (Step::SyncFile, Fault::SyncFailed),
        (Step::Rename, Fault::NoSpace),
        (Step::SyncDir, Fault::SyncFailed),
    ];

    thread_local! {
        static ARMED: Cell<Option<(Step, Fault)>> = const { Cell::new(None) };
        static SKIP: Cell<u32> = const { Cell::new(0) };
    }

    /// Makes the next `step` on this thread fail with `fault` (once).
    pub(crate) fn arm(step: Step, fault: Fault) {
        arm_nth(step, fault, 0);
    }

    /// Makes the `skip + 1`-th `step` on this thread fail with `fault`.
    pub(crate) fn arm_nth(step: Step, fault: Fault, skip: u32) {
        ARMED.with(|a| a.set(Some((step, fault))));
        SKIP.with(|s| s.set(skip));
    }

    /// True if a fault is still armed (its step was never reached).
    pub(crate) fn pending() -> bool {
        ARMED.with(|a| a.get().is_some())
    }

    /// Disarms any fault.
    pub(crate) fn disarm() {
        ARMED.with(|a| a.set(None));
    }

    /// The fault armed for this occurrence of `step`, if any.
    pub(super) fn armed_for(step: Step) -> Option<Fault> {
        let armed = ARMED.with(|a| a.get().filter(|(s, _)| *s == step).map(|(_, f)| f));
        armed.filter(|_| SKIP.with(|s| s.get()) == 0)
    }

    pub(super) fn inject(step: Step) -> io::Result<()> {
        let Some(fault) = armed_for(step) else {
            if ARMED.with(|a| a.get().is_some_and(|(s, _)| s == step)) {
                SKIP.with(|s| s.set(s.get() - 1));
            }
            return Ok(());
        };
        disarm();
        Err(match fault {
            Fault::NoSpace | Fault::ShortWrite => io::Error::from_raw_os_error(28),
            Fault::SyncFailed => io::Error::from_raw_os_error(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the target remains");
    }

    #[cfg(unix)]
    #[test]
    fn new_file_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        create_new(&path, b"x", 0o600).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_atomic(&path, b"y", 0o600).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(create_new(&path, b"z", 0o600).is_err(), "never overwrites");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write_atomic(&path, b"old", 0o600).unwrap();
        // A target that is a directory cannot be replaced by rename.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inner"), b"x").unwrap();
        assert!(write_atomic(&blocked, b"new", 0o600).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "temp file removed after failure");
    }

    #[test]
    fn read_capped_refuses_a_file_over_the_cap_before_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        assert!(read_capped(&path, 10, "state").unwrap().is_none());
        std::fs::write(&path, b"0123456789").unwrap();
        assert_eq!(
            read_capped(&path, 10, "state").unwrap().unwrap(),
            b"0123456789"
        );
        std::fs::write(&path, b"0123456789a").unwrap();
        assert!(matches!(
            read_capped(&path, 10, "state").unwrap_err(),
            Error::LimitExceeded { limit: 10, .. }
        ));
    }

    #[test]
    fn exclusive_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_path_for(&dir.path().join("keys"));
        assert!(lock.ends_with(".keys.lock"));
        let held = ExclusiveLock::acquire(&lock).unwrap();
        assert!(ExclusiveLock::try_acquire(&lock).unwrap().is_none());
        drop(held);
        assert!(ExclusiveLock::try_acquire(&lock).unwrap().is_some());
    }
}
