//! End-to-end tests of the key tools on the mock provider: files written
//! and read through parquet's Arrow writer and reader.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::file::properties::WriterProperties;

use super::*;
use crate::monitor::{KeyMonitor, MonitorConfig};
use crate::provider::KeyState;
use crate::registry::KeyRegistry;
use crate::testing::{MockProvider, Operation};

fn batch() -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
    let ssn: ArrayRef = Arc::new(StringArray::from(vec!["111", "222", "333"]));
    RecordBatch::try_from_iter([("id", ids), ("name", names), ("ssn", ssn)]).unwrap()
}

fn write(encryption: &FileEncryption) -> Bytes {
    write_props(encryption.properties().clone())
}

fn write_props(properties: Arc<parquet::encryption::encrypt::FileEncryptionProperties>) -> Bytes {
    let props = WriterProperties::builder()
        .with_file_encryption_properties(properties)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch().schema(), Some(props)).unwrap();
    writer.write(&batch()).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

fn read(
    bytes: &Bytes,
    props: Arc<FileDecryptionProperties>,
) -> parquet::errors::Result<RecordBatch> {
    let options = ArrowReaderOptions::new().with_file_decryption_properties(props);
    let reader =
        ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options)?.build()?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>()?;
    Ok(arrow_select_concat(&batches))
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    assert_eq!(batches.len(), 1);
    batches[0].clone()
}

fn mock() -> (ParquetKms, Arc<MockProvider>) {
    let mock = Arc::new(MockProvider::new());
    mock.add_key("footer");
    mock.add_key("pii");
    mock.add_key("other");
    (ParquetKms::new(mock.clone()), mock)
}

fn config() -> EncryptionConfig {
    EncryptionConfig::new("footer").with_column_keys("pii", ["ssn"])
}

#[test]
fn every_mode_round_trips() {
    let (kms, _) = mock();
    for plaintext_footer in [false, true] {
        for double in [false, true] {
            for len in [16, 32] {
                for columns in [false, true] {
                    let mut config = EncryptionConfig::new("footer")
                        .with_plaintext_footer(plaintext_footer)
                        .with_double_wrapping(double)
                        .with_data_key_length(len);
                    if columns {
                        config = config.with_column_keys("pii", ["ssn", "name"]);
                    }
                    let enc = kms.file_encryption_properties_blocking(&config).unwrap();
                    assert!(enc.key_material().is_none());
                    let bytes = write(&enc);
                    let props = kms.file_decryption_properties(None).unwrap();
                    assert_eq!(read(&bytes, props).unwrap(), batch());
                }
            }
        }
    }
}

#[test]
fn double_wrapping_calls_the_kms_once_per_master_key() {
    let (kms, mock) = mock();
    let config = EncryptionConfig::new("footer").with_column_keys("pii", ["ssn", "name"]);
    let enc = kms.file_encryption_properties_blocking(&config).unwrap();
    assert_eq!(mock.calls(Operation::Wrap), 2);
    let single = config.clone().with_double_wrapping(false);
    mock.reset_calls();
    kms.file_encryption_properties_blocking(&single).unwrap();
    assert_eq!(mock.calls(Operation::Wrap), 3);
    let bytes = write(&enc);
    mock.reset_calls();
    read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap();
    assert_eq!(mock.calls(Operation::Unwrap), 2, "one per KEK");
}

