//! `cmek encrypt`, `decrypt`, `inspect` and `rewrap`: segment files through
//! `Zone::chunk_sealer`, `chunk_opener` (see [`crate::chunkwise`]),
//! `segment_seekable` and `rewrap_files`.
//!
//! A segment's id is bound into its header and body, so decrypting needs the
//! id it was encrypted with. By default it is the name of the encrypted file
//! (encrypt's output, decrypt's input, each file rewrap visits), so a file
//! keeps decrypting under its name wherever it is moved.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use cmek::zone::{SegmentHeader, SEGMENT_HEADER_LEN, SEGMENT_PREFIX_LEN};
use serde_json::json;

use crate::args::{DecryptArgs, EncryptArgs, InspectArgs, RewrapArgs};
use crate::chunkwise::{self, batch_lengths, Names};
use crate::exit::{code_of, io_at, CliResult, Code, Context, Failure};
use crate::home::Home;
use crate::pipe::{Batches, Sink, BUF_LEN};
use crate::progress;

fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The segment id: `--segment-id`, else the name of `file` (the encrypted
/// one).
fn segment_id(given: Option<String>, file: &Path, role: &str) -> CliResult<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    if is_stdio(file) {
        return Err(Failure::usage(format!(
            "--segment-id is needed when the segment is on standard {role}"
        )));
    }
    file.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            Failure::usage(format!(
                "{}: no UTF-8 file name to use as segment id; pass --segment-id",
                file.display()
            ))
        })
}

/// Where output goes: written as it is (standard output, or a device named
/// with `--force`), or a temporary file renamed into place by
/// [`Output::commit`] (and removed if the command fails first).
///
/// Output reaches only a regular file this command created or standard
/// output. An existing entry at the path is never written through: a
/// regular file, a symbolic link, a FIFO or a socket is replaced by the new
/// file's rename, and only with `--force`; a directory is refused. A
/// device cannot be replaced by a rename (and cannot be planted without
/// privilege, except through a link, which is never followed): with
/// `--force` it is opened without following a link and without blocking,
/// and written only if the opened file is the device that was checked.
enum Output {
    Direct,
    File { path: PathBuf, tmp: PathBuf },
}

/// The writable end of an [`Output`].
enum OutFile {
    Stdout(io::Stdout),
    File(File),
    /// A device opened non-blocking: a write that would block is retried.
    Device(File),
}

impl Write for OutFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            OutFile::Stdout(s) => s.write(data),
            OutFile::File(f) => f.write(data),
            OutFile::Device(f) => loop {
                match f.write(data) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    other => break other,
                }
            },
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            OutFile::Stdout(s) => s.flush(),
            OutFile::File(f) | OutFile::Device(f) => f.flush(),
        }
    }
}

/// Who may read an output file [`Output::open`] creates.
#[derive(Clone, Copy)]
enum Access {
    /// The process's default (umask): ciphertext, safe to share.
    Default,
    /// The owner only (`0600`), from the file's creation on: plaintext.
    OwnerOnly,
}

/// What an existing directory entry is, for the rules and messages of
/// [`Output::open`]; read with `symlink_metadata`, so a link is a link.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Entry {
    Regular,
    Dir,
    Symlink,
    Fifo,
    Socket,
    Device,
}

impl Entry {
    fn of(kind: fs::FileType) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_fifo() {
                return Entry::Fifo;
            }
            if kind.is_socket() {
                return Entry::Socket;
            }
            if kind.is_char_device() || kind.is_block_device() {
                return Entry::Device;
            }
        }
        if kind.is_symlink() {
            Entry::Symlink
        } else if kind.is_dir() {
            Entry::Dir
        } else if kind.is_file() {
            Entry::Regular
        } else {
            // Anything else the platform has: never written through.
            Entry::Device
        }
    }

    /// Why `--force` is needed, for the message.
    fn refusal(self, path: &Path) -> Failure {
        let path = path.display();
        Failure::usage(match self {
            Entry::Regular => format!("{path}: exists; pass --force to replace it"),
            Entry::Symlink => format!(
                "{path}: is a symbolic link, which is never followed; pass --force to \
                 replace the link itself with the output (what it points to is left alone)"
            ),
            Entry::Fifo | Entry::Socket => format!(
                "{path}: is a {}, not a regular file, and is never written into; pass \
                 --force to replace it with a regular file, or write to standard output \
                 (-o -)",
                if self == Entry::Fifo {
                    "named pipe (FIFO)"
                } else {
                    "socket"
                }
            ),
            Entry::Device => {
                format!("{path}: is a device, not a regular file; pass --force to write into it")
            }
            Entry::Dir => format!("{path}: is a directory"),
        })
    }
}

