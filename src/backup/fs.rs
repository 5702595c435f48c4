//! The file operations backups and restores make, behind a small trait so
//! that tests can fail any one of them and check that a rerun recovers.
//!
//! [`RealFs`] is the only implementation outside tests. Whole small files
//! (states, manifests) are read with a size cap and replaced with
//! [`fsutil::write_atomic`]; segment files are streamed into a temporary
//! file that the caller syncs and renames into place ([`commit`]), so a
//! segment file at its final name is always complete.
//!
//! Destinations may be shared with someone hostile, so this module also
//! owns the rules for what a restore writes into: directories it creates
//! are owner-only, directories it finds must be ours and writable by no one
//! else ([`private_dir`]), and temporary files are created new, never
//! through a symbolic link, owner-only ([`create_partial`]).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::zone::ManifestStore;
use crate::{fsutil, Error, Result, StateRejection};

/// Permission bits of every file a backup or a restore creates: the data is
/// encrypted, but plaintext restores are not, and nobody else needs either.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Permission bits of every directory a backup or a restore creates.
pub(crate) const DIR_MODE: u32 = 0o700;

/// What kind of directory entry a path names, the final symbolic link not
/// followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// A device, FIFO, socket ...
    Other,
}

/// A directory entry's kind, permission bits and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) kind: EntryKind,
    /// Permission bits (`0o7777`); on systems without them, as if owner-only.
    pub(crate) mode: u32,
    /// The owner's user id, where the system has one.
    pub(crate) uid: Option<u32>,
}

/// A file being written.
pub(crate) trait FsFile: Write + Send {
    /// Flushes the file's contents to stable storage.
    fn sync(&mut self) -> Result<()>;
}

/// The file operations of backups and restores. Errors carry the path.
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    /// The whole file, or `None` if it does not exist;
    /// [`Error::LimitExceeded`] (naming `what`) past `max` bytes.
    fn read(&self, path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>>;
    /// Opens a file for reading.
    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>>;
    /// The file's length, or `None` if it does not exist.
    fn len(&self, path: &Path) -> Result<Option<u64>>;
    /// The names in a directory; empty if it does not exist.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// What `path` is, not following a final symbolic link (`follow`
    /// false) or following it; `None` if nothing is there.
    fn entry(&self, path: &Path, follow: bool) -> Result<Option<Entry>>;
    /// The user id files created in `dir` get (this process's effective
    /// one), found by creating and removing a probe file; `None` where the
    /// system has no user ids.
    fn own_uid(&self, dir: &Path) -> Result<Option<u32>>;
    /// Creates a directory and its parents, owner-only ([`DIR_MODE`]).
    fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// Creates a new file for writing, owner-only ([`FILE_MODE`]): fails if
    /// anything, a symbolic link included, is at `path` already.
    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Makes a directory's entries (creations, renames) durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Replaces a small file atomically and durably.
    fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()>;
    /// Removes a file; a missing one is not an error.
    fn remove_file(&self, path: &Path) -> Result<()>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RealFs;

struct RealFile {
    file: File,
    path: PathBuf,
}

impl Write for RealFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl FsFile for RealFile {
    fn sync(&mut self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))
    }
}

