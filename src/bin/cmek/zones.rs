//! `cmek zone ...`: create, show, rotate and retire through the library's
//! `Keyring` and `Zone`, with every zone recorded in the key registry (which
//! enforces the region rule).

use std::path::Path;

use cmek::stream::Params;
use cmek::zone::{Keyring, RetireConfirmation, SegmentHeader, ZoneManifest, ZoneSpec};
use serde_json::json;

use crate::args::ZoneCommand;
use crate::exit::{io_at, CliResult, Code, Context, Failure};
use crate::home::{Home, KeyArg};

/// Runs one `cmek zone` command.
pub async fn run(home: &Home, command: ZoneCommand) -> CliResult {
    match command {
        ZoneCommand::Create {
            name,
            key,
            chunk_size,
        } => create(home, &name, &KeyArg::parse(&key)?, chunk_size).await,
        ZoneCommand::Show { name, json } => show(home, &name, json),
        ZoneCommand::Rotate { name } => rotate(home, &name).await,
        ZoneCommand::RotateRoot { name, key } => {
            rotate_root(home, &name, &KeyArg::parse(&key)?).await
        }
        ZoneCommand::RetireVersion {
            name,
            version,
            check_dir,
            yes,
        } => retire(home, &name, version, check_dir.as_deref(), yes).await,
        ZoneCommand::AdoptLegacyWraps { name, yes } => adopt_legacy_wraps(home, &name, yes).await,
    }
}

async fn create(home: &Home, name: &str, key: &KeyArg, chunk_size: usize) -> CliResult {
    let params = Params::new(chunk_size).context("--chunk-size")?;
    let store = home.new_zone_store(name)?;
    let registry = home.registry()?;
    let (provider, named) = home.provider_for(key).await?;
    // An alias stands for the key it points to now: that key is what the
    // zone records and what must be registered.
    let root = provider
        .resolve_key(&named)
        .await
        .context(format!("key {named}"))?;
    let Some(registered) = registry.keys().into_iter().find(|k| k.key == root) else {
        return Err(Failure::usage(format!(
            "key {root}{} is not registered; add it first with `cmek key add`",
            alias_note(&named, &root)
        )));
    };
    let region = home.region().unwrap_or(root.region()).to_owned();
    // The registry enforces the region rule when the zone is registered,
    // but only a created zone has an id to register: checking here first
    // refuses before any provider call (which would fail less clearly, on
    // a replica that does not exist).
    if !registered.regions.contains(&region) {
        return Err(Failure::new(
            Code::Refused,
            format!(
                "zone {name}: key {root} serves {} and cannot be used from region {region}: \
                 a zone may only use a key of its own region (or a multi-region key replicated there)",
                registered.regions.join(",")
            ),
        ));
    }
    // The zone resolves the name again and records what it found; the
    // registry records that same key (an alias re-pointed in between makes
    // the registry refuse an unregistered key, and the zone goes).
    let mut spec = ZoneSpec::new(name, &region, named);
    spec.stream = params;
    let zone = Keyring::new(provider)
        .create_zone(store.clone(), spec)
        .await
        .context(format!("zone {name}"))?;
    let root = zone.root();
    // The zone id exists only now; if the registry refuses the zone (region
    // rule), the new manifest goes, so no unregistered zone is left behind.
    if let Err(e) = registry.register_zone(zone.id(), name, &region, &root) {
        let _ = std::fs::remove_file(store.path());
        return Err(Failure::from(e).context(format!("zone {name}")));
    }
    home.record_zone(&zone)?;
    let alias = zone
        .manifest()
        .root_alias()
        .map(|a| format!(" (alias {a})"))
        .unwrap_or_default();
    println!(
        "created zone {name} ({}) in {region} under {root}{alias}, EZK version {}",
        zone.id(),
        zone.active_version()
    );
    Ok(())
}

