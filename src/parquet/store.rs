//! [`KeyMaterialFile`]: key material kept beside a Parquet file rather
//! than in it, and its rotation.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The prefix of an external key-material file's name: the file of
/// `dir/data.parquet` is `dir/_KEY_MATERIAL_FOR_data.parquet.json`.
pub const KEY_MATERIAL_FILE_PREFIX: &str = "_KEY_MATERIAL_FOR_";
/// The suffix of an external key-material file's name.
pub const KEY_MATERIAL_FILE_SUFFIX: &str = ".json";
/// The prefix of the temporary file a rotation writes before it renames
/// it over the key-material file.
pub const TEMP_FILE_PREFIX: &str = "_TMP";

/// The longest key-material file read (1 MiB: a file with a thousand
/// encrypted columns has about 500 KiB); a longer one is refused before
/// it is read.
pub const MAX_KEY_MATERIAL_FILE_LEN: u64 = 1 << 20;

const WHAT: &str = "Parquet key-material file";

/// The key material of one Parquet file, stored beside it
/// (`internalStorage: false`): a JSON object from each key's id in the
/// file (`footerKey`, `columnKey0`, ...) to its key material, itself a
/// JSON text held as a string. The Parquet file's key metadata hold only
/// the key ids, so rewrapping the keys under another master key rewrites
/// this small file, never the data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyMaterialFile {
    entries: BTreeMap<String, String>,
}

impl KeyMaterialFile {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key material of key `key_id`, if any.
    pub fn get(&self, key_id: &str) -> Option<&str> {
        self.entries.get(key_id).map(String::as_str)
    }

    /// Adds or replaces key `key_id`'s material.
    pub fn insert(&mut self, key_id: impl Into<String>, material: impl Into<String>) {
        self.entries.insert(key_id.into(), material.into());
    }

    /// The entries, in key-id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's JSON text.
    pub fn to_json(&self) -> String {
        let map: Map<String, Value> = self
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::Object(map).to_string()
    }

    /// Parses a key-material file's bytes, as read from storage.
    ///
    /// # Errors
    /// [`Error::Malformed`] for anything but a JSON object of strings;
    /// [`Error::LimitExceeded`] past [`MAX_KEY_MATERIAL_FILE_LEN`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() as u64 > MAX_KEY_MATERIAL_FILE_LEN {
            return Err(too_long());
        }
        let Value::Object(map) = serde_json::from_slice::<Value>(bytes)
            .map_err(|e| Error::malformed(WHAT, format!("not JSON: {e}")))?
        else {
            return Err(Error::malformed(WHAT, "not a JSON object"));
        };
        let mut entries = BTreeMap::new();
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    entries.insert(k, s);
                }
                _ => {
                    return Err(Error::malformed(
                        WHAT,
                        format!("the material of {k:?} is not a string"),
                    ))
                }
            }
        }
        Ok(Self { entries })
    }

    /// The path of the key-material file of the Parquet file at
    /// `parquet_path`: `_KEY_MATERIAL_FOR_<name>.json` in its directory.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a path without a file name.
    pub fn path_for(parquet_path: &Path) -> Result<PathBuf> {
        Self::named(parquet_path, "")
    }

    fn named(parquet_path: &Path, prefix: &str) -> Result<PathBuf> {
        let name = parquet_path.file_name().ok_or_else(|| {
            Error::InvalidArgument(format!("{} names no Parquet file", parquet_path.display()))
        })?;
        let mut file = std::ffi::OsString::from(prefix);
        file.push(KEY_MATERIAL_FILE_PREFIX);
        file.push(name);
        file.push(KEY_MATERIAL_FILE_SUFFIX);
        Ok(parquet_path.with_file_name(file))
    }

    /// Reads the key-material file of the Parquet file at `parquet_path`.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is none; [`Error::Io`]; as
    /// [`parse`](Self::parse).
    pub fn read_for(parquet_path: &Path) -> Result<Self> {
        let path = Self::path_for(parquet_path)?;
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    what: "Parquet key-material file",
                    location: path.display().to_string(),
                })
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut bytes = Vec::new();
        use std::io::Read as _;
        file.take(MAX_KEY_MATERIAL_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&path, e))?;
        Self::parse(&bytes)
    }

    /// Writes this as the key-material file of the Parquet file at
    /// `parquet_path`, replacing any: written to `_TMP_KEY_MATERIAL_FOR_
    /// <name>.json`, synced, renamed over the file, and the directory
    /// synced, so that at every instant the file is either the old one or
    /// the new one, whole.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::InvalidArgument`] for a path without a
    /// file name.
    pub fn write_for(&self, parquet_path: &Path) -> Result<()> {
        let path = Self::path_for(parquet_path)?;
        let temp = Self::named(parquet_path, TEMP_FILE_PREFIX)?;
        let text = self.to_json();
        let mut file = fs::File::create(&temp).map_err(|e| Error::io(&temp, e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&temp, e))?;
        drop(file);
        fs::rename(&temp, &path).map_err(|e| Error::io(&path, e))?;
        #[cfg(unix)]
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    }
}

fn too_long() -> Error {
    Error::LimitExceeded {
        what: "Parquet key-material file length",
        limit: MAX_KEY_MATERIAL_FILE_LEN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_file_beside_the_parquet_file() {
        assert_eq!(
            KeyMaterialFile::path_for(Path::new("/d/t/part-0.parquet")).unwrap(),
            Path::new("/d/t/_KEY_MATERIAL_FOR_part-0.parquet.json")
        );
        assert_eq!(
            KeyMaterialFile::named(Path::new("x.parquet"), TEMP_FILE_PREFIX).unwrap(),
            Path::new("_TMP_KEY_MATERIAL_FOR_x.parquet.json")
        );
        assert!(KeyMaterialFile::path_for(Path::new("/")).is_err());
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("a.parquet");
        assert!(matches!(
            KeyMaterialFile::read_for(&parquet),
            Err(Error::NotFound { .. })
        ));
        let mut m = KeyMaterialFile::new();
        m.insert("footerKey", r#"{"a":1}"#);
        m.insert("columnKey0", "x");
        m.write_for(&parquet).unwrap();
        assert_eq!(KeyMaterialFile::read_for(&parquet).unwrap(), m);
        assert!(!dir
            .path()
            .join("_TMP_KEY_MATERIAL_FOR_a.parquet.json")
            .exists());
    }

    #[test]
    fn hostile_files_are_refused() {
        for bad in [&b"[]"[..], b"{\"a\":1}", b"{", b"\xff", b"{\"a\":null}"] {
            assert!(matches!(
                KeyMaterialFile::parse(bad),
                Err(Error::Malformed { .. })
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let parquet = dir.path().join("a.parquet");
        let long = vec![b' '; MAX_KEY_MATERIAL_FILE_LEN as usize + 10];
        fs::write(KeyMaterialFile::path_for(&parquet).unwrap(), long).unwrap();
        assert!(matches!(
            KeyMaterialFile::read_for(&parquet),
            Err(Error::LimitExceeded { .. })
        ));
    }
}
