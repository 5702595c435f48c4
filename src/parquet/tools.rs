//! Parquet's key-management tools on [`ParquetKms`]: file encryption
//! properties (data keys made and wrapped into key material), file
//! decryption properties (a key retriever that unwraps them), and master
//! key rotation of external key material.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::errors::ParquetError;

use super::key::{check_len, DataKey};
use super::kms::ParquetKms;
use super::material::{
    decode_base64, encode_base64, unwrap_locally, wrap_locally, KeyMaterial, KeyMetadata, Wrapping,
    COLUMN_KEY_ID_PREFIX, FOOTER_KEY_ID_IN_FILE, KEK_ID_LEN, KEK_LEN,
};
use super::store::KeyMaterialFile;
use crate::{Error, Result};

/// The `kmsInstanceID` and `kmsInstanceURL` written unless configured:
/// the key tools' default.
pub const DEFAULT_KMS_INSTANCE: &str = "DEFAULT";

/// How to encrypt one Parquet file: which master key wraps the footer key
/// and which wraps each column's key, and the key tools' options.
///
/// ```
/// use cmek::parquet::EncryptionConfig;
/// let config = EncryptionConfig::new("alias/footer")
///     .with_column_keys("alias/pii", ["ssn", "address.street"])
///     .with_plaintext_footer(true)
///     .with_double_wrapping(false)
///     .with_data_key_length(16);
/// assert_eq!(config.data_key_length(), 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionConfig {
    footer_key: String,
    column_keys: BTreeMap<String, String>,
    plaintext_footer: bool,
    double_wrapping: bool,
    data_key_len: usize,
    kms_instance_id: String,
    kms_instance_url: String,
    external_key_material: bool,
}

impl EncryptionConfig {
    /// Footer key wrapped by master key `footer_master_key_id`, encrypted
    /// footer, double wrapping, 256-bit data keys, key material inside the
    /// file. Without column keys every column is encrypted with the footer
    /// key; with some, only those columns are encrypted.
    pub fn new(footer_master_key_id: impl Into<String>) -> Self {
        Self {
            footer_key: footer_master_key_id.into(),
            column_keys: BTreeMap::new(),
            plaintext_footer: false,
            double_wrapping: true,
            data_key_len: 32,
            kms_instance_id: DEFAULT_KMS_INSTANCE.into(),
            kms_instance_url: DEFAULT_KMS_INSTANCE.into(),
            external_key_material: false,
        }
    }

    /// Columns `columns` (paths, dotted for nested fields) get keys of
    /// their own, wrapped by master key `master_key_id`. A column named
    /// twice keeps the last master key given.
    pub fn with_column_keys<C: Into<String>>(
        mut self,
        master_key_id: impl Into<String>,
        columns: impl IntoIterator<Item = C>,
    ) -> Self {
        let master = master_key_id.into();
        for column in columns {
            self.column_keys.insert(column.into(), master.clone());
        }
        self
    }

    /// A plaintext footer (readable by readers without keys; signed with
    /// the footer key) instead of an encrypted one.
    pub fn with_plaintext_footer(mut self, plaintext: bool) -> Self {
        self.plaintext_footer = plaintext;
        self
    }

    /// Double wrapping (on by default): data keys wrapped locally by a
    /// per-file, per-master-key KEK, one KMS call per master key. Off:
    /// one KMS call per data key.
    pub fn with_double_wrapping(mut self, double: bool) -> Self {
        self.double_wrapping = double;
        self
    }

    /// The data keys' length in bytes: 16 or 32 (32 by default).
    pub fn with_data_key_length(mut self, bytes: usize) -> Self {
        self.data_key_len = bytes;
        self
    }

    /// The `kmsInstanceID` and `kmsInstanceURL` written with the footer
    /// key (`DEFAULT` unless set).
    pub fn with_kms_instance(mut self, id: impl Into<String>, url: impl Into<String>) -> Self {
        self.kms_instance_id = id.into();
        self.kms_instance_url = url.into();
        self
    }

    /// Key material in a file beside the Parquet file
    /// ([`KeyMaterialFile`]) rather than inside it: what makes master-key
    /// rotation possible without rewriting the data.
    pub fn with_external_key_material(mut self, external: bool) -> Self {
        self.external_key_material = external;
        self
    }

    /// The footer's master key id.
    pub fn footer_key(&self) -> &str {
        &self.footer_key
    }

    /// Each column with a key of its own, and its master key id.
    pub fn column_keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.column_keys
            .iter()
            .map(|(c, m)| (c.as_str(), m.as_str()))
    }

    /// The data keys' length in bytes.
    pub fn data_key_length(&self) -> usize {
        self.data_key_len
    }
}

