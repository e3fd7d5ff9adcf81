//! Assets end to end: uploads typed by their bytes, stored once per merchant, pinned by a
//! configuration version; Typst images and fonts, HTML data URIs, seed images; the manifest
//! names them; hostile uploads and references refused with clear 4xx answers.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

use crate::configurations::{create, created_id};
use crate::harness::{self, assert_envelope, sample_assets, TestApp};
use crate::pdf::{poppler, poppler_with};

fn logo() -> Vec<u8> {
    sample_assets()
        .into_iter()
        .find(|(name, _)| name == "logo.png")
        .unwrap()
        .1
}

pub(crate) fn font() -> Vec<u8> {
    sample_assets()
        .into_iter()
        .find(|(name, _)| name == "docbundle-sans.ttf")
        .unwrap()
        .1
}

fn sha(bytes: &[u8]) -> String {
    docbundle::domain::digest::sha256_hex(bytes)
}

/// The sample logo with a `tEXt` chunk naming `tag`: a valid PNG no one else has uploaded.
pub(crate) fn unique_png(tag: &str) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let png = logo();
    // Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC).
    let (head, tail) = png.split_at(8 + 25);
    let mut data = b"Comment\0".to_vec();
    data.extend_from_slice(tag.as_bytes());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut typed = b"tEXt".to_vec();
    typed.extend_from_slice(&data);
    chunk.extend_from_slice(&typed);
    chunk.extend_from_slice(&crc32(&typed).to_be_bytes());
    [head, &chunk, tail].concat()
}

