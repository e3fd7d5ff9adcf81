//! The functions' credentials from AWS Secrets Manager (LocalStack's): `SECRETS_ARN` names one
//! secret whose JSON settings are read once at start; a secret that is missing, malformed or
//! contradicts the environment stops start-up with a message naming it.

use std::collections::HashMap;

use serde_json::json;
use uuid::Uuid;

use crate::harness;

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&harness::aws_config(&harness::stack_settings()).await)
}

/// Creates a secret holding `value` under a fresh name; returns its ARN.
async fn create_secret(value: &str) -> String {
    secrets_client()
        .await
        .create_secret()
        .name(format!("docbundle/test-{}", Uuid::new_v4().simple()))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn")
}

/// The process environment (`stack/local.env`) without the credentials, naming `arn`.
fn environment_with_secret(arn: &str) -> HashMap<String, String> {
    harness::load_stack_env();
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    for secret in ["DATABASE_URL", "VAULT_SECRET_ID", "OIDC_CLIENT_SECRET"] {
        vars.remove(secret);
    }
    vars.insert("SECRETS_ARN".to_owned(), arn.to_owned());
    vars
}

async fn start_up_error(vars: HashMap<String, String>) -> String {
    match docbundle::AppState::from_vars(vars).await {
        Ok(_) => panic!("start-up succeeded"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_functions_take_their_credentials_from_the_secret_secrets_arn_names() {
    let settings = harness::stack_settings();
    let database_url = harness::fresh_database(&settings).await;
    let arn = create_secret(
        &json!({
            "DATABASE_URL": database_url,
            "VAULT_SECRET_ID": settings.vault.secret_id,
        })
        .to_string(),
    )
    .await;
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");

    let state = docbundle::AppState::from_vars(environment_with_secret(&arn))
        .await
        .expect("state from the secret");
    assert_eq!(state.settings.database_url, database_url);
    // The database URL and Vault's secret id from the secret really work.
    let conn = state.db.get().await.expect("database from the secret");
    let applied: i64 = conn
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert!(applied >= 4, "{applied}");
    let signature = state
        .vault
        .sign(b"signed with a secret id from Secrets Manager")
        .await;
    assert!(signature.is_ok(), "{signature:?}");

    // The real binary resolves it too: migrations run with only SECRETS_ARN.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_docbundle-local"))
        .arg("migrate")
        .env_clear()
        .envs(environment_with_secret(&arn))
        .output()
        .expect("run docbundle-local");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("migrations applied"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_missing_or_malformed_secret_stops_start_up_naming_it() {
    let settings = harness::stack_settings();
    let absent = "arn:aws:secretsmanager:us-east-1:000000000000:secret:docbundle/absent-AbCdEf";
    let message = start_up_error(environment_with_secret(absent)).await;
    assert!(
        message.contains(absent) && message.contains("ResourceNotFound"),
        "{message}"
    );

    let not_json = create_secret("postgres://docbundle:docbundle@127.0.0.1/docbundle").await;
    let message = start_up_error(environment_with_secret(&not_json)).await;
    assert!(
        message.contains(&not_json) && message.contains("not a JSON object"),
        "{message}"
    );
    assert!(
        !message.contains("docbundle:docbundle@"),
        "the value leaked: {message}"
    );

    let stray = create_secret(&json!({"RUST_LOG": "trace"}).to_string()).await;
    let message = start_up_error(environment_with_secret(&stray)).await;
    assert!(
        message.contains("RUST_LOG") && message.contains("not a secret setting"),
        "{message}"
    );

    let partial = create_secret(&json!({"VAULT_SECRET_ID": "x"}).to_string()).await;
    let message = start_up_error(environment_with_secret(&partial)).await;
    assert!(
        message.contains("DATABASE_URL is neither in the environment nor in secret"),
        "{message}"
    );

    let twice = create_secret(&json!({"DATABASE_URL": settings.database_url}).to_string()).await;
    let mut vars = environment_with_secret(&twice);
    vars.insert("DATABASE_URL".to_owned(), settings.database_url.clone());
    let message = start_up_error(vars).await;
    assert!(message.contains("DATABASE_URL is given both"), "{message}");
}

/// `docbundle-local migrate`, which reads `DATABASE_URL` from the secret, in a process of its
/// own with `env` on top of the stack's environment (without the database's URL).
fn migrate_with(arn: &str, env: &[(&str, &str)]) -> std::process::Output {
    harness::load_stack_env();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_docbundle-local"));
    command
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("SECRETS_ARN", arn)
        .env("DEPENDENCY_TIMEOUT_MS", "2000");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run docbundle-local migrate")
}

/// A template leaves an endpoint variable it declares empty (sam local does, for one that is
/// conditional): empty is no endpoint, never a crash at start-up.
#[tokio::test]
async fn an_empty_endpoint_variable_is_no_endpoint() {
    let settings = harness::stack_settings();
    let database_url = harness::fresh_database(&settings).await;
    let arn = create_secret(&json!({ "DATABASE_URL": database_url }).to_string()).await;

    // A service's own endpoint variable, empty, beside the LocalStack endpoint: the secret is
    // read from LocalStack and the migrations run.
    let output = migrate_with(&arn, &[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");

    // The endpoint itself empty, and the service's: no endpoint override (AWS itself, out of
    // reach here), so start-up fails cleanly, naming the secret, instead of panicking.
    let output = migrate_with(
        &arn,
        &[
            ("AWS_ENDPOINT_URL", ""),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", ""),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("SECRETS_ARN"), "{stderr}");
}