/// What [`ParquetKms::file_encryption_properties`] makes for one file.
#[derive(Debug)]
pub struct FileEncryption {
    properties: Arc<FileEncryptionProperties>,
    key_material: Option<KeyMaterialFile>,
}

impl FileEncryption {
    /// The properties to give Parquet's writer
    /// (`WriterProperties::builder().with_file_encryption_properties`).
    pub fn properties(&self) -> &Arc<FileEncryptionProperties> {
        &self.properties
    }

    /// With external key material, the key-material file to store beside
    /// the Parquet file ([`KeyMaterialFile::write_for`]); `None` otherwise.
    pub fn key_material(&self) -> Option<&KeyMaterialFile> {
        self.key_material.as_ref()
    }
}

/// A fresh KEK for one master key: its bytes, id and wrapping.
struct Kek {
    key: DataKey,
    id: [u8; KEK_ID_LEN],
    wrapped: String,
}

impl ParquetKms {
    async fn new_kek(&self, master_key_id: &str) -> Result<Kek> {
        let key = DataKey::generate(KEK_LEN)?;
        let mut id = [0u8; KEK_ID_LEN];
        crate::cipher::fill_random(&mut id)?;
        let wrapped = self.wrap_key(&key, master_key_id).await?;
        Ok(Kek { key, id, wrapped })
    }

    /// Wraps `dek` under `master_key_id` into key material; KEKs made for
    /// double wrapping are kept in `keks`, one per master key.
    async fn wrap_material(
        &self,
        dek: &DataKey,
        master_key_id: &str,
        double: bool,
        footer: Option<(String, String)>,
        keks: &mut HashMap<String, Kek>,
    ) -> Result<KeyMaterial> {
        let (wrapped_dek, wrapping) = if double {
            if !keks.contains_key(master_key_id) {
                let kek = self.new_kek(master_key_id).await?;
                keks.insert(master_key_id.to_owned(), kek);
            }
            let kek = &keks[master_key_id];
            (
                wrap_locally(dek, &kek.key, &kek.id)?,
                Wrapping::Double {
                    kek_id: encode_base64(&kek.id),
                    wrapped_kek: kek.wrapped.clone(),
                },
            )
        } else {
            (self.wrap_key(dek, master_key_id).await?, Wrapping::Single)
        };
        Ok(KeyMaterial {
            is_footer_key: footer.is_some(),
            kms_instance: footer,
            master_key_id: master_key_id.to_owned(),
            wrapped_dek,
            wrapping,
        })
    }

    /// Makes one file's data keys (a footer key and one per configured
    /// column), wraps them under their master keys as `config` says, and
    /// returns the properties for Parquet's writer with the key material
    /// as key metadata (or, with external key material, references to the
    /// [`KeyMaterialFile`] returned beside them). Call it once per file:
    /// data keys must not be shared between files.
    ///
    /// KMS calls: with double wrapping one per distinct master key, else
    /// one per data key.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a data-key length other than 16 or
    /// 32, an empty column name or master key id; the gates' and the
    /// provider's errors (see [`ParquetKms`]).
    pub async fn file_encryption_properties(
        &self,
        config: &EncryptionConfig,
    ) -> Result<FileEncryption> {
        if !matches!(config.data_key_len, 16 | 32) {
            return Err(Error::InvalidArgument(format!(
                "Parquet data keys are 16 or 32 bytes long, not {}",
                config.data_key_len
            )));
        }
        check_len(config.data_key_len)?;
        if config.column_keys.keys().any(String::is_empty) {
            return Err(Error::InvalidArgument(
                "an empty Parquet column name".into(),
            ));
        }
        let mut keks = HashMap::new();
        let mut store = config.external_key_material.then(KeyMaterialFile::new);
        let mut metadata = |material: KeyMaterial, id: String| -> Vec<u8> {
            match &mut store {
                None => KeyMetadata::Internal(material).to_json().into_bytes(),
                Some(store) => {
                    store.insert(id.clone(), material.to_json());
                    KeyMetadata::External { key_reference: id }
                        .to_json()
                        .into_bytes()
                }
            }
        };

        let footer_dek = DataKey::generate(config.data_key_len)?;
        let footer_material = self
            .wrap_material(
                &footer_dek,
                &config.footer_key,
                config.double_wrapping,
                Some((
                    config.kms_instance_id.clone(),
                    config.kms_instance_url.clone(),
                )),
                &mut keks,
            )
            .await?;
        let footer_metadata = metadata(footer_material, FOOTER_KEY_ID_IN_FILE.into());
        let mut builder = FileEncryptionProperties::builder(footer_dek.expose_secret().to_vec())
            .with_footer_key_metadata(footer_metadata)
            .with_plaintext_footer(config.plaintext_footer);
        for (i, (column, master)) in config.column_keys.iter().enumerate() {
            let dek = DataKey::generate(config.data_key_len)?;
            let material = self
                .wrap_material(&dek, master, config.double_wrapping, None, &mut keks)
                .await?;
            let md = metadata(material, format!("{COLUMN_KEY_ID_PREFIX}{i}"));
            builder =
                builder.with_column_key_and_metadata(column, dek.expose_secret().to_vec(), md);
        }
        let properties = builder
            .build()
            .map_err(|e| Error::InvalidArgument(format!("Parquet encryption properties: {e}")))?;
        Ok(FileEncryption {
            properties,
            key_material: store,
        })
    }

