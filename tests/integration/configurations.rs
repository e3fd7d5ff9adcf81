//! The configurations API end to end: validation, versions, optimistic concurrency, tenancy,
//! paging.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, TestApp, MERCHANT_A};

/// The invoice sample (`events/samples/invoice-configuration.json`): a PDF/A-2b invoice and
/// a CSV of its lines.
pub fn invoice_configuration() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/samples/invoice-configuration.json"
        ))
        .unwrap(),
    )
    .unwrap()
}

pub fn statement_config(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Monthly statement pack",
        "documents": [
            {"name": "statement.html", "format": "html", "template": "<h1>{{ data.merchant.name }}</h1>\n<p>{{ data.period }}</p>\n"},
            {"name": "lines.csv", "format": "csv", "template": "description,amount\n{% for l in data.lines %}\n{{ l.description }},{{ l.amount }}\n{% endfor %}\n"},
            {"name": "summary.json", "format": "json", "template": "{\"merchant\": {{ data.merchant.name }}, \"lines\": {{ data.lines|length }}}"}
        ],
        "dataSchema": {
            "type": "object",
            "required": ["merchant", "period"],
            "properties": {
                "merchant": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "period": {"type": "string"},
                "lines": {"type": "array", "items": {"type": "object", "required": ["description", "amount"]}}
            }
        },
        "defaults": {"merchant": {"name": "Example Ltd"}, "period": "2026-01", "lines": []},
        "triggers": ["statement.period_closed"],
        "archive": true
    })
}

