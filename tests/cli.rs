//! The `cmek` binary end to end on the local key provider: every command,
//! its output and its exit code, including bad input (wrong key, tampered,
//! truncated and missing files, an unreadable directory, bad usage).
//!
//! Each test runs the built binary with its own state directory.
#![cfg(feature = "cli")]

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

/// Exit codes, as documented by `cmek --help`.
const USAGE: i32 = 2;
const INTEGRITY: i32 = 3;
const MALFORMED: i32 = 4;
const KEY_UNAVAILABLE: i32 = 5;
const REFUSED: i32 = 8;
const IO: i32 = 9;
const REJECTED: i32 = 10;

/// A state directory and a work directory, removed at the end.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `cmek` with this state directory and no AWS endpoint.
    fn cmek(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.env("CMEK_HOME", self.home())
            .env_remove("CMEK_AWS_ENDPOINT_URL")
            .env_remove("CMEK_REGISTRY")
            .env_remove("CMEK_LOCAL_KEYS")
            .current_dir(self.dir.path());
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmek().args(args).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    }

    /// A local root key `key` (registered) and a zone `zone` under it.
    fn zone(&self, zone: &str, key: &str, extra: &[&str]) {
        if !self
            .ok(&["key", "list"])
            .contains(&format!("local:local:{key} "))
        {
            self.ok(&["key", "add", &format!("local:{key}")]);
        }
        let mut args = vec!["zone", "create", zone, "--key"];
        let key = format!("local:{key}");
        args.push(&key);
        args.extend_from_slice(extra);
        self.ok(&args);
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, data).unwrap();
        p
    }
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 977) as u8).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_command_has_help_and_the_exit_codes_are_documented() {
    let env = Env::new();
    env.cmek()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("Exit codes:").and(contains("3  integrity failure")));
    for cmd in [
        &["key"][..],
        &["key", "add"],
        &["key", "validate"],
        &["key", "list"],
        &["key", "disable"],
        &["key", "enable"],
        &["key", "delete"],
        &["zone"],
        &["zone", "create"],
        &["zone", "show"],
        &["zone", "rotate"],
        &["zone", "rotate-root"],
        &["zone", "retire-version"],
        &["encrypt"],
        &["decrypt"],
        &["inspect"],
        &["rewrap"],
        &["backup"],
        &["restore"],
        &["policy"],
        &["policy", "role"],
        &["policy", "trust"],
    ] {
        env.cmek()
            .args(cmd)
            .arg("--help")
            .assert()
            .success()
            .stdout(contains("Usage: cmek"));
    }
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let env = Env::new();
    env.cmek().arg("frobnicate").assert().code(USAGE);
    env.cmek()
        .args(["key", "add", "root-1"])
        .assert()
        .code(USAGE)
        .stderr(contains("expected PROVIDER:ID"));
    env.cmek()
        .args(["key", "add", "vault:root-1"])
        .assert()
        .code(USAGE)
        .stderr(contains("unknown provider"));
    // A known provider with a name it cannot mean: usage, before any call.
    #[cfg(feature = "gcp-kms")]
    env.cmek()
        .args(["key", "add", "gcp:root-1"])
        .assert()
        .code(USAGE)
        .stderr(contains("a Cloud KMS key is named"));
    env.cmek()
        .args(["zone", "show", "nope"])
        .assert()
        .code(USAGE)
        .stderr(contains("no zone \"nope\""));
    env.cmek()
        .args(["zone", "show", "../escape"])
        .assert()
        .code(USAGE);
    env.zone("z", "k", &[]);
    // Standard output needs an explicit segment id.
    env.cmek()
        .args(["encrypt", "-z", "z"])
        .write_stdin("x")
        .assert()
        .code(USAGE)
        .stderr(contains("--segment-id"));
    env.cmek()
        .args(["decrypt", "-z", "z", "f", "--range", "9..3"])
        .assert()
        .code(USAGE);
    let input = env.write("in", b"data");
    env.ok(&["encrypt", "-z", "z", s(&input), "-o", "out.cmek"]);
    env.cmek()
        .args(["encrypt", "-z", "z", s(&input), "-o", "out.cmek"])
        .assert()
        .code(USAGE)
        .stderr(contains("exists; pass --force"));
    env.ok(&["encrypt", "-z", "z", s(&input), "-o", "out.cmek", "--force"]);
}