    /// [`file_encryption_properties`](Self::file_encryption_properties)
    /// from blocking code (see [`ParquetKms`]).
    ///
    /// # Errors
    /// As the async form; [`Error::Misuse`] inside a current-thread
    /// runtime.
    pub fn file_encryption_properties_blocking(
        &self,
        config: &EncryptionConfig,
    ) -> Result<FileEncryption> {
        self.block_on(self.file_encryption_properties(config))
    }

    /// Properties for Parquet's reader: a key retriever that unwraps each
    /// key's material through this client (gates included) when the reader
    /// asks for it. `key_material` is the file's external key material, if
    /// it has some ([`KeyMaterialFile::read_for`]); a file whose key
    /// metadata refer to external material read without it fails with
    /// [`Error::NotFound`].
    ///
    /// The retriever is blocking (Parquet's `KeyRetriever` is), so it runs
    /// the client with [`unwrap_key_blocking`](Self::unwrap_key_blocking)'s
    /// rules: in async code, read inside a multi-threaded runtime, or
    /// unwrap the keys first with
    /// [`unwrap_key_metadata`](Self::unwrap_key_metadata). KEKs are
    /// unwrapped once per file and master key.
    ///
    /// The retriever fails with `ParquetError::External` holding the
    /// [`Error`] ([`cmek_error`](super::cmek_error) finds it): a wrong
    /// master key is [`Error::Integrity`], a disabled one
    /// [`Error::KeyUnavailable`], an unreachable KMS
    /// [`Error::ProviderUnreachable`]. Parquet's reader passes some of
    /// these on as text only (`Parquet argument error: External: key
    /// aws-kms:us-east-1:… is unavailable: disabled`): the message always
    /// names the key and the failure.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for checks.
    pub fn file_decryption_properties(
        &self,
        key_material: Option<KeyMaterialFile>,
    ) -> Result<Arc<FileDecryptionProperties>> {
        let retriever = Arc::new(CmekKeyRetriever {
            kms: self.clone(),
            key_material,
            keks: Mutex::new(HashMap::new()),
        });
        FileDecryptionProperties::with_key_retriever(retriever)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("Parquet decryption properties: {e}")))
    }

    /// [`file_decryption_properties`](Self::file_decryption_properties)
    /// for the Parquet file at `parquet_path`, with its key-material file
    /// if there is one beside it.
    ///
    /// # Errors
    /// As [`KeyMaterialFile::read_for`], but a missing file is not one.
    pub fn file_decryption_properties_for(
        &self,
        parquet_path: &Path,
    ) -> Result<Arc<FileDecryptionProperties>> {
        let material = match KeyMaterialFile::read_for(parquet_path) {
            Ok(m) => Some(m),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        self.file_decryption_properties(material)
    }

    /// Unwraps the data key one column's or the footer's key metadata
    /// (as read from a file: hostile) designate, asynchronously.
    ///
    /// # Errors
    /// [`Error::Malformed`] for metadata not in the spec;
    /// [`Error::NotFound`] for external material not in `key_material`;
    /// the client's errors.
    pub async fn unwrap_key_metadata(
        &self,
        key_metadata: &[u8],
        key_material: Option<&KeyMaterialFile>,
    ) -> Result<DataKey> {
        let material = resolve(key_metadata, key_material)?;
        self.unwrap_material(&material, &Mutex::new(HashMap::new()))
            .await
    }

    async fn unwrap_material(&self, material: &KeyMaterial, keks: &KekCache) -> Result<DataKey> {
        match &material.wrapping {
            Wrapping::Single => {
                self.unwrap_key(&material.wrapped_dek, &material.master_key_id)
                    .await
            }
            Wrapping::Double {
                kek_id,
                wrapped_kek,
            } => {
                let cache_key = (material.master_key_id.clone(), wrapped_kek.clone());
                let cached = lock(keks).get(&cache_key).map(DataKey::duplicate);
                let kek = match cached {
                    Some(kek) => kek,
                    None => {
                        let kek = self
                            .unwrap_key(wrapped_kek, &material.master_key_id)
                            .await?;
                        lock(keks).insert(cache_key, kek.duplicate());
                        kek
                    }
                };
                let aad = decode_base64(kek_id, "keyEncryptionKeyID")?;
                unwrap_locally(&material.wrapped_dek, &kek, &aad)
            }
        }
    }

    /// Rewraps every key of `key_material` wrapped under master key `from`
    /// under master key `to` (which may be `from` itself, to move to the
    /// key's newest version after a rotation in the KMS), keeping each
    /// key's wrapping mode; double-wrapped keys get a new KEK. Keys under
    /// other master keys are kept as they are. The data keys do not
    /// change, so the Parquet file does not either.
    ///
    /// # Errors
    /// Malformed material; the client's errors (both `from` and `to` must
    /// pass the gates).
    pub async fn rewrap_key_material(
        &self,
        key_material: &KeyMaterialFile,
        from: &str,
        to: &str,
    ) -> Result<(KeyMaterialFile, usize)> {
        let mut out = KeyMaterialFile::new();
        let mut rewrapped = 0;
        let read_keks = Mutex::new(HashMap::new());
        let mut write_keks = HashMap::new();
        for (id, text) in key_material.iter() {
            let material = KeyMaterial::parse(text.as_bytes())?;
            if material.master_key_id != from {
                out.insert(id, text);
                continue;
            }
            let dek = self.unwrap_material(&material, &read_keks).await?;
            let double = matches!(material.wrapping, Wrapping::Double { .. });
            let new = self
                .wrap_material(&dek, to, double, material.kms_instance, &mut write_keks)
                .await?;
            out.insert(id, new.to_json());
            rewrapped += 1;
        }
        Ok((out, rewrapped))
    }

    /// Rotates the master key of the Parquet file at `parquet_path`:
    /// reads its key-material file, rewraps the keys under `from` with
    /// [`rewrap_key_material`](Self::rewrap_key_material), and replaces
    /// the key-material file atomically ([`KeyMaterialFile::write_for`]).
    /// The Parquet file is not touched. Returns the number of keys
    /// rewrapped. Keep `from` enabled until every file is rotated: until
    /// the rename, the file on disk is the old one.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the file has no key-material file (its key
    /// material is inside it: rotation means rewriting the file); as
    /// [`rewrap_key_material`](Self::rewrap_key_material); [`Error::Io`].
    pub async fn rotate_master_key(
        &self,
        parquet_path: &Path,
        from: &str,
        to: &str,
    ) -> Result<usize> {
        let material = KeyMaterialFile::read_for(parquet_path)?;
        let (new, count) = self.rewrap_key_material(&material, from, to).await?;
        if count > 0 {
            new.write_for(parquet_path)?;
        }
        Ok(count)
    }
}

