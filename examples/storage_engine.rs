//! A tiny collection store on top of a zone: how a storage engine embeds cmek.
//!
//! The store keeps one encrypted file per segment in a directory. It writes
//! segments through the streaming writer, serves random range reads through
//! the seekable reader (decrypting only the chunks a read touches),
//! rotates the zone key and rewraps every file's header, and reports how long
//! each phase took.
//!
//! `cargo run --release --example storage_engine [SEGMENTS] [MIB_PER_SEGMENT]`
//! (defaults: 16 segments of 4 MiB).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, Zone, ZoneSpec};

/// A collection: segments named `NAME/segment-N`, one file each.
struct Collection {
    name: String,
    dir: PathBuf,
    zone: Zone,
    segments: Vec<String>,
}

impl Collection {
    fn path_of(&self, segment: &str) -> PathBuf {
        self.dir.join(format!("{}.cmek", segment.replace('/', "_")))
    }

    /// Streams `len` bytes of rows (a generated block, repeated) into a new
    /// segment file, fsynced.
    fn append_segment(&mut self, rows: &[u8], len: usize) -> cmek::Result<()> {
        let id = format!("{}/segment-{:05}", self.name, self.segments.len());
        let file = BufWriter::new(File::create(self.path_of(&id))?);
        let mut writer = self.zone.segment_writer(&id, file)?;
        let mut written = 0;
        while written < len {
            let take = rows.len().min(len - written);
            writer.write_all(&rows[..take])?;
            written += take;
        }
        writer
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        self.segments.push(id);
        Ok(())
    }

    /// Reads `len` bytes at `offset` of a segment: only the chunks
    /// holding them are read from disk and decrypted.
    fn read_range(&self, segment: &str, offset: u64, buf: &mut [u8]) -> cmek::Result<usize> {
        let file = File::open(self.path_of(segment))?;
        let mut reader = self.zone.segment_seekable(segment, file)?;
        reader.read_at(offset, buf)
    }
}

fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.0} MiB/s", bytes as f64 / (1 << 20) as f64 / secs)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let chunk_count = args.next().transpose()?.unwrap_or(16);
    let segment_len = args.next().transpose()?.unwrap_or(4) << 20;
    let dir = tempfile::tempdir()?;

    let provider = LocalKeyProvider::create(dir.path().join("root.keys"), "local")?;
    let root = provider.add_key("engine-root")?;
    let keyring = Keyring::new(Arc::new(provider));
    let store = Arc::new(FileManifestStore::new(dir.path().join("vectors.manifest")));
    let zone = keyring
        .create_zone(store, ZoneSpec::new("vectors", "local", root))
        .await?;
    let mut collection = Collection {
        name: "vectors".into(),
        dir: dir.path().to_path_buf(),
        zone,
        segments: Vec::new(),
    };

    let rows: Vec<u8> = (0..16_384u32)
        .flat_map(|row| format!("row {row:>10}: payload payload payload\n").into_bytes())
        .collect();
    let start = Instant::now();
    for _ in 0..chunk_count {
        collection.append_segment(&rows, segment_len)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = (chunk_count * segment_len) as u64;
    println!(
        "write   {chunk_count} segments x {} MiB in {secs:.3} s ({}, fsync included)",
        segment_len >> 20,
        rate(total, secs)
    );

    // Random 4 KiB reads across the collection (a simple LCG picks them).
    let reads = 2000;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut buf = vec![0u8; 4096];
    let start = Instant::now();
    for _ in 0..reads {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let segment = &collection.segments[(state >> 33) as usize % chunk_count];
        let offset = (state >> 13) % (segment_len - buf.len()) as u64;
        let n = collection.read_range(segment, offset, &mut buf)?;
        assert_eq!(n, buf.len());
        assert!(buf.iter().all(|b| b.is_ascii()), "rows are ASCII");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read    {reads} random 4 KiB ranges in {secs:.3} s ({:.1} us each, open + seek + decrypt)",
        secs * 1e6 / reads as f64
    );

    let start = Instant::now();
    let version = collection.zone.rotate_ezk().await?;
    println!(
        "rotate  EZK v{version} in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let files: Vec<(String, PathBuf)> = collection
        .segments
        .iter()
        .map(|s| (s.clone(), collection.path_of(s)))
        .collect();
    let start = Instant::now();
    let summary = collection.zone.rewrap_files(files, |_| {});
    let secs = start.elapsed().as_secs_f64();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    println!(
        "rewrap  {} files in {secs:.3} s ({:.0} us each, header rewrite + fsync; bodies untouched)",
        summary.rewrapped,
        secs * 1e6 / summary.rewrapped.max(1) as f64
    );

    let n = collection.read_range(&collection.segments[0], 0, &mut buf)?;
    println!(
        "check   first row after rewrap: {:?}",
        first_line(&buf[..n])
    );
    println!("data in {}", Path::new(dir.path()).display());
    Ok(())
}

fn first_line(bytes: &[u8]) -> &str {
    let s = std::str::from_utf8(bytes).unwrap_or("");
    s.lines().next().unwrap_or("")
}