#[test]
fn key_add_validate_list_disable_enable_delete() {
    let env = Env::new();
    env.cmek()
        .args(["key", "add", "local:root-1"])
        .assert()
        .success()
        .stdout(contains("created local key local:local:root-1"))
        .stdout(contains(
            "registered local:local:root-1 (serves local; 1 of 20 keys)",
        ));
    // Adding it again is refused by the registry.
    env.cmek()
        .args(["key", "add", "local:root-1"])
        .assert()
        .code(USAGE)
        .stderr(contains("already registered"));
    env.cmek()
        .args(["key", "validate", "local:root-1"])
        .assert()
        .success()
        .stdout(contains("encrypt   passed").and(contains("valid")));

    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["key", "list", "--json"])).unwrap();
    assert_eq!(list["limit"], 20);
    assert_eq!(list["keys"][0]["key_id"], "root-1");
    assert_eq!(list["keys"][0]["state"], "enabled");

    env.ok(&["zone", "create", "orders", "--key", "local:root-1"]);
    let input = env.write("plain", &data(5000));
    env.ok(&["encrypt", "-z", "orders", s(&input), "-o", "seg"]);

    env.cmek()
        .args(["key", "disable", "local:root-1"])
        .assert()
        .success()
        .stdout(contains("disabled local:local:root-1"));
    env.cmek()
        .args(["key", "validate", "local:root-1"])
        .assert()
        .code(KEY_UNAVAILABLE)
        .stdout(contains("FAILED: key is disabled"))
        .stderr(contains("failed validation"));
    // A zone under a disabled key does not open.
    env.cmek()
        .args(["decrypt", "-z", "orders", "seg"])
        .assert()
        .code(KEY_UNAVAILABLE)
        .stderr(contains("zone orders").and(contains("disabled")));
    assert!(env.ok(&["key", "list"]).contains("state=disabled"));
    env.ok(&["key", "enable", "local:root-1"]);
    env.ok(&["decrypt", "-z", "orders", "seg", "-o", "back"]);
    assert_eq!(fs::read(env.path("back")).unwrap(), data(5000));

    // In use: refused, naming the zone.
    env.cmek()
        .args(["key", "delete", "local:root-1"])
        .assert()
        .code(REFUSED)
        .stderr(contains("in use by zone: orders"));
    // An unused key goes; --destroy removes its material too.
    env.ok(&["key", "add", "local:spare"]);
    env.cmek()
        .args(["key", "delete", "local:spare", "--destroy"])
        .assert()
        .success()
        .stdout(contains("destroyed"));
    env.cmek()
        .args(["key", "validate", "local:spare"])
        .assert()
        .code(KEY_UNAVAILABLE);
    env.cmek()
        .args(["key", "delete", "local:spare"])
        .assert()
        .code(USAGE)
        .stderr(contains("not registered"));
}

#[test]
fn the_registry_holds_at_most_20_keys() {
    let env = Env::new();
    for i in 0..20 {
        env.ok(&["key", "add", &format!("local:k{i:02}")]);
    }
    env.cmek()
        .args(["key", "add", "local:k20"])
        .assert()
        .code(REFUSED)
        .stderr(contains("limit exceeded").and(contains("limit 20")));
    assert!(env.ok(&["key", "list"]).starts_with("20 of 20 keys"));
}

#[test]
fn a_zone_may_only_use_a_key_of_its_region() {
    let env = Env::new();
    env.ok(&["key", "add", "local:root-1"]);
    env.cmek()
        .args([
            "zone",
            "create",
            "far",
            "--key",
            "local:root-1",
            "--region",
            "eu-west-1",
        ])
        .assert()
        .code(REFUSED)
        .stderr(contains("zone far").and(contains("cannot be used from region eu-west-1")));
    // Nothing is left of the refused zone.
    assert!(!env.home().join("zones/far.manifest").exists());
    // An unregistered key is refused before any zone exists.
    env.cmek()
        .args(["zone", "create", "z", "--key", "local:other"])
        .assert()
        .code(USAGE);
}

