//! Encrypted objects through `object_store`: every object a segment of a
//! zone, read back by plaintext ranges that fetch only the chunks they need.
//!
//! By default the objects go to a local directory (a new temporary one, or
//! `--dir`), the zone manifest beside them in a file. Given an S3-compatible
//! `--endpoint` and `--bucket`, they go to that bucket, and so does the zone
//! manifest, as an object replaced only by conditional writes (several
//! nodes can share it). Credentials come from `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`. The root key is a local key file in either case.
//!
//! ```text
//! cargo run --example object_store --features object-store
//! cargo run --example object_store --features object-store -- --dir /tmp/lake
//! cargo run --example object_store --features object-store -- \
//!     --endpoint http://127.0.0.1:PORT --bucket demo --region us-east-1
//! ```

use std::sync::Arc;

use cmek::object_store::v014::object_store::aws::AmazonS3Builder;
use cmek::object_store::v014::object_store::local::LocalFileSystem;
use cmek::object_store::v014::object_store::path::Path;
use cmek::object_store::v014::object_store::{ObjectStore, ObjectStoreExt};
use cmek::object_store::v014::{EncryptedStore, ObjectManifestStore};
use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, ManifestStore, ZoneSpec};
use futures_util::TryStreamExt;

#[derive(Default)]
struct Args {
    dir: Option<std::path::PathBuf>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
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
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.endpoint.is_some() != args.bucket.is_some() {
        return Err("--endpoint and --bucket go together".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_owned());
    std::fs::create_dir_all(&dir)?;

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
                let manifest = ObjectManifestStore::new(Arc::clone(&s3), Path::from("_cmek/zone"));
                println!("objects and zone manifest in s3://{bucket} at {endpoint}");
                (s3, Arc::new(manifest))
            }
            _ => {
                let objects = dir.join("objects");
                std::fs::create_dir_all(&objects)?;
                println!("objects in {}", objects.display());
                (
                    Arc::new(LocalFileSystem::new_with_prefix(&objects)?),
                    Arc::new(FileManifestStore::new(dir.join("zone.manifest"))),
                )
            }
        };

    // The root of trust: a local key file (any KeyProvider works the same).
    let provider = LocalKeyProvider::open_or_create(dir.join("root.keys"), "local")?;
    let root = provider.get_or_add_key("root")?;
    let keyring = Keyring::new(Arc::new(provider));
    let (zone, origin) = keyring
        .open_or_create_zone(manifest, ZoneSpec::new("lake", "local", root))
        .await?;
    println!("zone {} ({origin:?})", zone.id());

    let store = EncryptedStore::new(inner, zone);

    // Write: one object with `put`, a larger one streamed in parts.
    let small = Path::from("tables/orders/part-0.parquet");
    let rows: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    store.put(&small, rows.clone().into()).await?;
    let large = Path::from("tables/orders/part-1.parquet");
    let mut upload = store.put_multipart(&large).await?;
    for part in rows.chunks(400_000) {
        upload.put_part(part.to_vec().into()).await?;
    }
    upload.complete().await?;

    // Range-read: plaintext offsets; only the chunks holding them are fetched.
    let footer = store.get_range(&small, 1_199_992..1_200_000).await?;
    assert_eq!(&footer[..], &rows[1_199_992..]);
    let pieces = store.get_ranges(&large, &[0..4, 600_000..600_016]).await?;
    assert_eq!(&pieces[1][..], &rows[600_000..600_016]);
    println!("range reads match the plaintext");

    // List: plaintext sizes.
    let listed: Vec<_> = store
        .list(Some(&Path::from("tables")))
        .try_collect()
        .await?;
    for meta in &listed {
        let stored = store.inner().head(&meta.location).await?.size;
        println!("{}: {} bytes ({} stored)", meta.location, meta.size, stored);
    }
    assert!(listed.iter().all(|m| m.size == rows.len() as u64));

    // What the inner store holds is ciphertext bound to its path: moved by
    // the inner store, it no longer decrypts; copied by the adapter, it is
    // re-encrypted for its new path.
    let moved = Path::from("tables/orders/moved.parquet");
    store.inner().copy(&small, &moved).await?;
    match store.get(&moved).await {
        Err(e) => println!("a segment copied by the inner store is refused: {e}"),
        Ok(_) => return Err("a moved segment decrypted".into()),
    }
    store.copy(&small, &moved).await?;
    assert_eq!(store.get(&moved).await?.bytes().await?, rows);
    println!("copied through the adapter: reads back");

    for p in [&small, &large, &moved] {
        store.delete(p).await?;
    }
    Ok(())
}
