//! The `cmek` binary with Azure Key Vault keys (`azure:URL`), against the
//! Key Vault protocol fake on loopback (`scripts/azure_kv_fake.py`, started
//! by `scripts/test`): the bearer token and the test CA come from the
//! environment (`CMEK_AZURE_KV_TOKEN`, `CMEK_AZURE_KV_CA_FILE`), never from
//! the command line.
//!
//! Without the fake these tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is
//! set, and otherwise say they were skipped.
#![cfg(all(feature = "cli", feature = "azure-kv"))]

mod azure_kv_common;

use std::fs;
use std::path::PathBuf;

use assert_cmd::Command;
use azure_kv_common::forge::{Manifest, PublicHalf};
use azure_kv_common::{fake, Fake, REGION};
use cmek::zone::ZoneManifest;
use cmek::KeyProvider;
use predicates::prelude::*;
use predicates::str::contains;

const USAGE: i32 = 2;
const KEY_UNAVAILABLE: i32 = 5;
const ACCESS_DENIED: i32 = 6;
const REJECTED: i32 = 10;

/// `cmek` with its own state directory and the fake's token and CA.
fn cmek(home: &std::path::Path, fake: &Fake, ca_file: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS")
        .env("CMEK_AZURE_KV_TOKEN", &fake.token)
        .env("CMEK_AZURE_KV_CA_FILE", ca_file)
        .env("CMEK_AZURE_KV_VERIFY_CHALLENGE_RESOURCE", "0");
    cmd
}

/// A temporary directory holding the fake's CA certificate, and the
/// state directory in it: (the directory, the home, the CA file).
fn state_dir(fake: &Fake) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, &fake.ca).unwrap();
    let home = dir.path().join("home");
    (dir, home, ca_file)
}

#[tokio::test]
async fn keys_zones_and_the_access_document_through_the_cli() {
    let Some(fake) = fake() else { return };
    let (dir, home, ca_file) = state_dir(&fake);
    let p = fake.provider();
    let name = fake.unique_name("cli");
    let v1 = fake.create(&p, &name).await;
    let key = format!("azure:{}", fake.key_url(&name));
    let run = |args: &[&str]| cmek(&home, &fake, &ca_file).args(args).assert();

    // The region is the operator's to give.
    run(&["key", "add", &key])
        .code(USAGE)
        .stderr(contains("--region"));
    // A versionless key is registered as its current version.
    run(&["--region", REGION, "key", "add", &key])
        .success()
        .stdout(contains(format!(
            "registered azure-kv:{REGION}:{}",
            v1.key_id()
        )));
    run(&["--region", REGION, "key", "validate", &key])
        .success()
        .stdout(contains("describe  passed").and(contains("valid")));

    // Disabled through the provider's administration, and back.
    let pinned = format!("azure:{}", v1.key_id());
    run(&["--region", REGION, "key", "disable", &pinned])
        .success()
        .stdout(contains("disabled"));
    run(&["--region", REGION, "key", "validate", &pinned])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("FAILED: key is disabled"));
    run(&["--region", REGION, "key", "enable", &pinned]).success();
    run(&["--region", REGION, "key", "validate", &pinned]).success();

    // A refused permission is its own exit code.
    fake.deny(&name, Some("unwrapKey")).await;
    run(&["--region", REGION, "key", "validate", &pinned])
        .code(ACCESS_DENIED)
        .stdout(contains("decrypt   FAILED: access denied"));
    fake.allow(&name).await;

    // The access document, from the registry and from arguments.
    for args in [
        vec!["policy", "azure"],
        vec!["policy", "azure", key.as_str()],
    ] {
        let out = run(&args).success().get_output().stdout.clone();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["keys"][0], fake.key_url(&name).as_str(), "{doc}");
        assert_eq!(
            doc["vault"]["accessPolicy"]["permissions"]["keys"],
            serde_json::json!(["get", "wrapKey", "unwrapKey", "sign"])
        );
        assert_eq!(doc["vault"]["rbac"]["builtInRole"], "Key Vault Crypto User");
    }

    // A zone under the key: a file encrypted and decrypted, the zone's key
    // disabled (refused) and enabled again.
    run(&[
        "--region", REGION, "zone", "create", "orders", "--key", &pinned,
    ])
    .success()
    .stdout(contains(v1.key_id()));
    let plain = dir.path().join("plain");
    let sealed = dir.path().join("sealed");
    let back = dir.path().join("back");
    fs::write(&plain, b"rows under an Azure key").unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    run(&[
        "encrypt",
        "--zone",
        "orders",
        "--segment-id",
        "orders/1",
        &path(&plain),
        "-o",
        &path(&sealed),
    ])
    .success();
    run(&[
        "decrypt",
        "--zone",
        "orders",
        "--segment-id",
        "orders/1",
        &path(&sealed),
        "-o",
        &path(&back),
    ])
    .success();
    assert_eq!(fs::read(&back).unwrap(), b"rows under an Azure key");
    run(&["--region", REGION, "key", "disable", &pinned]).success();
    run(&[
        "decrypt",
        "--zone",
        "orders",
        "--segment-id",
        "orders/1",
        &path(&sealed),
        "-o",
        &path(&back),
    ])
    .code(KEY_UNAVAILABLE);
    run(&["--region", REGION, "key", "enable", &pinned]).success();
    fs::remove_file(&back).unwrap();
    run(&[
        "decrypt",
        "--zone",
        "orders",
        "--segment-id",
        "orders/1",
        &path(&sealed),
        "-o",
        &path(&back),
    ])
    .success();

    // Another token is refused.
    cmek(&home, &fake, &ca_file)
        .env("CMEK_AZURE_KV_TOKEN", "not-the-token")
        .args(["--region", REGION, "key", "validate", &pinned])
        .assert()
        .code(ACCESS_DENIED);
}

