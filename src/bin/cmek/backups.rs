//! `cmek backup` and `cmek restore`: a zone's segment files into a backup
//! bundle, and a bundle into a new zone or plaintext files, through the
//! library's `backup` module.
//!
//! A restore trusts the caller, never the bundle: the backed-up zone's root
//! key must be one the caller allows — by default every key in the key
//! registry, or the keys given with `--allow-root` — and, with
//! `--source-zone`, the backed-up zone must be that one.

use std::fs::{self, File};
use std::io::Read;
use std::path::PathBuf;

use cmek::backup::{create_backup, Bundle, Phase, Restore, RestoreMode, SourceTrust};
use cmek::zone::{Keyring, SegmentHeader, ZoneId, ZoneSpec, SEGMENT_HEADER_LEN};
use cmek::KeyRef;

use crate::args::{BackupArgs, RestoreArgs, RestoreModeArg};
use crate::exit::{io_at, CliResult, Code, Context, Failure};
use crate::home::{Home, KeyArg};
use crate::progress;

/// `cmek backup`: every segment of the zone in a directory (file name =
/// segment id; other files are counted and left out), no key needed.
pub fn backup(home: &Home, args: BackupArgs, quiet: bool) -> CliResult {
    let (manifest, _) = home.zone_manifest(&args.zone)?;
    let mut entries: Vec<PathBuf> = fs::read_dir(&args.dir)
        .map_err(|e| io_at(&args.dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| io_at(&args.dir, e))?;
    entries.sort();
    let mut segments = Vec::new();
    let mut skipped = 0usize;
    for path in entries {
        let Some(id) = path.file_name().and_then(|n| n.to_str()) else {
            skipped += 1;
            continue;
        };
        if id.starts_with('.') || !path.is_file() {
            skipped += 1;
            continue;
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN];
        let read = File::open(&path).and_then(|mut f| f.read_exact(&mut header));
        match read.map(|()| SegmentHeader::parse(&header)) {
            Ok(Ok(h)) if h.zone_id() == manifest.zone_id() => {
                segments.push((id.to_owned(), path.clone()))
            }
            Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => return Err(io_at(&path, e)),
            _ => skipped += 1,
        }
    }
    let bar = progress::files(quiet, segments.len() as u64, "backup");
    let count = segments.len();
    let bundle = create_backup(&manifest, segments, &args.output, |p| {
        bar.set_position(p.done as u64)
    })
    .context(args.output.display())?;
    bar.finish_and_clear();
    println!(
        "backup {} of zone {} ({}) in {}: {count} segments, {} bytes; {skipped} skipped (not segments of this zone)",
        bundle.manifest().backup_id(),
        args.zone,
        manifest.zone_id(),
        args.output.display(),
        bundle.manifest().total_bytes(),
    );
    Ok(())
}

/// `cmek restore`: a bundle into a new zone (rewrap, re-encrypt) or
/// plaintext files, resumable.
pub async fn restore(home: &Home, args: RestoreArgs, quiet: bool) -> CliResult {
    let bundle = Bundle::open(&args.bundle).context(args.bundle.display())?;
    let backed_up = bundle.manifest().zone().clone();
    let trust = trust(home, &args).await?;

    // The new zone, for the encrypted modes: a registered key, in its
    // region (or `--region`).
    let mode = match args.mode {
        RestoreModeArg::Rewrap => RestoreMode::Rewrap,
        RestoreModeArg::Reencrypt => RestoreMode::Reencrypt,
        RestoreModeArg::Plaintext => RestoreMode::Plaintext,
    };
    let target = match mode {
        RestoreMode::Plaintext => None,
        _ => {
            let (Some(name), Some(key)) = (&args.zone, &args.key) else {
                return Err(Failure::usage(
                    "an encrypted restore needs --zone NAME and --key KEY for the new zone",
                ));
            };
            let (provider, root) = home.provider_for(&KeyArg::parse(key)?).await?;
            if !home.registry()?.keys().iter().any(|k| k.key == root) {
                return Err(Failure::usage(format!(
                    "key {root} is not registered; add it first with `cmek key add`"
                )));
            }
            let region = home.region().unwrap_or(root.region()).to_owned();
            Some((Keyring::new(provider), ZoneSpec::new(name, region, root)))
        }
    };
    let region = match &target {
        Some((_, spec)) => spec.region.clone(),
        None => home
            .region()
            .unwrap_or(backed_up.root().region())
            .to_owned(),
    };
    // Only a key the caller trusts gets a provider for the backup.
    let source = Keyring::new(home.provider_for_root(backed_up.root(), &region).await?);
    let restore = match target {
        Some((keyring, spec)) if mode == RestoreMode::Rewrap => {
            Restore::rewrap(&args.bundle, &args.dest, source, trust, keyring, spec)
        }
        Some((keyring, spec)) => {
            Restore::reencrypt(&args.bundle, &args.dest, source, trust, keyring, spec)
        }
        None => Restore::plaintext(&args.bundle, &args.dest, source, trust, region),
    };
    let total = bundle.manifest().segments().len() as u64;
    let bar = progress::files(quiet, total, "restore");
    let report = restore
        .run(|p| {
            if p.phase == Phase::Verify {
                bar.set_message("verify");
            }
            bar.set_position(p.done as u64)
        })
        .await
        .context(args.dest.display())?;
    bar.finish_and_clear();
    let zone = match (&report.zone, &report.zone_manifest) {
        (Some(z), Some(m)) => format!(
            ", zone {} under {} (manifest {})",
            z.id(),
            z.root(),
            m.display()
        ),
        _ => String::new(),
    };
    println!(
        "restored backup {} of zone {} into {} ({:?}): {} restored, {} already done, {} replaced{zone}",
        bundle.manifest().backup_id(),
        backed_up.zone_id(),
        args.dest.display(),
        report.mode,
        report.restored,
        report.already_done,
        report.replaced,
    );
    Ok(())
}

/// What the restore trusts: `--source-zone` and `--allow-root` as given;
/// with neither, every key in the key registry.
async fn trust(home: &Home, args: &RestoreArgs) -> CliResult<SourceTrust> {
    let mut roots: Vec<KeyRef> = Vec::new();
    for key in &args.allow_roots {
        roots.push(home.provider_for(&KeyArg::parse(key)?).await?.1);
    }
    let zone = match &args.source_zone {
        Some(id) => Some(
            ZoneId::parse(id).map_err(|e| Failure::usage(format!("--source-zone {id:?}: {e}")))?,
        ),
        None => None,
    };
    if zone.is_none() && roots.is_empty() {
        roots = home.registry()?.keys().into_iter().map(|k| k.key).collect();
        if roots.is_empty() {
            return Err(Failure::new(
                Code::Usage,
                "no registered keys to trust a backup's root key: register it with \
                 `cmek key add`, or name it with --allow-root or the backed-up zone with \
                 --source-zone",
            ));
        }
    }
    let trust = match zone {
        Some(id) if roots.is_empty() => SourceTrust::zone(id),
        Some(id) => SourceTrust::roots(roots).and_zone(id),
        None => SourceTrust::roots(roots),
    };
    Ok(trust)
}
