//! The storage attacker against the `cmek` CLI's zones: a manifest put back
//! after a rotation, or swapped for another zone's, is refused with exit
//! code 10 before any provider call, because the CLI checks every manifest
//! against the anchor its key registry records. With the registry kept
//! apart from the state directory (`CMEK_REGISTRY`), that holds even for an
//! attacker who writes the whole state directory, a registry file in it
//! included.
#![cfg(feature = "cli")]

use std::fs;
use std::path::PathBuf;

use assert_cmd::Command;
use predicates::str::contains;

/// Stored state refused (rolled back, swapped, re-rooted), as documented by
/// `cmek --help`.
const REJECTED: i32 = 10;
/// Bad usage.
const USAGE: i32 = 2;

struct Env {
    dir: tempfile::TempDir,
    /// The key registry kept apart (`CMEK_REGISTRY`), if it is.
    registry: Option<PathBuf>,
    /// The local key file kept apart (`CMEK_LOCAL_KEYS`), if it is.
    local_keys: Option<PathBuf>,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            registry: None,
            local_keys: None,
        }
    }

    /// The registry kept in a directory of its own, outside the state
    /// directory: the operator's, which the storage attacker cannot write.
    fn registry_apart() -> Self {
        let mut env = Self::new();
        let operator = env.path("operator");
        fs::create_dir(&operator).unwrap();
        env.registry = Some(operator.join("registry.state"));
        env
    }

    fn cmek(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.env("CMEK_HOME", self.dir.path().join("home"))
            .env_remove("CMEK_AWS_ENDPOINT_URL")
            .env_remove("CMEK_REGISTRY")
            .env_remove("CMEK_LOCAL_KEYS")
            .current_dir(self.dir.path());
        if let Some(registry) = &self.registry {
            cmd.env("CMEK_REGISTRY", registry);
        }
        if let Some(keys) = &self.local_keys {
            cmd.env("CMEK_LOCAL_KEYS", keys);
        }
        cmd
    }

    /// The registry file in the state directory.
    fn home_registry(&self) -> PathBuf {
        self.dir.path().join("home/registry.state")
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

/// The attacker writes the whole state directory: it puts back the manifest
/// from before a root rotation together with a registry file from that
/// time. The registry kept apart still names the new root.
#[test]
fn a_manifest_and_registry_put_back_together_are_refused_when_the_registry_is_apart() {
    let env = Env::registry_apart();
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["key", "add", "local:k2"]);
    env.ok(&["zone", "create", "orders", "--key", "local:k1"]);
    fs::write(env.path("plain"), b"rows").unwrap();
    env.ok(&["encrypt", "--zone", "orders", "plain", "-o", "sealed"]);
    let manifest_before = fs::read(env.manifest("orders")).unwrap();
    // The registry of that time, as the attacker has it (a registry file
    // is only checksummed: anyone can also write one from scratch).
    let operator = env.registry.clone().unwrap();
    let registry_before = if env.home_registry().exists() {
        fs::read(env.home_registry()).unwrap()
    } else {
        fs::read(&operator).unwrap()
    };
    env.ok(&["zone", "rotate-root", "orders", "--key", "local:k2"]);

    fs::write(env.manifest("orders"), &manifest_before).unwrap();
    fs::write(env.home_registry(), &registry_before).unwrap();
    env.cmek()
        .args(["decrypt", "--zone", "orders", "sealed", "-o", "back"])
        .assert()
        .code(REJECTED)
        .stderr(contains("root key"));
    assert!(!env.path("back").exists(), "nothing written");
    // The operator's registry is the one used, and kept the new root.
    assert_ne!(fs::read(&operator).unwrap(), registry_before);
}

/// Once the registry is kept apart, one left in (or planted into) the
/// state directory is never taken over: every command that needs the
/// registry is refused until the operator moves the file.
#[test]
fn a_registry_in_the_state_directory_is_never_adopted_on_its_own() {
    let mut env = Env::new();
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["zone", "create", "orders", "--key", "local:k1"]);
    fs::write(env.path("plain"), b"rows").unwrap();
    env.ok(&["encrypt", "--zone", "orders", "plain", "-o", "sealed"]);
    let operator = env.path("operator");
    fs::create_dir(&operator).unwrap();
    let apart = operator.join("registry.state");
    env.registry = Some(apart.clone());

    env.cmek()
        .args(["decrypt", "--zone", "orders", "sealed"])
        .assert()
        .code(USAGE)
        .stderr(contains("mv "));
    assert!(!apart.exists(), "nothing created");
    fs::rename(env.home_registry(), &apart).unwrap();
    env.cmek()
        .args(["decrypt", "--zone", "orders", "sealed"])
        .assert()
        .success()
        .stdout("rows");
    assert!(!env.home_registry().exists(), "nothing written to the home");

    // A registry whose directory does not exist is a usage error.
    env.registry = Some(env.path("nowhere/registry.state"));
    env.cmek()
        .args(["key", "list"])
        .assert()
        .code(USAGE)
        .stderr(contains("not a directory"));
}

/// With the registry and the local key file both kept apart, the state
/// directory holds only the zones' manifests: everything the storage
/// attacker may write. A local key file left in the state directory is
/// never taken over either.
#[test]
fn the_local_key_file_can_be_kept_apart_too() {
    let mut env = Env::registry_apart();
    let keys = env.path("operator/local.keys");
    env.ok(&["key", "add", "local:k1"]);
    env.ok(&["zone", "create", "orders", "--key", "local:k1"]);
    assert!(env.path("home/local.keys").exists(), "not apart yet");
    env.local_keys = Some(keys.clone());
    env.cmek()
        .args(["key", "validate", "local:k1"])
        .assert()
        .code(USAGE)
        .stderr(contains("--local-keys"));
    fs::rename(env.path("home/local.keys"), &keys).unwrap();
    fs::write(env.path("plain"), b"rows").unwrap();
    env.ok(&["encrypt", "--zone", "orders", "plain", "-o", "sealed"]);
    env.ok(&["key", "add", "local:k2"]);
    env.ok(&["zone", "rotate-root", "orders", "--key", "local:k2"]);
    env.cmek()
        .args(["decrypt", "--zone", "orders", "sealed"])
        .assert()
        .success()
        .stdout("rows");
    let mut home: Vec<_> = fs::read_dir(env.path("home"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        // The lock file left from before the move guards nothing now.
        .filter(|name| name != ".local.keys.lock")
        .collect();
    home.sort();
    assert_eq!(home, ["zones"], "only the manifests are in the home");
}
