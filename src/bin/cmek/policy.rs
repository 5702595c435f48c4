//! `cmek policy ...`: the IAM documents the AWS KMS provider needs (and,
//! with `cmek policy gcp`, the Cloud KMS provider's, in `gcp.rs`; with
//! `cmek policy azure`, the access Azure Key Vault keys need; with `cmek
//! policy kmip`, the grants a KMIP client certificate needs), and any
//! provider's account of its grants (`policy key`). The
//! documents, and every rule about key ARNs, are the library's
//! (`cmek::provider::aws::policy`, `cmek::provider::kmip::access_policy`,
//! `KeyProvider::access_policy`); this module gathers the keys and prints.

use cmek::provider::aws::policy::{role_policy, trust_policy};
use cmek::provider::AWS_KMS_PROVIDER;

use crate::args::PolicyCommand;
use crate::exit::{CliResult, Failure};
use crate::home::{Home, KeyArg};

/// Runs one `cmek policy` command.
pub async fn run(home: &Home, command: PolicyCommand) -> CliResult {
    let doc = match command {
        PolicyCommand::Key { keys } => key_policies(home, &keys).await?,
        PolicyCommand::Role { key_arns } if key_arns.is_empty() => registered_policy(home).await?,
        PolicyCommand::Role { key_arns } => {
            let arns: Vec<&str> = key_arns.iter().map(String::as_str).collect();
            role_policy(&arns)?
        }
        PolicyCommand::Trust {
            principal,
            external_id,
        } => trust_policy(&principal, external_id.as_deref())?,
        #[cfg(feature = "gcp-kms")]
        PolicyCommand::Gcp { keys } => crate::gcp::policy(home, &keys)?,
        #[cfg(feature = "azure-kv")]
        PolicyCommand::Azure { keys } => crate::azure::policy(home, &keys)?,
        #[cfg(feature = "kmip")]
        PolicyCommand::Kmip { uids } => crate::kmip::policy(home, uids)?,
    };
    println!("{doc}");
    Ok(())
}

/// Each key's provider's own account of what it needs granted.
async fn key_policies(home: &Home, keys: &[String]) -> CliResult<String> {
    let mut docs = Vec::new();
    for key in keys {
        let (provider, key_ref) = home.provider_for(&KeyArg::parse(key)?).await?;
        docs.push(
            match provider.access_policy(std::slice::from_ref(&key_ref))? {
                Some(doc) => doc,
                None => format!("{key_ref}: provider {} needs no grant", provider.kind()),
            },
        );
    }
    Ok(docs.join("\n"))
}

/// The role policy for every registered AWS key, named in every region it
/// is registered as serving (IAM matches resources by full ARN, so a
/// replicated key is listed once per replica): the provider names each.
async fn registered_policy(home: &Home) -> CliResult<String> {
    let registered: Vec<_> = home
        .registry()?
        .keys()
        .into_iter()
        .filter(|k| k.key.provider() == AWS_KMS_PROVIDER)
        .collect();
    let Some(first) = registered.first() else {
        return Err(Failure::usage("no AWS key registered: pass the key ARNs"));
    };
    let provider = home
        .provider(AWS_KMS_PROVIDER, Some(first.key.region()))
        .await?;
    let mut keys = Vec::new();
    for k in &registered {
        for region in &k.regions {
            keys.push(provider.key_in_region(&k.key, region)?);
        }
    }
    keys.sort();
    keys.dedup();
    provider
        .access_policy(&keys)?
        .ok_or_else(|| Failure::usage("the AWS KMS provider gave no policy"))
}
