//! Google Cloud KMS keys in the command-line tool (feature `gcp-kms`):
//! the provider built from the environment, and `cmek policy gcp`.
//!
//! Configuration comes from the environment, never from arguments (a token
//! on a command line is visible to every user of the machine):
//!
//! * `CMEK_GCP_KMS_ENDPOINT` — an endpoint instead of the public one;
//! * `CMEK_GCP_KMS_ACCESS_TOKEN`, or `CMEK_GCP_KMS_ACCESS_TOKEN_FILE` (a
//!   file holding it) — a fixed OAuth2 access token; without either,
//!   application-default credentials;
//! * `CMEK_GCP_KMS_KEY_RING` — the key ring new keys are created in (only
//!   tools that create keys need it).

use std::sync::Arc;

use cmek::provider::gcp::policy::role_document;
use cmek::provider::{GcpCredentials, GcpKmsOptions, GcpKmsProvider, GCP_KMS_PROVIDER};
use cmek::KeyProvider;

use crate::exit::{io_at, CliResult, Failure};
use crate::home::{Home, KeyArg};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The Cloud KMS provider the environment describes.
pub async fn provider() -> CliResult<Arc<dyn KeyProvider>> {
    let credentials = match (
        var("CMEK_GCP_KMS_ACCESS_TOKEN"),
        var("CMEK_GCP_KMS_ACCESS_TOKEN_FILE"),
    ) {
        (Some(token), _) => GcpCredentials::AccessToken(token),
        (None, Some(path)) => {
            let token = std::fs::read_to_string(&path)
                .map_err(|e| io_at(std::path::Path::new(&path), e))?;
            GcpCredentials::AccessToken(token.trim().to_owned())
        }
        (None, None) => GcpCredentials::ApplicationDefault,
    };
    let options = GcpKmsOptions {
        endpoint: var("CMEK_GCP_KMS_ENDPOINT"),
        credentials,
        key_ring: var("CMEK_GCP_KMS_KEY_RING"),
        ..GcpKmsOptions::default()
    };
    Ok(Arc::new(GcpKmsProvider::new(options).await?))
}

/// `cmek policy gcp [KEY...]`: the IAM document for the given keys
/// (`gcp:projects/...` or bare names), default every registered Cloud KMS
/// key. Needs no credentials and makes no call.
pub fn policy(home: &Home, keys: &[String]) -> CliResult<String> {
    let mut names = Vec::new();
    if keys.is_empty() {
        for k in home.registry()?.keys() {
            if k.key.provider() == GCP_KMS_PROVIDER {
                names.push(k.key.key_id().to_owned());
            }
        }
        if names.is_empty() {
            return Err(Failure::usage(
                "no Cloud KMS key registered: pass the key names",
            ));
        }
    }
    for key in keys {
        names.push(match KeyArg::parse(key) {
            Ok(arg) if arg.kind == GCP_KMS_PROVIDER => arg.id,
            _ => key.clone(),
        });
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(role_document(&names)?)
}
