//! What an operator grants the identity cmek runs as, on exactly the keys
//! it uses: the four key permissions of a vault access policy, or an
//! Azure RBAC role with the four matching data actions. The fourth, `sign`,
//! is for RSA keys, which sign every wrap (see the provider's docs); a
//! vault's keys are always RSA here, a Managed HSM's `oct-HSM` keys need
//! only the other three.
//!
//! [`access_document`] gives both forms in one JSON document; the
//! operator applies the one their vault uses (a vault uses either access
//! policies or Azure RBAC; a Managed HSM uses its local RBAC).

use serde_json::{json, Value};

use super::key_id::KeyId;
use crate::{Error, Result};

/// Key permissions of a vault access policy, in the order of the
/// provider's calls: get (describe, before each wrap, and the public half
/// before each RSA unwrap), wrapKey, unwrapKey, sign (each RSA wrap).
pub const ACCESS_POLICY_KEY_PERMISSIONS: [&str; 4] = ["get", "wrapKey", "unwrapKey", "sign"];

/// The built-in Azure role that grants those calls on a vault's keys. It
/// grants more (encrypt, decrypt, verify): the custom role
/// ([`DATA_ACTIONS`]) grants exactly what cmek calls.
pub const BUILT_IN_ROLE: &str = "Key Vault Crypto User";

/// The data actions of a custom Azure role granting exactly those calls.
pub const DATA_ACTIONS: [&str; 4] = [
    "Microsoft.KeyVault/vaults/keys/read",
    "Microsoft.KeyVault/vaults/keys/wrap/action",
    "Microsoft.KeyVault/vaults/keys/unwrap/action",
    "Microsoft.KeyVault/vaults/keys/sign/action",
];

/// The Managed HSM local RBAC role granting wrap, unwrap and read on an
/// HSM's keys: enough for `oct-HSM` keys. An `RSA-HSM` key also needs
/// [`MANAGED_HSM_SIGN_DATA_ACTION`].
pub const MANAGED_HSM_ROLE: &str = "Managed HSM Crypto Service Encryption User";

/// The Managed HSM data actions granting them.
pub const MANAGED_HSM_DATA_ACTIONS: [&str; 3] = [
    "Microsoft.KeyVault/managedHsm/keys/read/action",
    "Microsoft.KeyVault/managedHsm/keys/wrap/action",
    "Microsoft.KeyVault/managedHsm/keys/unwrap/action",
];

/// The Managed HSM data action an `RSA-HSM` root also needs: it signs every
/// wrap.
pub const MANAGED_HSM_SIGN_DATA_ACTION: &str = "Microsoft.KeyVault/managedHsm/keys/sign/action";

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
                    "Description": "Get, wrap, unwrap and sign with the keys cmek uses as roots.",
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
            "rsaHsmKeysAlso": [MANAGED_HSM_SIGN_DATA_ACTION],
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
    fn the_document_grants_four_calls_on_exactly_the_keys() {
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
            json!(["get", "wrapKey", "unwrapKey", "sign"])
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
        assert_eq!(
            doc["managedHsm"]["rsaHsmKeysAlso"],
            json!([MANAGED_HSM_SIGN_DATA_ACTION])
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
