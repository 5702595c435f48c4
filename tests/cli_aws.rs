//! The `cmek` binary against AWS KMS: a KMS-compatible server on loopback
//! (moto, started by `scripts/test`), reached with `--endpoint-url`.
//!
//! The server's address comes from `CMEK_KMS_ENDPOINT`. Without it these
//! tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is set, and otherwise say
//! they were skipped. The test server does not enforce key states on
//! Encrypt/Decrypt (docs/AWS_KMS.md), so disabled keys are observed through
//! validation's describe step.
#![cfg(all(feature = "cli", feature = "aws-kms"))]

mod common;

use std::fs;

use assert_cmd::Command;
use cmek::provider::AwsKmsOptions;
use predicates::prelude::*;
use predicates::str::contains;

const REGION: &str = "us-east-1";
const OTHER_REGION: &str = "eu-west-1";
const KEY_UNAVAILABLE: i32 = 5;
const UNREACHABLE: i32 = 7;
const REFUSED: i32 = 8;

use common::endpoint;

/// Creates a symmetric key on the test server; returns its ARN.
async fn create_key(endpoint: &str, multi_region: bool) -> String {
    let p = common::provider(endpoint, REGION, &AwsKmsOptions::default());
    let (arn, key_id) = common::create_key_with_id(&p, multi_region).await;
    if multi_region {
        common::client(endpoint, REGION)
            .replicate_key()
            .key_id(&key_id)
            .replica_region(OTHER_REGION)
            .send()
            .await
            .unwrap();
    }
    arn
}

/// `cmek` with its own state directory, the test server and test
/// credentials, and nothing of the caller's AWS configuration.
fn cmek(home: &std::path::Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .args(["--endpoint-url", endpoint]);
    cmd
}

#[tokio::test]
async fn key_add_validate_disable_enable_against_kms() {
    let Some(endpoint) = endpoint() else { return };
    let arn = create_key(&endpoint, false).await;
    let dir = tempfile::tempdir().unwrap();
    let key = format!("aws:{arn}");
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();

    // The ARN names the region: no --region needed.
    run(&["key", "add", &key])
        .success()
        .stdout(contains(format!("registered aws-kms:{REGION}:{arn}")));
    run(&["key", "validate", &key])
        .success()
        .stdout(contains("describe  passed").and(contains("valid")));
    run(&["key", "list"]).success().stdout(contains(&arn));

    run(&["key", "disable", &key])
        .success()
        .stdout(contains("disabled"));
    run(&["key", "validate", &key])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("FAILED: key is disabled"))
        .stderr(contains(&arn));
    run(&["key", "enable", &key]).success();
    run(&["key", "validate", &key]).success();

    // The role policy from the registry names the key.
    let role: serde_json::Value = serde_json::from_str(
        &String::from_utf8(
            run(&["policy", "role"])
                .success()
                .get_output()
                .stdout
                .clone(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(role["Statement"][0]["Resource"][0], arn.as_str());

    // A key that does not exist, and a single-region key with replicas.
    run(&[
        "key",
        "validate",
        "aws:alias/does-not-exist",
        "--region",
        REGION,
    ])
    .code(KEY_UNAVAILABLE)
    .stdout(contains("not-found"));
    run(&[
        "key",
        "disable",
        "aws:alias/does-not-exist",
        "--region",
        REGION,
    ])
    .code(KEY_UNAVAILABLE);
    let other = create_key(&endpoint, false).await;
    run(&[
        "key",
        "add",
        &format!("aws:{other}"),
        "--replica-region",
        OTHER_REGION,
    ])
    .code(REFUSED)
    .stderr(contains("single-region"));
    run(&["key", "delete", &key]).success();
}

#[tokio::test]
async fn zones_under_a_kms_key_and_the_region_rule() {
    let Some(endpoint) = endpoint() else { return };
    let arn = create_key(&endpoint, false).await;
    let dir = tempfile::tempdir().unwrap();
    let key = format!("aws:{arn}");
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();

    run(&["key", "add", &key]).success();
    run(&["zone", "create", "orders", "--key", &key])
        .success()
        .stdout(contains(format!(
            "in {REGION} under aws-kms:{REGION}:{arn}"
        )));
    run(&[
        "zone",
        "create",
        "far",
        "--key",
        &key,
        "--region",
        OTHER_REGION,
    ])
    .code(REFUSED)
    .stderr(contains("cannot be used from region eu-west-1"));

    let plain = dir.path().join("plain");
    fs::write(&plain, vec![7u8; 100_000]).unwrap();
    let seg = dir.path().join("seg");
    let back = dir.path().join("back");
    run(&[
        "encrypt",
        "-z",
        "orders",
        plain.to_str().unwrap(),
        "-o",
        seg.to_str().unwrap(),
    ])
    .success();
    run(&["zone", "rotate", "orders"]).success();
    run(&["rewrap", "-z", "orders", dir.path().to_str().unwrap()])
        .success()
        .stdout(contains("1 rewrapped"));
    run(&[
        "decrypt",
        "-z",
        "orders",
        seg.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ])
    .success();
    assert_eq!(fs::read(&back).unwrap(), vec![7u8; 100_000]);

    // Root rotation to another KMS key; the first is then free to go.
    let second = format!("aws:{}", create_key(&endpoint, false).await);
    run(&["key", "add", &second]).success();
    run(&["key", "delete", &key])
        .code(REFUSED)
        .stderr(contains("in use by zone: orders"));
    run(&["zone", "rotate-root", "orders", "--key", &second]).success();
    run(&["key", "delete", &key]).success();
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()])
        .success()
        .stdout(predicate::eq(vec![7u8; 100_000]));

    // No KMS at the endpoint: transient, exit 7, whatever the command.
    let nowhere = "http://127.0.0.1:9";
    cmek(dir.path(), nowhere)
        .args(["decrypt", "-z", "orders", seg.to_str().unwrap()])
        .assert()
        .code(UNREACHABLE)
        .stderr(contains("unreachable"));
    cmek(dir.path(), nowhere)
        .args(["key", "validate", &second])
        .assert()
        .code(UNREACHABLE);
}