/// A zone whose EZK is wrapped in the unsigned format of earlier releases
/// is refused by every command, which names the adoption command; that
/// command wants `--yes`, is checked against the registry's record of the
/// zone, rewraps the EZK signed and records the new generation, so the
/// unsigned manifest cannot be put back afterwards.
#[tokio::test]
async fn a_zone_with_unsigned_wraps_is_adopted_on_the_operators_word() {
    let Some(fake) = fake() else { return };
    let (dir, home, ca_file) = state_dir(&fake);
    let p = fake.provider();
    let root = fake.create(&p, &fake.unique_name("cli-adopt")).await;
    let key = format!("azure:{}", root.key_id());
    let run = |args: &[&str]| cmek(&home, &fake, &ca_file).args(args).assert();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();

    run(&["--region", REGION, "key", "add", &key]).success();
    run(&["--region", REGION, "zone", "create", "old", "--key", &key]).success();
    let plain = dir.path().join("plain");
    let sealed = dir.path().join("sealed");
    let back = dir.path().join("back");
    fs::write(&plain, b"rows from before the upgrade").unwrap();
    run(&[
        "encrypt",
        "--zone",
        "old",
        "--segment-id",
        "old/1",
        &path(&plain),
        "-o",
        &path(&sealed),
    ])
    .success();

    // The zone as an earlier release left it: the same EZK, wrapped without
    // a signature, in a manifest of the generation the registry recorded.
    let manifest_path = home.join("zones").join("old.manifest");
    let mut manifest = Manifest::of(&fs::read(&manifest_path).unwrap());
    assert_eq!(manifest.ezks.len(), 1);
    let (version, _, _, wrapped) = manifest.ezks[0].clone();
    let context = ZoneManifest::ezk_context(&manifest.zone_id, version);
    let ezk = p.unwrap_key(&root, &wrapped, &context).await.unwrap();
    manifest.ezks[0].3 = PublicHalf::of(&p, &root).await.legacy_wrap(&ezk, &context);
    assert!(p.is_legacy_wrap(&manifest.ezks[0].3));
    let generation = manifest.generation;
    let unsigned = manifest.seal(ezk.expose_secret());
    fs::write(&manifest_path, &unsigned).unwrap();

    // Refused, with the way out named.
    let decrypt = |out: &std::path::Path| {
        vec![
            "decrypt".to_owned(),
            "--zone".into(),
            "old".into(),
            "--segment-id".into(),
            "old/1".into(),
            path(&sealed),
            "-o".into(),
            path(out),
        ]
    };
    cmek(&home, &fake, &ca_file)
        .args(decrypt(&back))
        .assert()
        .code(REJECTED)
        .stderr(contains("cmek zone adopt-legacy-wraps old --yes"));
    assert!(!back.exists());

    // Not without the operator's word, which the help explains.
    run(&["zone", "adopt-legacy-wraps", "old"])
        .code(USAGE)
        .stderr(contains("--yes").and(contains("trusts the stored manifest")));
    run(&["zone", "adopt-legacy-wraps", "--help"])
        .success()
        .stdout(contains("trusted").and(contains("planted")));
    assert_eq!(
        fs::read(&manifest_path).unwrap(),
        unsigned,
        "nothing written"
    );
    run(&["zone", "adopt-legacy-wraps", "nosuchzone", "--yes"]).code(USAGE);

    // Another zone's manifest under this name is refused by the record.
    let mut swapped = Manifest::of(&unsigned);
    swapped.zone_id = cmek::zone::ZoneId::generate().unwrap();
    swapped.body_zone_id = swapped.zone_id;
    swapped.ezks[0].3 = PublicHalf::of(&p, &root)
        .await
        .legacy_wrap(&ezk, &ZoneManifest::ezk_context(&swapped.zone_id, version));
    fs::write(&manifest_path, swapped.seal(ezk.expose_secret())).unwrap();
    run(&["zone", "adopt-legacy-wraps", "old", "--yes"]).code(REJECTED);
    fs::write(&manifest_path, &unsigned).unwrap();

    run(&["zone", "adopt-legacy-wraps", "old", "--yes"])
        .success()
        .stdout(contains(format!(
            "EZK version(s) {version} rewrapped in the current format; generation {}",
            generation + 1
        )));
    let adopted = Manifest::of(&fs::read(&manifest_path).unwrap());
    assert_eq!(adopted.generation, generation + 1);
    assert!(!p.is_legacy_wrap(&adopted.ezks[0].3));
    run(&["zone", "show", "old"])
        .success()
        .stdout(contains(format!("generation     {}", generation + 1)));
    cmek(&home, &fake, &ca_file)
        .args(decrypt(&back))
        .assert()
        .success();
    assert_eq!(fs::read(&back).unwrap(), b"rows from before the upgrade");

    // Adopting again changes nothing.
    run(&["zone", "adopt-legacy-wraps", "old", "--yes"])
        .success()
        .stdout(contains("no legacy wraps to adopt"));
    assert_eq!(
        Manifest::of(&fs::read(&manifest_path).unwrap()).generation,
        generation + 1
    );

    // The registry recorded the adoption: the unsigned manifest, put back,
    // is a rollback, to the adoption command as to any other.
    fs::write(&manifest_path, &unsigned).unwrap();
    run(&["zone", "adopt-legacy-wraps", "old", "--yes"]).code(REJECTED);
    fs::remove_file(&back).unwrap();
    cmek(&home, &fake, &ca_file)
        .args(decrypt(&back))
        .assert()
        .code(REJECTED);
}
