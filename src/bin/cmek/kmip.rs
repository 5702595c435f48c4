//! KMIP keys in this tool: `kmip:UID` (the key server's Unique
//! Identifier), reached through the server and certificate files that
//! `CMEK_KMIP_ENDPOINT`, `CMEK_KMIP_CA`, `CMEK_KMIP_CERT` and
//! `CMEK_KMIP_KEY` name (never command-line arguments: the private key
//! stays in its file). The key server serves the region `CMEK_KMIP_REGION`
//! names (default `kmip`), its configuration: neither `--region` nor the
//! region of a zone moves it.

use std::sync::Arc;

use cmek::provider::{KmipOptions, KmipProvider, KMIP_PROVIDER};
use cmek::KeyProvider;

use crate::exit::{CliResult, Failure};
use crate::home::Home;

/// The KMIP provider the environment describes.
pub fn provider() -> CliResult<Arc<dyn KeyProvider>> {
    Ok(Arc::new(KmipProvider::new(&KmipOptions::from_env()?)?))
}

/// `cmek policy kmip`: the grants the client certificate needs on `uids`,
/// else on every registered KMIP key.
pub fn policy(home: &Home, uids: Vec<String>) -> CliResult<String> {
    let uids = if uids.is_empty() {
        home.registry()?
            .keys()
            .into_iter()
            .filter(|k| k.key.provider() == KMIP_PROVIDER)
            .map(|k| k.key.key_id().to_owned())
            .collect()
    } else {
        uids
    };
    if uids.is_empty() {
        return Err(Failure::usage(
            "no KMIP key registered: pass the keys' unique identifiers",
        ));
    }
    let uids: Vec<&str> = uids.iter().map(String::as_str).collect();
    Ok(cmek::provider::kmip::access_policy(&uids)?)
}
