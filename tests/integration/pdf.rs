//! PDF documents end to end: a multi-page invoice rendered by the worker is a valid PDF with
//! the seed's content, byte-identical on replay; save-time diagnostics; limits in a batch.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::configurations::{create, invoice_configuration};
use crate::harness::{self, download, TestApp};

fn invoice_seed(lines: usize) -> Value {
    json!({
        "number": "INV-2026-0042",
        "customer": {"name": "Acme GmbH", "address": "Hauptstrasse 1, Berlin"},
        "period": "2026-10",
        "currency": "EUR",
        "lines": (0..lines).map(|i| json!({"description": format!("Service item {i}"), "quantity": i % 4 + 1, "unitPrice": 9.5 + i as f64})).collect::<Vec<_>>()
    })
}

/// Runs a Debian poppler tool on `pdf` and returns its standard output.
pub(crate) fn poppler(tool: &str, pdf: &[u8]) -> String {
    poppler_with(tool, &[], pdf)
}

/// Same, with options before the file.
pub(crate) fn poppler_with(tool: &str, options: &[&str], pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("{}.pdf", uuid::Uuid::new_v4()));
    std::fs::write(&path, pdf).unwrap();
    let mut args: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    args.push(path.to_str().unwrap().to_owned());
    if tool == "pdftotext" {
        args.push("-".to_owned());
    }
    let output = std::process::Command::new(tool)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} (poppler-utils): {e}"));
    assert!(
        output.status.success(),
        "{tool}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_multi_page_invoice_renders_to_a_valid_reproducible_pdf() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let created = create(&app, &token, &invoice_configuration()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let config: Value = created.json().await.unwrap();
    let launch = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "seed": invoice_seed(160)}),
        )
        .await;
    assert_eq!(launch.status(), StatusCode::ACCEPTED);
    let run: Value = launch.json().await.unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let pdf_artefact = done["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap()
        .clone();
    assert_eq!(pdf_artefact["contentType"], "application/pdf");
    let pdf = download(pdf_artefact["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(
        docbundle::domain::digest::sha256_hex(&pdf),
        pdf_artefact["sha256"].as_str().unwrap()
    );

    let info = poppler("pdfinfo", &pdf);
    let pages: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pages >= 4, "{info}");
    // PDF/A-2b (the sample asks for it) needs a date: the template takes it from the seed's
    // period, never from a clock.
    let created = info
        .lines()
        .find(|l| l.starts_with("CreationDate:"))
        .unwrap_or_default();
    assert!(created.contains("2026"), "{info}");
    assert!(info.contains("PDF version:"), "{info}");
    let text = poppler("pdftotext", &pdf);
    for expected in [
        "Invoice INV-2026-0042",
        "Acme GmbH",
        "Service item 0",
        "Service item 159",
        &format!("Page {pages} of {pages}"),
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from the PDF text"
        );
    }

    // A replay reproduces the PDF byte for byte.
    let replay = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "forcingOptions": {"replayRunId": run["id"]}}),
        )
        .await;
    let replay: Value = replay.json().await.unwrap();
    let replay = app.run_to_end(&token, replay["id"].as_str().unwrap()).await;
    assert_eq!(replay["manifest"]["replay"]["identical"], true);
    let again = replay["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap();
    assert_eq!(again["sha256"], pdf_artefact["sha256"]);
}