/// Open flags for every file this tool opens to write: a symbolic link as
/// the last component is refused (`ELOOP`), and opening never waits (on a
/// FIFO that something swapped in, for one).
#[cfg(unix)]
fn no_follow_no_block(options: &mut OpenOptions) {
    std::os::unix::fs::OpenOptionsExt::custom_flags(options, libc::O_NOFOLLOW | libc::O_NONBLOCK);
}

/// The entry changed between its check and its open (something replaced
/// it): nothing was written.
fn changed_under_us(path: &Path, what: &str) -> Failure {
    Failure::new(
        Code::Conflict,
        format!(
            "{}: changed while it was being opened ({what}); nothing was written to it",
            path.display()
        ),
    )
}

impl Output {
    /// Opens `path` for writing. A file is created beside its final name,
    /// new (never an existing file or a planted link), with `access`
    /// permissions from its creation on, so its contents are never readable
    /// by more users than the final file is. See [`Output`] for what an
    /// existing entry at `path` gets.
    fn open(path: &Path, force: bool, access: Access) -> CliResult<(Self, OutFile)> {
        if is_stdio(path) {
            return Ok((Output::Direct, OutFile::Stdout(io::stdout())));
        }
        let existing = match fs::symlink_metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_at(path, e)),
        };
        if let Some(meta) = &existing {
            let entry = Entry::of(meta.file_type());
            if entry == Entry::Dir || !force {
                return Err(entry.refusal(path));
            }
            if entry == Entry::Device {
                return Self::open_device(path, meta);
            }
            // Anything else is replaced by the rename, never written.
        }
        let name = path
            .file_name()
            .ok_or_else(|| Failure::usage(format!("{}: not a file name", path.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".cmek-tmp-{}", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let mut options = OpenOptions::new();
        // create_new fails on any existing name, a symbolic link included,
        // so nothing planted at the temporary name receives the output.
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            no_follow_no_block(&mut options);
            if let Access::OwnerOnly = access {
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            }
        }
        #[cfg(not(unix))]
        let _ = access;
        let file = options.open(&tmp).map_err(|e| io_at(&tmp, e))?;
        // Removed on drop from here on, should the check below fail.
        let output = Output::File {
            path: path.to_owned(),
            tmp: tmp.clone(),
        };
        // What was opened is what was created: a regular file with no
        // other name, readable by no one else if it is plaintext.
        let meta = file.metadata().map_err(|e| io_at(&tmp, e))?;
        if !meta.is_file() {
            return Err(changed_under_us(&tmp, "not a regular file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if meta.nlink() != 1 {
                return Err(changed_under_us(&tmp, "it has another name"));
            }
            if matches!(access, Access::OwnerOnly) && meta.mode() & 0o077 != 0 {
                return Err(changed_under_us(&tmp, "readable by others"));
            }
        }
        Ok((output, OutFile::File(file)))
    }

    /// `--force` on a device (e.g. `/dev/null`): opened without following
    /// a link and without blocking, then checked to be the very device
    /// `checked` describes.
    #[cfg(unix)]
    fn open_device(path: &Path, checked: &fs::Metadata) -> CliResult<(Self, OutFile)> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let mut options = OpenOptions::new();
        options.write(true);
        no_follow_no_block(&mut options);
        let file = options.open(path).map_err(|e| io_at(path, e))?;
        let opened = file.metadata().map_err(|e| io_at(path, e))?;
        let kind = opened.file_type();
        let same = opened.dev() == checked.dev()
            && opened.ino() == checked.ino()
            && opened.rdev() == checked.rdev();
        if !same || !(kind.is_char_device() || kind.is_block_device()) {
            return Err(changed_under_us(path, "not the device checked"));
        }
        Ok((Output::Direct, OutFile::Device(file)))
    }

    #[cfg(not(unix))]
    fn open_device(path: &Path, _checked: &fs::Metadata) -> CliResult<(Self, OutFile)> {
        Err(Entry::Device.refusal(path))
    }

    /// Makes the output durable and visible under its name.
    fn commit(mut self, mut out: OutFile) -> CliResult {
        // From here on the temporary file is this function's to remove.
        let (path, tmp) = match &mut self {
            Output::File { path, tmp } => (std::mem::take(path), std::mem::take(tmp)),
            Output::Direct => return out.flush().map_err(Failure::from),
        };
        let OutFile::File(file) = out else {
            return Ok(());
        };
        // The rename replaces whatever entry is at `path` now (a link or
        // pipe planted since the check included) and never writes into it.
        let result = file
            .sync_all()
            .map_err(|e| io_at(&tmp, e))
            .and_then(|()| fs::rename(&tmp, &path).map_err(|e| io_at(&path, e)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename is durable once the directory is.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Output::File { tmp, .. } = self {
            if !tmp.as_os_str().is_empty() {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// The input and its length, if known.
fn open_input(path: &Path) -> CliResult<(Box<dyn Read + Send>, Option<u64>)> {
    if is_stdio(path) {
        return Ok((Box::new(io::stdin()), None));
    }
    let file = File::open(path).map_err(|e| io_at(path, e))?;
    let meta = file.metadata().map_err(|e| io_at(path, e))?;
    if meta.is_dir() {
        return Err(Failure::usage(format!(
            "{}: is a directory",
            path.display()
        )));
    }
    Ok((Box::new(file), Some(meta.len())))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// `cmek encrypt`.
pub async fn encrypt(home: &Home, args: EncryptArgs, quiet: bool) -> CliResult {
    let id = segment_id(args.segment_id, &args.output, "output")?;
    let zone = home.open_zone(&args.zone).await?;
    let (input, len) = open_input(&args.input)?;
    let (output, out) = Output::open(&args.output, args.force, Access::Default)?;
    let bar = progress::bytes(quiet, len, "encrypt");
    let what = format!("encrypt {}", args.input.display());

    let (header, mut sealer) = zone.chunk_sealer(&id).context(&what)?;
    let output_name = args.output.display().to_string();
    let names = Names {
        what: &what,
        input: &args.input.display().to_string(),
        output: &output_name,
    };
    let mut sink = Sink::spawn(out);
    sink.write_all(&header).context(&output_name)?;
    sink.write_all(sealer.stream_header())
        .context(&output_name)?;
    let params = sealer.params();
    let (first, then) = batch_lengths(
        params.first_chunk_plaintext_len(),
        params.plaintext_chunk_len(),
    );
    let mut batches = Batches::spawn_sized(input, first, then);
    chunkwise::run(&mut sealer, &mut batches, &mut sink, &names, |n| bar.inc(n))?;
    let out = sink.finish().context(&output_name)?;
    output.commit(out)?;
    bar.finish_and_clear();
    // The DEK's wrap may have reserved wraps in the manifest.
    home.record_zone(&zone)
}

/// `cmek decrypt`.
pub async fn decrypt(home: &Home, args: DecryptArgs, quiet: bool) -> CliResult {
    let id = segment_id(args.segment_id, &args.input, "input")?;
    let range = args.range.as_deref().map(parse_range).transpose()?;
    if range.is_some() && is_stdio(&args.input) {
        return Err(Failure::usage(
            "--range needs a file input, not standard input",
        ));
    }
    let zone = home.open_zone(&args.zone).await?;
    let what = format!("decrypt {}", args.input.display());
    let (input, len) = open_input(&args.input)?;
    // Plaintext: readable by its owner only.
    let (output, out) = Output::open(&args.output, args.force, Access::OwnerOnly)?;
    let mut sink = Sink::spawn(out);

    match range {
        Some(range) => {
            // Positioned reads on the file itself: only the chunks that hold
            // the range are read and authenticated.
            let file = File::open(&args.input).map_err(|e| io_at(&args.input, e))?;
            drop(input);
            let mut reader = zone.segment_seekable(&id, file).context(&what)?;
            let mut buf = vec![0u8; BUF_LEN];
            let mut offset = range.start;
            while offset < range.end {
                let want = usize::try_from(range.end - offset)
                    .unwrap_or(usize::MAX)
                    .min(BUF_LEN);
                let n = reader.read_at(offset, &mut buf[..want]).context(&what)?;
                if n == 0 {
                    break;
                }
                sink.write_all(&buf[..n]).context(args.output.display())?;
                offset += n as u64;
            }
        }
        None => {
            let bar = progress::bytes(quiet, len, "decrypt");
            let mut input = input;
            let mut prefix = [0u8; SEGMENT_PREFIX_LEN];
            let got = read_up_to(&mut input, &mut prefix).map_err(|e| io_at(&args.input, e))?;
            bar.inc(got as u64);
            let mut opener = zone.chunk_opener(&id, &prefix[..got]).context(&what)?;
            let params = opener.params();
            let (mut first, mut then) =
                batch_lengths(params.full_chunk_len(0), params.chunk_size());
            // A v1 header's chunk size is authenticated by nothing: a
            // file shorter than the batches it implies gets batches of its
            // own length, not of what the header claims.
            if let Some(len) = len {
                let body = usize::try_from(len.saturating_sub(got as u64))
                    .unwrap_or(usize::MAX)
                    .max(1);
                first = first.min(body);
                then = then.min(body);
            }
            let mut batches = Batches::spawn_sized(input, first, then);
            let names = Names {
                what: &what,
                input: &args.input.display().to_string(),
                output: &args.output.display().to_string(),
            };
            chunkwise::run(&mut opener, &mut batches, &mut sink, &names, |n| bar.inc(n))?;
            bar.finish_and_clear();
        }
    }
    let out = sink.finish().context(args.output.display())?;
    output.commit(out)
}

/// Parses `START..END`, `START..`, `..END` or `..`.
fn parse_range(s: &str) -> CliResult<Range<u64>> {
    let bad = || Failure::usage(format!("--range {s:?}: expected START..END in bytes"));
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let start = if a.is_empty() {
        0
    } else {
        a.parse().map_err(|_| bad())?
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse().map_err(|_| bad())?
    };
    if start > end {
        return Err(Failure::usage(format!("--range {s:?}: start is past end")));
    }
    Ok(start..end)
}

/// `cmek inspect`.
pub fn inspect(home: &Home, args: InspectArgs) -> CliResult {
    let path = &args.file;
    let mut file = File::open(path).map_err(|e| io_at(path, e))?;
    let size = file.metadata().map_err(|e| io_at(path, e))?.len();
    let mut bytes = [0u8; SEGMENT_HEADER_LEN];
    let got = read_up_to(&mut file, &mut bytes).map_err(|e| io_at(path, e))?;
    let header = SegmentHeader::parse(&bytes[..got]).context(path.display())?;
    let params = header.stream_params().context(path.display())?;
    let body = size - SEGMENT_HEADER_LEN as u64;
    // A body of impossible length is reported, not refused: inspecting a
    // damaged file is what this command is for.
    let plaintext = params.plaintext_len(body).map_err(|e| e.to_string());
    let chunks = params
        .chunk_count_for_ciphertext(body)
        .map_err(|e| e.to_string());
    let zone_name = home
        .zones()
        .into_iter()
        .find(|(_, m)| m.zone_id() == header.zone_id())
        .map(|(name, _)| name);
    if args.json {
        let doc = json!({
            "file": path,
            "format_version": header.format().as_byte(),
            "zone_id": header.zone_id().to_string(),
            "zone": zone_name,
            "ezk_version": header.ezk_version(),
            "chunk_size": header.chunk_size(),
            "file_size": size,
            "body_size": body,
            "chunks": chunks.as_ref().ok(),
            "plaintext_size": plaintext.as_ref().ok(),
            "body_error": plaintext.as_ref().err().or(chunks.as_ref().err()),
            "wrapped_dek": hex(header.wrapped_dek()),
            "key_commitment": hex(header.commitment()),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON value")
        );
        return Ok(());
    }
    println!("file            {}", path.display());
    println!(
        "format          cmek segment v{}",
        header.format().as_byte()
    );
    println!(
        "zone id         {}{}",
        header.zone_id(),
        zone_name
            .map(|n| format!(" (zone {n})"))
            .unwrap_or_default()
    );
    println!("EZK version     {}", header.ezk_version());
    println!("chunk size      {}", header.chunk_size());
    println!("file size       {size}");
    match (&plaintext, &chunks) {
        (Ok(p), Ok(c)) => {
            let plural = if *c == 1 { "" } else { "s" };
            println!("body            {body} bytes in {c} chunk{plural}");
            println!("plaintext       {p} bytes");
        }
        (Err(e), _) | (_, Err(e)) => println!("body            {body} bytes: invalid: {e}"),
    }
    println!("wrapped DEK     {}", hex(header.wrapped_dek()));
    println!("key commitment  {}", hex(header.commitment()));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first names of `names`, and how many more there are.
fn some_names(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut out = names[..names.len().min(SHOWN)].join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

/// Adds the segment file at `path` to a rewrap batch; its file name is its
/// segment id.
fn push_segment(
    path: &Path,
    batch: &mut Vec<(String, PathBuf)>,
    failed: &mut Vec<(PathBuf, Failure)>,
) {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(id) => batch.push((id.to_owned(), path.to_owned())),
        None => failed.push((
            path.to_owned(),
            Failure::usage("no UTF-8 file name to use as segment id"),
        )),
    }
}

/// `cmek rewrap`.
///
/// Only this zone's segments are handed to the library. Other files, and
/// rewrap journals that hold another zone's header, are left alone and
/// listed on standard error: a journal is never a reason to take a file
/// into the batch unless it is this zone's (the library checks it fully
/// before using it). The library locks each file while it rewraps it, so
/// two runs on one directory at once take turns per file, and the second
/// finds the first's files current.
pub async fn rewrap(home: &Home, args: RewrapArgs, quiet: bool) -> CliResult {
    let dir = &args.dir;
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_at(dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()
        .map_err(|e| io_at(dir, e))?;
    entries.sort();
    let zone = home.open_zone(&args.zone).await?;
    let ours = zone.id();
    // The zone of the header saved in `path`'s rewrap journal, if it has a
    // complete one. Read without the file's lock: a journal another run is
    // writing reads as incomplete, and the library decides under the lock.
    let journal_zone = |path: &Path| {
        cmek::zone::rewrap_journal_path(path)
            .and_then(|j| cmek::zone::rewrap_journal_header(&j).ok().flatten())
            .map(|h| h.zone_id())
    };

    let mut batch = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut foreign_journals: Vec<String> = Vec::new();
    let mut failed: Vec<(PathBuf, Failure)> = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Rewrap writes into the files it visits: only regular files of
        // the directory itself, never what a symbolic link points to.
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                skipped.push(name);
                continue;
            }
            _ => continue,
        }
        if cmek::zone::is_rewrap_journal(&path) {
            // A journal goes with its segment; one of another zone is
            // reported (it is not this run's to use or remove).
            if let Ok(Some(h)) = cmek::zone::rewrap_journal_header(&path) {
                if h.zone_id() != ours {
                    foreign_journals.push(name);
                }
            }
            continue;
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        let got = File::open(&path).and_then(|mut f| read_up_to(&mut f, &mut header));
        match got {
            Err(e) => failed.push((path.clone(), io_at(&path, e))),
            Ok(n) => match SegmentHeader::parse(&header[..n]) {
                Ok(h) if h.zone_id() == ours => push_segment(&path, &mut batch, &mut failed),
                // A header an interrupted rewrap may have torn: the library
                // repairs it, but only from a journal of this zone.
                _ if journal_zone(&path) == Some(ours) => {
                    push_segment(&path, &mut batch, &mut failed);
                }
                _ => skipped.push(name),
            },
        }
    }
    let bar = progress::files(quiet, batch.len() as u64, "rewrap");
    let summary = zone.rewrap_files(batch, |p| bar.set_position(p.done as u64));
    bar.finish_and_clear();
    home.record_zone(&zone)?;
    for (path, e) in summary.failed {
        let code = code_of(&e);
        failed.push((
            path.clone(),
            Failure::new(code, e.to_string()).context(path.display()),
        ));
    }
    println!(
        "zone {}: {} rewrapped to EZK version {}, {} already current, {} failed, {} skipped (not segments of this zone), {} rewrap journals of other zones left alone",
        args.zone,
        summary.rewrapped,
        zone.active_version(),
        summary.already_current,
        failed.len(),
        skipped.len(),
        foreign_journals.len()
    );
    if !skipped.is_empty() {
        eprintln!(
            "cmek: rewrap: left alone {} file(s) that are not segments of zone {}: {}",
            skipped.len(),
            args.zone,
            some_names(&skipped)
        );
    }
    if !foreign_journals.is_empty() {
        eprintln!(
            "cmek: rewrap: left alone {} rewrap journal(s) of other zones: {}",
            foreign_journals.len(),
            some_names(&foreign_journals)
        );
    }
    for (_, f) in &failed {
        eprintln!("cmek: error: rewrap {f}");
    }
    match failed.into_iter().next() {
        None => Ok(()),
        Some((_, first)) => Err(Failure::new(
            first.code,
            "some files were not rewrapped (listed above); run the same command again after fixing them",
        )),
    }
}
