//! The `cmek` binary with KMIP keys (`kmip:UID`) against PyKMIP's server
//! on loopback, started by `scripts/test` (scripts/test.d/kmip.sh); the
//! binary reads the server and certificate files from the `CMEK_KMIP_*`
//! variables it inherits, never from its arguments.
//!
//! Without the server these tests fail when `CMEK_REQUIRE_KMS=1` or `CI`
//! is set, and otherwise say they were skipped.
#![cfg(all(feature = "cli", feature = "kmip"))]

#[path = "common/kmip.rs"]
mod kmip;

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

const USAGE: i32 = 2;
const KEY_UNAVAILABLE: i32 = 5;
const ACCESS_DENIED: i32 = 6;
const REFUSED: i32 = 8;

/// `cmek` with its own state directory; the `CMEK_KMIP_*` variables come
/// from this process's environment.
fn cmek(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS")
        .env_remove("CMEK_KMIP_REGION");
    cmd
}

#[tokio::test]
async fn keys_zones_and_policy_with_a_kmip_key() {
    let Some(p) = kmip::provider() else { return };
    let uid = kmip::create_key(&p, "cli").await.key_id().to_owned();
    let key = format!("kmip:{uid}");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cmek(dir.path()).args(args).assert();

    run(&["key", "add", &key])
        .success()
        .stdout(contains(format!("registered kmip:kmip:{uid}")));
    run(&["key", "validate", &key])
        .success()
        .stdout(contains("describe  passed").and(contains("valid")));
    run(&["key", "list"]).success().stdout(contains(&key[5..]));

    // The grants the client certificate needs, for the registered keys or
    // the keys named.
    let out = run(&["policy", "kmip"])
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["unique_identifiers"][0], uid.as_str());
    assert_eq!(doc["operations"][1], "Decrypt");
    run(&["policy", "kmip", "a", "b"])
        .success()
        .stdout(contains(r#"["a", "b"]"#));

    // A zone under the key: encrypt, rotate, decrypt, rotate to a second
    // key; the first can then be revoked and the zone still serves.
    run(&["zone", "create", "orders", "--key", &key])
        .success()
        .stdout(contains(format!("in kmip under kmip:kmip:{uid}")));
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
    let second = format!("kmip:{}", kmip::create_key(&p, "cli-2").await.key_id());
    run(&["key", "add", &second]).success();
    run(&["zone", "rotate-root", "orders", "--key", &second]).success();
    run(&["key", "disable", &key])
        .success()
        .stdout(contains("disabled"));
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()])
        .success()
        .stdout(predicate::eq(vec![7u8; 100_000]));

    // Revoked is final: validation fails on the key's state, and enabling
    // says why it cannot be done.
    run(&["key", "validate", &key])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("FAILED: key is disabled"));
    run(&["key", "enable", &key])
        .code(USAGE)
        .stderr(contains("Deactivated").and(contains("rotate")));
    run(&["monitor", "--once"])
        .code(KEY_UNAVAILABLE)
        .stdout(contains(format!("kmip:kmip:{uid}: disabled")));

    // The zone's key revoked too: the zone is gated.
    run(&["key", "disable", &second]).success();
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()]).code(KEY_UNAVAILABLE);

    // A zone cannot be put in another region than the key server's
    // (CMEK_KMIP_REGION; `--region` does not move the server).
    let third = format!("kmip:{}", kmip::create_key(&p, "cli-3").await.key_id());
    run(&["key", "add", &third]).success();
    run(&[
        "zone",
        "create",
        "far",
        "--key",
        &third,
        "--region",
        "eu-west-1",
    ])
    .code(REFUSED)
    .stderr(contains("cannot be used from region eu-west-1"));
}

#[tokio::test]
async fn configuration_and_access_errors_are_named() {
    let Some(options) = kmip::options() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // Without the environment: says which variable is missing.
    cmek(dir.path())
        .env_remove("CMEK_KMIP_KEY")
        .args(["key", "validate", "kmip:1"])
        .assert()
        .code(USAGE)
        .stderr(contains("CMEK_KMIP_KEY is not set"));
    // An unknown provider lists the known ones.
    cmek(dir.path())
        .args(["key", "validate", "kmipp:1"])
        .assert()
        .code(USAGE)
        .stderr(contains("expected local, aws").and(contains("kmip)")));

    // Another client certificate cannot use this client's key.
    let p = kmip::provider().unwrap();
    let uid = kmip::create_key(&p, "cli-owned").await.key_id().to_owned();
    cmek(dir.path())
        .env(
            "CMEK_KMIP_CERT",
            std::env::var("CMEK_KMIP_OTHER_CERT").unwrap(),
        )
        .env(
            "CMEK_KMIP_KEY",
            std::env::var("CMEK_KMIP_OTHER_KEY").unwrap(),
        )
        .args(["key", "validate", &format!("kmip:{uid}")])
        .assert()
        .code(ACCESS_DENIED)
        .stdout(contains("access denied"));

    // The region comes from CMEK_KMIP_REGION when it is set.
    cmek(dir.path())
        .env("CMEK_KMIP_REGION", "eu-central-1")
        .args(["key", "add", &format!("kmip:{uid}")])
        .assert()
        .success()
        .stdout(contains(format!("registered kmip:eu-central-1:{uid}")));
    let _ = options;
}
