//! The file operations backups and restores make, behind a small trait so
//! that tests can fail any one of them and check that a rerun recovers.
//!
//! [`RealFs`] is the only implementation outside tests. Whole small files
//! (states, manifests) are replaced with [`fsutil::write_atomic`]; segment
//! files are streamed into a temporary file that the caller syncs and
//! renames into place ([`commit`]), so a segment file at its final name is
//! always complete.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::zone::ManifestStore;
use crate::{fsutil, Error, Result};

/// Permission bits of every file a backup or a restore creates: the data is
/// encrypted, but plaintext restores are not, and nobody else needs either.
pub(crate) const FILE_MODE: u32 = 0o600;

/// A file being written.
pub(crate) trait FsFile: Write + Send {
    /// Flushes the file's contents to stable storage.
    fn sync(&mut self) -> Result<()>;
}

/// The file operations of backups and restores. Errors carry the path.
pub(crate) trait Fs: Send + Sync + fmt::Debug {
    /// The whole file, or `None` if it does not exist.
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>>;
    /// Opens a file for reading.
    fn open(&self, path: &Path) -> Result<Box<dyn Read + Send>>;
    /// The file's length, or `None` if it does not exist.
    fn len(&self, path: &Path) -> Result<Option<u64>>;
    /// The names in a directory; empty if it does not exist.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// Creates or truncates a file for writing.
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
    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match fs::read(path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
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

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn FsFile>> {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(FILE_MODE);
        }
        let file = options.open(path).map_err(|e| Error::io(path, e))?;
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
        self.fs.read(&self.path)
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