#[test]
fn zone_create_show_rotate_rotate_root_retire() {
    let env = Env::new();
    env.zone("orders", "root-1", &["--chunk-size", "4096"]);
    let show: serde_json::Value =
        serde_json::from_str(&env.ok(&["zone", "show", "orders", "--json"])).unwrap();
    assert_eq!(show["name"], "orders");
    assert_eq!(show["chunk_size"], 4096);
    assert_eq!(show["active_version"], 1);
    assert_eq!(show["root"], "local:local:root-1");

    let input = env.write("plain", &data(20_000));
    env.ok(&["encrypt", "-z", "orders", s(&input), "-o", "seg"]);
    env.cmek()
        .args(["zone", "rotate", "orders"])
        .assert()
        .success()
        .stdout(contains("EZK version 2 is active"));
    assert!(env
        .ok(&["zone", "show", "orders"])
        .contains("active version 2"));

    // Root rotation to another registered key; the old one is then free.
    env.ok(&["key", "add", "local:root-2"]);
    env.ok(&["zone", "rotate-root", "orders", "--key", "local:root-2"]);
    assert!(env
        .ok(&["zone", "show", "orders"])
        .contains("root key       local:local:root-2"));
    env.ok(&["key", "delete", "local:root-1", "--destroy"]);
    env.ok(&["decrypt", "-z", "orders", "seg", "-o", "back"]);
    assert_eq!(fs::read(env.path("back")).unwrap(), data(20_000));

    // Retiring needs confirmation, is refused while a file uses the
    // version, and works once the files are rewrapped.
    fs::create_dir(env.path("segs")).unwrap();
    fs::rename(env.path("seg"), env.path("segs/seg")).unwrap();
    env.cmek()
        .args(["zone", "retire-version", "orders", "1"])
        .assert()
        .code(USAGE)
        .stderr(contains("--yes"));
    env.cmek()
        .args([
            "zone",
            "retire-version",
            "orders",
            "1",
            "--yes",
            "--check-dir",
            "segs",
        ])
        .assert()
        .code(REFUSED)
        .stderr(contains("still use EZK version 1"));
    env.cmek()
        .args(["zone", "retire-version", "orders", "2", "--yes"])
        .assert()
        .code(USAGE)
        .stderr(contains("active"));
    env.ok(&["rewrap", "-z", "orders", "segs"]);
    env.ok(&[
        "zone",
        "retire-version",
        "orders",
        "1",
        "--yes",
        "--check-dir",
        "segs",
    ]);
    env.ok(&["decrypt", "-z", "orders", "segs/seg", "-o", "back2"]);
    assert_eq!(fs::read(env.path("back2")).unwrap(), data(20_000));
}

