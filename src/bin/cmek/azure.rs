//! Azure Key Vault keys in the CLI (feature `azure-kv`): `azure:URL` keys,
//! the provider built from the environment, and `cmek policy azure`.
//!
//! Credentials come from the standard Azure chain, or from
//! `CMEK_AZURE_KV_TOKEN` (a bearer token obtained elsewhere) — never from
//! the command line. `CMEK_AZURE_KV_CA_FILE` adds trusted CA certificates
//! (PEM); `CMEK_AZURE_KV_VERIFY_CHALLENGE_RESOURCE=0` accepts an
//! authentication challenge for another domain than the vault's.

use std::sync::Arc;

use cmek::provider::azure::{policy::access_document, BearerToken};
use cmek::provider::{AzureKeyVaultOptions, AzureKeyVaultProvider, AZURE_KV_PROVIDER};
use cmek::KeyProvider;

use crate::exit::{io_at, CliResult, Failure};
use crate::home::Home;

/// The Key Vault provider for vaults in `region`, configured from the
/// environment.
pub fn provider(region: Option<&str>) -> CliResult<Arc<dyn KeyProvider>> {
    let region = region.ok_or_else(|| {
        Failure::usage(
            "Azure Key Vault keys need --region: the Azure region of the vault \
             (az keyvault show --query location)",
        )
    })?;
    let mut options = AzureKeyVaultOptions::new(region);
    if let Some(token) = std::env::var("CMEK_AZURE_KV_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        options.credential = Some(Arc::new(BearerToken::new(token)));
    }
    if let Some(path) = std::env::var_os("CMEK_AZURE_KV_CA_FILE").map(std::path::PathBuf::from) {
        options.ca_certificates_pem = Some(std::fs::read(&path).map_err(|e| io_at(&path, e))?);
    }
    if std::env::var("CMEK_AZURE_KV_VERIFY_CHALLENGE_RESOURCE").is_ok_and(|v| v == "0") {
        options.verify_challenge_resource = false;
    }
    Ok(Arc::new(AzureKeyVaultProvider::new(options)?))
}

/// `cmek policy azure`: the access document for the given key URLs, else
/// for every registered Key Vault key.
pub fn policy(home: &Home, keys: &[String]) -> CliResult<String> {
    let ids: Vec<String> = if keys.is_empty() {
        home.registry()?
            .keys()
            .into_iter()
            .filter(|k| k.key.provider() == AZURE_KV_PROVIDER)
            .map(|k| k.key.key_id().to_owned())
            .collect()
    } else {
        keys.iter()
            .map(|k| k.strip_prefix("azure:").unwrap_or(k).to_owned())
            .collect()
    };
    if ids.is_empty() {
        return Err(Failure::usage(
            "no Azure Key Vault key registered: pass the key URLs",
        ));
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(access_document(&ids)?)
}
