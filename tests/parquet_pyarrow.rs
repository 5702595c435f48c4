//! Parquet modular encryption between cmek and PyArrow, both ways, with
//! master keys in AWS KMS (moto's KMS server on loopback, started by
//! `scripts/test`): files cmek writes are read by PyArrow's
//! `CryptoFactory` with a Python KMS client (boto3) in cmek's wrapped-key
//! format (`scripts/parquet_interop.py`), and files PyArrow writes are read
//! through cmek. Covered: column keys, plaintext and encrypted footers,
//! single and double wrapping, 128- and 256-bit data keys, external key
//! material and its rotation, a wrong master key (both ways) and a
//! disabled one (cmek's monitor gate).
//!
//! Needs `CMEK_KMS_ENDPOINT` and `CMEK_TINK_PYTHON` (a Python with
//! `pyarrow` and `boto3`: the venv of `scripts/venv`). Without them the
//! test is skipped locally, and fails when `CMEK_REQUIRE_KMS=1` or `CI` is
//! set, so CI never passes without running it.
#![cfg(all(feature = "aws-kms", feature = "parquet"))]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use cmek::monitor::{KeyMonitor, MonitorConfig};
use cmek::parquet::{EncryptionConfig, KeyMaterial, KeyMaterialFile, ParquetKms};
use cmek::provider::AwsKmsOptions;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

use common::{create_key_with_id, endpoint};

const REGION: &str = "us-east-1";

fn required() -> bool {
    std::env::var("CMEK_REQUIRE_KMS").is_ok_and(|v| v == "1") || std::env::var_os("CI").is_some()
}

/// A Python with pyarrow and boto3, or `None` after saying so when the
/// test may be skipped.
fn python() -> Option<PathBuf> {
    let Some(python) = std::env::var_os("CMEK_TINK_PYTHON").map(PathBuf::from) else {
        assert!(
            !required(),
            "CMEK_TINK_PYTHON is not set but the PyArrow interop test is required; run scripts/test"
        );
        eprintln!("skipped: set CMEK_TINK_PYTHON to the venv of scripts/venv (scripts/test does)");
        return None;
    };
    let ok = Command::new(&python)
        .args(["-c", "import pyarrow.parquet.encryption, boto3"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required(),
            "{} cannot import pyarrow and boto3: install scripts/requirements-test.txt",
            python.display()
        );
        eprintln!("skipped: {} lacks pyarrow or boto3", python.display());
        return None;
    }
    Some(python)
}

/// Runs `jobs` through scripts/parquet_interop.py; one result per job.
fn run_python(python: &Path, jobs: &[Value]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/parquet_interop.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), &jobs).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "parquet_interop.py failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
}

fn batch() -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
    let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
    let ssn: ArrayRef = Arc::new(StringArray::from(vec!["111", "222", "333"]));
    RecordBatch::try_from_iter([("id", ids), ("name", names), ("ssn", ssn)]).unwrap()
}

/// The table as PyArrow prints it (`to_pydict`).
fn expected_columns() -> Value {
    json!({"id": [1, 2, 3], "name": ["a", "b", "c"], "ssn": ["111", "222", "333"]})
}

fn write_with(kms: &ParquetKms, config: &EncryptionConfig, path: &Path) {
    let enc = kms.file_encryption_properties_blocking(config).unwrap();
    let props = WriterProperties::builder()
        .with_file_encryption_properties(enc.properties().clone())
        .build();
    let mut writer =
        ArrowWriter::try_new(File::create(path).unwrap(), batch().schema(), Some(props)).unwrap();
    writer.write(&batch()).unwrap();
    writer.close().unwrap();
    if let Some(material) = enc.key_material() {
        material.write_for(path).unwrap();
    }
}

