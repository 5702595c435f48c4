//! Someone who can create entries in the directory `cmek` writes its output
//! to plants a named pipe (FIFO) at the output name, or a symbolic link to
//! one, and reads what comes out of it. `cmek decrypt` and `cmek encrypt`
//! write only to a regular file they created, or to standard output: a
//! planted entry is refused (exit 2) without `--force`, and replaced, never
//! written into, with it.
//!
//! The test holds the FIFO's read end open, non-blocking, for the whole
//! run: a `cmek` that wrongly writes into the FIFO finishes (the output is
//! smaller than a pipe's buffer) and what it wrote is read back, so the
//! test fails instead of hanging. Each run has a timeout besides.
#![cfg(all(feature = "cli", unix))]

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use predicates::str::contains;

/// Bad usage, as documented by `cmek --help`.
const USAGE: i32 = 2;

const PLAINTEXT: &[u8] = b"account,balance\nacme,1200\nglobex,75\n";

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A zone `z` under a local key, and a segment `seg` of [`PLAINTEXT`].
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        env.ok(&["key", "add", "local:k1"]);
        env.ok(&["zone", "create", "z", "--key", "local:k1"]);
        fs::write(env.path("plain"), PLAINTEXT).unwrap();
        env.ok(&["encrypt", "-z", "z", "plain", "-o", "seg"]);
        env
    }

    fn cmek(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.env("CMEK_HOME", self.dir.path().join("home"))
            .env_remove("CMEK_AWS_ENDPOINT_URL")
            .env_remove("CMEK_REGISTRY")
            .env_remove("CMEK_LOCAL_KEYS")
            .current_dir(self.dir.path())
            .timeout(Duration::from_secs(60));
        cmd
    }

    fn ok(&self, args: &[&str]) {
        self.cmek().args(args).assert().success();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A FIFO at `name`, and its read end, opened without waiting for a
    /// writer.
    fn fifo(&self, name: &str) -> File {
        let path = self.path(name);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success(), "mkfifo");
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap()
    }
}

/// Everything a writer put into the FIFO so far.
fn drain(reader: &mut File) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("reading the FIFO: {e}"),
        }
    }
}

fn is_fifo(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false)
}

#[test]
fn decrypt_into_a_planted_fifo_is_refused() {
    let env = Env::new();
    let mut reader = env.fifo("out");
    let run = env
        .cmek()
        .args(["decrypt", "-z", "z", "seg", "-o", "out"])
        .assert();
    assert!(
        drain(&mut reader).is_empty(),
        "plaintext went into the FIFO"
    );
    run.code(USAGE).stderr(contains("named pipe"));
    assert!(is_fifo(&env.path("out")), "left as it was");
}

#[test]
fn decrypt_through_a_planted_link_to_a_fifo_is_refused() {
    let env = Env::new();
    let mut reader = env.fifo("pipe");
    std::os::unix::fs::symlink(env.path("pipe"), env.path("out")).unwrap();
    let run = env
        .cmek()
        .args(["decrypt", "-z", "z", "seg", "-o", "out"])
        .assert();
    assert!(
        drain(&mut reader).is_empty(),
        "plaintext went into the FIFO"
    );
    run.code(USAGE).stderr(contains("symbolic link"));
    assert!(fs::symlink_metadata(env.path("out"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn encrypt_into_a_planted_fifo_or_a_link_to_one_is_refused() {
    let env = Env::new();
    let mut reader = env.fifo("pipe");
    std::os::unix::fs::symlink(env.path("pipe"), env.path("linked")).unwrap();
    for out in ["pipe", "linked"] {
        let run = env
            .cmek()
            .args(["encrypt", "-z", "z", "plain", "-o", out])
            .assert();
        assert!(
            drain(&mut reader).is_empty(),
            "{out}: output went into the FIFO"
        );
        run.code(USAGE).stderr(contains("--force"));
    }
    assert!(is_fifo(&env.path("pipe")));
}

#[test]
fn with_force_a_planted_fifo_or_link_is_replaced_never_written_into() {
    let env = Env::new();
    let mut reader = env.fifo("pipe");
    std::os::unix::fs::symlink(env.path("pipe"), env.path("linked")).unwrap();
    let mut other = env.fifo("out");
    for (out, reader) in [("linked", &mut reader), ("out", &mut other)] {
        env.ok(&["decrypt", "-z", "z", "seg", "-o", out, "--force"]);
        assert!(
            drain(reader).is_empty(),
            "{out}: plaintext went into a FIFO"
        );
        let meta = fs::symlink_metadata(env.path(out)).unwrap();
        assert!(meta.is_file(), "{out}: replaced by a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{out}");
        assert_eq!(fs::read(env.path(out)).unwrap(), PLAINTEXT);
    }
    // What the link pointed to is left alone.
    assert!(is_fifo(&env.path("pipe")));
    // Encrypt's output too.
    let mut third = env.fifo("sealed");
    env.ok(&["encrypt", "-z", "z", "plain", "-o", "sealed", "--force"]);
    assert!(drain(&mut third).is_empty());
    assert!(fs::symlink_metadata(env.path("sealed")).unwrap().is_file());
    env.cmek()
        .args(["decrypt", "-z", "z", "sealed"])
        .assert()
        .success()
        .stdout(PLAINTEXT);
}

#[test]
fn a_planted_link_to_a_regular_file_is_never_written_through() {
    let env = Env::new();
    fs::write(env.path("victim"), b"keep me").unwrap();
    std::os::unix::fs::symlink(env.path("victim"), env.path("out")).unwrap();
    env.cmek()
        .args(["decrypt", "-z", "z", "seg", "-o", "out"])
        .assert()
        .code(USAGE)
        .stderr(contains("symbolic link"));
    env.ok(&["decrypt", "-z", "z", "seg", "-o", "out", "--force"]);
    assert_eq!(fs::read(env.path("victim")).unwrap(), b"keep me");
    assert!(fs::symlink_metadata(env.path("out")).unwrap().is_file());
    assert_eq!(fs::read(env.path("out")).unwrap(), PLAINTEXT);
}

#[test]
fn a_device_is_written_only_with_force() {
    let env = Env::new();
    env.cmek()
        .args(["decrypt", "-z", "z", "seg", "-o", "/dev/null"])
        .assert()
        .code(USAGE)
        .stderr(contains("device"));
    env.ok(&["decrypt", "-z", "z", "seg", "-o", "/dev/null", "--force"]);
    env.ok(&[
        "encrypt",
        "-z",
        "z",
        "plain",
        "-o",
        "/dev/null",
        "--force",
        "--segment-id",
        "s",
    ]);
    let meta = fs::symlink_metadata("/dev/null").unwrap();
    assert!(meta.file_type().is_char_device(), "never replaced");
}

#[test]
fn rewrap_leaves_symbolic_links_alone() {
    let env = Env::new();
    let dir = env.path("segments");
    let outside = env.path("outside");
    fs::create_dir(&dir).unwrap();
    fs::create_dir(&outside).unwrap();
    env.ok(&["encrypt", "-z", "z", "plain", "-o", "outside/s1"]);
    let before = fs::read(outside.join("s1")).unwrap();
    std::os::unix::fs::symlink(outside.join("s1"), dir.join("s1")).unwrap();
    env.ok(&["zone", "rotate", "z"]);
    env.cmek()
        .args(["rewrap", "-z", "z", "segments"])
        .assert()
        .success()
        .stdout(contains("0 rewrapped"))
        .stderr(contains("s1"));
    assert_eq!(fs::read(outside.join("s1")).unwrap(), before);
}
