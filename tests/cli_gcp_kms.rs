//! The `cmek` binary against Google Cloud KMS: the Cloud KMS protocol fake
//! on loopback (`scripts/gcp_kms_fake.py`, started by `scripts/test`),
//! reached through `CMEK_GCP_KMS_ENDPOINT` and a fixed access token in
//! `CMEK_GCP_KMS_ACCESS_TOKEN`.
//!
//! Without the fake these tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is
//! set, and otherwise say they were skipped.
#![cfg(all(feature = "cli", feature = "gcp-kms"))]

mod gcp_common;

use std::fs;

use assert_cmd::Command;
use cmek::provider::{KeyProvider, NewKey};
use predicates::prelude::*;
use predicates::str::contains;

use gcp_common::{create_key, endpoint, provider, Fake};

const REGION: &str = "europe-west1";
const OTHER_REGION: &str = "europe-north1";
const KEY_UNAVAILABLE: i32 = 5;
const ACCESS_DENIED: i32 = 6;
const UNREACHABLE: i32 = 7;
const REFUSED: i32 = 8;

/// `cmek` with its own state directory, talking to `endpoint` with the
/// fake's token, and nothing of the caller's Google or AWS configuration.
fn cmek(home: &std::path::Path, endpoint: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env("CMEK_GCP_KMS_ENDPOINT", endpoint)
        .env(
            "CMEK_GCP_KMS_ACCESS_TOKEN",
            gcp_common::token().unwrap_or_else(|| "unchecked".into()),
        )
        .env_remove("CMEK_GCP_KMS_ACCESS_TOKEN_FILE")
        .env_remove("CMEK_GCP_KMS_KEY_RING")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CMEK_AWS_ENDPOINT_URL")
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS");
    cmd
}

#[tokio::test]
async fn key_add_validate_disable_enable_and_policy() {
    let Some(endpoint) = endpoint() else { return };
    let root = create_key(&provider(&endpoint, REGION).await).await;
    let name = root.key_id().to_owned();
    let key = format!("gcp:{name}");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();

    run(&["key", "add", &key])
        .success()
        .stdout(contains(format!("registered gcp-kms:{REGION}:{name}")));
    run(&["key", "validate", &key])
        .success()
        .stdout(contains("describe  passed").and(contains("valid")));
    run(&["key", "disable", &key])
        .success()
        .stdout(contains("disabled"));
    run(&["key", "validate", &key])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("encrypt   FAILED: key is disabled"))
        .stderr(contains(&name));
    run(&["key", "enable", &key]).success();
    run(&["key", "validate", &key]).success();

    // The permission that fails is named.
    let fake = Fake::new(&endpoint);
    fake.deny(&root, "cloudkms.cryptoKeyVersions.useToDecrypt", true);
    run(&["key", "validate", &key])
        .code(ACCESS_DENIED)
        .stdout(contains("decrypt   FAILED: access denied"));
    fake.deny(&root, "cloudkms.cryptoKeyVersions.useToDecrypt", false);

    // The IAM document from the registry names the key and the permissions.
    let out = run(&["policy", "gcp"])
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["grantOn"][0], name.as_str());
    assert_eq!(
        doc["role"]["includedPermissions"][0],
        "cloudkms.cryptoKeyVersions.useToEncrypt"
    );
    run(&["policy", "gcp", "projects/p/locations/us/keyRings/r"])
        .failure()
        .stderr(contains("not a Cloud KMS key name"));

    // A key that does not exist, and a regional key with replicas.
    let missing = format!("gcp:{}/cryptoKeys/never-created", gcp_common::ring(REGION));
    run(&["key", "validate", &missing])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("not-found"));
    run(&["key", "add", &key.replace("gcp:", "gcp-kms:")])
        .failure()
        .stderr(contains("already"));
    let other = create_key(&provider(&endpoint, REGION).await).await;
    run(&[
        "key",
        "add",
        &format!("gcp:{}", other.key_id()),
        "--replica-region",
        OTHER_REGION,
    ])
    .code(REFUSED)
    .stderr(contains("regional"));
    run(&["key", "add", "gcp:not/a/key/name"])
        .code(2)
        .stderr(contains("a Cloud KMS key is named"));
    run(&["key", "delete", &key]).success();
}

#[tokio::test]
async fn zones_under_a_cloud_kms_key_rotate_and_follow_the_key() {
    let Some(endpoint) = endpoint() else { return };
    let multi = provider(&endpoint, "europe").await;
    let root = multi
        .admin()
        .unwrap()
        .create_key(&NewKey::unnamed().multi_region())
        .await
        .unwrap();
    let key = format!("gcp:{}", root.key_id());
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cmek(dir.path(), &endpoint).args(args).assert();

    // A `europe` key serves the regions inside it, as registered.
    run(&["key", "add", &key, "--replica-region", REGION])
        .success()
        .stdout(contains(format!("serves europe,{REGION}")));
    run(&[
        "zone", "create", "orders", "--key", &key, "--region", REGION,
    ])
    .success()
    .stdout(contains(format!("in {REGION} under gcp-kms:europe:")));
    run(&[
        "zone",
        "create",
        "london",
        "--key",
        &key,
        "--region",
        "europe-west2",
    ])
    .code(REFUSED);

    let plain = dir.path().join("plain");
    fs::write(&plain, vec![7u8; 100_000]).unwrap();
    let seg = dir.path().join("seg");
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

    // Root rotation to a regional key of the zone's region.
    let second = create_key(&provider(&endpoint, REGION).await).await;
    let second = format!("gcp:{}", second.key_id());
    run(&["key", "add", &second]).success();
    run(&["zone", "rotate-root", "orders", "--key", &second]).success();
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()])
        .success()
        .stdout(predicate::eq(vec![7u8; 100_000]));

    // The monitor's one-shot check follows the key's state in Cloud KMS.
    run(&["monitor", "--once"]).success();
    run(&["key", "disable", &second]).success();
    run(&["monitor", "--once"])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("unavailable (key disabled)"));
    run(&["key", "enable", &second]).success();
    run(&["monitor", "--once"]).success();

    // No Cloud KMS at the endpoint: transient, exit 7.
    cmek(dir.path(), "http://127.0.0.1:9")
        .args(["key", "validate", &second])
        .assert()
        .code(UNREACHABLE);
}
