//! `cmek key ...`: root keys through the project key registry.
//!
//! Every registry rule (key limit, validation before adding, region rule,
//! no removal of a key in use) is the library's `KeyRegistry`'s; this
//! module only gathers arguments and prints.

use cmek::provider::{StepOutcome, ValidationFailure};
use cmek::{KeyRef, KeyState};
use serde_json::json;

use crate::args::KeyCommand;
use crate::exit::{CliResult, Code, Context, Failure};
use crate::home::{Home, KeyArg};

/// Runs one `cmek key` command.
pub async fn run(home: &Home, command: KeyCommand) -> CliResult {
    match command {
        KeyCommand::Add {
            key,
            replica_regions,
            create,
        } => add(home, &KeyArg::parse(&key)?, &replica_regions, create).await,
        KeyCommand::Validate { key } => validate(home, &KeyArg::parse(&key)?).await,
        KeyCommand::List { json } => list(home, json),
        KeyCommand::Disable { key } => set_enabled(home, &KeyArg::parse(&key)?, false).await,
        KeyCommand::Enable { key } => set_enabled(home, &KeyArg::parse(&key)?, true).await,
        KeyCommand::Delete { key, destroy } => delete(home, &KeyArg::parse(&key)?, destroy).await,
    }
}

async fn add(home: &Home, key: &KeyArg, replica_regions: &[String], create: bool) -> CliResult {
    if create && key.kind != cmek::provider::LOCAL_PROVIDER {
        #[cfg(feature = "pkcs11")]
        crate::pkcs11::create_if_missing(home, key).await?;
        #[cfg(not(feature = "pkcs11"))]
        return Err(Failure::usage("--create is for pkcs11: keys"));
    }
    if key.is_local() {
        // Creating the key first lets one command set up a local project.
        let local = home.local(true)?;
        let exists = || -> cmek::Result<bool> {
            Ok(local.list_keys()?.iter().any(|k| k.key.key_id() == key.id))
        };
        if !exists()? {
            match local.add_key(&key.id) {
                Ok(created) => println!("created local key {created}"),
                // Another process created it since: use it, as one that was
                // there before.
                Err(_) if exists()? => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let registry = home.registry()?;
    let (provider, named) = home.provider_for(key).await?;
    // The registry holds keys, never aliases: an alias is registered as the
    // key it points to now, which is what a zone created with it records.
    let key_ref = provider
        .resolve_key(&named)
        .await
        .context(format!("key {named}"))?;
    let alias = if named.key_id() == key_ref.key_id() {
        String::new()
    } else {
        format!(" (alias {})", named.key_id())
    };
    let replicas: Vec<&str> = replica_regions.iter().map(String::as_str).collect();
    registry
        .add_key(provider.as_ref(), key_ref.clone(), &replicas)
        .await?;
    let regions = registry
        .keys()
        .into_iter()
        .find(|k| k.key == key_ref)
        .map(|k| k.regions.join(","))
        .unwrap_or_default();
    println!(
        "registered {key_ref}{alias} (serves {regions}; {} of {} keys)",
        registry.keys().len(),
        registry.limit()
    );
    Ok(())
}

async fn validate(home: &Home, key: &KeyArg) -> CliResult {
    let (provider, key_ref) = home.provider_for(key).await?;
    let report = provider.validate_key(&key_ref).await;
    println!("key {key_ref}");
    for (step, outcome) in report.steps() {
        let text = match outcome {
            StepOutcome::Passed => "passed".to_owned(),
            StepOutcome::Skipped => "skipped".to_owned(),
            StepOutcome::Failed(why) => format!("FAILED: {why}"),
        };
        println!("  {:<9} {text}", step.as_str());
    }
    if let Some(state) = report.state {
        println!("  state     {state}");
    }
    match report.first_failure() {
        None => {
            println!("valid");
            Ok(())
        }
        Some((step, why)) => {
            let failure = Failure::from(cmek::Error::KeyValidationFailed {
                key: key_ref.to_string(),
                step: step.as_str(),
                failure: why.clone(),
            });
            // The step's reason says more than "invalid": a script retries
            // an unreachable provider, and fixes a permission.
            let code = match why {
                ValidationFailure::AccessDenied => Code::AccessDenied,
                ValidationFailure::Unreachable(_) => Code::Unreachable,
                _ => failure.code,
            };
            Err(Failure::new(code, failure.message))
        }
    }
}

fn list(home: &Home, as_json: bool) -> CliResult {
    let registry = home.registry()?;
    // Local states come from the key file at no cost; AWS states would need
    // a call per key, which `cmek key validate` makes on demand.
    let local_keys = home
        .local(false)
        .ok()
        .and_then(|local| local.list_keys().ok())
        .unwrap_or_default();
    let local_state = |key: &KeyRef| -> Option<KeyState> {
        local_keys.iter().find(|k| &k.key == key).map(|k| k.state)
    };
    let zones = registry.zones();
    let rows: Vec<_> = registry
        .keys()
        .into_iter()
        .map(|k| {
            let users: Vec<String> = zones
                .iter()
                .filter(|z| z.key == k.key)
                .map(|z| z.name.clone())
                .collect();
            let state = if k.key.provider() == cmek::provider::LOCAL_PROVIDER {
                local_state(&k.key).map_or("not-found", KeyState::as_str)
            } else {
                "-"
            };
            (k, users, state)
        })
        .collect();
    if as_json {
        let keys: Vec<_> = rows
            .iter()
            .map(|(k, users, state)| {
                json!({
                    "key": k.key.to_string(),
                    "provider": k.key.provider(),
                    "key_id": k.key.key_id(),
                    "region": k.key.region(),
                    "regions": k.regions,
                    "added_unix": k.added_unix,
                    "state": state,
                    "zones": users,
                })
            })
            .collect();
        let doc = json!({ "limit": registry.limit(), "keys": keys });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("JSON value")
        );
        return Ok(());
    }
    println!("{} of {} keys", rows.len(), registry.limit());
    for (k, users, state) in rows {
        let users = if users.is_empty() {
            "-".to_owned()
        } else {
            users.join(",")
        };
        println!(
            "  {}  state={state}  regions={}  zones={users}",
            k.key,
            k.regions.join(",")
        );
    }
    Ok(())
}

/// Enables or disables a key through its provider's administration.
async fn set_enabled(home: &Home, key: &KeyArg, enable: bool) -> CliResult {
    let (provider, key_ref) = home.provider_for(key).await?;
    let admin = provider.admin().ok_or_else(|| {
        Failure::usage(format!(
            "provider {} cannot enable or disable keys",
            provider.kind()
        ))
    })?;
    if enable {
        admin.enable_key(&key_ref).await?;
        println!("enabled {key_ref}");
    } else {
        admin.disable_key(&key_ref).await?;
        println!("disabled {key_ref}");
    }
    Ok(())
}

async fn delete(home: &Home, key: &KeyArg, destroy: bool) -> CliResult {
    if destroy && !key.is_local() {
        return Err(Failure::usage(
            "--destroy is for local keys; schedule a KMS key's deletion in the KMS itself",
        ));
    }
    let registry = home.registry()?;
    let (provider, named) = home.provider_for(key).await?;
    let key_ref = if registry.key(&named).is_some() {
        named
    } else {
        // Registered keys are resolved keys: an alias names the key it
        // points to now.
        provider
            .resolve_key(&named)
            .await
            .context(format!("key {named}"))?
    };
    registry
        .remove_key(&key_ref)
        .context(format!("delete {key_ref}"))?;
    println!("removed {key_ref} from the registry");
    if destroy {
        home.local(false)?.destroy_key(&key.id)?;
        println!("destroyed the material of {key_ref}");
    }
    Ok(())
}
