//! Preview: a draft or a saved version rendered synchronously, by the code a run uses, with
//! nothing stored; the same `422` details as a save; rate-limited; tenancy and scopes.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::configurations::{create, invoice_configuration};
use crate::harness::{self, download, TestApp};

async fn preview(app: &TestApp, token: &str, path: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn content_type(response: &reqwest::Response) -> String {
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_draft_previews_as_a_pdf_an_html_or_a_zip_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let reader = harness::token("merchant-a-reader").await;
    let draft = json!({"configuration": invoice_configuration()});
    let response = preview(
        &app,
        &reader,
        "/api/v1/configurations/preview?document=invoice.pdf",
        &draft,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/pdf");
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(response.headers().get("docbundle-unsigned").is_none());
    assert!(response.bytes().await.unwrap().starts_with(b"%PDF-"));

    // A document a run signs previews unsigned, and the answer says so.
    let signed = json!({"configuration": crate::signatures::signed_invoice("B-T")});
    let response = preview(&app, &reader, "/api/v1/configurations/preview", &signed).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["docbundle-unsigned"], "invoice.pdf");

    let html = json!({"configuration": {"name": "Letter", "documents": [
        {"name": "letter.html", "format": "html", "template": "<p>Dear {{ data.name }}</p>"}]},
        "seed": {"name": "<Ada>"}});
    let response = preview(&app, &reader, "/api/v1/configurations/preview", &html).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/zip");
    let zip = response.bytes().await.unwrap().to_vec();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("letter.html").unwrap(), &mut text).unwrap();
    assert_eq!(text, "<p>Dear &lt;Ada&gt;</p>");
    let response = preview(
        &app,
        &reader,
        "/api/v1/configurations/preview?document=letter.html",
        &html,
    )
    .await;
    assert_eq!(content_type(&response), "text/html; charset=utf-8");

    let token = harness::token("merchant-a").await;
    let listed = app.get_json("/api/v1/configurations", &token).await;
    assert_eq!(listed["items"], json!([]), "a preview saves nothing");
    let runs = app.get_json("/api/v1/bundles", &token).await;
    assert_eq!(runs["items"], json!([]), "and launches nothing");
}

#[tokio::test]
async fn a_broken_draft_gets_the_same_details_as_a_save() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    // A seed is a JSON object, as the schema says.
    let not_an_object = json!({"configuration": {"name": "T", "documents": [{"name": "a.txt", "format": "txt", "template": "hi"}]}, "seed": true});
    let response = preview(
        &app,
        &token,
        "/api/v1/configurations/preview",
        &not_an_object,
    )
    .await;
    let refused = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(refused["error"]["details"][0]["field"], "seed", "{refused}");
    let mut broken = invoice_configuration();
    broken["documents"][0]["template"] =
        json!("#let data = json(\"data.json\")\n= Invoice #data.number(");
    broken["documents"][1]["template"] = json!("{% for l in data.lines %}");
    let saved = create(&app, &token, &broken).await;
    let saved =
        harness::assert_envelope(saved, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
            .await;
    let previewed = preview(
        &app,
        &token,
        "/api/v1/configurations/preview",
        &json!({"configuration": broken}),
    )
    .await;
    let previewed = harness::assert_envelope(
        previewed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(previewed["error"]["details"], saved["error"]["details"]);
    assert!(!previewed["error"]["details"].as_array().unwrap().is_empty());

    // A seed the schema refuses, an unknown document, a seed the template fails on.
    let draft = invoice_configuration();
    let response = preview(
        &app,
        &token,
        "/api/v1/configurations/preview",
        &json!({"configuration": draft, "seed": {"number": 7}}),
    )
    .await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(
        body["error"]["details"][0]["field"]
            .as_str()
            .unwrap()
            .starts_with("seed"),
        "{body}"
    );
    let response = preview(
        &app,
        &token,
        "/api/v1/configurations/preview?document=nope.pdf",
        &json!({"configuration": invoice_configuration()}),
    )
    .await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["field"], "document");
    let fails = json!({"configuration": {"name": "Fails", "defaults": {"fail": false}, "documents": [
        {"name": "a.pdf", "format": "pdf", "template": "#let data = json(\"data.json\")\n#if data.fail { panic(\"asked to fail\") }\nHi"}]},
        "seed": {"fail": true}});
    let response = preview(&app, &token, "/api/v1/configurations/preview", &fails).await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        body["error"]["details"][0]["field"],
        "documents[0].template"
    );
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{body}"
    );
}

