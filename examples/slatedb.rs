//! SlateDB, unmodified, on an encrypted object store: every SST, WAL
//! segment and manifest SlateDB writes is a segment of one zone, and
//! SlateDB cannot tell the store from a plain one.
//!
//! One database, one zone. The zone's anchor is kept in a file beside the
//! database; the first run creates the zone and writes the anchor, later
//! runs open the zone through it (a rolled-back or swapped zone manifest is
//! refused). In production the anchor belongs where whoever can write the
//! objects cannot: a catalog or control plane.
//!
//! By default the database is in a local directory (a new temporary one,
//! or `--dir`): its objects under `DIR/objects`, the zone manifest in
//! `DIR/zone.manifest`. Given an S3-compatible `--endpoint` and `--bucket`,
//! the objects and the zone manifest (an object replaced only by
//! conditional writes, so several nodes can share it) go to that bucket;
//! the root key file and the anchor stay in `DIR`. Credentials come from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
//!
//! ```text
//! cargo run --example slatedb --features object-store
//! cargo run --example slatedb --features object-store -- --dir /tmp/orders-db
//! cargo run --example slatedb --features object-store -- \
//!     --endpoint http://127.0.0.1:PORT --bucket demo --region us-east-1
//! ```

use std::sync::Arc;

use cmek::object_store::v014::object_store::aws::AmazonS3Builder;
use cmek::object_store::v014::object_store::local::LocalFileSystem;
use cmek::object_store::v014::object_store::path::Path;
use cmek::object_store::v014::object_store::{ObjectStore, ObjectStoreExt};
use cmek::object_store::v014::{EncryptedStore, ObjectManifestStore};
use cmek::object_store::ChunkSizes;
use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, ManifestStore, Zone, ZoneAnchor, ZoneSpec};
use futures_util::TryStreamExt;
use slatedb::config::Settings;
use slatedb::{Db, WriteBatch};

#[derive(Default)]
struct Args {
    dir: Option<std::path::PathBuf>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    keys: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(value()?.into()),
            "--endpoint" => args.endpoint = Some(value()?),
            "--bucket" => args.bucket = Some(value()?),
            "--region" => args.region = Some(value()?),
            "--keys" => {
                args.keys = Some(value()?.parse().map_err(|e| format!("--keys: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.endpoint.is_some() != args.bucket.is_some() {
        return Err("--endpoint and --bucket go together".into());
    }
    Ok(args)
}

/// The database's path in the store.
const DB: &str = "orders";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let n = args.keys.unwrap_or(2_000);

    // Where the objects and the zone manifest live.
    let (inner, manifest): (Arc<dyn ObjectStore>, Arc<dyn ManifestStore>) =
        match (&args.endpoint, &args.bucket) {
            (Some(endpoint), Some(bucket)) => {
                let s3: Arc<dyn ObjectStore> = Arc::new(
                    AmazonS3Builder::from_env()
                        .with_endpoint(endpoint)
                        .with_allow_http(endpoint.starts_with("http://"))
                        .with_bucket_name(bucket)
                        .with_region(args.region.as_deref().unwrap_or("us-east-1"))
                        .build()?,
                );
                let manifest =
                    ObjectManifestStore::new(Arc::clone(&s3), Path::from(format!("{DB}.zone")));
                println!("database and zone manifest in s3://{bucket} at {endpoint}");
                (s3, Arc::new(manifest))
            }
            _ => {
                let objects = dir.join("objects");
                std::fs::create_dir_all(&objects)?;
                println!("database in {}", objects.display());
                (
                    Arc::new(LocalFileSystem::new_with_prefix(&objects)?),
                    Arc::new(FileManifestStore::new(dir.join("zone.manifest"))),
                )
            }
        };

    // The zone: created on the first run, opened through its anchor after.
    let anchor_file = dir.join("zone.anchor");
    let zone = open_or_create_zone(&dir, &anchor_file, Arc::clone(&manifest)).await?;
    println!("zone {}", zone.id());

    // SlateDB on the encrypted store, its SSTs in block-sized chunks (see
    // docs/ENGINES.md).
    let db = Db::builder(DB, encrypted(Arc::clone(&inner), zone))
        .with_settings(Settings::default())
        .build()
        .await?;
    let mut batch = WriteBatch::new();
    for i in 0..n {
        batch.put(key(i), value(i));
    }
    db.write(batch).await?.await_durable().await?;
    db.delete(key(7)).await?;
    db.flush().await?;
    db.close().await?;
    println!("wrote {n} keys, deleted one");

    // Reopen as a restarted process would: a new keyring, the zone through
    // its anchor.
    let zone = open_or_create_zone(&dir, &anchor_file, manifest).await?;
    let db = Db::builder(DB, encrypted(Arc::clone(&inner), zone))
        .build()
        .await?;
    assert_eq!(db.get(key(7)).await?, None);
    assert_eq!(db.get(key(8)).await?.as_deref(), Some(&value(8)[..]));
    let mut scan = db.scan(key(100)..key(110)).await?;
    let mut seen = 0;
    while let Some(kv) = scan.next().await? {
        assert_eq!(kv.value, value(100 + seen));
        seen += 1;
    }
    assert_eq!(seen, 10);
    db.close().await?;
    println!("reopened through the anchor: reads and scans match");

    // What the inner store holds: ciphertext, no value text.
    let objects: Vec<_> = inner.list(Some(&Path::from(DB))).try_collect().await?;
    let mut stored = 0;
    for meta in &objects {
        let bytes = inner.get(&meta.location).await?.bytes().await?;
        if bytes.windows(6).any(|w| w == b"order-") {
            return Err(format!("{} holds plaintext", meta.location).into());
        }
        stored += meta.size;
    }
    println!(
        "{} objects, {stored} bytes stored, none holds plaintext",
        objects.len()
    );
    Ok(())
}

/// The encrypted store SlateDB gets: every object a segment of `zone`,
/// SSTs in 1 KiB chunks, so that a read of one of SlateDB's 4 KiB blocks
/// fetches little more than the block.
fn encrypted(inner: Arc<dyn ObjectStore>, zone: Zone) -> Arc<dyn ObjectStore> {
    Arc::new(EncryptedStore::new(inner, zone).with_chunk_sizes(ChunkSizes::slatedb()))
}

/// Opens the zone through the anchor in `anchor_file`, or, if there is no
/// such file, creates the zone on the local root key in `dir` and writes
/// its anchor there.
async fn open_or_create_zone(
    dir: &std::path::Path,
    anchor_file: &std::path::Path,
    manifest: Arc<dyn ManifestStore>,
) -> Result<Zone, Box<dyn std::error::Error>> {
    let provider = LocalKeyProvider::open_or_create(dir.join("root.keys"), "local")?;
    match std::fs::read_to_string(anchor_file) {
        Ok(text) => {
            let anchor: ZoneAnchor = text.trim().parse()?;
            let keyring = Keyring::new(Arc::new(provider));
            Ok(keyring.open_zone(manifest, &anchor).await?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let root = provider.add_key("root")?;
            let keyring = Keyring::new(Arc::new(provider));
            let zone = keyring
                .create_zone(manifest, ZoneSpec::new(DB, "local", root))
                .await?;
            std::fs::write(anchor_file, zone.anchor().to_string())?;
            Ok(zone)
        }
        Err(e) => Err(e.into()),
    }
}

fn key(i: usize) -> String {
    format!("order-{i:06}")
}

fn value(i: usize) -> Vec<u8> {
    format!("order-{i:06}: {} items", i % 17).into_bytes()
}
