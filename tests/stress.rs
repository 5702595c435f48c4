//! Concurrency stress: threads write and read segments of one zone while
//! other tasks rotate its EZK, rewrap segments to the active version, and
//! flip its root key's state under the availability monitor.
//!
//! Every operation must either succeed with the right bytes or fail with the
//! documented error for the moment (`ZoneUnavailable` while the key is
//! revoked, also from inside a `Read` or `Write` through `?`); nothing may deadlock (the whole run is bounded by a timeout)
//! and every segment written must decrypt at the end.
#![cfg(feature = "testing")]

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cmek::monitor::{KeyMonitor, MonitorConfig};
use cmek::stream::Params;
use cmek::testing::MockProvider;
use cmek::zone::{Keyring, MemoryManifestStore, Zone, ZoneSpec};
use cmek::{Error, KeyState};

const WRITERS: usize = 4;
const OPS_PER_WRITER: usize = 400;
const MAX_ROTATIONS: u64 = 60;
/// The whole run must finish well within this; past it, something hangs.
const DEADLINE: Duration = Duration::from_secs(240);

/// Segments written so far: id → (plaintext, current ciphertext).
type Written = Mutex<HashMap<String, (Vec<u8>, Bytes)>>;

#[derive(Default)]
struct Tally {
    writes: AtomicU64,
    reads: AtomicU64,
    refused: AtomicU64,
    rotations: AtomicU64,
    rewraps: AtomicU64,
    flips: AtomicU64,
}

/// Small deterministic data: a segment's bytes follow from its id.
fn plaintext(writer: usize, op: usize) -> Vec<u8> {
    let len = (writer * 7919 + op * 104_729) % 20_000;
    (0..len)
        .map(|i| (i as u64 * 31 + (writer * 1000 + op) as u64) as u8)
        .collect()
}

/// True for the one error a data call may return during the run. A
/// refusal inside a stream's `Read` or `Write` comes out of `?` as itself,
/// not as an I/O error.
fn is_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::ZoneUnavailable {
            state: KeyState::Disabled,
            ..
        }
    )
}

