//! The local key file and the key registry shared by several OS processes:
//! `cmek` processes run at the same time as each other, and as this test's
//! own process holding a `LocalKeyProvider` on the same key file (as a
//! service embedding cmek would). No process's change may be lost, and a
//! state another process set must be honoured at once.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cmek::provider::LocalKeyProvider;
use cmek::{EncryptionContext, Error, KeyProvider, KeyState, SecretKey};

fn cmek(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_AWS_ENDPOINT_URL")
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS");
    cmd
}

fn check(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "cmek {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = cmek(home).args(args).output().unwrap();
    check(args, &out);
    String::from_utf8(out.stdout).unwrap()
}

fn key_file(home: &Path) -> PathBuf {
    home.join("local.keys")
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new().with("zone", "service")
}

/// The registry's keys and their local states, from `cmek key list --json`.
fn listed(home: &Path) -> Vec<(String, String)> {
    let list: serde_json::Value =
        serde_json::from_str(&ok(home, &["key", "list", "--json"])).unwrap();
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_owned(),
                k["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Several `cmek key add` processes at once, on a state directory with no
/// key file and no registry yet: each creates its key in the key file
/// (creating the file if it is first) and registers it (validation wraps
/// under it, so it also writes the key file). Every key ends in both files.
#[test]
fn parallel_cli_processes_each_adding_a_key_lose_none() {
    const PROCESSES: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            cmek(&home)
                .args(["key", "add", &format!("local:k{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        check(
            &["key", "add", &format!("local:k{i}")],
            &child.wait_with_output().unwrap(),
        );
    }

    let in_file: Vec<_> = LocalKeyProvider::open(key_file(&home))
        .unwrap()
        .list_keys()
        .unwrap()
        .into_iter()
        .map(|k| (k.key.key_id().to_owned(), k.state, k.wraps))
        .collect();
    let expected: Vec<_> = (0..PROCESSES)
        .map(|i| (format!("k{i}"), KeyState::Enabled, 1))
        .collect();
    assert_eq!(
        in_file, expected,
        "every key, each with its validation wrap"
    );
    let registered: Vec<_> = (0..PROCESSES)
        .map(|i| (format!("k{i}"), "enabled".to_owned()))
        .collect();
    assert_eq!(listed(&home), registered);
}

/// The scenario of a service holding the key file (this process) while an
/// operator runs the CLI: destroy key A, disable key C, add key B. The
/// service's next wrap must not write its old view back, and it must see
/// the new states.
#[tokio::test]
async fn a_service_holding_the_key_file_keeps_the_operators_changes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for key in ["a", "c", "d"] {
        ok(&home, &["key", "add", &format!("local:{key}")]);
    }
    let service = LocalKeyProvider::open(key_file(&home)).unwrap();
    let (a, c, d) = (
        service.key_ref("a"),
        service.key_ref("c"),
        service.key_ref("d"),
    );
    let ezk = SecretKey::generate().unwrap();
    let under_a = service.wrap_key(&a, &ezk, &ctx()).await.unwrap();
    let under_c = service.wrap_key(&c, &ezk, &ctx()).await.unwrap();
    service.wrap_key(&d, &ezk, &ctx()).await.unwrap();
    let d_wraps = |keys: &[cmek::provider::LocalKeyInfo]| {
        keys.iter().find(|k| k.key == d).map(|k| k.wraps).unwrap()
    };
    // Its validation wrap and the service's.
    assert_eq!(d_wraps(&service.list_keys().unwrap()), 2);

    // The operator, in other processes.
    ok(&home, &["key", "delete", "local:a", "--destroy"]);
    ok(&home, &["key", "disable", "local:c"]);
    ok(&home, &["key", "add", "local:b"]);
    // (The validation of D from the CLI wraps under it too.)
    ok(&home, &["key", "validate", "local:d"]);

    // The service wraps again: it writes the key file.
    service.wrap_key(&d, &ezk, &ctx()).await.unwrap();

    // A stays destroyed, C disabled, B exists; D's count went on from the
    // CLI's wrap.
    let b = service.key_ref("b");
    let on_disk = LocalKeyProvider::open(key_file(&home))
        .unwrap()
        .list_keys()
        .unwrap();
    let states: Vec<_> = on_disk
        .iter()
        .map(|k| (k.key.key_id().to_owned(), k.state))
        .collect();
    assert_eq!(
        states,
        [
            ("b".to_owned(), KeyState::Enabled),
            ("c".to_owned(), KeyState::Disabled),
            ("d".to_owned(), KeyState::Enabled),
        ]
    );
    assert_eq!(d_wraps(&on_disk), 4, "2 before, the CLI's, the service's");
    assert_eq!(
        listed(&home),
        [
            ("b".to_owned(), "enabled".to_owned()),
            ("c".to_owned(), "disabled".to_owned()),
            ("d".to_owned(), "enabled".to_owned()),
        ]
    );

    // The service sees and honours the new states.
    assert_eq!(service.describe_key(&a).await.unwrap(), KeyState::NotFound);
    assert_eq!(service.describe_key(&c).await.unwrap(), KeyState::Disabled);
    assert_eq!(service.describe_key(&b).await.unwrap(), KeyState::Enabled);
    for (root, wrapped, state) in [
        (&a, &under_a, KeyState::NotFound),
        (&c, &under_c, KeyState::Disabled),
    ] {
        let err = service.unwrap_key(root, wrapped, &ctx()).await.unwrap_err();
        assert!(
            matches!(err, Error::KeyUnavailable { state: s, .. } if s == state),
            "{err}"
        );
    }
    service.wrap_key(&b, &ezk, &ctx()).await.unwrap();

    // And the CLI, after the service's writes, still sees the operator's.
    let out = cmek(&home)
        .args(["key", "validate", "local:c"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "C is still disabled");
}

/// The same with the key registry kept apart from the state directory
/// (`CMEK_REGISTRY`): the processes share it through its compare-and-swap
/// under the lock beside it, and no key is lost; nothing is written to the
/// state directory's registry.
#[test]
fn parallel_cli_processes_lose_no_key_in_a_registry_kept_apart() {
    const PROCESSES: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let operator = dir.path().join("operator");
    std::fs::create_dir(&operator).unwrap();
    let registry = operator.join("registry.state");
    let run = |args: &[&str]| {
        let mut cmd = cmek(&home);
        cmd.env("CMEK_REGISTRY", &registry).args(args);
        cmd
    };
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            run(&["key", "add", &format!("local:k{i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        check(
            &["key", "add", &format!("local:k{i}")],
            &child.wait_with_output().unwrap(),
        );
    }
    let out = run(&["key", "list"]).output().unwrap();
    check(&["key", "list"], &out);
    let listed = String::from_utf8(out.stdout).unwrap();
    for i in 0..PROCESSES {
        assert!(listed.contains(&format!("local:local:k{i} ")), "{listed}");
    }
    assert!(registry.is_file());
    assert!(!home.join("registry.state").exists());
}
