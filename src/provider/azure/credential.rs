//! Credentials for Key Vault: the standard chain, and a bearer token
//! obtained elsewhere.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;
use azure_core::time::{Duration, OffsetDateTime};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, WorkloadIdentityCredential,
};

use crate::{Error, Result};

/// A fixed bearer token for every request: one obtained elsewhere (for
/// example `az account get-access-token --resource https://vault.azure.net`),
/// or a test server's. It is never refreshed; it is not printed by `Debug`.
pub struct BearerToken {
    token: Secret,
}

impl BearerToken {
    /// A credential that always answers `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: Secret::new(token.into()),
        }
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

#[async_trait]
impl TokenCredential for BearerToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // An hour ahead, so the SDK's cache does not ask again within a call.
        Ok(AccessToken::new(
            self.token.clone(),
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}

/// The standard chain: workload identity where its environment is set
/// (`AZURE_FEDERATED_TOKEN_FILE`, as on AKS), then the developer tools
/// (Azure CLI, Azure Developer CLI), then managed identity. The first
/// source that gives a token answers; if none does, the error lists why
/// each failed.
pub(crate) fn default_chain() -> Result<Arc<dyn TokenCredential>> {
    let map = |e: azure_core::Error| {
        Error::InvalidArgument("cannot set up the Azure credential chain".into()).with_source(e)
    };
    let mut sources: Vec<Arc<dyn TokenCredential>> = Vec::new();
    if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        sources.push(WorkloadIdentityCredential::new(None).map_err(map)?);
    }
    sources.push(DeveloperToolsCredential::new(None).map_err(map)?);
    sources.push(ManagedIdentityCredential::new(None).map_err(map)?);
    Ok(Arc::new(Chain(sources)))
}

/// Tries each source in order.
#[derive(Debug)]
struct Chain(Vec<Arc<dyn TokenCredential>>);

#[async_trait]
impl TokenCredential for Chain {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut failures = Vec::new();
        for source in &self.0 {
            match source.get_token(scopes, options.clone()).await {
                Ok(token) => return Ok(token),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no Azure credential gave a token (workload identity, developer tools, \
                 managed identity): {}",
                failures.join("; ")
            ),
        ))
    }
}
