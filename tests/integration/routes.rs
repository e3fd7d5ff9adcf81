//! The routes `template.yaml` declares and the ones the functions serve are the same, and the
//! functions answer real API Gateway events.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use tower::ServiceExt;
use yaml_serde::Value as Yaml;

use crate::harness::{self, TestApp};

fn template_routes() -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    let doc: Yaml = yaml_serde::from_str(&text).expect("template parses");
    let mut routes = BTreeSet::new();
    let resources = doc["Resources"].as_mapping().expect("Resources");
    for (_, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("every function names its binary")
            .to_owned();
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let props = &event["Properties"];
                routes.insert((
                    binary.clone(),
                    props["Method"].as_str().unwrap().to_uppercase(),
                    props["Path"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    routes
}

fn declared_routes() -> BTreeSet<(String, String, String)> {
    docbundle_local::declared_routes()
        .into_iter()
        .flat_map(|(function, routes)| {
            routes
                .iter()
                .map(move |(m, p)| (function.to_owned(), m.to_string(), p.to_string()))
        })
        .collect()
}

#[test]
fn template_and_functions_declare_the_same_routes() {
    let template = template_routes();
    let declared = declared_routes();
    let only_template: Vec<_> = template.difference(&declared).collect();
    let only_code: Vec<_> = declared.difference(&template).collect();
    assert!(
        only_template.is_empty() && only_code.is_empty(),
        "only in template.yaml: {only_template:?}\nonly in the functions: {only_code:?}"
    );
    assert!(template.len() >= 19, "{template:?}");
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    for name in [
        "launch-bundle",
        "read-api",
        "configurations",
        "inbound-webhooks",
        "merchants",
        "bundle-worker",
        "scheduler",
        "dead-letters",
    ] {
        assert!(
            text.contains(&format!("Binary: {name}")),
            "{name} missing from template.yaml"
        );
        let manifest = format!("{}/functions/{name}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
        assert!(std::path::Path::new(&manifest).exists(), "{manifest}");
    }
}

/// Every declared route reaches its handler on the composed local app: an unauthenticated call
/// meets the auth check (or, for webhooks, the handler) rather than the unknown-route fallback.
#[tokio::test]
async fn every_declared_route_is_served_by_the_local_api() {
    let app = TestApp::spawn().await;
    for (function, method, path) in declared_routes() {
        let concrete = path
            .replace("{id}", "5f0c8a9e-1d2b-4c3a-9e8f-7a6b5c4d3e2f")
            .replace("{version}", "1")
            .replace("{merchantId}", harness::MERCHANT_A)
            .replace("{sourceId}", "0d9c8b7a-6f5e-4d3c-8b2a-1f0e9d8c7b6a");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), app.url(&concrete))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_ne!(
            body["error"]["message"], "No such route",
            "{function} {method} {path}"
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{function} {method} {path}"
        );
        if path == "/api/v1/openapi.json" {
            assert_eq!(status, StatusCode::OK, "the document needs no token");
            assert_eq!(body["openapi"], "3.1.0");
        } else if function != "inbound-webhooks" {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{function} {method} {path}: {body}"
            );
        }
    }
}

/// A function's own app answers the sample API Gateway event from `events/`, with API
/// Gateway's request id in the envelope and header.
#[tokio::test]
async fn functions_answer_sample_api_gateway_events() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let raw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/events/get-run.json"))
        .unwrap()
        .replace("REPLACE_WITH_A_TOKEN", &token);
    let request = lambda_http::request::from_str(&raw).expect("API Gateway v2 event");
    let response = read_api::app(app.state.clone())
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(request_id, "Jk3vXgNFoAMEVbw=");
    // Without the token the same event is refused in the envelope.
    let raw = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/events/get-run.json"))
        .unwrap();
    let request = lambda_http::request::from_str(&raw).unwrap();
    let response = read_api::app(app.state.clone())
        .oneshot(request.map(axum::body::Body::new))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["requestId"], "Jk3vXgNFoAMEVbw=");
}

fn template() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml"))
        .expect("template.yaml");
    yaml_serde::from_str(&text).expect("template parses")
}

/// The name a CloudFormation `!Ref` points at.
fn reference(value: &Yaml) -> Option<&str> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => value["Ref"].as_str(),
    }
}

