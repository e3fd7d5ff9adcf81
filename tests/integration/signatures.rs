//! Signed PDFs end to end against the real stack (OpenBao transit and PKI, the local TSA):
//! every check is made by validators no one here wrote — pyHanko and poppler's pdfsig with
//! an NSS database holding the roots.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use docbundle_local::poller::{self, Consumer};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::configurations::{create, invoice_configuration};
use crate::harness::{self, download, FreezableProxy, TestApp};

fn stack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".stack")
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("docbundle-signatures-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The roots a relying party trusts, as `GET /api/v1/trust-roots` publishes them — the
/// document-signing CA (OpenBao's PKI engine) and the TSA's — written as PEM files in `dir`.
async fn roots(app: &TestApp, dir: &Path) -> Vec<PathBuf> {
    let token = harness::token("merchant-b").await;
    let published = app.get_json("/api/v1/trust-roots", &token).await;
    let mut paths = Vec::new();
    for (kind, name) in [
        ("documentSigning", "signing-root.pem"),
        ("timeStamping", "tsa-root.pem"),
    ] {
        let pems = published[kind].as_array().unwrap();
        assert_eq!(pems.len(), 1, "{published}");
        let pem = pems[0].as_str().unwrap();
        assert!(
            pem.starts_with("-----BEGIN CERTIFICATE-----"),
            "{published}"
        );
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        paths.push(path);
    }
    paths
}

/// `pyhanko sign validate` with `roots` as the only trust anchors: (exit success, output).
fn pyhanko(pdf: &Path, roots: &[PathBuf]) -> (bool, String) {
    pyhanko_with(pdf, roots, &["--no-revocation-check"])
}

/// The same with `options` (revocation checking is on unless they turn it off).
fn pyhanko_with(pdf: &Path, roots: &[PathBuf], options: &[&str]) -> (bool, String) {
    let mut command = Command::new(stack_dir().join("validators/bin/pyhanko"));
    command
        .args(["sign", "validate", "--trust-replace"])
        .args(options);
    for root in roots {
        command.arg("--trust").arg(root);
    }
    let output = command
        .arg(pdf)
        .output()
        .expect("pyhanko (./dev services installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// pyHanko's validation on the file's own validation data (`tests/tools/pades_lt.py`):
/// nothing fetched, revocation data required. (exit success, output)
fn offline_lt(pdf: &Path, roots: &[PathBuf]) -> (bool, String) {
    let output = Command::new(stack_dir().join("validators/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/pades_lt.py"))
        .arg(pdf)
        .args(roots)
        .output()
        .expect("python with pyHanko (./dev services installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// An NSS database trusting `roots`, for pdfsig.
fn nss_database(dir: &Path, roots: &[PathBuf]) -> String {
    let db = format!("sql:{}", dir.join("nss").display());
    std::fs::create_dir_all(dir.join("nss")).unwrap();
    let run = |args: &[&str]| {
        let output = Command::new("certutil")
            .args(args)
            .output()
            .expect("certutil");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    for (i, root) in roots.iter().enumerate() {
        let name = format!("root{i}");
        run(&[
            "-A",
            "-d",
            &db,
            "-n",
            &name,
            "-t",
            "CT,C,C",
            "-i",
            root.to_str().unwrap(),
        ]);
    }
    db
}

fn pdfsig(pdf: &Path, nss: &str) -> String {
    let nss_dir = nss.trim_start_matches("sql:");
    let output = Command::new("pdfsig")
        .args(["-nssdir", &format!("sql:{nss_dir}")])
        .arg(pdf)
        .output()
        .expect("pdfsig (poppler-utils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) fn signed_invoice(level: &str) -> Value {
    let mut body = invoice_configuration();
    body["documents"][0]["signature"] =
        json!({"level": level, "reason": "Invoice issued", "location": "Berlin"});
    body
}

fn seed() -> Value {
    json!({
        "number": "INV-2026-0077",
        "customer": {"name": "Acme GmbH", "address": "Hauptstrasse 1, Berlin"},
        "period": "2026-11",
        "currency": "EUR",
        "lines": [{"description": "Support", "quantity": 3, "unitPrice": 120.0}]
    })
}

/// Runs `body` for `client` to the end; the run and its invoice's manifest entry.
async fn run_invoice(app: &TestApp, client: &str, body: &Value) -> (Value, Value) {
    let token = harness::token(client).await;
    let created = create(app, &token, body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let config: Value = created.json().await.unwrap();
    let launched = app
        .launch(
            &token,
            &json!({"configurationId": config["id"], "seed": seed()}),
        )
        .await;
    assert_eq!(launched.status(), StatusCode::ACCEPTED);
    let run: Value = launched.json().await.unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let entry = done["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap()
        .clone();
    (done, entry)
}

async fn invoice_bytes(run: &Value) -> Vec<u8> {
    let listed = run["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap();
    download(listed["downloadUrl"].as_str().unwrap()).await
}

#[tokio::test]
async fn a_b_t_invoice_is_intact_and_trusted_for_pyhanko_and_pdfsig() {
    let app = TestApp::spawn().await;
    let (run, entry) = run_invoice(&app, "merchant-a", &signed_invoice("B-T")).await;
    assert_eq!(entry["signature"]["level"], "B-T", "{entry}");
    assert!(
        entry["signature"]["signer"]
            .as_str()
            .unwrap()
            .contains("CN=Merchant A"),
        "{entry}"
    );
    assert!(entry["signature"]["timestamp"].is_string(), "{entry}");
    assert_ne!(entry["renderSha256"], entry["sha256"]);
    let pdf = invoice_bytes(&run).await;
    assert_eq!(docbundle::domain::digest::sha256_hex(&pdf), entry["sha256"]);
    let manifest: Value =
        serde_json::from_slice(&download(run["manifest"]["downloadUrl"].as_str().unwrap()).await)
            .unwrap();
    assert!(
        manifest["renderer"]["signer"]
            .as_str()
            .is_some_and(|s| s.starts_with("docbundle-pades ")),
        "{manifest}"
    );

    let dir = scratch();
    let path = dir.join("invoice.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let roots = roots(&app, &dir).await;
    let (ok, report) = pyhanko(&path, &roots);
    assert!(ok, "{report}");
    for expected in [
        "INTACT:TRUSTED",
        "TIMESTAMP_TOKEN<INTACT:TRUSTED>",
        "UNTOUCHED",
    ] {
        assert!(report.contains(expected), "`{expected}` missing: {report}");
    }
    // The manifest's own time-stamp: the TSA's answer over the manifest's SHA-256, checked by
    // openssl against the TSA's root.
    let tsr = download(
        run["manifest"]["timestampUrl"]
            .as_str()
            .expect("timestampUrl"),
    )
    .await;
    let tsr_path = dir.join("manifest.tsr");
    std::fs::write(&tsr_path, &tsr).unwrap();
    let digest = run["manifest"]["sha256"].as_str().unwrap();
    let output = Command::new("openssl")
        .args(["ts", "-verify", "-digest", digest, "-in"])
        .arg(&tsr_path)
        .arg("-CAfile")
        .arg(&roots[1])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && said.contains("Verification: OK"),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let wrong = "0".repeat(64);
    let output = Command::new("openssl")
        .args(["ts", "-verify", "-digest", &wrong, "-in"])
        .arg(&tsr_path)
        .arg("-CAfile")
        .arg(&roots[1])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "a time-stamp of another digest must not verify"
    );

    // B-T carries no validation data: offline, with revocation data required, it fails.
    let (ok, report) = offline_lt(&path, &roots);
    assert!(
        !ok && report.contains("no revocation information"),
        "{report}"
    );
    let nss = nss_database(&dir, &roots);
    let report = pdfsig(&path, &nss);
    for expected in [
        "Signature is Valid.",
        "Certificate is Trusted.",
        "Signer Certificate Common Name: Merchant A",
        "ETSI.CAdES.detached",
    ] {
        assert!(report.contains(expected), "`{expected}` missing: {report}");
    }

    // One flipped byte inside the signed range (halfway into the rendered bytes): both
    // validators say so.
    let text = String::from_utf8_lossy(&pdf);
    let range = &text[text.rfind("/ByteRange[").unwrap() + 11..];
    let first_end: usize = range.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut tampered = pdf.clone();
    let at = first_end / 2;
    tampered[at] ^= 0x01;
    let tampered_path = dir.join("tampered.pdf");
    std::fs::write(&tampered_path, &tampered).unwrap();
    let (ok, report) = pyhanko(&tampered_path, &roots);
    assert!(!ok && !report.contains("INTACT:TRUSTED"), "{report}");
    let report = pdfsig(&tampered_path, &nss);
    assert!(!report.contains("Signature is Valid."), "{report}");
    assert!(
        report.contains("Signature is Invalid") || report.contains("Digest Mismatch"),
        "{report}"
    );

    // This service's own offline check (what `docbundle verify` runs) agrees, and refuses
    // the tampered file and roots that are not the signer's.
    let der = |path: &PathBuf| {
        docbundle::infra::secrets::pem_chain(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (signing_roots, tsa_roots) = (der(&roots[0]), der(&roots[1]));
    let verified = docbundle_pades::verify::verify(&pdf, &signing_roots, &tsa_roots).unwrap();
    assert_eq!(verified.signer, "CN=Merchant A");
    let (stamped, tsa) = verified.timestamp.expect("a time-stamp");
    assert!(tsa.contains("Local TSA"), "{tsa}");
    assert!(stamped.as_secs() > 1_700_000_000);
    assert!(matches!(
        docbundle_pades::verify::verify(&tampered, &signing_roots, &tsa_roots),
        Err(docbundle_pades::verify::VerifyError::DigestMismatch)
    ));
    assert!(matches!(
        docbundle_pades::verify::verify(&pdf, &tsa_roots, &tsa_roots),
        Err(docbundle_pades::verify::VerifyError::Untrusted)
    ));
}

#[tokio::test]
async fn a_b_lt_invoice_carries_its_validation_data_and_validates_with_revocation_checks() {
    let app = TestApp::spawn().await;
    let (run, entry) = run_invoice(&app, "merchant-a", &signed_invoice("B-LT")).await;
    assert_eq!(entry["signature"]["level"], "B-LT", "{entry}");
    let pdf = invoice_bytes(&run).await;
    let dir = scratch();
    let path = dir.join("invoice.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let roots = roots(&app, &dir).await;
    // Revocation checked, and required for every certificate of both chains.
    let (ok, report) = pyhanko_with(&path, &roots, &["--force-revinfo"]);
    assert!(ok, "{report}");
    // The DSS update is an acceptable, long-term-validation kind of change.
    for expected in [
        "INTACT:TRUSTED",
        "TIMESTAMP_TOKEN<INTACT:TRUSTED>",
        "EXTENDED_WITH_LTA_UPDATES",
    ] {
        assert!(report.contains(expected), "`{expected}` missing: {report}");
    }
    // The validation data is in the file: pyHanko validates it offline (nothing fetched),
    // revocation data required for every certificate of both chains.
    let (ok, report) = offline_lt(&path, &roots);
    assert!(ok && report.contains("bottom line: True"), "{report}");
    let report = pdfsig(&path, &nss_database(&dir, &roots));
    assert!(report.contains("Signature is Valid."), "{report}");
}

#[tokio::test]
async fn each_merchant_signs_with_its_own_certificate_and_replays_compare_renders() {
    let app = TestApp::spawn().await;
    let (run_a, a) = run_invoice(&app, "merchant-a", &signed_invoice("B-B")).await;
    let (_, b) = run_invoice(&app, "merchant-b", &signed_invoice("B-B")).await;
    assert!(
        b["signature"]["signer"]
            .as_str()
            .unwrap()
            .contains("CN=Merchant B"),
        "{b}"
    );
    assert_ne!(
        a["signature"]["certificateSha256"],
        b["signature"]["certificateSha256"]
    );
    assert!(a["signature"].get("timestamp").is_none(), "{a}");

    // A replay renders the same PDF (render digest) and signs it anew (stored digest).
    let token = harness::token("merchant-a").await;
    let replay = app
        .launch(
            &token,
            &json!({"configurationId": run_a["configurationId"], "forcingOptions": {"replayRunId": run_a["id"]}}),
        )
        .await;
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    let replay: Value = replay.json().await.unwrap();
    let replay = app.run_to_end(&token, replay["id"].as_str().unwrap()).await;
    assert_eq!(replay["manifest"]["replay"]["identical"], true, "{replay}");
    let again = replay["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "invoice.pdf")
        .unwrap();
    assert_eq!(again["renderSha256"], a["renderSha256"]);
    assert_ne!(again["sha256"], a["sha256"]);

    // The archive holds the signed PDF as stored.
    let zip_entry = run_a["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "bundle.zip")
        .unwrap();
    let zip = download(zip_entry["downloadUrl"].as_str().unwrap()).await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut member = archive.by_name("invoice.pdf").unwrap();
    let mut inside = Vec::new();
    std::io::Read::read_to_end(&mut member, &mut inside).unwrap();
    assert_eq!(docbundle::domain::digest::sha256_hex(&inside), a["sha256"]);
}

/// A dependency of signing that does not answer for 20 s while 20 signed runs arrive: each
/// attempt meanwhile is a transient fault (the run shows it, naming the dependency), and every
/// run completes, signed and time-stamped, within seconds of its return.
async fn twenty_signed_runs_outlast(dependency: &'static str) {
    let (upstream, path) = match dependency {
        "tsa" => ("127.0.0.1:19000", "/local/tsa/tsa"),
        _ => ("127.0.0.1:8200", ""),
    };
    let proxy = FreezableProxy::start(upstream).await;
    let at = proxy.addr;
    // The template's queue: visibility 360 s, dead-lettered after 12 receives.
    let app = TestApp::spawn_with_queue(360, 12, move |s| {
        s.dependency_timeout = Duration::from_secs(2);
        match dependency {
            "tsa" => {
                s.tsa = Some(docbundle::config::TsaSettings {
                    url: format!("http://{at}{path}"),
                    timeout: Duration::from_secs(2),
                })
            }
            _ => s.vault.addr = format!("http://{at}"),
        }
    })
    .await;
    let token = harness::token("merchant-a").await;
    let created = create(&app, &token, &signed_invoice("B-T")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let config: Value = created.json().await.unwrap();
    proxy.freeze();
    let frozen = Instant::now();
    let mut ids = Vec::new();
    for i in 0..20 {
        let mut seed = seed();
        seed["number"] = json!(format!("INV-OUT-{i}"));
        let launched = app
            .launch(
                &token,
                &json!({"configurationId": config["id"], "seed": seed}),
            )
            .await;
        assert_eq!(launched.status(), StatusCode::ACCEPTED);
        let run: Value = launched.json().await.unwrap();
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    while frozen.elapsed() < Duration::from_secs(20) {
        poller::poll(&app.state, Consumer::Worker, Duration::from_secs(1))
            .await
            .expect("poll");
    }
    // None ended; those tried show why they wait (a Vault that does not answer also holds
    // the worker's log-in, so some runs may not have been tried yet).
    let mut tried = 0;
    for id in &ids {
        let run = app.get_json(&format!("/api/v1/bundles/{id}"), &token).await;
        assert!(
            run["status"] == "pending" || run["status"] == "processing",
            "{run}"
        );
        if run["status"] == "processing" {
            assert_eq!(run["lastError"]["code"], "DEPENDENCY_UNAVAILABLE", "{run}");
            let why = run["lastError"]["message"].as_str().unwrap();
            assert!(why.contains(dependency), "{run}");
            tried += 1;
        }
    }
    assert!(tried > 0, "no run was tried while {dependency} was down");
    proxy.thaw();
    let thawed = Instant::now();
    let mut ended: Vec<(String, Duration)> = Vec::new();
    for _ in 0..120 {
        for id in &ids {
            if ended.iter().any(|(done, _)| done == id) {
                continue;
            }
            let run = app.get_json(&format!("/api/v1/bundles/{id}"), &token).await;
            if run["status"] == "completed" || run["status"] == "failed" {
                assert_eq!(run["status"], "completed", "{run}");
                let pdf = run["artefacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["name"] == "invoice.pdf")
                    .unwrap();
                assert!(pdf["signature"]["timestamp"].is_string(), "{run}");
                ended.push((id.clone(), thawed.elapsed()));
            }
        }
        if ended.len() == ids.len() {
            break;
        }
        poller::poll(&app.state, Consumer::Worker, Duration::from_secs(1))
            .await
            .expect("poll");
    }
    assert_eq!(
        ended.len(),
        ids.len(),
        "every run completes after {dependency} returns"
    );
    let worst = ended.iter().map(|(_, after)| *after).max().unwrap();
    println!("20 signed runs: the last completed {worst:?} after {dependency} returned");
}

/// The TSA, then Vault (one after the other: each outage renders 20 PDFs, and the suite
/// shares two cores).
#[tokio::test]
async fn twenty_signed_runs_outlast_a_tsa_then_a_vault_that_do_not_answer_for_20_seconds() {
    twenty_signed_runs_outlast("tsa").await;
    twenty_signed_runs_outlast("vault").await;
}

#[tokio::test]
async fn signature_options_are_checked_by_field_and_a_drawn_seal_is_no_signature() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let cases = [
        (json!({"level": "B-LTA"}), 0, "documents[0].signature.level"),
        (
            json!({"level": "B-B", "reason": "a\u{0}b"}),
            0,
            "documents[0].signature.reason",
        ),
        (
            json!({"level": "B-B", "location": "x".repeat(10_000)}),
            0,
            "documents[0].signature.location",
        ),
        (json!({"level": "B-B"}), 1, "documents[1].signature"),
    ];
    for (signature, document, field) in cases {
        let mut body = invoice_configuration();
        body["documents"][document]["signature"] = signature.clone();
        let response = create(&app, &token, &body).await;
        let envelope = harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(
            envelope.to_string().contains(field),
            "{signature}: {envelope}"
        );
    }

    // A template that draws its own "digitally signed" seal stays an unsigned drawing.
    let mut body = invoice_configuration();
    let template = body["documents"][0]["template"]
        .as_str()
        .unwrap()
        .to_owned();
    body["documents"][0]["template"] = json!(format!(
        "{template}\n#box(stroke: 1pt, inset: 6pt)[Digitally signed by Merchant A]"
    ));
    let (run, entry) = run_invoice(&app, "merchant-a", &body).await;
    assert!(entry.get("signature").is_none(), "{entry}");
    let pdf = invoice_bytes(&run).await;
    let dir = scratch();
    let path = dir.join("drawn.pdf");
    std::fs::write(&path, &pdf).unwrap();
    let report = pdfsig(&path, &nss_database(&dir, &[]));
    assert!(
        report.contains("does not contain any signatures"),
        "{report}"
    );
}

/// An external CA certifies a merchant's key through the CSR the key made in Vault; the
/// chain imported back must be for that key; only a platform administrator may do either.
#[tokio::test]
async fn an_external_ca_certifies_a_merchants_key_through_its_csr() {
    let app = TestApp::spawn().await;
    let admin = harness::token("platform-admin").await;
    let created: Value = app
        .http
        .post(app.url("/api/v1/merchants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "Merchant X"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!(
        "/api/v1/merchants/{}/signing-certificate",
        created["id"].as_str().unwrap()
    );
    let status = app.get_json(&path, &admin).await;
    let csr = status["csr"].as_str().unwrap();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{status}"
    );
    assert_eq!(status["chain"], json!([]), "{status}");

    // The CA (here OpenBao's PKI engine, called as its operator would) issues for the CSR.
    let vault = std::env::var("VAULT_ADDR").unwrap();
    let issued: Value = reqwest::Client::new()
        .post(format!("{vault}/v1/pki/sign/document-signing"))
        .header("X-Vault-Token", "root")
        .json(&json!({"csr": csr, "common_name": "Merchant X GmbH"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let leaf = issued["data"]["certificate"].as_str().unwrap();
    let ca = issued["data"]["issuing_ca"].as_str().unwrap();

    // Not for this key (the CA's own certificate first): refused, naming the chain.
    let wrong = app
        .http
        .put(app.url(&path))
        .bearer_auth(&admin)
        .json(&json!({"chain": ca}))
        .send()
        .await
        .unwrap();
    let envelope =
        harness::assert_envelope(wrong, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED")
            .await;
    assert!(
        envelope
            .to_string()
            .contains("not for the merchant's signing key"),
        "{envelope}"
    );
    let garbage = app
        .http
        .put(app.url(&path))
        .bearer_auth(&admin)
        .json(&json!({"chain": "not a certificate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let imported = app
        .http
        .put(app.url(&path))
        .bearer_auth(&admin)
        .json(&json!({"chain": format!("{leaf}\n{ca}\n")}))
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), StatusCode::OK);
    let imported: Value = imported.json().await.unwrap();
    assert_eq!(imported["chain"].as_array().unwrap().len(), 2, "{imported}");
    let again = app.get_json(&path, &admin).await;
    assert_eq!(again["chain"], imported["chain"]);

    // A merchant's own token may not.
    let merchant = harness::token("merchant-a").await;
    let refused = app
        .http
        .get(app.url(&path))
        .bearer_auth(&merchant)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

/// A rotated key: the next run has the new version certified and signs with it; a PDF signed
/// before the rotation still validates (it carries its own certificate).
#[tokio::test]
async fn after_a_key_rotation_new_signatures_use_the_new_key_and_old_ones_still_hold() {
    let app = TestApp::spawn().await;
    let (before, old) = run_invoice(&app, "merchant-b", &signed_invoice("B-B")).await;
    let old_pdf = invoice_bytes(&before).await;

    // The operator rotates the merchant's key in Vault.
    let vault = std::env::var("VAULT_ADDR").unwrap();
    let key = format!("documents-{}", before["merchantId"].as_str().unwrap());
    let rotated = reqwest::Client::new()
        .post(format!("{vault}/v1/transit/keys/{key}/rotate"))
        .header("X-Vault-Token", "root")
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success(), "{}", rotated.status());

    // A fresh instance (no cached chain) signs with the new version, certified anew.
    let app = TestApp::spawn().await;
    let (_, new) = run_invoice(&app, "merchant-b", &signed_invoice("B-B")).await;
    assert!(
        new["signature"]["signer"]
            .as_str()
            .unwrap()
            .contains("CN=Merchant B"),
        "{new}"
    );
    assert_ne!(
        new["signature"]["certificateSha256"],
        old["signature"]["certificateSha256"]
    );

    let dir = scratch();
    let path = dir.join("before.pdf");
    std::fs::write(&path, &old_pdf).unwrap();
    let roots = roots(&app, &dir).await;
    let (ok, report) = pyhanko(&path, &roots);
    assert!(ok && report.contains("INTACT:TRUSTED"), "{report}");
}

/// The signing-certificate and trust-roots routes answer hostile input with a clear 4xx in
/// the envelope: NUL, an overflowing number, a huge or deeply nested body, unknown fields, a
/// malformed or unknown merchant id, and a merchant's own token on another merchant's key.
#[tokio::test]
async fn the_certificate_routes_refuse_hostile_input_with_a_clear_4xx() {
    let app = TestApp::spawn().await;
    let admin = harness::token("platform-admin").await;
    let merchant_b = "22222222-2222-4222-8222-222222222222";
    let path = format!("/api/v1/merchants/{merchant_b}/signing-certificate");
    let put = |body: String| {
        app.http
            .put(app.url(&path))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            json!({"chain": "-----BEGIN CERTIFICATE-----\u{0}-----END CERTIFICATE-----"})
                .to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({"chain": "A".repeat(70_000)}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            r#"{"chain": 1e400}"#.to_owned(),
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
        ),
        (
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
        ),
        (
            json!({"chain": "x", "merchantId": merchant_b}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        ),
        (
            json!({"chain": "x".repeat(2 << 20)}).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (body, status, code) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let response = put(body).await.unwrap();
        assert_eq!(response.status(), status, "{shown}");
        let envelope: Value = response.json().await.unwrap();
        assert_eq!(envelope["error"]["code"], code, "{shown}: {envelope}");
    }
    // Ids: malformed, NUL, unknown (a path that names no merchant: 404, as for every route).
    for (id, status) in [
        ("not-a-uuid", StatusCode::NOT_FOUND),
        ("%00", StatusCode::NOT_FOUND),
        (
            "99999999-9999-4999-8999-999999999999",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = app
            .http
            .get(app.url(&format!("/api/v1/merchants/{id}/signing-certificate")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{id}");
        let envelope: Value = response.json().await.unwrap();
        assert!(envelope["error"]["code"].is_string(), "{id}: {envelope}");
    }
    // A merchant may not read or replace another's key (nor its own: the platform's job).
    let merchant_a = harness::token("merchant-a").await;
    let response = app
        .http
        .put(app.url(&path))
        .bearer_auth(&merchant_a)
        .json(&json!({"chain": "x"}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    // Trust roots: no token, a forged one.
    for token in [None, Some("not.a.jwt")] {
        let mut request = app.http.get(app.url("/api/v1/trust-roots"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
}
