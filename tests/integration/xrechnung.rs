//! XRechnung (the XML alone) end to end against the real stack, checked the way KoSIT's
//! validator configuration checks it, with tools no one here wrote: the CII D16B XSD under
//! lxml/libxml2, CEN's EN 16931 CII Schematron and KoSIT's XRechnung Schematron (compiled by
//! SchXslt) under Saxon-HE (`tests/tools/xrechnung_check.py`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::configurations::create;
use crate::einvoices::{artefact, completed, scratch};
use crate::harness::{self, download, TestApp};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn sample() -> Value {
    let text = std::fs::read_to_string(root().join("events/samples/xrechnung-configuration.json"))
        .expect("the sample configuration");
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn sample_seed() -> Value {
    let text = std::fs::read_to_string(root().join("events/samples/xrechnung/seed.json"))
        .expect("the sample seed");
    serde_json::from_str(&text).unwrap()
}

/// The reference's verdict on each file: `{file → (failed fatal ids incl. "XSD", warnings)}`.
fn official(files: &[PathBuf]) -> Vec<(BTreeSet<String>, BTreeSet<String>)> {
    let output = Command::new(root().join(".stack/validators/bin/python"))
        .arg(root().join("tests/tools/xrechnung_check.py"))
        .args(files)
        .output()
        .expect("the validators (./dev services installs them)");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        lines.len(),
        files.len(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines
        .iter()
        .map(|line| {
            assert!(line.get("error").is_none(), "{line}");
            let ids = |key: &str| -> BTreeSet<String> {
                line[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect()
            };
            let mut failed = ids("failed");
            if line["xsd"] != true {
                failed.insert("XSD".to_owned());
            }
            (failed, ids("warnings"))
        })
        .collect()
}

/// The rule ids a message of the service names: `… of XRechnung 3.0 (BR-DE-15, BR-CO-15): …`.
fn named_rules(message: &str) -> BTreeSet<String> {
    let marker = "XRechnung 3.0 (";
    let Some(start) = message.find(marker) else {
        return BTreeSet::new();
    };
    let rest = &message[start + marker.len()..];
    rest[..rest.find(')').unwrap()]
        .split(", ")
        .map(str::to_owned)
        .collect()
}

/// The sample's XML as the service renders it from `seed` (its own engine).
fn render_xml(seed: &Value) -> String {
    crate::einvoices::render_first_document(&sample(), seed)
}

/// Mistakes a German public-sector receiver refuses, each as a change to the sample's seed:
/// XRechnung's own rules (BR-DE-*) and EN 16931's.
fn mistakes() -> Vec<(&'static str, Value)> {
    let mut no_reference = sample_seed();
    no_reference
        .as_object_mut()
        .unwrap()
        .remove("buyerReference");
    let mut no_contact = sample_seed();
    no_contact["seller"]
        .as_object_mut()
        .unwrap()
        .remove("contact");
    let mut no_payment = sample_seed();
    no_payment.as_object_mut().unwrap().remove("payment");
    let mut skonto = sample_seed();
    skonto["payment"]["terms"] = json!("Zahlbar in 30 Tagen.\n#SKONTO#TAGE=14#PROZENT=2#\n");
    let mut wrong_total = sample_seed();
    wrong_total["totals"]["grand"] = json!(2326.39);
    let mut no_city = sample_seed();
    no_city["buyer"]["city"] = json!(" ");
    vec![
        ("no buyer reference (Leitweg-ID)", no_reference),
        ("no seller contact", no_contact),
        ("no payment instructions", no_payment),
        ("a malformed Skonto line", skonto),
        ("a wrong total", wrong_total),
        ("a blank buyer city", no_city),
    ]
}

#[tokio::test]
async fn the_sample_run_is_an_xrechnung_that_kosits_and_cens_rules_accept_without_a_warning() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let done = completed(&app, &token, &sample(), &sample_seed()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let entry = artefact(&done, "xrechnung.xml");
    assert_eq!(entry["contentType"], "application/xml", "{entry}");
    let xml = download(entry["downloadUrl"].as_str().unwrap()).await;
    let sha256 = docbundle::domain::digest::sha256_hex(&xml);
    assert_eq!(
        entry["einvoice"],
        json!({"standard": "xrechnung", "profile": "3.0", "xmlSha256": sha256})
    );
    let manifest: Value =
        serde_json::from_slice(&download(done["manifest"]["downloadUrl"].as_str().unwrap()).await)
            .unwrap();
    let listed = manifest["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "xrechnung.xml")
        .unwrap();
    assert_eq!(listed["einvoice"]["standard"], "xrechnung");
    assert_eq!(listed["einvoice"]["xmlSha256"], sha256.as_str());
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(
        text.contains("urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"),
        "{text}"
    );
    assert!(text.contains("<ram:BuyerReference>991-01234-44</ram:BuyerReference>"));
    let path = scratch().join("xrechnung.xml");
    std::fs::write(&path, &xml).unwrap();
    let verdict = official(std::slice::from_ref(&path)).remove(0);
    assert_eq!(verdict, (BTreeSet::new(), BTreeSet::new()), "{text}");
}

#[tokio::test]
async fn mistakes_are_422_at_save_naming_the_rules_kosits_and_cens_schematron_name() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let dir = scratch();
    let mut files = Vec::new();
    let mut ours = Vec::new();
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
        ours.push((what, named_rules(detail["message"].as_str().unwrap())));
        let path = dir.join(format!("{}.xml", files.len()));
        std::fs::write(&path, render_xml(&seed)).unwrap();
        files.push(path);
    }
    let theirs = official(&files);
    for ((what, ours), (failed, _)) in ours.iter().zip(&theirs) {
        assert!(!failed.is_empty(), "{what}: the official rules accept it");
        assert_eq!(ours, failed, "{what}");
    }
    let all: BTreeSet<&String> = ours.iter().flat_map(|(_, ids)| ids).collect();
    for id in [
        "BR-DE-15", "BR-DE-2", "BR-DE-1", "BR-DE-18", "BR-CO-15", "BR-DE-8",
    ] {
        assert!(all.iter().any(|i| *i == id), "{id} in {all:?}");
    }
}

#[tokio::test]
async fn a_seed_without_a_leitweg_id_fails_the_run_einvoice_invalid_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let (_, seed) = mistakes().remove(0);
    let done = completed(&app, &token, &sample(), &seed).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "EINVOICE_INVALID", "{done}");
    assert_eq!(done["error"]["document"], "xrechnung.xml", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("BR-DE-15"), "{message}");
    assert!(done.get("artefacts").is_none_or(Value::is_null), "{done}");
}