#[test]
fn encrypt_decrypt_files_and_pipes() {
    let env = Env::new();
    env.zone("z", "k", &[]);
    for len in [0usize, 1, 65_536 - 40, 65_536, 3 << 20] {
        let input = env.write("plain", &data(len));
        env.ok(&["encrypt", "-z", "z", s(&input), "-o", "seg", "--force"]);
        assert_eq!(
            fs::metadata(env.path("seg")).unwrap().len(),
            128 + cmek::stream::Params::default()
                .ciphertext_len(len as u64)
                .unwrap()
        );
        env.ok(&["decrypt", "-z", "z", "seg", "-o", "back", "--force"]);
        assert_eq!(fs::read(env.path("back")).unwrap(), data(len), "{len}");
    }
    // Standard input to standard output, both ways.
    let plain = data(200_000);
    let seg = env
        .cmek()
        .args(["encrypt", "-z", "z", "--segment-id", "s1"])
        .write_stdin(plain.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    env.cmek()
        .args(["decrypt", "-z", "z", "--segment-id", "s1"])
        .write_stdin(seg.clone())
        .assert()
        .success()
        .stdout(predicate::eq(plain.clone()));
    // The segment id is bound: another id does not decrypt.
    env.cmek()
        .args(["decrypt", "-z", "z", "--segment-id", "s2"])
        .write_stdin(seg)
        .assert()
        .code(INTEGRITY)
        .stderr(contains("integrity check failed"));
    // A device is written as it is with --force, never replaced.
    #[cfg(unix)]
    {
        env.ok(&["decrypt", "-z", "z", "seg", "-o", "/dev/null", "--force"]);
        assert!(!Path::new("/dev/null").is_file());
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("cmek-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Plaintext never lands in a file others may read: `cmek decrypt` creates
/// its output owner-only whatever the umask allows, also when it replaces
/// a readable file; ciphertext keeps the umask's mode.
#[cfg(unix)]
#[test]
fn decrypted_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.zone("z", "k", &[]);
    let input = env.write("plain", &data(70_000));
    // Under a umask that lets everyone read new files.
    let run = |args: &[&str]| {
        Command::new("sh")
            .args([
                "-c",
                "umask 022 && exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_cmek"),
            ])
            .args(args)
            .env("CMEK_HOME", env.home())
            .env_remove("CMEK_AWS_ENDPOINT_URL")
            .env_remove("CMEK_REGISTRY")
            .env_remove("CMEK_LOCAL_KEYS")
            .current_dir(env.dir.path())
            .assert()
            .success();
    };
    let mode = |name: &str| fs::metadata(env.path(name)).unwrap().permissions().mode() & 0o777;
    run(&["encrypt", "-z", "z", s(&input), "-o", "seg"]);
    assert_eq!(mode("seg"), 0o644, "ciphertext keeps the umask's mode");
    run(&["decrypt", "-z", "z", "seg", "-o", "back"]);
    assert_eq!(mode("back"), 0o600);
    assert_eq!(fs::read(env.path("back")).unwrap(), data(70_000));
    // Replacing a world-readable file gives an owner-only one.
    let readable = env.write("readable", b"old");
    fs::set_permissions(&readable, fs::Permissions::from_mode(0o644)).unwrap();
    run(&["decrypt", "-z", "z", "seg", "-o", "readable", "--force"]);
    assert_eq!(mode("readable"), 0o600);
    env.cmek()
        .args(["decrypt", "--help"])
        .assert()
        .success()
        .stdout(contains("owner-only (mode 0600"));
}

#[test]
fn no_progress_bar_when_standard_error_is_not_a_terminal() {
    let env = Env::new();
    env.zone("z", "k", &[]);
    // Above the size from which a terminal would get a bar.
    let input = env.write("big", &vec![0x5a; (64 << 20) + 1]);
    env.cmek()
        .args(["encrypt", "-z", "z", s(&input), "-o", "big.seg"])
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
    env.cmek()
        .args(["decrypt", "-z", "z", "big.seg", "-o", "big.out"])
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
    assert_eq!(
        fs::metadata(env.path("big.out")).unwrap().len(),
        (64 << 20) + 1
    );
}

#[test]
fn wrong_key_tampered_truncated_and_missing_files_fail_with_their_codes() {
    let env = Env::new();
    env.zone("a", "ka", &["--chunk-size", "4096"]);
    env.zone("b", "kb", &[]);
    let input = env.write("plain", &data(50_000));
    env.ok(&["encrypt", "-z", "a", s(&input), "-o", "seg"]);
    let seg = fs::read(env.path("seg")).unwrap();

    // Another zone's keys: integrity failure, and no output file.
    env.cmek()
        .args(["decrypt", "-z", "b", "seg", "-o", "out"])
        .assert()
        .code(INTEGRITY)
        .stderr(contains("decrypt seg: integrity check failed"));
    assert!(!env.path("out").exists());
    // Renamed file: its name is its segment id.
    fs::copy(env.path("seg"), env.path("renamed")).unwrap();
    env.cmek()
        .args(["decrypt", "-z", "a", "renamed"])
        .assert()
        .code(INTEGRITY);
    env.ok(&[
        "decrypt",
        "-z",
        "a",
        "renamed",
        "--segment-id",
        "seg",
        "-o",
        "ok",
    ]);

    // A flipped bit in the header, in the body.
    for at in [40usize, 128 + 100, seg.len() - 1] {
        let mut bad = seg.clone();
        bad[at] ^= 1;
        env.write("seg", &bad);
        env.cmek()
            .args(["decrypt", "-z", "a", "seg", "-o", "out"])
            .assert()
            .code(INTEGRITY)
            .stderr(contains("seg"));
        assert!(!env.path("out").exists(), "partial output at {at}");
    }
    // Truncated: inside the header (malformed), at a chunk boundary and
    // inside a chunk (integrity or malformed, never success).
    for (len, code) in [
        (100, MALFORMED),
        (128 + 4096, INTEGRITY),
        (seg.len() - 7, INTEGRITY),
    ] {
        env.write("seg", &seg[..len]);
        env.cmek()
            .args(["decrypt", "-z", "a", "seg"])
            .assert()
            .code(code)
            .stderr(contains("decrypt seg"));
    }
    // Not a segment at all.
    env.write("seg", &data(1000));
    env.cmek()
        .args(["decrypt", "-z", "a", "seg"])
        .assert()
        .code(MALFORMED)
        .stderr(contains("bad magic"));
    // Missing file: I/O error naming it.
    env.cmek()
        .args(["decrypt", "-z", "a", "missing.cmek"])
        .assert()
        .code(IO)
        .stderr(contains("missing.cmek").and(contains("No such file")));
    env.cmek()
        .args(["encrypt", "-z", "a", "missing.txt", "-o", "x"])
        .assert()
        .code(IO)
        .stderr(contains("missing.txt"));
    env.cmek()
        .args(["inspect", "missing.cmek"])
        .assert()
        .code(IO);
}

#[test]
fn ranged_decrypt_reads_only_the_chunks_it_needs() {
    let env = Env::new();
    env.zone("z", "k", &["--chunk-size", "4096"]);
    let plain = data(100_000);
    let input = env.write("plain", &plain);
    env.ok(&["encrypt", "-z", "z", s(&input), "-o", "seg"]);

    let range = |r: &str| {
        env.cmek()
            .args(["decrypt", "-z", "z", "seg", "--range", r])
            .assert()
    };
    range("5000..9000")
        .success()
        .stdout(predicate::eq(plain[5000..9000].to_vec()));
    range("99990..")
        .success()
        .stdout(predicate::eq(plain[99_990..].to_vec()));
    range("..10")
        .success()
        .stdout(predicate::eq(plain[..10].to_vec()));
    range("99000..200000")
        .success()
        .stdout(predicate::eq(plain[99_000..].to_vec()));

    // Damage chunk 20 (plaintext ~81 KiB): a range far from it still reads,
    // because only its own chunks are read; the whole file and a range over
    // the damage fail.
    let mut seg = fs::read(env.path("seg")).unwrap();
    seg[128 + 20 * 4096 + 10] ^= 1;
    env.write("seg", &seg);
    range("5000..9000")
        .success()
        .stdout(predicate::eq(plain[5000..9000].to_vec()));
    range("80000..82000").code(INTEGRITY);
    env.cmek()
        .args(["decrypt", "-z", "z", "seg"])
        .assert()
        .code(INTEGRITY);
    // A range needs a file.
    env.cmek()
        .args([
            "decrypt",
            "-z",
            "z",
            "--segment-id",
            "seg",
            "--range",
            "0..1",
        ])
        .write_stdin(seg)
        .assert()
        .code(USAGE);
}

#[test]
fn inspect_shows_the_header_without_keys() {
    let env = Env::new();
    env.zone("orders", "k", &[]);
    let input = env.write("plain", &data(300_000));
    env.ok(&["encrypt", "-z", "orders", s(&input), "-o", "seg"]);
    let zone_id =
        serde_json::from_str::<serde_json::Value>(&env.ok(&["zone", "show", "orders", "--json"]))
            .unwrap()["zone_id"]
            .as_str()
            .unwrap()
            .to_owned();

    env.cmek()
        .args(["inspect", "seg"])
        .assert()
        .success()
        .stdout(contains(format!("zone id         {zone_id} (zone orders)")))
        .stdout(contains("EZK version     1"))
        .stdout(contains("plaintext       300000 bytes"))
        .stdout(contains("body            300120 bytes in 5 chunks"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "seg", "--json"])).unwrap();
    assert_eq!(json["zone_id"], zone_id.as_str());
    assert_eq!(json["plaintext_size"], 300_000);
    assert_eq!(json["chunks"], 5);
    assert_eq!(json["wrapped_dek"].as_str().unwrap().len(), 122);

    // No key needed: an empty state directory works, and the local key
    // file is not even read.
    fs::remove_file(env.home().join("local.keys")).unwrap();
    let other = Env::new();
    other
        .cmek()
        .args(["inspect", s(&env.path("seg"))])
        .assert()
        .success()
        .stdout(contains(&zone_id));
    // A damaged body length is reported, not refused.
    let seg = fs::read(env.path("seg")).unwrap();
    env.write("short", &seg[..seg.len() - 20_000]);
    env.ok(&["inspect", "short"]);
    // A header that does not parse is malformed input.
    env.write("junk", b"hello");
    env.cmek()
        .args(["inspect", "junk"])
        .assert()
        .code(MALFORMED)
        .stderr(contains("junk").and(contains("segment header")));
}

#[test]
fn rewrap_is_resumable_and_summarizes() {
    let env = Env::new();
    env.zone("z", "k", &[]);
    env.zone("other", "k", &[]);
    fs::create_dir(env.path("segs")).unwrap();
    for i in 0..5 {
        let input = env.write("plain", &data(1000 * i));
        env.ok(&["encrypt", "-z", "z", s(&input), "-o", &format!("segs/s{i}")]);
    }
    env.ok(&[
        "encrypt",
        "-z",
        "other",
        s(&env.path("plain")),
        "-o",
        "segs/foreign",
    ]);
    fs::write(env.path("segs/notes.txt"), "not a segment").unwrap();
    env.ok(&["zone", "rotate", "z"]);
    env.ok(&["rewrap", "-z", "z", "segs"]);
    env.ok(&["zone", "rotate", "z"]);
    env.cmek()
        .args(["rewrap", "-z", "z", "segs"])
        .assert()
        .success()
        .stdout(contains(
            "zone z: 5 rewrapped to EZK version 3, 0 already current, 0 failed, 2 skipped",
        ));
    // Running it again (as after an interrupted run) skips what is done.
    env.cmek()
        .args(["rewrap", "-z", "z", "segs"])
        .assert()
        .success()
        .stdout(contains("0 rewrapped to EZK version 3, 5 already current"));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "segs/s3", "--json"])).unwrap();
    assert_eq!(json["ezk_version"], 3);
    env.ok(&["decrypt", "-z", "z", "segs/s3", "-o", "back"]);
    assert_eq!(fs::read(env.path("back")).unwrap(), data(3000));

    // A tampered header is reported by name and the batch goes on.
    env.ok(&["zone", "rotate", "z"]);
    let mut bad = fs::read(env.path("segs/s1")).unwrap();
    bad[50] ^= 1;
    fs::write(env.path("segs/s1"), bad).unwrap();
    env.cmek()
        .args(["rewrap", "-z", "z", "segs"])
        .assert()
        .code(INTEGRITY)
        .stdout(contains(
            "4 rewrapped to EZK version 4, 0 already current, 1 failed",
        ))
        .stderr(contains("s1").and(contains("integrity check failed")));
}