#[test]
fn key_metadata_is_the_spec_json() {
    let (kms, _) = mock();
    let enc = kms
        .file_encryption_properties_blocking(&config().with_double_wrapping(true))
        .unwrap();
    let footer = enc.properties().footer_key_metadata().unwrap();
    let KeyMetadata::Internal(m) = KeyMetadata::parse(footer).unwrap() else {
        panic!("internal")
    };
    assert!(m.is_footer_key);
    assert_eq!(m.master_key_id, "footer");
    assert_eq!(m.kms_instance, Some(("DEFAULT".into(), "DEFAULT".into())));
    let Wrapping::Double {
        kek_id,
        wrapped_kek,
    } = &m.wrapping
    else {
        panic!("double")
    };
    assert_eq!(material_bytes(kek_id).len(), 16);
    assert!(wrapped_kek.starts_with("cmek1:16:"), "KEKs are 128-bit");
    let column = enc.properties().column_key_metadata("ssn").unwrap();
    let KeyMetadata::Internal(c) = KeyMetadata::parse(column).unwrap() else {
        panic!("internal")
    };
    assert!(!c.is_footer_key && c.kms_instance.is_none());
    assert_eq!(c.master_key_id, "pii");
    let text = std::str::from_utf8(column).unwrap();
    for field in [
        "\"keyMaterialType\":\"PKMT1\"",
        "\"internalStorage\":true",
        "\"isFooterKey\":false",
        "\"doubleWrapping\":true",
        "\"keyEncryptionKeyID\"",
        "\"wrappedKEK\"",
        "\"wrappedDEK\"",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
}

fn material_bytes(b64: &str) -> Vec<u8> {
    material::decode_base64(b64, "test").unwrap()
}

/// The reader's error says what cmek said: parquet passes the retriever's
/// error on as text (the reader's error does not always keep the
/// `cmek::Error` as its source), so the message is what is checked.
fn says(err: &parquet::errors::ParquetError, what: &str) {
    let text = err.to_string();
    assert!(text.contains(what), "{what:?} not in {text}");
}

#[test]
fn a_wrong_or_disabled_master_key_is_a_clear_error() {
    let (kms, mock) = mock();
    let bytes = write(&kms.file_encryption_properties_blocking(&config()).unwrap());

    mock.disable_key("pii");
    let err = read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap_err();
    says(&err, "key mock:mock-region-1:pii is unavailable: disabled");
    mock.enable_key("pii");

    // The same key names, other key material: what a wrong key looks like.
    let other = Arc::new(MockProvider::new());
    for id in ["footer", "pii"] {
        other.add_key(id);
    }
    let wrong = ParquetKms::new(other);
    let err = read(&bytes, wrong.file_decryption_properties(None).unwrap()).unwrap_err();
    says(&err, "integrity check failed");

    mock.inject_fault(crate::testing::Fault::Unreachable, None, None);
    let err = read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap_err();
    says(&err, "unreachable");
}

#[test]
fn the_retriever_error_holds_the_cmek_error() {
    let (kms, mock) = mock();
    let enc = kms.file_encryption_properties_blocking(&config()).unwrap();
    mock.disable_key("footer");
    let props = kms.file_decryption_properties(None).unwrap();
    let err = props
        .footer_key(enc.properties().footer_key_metadata().map(|v| &v[..]))
        .unwrap_err();
    assert!(
        matches!(
            cmek_error(&err),
            Some(Error::KeyUnavailable {
                state: KeyState::Disabled,
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_gates_master_keys_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let mock = Arc::new(MockProvider::new());
    for id in ["footer", "pii", "third"] {
        mock.add_key(id);
    }
    let registry = Arc::new(KeyRegistry::open_with_limit(dir.path().join("reg"), 2).unwrap());
    let kms = ParquetKms::new(mock.clone()).with_registry(registry.clone());

    let err = kms.file_encryption_properties(&config()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(mock.total_calls(), 0, "no KMS call for an unregistered key");

    kms.register_master_key("footer").await.unwrap();
    kms.register_master_key("pii").await.unwrap();
    kms.register_master_key("pii").await.unwrap();
    let err = kms.register_master_key("third").await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");

    let enc = kms.file_encryption_properties(&config()).await.unwrap();
    let bytes = write(&enc);
    // A file naming a key outside the registry is refused before any call.
    let plain = ParquetKms::new(mock.clone());
    let planted = write(
        &plain
            .file_encryption_properties(&EncryptionConfig::new("third"))
            .await
            .unwrap(),
    );
    let props = kms.file_decryption_properties(None).unwrap();
    read(&bytes, props.clone()).unwrap();
    mock.reset_calls();
    let err = read(&planted, props).unwrap_err();
    says(&err, "not in the project's key registry");
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_gates_master_keys() {
    let (kms, mock) = mock();
    let monitor = KeyMonitor::new(MonitorConfig::default());
    let kms = kms.with_monitor(monitor.clone());
    let enc = kms.file_encryption_properties(&config()).await.unwrap();
    let bytes = write(&enc);
    // Watched on first use; a check finds the key disabled.
    mock.set_key_state("pii", KeyState::Disabled);
    monitor.check_now().await;
    mock.set_key_state("pii", KeyState::Enabled);
    let err = read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap_err();
    says(&err, "pii is unavailable: disabled");
    let err = kms.file_encryption_properties(&config()).await.unwrap_err();
    assert!(matches!(err, Error::KeyUnavailable { .. }), "{err}");
    monitor.check_now().await;
    read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap();
}

#[test]
fn external_key_material_rotates_without_touching_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let (kms, mock) = mock();
    for double in [true, false] {
        let config = config()
            .with_external_key_material(true)
            .with_double_wrapping(double);
        let enc = kms.file_encryption_properties_blocking(&config).unwrap();
        let material = enc.key_material().unwrap().clone();
        assert_eq!(material.len(), 2);
        assert!(material.get("footerKey").is_some() && material.get("columnKey0").is_some());
        let md = std::str::from_utf8(enc.properties().footer_key_metadata().unwrap()).unwrap();
        assert!(md.contains("\"keyReference\":\"footerKey\""), "{md}");
        let bytes = write(&enc);
        std::fs::write(&path, &bytes).unwrap();
        material.write_for(&path).unwrap();

        // Without its key material the file is not readable.
        let err = read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap_err();
        says(&err, "key-material file was not given");

        let rotated = kms
            .block_on(kms.rotate_master_key(&path, "pii", "other"))
            .unwrap();
        assert_eq!(rotated, 1);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "data untouched");
        let after = KeyMaterialFile::read_for(&path).unwrap();
        assert_eq!(after.get("footerKey"), material.get("footerKey"));
        let col = KeyMaterial::parse(after.get("columnKey0").unwrap().as_bytes()).unwrap();
        assert_eq!(col.master_key_id, "other");
        // The old master key is no longer needed.
        mock.disable_key("pii");
        let props = kms.file_decryption_properties_for(&path).unwrap();
        assert_eq!(read(&bytes, props).unwrap(), batch());
        mock.enable_key("pii");
    }
}

#[tokio::test]
async fn unwrap_key_metadata_is_async() {
    let (kms, _) = mock();
    let enc = kms.file_encryption_properties(&config()).await.unwrap();
    let md = enc.properties().column_key_metadata("ssn").unwrap();
    let key = kms.unwrap_key_metadata(md, None).await.unwrap();
    let (_, keys, _) = enc.properties().column_keys();
    assert_eq!(key.expose_secret(), &keys[0][..]);
}

#[test]
fn bad_configs_are_refused() {
    let (kms, _) = mock();
    for len in [0, 24, 64] {
        let err = kms
            .file_encryption_properties_blocking(&config().with_data_key_length(len))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{len}: {err}");
    }
    let err = kms
        .file_encryption_properties_blocking(&EncryptionConfig::new(""))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn hostile_key_metadata_in_a_file_is_refused_without_a_kms_call() {
    let (kms, mock) = mock();
    for metadata in [
        &b"not json"[..],
        br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true}"#,
        br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"footer","wrappedDEK":"cmek1:16:!!","doubleWrapping":false}"#,
        br#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":false,"masterKeyID":"footer","wrappedDEK":"AAAA","doubleWrapping":true,"keyEncryptionKeyID":"AAAA","wrappedKEK":"x:y"}"#,
    ] {
        let props = parquet::encryption::encrypt::FileEncryptionProperties::builder(vec![7; 16])
            .with_footer_key_metadata(metadata.to_vec())
            .build()
            .unwrap();
        let bytes = write_props(props);
        mock.reset_calls();
        let err = read(&bytes, kms.file_decryption_properties(None).unwrap()).unwrap_err();
        says(&err, "malformed");
        assert_eq!(mock.total_calls(), 0, "{err}");
    }
}
