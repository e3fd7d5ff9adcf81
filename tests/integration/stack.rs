//! Each real service round-trips from Rust through the library's own clients.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use docbundle::config::AuthMode;
use docbundle::domain::outbox::RunMessage;
use reqwest::StatusCode;
use uuid::Uuid;

use crate::harness::{self, TestApp, MERCHANT_A};

/// A cold start opens the database's first connection during init; a request that arrives
/// before it is open waits for it instead of opening a second one beside it, and the pool then
/// grows to its size.
#[tokio::test]
async fn the_first_request_takes_the_connection_opened_during_init() {
    let name = format!("warm-{}", Uuid::new_v4().simple());
    let url =
        format!("postgres://docbundle:docbundle@127.0.0.1:5432/docbundle?application_name={name}");
    let pool = docbundle::infra::db::warmed_pool(&url, 4, Duration::from_secs(5)).unwrap();
    let first = docbundle::infra::db::connection(&pool).await.unwrap();
    let opened = |conn: docbundle::infra::db::Connection| {
        let name = name.clone();
        async move {
            let n: i64 = conn
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get(0);
            n
        }
    };
    assert_eq!(
        opened(first).await,
        1,
        "the first request opened a second connection"
    );

    // Then up to its size at once.
    let held =
        futures::future::try_join_all((0..4).map(|_| docbundle::infra::db::connection(&pool)))
            .await
            .expect("four connections at once");
    assert_eq!(pool.status().max_size, 4);
    drop(held);
    let conn = docbundle::infra::db::connection(&pool).await.unwrap();
    assert_eq!(opened(conn).await, 4);
}

/// `sslmode` in `DATABASE_URL` means what it means to libpq: the local PostgreSQL offers TLS
/// with a certificate from the local CA (`./dev services`), as RDS does with its own.
#[tokio::test]
async fn postgres_connections_honour_sslmode_and_refuse_a_wrong_ca() {
    // Whatever role and TLS options the stack's URL carries (`./dev test-tls`), each case sets
    // its own: the role that may also connect in plaintext.
    let url = "postgres://docbundle:docbundle@127.0.0.1:5432/docbundle";
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tls");
    let with = |query: &str| format!("{url}?{query}");
    let cases = [
        (with("sslmode=disable"), false),
        (url.to_string(), true),
        (with("sslmode=require"), true),
        (
            with(&format!("sslmode=verify-ca&sslrootcert={tls}/ca.pem")),
            true,
        ),
        (
            with(&format!("sslmode=verify-full&sslrootcert={tls}/ca.pem")),
            true,
        ),
    ];
    for (url, encrypted) in &cases {
        let pool = docbundle::infra::db::pool(url, 1, Duration::from_secs(5)).unwrap();
        let conn = docbundle::infra::db::connection(&pool).await.unwrap();
        let ssl: bool = conn
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(ssl, *encrypted, "{url}");
    }
    // Migrations connect the same way.
    docbundle::infra::db::migrate::run(&cases[4].0)
        .await
        .unwrap();

    // A CA that did not sign the server's certificate: refused, fast, naming PostgreSQL.
    let wrong = with(&format!(
        "sslmode=verify-full&sslrootcert={tls}/other-ca.pem"
    ));
    let pool = docbundle::infra::db::pool(&wrong, 1, Duration::from_secs(5)).unwrap();
    let started = std::time::Instant::now();
    let err = docbundle::infra::db::connection(&pool).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = err.to_string();
    assert!(
        message.starts_with("postgres") && message.to_lowercase().contains("certificate"),
        "{message}"
    );
    // A mode libpq does not know is a clear start-up error.
    let bad = docbundle::infra::db::pool(&with("sslmode=sometimes"), 1, Duration::from_secs(5));
    assert!(bad.unwrap_err().to_string().contains("sslmode `sometimes`"));
}

#[tokio::test]
async fn postgres_rows_round_trip_after_migrations() {
    let app = TestApp::spawn().await;
    let id = Uuid::new_v4();
    let created = docbundle::infra::db::merchants::insert(&app.state.db, id, "Round Trip GmbH")
        .await
        .unwrap()
        .expect("inserted");
    let found = docbundle::infra::db::merchants::find(&app.state.db, id)
        .await
        .unwrap()
        .expect("found");
    assert_eq!(found, created);
    assert_eq!(found.name, "Round Trip GmbH");
    assert_eq!(found.status, "active");
    // A second insert with the same id changes nothing.
    assert!(
        docbundle::infra::db::merchants::insert(&app.state.db, id, "Other")
            .await
            .unwrap()
            .is_none()
    );
    // Migrations are idempotent: a second run applies nothing.
    let again = docbundle::infra::db::migrate::run(&app.state.settings.database_url)
        .await
        .unwrap();
    assert!(again.is_empty(), "re-applied {again:?}");
}