/// `cmek backup` and `cmek restore`: a restore trusts the registry's keys
/// by default, or only what `--allow-root` and `--source-zone` name; a
/// bundle under any other root key or of another zone is refused (exit 10)
/// before any provider call, and nothing is written.
#[test]
fn backup_and_restore_trust_only_the_caller() {
    let env = Env::new();
    env.zone("z", "k", &[]);
    env.zone("other", "k2", &[]);
    fs::create_dir(env.path("segs")).unwrap();
    for i in 0..3 {
        let input = env.write("plain", &data(3000 * i + 1));
        env.ok(&["encrypt", "-z", "z", s(&input), "-o", &format!("segs/s{i}")]);
    }
    env.ok(&[
        "encrypt",
        "-z",
        "other",
        s(&env.path("plain")),
        "-o",
        "segs/foreign",
    ]);
    env.cmek()
        .args(["backup", "-z", "z", "segs", "-o", "bundle"])
        .assert()
        .success()
        .stdout(contains("3 segments").and(contains("1 skipped")));
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["zone", "show", "z", "--json"])).unwrap();
    let zone_id = json["zone_id"].as_str().unwrap().to_owned();

    // Refused: a root key not allowed, another zone.
    for trust in [
        &["--allow-root", "local:k2"][..],
        &["--source-zone", "000102030405060708090a0b0c0d0e0f"],
    ] {
        let mut args = vec!["restore", "bundle", "refused", "--mode", "plaintext"];
        args.extend_from_slice(trust);
        env.cmek()
            .args(&args)
            .assert()
            .code(REJECTED)
            .stderr(contains("backup refused"));
        assert!(!env.path("refused").exists(), "nothing written");
    }

    // Trusted by default (the registry's keys), by zone, by root.
    for (dest, trust) in [
        ("plain-default", &[][..]),
        ("plain-zone", &["--source-zone", zone_id.as_str()][..]),
        ("plain-root", &["--allow-root", "local:k"][..]),
    ] {
        let mut args = vec!["restore", "bundle", dest, "--mode", "plaintext"];
        args.extend_from_slice(trust);
        env.cmek()
            .args(&args)
            .assert()
            .success()
            .stdout(contains("3 restored, 0 already done, 0 replaced"));
        for i in 0..3 {
            assert_eq!(
                fs::read(env.path(dest).join("segments").join(format!("s{i}"))).unwrap(),
                data(3000 * i + 1)
            );
        }
    }

    // Into a new zone; a rerun verifies what is there and redoes a file
    // replaced meanwhile.
    let restore = [
        "restore", "bundle", "restored", "--zone", "r", "--key", "local:k2",
    ];
    env.cmek()
        .args(restore)
        .assert()
        .success()
        .stdout(contains("3 restored").and(contains("under local:")));
    fs::copy(
        env.path("restored/segments/s0"),
        env.path("restored/segments/s1"),
    )
    .unwrap();
    env.cmek()
        .args(restore)
        .assert()
        .success()
        .stdout(contains("1 restored, 2 already done, 1 replaced"));
    // The same destination with another root key: the state refuses it.
    env.cmek()
        .args([
            "restore", "bundle", "restored", "--zone", "r", "--key", "local:k",
        ])
        .assert()
        .code(REJECTED)
        .stderr(contains("restore state refused"));
}