#[tokio::test]
async fn typst_errors_are_422_with_document_line_and_column_on_save() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let mut body = invoice_configuration();
    body["documents"][0]["template"] =
        json!("#let data = json(\"data.json\")\n= Invoice\n#data.customer.nmae");
    let response = create(&app, &token, &body).await;
    let envelope = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let detail = &envelope["error"]["details"][0];
    assert_eq!(detail["field"], "documents[0].template");
    let message = detail["message"].as_str().unwrap();
    assert!(message.contains("line 3, column"), "{message}");
    assert!(message.contains("nmae"), "{message}");

    let mut syntax = invoice_configuration();
    syntax["documents"][0]["template"] = json!("#let x = (\n");
    let response = create(&app, &token, &syntax).await;
    let envelope = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(envelope["error"]["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("line"));

    // No file outside the three virtual ones, no clock.
    for template in [
        "#read(\"/etc/passwd\")",
        "#datetime.today()",
        "#import \"@preview/cetz:0.3.0\"",
    ] {
        let mut sandboxed = invoice_configuration();
        sandboxed["documents"][0]["template"] = json!(template);
        let response = create(&app, &token, &sandboxed).await;
        harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

#[tokio::test]
async fn a_pdf_over_its_limits_fails_its_run_while_the_batch_goes_on() {
    // The page limit is what this test meets: a generous time budget, so that a debug build
    // on a busy machine reaches the page limit first (the time budget has tests of its own).
    let app = TestApp::spawn_with(|s| {
        s.render_limits.max_pages = 3;
        s.render_limits.time_budget = Duration::from_secs(60);
    })
    .await;
    let token = harness::token("merchant-a").await;
    let config: Value = create(&app, &token, &invoice_configuration())
        .await
        .json()
        .await
        .unwrap();
    // A seed long enough to run past this app's page limit (3 pages): about 5 pages.
    let huge = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "seed": invoice_seed(200)}),
        )
        .await;
    let huge: Value = huge.json().await.unwrap();
    let small = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "seed": invoice_seed(3)}),
        )
        .await;
    let small: Value = small.json().await.unwrap();
    // Both messages in one batch, as SQS may deliver them.
    let mut messages = Vec::new();
    for _ in 0..10 {
        messages.extend(
            app.state
                .queue
                .receive(10, Duration::from_secs(1))
                .await
                .unwrap(),
        );
        if messages.len() >= 2 {
            break;
        }
    }
    let bodies: Vec<String> = messages.iter().filter_map(|m| m.body.clone()).collect();
    assert_eq!(bodies.len(), 2);
    let event = crate::pipeline::batch_of(&bodies);
    let response = bundle_worker::handle_batch(&app.state, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "a limit is permanent: acknowledged, not retried"
    );
    let huge = app
        .get_json(
            &format!("/api/v1/bundles/{}", huge["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(huge["status"], "failed");
    assert_eq!(huge["error"]["code"], "RENDER_LIMIT_EXCEEDED");
    assert_eq!(huge["error"]["document"], "invoice.pdf");
    assert!(
        huge["error"]["message"].as_str().unwrap().contains("limit"),
        "{}",
        huge["error"]
    );
    let small = app
        .get_json(
            &format!("/api/v1/bundles/{}", small["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(small["status"], "completed");
}

/// A PDF/A or PDF/UA document: saved, rendered by a run, conforming as its XMP metadata says.
async fn standard_pdf(app: &TestApp, token: &str, standard: &str, template: &str) -> Vec<u8> {
    let body = json!({
        "name": format!("Archival {standard}"),
        "defaults": {"number": "INV-1", "customer": "Acme GmbH"},
        "documents": [{"name": "invoice.pdf", "format": "pdf", "pdfStandard": standard, "template": template}],
    });
    let created = create(app, token, &body).await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{}",
        created.text().await.unwrap()
    );
    let config: Value = created.json().await.unwrap();
    assert_eq!(config["documents"][0]["pdfStandard"], standard);
    let launch = app
        .launch(token, &json!({"configurationId": config["id"]}))
        .await;
    let run: Value = launch.json().await.unwrap();
    let done = app.run_to_end(token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    download(done["artefacts"][0]["downloadUrl"].as_str().unwrap()).await
}

const ARCHIVAL: &str = "#set document(title: \"Invoice\", date: datetime(year: 2026, month: 11, day: 30))\n#let data = json(\"data.json\")\n= Invoice #data.number\nFor #data.customer\n";

#[tokio::test]
async fn pdf_a_documents_say_so_in_their_metadata_and_carry_the_seed_when_asked() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let pdf = standard_pdf(&app, &token, "a-2b", ARCHIVAL).await;
    let meta = poppler_with("pdfinfo", &["-meta"], &pdf);
    assert!(
        meta.contains("pdfaid:part>2<") || meta.contains("pdfaid:part=\"2\""),
        "{meta}"
    );
    assert!(
        meta.contains("pdfaid:conformance>B<") || meta.contains("pdfaid:conformance=\"B\""),
        "{meta}"
    );
    // Without a standard, no PDF/A claim.
    let plain = create(
        &app,
        &token,
        &json!({"name": "Plain", "defaults": {"number": "1", "customer": "x"},
        "documents": [{"name": "a.pdf", "format": "pdf", "template": ARCHIVAL}]}),
    )
    .await;
    let plain: Value = plain.json().await.unwrap();
    let run: Value = app
        .launch(&token, &json!({"configurationId": plain["id"]}))
        .await
        .json()
        .await
        .unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    let plain_pdf = download(done["artefacts"][0]["downloadUrl"].as_str().unwrap()).await;
    assert!(!poppler_with("pdfinfo", &["-meta"], &plain_pdf).contains("pdfaid"));

    // PDF/A-3 may embed the seed itself (the basis of e-invoices).
    let attaching = format!("{ARCHIVAL}#pdf.attach(\"data.json\", relationship: \"source\", mime-type: \"application/json\", description: \"The seed\")\n");
    let pdf = standard_pdf(&app, &token, "a-3b", &attaching).await;
    let meta = poppler_with("pdfinfo", &["-meta"], &pdf);
    assert!(
        meta.contains("pdfaid:part>3<") || meta.contains("pdfaid:part=\"3\""),
        "{meta}"
    );
    let attachments = poppler_with("pdfdetach", &["-list"], &pdf);
    assert!(attachments.contains("data.json"), "{attachments}");
}

#[tokio::test]
async fn a_template_that_cannot_conform_fails_at_save_with_typsts_message() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    // PDF/UA-1 needs a document title.
    let untitled = json!({"name": "Accessible", "documents": [{"name": "a.pdf", "format": "pdf", "pdfStandard": "ua-1", "template": "= Hello\nWorld"}]});
    let response = create(&app, &token, &untitled).await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let detail = &body["error"]["details"][0];
    assert_eq!(detail["field"], "documents[0].template", "{body}");
    assert!(
        detail["message"].as_str().unwrap().contains("title"),
        "{body}"
    );
    // With a title it conforms.
    let titled = json!({"name": "Accessible", "documents": [{"name": "a.pdf", "format": "pdf", "pdfStandard": "ua-1", "template": "#set document(title: \"Hello\")\n= Hello\nWorld"}]});
    assert_eq!(
        create(&app, &token, &titled).await.status(),
        StatusCode::CREATED
    );
    // Unknown standards, and standards on other formats, are refused by name.
    for (doc, field) in [
        (
            json!({"name": "a.pdf", "format": "pdf", "pdfStandard": "a-9z", "template": "x"}),
            "documents[0].pdfStandard",
        ),
        (
            json!({"name": "a.csv", "format": "csv", "pdfStandard": "a-2b", "template": "x"}),
            "documents[0].pdfStandard",
        ),
    ] {
        let response = create(&app, &token, &json!({"name": "Bad", "documents": [doc]})).await;
        let body = harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(body["error"]["details"][0]["field"], field, "{body}");
    }
}
