//! The edge's own tests: extractors and the request frame.

use axum::http::{header, StatusCode};
use axum::Router;

use crate::extract::{data_error_field, nul_path};
use crate::*;

#[test]
fn integers_are_json_schema_integers() {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "integral_i32")]
        version: Option<i32>,
    }
    let version = |raw: &str| {
        serde_json::from_str::<Body>(raw)
            .map(|b| b.version)
            .map_err(|e| e.to_string())
    };
    assert_eq!(version(r#"{"version": 134217728.0}"#), Ok(Some(134217728)));
    assert_eq!(version(r#"{"version": 3e0}"#), Ok(Some(3)));
    assert_eq!(version(r#"{"version": 7}"#), Ok(Some(7)));
    assert_eq!(version(r#"{"version": null}"#), Ok(None));
    assert_eq!(version("{}"), Ok(None));
    for hostile in [
        "2.5",
        "2147483648",
        "1e300",
        "-1e20",
        "\"3\"",
        "99999999999999999999",
    ] {
        let err = version(&format!(r#"{{"version": {hostile}}}"#)).unwrap_err();
        assert!(
            err.contains("integer") || err.contains("invalid type"),
            "{hostile}: {err}"
        );
    }
}
use axum::body::Body;
use axum::routing::post;
use tower::ServiceExt;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Body1 {
    name: String,
}

fn app() -> Router {
    let router = Router::new().route(
        "/things",
        post(|ApiJson(b): ApiJson<Body1>| async move { b.name }),
    );
    finish_router(router, 64)
}

async fn send(req: axum::http::Request<Body>) -> (StatusCode, Option<String>, serde_json::Value) {
    let response = app().oneshot(req).await.unwrap();
    let status = response.status();
    let id = response
        .headers()
        .get(&REQUEST_ID_HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, id, json)
}

fn post_json(body: &str) -> axum::http::Request<Body> {
    axum::http::Request::post("/things")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn malformed_json_is_400_in_the_envelope_with_the_request_id() {
    let (status, id, body) = send(post_json("{nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "INVALID_JSON");
    assert_eq!(body["error"]["requestId"].as_str(), id.as_deref());
    assert!(id.is_some());
}

#[tokio::test]
async fn unknown_fields_are_422_naming_the_problem() {
    let (status, _, body) = send(post_json(r#"{"name":"a","extra":1}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("extra"));
}

#[test]
fn data_errors_name_the_field() {
    assert_eq!(
        data_error_field("Failed to deserialize the JSON body into the target type: documents[2].format: unknown variant `docx` at line 1 column 9"),
        ("documents[2].format".to_owned(), "unknown variant `docx` at line 1 column 9".to_owned())
    );
    assert_eq!(
        data_error_field("Failed to deserialize the JSON body into the target type: missing field `name` at line 1 column 2").0,
        "body"
    );
}

#[tokio::test]
async fn nul_characters_are_422_naming_the_field() {
    let (status, _, body) = send(post_json(r#"{"name":"a\u0000b"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "name");
    let nested =
        serde_json::json!({"documents": [{"t": "ok"}, {"t": "x\u{0}"}], "defaults": {"k\u{0}": 1}});
    assert_eq!(
        nul_path(&nested, &mut Vec::new()).as_deref(),
        Some("defaults.k\\u0000")
    );
    let only_list = serde_json::json!({"documents": [{"t": "ok"}, {"t": "x\u{0}"}]});
    assert_eq!(
        nul_path(&only_list, &mut Vec::new()).as_deref(),
        Some("documents[1].t")
    );
    assert_eq!(
        nul_path(&serde_json::json!("\u{0}"), &mut Vec::new()).as_deref(),
        Some("body")
    );
    // An escaped backslash followed by `u0000` is not a NUL.
    let (status, _, _) = send(post_json(r#"{"name":"a\\u0000b"}"#)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_is_uncacheable_and_unsniffable() {
    let response = app()
        .oneshot(
            axum::http::Request::get("/nowhere")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(100));
    let (status, _, body) = send(post_json(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn unknown_routes_and_methods_use_the_envelope() {
    let (status, _, body) = send(
        axum::http::Request::get("/nowhere")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND");
    let (status, _, body) = send(
        axum::http::Request::get("/things")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn a_sane_caller_request_id_is_kept_and_a_hostile_one_replaced() {
    let req = axum::http::Request::get("/nowhere")
        .header("x-request-id", "abc-123")
        .body(Body::empty())
        .unwrap();
    let (_, id, body) = send(req).await;
    assert_eq!(id.as_deref(), Some("abc-123"));
    assert_eq!(body["error"]["requestId"], "abc-123");

    let req = axum::http::Request::get("/nowhere")
        .header("x-request-id", "a b<script>")
        .body(Body::empty())
        .unwrap();
    let (_, id, _) = send(req).await;
    assert_ne!(id.as_deref(), Some("a b<script>"));
}