/// Reads a file through cmek and returns its columns as PyArrow would.
fn read_with(props: Arc<FileDecryptionProperties>, path: &Path) -> parquet::errors::Result<Value> {
    let options = ArrowReaderOptions::new().with_file_decryption_properties(props);
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(path)?, options)?
        .build()?;
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut ssns = Vec::new();
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let id = col("id");
        let id = id.as_any().downcast_ref::<Int64Array>().unwrap();
        ids.extend(id.values().iter().copied());
        for (name, out) in [("name", &mut names), ("ssn", &mut ssns)] {
            let c = col(name);
            let s = c.as_any().downcast_ref::<StringArray>().unwrap();
            out.extend((0..s.len()).map(|i| s.value(i).to_owned()));
        }
    }
    Ok(json!({"id": ids, "name": names, "ssn": ssns}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmek_and_pyarrow_read_each_others_files() {
    let Some(url) = endpoint() else { return };
    let Some(python) = python() else { return };
    let provider = Arc::new(common::provider(&url, REGION, &AwsKmsOptions::default()));
    // Key ids, not ARNs: PyArrow's column-keys property separates master
    // key ids from columns with ':'.
    let footer = create_key_with_id(&provider, false).await.1;
    let pii = create_key_with_id(&provider, false).await.1;
    let other = create_key_with_id(&provider, false).await.1;
    let kms = ParquetKms::new(provider.clone());
    let dir = tempfile::tempdir().unwrap();
    let base = json!({"endpoint": url, "region": REGION});
    let job = |extra: Value| {
        let mut j = base.clone();
        j.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        j
    };

    // cmek writes every mode; PyArrow reads.
    let mut jobs = Vec::new();
    let mut cases = Vec::new();
    for plaintext_footer in [false, true] {
        for double in [false, true] {
            for len in [16, 32] {
                let path = dir
                    .path()
                    .join(format!("cmek-{plaintext_footer}-{double}-{len}.parquet"));
                let config = EncryptionConfig::new(&footer)
                    .with_column_keys(&pii, ["ssn"])
                    .with_plaintext_footer(plaintext_footer)
                    .with_double_wrapping(double)
                    .with_data_key_length(len);
                write_with(&kms, &config, &path);
                cases.push(format!("cmek wrote {}", path.display()));
                jobs.push(job(json!({"op": "read", "path": path})));
            }
        }
    }
    // External key material, rotated from `pii` to `other` before PyArrow
    // reads it: the data file is not rewritten.
    let external = dir.path().join("cmek-external.parquet");
    write_with(
        &kms,
        &EncryptionConfig::new(&footer)
            .with_column_keys(&pii, ["ssn", "name"])
            .with_external_key_material(true),
        &external,
    );
    let before = std::fs::read(&external).unwrap();
    assert_eq!(
        kms.rotate_master_key(&external, &pii, &other)
            .await
            .unwrap(),
        2
    );
    assert_eq!(std::fs::read(&external).unwrap(), before);
    cases.push("cmek wrote external material, rotated".into());
    jobs.push(job(
        json!({"op": "read", "path": external, "external": true}),
    ));
    // A wrong master key on PyArrow's side.
    let wrong_for_pyarrow = dir.path().join("cmek-false-true-16.parquet");
    cases.push("PyArrow reads with a wrong key".into());
    jobs.push(job(
        json!({"op": "read", "path": wrong_for_pyarrow, "use_key": other}),
    ));

    // PyArrow writes every mode (its default 128-bit data keys); cmek reads.
    let mut py_files = Vec::new();
    for plaintext_footer in [false, true] {
        for double in [false, true] {
            let path = dir
                .path()
                .join(format!("py-{plaintext_footer}-{double}.parquet"));
            jobs.push(job(json!({
                "op": "write", "path": path, "footer_key": footer,
                "column_keys": {pii.clone(): ["ssn"]},
                "plaintext_footer": plaintext_footer, "double_wrapping": double,
            })));
            cases.push(format!("PyArrow writes {}", path.display()));
            py_files.push(path);
        }
    }
    let py_256 = dir.path().join("py-256.parquet");
    jobs.push(job(json!({
        "op": "write", "path": py_256, "footer_key": footer,
        "column_keys": {pii.clone(): ["ssn", "name"]}, "data_key_bits": 256,
    })));
    cases.push("PyArrow writes 256-bit keys".into());
    py_files.push(py_256);
    let py_external = dir.path().join("py-external.parquet");
    jobs.push(job(json!({
        "op": "write", "path": py_external, "footer_key": footer,
        "column_keys": {pii.clone(): ["ssn"]}, "external": true,
    })));
    cases.push("PyArrow writes external material".into());
    let py_wrong = dir.path().join("py-wrong.parquet");
    jobs.push(job(json!({
        "op": "write", "path": py_wrong, "footer_key": footer,
        "column_keys": {pii.clone(): ["ssn"]}, "use_key": other,
    })));
    cases.push("PyArrow writes under a key its material does not name".into());

    let results = run_python(&python, &jobs);
    for ((job, result), case) in jobs.iter().zip(&results).zip(&cases) {
        let wrong = job.get("use_key").is_some() && job["op"] == "read";
        if wrong {
            assert_eq!(result["ok"], false, "{case}: {result}");
            let error = result["error"].as_str().unwrap();
            assert!(error.contains("AccessDenied"), "{case}: {error}");
        } else {
            assert_eq!(result["ok"], true, "{case}: {result}");
            if job["op"] == "read" {
                assert_eq!(result["columns"], expected_columns(), "{case}");
            }
        }
    }

    // cmek reads every file PyArrow wrote.
    for path in &py_files {
        let props = kms.file_decryption_properties(None).unwrap();
        assert_eq!(
            read_with(props, path).unwrap(),
            expected_columns(),
            "{}",
            path.display()
        );
    }
    // PyArrow's external key material: read, rotated by cmek, read again
    // by cmek without the old master key's help.
    let material = KeyMaterialFile::read_for(&py_external).unwrap();
    assert!(material.get("footerKey").is_some(), "{material:?}");
    let props = kms.file_decryption_properties_for(&py_external).unwrap();
    assert_eq!(read_with(props, &py_external).unwrap(), expected_columns());
    assert_eq!(
        kms.rotate_master_key(&py_external, &pii, &other)
            .await
            .unwrap(),
        1
    );
    let rotated = KeyMaterialFile::read_for(&py_external).unwrap();
    let column = rotated
        .iter()
        .find(|(id, _)| *id != "footerKey")
        .map(|(_, m)| KeyMaterial::parse(m.as_bytes()).unwrap())
        .unwrap();
    assert_eq!(column.master_key_id, other);
    let props = kms.file_decryption_properties_for(&py_external).unwrap();
    assert_eq!(read_with(props, &py_external).unwrap(), expected_columns());

    // A wrong master key on cmek's side: refused, naming the key.
    let err = read_with(kms.file_decryption_properties(None).unwrap(), &py_wrong).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&footer) && text.contains("access denied"),
        "{text}"
    );

    // A disabled master key: the monitor's check finds it disabled and
    // cmek refuses it before any KMS call.
    let monitor = KeyMonitor::new(MonitorConfig::default());
    let gated = ParquetKms::new(provider.clone()).with_monitor(monitor.clone());
    let props = gated.file_decryption_properties(None).unwrap();
    read_with(props, &py_files[0]).unwrap();
    common::client(&url, REGION)
        .disable_key()
        .key_id(&pii)
        .send()
        .await
        .unwrap();
    monitor.check_now().await;
    let err = read_with(
        gated.file_decryption_properties(None).unwrap(),
        &py_files[0],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&pii) && err.contains("is unavailable: disabled"),
        "{err}"
    );
    common::client(&url, REGION)
        .enable_key()
        .key_id(&pii)
        .send()
        .await
        .unwrap();
}
