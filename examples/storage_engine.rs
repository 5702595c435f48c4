//! A tiny collection store on top of a zone: how a storage engine embeds cmek.
//!
//! The store keeps one encrypted file per segment in a directory. It writes
//! segments through the streaming writer (finished durably), opens each
//! segment once into a table cache and serves random range reads from it
//! (positional reads through `&self`, decrypting only the chunks a read
//! touches), rotates the zone key and rewraps every file's header (the
//! open tables keep serving), and reports how long each phase took.
//!
//! `cargo run --release --example storage_engine [SEGMENTS] [MIB_PER_SEGMENT]`
//! (defaults: 16 segments of 4 MiB).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cmek::provider::LocalKeyProvider;
use cmek::zone::{FileManifestStore, Keyring, OpenedSegment, Zone, ZoneSpec};

/// An open segment file: shared by every lookup, from any thread.
struct Table {
    file: File,
    segment: OpenedSegment,
}

/// A collection: segments named `NAME/segment-N`, one file each.
struct Collection {
    name: String,
    dir: PathBuf,
    zone: Zone,
    segments: Vec<String>,
    /// Segments opened so far (header parsed, DEK unwrapped, stream key
    /// derived once).
    tables: Mutex<HashMap<String, Arc<Table>>>,
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
        // Flushed and fsynced; a real engine also syncs the directory.
        writer.finish_durable()?;
        self.segments.push(id);
        Ok(())
    }

    /// The open table of `segment`, opened on first use.
    fn table(&self, segment: &str) -> cmek::Result<Arc<Table>> {
        if let Some(table) = self.tables.lock().unwrap().get(segment) {
            return Ok(Arc::clone(table));
        }
        let file = File::open(self.path_of(segment))?;
        // Reads the segment's header and length from the file.
        let opened = self.zone.open_segment_from(segment, &file)?;
        let table = Arc::new(Table {
            file,
            segment: opened,
        });
        let mut tables = self.tables.lock().unwrap();
        Ok(Arc::clone(
            tables.entry(segment.to_owned()).or_insert(table),
        ))
    }

    /// Reads `len` bytes at `offset` of a segment: only the chunks
    /// holding them are read from disk and decrypted.
    fn read_range(&self, segment: &str, offset: u64, buf: &mut [u8]) -> cmek::Result<usize> {
        let table = self.table(segment)?;
        table.segment.read_at(&table.file, offset, buf)
    }
}

fn rate(bytes: u64, secs: f64) -> String {
    format!("{:.0} MiB/s", bytes as f64 / (1 << 20) as f64 / secs)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let segment_count = args.next().transpose()?.unwrap_or(16);
    let segment_len = args.next().transpose()?.unwrap_or(4) << 20;
    let dir = tempfile::tempdir()?;

    let provider = LocalKeyProvider::open_or_create(dir.path().join("root.keys"), "local")?;
    let root = provider.get_or_add_key("engine-root")?;
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
        tables: Mutex::new(HashMap::new()),
    };

    let rows: Vec<u8> = (0..16_384u32)
        .flat_map(|row| format!("row {row:>10}: payload payload payload\n").into_bytes())
        .collect();
    let start = Instant::now();
    for _ in 0..segment_count {
        collection.append_segment(&rows, segment_len)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = (segment_count * segment_len) as u64;
    println!(
        "write   {segment_count} segments x {} MiB in {secs:.3} s ({}, fsync included)",
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
        let segment = &collection.segments[(state >> 33) as usize % segment_count];
        let offset = (state >> 13) % (segment_len - buf.len()) as u64;
        let n = collection.read_range(segment, offset, &mut buf)?;
        assert_eq!(n, buf.len());
        assert!(buf.iter().all(|b| b.is_ascii()), "rows are ASCII");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read    {reads} random 4 KiB ranges in {secs:.3} s ({:.1} us each, each segment opened once, then pread + decrypt)",
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
    // On threads of the batch's own: the async runtime stays free.
    let summary = collection.zone.async_rewrap_files(files, |_| {}).await?;
    let secs = start.elapsed().as_secs_f64();
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    println!(
        "rewrap  {} files in {secs:.3} s ({:.0} us each, header rewrite + fsync; bodies untouched)",
        summary.rewrapped,
        secs * 1e6 / summary.rewrapped.max(1) as f64
    );

    let n = collection.read_range(&collection.segments[0], 0, &mut buf)?;
    // The table opened before the rewrap still reads (the body did not
    // change); a new open reads the rewrapped header.
    let mut fresh = [0u8; 4096];
    let table = collection.table(&collection.segments[0])?;
    collection.tables.lock().unwrap().clear();
    let m = collection.read_range(&collection.segments[0], 0, &mut fresh)?;
    assert_eq!(table.segment.read_at(&table.file, 0, &mut buf)?, n);
    assert_eq!(&fresh[..m], &buf[..n]);
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