impl Fs for RealFs {
    fn read(&self, path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
        fsutil::read_capped(path, max, what)
    }

    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Box::new(file))
    }

    fn len(&self, path: &Path) -> Result<Option<u64>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn entry(&self, path: &Path, follow: bool) -> Result<Option<Entry>> {
        let meta = if follow {
            fs::metadata(path)
        } else {
            fs::symlink_metadata(path)
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let t = meta.file_type();
        let kind = if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_file() {
            EntryKind::File
        } else if t.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Some(Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: Some(meta.uid()),
            }))
        }
        #[cfg(not(unix))]
        Ok(Some(Entry {
            kind,
            mode: FILE_MODE,
            uid: None,
        }))
    }

    fn own_uid(&self, dir: &Path) -> Result<Option<u32>> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mut nonce = [0u8; 8];
            crate::cipher::fill_random(&mut nonce)?;
            let name: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
            let probe = dir.join(format!(".cmek-owner-{name}"));
            let file = open_new(&probe)?;
            let uid = file.metadata().map(|m| m.uid());
            drop(file);
            fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))?;
            Ok(Some(uid.map_err(|e| Error::io(&probe, e))?))
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(None)
        }
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(DIR_MODE);
        }
        builder.create(dir).map_err(|e| Error::io(dir, e))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>> {
        let file = open_new(path)?;
        Ok(Box::new(RealFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::io(to, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    fn write_atomic(&self, path: &Path, contents: &[u8]) -> Result<()> {
        fsutil::write_atomic(path, contents, FILE_MODE)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }
}

/// Opens a new owner-only file for writing: `O_CREAT | O_EXCL` (which never
/// follows a symbolic link at `path`) and `O_NOFOLLOW` besides.
fn open_new(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map_err(|e| Error::io(path, e))
}

fn refuse(what: &'static str, reason: String) -> Error {
    Error::StateRejected {
        what,
        reason: StateRejection::Mismatch(reason),
    }
}

/// Makes `dir` a directory only we can change: creates it owner-only if it
/// does not exist; otherwise it must be a directory (`follow`: reached
/// through a symbolic link, for a path the caller named), owned by this
/// process's user and writable by no one else — anyone who can create
/// entries in it can plant a link where plaintext is about to go.
///
/// # Errors
/// [`Error::StateRejected`] for a directory someone else owns or can
/// write, or something that is not a directory; [`Error::Io`].
pub(crate) fn private_dir(fs: &dyn Fs, dir: &Path, follow: bool) -> Result<()> {
    const WHAT: &str = "restore destination";
    let Some(entry) = fs.entry(dir, follow)? else {
        return fs.create_dir_all(dir);
    };
    if entry.kind != EntryKind::Dir {
        return Err(refuse(
            WHAT,
            format!("{} is not a directory ({:?})", dir.display(), entry.kind),
        ));
    }
    if entry.mode & 0o022 != 0 {
        return Err(refuse(
            WHAT,
            format!(
                "{} is writable by group or others (mode {:o}): make it owner-only",
                dir.display(),
                entry.mode
            ),
        ));
    }
    let own = fs.own_uid(dir)?;
    if entry.uid.is_some() && own.is_some() && entry.uid != own {
        return Err(refuse(
            WHAT,
            format!(
                "{} belongs to user {}, not to this process's user {}",
                dir.display(),
                entry.uid.unwrap_or_default(),
                own.unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

/// Creates the temporary file `path` (in a [`private_dir`]). A leftover of
/// an interrupted run — a regular, owner-only file — is removed first;
/// anything else there was not written by cmek and is refused, untouched:
/// a symbolic link (its target must not receive the data), a file others
/// can read or write, a FIFO or device.
///
/// # Errors
/// [`Error::StateRejected`] for such a planted entry, or one that appears
/// between the check and the creation; [`Error::Io`].
pub(crate) fn create_partial(fs: &dyn Fs, path: &Path) -> Result<Box<dyn FsFile>> {
    const WHAT: &str = "temporary file";
    if let Some(entry) = fs.entry(path, false)? {
        if entry.kind != EntryKind::File || entry.mode & 0o077 != 0 {
            return Err(refuse(
                WHAT,
                format!(
                    "{} was not left by cmek ({:?}, mode {:o}); remove it after checking who put it there",
                    path.display(),
                    entry.kind,
                    entry.mode
                ),
            ));
        }
        fs.remove_file(path)?;
    }
    fs.create(path).map_err(|e| match e {
        Error::Io { ref source, .. } if source.kind() == io::ErrorKind::AlreadyExists => refuse(
            WHAT,
            format!("{} appeared while it was being created", path.display()),
        ),
        other => other,
    })
}

/// Makes a fully written temporary file durable under its final name:
/// sync its contents, rename it over `to`, sync the directory. Until the
/// rename, `to` does not exist (or is as it was); after it, `to` is
/// complete.
pub(crate) fn commit(fs: &dyn Fs, mut file: Box<dyn FsFile>, from: &Path, to: &Path) -> Result<()> {
    file.flush().map_err(|e| Error::io(from, e))?;
    file.sync()?;
    drop(file);
    fs.rename(from, to)?;
    fs.sync_dir(to.parent().unwrap_or(Path::new(".")))
}

/// Largest zone manifest file read: far above any real one (4096 EZK
/// versions of a few hundred bytes each).
pub(crate) const MAX_ZONE_MANIFEST_FILE: u64 = 16 << 20;

/// A zone manifest in a file, through [`Fs`]: the same file and the same
/// atomic replacement as [`FileManifestStore`](crate::zone::FileManifestStore),
/// so a restored zone is opened later with a `FileManifestStore` on the
/// same path.
#[derive(Debug)]
pub(crate) struct FsManifestStore {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) path: PathBuf,
}

impl ManifestStore for FsManifestStore {
    fn load(&self) -> Result<Option<Vec<u8>>> {
        self.fs
            .read(&self.path, MAX_ZONE_MANIFEST_FILE, "zone manifest")
    }

    fn replace(&self, current: Option<&[u8]>, new: &[u8]) -> Result<()> {
        // A restore is the one writer of its destination (its state file
        // says so); the compare still refuses a manifest changed under it.
        if self.load()?.as_deref() != current {
            return Err(Error::Conflict {
                what: "zone manifest",
                reason: format!("{} changed while the restore ran", self.path.display()),
            });
        }
        self.fs.write_atomic(&self.path, new)
    }
}
