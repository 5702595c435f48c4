//! The IAM document for the identity cmek runs as on Google Cloud.
//!
//! [`role_document`] names exactly the permissions
//! [`GcpKmsProvider`](super::GcpKmsProvider) uses — encrypt, decrypt, and
//! reading the key — as a custom role definition (the shape
//! `gcloud iam roles create --file` takes), the keys to grant it on (IAM
//! bindings on each CryptoKey, not on the project), and the predefined
//! roles that cover the same permissions for those who prefer them.

use serde_json::{json, Value};

use super::name::CryptoKeyName;
use crate::{Error, Result};

/// The IAM permissions the provider needs, in document order.
pub const REQUIRED_PERMISSIONS: [&str; 3] = [
    "cloudkms.cryptoKeyVersions.useToEncrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt",
    "cloudkms.cryptoKeys.get",
];

/// Predefined roles that together grant [`REQUIRED_PERMISSIONS`]: the
/// encrypter/decrypter role has the first two, the viewer role the third.
pub const PREDEFINED_ROLES: [&str; 2] = [
    "roles/cloudkms.cryptoKeyEncrypterDecrypter",
    "roles/cloudkms.viewer",
];

/// The role document (JSON, pretty-printed) for exactly `keys`
/// (CryptoKey resource names; duplicates are listed once).
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty list or a name that is not a
/// CryptoKey name.
pub fn role_document(keys: &[&str]) -> Result<String> {
    if keys.is_empty() {
        return Err(Error::InvalidArgument(
            "a role document needs at least one Cloud KMS key name".into(),
        ));
    }
    let mut names = Vec::new();
    for key in keys {
        let name = CryptoKeyName::parse(key).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{key:?} is not a Cloud KMS key name (projects/P/locations/L/keyRings/R/cryptoKeys/K)"
            ))
        })?;
        let name = name.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let doc = json!({
        "role": {
            "title": "cmek root key user",
            "description": "Wrap and unwrap cmek zone keys under Cloud KMS keys, and read the keys' state",
            "stage": "GA",
            "includedPermissions": REQUIRED_PERMISSIONS,
        },
        "grantOn": names,
        "predefinedRoles": PREDEFINED_ROLES,
    });
    Ok(pretty(&doc))
}

fn pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "projects/acme/locations/europe/keyRings/cmek/cryptoKeys/orders";

    #[test]
    fn names_exactly_three_permissions_on_exactly_the_keys() {
        let other = "projects/acme/locations/us-east1/keyRings/cmek/cryptoKeys/logs";
        let doc: Value = serde_json::from_str(&role_document(&[KEY, other, KEY]).unwrap()).unwrap();
        assert_eq!(
            doc["role"]["includedPermissions"],
            json!([
                "cloudkms.cryptoKeyVersions.useToEncrypt",
                "cloudkms.cryptoKeyVersions.useToDecrypt",
                "cloudkms.cryptoKeys.get"
            ])
        );
        assert_eq!(doc["grantOn"], json!([KEY, other]));
        assert_eq!(
            doc["predefinedRoles"],
            json!([
                "roles/cloudkms.cryptoKeyEncrypterDecrypter",
                "roles/cloudkms.viewer"
            ])
        );
    }

    #[test]
    fn refuses_what_is_not_a_key_name() {
        assert!(role_document(&[]).is_err());
        for bad in [
            "*",
            "projects/acme/locations/europe/keyRings/cmek",
            "arn:aws:kms:us-east-1:111122223333:key/k",
        ] {
            assert!(
                matches!(
                    role_document(&[bad]).unwrap_err(),
                    Error::InvalidArgument(_)
                ),
                "{bad}"
            );
        }
    }
}