fn functions(doc: &Yaml) -> Vec<(String, &Yaml)> {
    doc["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r))
        .collect()
}

/// No credential is a parameter the console shows or an environment variable: the functions
/// read them from the one secret `SecretsArn` names, and each may read exactly that secret.
#[test]
fn credentials_come_from_the_secret_and_each_function_may_read_exactly_it() {
    let doc = template();
    let env = doc["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .expect("global environment");
    // Always credentials: never in the environment. REDIS_URL and VAULT_ROLE_ID may be a
    // parameter, or empty (their default) when the secret holds them.
    for secret in ["DATABASE_URL", "VAULT_SECRET_ID", "OIDC_CLIENT_SECRET"] {
        assert!(
            env.get(secret).is_none(),
            "{secret} in the functions' environment"
        );
    }
    let parameters = doc["Parameters"].as_mapping().unwrap();
    for (variable, parameter) in [("REDIS_URL", "RedisUrl"), ("VAULT_ROLE_ID", "VaultRoleId")] {
        assert_eq!(env.get(variable).and_then(reference), Some(parameter));
        assert_eq!(
            parameters[parameter]["Default"].as_str(),
            Some(""),
            "{parameter} must be optional, for a secret that holds {variable}"
        );
    }
    assert_eq!(
        env.get("SECRETS_ARN").and_then(reference),
        Some("SecretsArn")
    );
    for (name, parameter) in parameters {
        assert!(
            parameter.get("NoEcho").is_none(),
            "parameter {name:?} is a secret: put it in the secret instead"
        );
    }
    for (name, function) in functions(&doc) {
        let grants: Vec<&Yaml> = function["Properties"]["Policies"]
            .as_sequence()
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        let secret_grants: Vec<_> = grants
            .iter()
            .filter_map(|g| g.get("AWSSecretsManagerGetSecretValuePolicy"))
            .collect();
        assert_eq!(secret_grants.len(), 1, "{name}: {grants:?}");
        assert_eq!(
            reference(&secret_grants[0]["SecretArn"]),
            Some("SecretsArn"),
            "{name}"
        );
    }
}

/// Every function logs as JSON to a log group of its own whose retention is set.
#[test]
fn every_function_logs_to_its_own_group_with_a_retention() {
    let doc = template();
    let resources = &doc["Resources"];
    let mut groups = BTreeSet::new();
    for (name, function) in functions(&doc) {
        let logging = &function["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"].as_str(), Some("JSON"), "{name}");
        let group =
            reference(&logging["LogGroup"]).unwrap_or_else(|| panic!("{name} names no log group"));
        assert!(groups.insert(group.to_owned()), "{group} shared");
        assert_eq!(
            resources[group]["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{group}"
        );
        assert_eq!(
            reference(&resources[group]["Properties"]["RetentionInDays"]),
            Some("LogRetentionDays"),
            "{group}"
        );
    }
    assert_eq!(groups.len(), 10);
}

/// What ships is arm64; x86_64 only when asked for (`./dev sam` on an x86_64 machine), with
/// no function pinning its own architecture past the parameter.
#[test]
fn the_functions_are_arm64_unless_the_architecture_parameter_says_otherwise() {
    let doc = template();
    let parameter = &doc["Parameters"]["Architecture"];
    assert_eq!(parameter["Default"].as_str(), Some("arm64"));
    let allowed: Vec<&str> = parameter["AllowedValues"]
        .as_sequence()
        .expect("AllowedValues")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(allowed, ["arm64", "x86_64"]);
    let architectures = doc["Globals"]["Function"]["Architectures"]
        .as_sequence()
        .expect("Architectures");
    assert_eq!(architectures.len(), 1);
    assert_eq!(reference(&architectures[0]), Some("Architecture"));
    for (name, function) in functions(&doc) {
        assert!(
            function["Properties"].get("Architectures").is_none(),
            "{name} pins its architecture"
        );
    }
}

/// The three views of the API agree: the OpenAPI document's operations, the routes the
/// functions serve (checked against their routers above) and the routes `template.yaml`
/// declares.
#[test]
fn the_openapi_document_the_routers_and_the_template_name_the_same_routes() {
    let document = docbundle_local::openapi();
    let documented: BTreeSet<(String, String)> = document
        .paths
        .paths
        .iter()
        .flat_map(|(path, item)| {
            [
                ("GET", item.get.is_some()),
                ("PUT", item.put.is_some()),
                ("POST", item.post.is_some()),
                ("DELETE", item.delete.is_some()),
                ("PATCH", item.patch.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
            ]
            .into_iter()
            .filter(|(_, present)| *present)
            .map(move |(method, _)| (method.to_owned(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = declared_routes()
        .into_iter()
        .map(|(_, m, p)| (m, p))
        .collect();
    let declared: BTreeSet<(String, String)> = template_routes()
        .into_iter()
        .map(|(_, m, p)| (m, p))
        .collect();
    // API Gateway's greedy `{path+}` (the rest of the path, slashes and all) is a plain
    // `{path}` parameter to OpenAPI, which has no such kind.
    let greedy: BTreeSet<(String, String)> = served
        .iter()
        .map(|(m, p)| (m.clone(), p.replace("+}", "}")))
        .collect();
    assert_eq!(documented, greedy, "the document against the routers");
    assert_eq!(served, declared, "the routers against template.yaml");
}

/// `openapi.json` is what the code describes: regenerate it with `docbundle-local openapi`.
#[test]
fn the_committed_openapi_json_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"))
        .expect("openapi.json");
    assert!(
        committed == docbundle_local::openapi_json(),
        "openapi.json is stale: run `cargo run --bin docbundle-local -- openapi`"
    );
}

/// Every operation says who may call it and answers errors in the envelope.
#[test]
fn every_operation_names_its_security_and_its_error_answers() {
    let document: serde_json::Value =
        serde_json::from_str(&docbundle_local::openapi_json()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["oauth2"]["type"], "oauth2");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let security = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no security"));
            let public = path == "/api/v1/openapi.json" || path.starts_with("/api/v1/webhooks/");
            if public {
                assert_eq!(security, &vec![serde_json::json!({})], "{method} {path}");
            } else {
                let scopes = security[0]["oauth2"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path}: {security:?}"));
                // Public keys and trust roots: any valid token.
                if path != "/api/v1/signing-keys" && path != "/api/v1/trust-roots" {
                    assert_eq!(scopes.len(), 1, "{method} {path}: one scope");
                }
            }
            if path != "/api/v1/openapi.json" {
                let error = &operation["responses"]["4XX"]["content"]["application/json"]["schema"];
                assert_eq!(
                    error["$ref"], "#/components/schemas/ErrorEnvelope",
                    "{method} {path}"
                );
            }
        }
    }
}
