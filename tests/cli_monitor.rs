//! `cmek monitor` end to end on the local key provider: a one-shot check
//! and its exit codes, and a running monitor following a key that another
//! `cmek` process disables and enables. Also `cmek rewrap` repairing a
//! header torn by an interrupted rewrap.
#![cfg(feature = "cli")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const KEY_UNAVAILABLE: i32 = 5;

fn cmek(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cmek"));
    cmd.env("CMEK_HOME", home)
        .env_remove("CMEK_AWS_ENDPOINT_URL")
        .env_remove("CMEK_REGISTRY")
        .env_remove("CMEK_LOCAL_KEYS");
    cmd
}

fn ok(home: &std::path::Path, args: &[&str]) -> String {
    let out = cmek(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "cmek {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    ok(&home, &["key", "add", "local:root-1"]);
    ok(
        &home,
        &["zone", "create", "orders", "--key", "local:root-1"],
    );
    dir
}

#[test]
fn once_reports_states_and_exits_with_the_key_code() {
    let dir = setup();
    let home = dir.path().join("home");
    let out = ok(&home, &["monitor", "--once"]);
    assert!(out.contains("key  local:local:root-1: enabled"), "{out}");
    assert!(
        out.contains("zone orders (local:local:root-1): available"),
        "{out}"
    );

    ok(&home, &["key", "disable", "local:root-1"]);
    let out = cmek(&home).args(["monitor", "--once"]).output().unwrap();
    assert_eq!(out.status.code(), Some(KEY_UNAVAILABLE));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unavailable (key disabled)"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 of 1 keys unusable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // JSON: one object per event, then the summary.
    let out = cmek(&home)
        .args(["monitor", "--once", "--json"])
        .output()
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "key-status-changed");
    assert_eq!(lines[0]["new"], "disabled");
    let summary = lines.last().unwrap();
    assert_eq!(summary["zones"][0]["availability"], "unavailable:disabled");

    ok(&home, &["key", "enable", "local:root-1"]);
    ok(&home, &["monitor", "--once"]);
}

/// Kills the child at the end of the test, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_monitor_follows_the_key() {
    let dir = setup();
    let home = dir.path().join("home");
    let mut child = cmek(&home)
        .args(["monitor", "--interval", "1", "--checks", "60", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _running = Running(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    // Waits for the next zone event and returns its new availability.
    let next_zone_event = || loop {
        let event = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the monitor reports within a few 1-second intervals");
        if event["event"] == "zone-availability-changed" {
            return event["new"].as_str().unwrap().to_owned();
        }
    };
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert_eq!(first["event"], "key-status-changed");
    assert_eq!(first["new"], "enabled");

    ok(&home, &["key", "disable", "local:root-1"]);
    assert_eq!(next_zone_event(), "unavailable:disabled");
    ok(&home, &["key", "enable", "local:root-1"]);
    assert_eq!(next_zone_event(), "available");
}

/// A rewrap interrupted after tearing a header: `cmek rewrap` repairs it
/// from the journal beside it, and does not take the journal for a segment.
#[test]
fn rewrap_repairs_a_header_torn_by_an_interrupted_rewrap() {
    let dir = setup();
    let home = dir.path().join("home");
    let segments = dir.path().join("segments");
    std::fs::create_dir(&segments).unwrap();
    let plain = dir.path().join("rows.csv");
    std::fs::write(&plain, b"id,total\n1,9.99\n".repeat(500)).unwrap();
    let seg = segments.join("000001.seg");
    ok(
        &home,
        &[
            "encrypt",
            "--zone",
            "orders",
            plain.to_str().unwrap(),
            "-o",
            seg.to_str().unwrap(),
        ],
    );
    ok(&home, &["zone", "rotate", "orders"]);

    // What an interrupted rewrap leaves: the old header journaled, the
    // header in the file half overwritten. A rewrap rewrites only the EZK
    // version and the wrapped DEK (bytes 24..93); a tear there is repaired,
    // while damage to the bytes it keeps is not taken for a tear.
    let original = std::fs::read(&seg).unwrap();
    let header = &original[..128];
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, header);
    let journal = segments.join(".000001.seg.cmek-rewrap");
    std::fs::write(&journal, [header, digest.as_ref()].concat()).unwrap();
    let mut torn = original.clone();
    torn[40..93].fill(0xEE);
    std::fs::write(&seg, &torn).unwrap();
    let out = cmek(&home)
        .args(["decrypt", "--zone", "orders", seg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a torn header must not decrypt");

    let summary = ok(
        &home,
        &["rewrap", "--zone", "orders", segments.to_str().unwrap()],
    );
    assert!(summary.contains("1 rewrapped"), "{summary}");
    assert!(summary.contains("0 failed"), "{summary}");
    assert!(!journal.exists());
    let back = ok(
        &home,
        &["decrypt", "--zone", "orders", seg.to_str().unwrap()],
    );
    assert_eq!(back.as_bytes(), std::fs::read(&plain).unwrap());
}