fn show(home: &Home, name: &str, as_json: bool) -> CliResult {
    let (m, store) = home.zone_manifest(name)?;
    if as_json {
        let versions: Vec<_> = m
            .ezk_versions()
            .map(|(v, r)| json!({ "version": v, "created_unix": r.created_unix, "active": v == m.active_version() }))
            .collect();
        let doc = json!({
            "name": m.name(),
            "zone_id": m.zone_id().to_string(),
            "region": m.region(),
            "root": m.root().to_string(),
            "root_alias": m.root_alias(),
            "chunk_size": m.stream_params().chunk_size(),
            "active_version": m.active_version(),
            "generation": m.generation(),
            "created_unix": m.created_unix(),
            "updated_unix": m.updated_unix(),
            "manifest": store.path(),
            "ezk_versions": versions,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON value")
        );
        return Ok(());
    }
    println!("zone           {}", m.name());
    println!("id             {}", m.zone_id());
    println!("region         {}", m.region());
    println!("root key       {}", m.root());
    if let Some(alias) = m.root_alias() {
        // For display: the zone uses the key above, whatever the alias
        // points to today.
        println!("root alias     {alias} (resolved when the root was set)");
    }
    println!("chunk size     {}", m.stream_params().chunk_size());
    println!("active version {}", m.active_version());
    println!("generation     {}", m.generation());
    println!("manifest       {}", store.path().display());
    for (v, r) in m.ezk_versions() {
        let mark = if v == m.active_version() {
            " (active)"
        } else {
            ""
        };
        println!("  EZK v{v}  created {}{mark}", r.created_unix);
    }
    Ok(())
}

async fn rotate(home: &Home, name: &str) -> CliResult {
    let zone = home.open_zone(name).await?;
    let version = zone.rotate_ezk().await.context(format!("zone {name}"))?;
    home.record_zone(&zone)?;
    println!("zone {name}: EZK version {version} is active; run `cmek rewrap --zone {name} DIR` to move existing files to it");
    Ok(())
}

async fn rotate_root(home: &Home, name: &str, key: &KeyArg) -> CliResult {
    let zone = home.open_zone(name).await?;
    let old = zone.root();
    let (provider, named) = home.provider_for(key).await?;
    if named.provider() != old.provider() {
        return Err(Failure::usage(format!(
            "zone {name}: the new root key must be of the zone's provider ({})",
            old.provider()
        )));
    }
    // An alias stands for the key it points to now, which the registry
    // must hold and the zone records.
    let new_root = provider
        .resolve_key(&named)
        .await
        .context(format!("key {named}"))?;
    // The registry checks the region rule and is updated first; it goes back
    // if the provider refuses, so it never names a key the zone does not use.
    let registry = home.registry()?;
    registry
        .set_zone_key(zone.id(), &new_root)
        .context(format!("zone {name}"))?;
    if let Err(e) = zone.rotate_root(named).await {
        let _ = registry.set_zone_key(zone.id(), &old);
        return Err(Failure::from(e).context(format!("zone {name}")));
    }
    // The zone resolved the alias again; if it moved in between, the
    // registry follows the key the zone actually recorded.
    let recorded = zone.root();
    let refused = if recorded != new_root {
        registry.set_zone_key(zone.id(), &recorded).err()
    } else {
        None
    };
    // The registry's record of the zone (root and generation) is what the
    // zone is now, whatever the registry thinks of the key.
    home.record_zone(&zone)?;
    if let Some(e) = refused {
        return Err(Failure::from(cmek::Error::Conflict {
            what: "zone root key",
            reason: format!(
                "the alias moved to {recorded} during the rotation, a key the registry \
                 refuses ({e}); rotate again to a registered key"
            ),
        })
        .context(format!("zone {name}")));
    }
    let alias = zone
        .manifest()
        .root_alias()
        .map(|a| format!(" (alias {a})"))
        .unwrap_or_default();
    println!("zone {name}: every EZK version is now wrapped by {recorded}{alias} (was {old})");
    Ok(())
}

async fn retire(
    home: &Home,
    name: &str,
    version: u32,
    check_dir: Option<&Path>,
    yes: bool,
) -> CliResult {
    if !yes {
        return Err(Failure::usage(format!(
            "retiring EZK version {version} makes every file still under it unreadable; \
             rewrap them, then confirm with --yes"
        )));
    }
    let (manifest, _) = home.zone_manifest(name)?;
    if let Some(dir) = check_dir {
        let users = segments_under(dir, &manifest, version)?;
        if !users.is_empty() {
            return Err(Failure::new(
                Code::Refused,
                format!(
                    "zone {name}: {} file(s) in {} still use EZK version {version}, e.g. {}; run `cmek rewrap` first",
                    users.len(),
                    dir.display(),
                    users[0]
                ),
            ));
        }
    }
    let zone = home.open_zone(name).await?;
    zone.retire_ezk(version, RetireConfirmation::NoSegmentUsesIt)
        .await
        .context(format!("zone {name}"))?;
    home.record_zone(&zone)?;
    println!("zone {name}: EZK version {version} retired");
    Ok(())
}

async fn adopt_legacy_wraps(home: &Home, name: &str, yes: bool) -> CliResult {
    if !yes {
        return Err(Failure::usage(format!(
            "zone {name}: adopting legacy wraps trusts the stored manifest as it is: an EZK \
             planted in it by whoever can write it would become the zone's; if nobody else \
             could have written it since the zone was last used, confirm with --yes"
        )));
    }
    let record = home.registered_zone(name)?;
    let (manifest, store) = home.zone_manifest(name)?;
    let provider = home.provider_for_root(&record.key, &record.region).await?;
    // Counted before, for the report: the library rewraps exactly these.
    let legacy: Vec<u32> = manifest
        .ezk_versions()
        .filter(|(_, r)| provider.is_legacy_wrap(&r.wrapped))
        .map(|(v, _)| v)
        .collect();
    // Checked against the registry's record, as every other zone command.
    let zone = Keyring::new(provider)
        .adopt_legacy_wraps(store, &record.anchor())
        .await
        .context(format!("zone {name}"))?;
    home.record_zone(&zone)?;
    if legacy.is_empty() {
        println!(
            "zone {name}: no legacy wraps to adopt (generation {})",
            zone.manifest().generation()
        );
    } else {
        let versions: Vec<String> = legacy.iter().map(u32::to_string).collect();
        println!(
            "zone {name}: EZK version(s) {} rewrapped in the current format; generation {}",
            versions.join(","),
            zone.manifest().generation()
        );
    }
    Ok(())
}

/// Files in `dir` whose header is the zone's and names EZK `version`.
fn segments_under(dir: &Path, manifest: &ZoneManifest, version: u32) -> CliResult<Vec<String>> {
    let mut users = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_at(dir, e))? {
        let path = entry.map_err(|e| io_at(dir, e))?.path();
        if !path.is_file() {
            continue;
        }
        let mut header = [0u8; cmek::zone::SEGMENT_HEADER_LEN];
        let read = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => continue,
            Err(e) => return Err(io_at(&path, e)),
        }
        if let Ok(h) = SegmentHeader::parse(&header) {
            if h.zone_id() == manifest.zone_id() && h.ezk_version() == version {
                users.push(path.display().to_string());
            }
        }
    }
    Ok(users)
}

/// ` (alias NAME)` when `named` is an alias for `root`, for messages.
fn alias_note(named: &cmek::provider::KeyRef, root: &cmek::provider::KeyRef) -> String {
    if named.key_id() == root.key_id() {
        String::new()
    } else {
        format!(" (alias {})", named.key_id())
    }
}
