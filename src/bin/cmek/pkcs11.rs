//! PKCS#11 tokens for the tool: the provider is configured from the
//! environment only (`Pkcs11Options::from_env`: `CMEK_PKCS11_MODULE`,
//! `CMEK_PKCS11_TOKEN` or `CMEK_PKCS11_SLOT`, `CMEK_PKCS11_PIN_FILE` or
//! `CMEK_PKCS11_PIN`, `CMEK_PKCS11_MECHANISM`, `CMEK_PKCS11_REGION`), so
//! that a PIN never appears on a command line.

use std::sync::Arc;

use cmek::provider::{KeyProvider, NewKey, Pkcs11Options, Pkcs11Provider};
use cmek::KeyState;

use crate::exit::{CliResult, Context, Failure};
use crate::home::{Home, KeyArg};

/// The token's provider, serving `region` if given (else
/// `CMEK_PKCS11_REGION`, else `local`).
pub async fn provider(region: Option<&str>) -> CliResult<Arc<dyn KeyProvider>> {
    let mut options = Pkcs11Options::from_env().context("PKCS#11 configuration")?;
    if let Some(region) = region {
        options.region = region.to_owned();
    }
    Ok(Arc::new(Pkcs11Provider::open_async(options).await?))
}

/// `key add --create`: generates the key on the token unless one answers
/// to its name already.
pub async fn create_if_missing(home: &Home, key: &KeyArg) -> CliResult {
    if key.kind != cmek::provider::PKCS11_PROVIDER {
        return Err(Failure::usage("--create is for pkcs11: keys"));
    }
    let (provider, key_ref) = home.provider_for(key).await?;
    if provider.describe_key(&key_ref).await? != KeyState::NotFound {
        return Ok(());
    }
    let admin = provider
        .admin()
        .ok_or_else(|| Failure::usage("the PKCS#11 provider cannot create keys"))?;
    let created = admin.create_key(&NewKey::named(&key.id)).await?;
    println!("created {created} on the token");
    Ok(())
}
