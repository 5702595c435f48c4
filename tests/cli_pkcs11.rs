//! The `cmek` binary against a PKCS#11 token (SoftHSM2, set up by
//! `scripts/test.d/pkcs11.sh`): keys created, registered, validated,
//! disabled and enabled on the token; the token user's rights from
//! `policy key`; a zone under a token key; the PIN only ever from the
//! environment or a file.
//!
//! Without the token these tests fail when `CMEK_REQUIRE_KMS=1` or `CI` is
//! set, and otherwise say they were skipped.
#![cfg(all(feature = "cli", feature = "pkcs11"))]

#[path = "common/pkcs11.rs"]
mod token;

use std::fs;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

const USAGE: i32 = 2;
const KEY_UNAVAILABLE: i32 = 5;
const UNREACHABLE: i32 = 7;

/// The tests of this file one at a time: SoftHSM2 keeps a token in files
/// that several processes changing it at once can catch half written
/// (`CKR_GENERAL_ERROR`); a hardware token serializes them itself.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cmek` with its own state directory and the test token's environment
/// (inherited from `scripts/test.d/pkcs11.sh`).
fn cmek(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS")
        .env_remove("CMEK_PKCS11_REGION")
        .env_remove("CMEK_PKCS11_MECHANISM");
    cmd
}

#[test]
fn key_create_add_validate_disable_enable_and_policy_on_a_token() {
    let _serial = serial();
    if token::options().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let label = token::unique_label("cli");
    let key = format!("pkcs11:{label}");
    let run = |args: &[&str]| cmek(dir.path()).args(args).assert();

    // Not on the token yet: add refuses it, add --create makes it.
    run(&["key", "add", &key])
        .code(KEY_UNAVAILABLE)
        .stderr(contains("not-found"));
    run(&["key", "add", &key, "--create"])
        .success()
        .stdout(contains(format!("created pkcs11:local:{label}")))
        .stdout(contains(format!("registered pkcs11:local:{label}")));
    run(&["key", "validate", &key, "--region", "local"])
        .success()
        .stdout(contains("describe  passed").and(contains("valid")));
    run(&["key", "list"]).success().stdout(contains(&label));

    run(&["key", "disable", &key])
        .success()
        .stdout(contains("disabled"));
    run(&["key", "validate", &key])
        .code(KEY_UNAVAILABLE)
        .stdout(contains("FAILED: key is disabled"));
    run(&["key", "enable", &key]).success();
    run(&["key", "validate", &key]).success();

    run(&["policy", "key", &key]).success().stdout(
        contains("CKU_USER")
            .and(contains(&label))
            .and(contains("CKM_AES_GCM")),
    );

    // Under the key-wrap mechanism, forced through the environment.
    cmek(dir.path())
        .env("CMEK_PKCS11_MECHANISM", "kwp")
        .args(["policy", "key", &key])
        .assert()
        .success()
        .stdout(contains("CKM_AES_KEY_WRAP_PAD"));

    // A name the provider cannot read fails validation and says why.
    run(&["key", "validate", "pkcs11:id:zz"])
        .code(KEY_UNAVAILABLE)
        .stderr(contains("even number of hex digits"));
    // `--region` names the region the token serves, as CMEK_PKCS11_REGION.
    run(&["key", "validate", &key, "--region", "vault-2"])
        .success()
        .stdout(contains(format!("key pkcs11:vault-2:{label}")));
    run(&["key", "delete", &key]).success();
}

#[test]
fn a_zone_under_a_token_key_encrypts_rotates_and_decrypts() {
    let _serial = serial();
    if token::options().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = format!("pkcs11:{}", token::unique_label("cli-zone"));
    let run = |args: &[&str]| cmek(dir.path()).args(args).assert();
    run(&["key", "add", &key, "--create"]).success();
    run(&["zone", "create", "orders", "--key", &key])
        .success()
        .stdout(contains("in local under pkcs11:local:"));

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
    let out = run(&["decrypt", "-z", "orders", seg.to_str().unwrap()])
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(out, vec![7u8; 100_000]);

    // Disabled on the token: the zone does not open.
    run(&["key", "disable", &key]).success();
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()]).code(KEY_UNAVAILABLE);
    run(&["key", "enable", &key]).success();
    run(&["decrypt", "-z", "orders", seg.to_str().unwrap()]).success();
}

#[test]
fn the_token_configuration_comes_from_the_environment_only() {
    let _serial = serial();
    if token::options().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // No PIN: said so, naming the variables.
    cmek(dir.path())
        .env_remove("CMEK_PKCS11_PIN_FILE")
        .env_remove("CMEK_PKCS11_PIN")
        .args(["key", "validate", "pkcs11:anything"])
        .assert()
        .code(USAGE)
        .stderr(contains("CMEK_PKCS11_PIN_FILE"));
    // There is no option to pass a PIN on the command line.
    cmek(dir.path())
        .args(["key", "validate", "pkcs11:anything", "--pin", "12345678"])
        .assert()
        .code(USAGE);
    // A token that is not there is unreachable, not an error of the key.
    cmek(dir.path())
        .env("CMEK_PKCS11_TOKEN", "cmek-no-such-token")
        .args(["key", "validate", "pkcs11:anything"])
        .assert()
        .code(UNREACHABLE);
}