#[test]
fn an_unreadable_directory_is_an_io_error_naming_it() {
    let env = Env::new();
    env.zone("z", "k", &[]);
    let dir = env.path("locked");
    fs::create_dir(&dir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
    }
    if fs::read_dir(&dir).is_ok() {
        // Root (or CAP_DAC_READ_SEARCH) reads it regardless of its mode:
        // make reading it fail another way, with a file where the directory
        // is expected.
        eprintln!("permission bits do not stop this user; using a file in place of the directory");
        fs::remove_dir(&dir).unwrap();
        fs::write(&dir, b"not a directory").unwrap();
    }
    env.cmek()
        .args(["rewrap", "-z", "z", "locked"])
        .assert()
        .code(IO)
        .stderr(contains("locked").and(contains("I/O error")));
    env.cmek()
        .args([
            "zone",
            "retire-version",
            "z",
            "1",
            "--yes",
            "--check-dir",
            "locked",
        ])
        .assert()
        .code(IO);
    #[cfg(unix)]
    if dir.is_dir() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A state directory that cannot be used is an I/O error too.
    let home_file = env.write("home-file", b"x");
    env.cmek()
        .env("CMEK_HOME", &home_file)
        .args(["key", "list"])
        .assert()
        .code(IO)
        .stderr(contains("home-file"));
}

#[test]
fn policy_documents() {
    let env = Env::new();
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let role: serde_json::Value = serde_json::from_str(&env.ok(&["policy", "role", arn])).unwrap();
    assert_eq!(role["Statement"][0]["Resource"][0], arn);
    assert_eq!(
        role["Statement"][0]["Action"],
        serde_json::json!(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])
    );
    let trust: serde_json::Value = serde_json::from_str(&env.ok(&[
        "policy",
        "trust",
        "arn:aws:iam::111122223333:role/engine",
        "--external-id",
        "x-1",
    ]))
    .unwrap();
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        "x-1"
    );
    env.cmek()
        .args(["policy", "role", "alias/orders"])
        .assert()
        .code(USAGE)
        .stderr(contains("not a KMS key ARN"));
    env.cmek()
        .args(["policy", "role"])
        .assert()
        .code(USAGE)
        .stderr(contains("no AWS key registered"));
    env.cmek()
        .args(["policy", "trust", "bob"])
        .assert()
        .code(USAGE);
}
