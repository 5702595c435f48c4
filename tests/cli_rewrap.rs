//! `cmek rewrap DIR` against a storage attacker and a second operator:
//! other zones' files and journals in the directory are left alone and
//! reported, a planted journal beside one of the zone's files is refused
//! with nothing written, and two runs on one directory at the same time
//! both finish, each file rewrapped exactly once.
//!
//! Each test runs the built binary with its own state directory.
#![cfg(feature = "cli")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

/// Exit code of refused stored state (`Error::StateRejected`).
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmek(&self) -> Command {
        Command::from_std(self.std_cmek())
    }

    /// The same command as a plain `std::process::Command`, to run several
    /// at once.
    fn std_cmek(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cmek"));
        cmd.env("CMEK_HOME", self.path("home"))
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

    /// Local root key `k` and zones `names` under it.
    fn zones(&self, names: &[&str]) {
        self.ok(&["key", "add", "local:k"]);
        for zone in names {
            self.ok(&["zone", "create", zone, "--key", "local:k"]);
        }
    }

    /// Encrypts `data` in `zone` to `out` (relative to the work directory).
    fn encrypt(&self, zone: &str, data: &[u8], out: &str) {
        fs::write(self.path("plain"), data).unwrap();
        self.ok(&["encrypt", "-z", zone, "plain", "-o", out]);
    }
}

/// A complete rewrap journal (`docs/FORMAT.md`) holding `header`.
fn journal_of(header: &[u8]) -> Vec<u8> {
    let header = &header[..128];
    [
        header,
        ring::digest::digest(&ring::digest::SHA256, header).as_ref(),
    ]
    .concat()
}

fn journal_path(segment: &Path) -> PathBuf {
    cmek::zone::rewrap_journal_path(segment).unwrap()
}

#[test]
fn other_zones_files_and_journals_are_left_alone_and_reported() {
    let env = Env::new();
    env.zones(&["z", "other"]);
    fs::create_dir(env.path("segs")).unwrap();
    for i in 0..3 {
        env.encrypt("z", &vec![i; 5000], &format!("segs/s{i}"));
    }
    // Another zone's segment with its journal beside it, as an interrupted
    // rewrap of that zone leaves them: not this run's to touch.
    env.encrypt("other", b"theirs", "segs/foreign");
    let foreign = env.path("segs/foreign");
    let foreign_bytes = fs::read(&foreign).unwrap();
    let foreign_journal = journal_of(&foreign_bytes);
    fs::write(journal_path(&foreign), &foreign_journal).unwrap();
    env.ok(&["zone", "rotate", "z"]);

    env.cmek()
        .args(["rewrap", "-z", "z", "segs"])
        .assert()
        .success()
        .stdout(contains(
            "zone z: 3 rewrapped to EZK version 2, 0 already current, 0 failed, 1 skipped (not segments of this zone), 1 rewrap journals of other zones left alone",
        ))
        .stderr(
            contains("left alone 1 file(s) that are not segments of zone z: foreign").and(
                contains("left alone 1 rewrap journal(s) of other zones: .foreign.cmek-rewrap"),
            ),
        );
    assert_eq!(fs::read(&foreign).unwrap(), foreign_bytes);
    assert_eq!(fs::read(journal_path(&foreign)).unwrap(), foreign_journal);
    env.ok(&["decrypt", "-z", "other", "segs/foreign", "-o", "back"]);
    assert_eq!(fs::read(env.path("back")).unwrap(), b"theirs");
}

#[test]
fn a_planted_journal_beside_a_segment_of_this_zone_is_refused() {
    let env = Env::new();
    env.zones(&["z", "other"]);
    fs::create_dir(env.path("segs")).unwrap();
    env.encrypt("z", b"ours", "segs/seg");
    // Another zone's header for the same file name, as a journal.
    fs::create_dir(env.path("theirs")).unwrap();
    env.encrypt("other", b"theirs", "theirs/seg");
    let seg = env.path("segs/seg");
    let planted = journal_of(&fs::read(env.path("theirs/seg")).unwrap());
    fs::write(journal_path(&seg), &planted).unwrap();
    // And the segment's header damaged, where a repair would write.
    let mut damaged = fs::read(&seg).unwrap();
    damaged[70] ^= 0xff;
    fs::write(&seg, &damaged).unwrap();
    env.ok(&["zone", "rotate", "z"]);

    env.cmek()
        .args(["rewrap", "-z", "z", "segs"])
        .assert()
        .code(REJECTED)
        .stderr(contains("seg").and(contains("rewrap journal refused")));
    assert_eq!(fs::read(&seg).unwrap(), damaged, "nothing restored");
    assert_eq!(fs::read(journal_path(&seg)).unwrap(), planted);
}

/// The counts in a rewrap summary line: (rewrapped, already current).
fn counts(stdout: &str) -> (usize, usize) {
    let line = stdout.lines().find(|l| l.starts_with("zone z:")).unwrap();
    let number_before = |word: &str| -> usize {
        let at = line.find(word).unwrap();
        line[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_before(" rewrapped"),
        number_before(" already current"),
    )
}

#[test]
fn two_rewraps_of_one_directory_at_once_both_finish() {
    const FILES: usize = 64;
    let env = Env::new();
    env.zones(&["z"]);
    fs::create_dir(env.path("segs")).unwrap();
    for i in 0..FILES {
        env.encrypt("z", &vec![i as u8; 3000 + i], &format!("segs/s{i:03}"));
    }
    env.ok(&["zone", "rotate", "z"]);

    for round in 0..2 {
        if round == 1 {
            env.ok(&["zone", "rotate", "z"]);
        }
        let spawn = || {
            env.std_cmek()
                .args(["rewrap", "-z", "z", "segs"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let mut rewrapped = 0;
        for out in [&a, &b] {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success(),
                "round {round}: {:?}\n{stdout}\n{stderr}",
                out.status
            );
            assert!(!stderr.contains("File exists"), "{stderr}");
            let (done, current) = counts(&stdout);
            assert_eq!(done + current, FILES, "{stdout}");
            rewrapped += done;
        }
        // Each file was rewrapped by exactly one of the two.
        assert_eq!(rewrapped, FILES, "round {round}");
    }
    let names: Vec<String> = fs::read_dir(env.path("segs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), FILES, "no journal left: {names:?}");
    for i in [0, FILES / 2, FILES - 1] {
        let json: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", &format!("segs/s{i:03}"), "--json"]))
                .unwrap();
        assert_eq!(json["ezk_version"], 3);
        assert_eq!(json["format_version"], 2);
        env.ok(&["decrypt", "-z", "z", &format!("segs/s{i:03}"), "-o", "back"]);
        assert_eq!(fs::read(env.path("back")).unwrap(), vec![i as u8; 3000 + i]);
        fs::remove_file(env.path("back")).unwrap();
    }
}
