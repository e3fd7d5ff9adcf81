//! Settings that are secrets — the database URL with its password, Vault's AppRole secret id,
//! the OIDC client secret — read once at start from one AWS Secrets Manager secret, so that none
//! of them sits in a function's plaintext configuration.
//!
//! `SECRETS_ARN` names the secret; its `SecretString` is a JSON object of setting names to
//! values, e.g. `{"DATABASE_URL": "postgres://…", "VAULT_SECRET_ID": "…"}`. Only the names in
//! [`SECRET_SETTINGS`] may appear there, and a name given both there and in the environment is
//! refused, so that which value is in force is never a guess. Without `SECRETS_ARN` nothing is
//! fetched (the local stack passes every setting in the environment).

use std::collections::HashMap;
use std::time::Duration;

use crate::error::{with_timeout, DependencyError};
use crate::storage::aws_error;

/// The variable naming the secret.
pub const SECRETS_ARN: &str = "SECRETS_ARN";

/// The settings a secret may hold: those that carry a credential.
pub const SECRET_SETTINGS: [&str; 5] = [
    "DATABASE_URL",
    "REDIS_URL",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "OIDC_CLIENT_SECRET",
];

/// Why the secret settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretSettingsError {
    #[error("reading secret {arn} ({SECRETS_ARN}): {cause}")]
    Fetch { arn: String, cause: DependencyError },
    #[error("secret {arn} ({SECRETS_ARN}) has no SecretString")]
    NotText { arn: String },
    #[error(
        "secret {arn} ({SECRETS_ARN}) is not a JSON object of setting names to strings: {reason}"
    )]
    NotSettings { arn: String, reason: String },
    #[error("secret {arn} ({SECRETS_ARN}) holds `{name}`, which is not a secret setting (expected any of {expected})", expected = SECRET_SETTINGS.join(", "))]
    UnknownSetting { arn: String, name: String },
    #[error(
        "{name} is given both in the environment and in secret {arn} ({SECRETS_ARN}): remove one"
    )]
    GivenTwice { arn: String, name: String },
}

/// The secret `SECRETS_ARN` names in `vars`, if it names one.
pub fn secret_arn(vars: &HashMap<String, String>) -> Option<String> {
    vars.get(SECRETS_ARN)
        .map(|arn| arn.trim().to_owned())
        .filter(|arn| !arn.is_empty())
}

/// The environment with the secret's settings added, when `SECRETS_ARN` is set: one
/// `GetSecretValue` call, bounded by `DEPENDENCY_TIMEOUT_MS`.
pub async fn resolve(
    mut vars: HashMap<String, String>,
) -> Result<HashMap<String, String>, SecretSettingsError> {
    let Some(arn) = secret_arn(&vars) else {
        return Ok(vars);
    };
    let timeout = vars
        .get("DEPENDENCY_TIMEOUT_MS")
        .and_then(|ms| ms.trim().parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(5));
    let config = super::aws_sdk_config(
        &super::aws_region(|name| vars.get(name).cloned()),
        vars.get("AWS_ENDPOINT_URL")
            .map(String::as_str)
            .filter(|e| !e.trim().is_empty()),
        timeout,
    )
    .await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let request = client.get_secret_value().secret_id(&arn).send();
    let output = with_timeout("secrets manager", "get secret value", timeout, async {
        request.await.map_err(aws_error)
    })
    .await
    .map_err(|cause| SecretSettingsError::Fetch {
        arn: arn.clone(),
        cause,
    })?;
    let text = output
        .secret_string()
        .ok_or_else(|| SecretSettingsError::NotText { arn: arn.clone() })?;
    let secret = parse(&arn, text)?;
    merge(&mut vars, &arn, secret)?;
    Ok(vars)
}

/// The secret's settings, checked: a JSON object whose names are secret settings and whose
/// values are strings.
fn parse(arn: &str, text: &str) -> Result<HashMap<String, String>, SecretSettingsError> {
    let not_settings = |reason: String| SecretSettingsError::NotSettings {
        arn: arn.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| not_settings(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| not_settings("expected a JSON object".to_owned()))?;
    let mut settings = HashMap::new();
    for (name, value) in object {
        if !SECRET_SETTINGS.contains(&name.as_str()) {
            return Err(SecretSettingsError::UnknownSetting {
                arn: arn.to_owned(),
                name: name.clone(),
            });
        }
        let value = value
            .as_str()
            .ok_or_else(|| not_settings(format!("`{name}` is not a string")))?;
        settings.insert(name.clone(), value.to_owned());
    }
    Ok(settings)
}

fn merge(
    vars: &mut HashMap<String, String>,
    arn: &str,
    secret: HashMap<String, String>,
) -> Result<(), SecretSettingsError> {
    if let Some(name) = secret
        .keys()
        .find(|name| vars.get(*name).is_some_and(|v| !v.trim().is_empty()))
    {
        return Err(SecretSettingsError::GivenTwice {
            arn: arn.to_owned(),
            name: name.clone(),
        });
    }
    vars.extend(secret);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:secretsmanager:us-east-1:000000000000:secret:docbundle-AbCdEf";

    #[test]
    fn a_secret_adds_its_settings_to_the_environment() {
        let secret = parse(
            ARN,
            r#"{"DATABASE_URL":"postgres://u:p@db/docbundle","VAULT_SECRET_ID":"s"}"#,
        )
        .unwrap();
        let mut vars = HashMap::from([("REDIS_URL".to_owned(), "redis://r".to_owned())]);
        merge(&mut vars, ARN, secret).unwrap();
        assert_eq!(vars["DATABASE_URL"], "postgres://u:p@db/docbundle");
        assert_eq!(vars["VAULT_SECRET_ID"], "s");
        assert_eq!(vars["REDIS_URL"], "redis://r");
    }

    #[test]
    fn a_secret_that_is_not_a_settings_object_is_refused_naming_the_secret() {
        for (text, expect) in [
            ("postgres://u:p@db", "not a JSON object"),
            ("[1, 2]", "expected a JSON object"),
            (r#"{"DATABASE_URL": 5}"#, "`DATABASE_URL` is not a string"),
            (r#"{"RUST_LOG": "trace"}"#, "not a secret setting"),
        ] {
            let message = parse(ARN, text).unwrap_err().to_string();
            assert!(
                message.contains(ARN) && message.contains(expect),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn a_setting_given_twice_is_refused() {
        let secret = parse(ARN, r#"{"DATABASE_URL":"postgres://secret"}"#).unwrap();
        let mut vars = HashMap::from([("DATABASE_URL".to_owned(), "postgres://env".to_owned())]);
        let message = merge(&mut vars, ARN, secret).unwrap_err().to_string();
        assert!(
            message.contains("DATABASE_URL") && message.contains("both"),
            "{message}"
        );
        assert_eq!(vars["DATABASE_URL"], "postgres://env");
    }
}