fn data_uri(mime: &str, bytes: &[u8]) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[tokio::test]
async fn uploads_are_typed_by_their_bytes_stored_once_and_readable_by_their_merchant_only() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let png = unique_png(&uuid::Uuid::new_v4().to_string());
    let response = app.upload_asset(&token, "brand.png", png.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let asset: Value = response.json().await.unwrap();
    assert_eq!(asset["sha256"], sha(&png));
    assert_eq!(asset["kind"], "png");
    assert_eq!(asset["contentType"], "image/png");
    assert_eq!(asset["size"], png.len());
    assert_eq!(asset["name"], "brand.png");
    assert_eq!(location, format!("/api/v1/assets/{}", sha(&png)));

    // The same bytes again (under another name) are the same asset.
    let again = app.upload_asset(&token, "other.png", png.clone()).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["sha256"], asset["sha256"]);
    assert_eq!(again["name"], "brand.png");

    // An editor's SVG (metadata, gradients, fragment links) is a picture: stored as sent.
    let svg = format!(
        r##"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" inkscape:label="{}" width="20" height="10"><defs><linearGradient id="g"><stop offset="0" stop-color="#036"/></linearGradient></defs><rect width="20" height="10" fill="url(#g)"/><use href="#g"/></svg>"##,
        uuid::Uuid::new_v4()
    )
    .into_bytes();
    let response = app.upload_asset(&token, "mark.svg", svg.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["kind"], "svg");
    assert_eq!(stored["sha256"], sha(&svg));

    let reader = harness::token("merchant-a-reader").await;
    let read = app.get_json(&location, &reader).await;
    assert_eq!(read, asset);
    let content = app
        .call(Method::GET, &format!("{location}/content"), &reader)
        .await;
    assert_eq!(content.status(), StatusCode::OK);
    assert_eq!(content.headers()["content-type"], "image/png");
    assert!(content.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(content.bytes().await.unwrap().to_vec(), png);
    let listed = app.get_json("/api/v1/assets?limit=100", &reader).await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"brand.png"), "{listed}");
    assert!(names.contains(&"logo.png"), "{listed}");
    // Paging walks every asset exactly once.
    let first = app.get_json("/api/v1/assets?limit=1", &reader).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = app
        .get_json(&format!("/api/v1/assets?limit=1&cursor={cursor}"), &reader)
        .await;
    assert_ne!(first["items"][0]["sha256"], second["items"][0]["sha256"]);

    // Another merchant sees none of it.
    let other = harness::token("merchant-b").await;
    for path in [location.clone(), format!("{location}/content")] {
        let response = app.call(Method::GET, &path, &other).await;
        assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let listed = app.get_json("/api/v1/assets?limit=100", &other).await;
    assert!(!listed.to_string().contains(&sha(&png)));
    // A platform caller naming a merchant that does not exist: 404, for uploads and saves.
    let admin = harness::token("platform-admin").await;
    let nobody = uuid::Uuid::new_v4();
    let response = app
        .http
        .post(app.url(&format!("/api/v1/assets?name=x.png&merchantId={nobody}")))
        .bearer_auth(&admin)
        .body(logo())
        .send()
        .await
        .unwrap();
    assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/configurations?merchantId={nobody}")))
        .bearer_auth(&admin)
        .json(&json!({"name": "X", "documents": [{"name": "a.txt", "format": "txt", "template": "a"}]}))
        .send()
        .await
        .unwrap();
    assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    // Readers cannot upload; nobody without a token can do anything.
    let response = app.upload_asset(&reader, "x.png", png.clone()).await;
    assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let response = app
        .http
        .post(app.url("/api/v1/assets?name=x.png"))
        .body(png)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forged_damaged_oversized_and_misnamed_uploads_are_refused() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let elf = [b"\x7fELF\x02\x01\x01\x00".as_slice(), &[0u8; 4096]].concat();
    let script_svg =
        br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>"#
            .to_vec();
    let bomb_svg = br#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><svg>&b;</svg>"#.to_vec();
    // A PNG header claiming 100000 × 100000 pixels: a decompression bomb.
    let mut bomb_png = logo()[..33].to_vec();
    bomb_png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb_png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    for (name, bytes, field, expected) in [
        (
            "logo.png",
            elf.clone(),
            "body",
            "not a PNG, JPEG, SVG or WebP image",
        ),
        ("tool.exe", elf, "name", "must end in"),
        ("logo.jpg", logo(), "name", "the content is a png file"),
        ("font.png", font(), "name", "the content is a ttf file"),
        ("badge.svg", script_svg, "body", "script"),
        // Active content a browser runs when an HTML document embeds the SVG (<object>, <iframe>).
        (
            "ns.svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><s:script xmlns:s="http://www.w3.org/2000/svg">alert(1)</s:script></svg>"#.to_vec(),
            "body",
            "element <script>",
        ),
        (
            "onload.svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><rect width="1" height="1"/></svg>"#.to_vec(),
            "body",
            "event handler attribute onload",
        ),
        (
            "frame.svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject width="9" height="9"><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:alert(1)"/></foreignObject></svg>"#.to_vec(),
            "body",
            "element <foreignObject>",
        ),
        ("bomb.svg", bomb_svg, "body", "entities"),
        ("bomb.png", bomb_png, "body", "pixels"),
        ("empty.png", Vec::new(), "body", "must hold"),
        ("..%2Fescape.png", logo(), "name", "letters, digits"),
        ("a%00.png", logo(), "name", "NUL"),
    ] {
        let response = app.upload_asset(&token, name, bytes).await;
        let body = assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            body["error"]["details"][0]["field"], field,
            "{name}: {body}"
        );
        assert!(
            body["error"]["details"][0]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{name}: {body}"
        );
    }
    // Larger than ASSET_MAX_BYTES: refused before it is read whole.
    let huge = [logo(), vec![0u8; 5 * 1024 * 1024]].concat();
    let response = app.upload_asset(&token, "huge.png", huge).await;
    assert_envelope(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    // No name, a junk query, an unknown asset, a hash that is not one.
    let response = app
        .http
        .post(app.url("/api/v1/assets"))
        .bearer_auth(&token)
        .body(logo())
        .send()
        .await
        .unwrap();
    assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    for path in [
        format!("/api/v1/assets/{}", "0".repeat(64)),
        "/api/v1/assets/not-a-hash".to_owned(),
        format!("/api/v1/assets/{}/content", "A".repeat(64)),
    ] {
        let response = app.call(Method::GET, &path, &token).await;
        assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let response = app
        .call(Method::GET, "/api/v1/assets?cursor=%00junk", &token)
        .await;
    assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

/// A save that must be refused with `422`: its envelope.
async fn refused(app: &TestApp, token: &str, body: &Value) -> Value {
    let response = create(app, token, body).await;
    assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await
}

fn logo_pdf(assets: Value) -> Value {
    json!({
        "name": "Branded",
        "documents": [{"name": "letter.pdf", "format": "pdf",
            "template": "#image(\"logo.png\", width: 3cm)\n#text(font: \"Docbundle Sans\")[Hello]"}],
        "assets": assets,
    })
}

#[tokio::test]
async fn a_configuration_names_existing_assets_of_the_right_kind() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let unknown = "f".repeat(64);
    for (assets, field, expected) in [
        (json!({"logo.png": unknown}), "assets.logo.png", "no asset"),
        (
            json!({"logo.png": sha(&font())}),
            "assets.logo.png",
            "ttf file",
        ),
        (json!({"logo.png": "LOGO"}), "assets.logo.png", "SHA-256"),
        (
            json!({"../logo.png": sha(&logo())}),
            "assets.../logo.png",
            "letters, digits",
        ),
        (
            json!({"data.json": sha(&logo())}),
            "assets.data.json",
            "must end in",
        ),
        (
            json!({"LOGO.png": sha(&logo()), "logo.png": sha(&logo())}),
            "assets.logo.png",
            "only in case",
        ),
    ] {
        let body = refused(&app, &token, &logo_pdf(assets.clone())).await;
        let detail = body["error"]["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["field"] == field)
            .unwrap_or_else(|| panic!("{assets}: {body}"));
        assert!(
            detail["message"].as_str().unwrap().contains(expected),
            "{assets}: {body}"
        );
    }
    // A template that uses an image it did not name fails its trial render.
    let body = refused(&app, &token, &logo_pdf(json!({}))).await;
    assert_eq!(
        body["error"]["details"][0]["field"], "documents[0].template",
        "{body}"
    );
    // Too many.
    let many: serde_json::Map<String, Value> = (0..21)
        .map(|i| (format!("l{i}.png"), json!(sha(&logo()))))
        .collect();
    let body = refused(&app, &token, &logo_pdf(Value::Object(many))).await;
    assert!(body.to_string().contains("at most 20 assets"), "{body}");
    // Said once, not once per entry.
    let many: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| (format!("l{i}.png"), json!("f".repeat(64))))
        .collect();
    let body = refused(&app, &token, &logo_pdf(Value::Object(many))).await;
    assert_eq!(
        body["error"]["details"].as_array().unwrap().len(),
        1,
        "{body:.500}"
    );

    // Seven 4 MiB images are more than a render may carry: refused at save, by field.
    let mut big = serde_json::Map::new();
    for i in 0..7 {
        let png = [
            unique_png(&format!("big-{i}-{}", uuid::Uuid::new_v4())),
            vec![0u8; 4 * 1024 * 1024 - 4096],
        ]
        .concat();
        assert_eq!(
            app.upload_asset(&token, "big.png", png.clone())
                .await
                .status(),
            StatusCode::CREATED
        );
        big.insert(format!("big{i}.png"), json!(sha(&png)));
    }
    let body = refused(&app, &token, &logo_pdf(Value::Object(big))).await;
    assert!(body.to_string().contains("the assets add up to"), "{body}");

    // Merchant B cannot use an asset only A uploaded.
    let png = unique_png(&uuid::Uuid::new_v4().to_string());
    assert_eq!(
        app.upload_asset(&token, "mine.png", png.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let other = harness::token("merchant-b").await;
    let body = refused(
        &app,
        &other,
        &logo_pdf(json!({"logo.png": sha(&png), "docbundle-sans.ttf": sha(&font())})),
    )
    .await;
    assert!(body.to_string().contains("no asset"), "{body}");
    // A saves it, and reads the pinned hashes back.
    let response = create(
        &app,
        &token,
        &logo_pdf(json!({"logo.png": sha(&png), "docbundle-sans.ttf": sha(&font())})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["assets"]["logo.png"], sha(&png));
}

fn images_of(pdf: &[u8]) -> Vec<String> {
    poppler_with("pdfimages", &["-list"], pdf)
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[tokio::test]
async fn the_sample_invoice_has_its_logo_font_and_formatted_amounts_and_replays_identically() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let id = created_id(
        &app,
        &token,
        &crate::configurations::invoice_configuration(),
    )
    .await;
    let seed = json!({
        "number": "INV-2026-0099",
        "customer": {"name": "Acme GmbH", "address": "Hauptstrasse 1, Berlin"},
        "period": "2026-10",
        "currency": "EUR",
        "locale": "de-DE",
        "lines": [{"description": "Beratung", "quantity": 1000, "unitPrice": 12.345}]
    });
    let launch = app
        .launch(&token, &json!({"configurationId": id, "seed": seed}))
        .await;
    assert_eq!(launch.status(), StatusCode::ACCEPTED);
    let run: Value = launch.json().await.unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The manifest lists the assets among the inputs.
    assert_eq!(
        done["manifest"]["assets"],
        json!([
            {"name": "docbundle-sans.ttf", "sha256": sha(&font())},
            {"name": "logo.png", "sha256": sha(&logo())},
        ])
    );
    let artefact = done["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "invoice.pdf")
        .unwrap()
        .clone();
    let pdf = harness::download(artefact["downloadUrl"].as_str().unwrap()).await;
    let images = images_of(&pdf);
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(images[0].contains("image 240 80 "), "{images:?}");
    let fonts = poppler("pdffonts", &pdf);
    assert!(
        fonts
            .lines()
            .any(|l| l.contains("+DocbundleSans") && l.contains("yes")),
        "the brand font is embedded: {fonts}"
    );
    let text = poppler("pdftotext", &pdf).replace(['\u{a0}', '\u{202f}'], " ");
    for expected in ["1. Oktober 2026", "12,35 €", "12.345,00 €", "1.000"] {
        assert!(text.contains(expected), "`{expected}` missing from: {text}");
    }
    // A replay uses the very same bytes.
    let replay = app
        .launch(
            &token,
            &json!({"configurationId": id, "forcingOptions": {"replayRunId": run["id"]}}),
        )
        .await;
    let replay: Value = replay.json().await.unwrap();
    let replay = app.run_to_end(&token, replay["id"].as_str().unwrap()).await;
    assert_eq!(replay["manifest"]["replay"]["identical"], true, "{replay}");
    assert_eq!(replay["manifest"]["assets"], done["manifest"]["assets"]);
}

#[tokio::test]
async fn html_inlines_assets_and_seed_images_are_usable_by_typst() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = json!({
        "name": "Signed",
        "documents": [
            {"name": "letter.html", "format": "html", "template": "<style>@font-face { font-family: Brand; src: url({{ assets['docbundle-sans.ttf'] }}); }</style><img src=\"{{ assets['logo.png'] }}\"><p>{{ data.total | money('USD', 'en-US') }}</p>"},
            {"name": "signed.pdf", "format": "pdf", "template": "#let data = json(\"data.json\")\n#image(\"logo.png\", width: 2cm)\n#image(\"/seed/customer/signature\", width: 3cm)\nSigned by #data.customer.name"}
        ],
        "assets": {"logo.png": sha(&logo()), "docbundle-sans.ttf": sha(&font())},
        "defaults": {"total": 1, "customer": {"name": "Ada", "signature": data_uri("image/png", &logo())}},
    });
    let id = created_id(&app, &token, &config).await;
    let signature = unique_png("signature");
    let seed = json!({"total": 1234.5, "customer": {"name": "Ada", "signature": data_uri("image/png", &signature)}});
    let launch = app
        .launch(&token, &json!({"configurationId": id, "seed": seed}))
        .await;
    let run: Value = launch.json().await.unwrap();
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let artefact = |name: &str| {
        done["artefacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .unwrap()["downloadUrl"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let html = String::from_utf8(harness::download(&artefact("letter.html")).await).unwrap();
    // Self-contained: the bytes themselves, unescaped, in the image and the style.
    assert!(
        html.contains(&format!("<img src=\"{}\">", data_uri("image/png", &logo()))),
        "{html:.300}"
    );
    assert!(html.contains(&format!("url({})", data_uri("font/ttf", &font()))));
    assert!(html.contains("<p>$1,234.50</p>"), "{html:.300}");
    let pdf = harness::download(&artefact("signed.pdf")).await;
    assert_eq!(images_of(&pdf).len(), 2, "{:?}", images_of(&pdf));

    // A seed image that is not one fails the run cleanly, naming where it was.
    let elf = [b"\x7fELF\x02\x01\x01\x00".as_slice(), &[0u8; 64]].concat();
    for (signature, expected) in [
        (data_uri("image/png", &elf), "not a PNG"),
        ("data:image/png;base64,%%%".to_owned(), "not valid base64"),
        ("https://example.com/sig.png".to_owned(), "data:image"),
        (data_uri("image/png", &font()), "font"),
    ] {
        let seed = json!({"total": 1, "customer": {"name": "Eve", "signature": signature}});
        let launch = app
            .launch(&token, &json!({"configurationId": id, "seed": seed}))
            .await;
        let run: Value = launch.json().await.unwrap();
        let failed = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["error"]["code"], "TEMPLATE_ERROR", "{failed}");
        let message = failed["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("seed /customer/signature") && message.contains(expected),
            "{message}"
        );
    }
}

/// An RGBA PNG of `width` × `height` (made by Python's zlib: flat colour, tiny file).
fn big_png(width: u32, height: u32) -> Vec<u8> {
    let script = format!(
        "import sys, zlib, struct\nw, h = {width}, {height}\nrow = b'\\x00' + b'\\x10\\x20\\x30\\xff' * w\nraw = zlib.compress(row * h, 9)\ndef chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)\nsys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 6, 0, 0, 0)) + chunk(b'IDAT', raw) + chunk(b'IEND', b''))\n"
    );
    let output = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(output.status.success());
    output.stdout
}

#[tokio::test]
async fn the_largest_image_accepted_renders_within_the_memory_budget() {
    // The memory budget is the subject: a debug build on a loaded 2-core machine may take more
    // than the default 10 s to decode 16 megapixels, so time gets room here.
    let app = TestApp::spawn_with(|s| s.render_limits.time_budget = Duration::from_secs(60)).await;
    let token = harness::token("merchant-a").await;
    // 16 megapixels: the most an upload may have.
    let largest = big_png(4000, 4000);
    let response = app.upload_asset(&token, "photo.png", largest.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let config = json!({
        "name": "Photo",
        "documents": [{"name": "photo.pdf", "format": "pdf", "template": "#image(\"photo.png\", width: 10cm)"}],
        "assets": {"photo.png": sha(&largest)},
    });
    let response = create(&app, &token, &config).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{:?}",
        response.text().await
    );
    // One pixel more is refused at upload, from the header alone.
    let response = app
        .upload_asset(&token, "huge.png", big_png(4000, 4001))
        .await;
    let body = assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert!(body.to_string().contains("16000000 pixels"), "{body}");
}