#[tokio::test]
async fn declarations_are_checked_at_save() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    for (einvoice, field) in [
        (
            json!({"standard": "xrechnung", "profile": "2.3"}),
            "profile",
        ),
        (
            json!({"standard": "xrechnung", "profile": "EN 16931"}),
            "profile",
        ),
        (json!({"standard": "factur-x", "profile": "3.0"}), "profile"),
        (
            json!({"standard": "xrechnung", "xml": "xrechnung.xml"}),
            "xml",
        ),
        (json!({"standard": "factur-x"}), "profile"),
    ] {
        let mut config = sample();
        config["documents"][0]["einvoice"] = einvoice.clone();
        let envelope = harness::assert_envelope(
            create(&app, &token, &config).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let expected = format!("documents[0].einvoice.{field}");
        assert!(
            envelope["error"]["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == expected.as_str()),
            "{einvoice}: {envelope}"
        );
    }
    // An XRechnung is the XML alone: not a PDF's declaration.
    let mut config = sample();
    config["documents"].as_array_mut().unwrap().push(
        json!({"name": "invoice.pdf", "format": "pdf", "pdfStandard": "a-3b",
                     "template": "= Rechnung", "einvoice": {"standard": "xrechnung"}}),
    );
    let envelope = harness::assert_envelope(
        create(&app, &token, &config).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(
        envelope
            .to_string()
            .contains("documents[1].einvoice.standard"),
        "{envelope}"
    );
    // The profile may be left out: XRechnung 3.0.
    let mut config = sample();
    config["documents"][0]["einvoice"] = json!({"standard": "xrechnung"});
    assert_eq!(
        create(&app, &token, &config).await.status(),
        StatusCode::CREATED
    );
}

/// The instances KoSIT and CEN test their own rules with (`tests/fixtures/xrechnung-corpus`,
/// 140 files: valid invoices and one broken rule each): the service's verdict and rule ids
/// are the reference's for every one, its warnings too where the invoice is valid.
#[test]
fn the_publishers_test_instances_get_the_reference_verdict_and_rule_ids() {
    let dir = scratch();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(root().join("tests/fixtures/xrechnung-corpus.tar.gz"))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let mut files: Vec<PathBuf> = ["kosit", "cen"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 140);
    let theirs = official(&files);
    let (mut valid, mut invalid, mut disagreements) = (0, 0, Vec::new());
    for (path, (failed, warnings)) in files.iter().zip(theirs) {
        let ours = ours(path);
        if failed.is_empty() {
            valid += 1;
        } else {
            invalid += 1;
        }
        if ours
            != (
                failed.clone(),
                if failed.is_empty() {
                    warnings
                } else {
                    BTreeSet::new()
                },
            )
        {
            disagreements.push(format!(
                "{}: ours {ours:?}, theirs {failed:?}",
                path.display()
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    assert!(
        valid > 20 && invalid > 50,
        "{valid} valid, {invalid} invalid"
    );
}

/// The service's verdict: failed fatal rule ids (`XSD` for the schema's), and the warnings
/// of a valid invoice.
fn ours(path: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    use docbundle_einvoice::{validate, Invalid, Limits, Profile};
    let xml = std::fs::read_to_string(path).unwrap();
    let ids = |findings: &[docbundle_einvoice::Finding]| -> BTreeSet<String> {
        findings.iter().filter_map(|f| f.rule.clone()).collect()
    };
    match validate(Profile::XRechnung, &xml, &Limits::default()) {
        Ok(warnings) => (BTreeSet::new(), ids(&warnings)),
        Err(Invalid::Rules(findings)) => (ids(&findings), BTreeSet::new()),
        Err(e @ Invalid::Unreadable(_)) => panic!("{}: {e}", path.display()),
    }
}
