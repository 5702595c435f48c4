//! Parquet modular encryption through `cmek::parquet`, against the same
//! file unencrypted, in the same run.
//!
//! The table: 1 Mi rows of an `Int64` id, a `Float64` value and a short
//! `Utf8` name (about 21 MiB of Arrow data), in 8 row groups, without
//! compression. Each write makes a whole file in memory through parquet's
//! `ArrowWriter`; each read decodes it whole with
//! `ParquetRecordBatchReader`.
//!
//! * `parquet_write`: unencrypted; every column under the footer key
//!   (`uniform`); the `name` column under a column key of its own, the
//!   others plaintext (`column_key`). The encrypted cases include making
//!   the file's data keys and wrapping them (double wrapping: one wrap
//!   per master key on the in-memory mock provider, no network), as a
//!   writer pays once per file.
//! * `parquet_read`: the same three files; the encrypted reads include
//!   unwrapping the keys through the key retriever.
//!
//! `cargo bench --bench parquet --features parquet,testing`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use cmek::parquet::{EncryptionConfig, ParquetKms};
use cmek::testing::MockProvider;

const ROWS: usize = 1 << 20;
const ROW_GROUP: usize = ROWS / 8;

fn table() -> RecordBatch {
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..ROWS as i64));
    let values: ArrayRef = Arc::new(Float64Array::from_iter_values(
        (0..ROWS).map(|i| (i as f64) * 0.5),
    ));
    let names: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..ROWS).map(|i| format!("name-{}", i % 1000)),
    ));
    RecordBatch::try_from_iter([("id", ids), ("value", values), ("name", names)]).unwrap()
}

fn write(batch: &RecordBatch, kms: Option<(&ParquetKms, &EncryptionConfig)>) -> Bytes {
    let mut props = WriterProperties::builder().set_max_row_group_row_count(Some(ROW_GROUP));
    if let Some((kms, config)) = kms {
        let enc = kms.file_encryption_properties_blocking(config).unwrap();
        props = props.with_file_encryption_properties(enc.properties().clone());
    }
    let mut out = Vec::with_capacity(32 << 20);
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props.build())).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

fn read(bytes: &Bytes, kms: Option<&ParquetKms>) -> usize {
    let mut options = ArrowReaderOptions::new();
    if let Some(kms) = kms {
        options =
            options.with_file_decryption_properties(kms.file_decryption_properties(None).unwrap());
    }
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options)
        .unwrap()
        .with_batch_size(64 << 10)
        .build()
        .unwrap();
    reader.map(|b| b.unwrap().num_rows()).sum()
}

fn parquet(c: &mut Criterion) {
    let mock = Arc::new(MockProvider::new());
    mock.add_key("footer");
    mock.add_key("pii");
    let kms = ParquetKms::new(mock);
    let batch = table();
    let uniform = EncryptionConfig::new("footer");
    let column = EncryptionConfig::new("footer").with_column_keys("pii", ["name"]);
    let arrow_bytes = batch.get_array_memory_size() as u64;

    let plain_file = write(&batch, None);
    let uniform_file = write(&batch, Some((&kms, &uniform)));
    let column_file = write(&batch, Some((&kms, &column)));
    eprintln!(
        "parquet: {} rows, {} B of Arrow data; files: plaintext {} B, uniform {} B, column key {} B",
        ROWS,
        arrow_bytes,
        plain_file.len(),
        uniform_file.len(),
        column_file.len()
    );
    assert_eq!(read(&uniform_file, Some(&kms)), ROWS);

    let mut g = c.benchmark_group("parquet_write");
    g.throughput(Throughput::Bytes(arrow_bytes));
    g.bench_function("plaintext", |b| b.iter(|| black_box(write(&batch, None))));
    g.bench_function("uniform", |b| {
        b.iter(|| black_box(write(&batch, Some((&kms, &uniform)))))
    });
    g.bench_function("column_key", |b| {
        b.iter(|| black_box(write(&batch, Some((&kms, &column)))))
    });
    g.finish();

    let mut g = c.benchmark_group("parquet_read");
    g.throughput(Throughput::Bytes(arrow_bytes));
    g.bench_function("plaintext", |b| {
        b.iter(|| black_box(read(&plain_file, None)))
    });
    g.bench_function("uniform", |b| {
        b.iter(|| black_box(read(&uniform_file, Some(&kms))))
    });
    g.bench_function("column_key", |b| {
        b.iter(|| black_box(read(&column_file, Some(&kms))))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    targets = parquet
}
criterion_main!(benches);
