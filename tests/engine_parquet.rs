//! Parquet on the encrypted object store (`object_store` 0.14, the major
//! `parquet` 60 is built on): a file written with the async Arrow writer
//! through the store, read back with the async reader — whole, by
//! projection and row group, by row selection through the page index —
//! each read equal to the same read of the same file on the plain store; no
//! plaintext stored; a tampered file an error.
#![cfg(feature = "object-store")]

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cmek::object_store::v014::EncryptedStore;
use cmek::provider::LocalKeyProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec};
use futures_util::TryStreamExt;
use object_store_014 as os;
use os::local::LocalFileSystem;
use os::memory::InMemory;
use os::path::Path;
use os::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::WriterProperties;

/// Rows in the file, in row groups of `GROUP` rows.
const ROWS: usize = 20_000;
const GROUP: usize = 2_000;

/// Text in every `name` cell: found in a store that holds plaintext.
const MARKER: &[u8] = b"cmek-parquet-row-";

/// The encrypted store the tests put Parquet on: the one place that
/// chooses its settings.
fn encrypted_store(
    inner: Arc<dyn ObjectStore>,
    zone: Zone,
) -> EncryptedStore<Arc<dyn ObjectStore>> {
    EncryptedStore::new(inner, zone)
}

async fn zone_in(dir: &std::path::Path) -> Zone {
    let provider = LocalKeyProvider::create(dir.join("root.keys"), "local").unwrap();
    let root = provider.add_key("root").unwrap();
    Keyring::new(Arc::new(provider))
        .create_zone(
            Arc::new(MemoryManifestStore::new()),
            ZoneSpec::new("tables", "local", root),
        )
        .await
        .unwrap()
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("payload", DataType::Binary, false),
    ]))
}

/// Rows `start..end`: payloads of 0 B to 1 KiB.
fn batch(start: usize, end: usize) -> RecordBatch {
    let ids = Int64Array::from_iter_values((start..end).map(|i| i as i64));
    let names =
        StringArray::from_iter_values((start..end).map(|i| format!("cmek-parquet-row-{i}")));
    let scores = Float64Array::from_iter_values((start..end).map(|i| i as f64 * 0.25));
    let payloads: Vec<Vec<u8>> = (start..end)
        .map(|i| vec![(i % 251) as u8; (i * 37) % 1025])
        .collect();
    let payloads = BinaryArray::from_iter_values(payloads.iter());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids),
        Arc::new(names),
        Arc::new(scores),
        Arc::new(payloads),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// Writes the table to `path` with the async Arrow writer over
/// `object_store`'s `BufWriter` (a multipart upload above 10 MiB): row
/// groups of `GROUP` rows, pages of 500 rows with a page index, no
/// compression.
async fn write_table(store: Arc<dyn ObjectStore>, path: &Path) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(GROUP))
        .set_data_page_row_count_limit(500)
        .set_write_batch_size(500)
        .build();
    let writer = os::buffered::BufWriter::new(store, path.clone());
    let mut writer = AsyncArrowWriter::try_new(writer, schema(), Some(props)).unwrap();
    for start in (0..ROWS).step_by(1000) {
        writer.write(&batch(start, start + 1000)).await.unwrap();
    }
    writer.close().await.unwrap();
}

/// One read of the file: which row groups, which columns, which rows.
#[derive(Clone, Debug)]
struct Read {
    row_groups: Option<Vec<usize>>,
    columns: Option<Vec<usize>>,
    selection: Option<Vec<RowSelector>>,
}

const WHOLE: Read = Read {
    row_groups: None,
    columns: None,
    selection: None,
};

/// Reads the file with `ParquetObjectReader`, `parquet`'s own reader on an
/// `ObjectStore` (deprecated since 59.2 in favour of a caller's own
/// `AsyncFileReader`, which would read through the same `get_range` and
/// `get_ranges` calls).
#[allow(deprecated)]
async fn read(
    store: Arc<dyn ObjectStore>,
    path: &Path,
    how: &Read,
) -> parquet::errors::Result<Vec<RecordBatch>> {
    let reader = ParquetObjectReader::new(store, path.clone());
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let mut builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options).await?;
    if let Some(groups) = &how.row_groups {
        builder = builder.with_row_groups(groups.clone());
    }
    if let Some(columns) = &how.columns {
        let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
        builder = builder.with_projection(mask);
    }
    if let Some(selection) = &how.selection {
        builder = builder.with_row_selection(RowSelection::from(selection.clone()));
    }
    builder.build()?.try_collect().await
}