#[tokio::test]
async fn schema_refuses_a_completed_run_without_a_manifest() {
    let app = TestApp::spawn().await;
    let mut conn = app.state.db.get().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    let merchant = Uuid::parse_str(MERCHANT_A).unwrap();
    let config = Uuid::new_v4();
    tx.execute(
        "INSERT INTO configurations (id, merchant_id, name, current_version, created_by) VALUES ($1, $2, 'c', 1, 't')",
        &[&config, &merchant],
    )
    .await
    .unwrap();
    tx.execute(
        "INSERT INTO configuration_versions (configuration_id, version, merchant_id, name, documents, created_by)
         VALUES ($1, 1, $2, 'c', '[]', 't')",
        &[&config, &merchant],
    )
    .await
    .unwrap();
    let hash = "a".repeat(64);
    tx.execute(
        "INSERT INTO seeds (merchant_id, hash, canonical, size_bytes) VALUES ($1, $2, '{}', 2)",
        &[&merchant, &hash],
    )
    .await
    .unwrap();
    tx.execute(
        "INSERT INTO bundle_runs (id, merchant_id, configuration_id, configuration_version, seed_hash,
                                  status, triggered_by_type, triggered_by_id, started_at, completed_at)
         VALUES ($1, $2, $3, 1, $4, 'completed', 'user', 't', now(), now())",
        &[&Uuid::new_v4(), &merchant, &config, &hash],
    )
    .await
    .unwrap();
    let err = tx
        .commit()
        .await
        .expect_err("completed without manifest must not commit");
    assert!(
        err.to_string().contains("manifest") || format!("{err:?}").contains("manifest"),
        "{err:?}"
    );
}

/// The TLS-only role (`./dev test-tls` connects as it, as to RDS with `rds.force_ssl`): pg_hba
/// refuses it in plaintext, naming the reason, and admits it over verified TLS.
#[tokio::test]
async fn postgres_admits_the_tls_only_role_over_tls_only() {
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tls");
    let url = "postgres://docbundle_tls:docbundle_tls@127.0.0.1:5432/docbundle";
    let plain =
        docbundle::infra::db::pool(&format!("{url}?sslmode=disable"), 1, Duration::from_secs(5))
            .unwrap();
    let message = docbundle::infra::db::connection(&plain)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("postgres") && message.contains("no encryption"),
        "{message}"
    );
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={tls}/ca.pem");
    let pool = docbundle::infra::db::pool(&verified, 1, Duration::from_secs(5)).unwrap();
    let conn = docbundle::infra::db::connection(&pool).await.unwrap();
    let row = conn
        .query_one(
            "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "docbundle_tls");
}

/// `rediss://` (ElastiCache with in-transit encryption): the local Redis's TLS port, trusted
/// through the configured CA; another CA is refused with a message naming Redis.
#[tokio::test]
async fn redis_over_tls_trusts_the_configured_ca_only() {
    use docbundle::infra::cache::Cache;
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tls");
    let cache = Cache::new("rediss://127.0.0.1:6380", Duration::from_secs(2))
        .with_ca_file(Some(format!("{tls}/ca.pem")));
    let key = format!("tests:tls:{}", Uuid::new_v4());
    cache
        .set_with_ttl(&key, "over tls", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(cache.get(&key).await.unwrap().as_deref(), Some("over tls"));
    // The TLS server speaks nothing else.
    let plain = Cache::new("redis://127.0.0.1:6380", Duration::from_secs(2));
    assert!(plain.get(&key).await.is_err(), "plaintext answered on 6380");

    let wrong = Cache::new("rediss://127.0.0.1:6380", Duration::from_secs(2))
        .with_ca_file(Some(format!("{tls}/other-ca.pem")));
    let started = std::time::Instant::now();
    let message = wrong.get(&key).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        message.starts_with("redis") && message.to_lowercase().contains("certificate"),
        "{message}"
    );
}

