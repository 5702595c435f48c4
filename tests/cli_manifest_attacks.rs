//! The storage attacker against the `cmek` CLI's zones: a manifest put back
//! after a rotation, or swapped for another zone's, is refused with exit
//! code 10 before any provider call, because the CLI checks every manifest
//! against the anchor its key registry records.
#![cfg(feature = "cli")]

use std::fs;
use std::path::PathBuf;

use assert_cmd::Command;
use predicates::str::contains;

/// Stored state refused (rolled back, swapped, re-rooted), as documented by
/// `cmek --help`.
const REJECTED: i32 = 10;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmek(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.env("CMEK_HOME", self.dir.path().join("home"))
            .env_remove("CMEK_AWS_ENDPOINT_URL")
            .current_dir(self.dir.path());
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmek().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }

    fn manifest(&self, zone: &str) -> PathBuf {
        self.dir
            .path()
            .join("home/zones")
            .join(format!("{zone}.manifest"))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[test]
fn a_manifest_put_back_after_a_root_rotation_is_refused() {
    let env = Env::new();
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["key", "add", "local:k2"]);
    env.ok(&["zone", "create", "orders", "--key", "local:k1"]);
    fs::write(env.path("plain"), b"rows").unwrap();
    env.ok(&["encrypt", "--zone", "orders", "plain", "-o", "sealed"]);
    let before = fs::read(env.manifest("orders")).unwrap();
    env.ok(&["zone", "rotate-root", "orders", "--key", "local:k2"]);

    fs::write(env.manifest("orders"), &before).unwrap();
    env.cmek()
        .args(["decrypt", "--zone", "orders", "sealed", "-o", "back"])
        .assert()
        .code(REJECTED)
        .stderr(contains("root key"));
    assert!(!env.path("back").exists(), "nothing written");
}

#[test]
fn a_manifest_put_back_after_a_retirement_is_refused() {
    let env = Env::new();
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["zone", "create", "orders", "--key", "local:k1"]);
    env.ok(&["zone", "rotate", "orders"]);
    let with_v1 = fs::read(env.manifest("orders")).unwrap();
    env.ok(&["zone", "retire-version", "orders", "1", "--yes"]);

    fs::write(env.manifest("orders"), &with_v1).unwrap();
    env.cmek()
        .args(["zone", "rotate", "orders"])
        .assert()
        .code(REJECTED)
        .stderr(contains("rolled back"));
    // The planted file is left for the operator to examine.
    assert_eq!(fs::read(env.manifest("orders")).unwrap(), with_v1);
}

#[test]
fn another_zones_manifest_is_refused() {
    let env = Env::new();
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["zone", "create", "a", "--key", "local:k1"]);
    env.ok(&["zone", "create", "b", "--key", "local:k1"]);
    fs::copy(env.manifest("b"), env.manifest("a")).unwrap();
    env.cmek()
        .args(["zone", "rotate", "a"])
        .assert()
        .code(REJECTED)
        .stderr(contains("belongs to zone"));
}
