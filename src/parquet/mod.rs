//! Parquet modular encryption with master keys held by any key provider
//! (feature `parquet`).
//!
//! Parquet encrypts its footer and columns with data keys (DEKs); its
//! key-management tools wrap each DEK under a *master key* held in a KMS,
//! directly or through a key-encryption key (KEK, "double wrapping"), and
//! store the result as JSON *key material* in the file's key metadata or
//! in a file beside it. This module owns that layer for cmek:
//!
//! * [`ParquetKms`] — the KMS client, on any [`KeyProvider`]: master key
//!   ids are the provider's key names; the registry and the monitor gate
//!   every master key as they gate zones' root keys; async and blocking;
//! * [`EncryptionConfig`] and [`ParquetKms::file_encryption_properties`] —
//!   a file's DEKs, wrapped, as parquet's `FileEncryptionProperties`;
//! * [`ParquetKms::file_decryption_properties`] — parquet's
//!   `FileDecryptionProperties` with a key retriever that unwraps them;
//! * [`KeyMaterialFile`] and [`ParquetKms::rotate_master_key`] — external
//!   key material, and rewrapping it under a new master key without
//!   rewriting the data;
//! * [`KeyMaterial`], [`KeyMetadata`] — the key-material JSON (type
//!   `PKMT1`), parsed as hostile input;
//! * [`DataKey`] — the 128-, 192- or 256-bit keys Parquet uses.
//!
//! The key material follows the Parquet key-management-tools
//! specification, so that PyArrow (`pyarrow.parquet.encryption`) and
//! parquet-java read what this module writes and the other way round,
//! given a KMS client on their side that speaks the same wrapped-key
//! string ([`ParquetKms`] documents it; `docs/PARQUET.md` has a Python
//! client). This module must not encrypt data itself: parquet does, with
//! the keys made here.
//!
//! # Why not `parquet-key-management`
//!
//! The `parquet-key-management` crate implements the same specification,
//! but its 0.8 release depends on parquet 58 and its DataFusion module on
//! DataFusion 54, while this crate is built and tested against parquet 60.
//! Depending on it would put two versions of parquet in a user's build,
//! whose `FileEncryptionProperties` are different types. The
//! specification is small — a JSON object per key and an AES-GCM wrap —
//! so it is implemented here directly on parquet 60's own API
//! (`FileEncryptionProperties` with key metadata, `FileDecryptionProperties`
//! with a key retriever), with the registry and monitor gates that an
//! outside crate could not apply.
//!
//! [`KeyProvider`]: crate::KeyProvider

mod key;
mod kms;
mod material;
mod store;
mod tools;

pub use key::{DataKey, DATA_KEY_LENGTHS};
pub use kms::{parquet_key_context, ParquetKms, PARQUET_KEY_PURPOSE, WRAPPED_KEY_PREFIX};
pub use material::{
    KeyMaterial, KeyMetadata, Wrapping, COLUMN_KEY_ID_PREFIX, FOOTER_KEY_ID_IN_FILE,
    KEY_MATERIAL_TYPE, MAX_KEY_METADATA_LEN,
};
pub use store::{
    KeyMaterialFile, KEY_MATERIAL_FILE_PREFIX, KEY_MATERIAL_FILE_SUFFIX, MAX_KEY_MATERIAL_FILE_LEN,
    TEMP_FILE_PREFIX,
};
pub use tools::{EncryptionConfig, FileEncryption, DEFAULT_KMS_INSTANCE};

use ::parquet::errors::ParquetError;

use crate::Error;

/// `e` as parquet's error: `ParquetError::External` holding it, so that
/// a reader's error names the key and the failure, and
/// [`cmek_error`] gets it back.
pub fn parquet_error(e: Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// The cmek [`Error`] inside a parquet error, if the error came from this
/// module's key retriever (directly or as the source of another error).
/// `None` where parquet kept only the error's text, as its reader does
/// for some key failures.
pub fn cmek_error(e: &ParquetError) -> Option<&Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<Error>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests;