#[tokio::test]
async fn a_multi_region_key_serves_its_replica_regions() {
    let Some(endpoint) = endpoint() else { return };
    let arn = create_key(&endpoint, true).await;
    assert!(arn.contains(":key/mrk-"), "{arn}");
    let dir = tempfile::tempdir().unwrap();
    let key = format!("aws:{arn}");
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();

    run(&["key", "add", &key, "--replica-region", OTHER_REGION])
        .success()
        .stdout(contains(format!("serves {OTHER_REGION},{REGION}")));
    // A zone in the replica's region, reached through the replica there.
    run(&[
        "zone",
        "create",
        "far",
        "--key",
        &key,
        "--region",
        OTHER_REGION,
    ])
    .success()
    .stdout(contains(format!("in {OTHER_REGION}")));
    run(&[
        "zone",
        "create",
        "none",
        "--key",
        &key,
        "--region",
        "ap-south-1",
    ])
    .code(REFUSED);
    let seg = dir.path().join("seg");
    cmek(dir.path(), &endpoint)
        .args(["encrypt", "-z", "far", "-o", seg.to_str().unwrap()])
        .write_stdin("across regions")
        .assert()
        .success();
    run(&["decrypt", "-z", "far", seg.to_str().unwrap()])
        .success()
        .stdout("across regions");
    // The role policy lists the key in every region it serves.
    run(&["policy", "role"])
        .success()
        .stdout(contains(arn.replace(REGION, OTHER_REGION)).and(contains(&arn)));
}

#[tokio::test]
async fn a_zone_created_with_an_alias_records_the_key_it_points_to() {
    let Some(endpoint) = endpoint() else { return };
    let p = common::provider(&endpoint, REGION, &AwsKmsOptions::default());
    let (arn, key_id) = common::create_key_with_id(&p, false).await;
    let alias = format!("alias/cmek-cli-{key_id}");
    common::client(&endpoint, REGION)
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key_id)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();
    let named = format!("aws:{alias}");

    // The registry holds the key, not the alias.
    run(&["key", "add", &named, "--region", REGION])
        .success()
        .stdout(contains(format!(
            "registered aws-kms:{REGION}:{arn} (alias {alias})"
        )));
    run(&[
        "zone", "create", "orders", "--key", &named, "--region", REGION,
    ])
    .success()
    .stdout(contains(format!(
        "under aws-kms:{REGION}:{arn} (alias {alias})"
    )));
    run(&["zone", "show", "orders"]).success().stdout(
        contains(format!("root key       aws-kms:{REGION}:{arn}"))
            .and(contains(format!("root alias     {alias}"))),
    );
    run(&["zone", "show", "orders", "--json"])
        .success()
        .stdout(contains(format!("\"root_alias\": \"{alias}\"")));
    // The zone is the key's: the key cannot leave the registry, named by
    // its ARN or by the alias.
    run(&["key", "delete", &format!("aws:{arn}")])
        .code(REFUSED)
        .stderr(contains("in use by zone: orders"));
    run(&["key", "delete", &named, "--region", REGION])
        .code(REFUSED)
        .stderr(contains("in use by zone: orders"));

    // Rotating to another alias records that alias's key, in the zone and
    // in the registry.
    let (second, second_id) = common::create_key_with_id(&p, false).await;
    let second_alias = format!("alias/cmek-cli-{second_id}");
    common::client(&endpoint, REGION)
        .create_alias()
        .alias_name(&second_alias)
        .target_key_id(&second_id)
        .send()
        .await
        .unwrap();
    let second_named = format!("aws:{second_alias}");
    run(&["key", "add", &second_named, "--region", REGION]).success();
    run(&[
        "zone",
        "rotate-root",
        "orders",
        "--key",
        &second_named,
        "--region",
        REGION,
    ])
    .success()
    .stdout(contains(format!(
        "wrapped by aws-kms:{REGION}:{second} (alias {second_alias})"
    )));
    run(&["zone", "show", "orders"]).success().stdout(
        contains(format!("root key       aws-kms:{REGION}:{second}"))
            .and(contains(format!("root alias     {second_alias}"))),
    );
    run(&["key", "delete", &named, "--region", REGION]).success();
    run(&["key", "delete", &second_named, "--region", REGION])
        .code(REFUSED)
        .stderr(contains("in use by zone: orders"));
}