/// The reads compared: whole; two columns of three row groups; one row
/// group's rows picked through the page index.
fn reads() -> Vec<Read> {
    vec![
        WHOLE,
        Read {
            row_groups: Some(vec![1, 4, 9]),
            columns: Some(vec![0, 2]),
            selection: None,
        },
        Read {
            row_groups: Some(vec![6]),
            columns: Some(vec![1, 3]),
            selection: Some(vec![
                RowSelector::skip(123),
                RowSelector::select(77),
                RowSelector::skip(1000),
                RowSelector::select(300),
                RowSelector::skip(500),
            ]),
        },
    ]
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Every read through the encrypted store equals the same read on the
/// plain store, over `inner`.
async fn same_as_plain(inner: Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(encrypted_store(
        Arc::clone(&inner),
        zone_in(dir.path()).await,
    ));
    let plain: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("tables/orders/part-0.parquet");
    write_table(Arc::clone(&store), &path).await;
    write_table(Arc::clone(&plain), &path).await;
    assert_eq!(
        store.head(&path).await.unwrap().size,
        plain.head(&path).await.unwrap().size,
        "plaintext sizes"
    );

    for how in reads() {
        let got = read(Arc::clone(&store), &path, &how).await.unwrap();
        let want = read(Arc::clone(&plain), &path, &how).await.unwrap();
        assert_eq!(got, want, "{how:?}");
        assert!(rows(&got) > 0, "{how:?}");
    }
    let whole = read(Arc::clone(&store), &path, &WHOLE).await.unwrap();
    assert_eq!(rows(&whole), ROWS);
    let first = whole[0].slice(0, 10);
    assert_eq!(first, batch(0, 10));

    // The plain file holds the marker (the check can fail); the stored
    // ciphertext does not.
    let stored = inner.get(&path).await.unwrap().bytes().await.unwrap();
    let plain_bytes = plain.get(&path).await.unwrap().bytes().await.unwrap();
    assert!(contains(&plain_bytes, MARKER));
    assert!(!contains(&stored, MARKER));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    haystack
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == first)
        .any(|(at, _)| haystack[at..].starts_with(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_equal_the_plain_store_over_in_memory() {
    same_as_plain(Arc::new(InMemory::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_equal_the_plain_store_over_local_files() {
    let root = tempfile::tempdir().unwrap();
    same_as_plain(Arc::new(
        LocalFileSystem::new_with_prefix(root.path()).unwrap(),
    ))
    .await;
}

/// One byte flipped in the middle of the stored file (a data page): the
/// reads that touch it fail with the adapter's integrity error, promptly;
/// none returns other rows than the plain file's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store: Arc<dyn ObjectStore> = Arc::new(encrypted_store(
        Arc::clone(&inner),
        zone_in(dir.path()).await,
    ));
    let plain: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("tables/orders/part-0.parquet");
    write_table(Arc::clone(&store), &path).await;
    write_table(Arc::clone(&plain), &path).await;

    let mut bytes = inner
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    inner.put(&path, bytes.into()).await.unwrap();

    let mut failed = 0;
    for how in reads() {
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            read(Arc::clone(&store), &path, &how),
        )
        .await
        .unwrap_or_else(|_| panic!("{how:?}: no answer in 10 s"));
        match got {
            Ok(batches) => {
                let want = read(Arc::clone(&plain), &path, &how).await.unwrap();
                assert_eq!(batches, want, "{how:?}");
            }
            Err(e) => {
                let found = cmek_error_in(&e);
                assert!(
                    matches!(found, Some(cmek::Error::Integrity { .. })),
                    "{how:?}: {e:?}"
                );
                failed += 1;
            }
        }
    }
    // The whole read touches every page.
    assert!(failed >= 1);
}

/// The `cmek::Error` among `err`'s sources.
fn cmek_error_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a cmek::Error> {
    let mut err = err;
    loop {
        if let Some(e) = err.downcast_ref::<cmek::Error>() {
            return Some(e);
        }
        err = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => err.source()?,
        };
    }
}