/// Vault over HTTPS with an organisation's CA (`VAULT_CACERT`): the local OpenBao's TLS
/// listener signs a manifest through the configured CA; another CA is refused, naming Vault.
#[tokio::test]
async fn vault_over_https_trusts_the_configured_ca_only() {
    use docbundle::infra::secrets::Vault;
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tls");
    let mut settings = harness::stack_settings().vault;
    settings.addr = "https://127.0.0.1:8210".to_owned();
    settings.ca_cert = Some(format!("{tls}/ca.pem"));
    let vault = Vault::new(settings.clone(), Duration::from_secs(5));
    let signature = vault.sign(b"over https").await.unwrap();
    assert!(!signature.signature.is_empty());
    let mut plain = settings.clone();
    plain.addr = "http://127.0.0.1:8210".to_owned();
    let plain = Vault::new(plain, Duration::from_secs(5));
    assert!(
        plain.sign(b"in plaintext").await.is_err(),
        "plaintext answered on 8210"
    );

    settings.ca_cert = Some(format!("{tls}/other-ca.pem"));
    let wrong = Vault::new(settings, Duration::from_secs(5));
    let started = std::time::Instant::now();
    let message = wrong.sign(b"over https").await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        message.starts_with("vault") && message.to_lowercase().contains("certificate"),
        "{message}"
    );
}

#[tokio::test]
async fn s3_objects_round_trip_and_presigned_urls_are_checked() {
    let app = TestApp::spawn().await;
    let key = format!("tests/{}/hello.txt", Uuid::new_v4());
    let body = b"hello, bundle".to_vec();
    let stored = app
        .state
        .store
        .put(&key, body.clone(), "text/plain")
        .await
        .unwrap();
    assert_eq!(stored.size, body.len() as u64);
    assert_eq!(stored.sha256, docbundle::domain::digest::sha256_hex(&body));
    assert_eq!(app.state.store.get(&key).await.unwrap(), Some(body.clone()));
    assert_eq!(
        app.state
            .store
            .get(&format!("{key}.missing"))
            .await
            .unwrap(),
        None
    );

    let url = app
        .state
        .store
        .presign_get(&key, Duration::from_secs(60))
        .await
        .unwrap();
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), body.as_slice());

    // Point the signed URL at another key: the signature no longer matches.
    let tampered = url.replace("hello.txt", "other.txt");
    assert_ne!(tampered, url);
    let response = reqwest::get(&tampered).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sqs_messages_reach_the_worker_path_and_only_successes_are_deleted() {
    let app = TestApp::spawn().await;
    let good = RunMessage {
        run_id: Uuid::new_v4(),
        merchant_id: Uuid::parse_str(MERCHANT_A).unwrap().into(),
    };
    app.state.queue.send(&good).await.unwrap();
    let sqs = harness::sqs_client(&app.state).await;
    sqs.send_message()
        .queue_url(app.state.queue.queue_url())
        .message_body("this is not a run message")
        .send()
        .await
        .unwrap();

    let mut received = 0;
    let mut failed = 0;
    for _ in 0..10 {
        let (r, f) = docbundle_local::poller::poll_once(&app.state, Duration::from_secs(1))
            .await
            .unwrap();
        received += r;
        failed += f;
        if received >= 2 {
            break;
        }
    }
    assert_eq!(received, 2, "both messages delivered to the worker");
    assert_eq!(
        failed, 1,
        "the malformed message is reported as a batch item failure"
    );

    // After the visibility timeout only the failed message comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = app
        .state
        .queue
        .receive(10, Duration::from_secs(2))
        .await
        .unwrap();
    let bodies: Vec<_> = again.iter().filter_map(|m| m.body.clone()).collect();
    assert_eq!(bodies, vec!["this is not a run message".to_owned()]);
}

#[tokio::test]
async fn vault_transit_signatures_verify_against_the_public_key() {
    let app = TestApp::spawn().await;
    let message = br#"{"schema":"docbundle.manifest/v1"}"#;
    let signature = app.state.vault.sign(message).await.unwrap();
    assert!(signature.key_version >= 1);
    assert!(app.state.vault.verify(message, &signature).await.unwrap());
    assert!(!app
        .state
        .vault
        .verify(b"tampered", &signature)
        .await
        .unwrap());

    // Offline: the public key alone verifies the signature, as any user would.
    let keys = app.state.vault.public_keys().await.unwrap();
    let key = keys
        .iter()
        .find(|k| k.version == signature.key_version)
        .expect("public key of the signing version");
    let public: [u8; 32] = BASE64.decode(&key.public_key).unwrap().try_into().unwrap();
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    let sig_bytes: [u8; 64] = BASE64
        .decode(&signature.signature)
        .unwrap()
        .try_into()
        .unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
    assert!(verifying.verify_strict(message, &sig).is_ok());
    assert!(verifying.verify_strict(b"tampered", &sig).is_err());
}