pub async fn create(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/configurations"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Creates `body` (asserting `201`) and returns the configuration's id.
pub async fn created_id(app: &TestApp, token: &str, body: &Value) -> String {
    let response = create(app, token, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_read_and_version_history() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let response = create(&app, &token, &statement_config("Statements")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/configurations/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(etag, "\"v1\"");
    assert_eq!(created["merchantId"], MERCHANT_A);
    assert_eq!(created["version"], 1);
    assert_eq!(created["status"], "active");
    assert_eq!(created["createdBy"], "service-account-merchant-a");
    assert_eq!(created["documents"][1]["format"], "csv");
    assert!(created["createdAt"].is_string() && created["updatedAt"].is_string());

    let read: Value = app.get_json(&location, &token).await;
    assert_eq!(read, created);

    // Two updates: versions 2 and 3; version 1 stays as it was.
    let mut body = statement_config("Statements v2");
    body["documents"][0]["template"] = json!("<h2>{{ data.merchant.name }}</h2>");
    let response = app
        .http
        .put(app.url(&location))
        .bearer_auth(&token)
        .header("if-match", &etag)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"v2\"");
    let response = app
        .http
        .put(app.url(&location))
        .bearer_auth(&token)
        .header("if-match", "\"v2\"")
        .json(&statement_config("Statements v3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let current: Value = response.json().await.unwrap();
    assert_eq!(current["version"], 3);
    assert_eq!(current["name"], "Statements v3");

    let versions: Value = app.get_json(&format!("{location}/versions"), &token).await;
    let numbers: Vec<i64> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, vec![3, 2, 1]);
    assert!(versions["nextCursor"].is_null());
    let v1: Value = app
        .get_json(&format!("{location}/versions/1"), &token)
        .await;
    assert_eq!(v1["name"], "Statements");
    assert_eq!(v1["documents"], created["documents"]);
    let v2: Value = app
        .get_json(&format!("{location}/versions/2"), &token)
        .await;
    assert_eq!(
        v2["documents"][0]["template"],
        "<h2>{{ data.merchant.name }}</h2>"
    );
    let missing = app
        .http
        .get(app.url(&format!("{location}/versions/9")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // Versions are immutable in the database itself.
    let conn = app.state.db.get().await.unwrap();
    let err = conn
        .execute(
            "UPDATE configuration_versions SET name = 'changed' WHERE version = 1",
            &[],
        )
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("immutable"));

    // So the worker keeps the versions it renders from: read once, then from memory; a
    // version that does not exist (yet) is not kept as missing.
    let id = uuid::Uuid::parse_str(location.rsplit('/').next().unwrap()).unwrap();
    let merchant =
        docbundle::domain::MerchantId::from(uuid::Uuid::parse_str(harness::MERCHANT_A).unwrap());
    let versions = &app.state.versions;
    let first = versions
        .find(&app.state.db, merchant, id, 1)
        .await
        .unwrap()
        .unwrap();
    let again = versions
        .find(&app.state.db, merchant, id, 1)
        .await
        .unwrap()
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(first.version, 1);
    assert!(versions
        .find(&app.state.db, merchant, id, 9)
        .await
        .unwrap()
        .is_none());
    // Another merchant's key finds nothing, kept or not.
    let other =
        docbundle::domain::MerchantId::from(uuid::Uuid::parse_str(harness::MERCHANT_B).unwrap());
    assert!(versions
        .find(&app.state.db, other, id, 1)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn validation_failures_point_at_fields_with_line_and_column() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let mut body = statement_config("Broken");
    body["documents"][2]["template"] = json!("line one\n{{ data.merchant.name ");
    body["documents"][1]["format"] = json!("docx");
    body["defaults"] = json!({"merchant": {"name": 42}, "period": "2026-01"});
    let response = create(&app, &token, &body).await;
    let envelope = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let details = envelope["error"]["details"].as_array().unwrap();
    let field = |f: &str| {
        details
            .iter()
            .find(|d| d["field"] == f)
            .unwrap_or_else(|| panic!("{f} in {details:?}"))
    };
    assert!(field("documents[2].template")["message"]
        .as_str()
        .unwrap()
        .contains("line 2, column"));
    field("documents[1].format");
    field("defaults.merchant.name");

    // Unknown fields and malformed JSON.
    let mut extra = statement_config("Extra");
    extra["colour"] = json!("blue");
    let response = create(&app, &token, &extra).await;
    let envelope = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(envelope["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    let response = app
        .http
        .post(app.url("/api/v1/configurations"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::BAD_REQUEST, "INVALID_JSON").await;

    // A template that fails only when rendered with the defaults.
    let mut body = statement_config("Trial");
    body["documents"][0]["template"] = json!("{{ data.lines|length + 'x' }}");
    let response = create(&app, &token, &body).await;
    let envelope = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        envelope["error"]["details"][0]["field"],
        "documents[0].template"
    );
}

#[tokio::test]
async fn if_match_is_required_and_exactly_one_concurrent_update_wins() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let created: Value = create(&app, &token, &statement_config("Race"))
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(&format!(
        "/api/v1/configurations/{}",
        created["id"].as_str().unwrap()
    ));

    let response = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .json(&statement_config("No If-Match"))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::PRECONDITION_REQUIRED,
        "PRECONDITION_REQUIRED",
    )
    .await;
    let response = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .header("if-match", "\"v7\"")
        .json(&statement_config("Stale"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["etag"], "\"v1\"");
    harness::assert_envelope(
        response,
        StatusCode::PRECONDITION_FAILED,
        "PRECONDITION_FAILED",
    )
    .await;
    let response = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .header("if-match", "garbage")
        .json(&statement_config("Garbage"))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::PRECONDITION_FAILED,
        "PRECONDITION_FAILED",
    )
    .await;

    for round in 0..3 {
        let etag = format!("\"v{}\"", round + 1);
        let put = |name: String| {
            let request = app
                .http
                .put(&url)
                .bearer_auth(&token)
                .header("if-match", &etag)
                .json(&statement_config(&name));
            async move { request.send().await.unwrap().status() }
        };
        let (a, b) = tokio::join!(put(format!("A{round}")), put(format!("B{round}")));
        let mut statuses = [a, b];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::PRECONDITION_FAILED],
            "round {round}"
        );
    }
    let current: Value = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["version"], 4);
}

#[tokio::test]
async fn another_merchants_configuration_is_404_on_every_route() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let created: Value = create(&app, &a, &statement_config("Private"))
        .await
        .json()
        .await
        .unwrap();
    let base = format!("/api/v1/configurations/{}", created["id"].as_str().unwrap());
    let body = statement_config("Hijack");
    let requests = vec![
        app.http.get(app.url(&base)),
        app.http
            .put(app.url(&base))
            .header("if-match", "\"v1\"")
            .json(&body),
        app.http.delete(app.url(&base)),
        app.http.get(app.url(&format!("{base}/versions"))),
        app.http.get(app.url(&format!("{base}/versions/1"))),
    ];
    for request in requests {
        let response = request.bearer_auth(&b).send().await.unwrap();
        harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    // Naming merchant A explicitly does not help merchant B either.
    let response = app
        .http
        .get(app.url(&format!("{base}?merchantId={MERCHANT_A}")))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let list: Value = app.get_json("/api/v1/configurations", &b).await;
    assert_eq!(list["items"], json!([]));
    // Unchanged for its owner.
    let own: Value = app.get_json(&base, &a).await;
    assert_eq!(own["version"], 1);
    assert_eq!(own["status"], "active");

    // A platform admin reaches it by naming the merchant.
    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .get(app.url(&format!("{base}?merchantId={MERCHANT_A}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .http
        .get(app.url(&base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn archiving_stops_changes_but_keeps_the_configuration_readable() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let created: Value = create(&app, &token, &statement_config("Old"))
        .await
        .json()
        .await
        .unwrap();
    let url = app.url(&format!(
        "/api/v1/configurations/{}",
        created["id"].as_str().unwrap()
    ));
    let response = app
        .http
        .delete(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let read: Value = app
        .http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "archived");
    assert!(read["archivedAt"].is_string());
    let response = app
        .http
        .put(&url)
        .bearer_auth(&token)
        .header("if-match", "\"v1\"")
        .json(&statement_config("New"))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::CONFLICT, "CONFLICT").await;
    // Archiving again is harmless.
    assert_eq!(
        app.http
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn paging_walks_every_item_once_with_filters() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let mut ids = HashSet::new();
    for i in 0..45 {
        let name = if i % 3 == 0 {
            format!("Invoice {i}")
        } else {
            format!("Statement {i}")
        };
        let created: Value = create(&app, &token, &statement_config(&name))
            .await
            .json()
            .await
            .unwrap();
        ids.insert(created["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = app.url("/api/v1/configurations?limit=20");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = app
            .http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 45, "no duplicates or gaps");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), ids);

    let invoices: Value = app
        .get_json("/api/v1/configurations?name=Invoice&limit=100", &token)
        .await;
    assert_eq!(invoices["items"].as_array().unwrap().len(), 15);
    let archived: Value = app
        .get_json("/api/v1/configurations?status=archived", &token)
        .await;
    assert_eq!(archived["items"], json!([]));

    for bad in [
        "limit=0",
        "limit=101",
        "cursor=nonsense",
        "status=deleted",
        "colour=blue",
    ] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/configurations?{bad}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

#[tokio::test]
async fn merchants_are_onboarded_by_platform_admins() {
    let app = TestApp::spawn().await;
    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .post(app.url("/api/v1/merchants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Acme GmbH"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "Acme GmbH");
    let read: Value = app.get_json(&location, &admin).await;
    assert_eq!(read, created);
    let response = app
        .http
        .post(app.url("/api/v1/merchants"))
        .bearer_auth(&admin)
        .json(&json!({"id": MERCHANT_A, "name": "Again"}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::CONFLICT, "CONFLICT").await;
    let response = app
        .http
        .post(app.url("/api/v1/merchants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "  "}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let list: Value = app.get_json("/api/v1/merchants?limit=2", &admin).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["nextCursor"].is_string());
}
