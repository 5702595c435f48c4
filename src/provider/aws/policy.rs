//! IAM policy documents for the role cmek runs as.
//!
//! [`role_policy`] grants exactly what [`AwsKmsProvider`](super::AwsKmsProvider)
//! calls — `kms:Encrypt`, `kms:Decrypt`, `kms:DescribeKey` — on exactly the
//! given keys. [`trust_policy`] lets a principal (e.g. the service's account
//! or role) assume that role, optionally only with an external id.

use serde_json::{json, Value};

use super::arn::KmsArn;
use crate::{Error, Result};

/// The KMS actions the provider needs, in policy order.
pub const REQUIRED_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"];

/// The IAM policy (JSON, pretty-printed) allowing the provider's calls on
/// exactly `key_arns`. A multi-region key needs each replica's ARN listed,
/// since IAM matches resources by full ARN.
///
/// # Errors
/// [`Error::InvalidArgument`] if the list is empty or an entry is not a KMS
/// key ARN (alias ARNs are refused: IAM authorizes the key, not the alias).
pub fn role_policy(key_arns: &[&str]) -> Result<String> {
    if key_arns.is_empty() {
        return Err(Error::InvalidArgument(
            "a role policy needs at least one key ARN".into(),
        ));
    }
    for arn in key_arns {
        let parsed = KmsArn::parse(arn).filter(|a| a.key_id().is_some());
        if parsed.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{arn:?} is not a KMS key ARN"
            )));
        }
    }
    let doc = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CmekRootKeyAccess",
            "Effect": "Allow",
            "Action": REQUIRED_ACTIONS,
            "Resource": key_arns,
        }]
    });
    Ok(pretty(&doc))
}

/// The trust policy (JSON, pretty-printed) letting `principal_arn` assume the
/// role, with `sts:ExternalId` required to equal `external_id` when given.
///
/// # Errors
/// [`Error::InvalidArgument`] if `principal_arn` is not an IAM ARN
/// (`arn:PARTITION:iam::ACCOUNT:...`) or a 12-digit account id.
pub fn trust_policy(principal_arn: &str, external_id: Option<&str>) -> Result<String> {
    let is_account = principal_arn.len() == 12 && principal_arn.bytes().all(|b| b.is_ascii_digit());
    let is_iam_arn =
        principal_arn.starts_with("arn:") && principal_arn.split(':').nth(2) == Some("iam");
    if !is_account && !is_iam_arn {
        return Err(Error::InvalidArgument(format!(
            "{principal_arn:?} is neither an IAM ARN nor an account id"
        )));
    }
    let mut statement = json!({
        "Sid": "CmekAssumeRole",
        "Effect": "Allow",
        "Principal": { "AWS": principal_arn },
        "Action": "sts:AssumeRole",
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
    }
    Ok(pretty(
        &json!({ "Version": "2012-10-17", "Statement": [statement] }),
    ))
}

fn pretty(doc: &Value) -> String {
    serde_json::to_string_pretty(doc).expect("a JSON value always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const MRK: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

    #[test]
    fn role_policy_grants_exactly_three_actions_on_exactly_the_keys() {
        let doc: Value = serde_json::from_str(&role_policy(&[KEY, MRK]).unwrap()).unwrap();
        assert_eq!(doc["Version"], "2012-10-17");
        let statements = doc["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 1);
        let s = &statements[0];
        assert_eq!(s["Effect"], "Allow");
        assert_eq!(
            s["Action"],
            json!(["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])
        );
        assert_eq!(s["Resource"], json!([KEY, MRK]));
    }

    #[test]
    fn role_policy_refuses_non_key_arns() {
        assert!(role_policy(&[]).is_err());
        for bad in [
            "*",
            "alias/orders",
            "arn:aws:kms:us-east-1:111122223333:alias/orders",
            "arn:aws:s3:::bucket",
        ] {
            assert!(
                matches!(role_policy(&[bad]).unwrap_err(), Error::InvalidArgument(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn trust_policy_names_the_principal_and_external_id() {
        let doc: Value = serde_json::from_str(
            &trust_policy(
                "arn:aws:iam::444455556666:role/cmek-service",
                Some("project-42"),
            )
            .unwrap(),
        )
        .unwrap();
        let s = &doc["Statement"][0];
        assert_eq!(
            s["Principal"]["AWS"],
            "arn:aws:iam::444455556666:role/cmek-service"
        );
        assert_eq!(s["Action"], "sts:AssumeRole");
        assert_eq!(
            s["Condition"]["StringEquals"]["sts:ExternalId"],
            "project-42"
        );
        let doc: Value =
            serde_json::from_str(&trust_policy("444455556666", None).unwrap()).unwrap();
        assert!(doc["Statement"][0].get("Condition").is_none());
        assert!(trust_policy("arn:aws:s3:::bucket", None).is_err());
        assert!(trust_policy("12345", None).is_err());
    }
}