type KekCache = Mutex<HashMap<(String, String), DataKey>>;

fn lock(cache: &KekCache) -> std::sync::MutexGuard<'_, HashMap<(String, String), DataKey>> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The key material `key_metadata` designates, from the metadata itself
/// or from `key_material`.
fn resolve(key_metadata: &[u8], key_material: Option<&KeyMaterialFile>) -> Result<KeyMaterial> {
    match KeyMetadata::parse(key_metadata)? {
        KeyMetadata::Internal(material) => Ok(material),
        KeyMetadata::External { key_reference } => {
            let text = key_material
                .ok_or_else(|| Error::NotFound {
                    what: "Parquet key-material file",
                    location: format!(
                        "key {key_reference:?} is stored beside the Parquet file, and its \
                         key-material file was not given"
                    ),
                })?
                .get(&key_reference)
                .ok_or_else(|| Error::NotFound {
                    what: "Parquet key material",
                    location: format!("key {key_reference:?} in the key-material file"),
                })?;
            KeyMaterial::parse(text.as_bytes())
        }
    }
}

/// Parquet's key retriever over [`ParquetKms`].
struct CmekKeyRetriever {
    kms: ParquetKms,
    key_material: Option<KeyMaterialFile>,
    keks: KekCache,
}

impl KeyRetriever for CmekKeyRetriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        let material =
            resolve(key_metadata, self.key_material.as_ref()).map_err(super::parquet_error)?;
        let key = self
            .kms
            .block_on(self.kms.unwrap_material(&material, &self.keks))
            .map_err(super::parquet_error)?;
        Ok(key.expose_secret().to_vec())
    }
}

impl From<Error> for ParquetError {
    fn from(e: Error) -> Self {
        super::parquet_error(e)
    }
}
