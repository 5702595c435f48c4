//! AWS KMS as the root of trust.
//!
//! Prints the IAM role and trust policies for a key; then, when there is a
//! KMS to talk to — an `--endpoint` (such as the test server `scripts/test`
//! starts) or real AWS configuration (`AWS_PROFILE`/`AWS_REGION` or the other
//! standard settings) together with `--key` — validates the key the way a
//! console does, creates a zone under it (in memory), writes and reads a
//! segment, and reopens the zone from its manifest.
//!
//! ```text
//! cargo run --example aws_kms                                   # policies only
//! cargo run --example aws_kms -- --key arn:aws:kms:...          # real AWS
//! cargo run --example aws_kms -- --endpoint http://127.0.0.1:PORT --region us-east-1
//! ```
//!
//! On a test endpoint without `--key`, the example creates a key first.

use std::sync::Arc;

use cmek::provider::aws::policy;
use cmek::provider::{AwsKmsOptions, AwsKmsProvider, NewKey};
use cmek::zone::{Keyring, MemoryManifestStore, ZoneSpec};
use cmek::KeyProvider;

const EXAMPLE_ARN: &str =
    "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

#[derive(Default)]
struct Args {
    key: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    principal: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => args.key = Some(value()?),
            "--endpoint" => args.endpoint = Some(value()?),
            "--region" => args.region = Some(value()?),
            "--principal" => args.principal = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;

    let arn = args
        .key
        .as_deref()
        .filter(|k| k.starts_with("arn:"))
        .unwrap_or(EXAMPLE_ARN);
    println!("Role policy for {arn}:\n{}\n", policy::role_policy(&[arn])?);
    let principal = args
        .principal
        .as_deref()
        .unwrap_or("arn:aws:iam::444455556666:role/storage-service");
    println!(
        "Trust policy for {principal}:\n{}\n",
        policy::trust_policy(principal, Some("project-1"))?
    );

    if args.endpoint.is_none() && args.key.is_none() {
        println!("No --endpoint or --key given: not calling KMS.");
        return Ok(());
    }

    let kms = AwsKmsProvider::from_env(AwsKmsOptions {
        region: args.region.clone(),
        endpoint_url: args.endpoint.clone(),
        ..AwsKmsOptions::default()
    })
    .await?;
    let key_id = match args.key {
        Some(key) => key,
        None => {
            // Only on a test endpoint: create a throwaway key to use,
            // through the provider's administration.
            let admin = kms.admin().ok_or("the provider has no administration")?;
            let created = admin.create_key(&NewKey::named("cmek example")).await?;
            println!("created test key {}", created.key_id());
            created.key_id().to_owned()
        }
    };
    let root = kms.key_ref(&key_id);

    let report = kms.validate_key(&root).await;
    for (step, outcome) in report.steps() {
        println!("validate {:<8} {outcome:?}", step.as_str());
    }
    println!("{report}");
    if !report.is_valid() {
        return Err(report.to_string().into());
    }

    let region = kms.region().to_owned();
    let keyring = Keyring::new(Arc::new(kms));
    let store = Arc::new(MemoryManifestStore::new());
    let zone = keyring
        .create_zone(
            store.clone(),
            ZoneSpec::new("example", region, root.clone()),
        )
        .await?;
    println!("created zone {} under {root}", zone.id());
    let segment = zone.encrypt_segment("example/segment-1", b"hello from cmek")?;
    let plaintext = zone.decrypt_segment("example/segment-1", &segment)?;
    println!(
        "wrote and read a segment: {} bytes on disk, {:?}",
        segment.len(),
        String::from_utf8_lossy(&plaintext)
    );
    // Reopening checks the manifest against what the caller kept: the
    // zone's anchor (id, root key, generation), stored outside the storage
    // that holds the manifest.
    let anchor = zone.anchor();
    let reopened = keyring.open_zone(store, &anchor).await?;
    assert_eq!(
        reopened.decrypt_segment("example/segment-1", &segment)?,
        plaintext
    );
    println!("reopened the zone from its manifest (one KMS Decrypt) and read the segment again");
    Ok(())
}
