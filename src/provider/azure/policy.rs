//! What an operator grants the identity cmek runs as, on exactly the keys
//! it uses: the three key permissions of a vault access policy, or an
//! Azure RBAC role with the three matching data actions.
//!
//! [`access_document`] gives both forms in one JSON document; the
//! operator applies the one their vault uses (a vault uses either access
//! policies or Azure RBAC; a Managed HSM uses its local RBAC).

use serde_json::{json, Value};

use super::key_id::KeyId;
use crate::{Error, Result};

/// Key permissions of a vault access policy, in the order of the
/// provider's calls: get (describe, and before each wrap), wrapKey,
/// unwrapKey.
pub const ACCESS_POLICY_KEY_PERMISSIONS: [&str; 3] = ["get", "wrapKey", "unwrapKey"];

/// The built-in Azure role that grants exactly those calls on a vault's
/// keys.
pub const BUILT_IN_ROLE: &str = "Key Vault Crypto Service Encryption User";

/// The data actions of a custom Azure role granting the same.
pub const DATA_ACTIONS: [&str; 3] = [
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keys/unwrap/action",
];

/// The Managed HSM local RBAC role granting them on an HSM's keys.
pub const MANAGED_HSM_ROLE: &str = "Managed HSM Crypto Service Encryption User";

/// The Managed HSM data actions granting them.
pub const MANAGED_HSM_DATA_ACTIONS: [&str; 3] = [
    "Microsoft.KeyVault/managedHsm/keys/read/action",
    "Microsoft.KeyVault/managedHsm/keys/wrap/action",
    "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
];

/// The access document (JSON, pretty-printed) for `key_ids`: each key
/// without its version (permissions hold for every version of a key), the
/// access-policy permissions, the built-in role and a custom role
/// definition to assign on each key's scope, and — for keys in a Managed
/// HSM — its role and data actions.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty list or an entry that is not a
/// Key Vault key identifier.
pub fn access_document(key_ids: &[&str]) -> Result<String> {
    if key_ids.is_empty() {
        return Err(Error::InvalidArgument(
            "an access document needs at least one key".into(),
        ));
    }
    let mut keys = Vec::new();
    let mut any_hsm = false;
    let mut any_vault = false;
    for id in key_ids {
        let key = KeyId::parse(id)?;
        if key.is_managed_hsm() {
            any_hsm = true;
        } else {
            any_vault = true;
        }
        let name = key.versionless();
        if !keys.contains(&name) {
            keys.push(name);
        }
    }
    let mut doc = json!({ "keys": keys });
    if any_vault {
        doc["vault"] = json!({
            "accessPolicy": { "permissions": { "keys": ACCESS_POLICY_KEY_PERMISSIONS } },
            "rbac": {
                "builtInRole": BUILT_IN_ROLE,
                "customRole": {
                    "Name": "cmek root key user",
                    "IsCustom": true,
                    "Description": "Get, wrap and unwrap with the keys cmek uses as roots.",
                    "Actions": [],
                    "NotActions": [],
                    "DataActions": DATA_ACTIONS,
                    "NotDataActions": [],
                },
                "assignTo": "each key's scope: <vault resource id>/keys/<name>",
            },
        });
    }
    if any_hsm {
        doc["managedHsm"] = json!({
            "builtInRole": MANAGED_HSM_ROLE,
            "dataActions": MANAGED_HSM_DATA_ACTIONS,
            "assignTo": "each key's scope: /keys/<name>",
        });
    }
    Ok(pretty(&doc))
}

fn pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_grants_three_calls_on_exactly_the_keys() {
        let doc: Value = serde_json::from_str(
            &access_document(&[
                "https://v.vault.azure.net/keys/orders/0123abcd",
                "https://v.vault.azure.net/keys/orders",
                "https://v.vault.azure.net/keys/payments",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            doc["keys"],
            json!([
                "https://v.vault.azure.net/keys/orders",
                "https://v.vault.azure.net/keys/payments"
            ])
        );
        assert_eq!(
            doc["vault"]["accessPolicy"]["permissions"]["keys"],
            json!(["get", "wrapKey", "unwrapKey"])
        );
        assert_eq!(doc["vault"]["rbac"]["builtInRole"], BUILT_IN_ROLE);
        assert_eq!(
            doc["vault"]["rbac"]["customRole"]["DataActions"],
            json!(DATA_ACTIONS)
        );
        assert!(doc.get("managedHsm").is_none());

        let doc: Value = serde_json::from_str(
            &access_document(&["https://h.managedhsm.azure.net/keys/k"]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            doc["managedHsm"]["dataActions"],
            json!(MANAGED_HSM_DATA_ACTIONS)
        );
        assert!(doc.get("vault").is_none());
    }

    #[test]
    fn refuses_no_keys_and_non_keys() {
        assert!(access_document(&[]).is_err());
        assert!(matches!(
            access_document(&["arn:aws:kms:us-east-1:111122223333:key/k"]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
