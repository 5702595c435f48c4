//! `cmek policy ...`: the IAM documents of `cmek::provider::aws::policy`.

use cmek::provider::aws::policy::{role_policy, trust_policy};
use cmek::provider::AWS_KMS_PROVIDER;

use crate::args::PolicyCommand;
use crate::exit::{CliResult, Failure};
use crate::home::Home;

/// Runs one `cmek policy` command.
pub fn run(home: &Home, command: PolicyCommand) -> CliResult {
    let doc = match command {
        PolicyCommand::Role { key_arns } => {
            let arns = if key_arns.is_empty() {
                registered_arns(home)?
            } else {
                key_arns
            };
            let arns: Vec<&str> = arns.iter().map(String::as_str).collect();
            role_policy(&arns)?
        }
        PolicyCommand::Trust {
            principal,
            external_id,
        } => trust_policy(&principal, external_id.as_deref())?,
    };
    println!("{doc}");
    Ok(())
}

/// Every registered AWS key given by ARN, with the ARN of each replica
/// region of a multi-region key (IAM matches resources by full ARN).
fn registered_arns(home: &Home) -> CliResult<Vec<String>> {
    let mut arns = Vec::new();
    for k in home.registry()?.keys() {
        if k.key.provider() != AWS_KMS_PROVIDER {
            continue;
        }
        let Some(arn) = cmek::provider::aws::arn::KmsArn::parse(k.key.key_id()) else {
            continue;
        };
        for region in &k.regions {
            arns.push(arn.in_region(region).to_string());
        }
    }
    arns.sort();
    arns.dedup();
    if arns.is_empty() {
        return Err(Failure::usage(
            "no AWS key registered by ARN: pass the key ARNs",
        ));
    }
    Ok(arns)
}