#[tokio::test]
async fn vault_kv_secrets_round_trip() {
    let app = TestApp::spawn().await;
    let path = format!("docbundle/tests/{}", Uuid::new_v4());
    let value = serde_json::json!({"secret": "whsec_abc"});
    app.state.vault.put_secret(&path, &value).await.unwrap();
    let read: Option<serde_json::Value> = app.state.vault.get_secret(&path).await.unwrap();
    assert_eq!(read, Some(value));
    let missing: Option<serde_json::Value> = app
        .state
        .vault
        .get_secret(&format!("{path}-missing"))
        .await
        .unwrap();
    assert_eq!(missing, None);
}

#[tokio::test]
async fn redis_values_are_set_with_a_ttl() {
    let app = TestApp::spawn().await;
    let key = format!("docbundle:test:{}", Uuid::new_v4());
    app.state
        .cache
        .set_with_ttl(&key, "v", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        app.state.cache.get(&key).await.unwrap().as_deref(),
        Some("v")
    );
    let ttl = app.state.cache.ttl(&key).await.unwrap().expect("has a ttl");
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn issuer_tokens_verify_locally_via_jwks() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let principal = app
        .state
        .auth
        .authenticate(&token)
        .await
        .expect("valid token");
    assert_eq!(principal.merchant_id.unwrap().to_string(), MERCHANT_A);
    assert!(principal.has_scope(docbundle::domain::Scope::BundleWrite));
    assert_eq!(principal.client_id.as_deref(), Some("merchant-a"));
}

#[tokio::test]
async fn issuer_tokens_verify_via_introspection() {
    let app = TestApp::spawn_with(|s| s.auth.mode = AuthMode::Introspection).await;
    let token = harness::token("merchant-a-reader").await;
    let before = harness::issuer_stats().await["introspections"];
    let principal = app
        .state
        .auth
        .authenticate(&token)
        .await
        .expect("active token");
    assert_eq!(principal.merchant_id.unwrap().to_string(), MERCHANT_A);
    assert!(principal.has_scope(docbundle::domain::Scope::BundleRead));
    assert!(!principal.has_scope(docbundle::domain::Scope::BundleWrite));
    let after = harness::issuer_stats().await["introspections"];
    assert!(after > before, "the issuer was asked");

    // A token the issuer never issued is inactive.
    let forged = token[..token.len() - 4].to_owned() + "AAAA";
    let err = app.state.auth.authenticate(&forged).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 401);
}

#[tokio::test]
async fn the_api_answers_with_and_without_a_token() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(app.url("/api/v1/configurations"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let token = harness::token("merchant-a").await;
    let response = app
        .http
        .get(app.url("/api/v1/nowhere"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn an_unreachable_dependency_fails_fast_and_is_named() {
    let mut settings = harness::stack_settings();
    settings.vault.addr = "http://127.0.0.1:9".to_owned();
    settings.dependency_timeout = Duration::from_secs(2);
    let state = docbundle::AppState::build(settings).await.unwrap();
    let started = std::time::Instant::now();
    let err = state.vault.sign(b"x").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.dependency, "vault");
    assert!(err.to_string().contains("approle login"), "{err}");
}

#[test]
fn a_missing_variable_stops_the_binary_with_its_name() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_docbundle-local"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .output()
        .expect("run docbundle-local");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_database_is_named_at_migration() {
    let started = std::time::Instant::now();
    let err = docbundle::infra::db::migrate::run(
        "postgres://docbundle:docbundle@127.0.0.1:9/docbundle?connect_timeout=2",
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("PostgreSQL"), "{err}");
}

#[tokio::test]
async fn a_long_poll_may_outlast_the_dependency_timeout() {
    let app = TestApp::spawn().await;
    let state = app
        .state_with(|s| s.dependency_timeout = Duration::from_secs(1))
        .await;
    let started = std::time::Instant::now();
    let messages = state
        .queue
        .receive(10, Duration::from_secs(3))
        .await
        .expect("an empty long poll is not an error");
    assert!(messages.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it really waited"
    );
    // A message sent during the wait is delivered to that same poll.
    let sender = state.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sender
            .queue
            .send(&RunMessage {
                run_id: Uuid::new_v4(),
                merchant_id: Uuid::new_v4().into(),
            })
            .await
            .unwrap();
    });
    let messages = state
        .queue
        .receive(10, Duration::from_secs(4))
        .await
        .unwrap();
    send.await.unwrap();
    assert_eq!(messages.len(), 1);
}
