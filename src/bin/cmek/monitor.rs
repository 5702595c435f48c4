//! `cmek monitor`: the key-availability monitor over the state directory —
//! every registered key and every zone — once, or on an interval, printing
//! each change as it is seen.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmek::monitor::{CheckReport, KeyMonitor, MonitorConfig, MonitorEvent, UnreachablePolicy};
use cmek::zone::{Keyring, ZoneAvailability};
use cmek::KeyState;
use tokio::sync::broadcast::error::TryRecvError;

use crate::args::MonitorArgs;
use crate::exit::{CliResult, Code, Context, Failure};
use crate::home::Home;

/// `cmek monitor`.
pub async fn run(home: &Home, args: MonitorArgs) -> CliResult {
    let config = MonitorConfig {
        interval: Duration::from_secs(args.interval.max(1)),
        test_wrap: !args.no_test_wrap,
        unreachable: if args.fail_closed {
            UnreachablePolicy::FailClosed
        } else {
            UnreachablePolicy::GracePeriod(Duration::from_secs(args.grace))
        },
        ..MonitorConfig::default()
    };
    let monitor = KeyMonitor::new(config);
    let mut events = monitor.subscribe();

    for registered in home.registry()?.keys() {
        let provider = home
            .provider_for_root(&registered.key, registered.key.region())
            .await?;
        monitor.watch_key(registered.key, provider);
    }
    // The zones stay open (gated) for the whole run; names for the report.
    let mut zones = Vec::new();
    for (name, _) in home.zones() {
        let record = home.registered_zone(&name)?;
        let provider = home.provider_for_root(&record.key, &record.region).await?;
        let (_, store) = home.zone_manifest(&name)?;
        let zone = monitor
            .open_zone(&Keyring::new(provider), store, &record.anchor())
            .await
            .context(format!("zone {name}"))?;
        zones.push((name, zone));
    }

    let checks = if args.once {
        1
    } else {
        args.checks.unwrap_or(u64::MAX)
    };
    let mut last = None;
    for done in 1..=checks {
        let started = tokio::time::Instant::now();
        let report = monitor.check_now().await;
        loop {
            match events.try_recv() {
                Ok(event) => print_event(&event, args.json),
                Err(TryRecvError::Lagged(n)) => eprintln!("cmek: {n} events were dropped"),
                Err(_) => break,
            }
        }
        if done == checks {
            last = Some(report);
            break;
        }
        let wait = if report.retry_soon {
            monitor.config().retry_interval
        } else {
            monitor.config().interval
        };
        tokio::time::sleep_until(started + wait).await;
    }
    let report = last.expect("at least one check ran");
    print_summary(&report, &zones, args.json);
    verdict(&report)
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn print_event(event: &MonitorEvent, json: bool) {
    if !json {
        println!("{} {event}", unix_seconds(event.at()));
        return;
    }
    let value = match event {
        MonitorEvent::KeyStatusChanged { key, old, new, at } => serde_json::json!({
            "event": "key-status-changed",
            "key": key.to_string(),
            "old": old.map(KeyState::as_str),
            "new": new.as_str(),
            "at": unix_seconds(*at),
        }),
        MonitorEvent::ZoneAvailabilityChanged {
            zone,
            key,
            old,
            new,
            at,
        } => serde_json::json!({
            "event": "zone-availability-changed",
            "zone": zone.to_string(),
            "key": key.to_string(),
            "old": availability_name(*old),
            "new": availability_name(*new),
            "at": unix_seconds(*at),
        }),
        MonitorEvent::RootAliasMoved {
            zone,
            alias,
            recorded,
            now,
            at,
        } => serde_json::json!({
            "event": "root-alias-moved",
            "zone": zone.to_string(),
            "alias": alias,
            "key": recorded.to_string(),
            "alias_now": now.to_string(),
            "at": unix_seconds(*at),
        }),
        other => serde_json::json!({ "event": other.to_string() }),
    };
    println!("{value}");
}

fn availability_name(a: ZoneAvailability) -> String {
    match a {
        ZoneAvailability::Available => "available".to_owned(),
        ZoneAvailability::Unavailable(state) => format!("unavailable:{state}"),
    }
}

fn print_summary(report: &CheckReport, zones: &[(String, cmek::zone::Zone)], json: bool) {
    let zone_rows: Vec<_> = zones
        .iter()
        .map(|(name, zone)| (name, zone.root(), zone.availability()))
        .collect();
    if json {
        let value = serde_json::json!({
            "keys": report.keys.iter().map(|(k, s)| serde_json::json!({
                "key": k.to_string(), "state": s.as_str(),
            })).collect::<Vec<_>>(),
            "zones": zone_rows.iter().map(|(name, root, a)| serde_json::json!({
                "zone": name, "key": root.to_string(), "availability": availability_name(*a),
            })).collect::<Vec<_>>(),
            "check_ms": report.took.as_millis() as u64,
        });
        println!("{value}");
        return;
    }
    for (key, state) in &report.keys {
        println!("key  {key}: {state}");
    }
    for (name, root, availability) in &zone_rows {
        println!("zone {name} ({root}): {availability}");
    }
}

/// Success if every key is usable and every zone serves; otherwise the
/// code of the most telling key state.
fn verdict(report: &CheckReport) -> CliResult {
    let bad: Vec<_> = report.keys.iter().filter(|(_, s)| !s.is_usable()).collect();
    let dark = report
        .zones
        .iter()
        .filter(|(_, a)| !a.is_available())
        .count();
    if bad.is_empty() && dark == 0 {
        return Ok(());
    }
    let code = match bad.first().map(|(_, s)| *s) {
        Some(KeyState::Unreachable) => Code::Unreachable,
        Some(KeyState::AccessDenied) => Code::AccessDenied,
        _ => Code::KeyUnavailable,
    };
    Err(Failure::new(
        code,
        format!(
            "{} of {} keys unusable, {dark} of {} zones unavailable",
            bad.len(),
            report.keys.len(),
            report.zones.len()
        ),
    ))
}