#[tokio::test]
async fn a_saved_version_previews_byte_identical_to_its_run() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let created: Value = create(&app, &token, &invoice_configuration())
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let seed = json!({"number": "INV-9", "customer": {"name": "Acme", "address": "Main St 1"},
        "period": "2026-11", "currency": "EUR", "lines": [{"description": "A", "quantity": 2, "unitPrice": 3.5}]});
    let response = preview(
        &app,
        &token,
        &format!("/api/v1/configurations/{id}/preview?document=invoice.pdf"),
        &json!({"seed": seed}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let previewed = response.bytes().await.unwrap().to_vec();
    let run: Value = app
        .launch(&token, &json!({"configurationId": id, "seed": seed}))
        .await
        .json()
        .await
        .unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    let pdf = done["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap();
    assert_eq!(
        download(pdf["downloadUrl"].as_str().unwrap()).await,
        previewed
    );
    let response = preview(
        &app,
        &token,
        &format!("/api/v1/configurations/{id}/preview"),
        &json!({"version": 1, "seed": seed}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), "application/zip");
    let response = preview(
        &app,
        &token,
        &format!("/api/v1/configurations/{id}/preview"),
        &json!({"version": 2}),
    )
    .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // Another merchant's configuration does not exist for this caller; no token, no preview.
    let other = harness::token("merchant-b").await;
    let response = preview(
        &app,
        &other,
        &format!("/api/v1/configurations/{id}/preview"),
        &json!({}),
    )
    .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let response = app
        .http
        .post(app.url("/api/v1/configurations/preview"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = preview(
        &app,
        &token,
        &format!("/api/v1/configurations/{}/preview", Uuid::new_v4()),
        &json!({}),
    )
    .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn previews_are_rate_limited_and_hostile_bodies_are_4xx() {
    let app = TestApp::spawn_with(|s| s.preview_rate_limit_per_minute = 5).await;
    // The window's counter is per merchant, across every app on this Redis: merchant B, whom
    // the other preview tests barely use.
    let token = harness::token("merchant-b").await;
    let draft = json!({"configuration": {"name": "T", "documents": [{"name": "a.txt", "format": "txt", "template": "hi"}]}});
    // Hostile bodies first (each still counts).
    let deep = format!(
        "{{\"configuration\": {}1{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    for (raw, status) in [
        (deep, StatusCode::BAD_REQUEST),
        (
            "{\"configuration\": {\"name\": \"x\u{0}\", \"documents\": []}, \"nope\": 1}"
                .to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{{\"seed\": \"{}\"}}", "a".repeat(2 << 20)),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/configurations/preview"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["requestId"].is_string(), "{body}");
    }
    // A runaway template is stopped by the same limits as a save.
    let runaway = json!({"configuration": {"name": "Loop", "documents": [{"name": "a.txt", "format": "txt",
        "template": "{% for i in range(1000000000) %}{{ i }}{% endfor %}"}]}});
    let response = preview(&app, &token, "/api/v1/configurations/preview", &runaway).await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    let mut last = StatusCode::OK;
    for _ in 0..6 {
        last = preview(&app, &token, "/api/v1/configurations/preview", &draft)
            .await
            .status();
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let response = preview(&app, &token, "/api/v1/configurations/preview", &draft).await;
    assert!(response.headers().contains_key("retry-after"));
    harness::assert_envelope(response, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
}