fn writer_thread(zone: Zone, me: usize, written: Arc<Written>, tally: Arc<Tally>) {
    for op in 0..OPS_PER_WRITER {
        let id = format!("w{me}/{op}");
        let data = plaintext(me, op);
        // Alternate one-shot and streaming writes.
        let result = if op % 2 == 0 {
            zone.encrypt_segment(&id, &data)
        } else {
            zone.segment_writer(&id, Vec::new()).and_then(|mut w| {
                w.write_all(&data)?;
                Ok(Bytes::from(w.finish()?))
            })
        };
        match result {
            Ok(ct) => {
                tally.writes.fetch_add(1, Ordering::Relaxed);
                written.lock().unwrap().insert(id, (data, ct));
            }
            Err(e) if is_refusal(&e) => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("write {id}: unexpected {e}"),
        }

        // Read back some segment written so far, by one of three paths.
        let pick = {
            let map = written.lock().unwrap();
            let n = map.len();
            (n > 0).then(|| {
                let (k, v) = map.iter().nth((op * 7 + me) % n).unwrap();
                (k.clone(), v.clone())
            })
        };
        let Some((id, (expected, ct))) = pick else {
            continue;
        };
        let got: Result<Vec<u8>, Error> = match op % 3 {
            0 => zone.decrypt_segment(&id, &ct).map(|b| b.to_vec()),
            1 => zone.segment_reader(&id, &ct[..]).and_then(|mut r| {
                let mut out = Vec::new();
                r.read_to_end(&mut out)?;
                Ok(out)
            }),
            _ => zone
                .segment_seekable(&id, Cursor::new(&ct[..]))
                .and_then(|mut r| {
                    let mut out = vec![0u8; expected.len()];
                    let n = r.read_at(0, &mut out)?;
                    out.truncate(n);
                    Ok(out)
                }),
        };
        match got {
            Ok(bytes) => {
                assert_eq!(bytes, expected, "segment {id} read back other bytes");
                tally.reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if is_refusal(&e) => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("read {id}: unexpected {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_readers_rotation_rewrap_and_revocation_together() {
    let kms = Arc::new(MockProvider::new());
    let root = kms.add_key("root");
    let keyring = Keyring::new(kms.clone());
    let mut spec = ZoneSpec::new("stress", "mock-region-1", root);
    spec.stream = Params::new(4096).unwrap();
    let zone = keyring
        .create_zone(Arc::new(MemoryManifestStore::new()), spec)
        .await
        .unwrap();
    let monitor = KeyMonitor::new(MonitorConfig {
        retries: 0,
        ..MonitorConfig::default()
    });
    monitor.watch_zone(&zone);

    let written: Arc<Written> = Arc::default();
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));

    let run = async {
        let writers: Vec<_> = (0..WRITERS)
            .map(|me| {
                let (zone, written, tally) = (zone.clone(), written.clone(), tally.clone());
                std::thread::spawn(move || writer_thread(zone, me, written, tally))
            })
            .collect();

        // Rotation and rewrap of what is written so far.
        let admin = tokio::spawn({
            let (zone, written, tally, done) =
                (zone.clone(), written.clone(), tally.clone(), done.clone());
            async move {
                while !done.load(Ordering::Relaxed) {
                    // Bounded: recovery unwraps every version, and the
                    // number of versions is capped.
                    let rotate = tally.rotations.load(Ordering::Relaxed) < MAX_ROTATIONS;
                    match if rotate {
                        zone.rotate_ezk().await.map(drop)
                    } else {
                        Ok(())
                    } {
                        Ok(()) if rotate => {
                            tally.rotations.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        // Gated already, or the provider refuses first.
                        Err(e) if is_refusal(&e) => {}
                        Err(Error::KeyUnavailable {
                            state: KeyState::Disabled,
                            ..
                        }) => {}
                        Err(e) => panic!("rotate: unexpected {e}"),
                    }
                    let batch: Vec<_> = written
                        .lock()
                        .unwrap()
                        .iter()
                        .take(20)
                        .map(|(k, v)| (k.clone(), v.1.clone()))
                        .collect();
                    for (id, ct) in batch {
                        let mut copy = ct.to_vec();
                        match zone.rewrap_segment(&id, &mut copy) {
                            Ok(_) => {
                                tally.rewraps.fetch_add(1, Ordering::Relaxed);
                                if let Some(entry) = written.lock().unwrap().get_mut(&id) {
                                    entry.1 = Bytes::from(copy);
                                }
                            }
                            Err(e) if is_refusal(&e) => {}
                            Err(e) => panic!("rewrap {id}: unexpected {e}"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });

        // The key flips between disabled and enabled; the monitor follows.
        let flipper = tokio::spawn({
            let (kms, monitor, tally, done) =
                (kms.clone(), monitor.clone(), tally.clone(), done.clone());
            async move {
                let mut disabled = false;
                while !done.load(Ordering::Relaxed) {
                    disabled = !disabled;
                    if disabled {
                        kms.disable_key("root");
                    } else {
                        kms.enable_key("root");
                    }
                    monitor.check_now().await;
                    tally.flips.fetch_add(1, Ordering::Relaxed);
                    // Mostly serving, with short revocations.
                    let pause = if disabled { 3 } else { 15 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            }
        });

        for w in writers {
            tokio::task::spawn_blocking(move || w.join())
                .await
                .unwrap()
                .expect("a writer thread failed");
        }
        done.store(true, Ordering::Relaxed);
        admin.await.expect("the admin task failed");
        flipper.await.expect("the flipper task failed");
    };
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the stress run did not finish in time: a deadlock or a hang");

    // Settle: key enabled, zone recovered; everything written reads back.
    kms.enable_key("root");
    monitor.check_now().await;
    assert!(zone.is_available());
    let written = written.lock().unwrap();
    for (id, (expected, ct)) in written.iter() {
        assert_eq!(
            &zone.decrypt_segment(id, ct).unwrap()[..],
            &expected[..],
            "{id}"
        );
    }
    let t = &*tally;
    let counts = [
        ("writes", t.writes.load(Ordering::Relaxed)),
        ("reads", t.reads.load(Ordering::Relaxed)),
        ("refused", t.refused.load(Ordering::Relaxed)),
        ("rotations", t.rotations.load(Ordering::Relaxed)),
        ("rewraps", t.rewraps.load(Ordering::Relaxed)),
        ("flips", t.flips.load(Ordering::Relaxed)),
    ];
    eprintln!("stress: {counts:?}, {} segments kept", written.len());
    // Each kind of operation happened, so the run exercised the overlap it
    // is about.
    for (what, n) in counts {
        assert!(n > 0, "no {what} happened during the run");
    }
}
