//! Rendering a whole bundle: pure and deterministic. The same configuration version and seed
//! give the same bytes for every artefact, including `bundle.zip` (sorted entries, fixed
//! timestamps and permissions).

use std::io::Write;

use crate::{RenderInput, Renderer, TemplateError, TemplateErrorKind};
use docbundle_domain::configuration::DocumentSpec;
use docbundle_domain::run_errors::RunError;
use serde_json::Value;

/// One rendered file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedArtefact {
    pub name: String,
    /// `html`, `md`, …, or `zip` for the archive.
    pub format: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Why a bundle cannot be rendered from this seed: permanent, not worth a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderFailure {
    pub code: &'static str,
    pub document: String,
    pub message: String,
}

impl RenderFailure {
    /// As the failed run records it.
    pub fn run_error(&self) -> RunError {
        RunError {
            document: Some(self.document.clone()),
            ..RunError::new(
                self.code,
                format!("document `{}`: {}", self.document, self.message),
            )
        }
    }
}

pub const ARCHIVE_NAME: &str = "bundle.zip";

/// The code of a render that could not even start (no rendering process): transient.
pub const RENDERER_UNAVAILABLE: &str = "RENDERER_UNAVAILABLE";

/// Everything a bundle is rendered from.
pub struct BundleInput<'a> {
    pub documents: &'a [DocumentSpec],
    pub archive: bool,
    pub data: &'a Value,
    pub seed_hash: &'a str,
    pub configuration_name: &'a str,
    pub configuration_version: i32,
    /// The version's assets.
    pub assets: &'a [crate::RenderAsset],
}

/// Renders every document (sorted by name), plus `bundle.zip` when asked. Blocking.
pub fn render_bundle(
    input: &BundleInput<'_>,
    renderer: &Renderer,
) -> Result<Vec<RenderedArtefact>, RenderFailure> {
    let mut artefacts: Vec<RenderedArtefact> = Vec::with_capacity(input.documents.len() + 1);
    for i in crate::einvoice::render_order(input.documents) {
        let doc = &input.documents[i];
        // An e-invoice PDF carries its XML, rendered (and checked) before it.
        let attachment = match &doc.einvoice {
            Some(e) if doc.format == docbundle_domain::document::DocumentFormat::Pdf => {
                let xml = e.xml.as_deref().unwrap_or_default();
                let Some(rendered) = artefacts.iter().find(|a| a.name == xml) else {
                    return Err(RenderFailure {
                        code: "TEMPLATE_ERROR",
                        document: doc.name.clone(),
                        message: format!("the e-invoice's xml document `{xml}` was not rendered"),
                    });
                };
                Some(crate::einvoice::attachment(e.profile, &rendered.bytes))
            }
            _ => None,
        };
        let render_input = RenderInput {
            data: input.data,
            seed_hash: input.seed_hash,
            configuration_name: input.configuration_name,
            configuration_version: input.configuration_version,
            pdf_standard: doc.pdf_standard.as_deref(),
            assets: &crate::assets_used_by(input.assets, doc.format, &doc.template),
            attachment: attachment.as_ref(),
        };
        let mut bytes = renderer
            .render(doc.format, &doc.template, &render_input)
            .map_err(|e| failure(&doc.name, &e))?;
        // An e-invoice's XML is checked against every profile it is declared as; no invalid
        // one is stored.
        for profile in crate::einvoice::profiles_of(input.documents, doc) {
            crate::einvoice::check_xml(profile, &bytes).map_err(|e| RenderFailure {
                code: docbundle_domain::run_errors::EINVOICE_INVALID,
                document: doc.name.clone(),
                message: e.message,
            })?;
        }
        if let (Some(e), Some(_)) = (&doc.einvoice, &attachment) {
            bytes =
                crate::einvoice::finish_pdf(bytes, e.profile).map_err(|message| RenderFailure {
                    code: docbundle_domain::run_errors::EINVOICE_INVALID,
                    document: doc.name.clone(),
                    message: format!("the Factur-X metadata cannot be written: {message}"),
                })?;
        }
        artefacts.push(RenderedArtefact {
            name: doc.name.clone(),
            format: doc.format.as_str().to_owned(),
            content_type: doc.format.content_type().to_owned(),
            bytes,
        });
    }
    artefacts.sort_by(|a, b| a.name.cmp(&b.name));
    if input.archive {
        let zip = archive(&artefacts).map_err(|e| RenderFailure {
            code: "ARCHIVE_ERROR",
            document: ARCHIVE_NAME.to_owned(),
            message: e,
        })?;
        artefacts.push(RenderedArtefact {
            name: ARCHIVE_NAME.to_owned(),
            format: "zip".to_owned(),
            content_type: "application/zip".to_owned(),
            bytes: zip,
        });
        artefacts.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(artefacts)
}

fn failure(document: &str, e: &TemplateError) -> RenderFailure {
    let code = match e.kind {
        TemplateErrorKind::Limit => "RENDER_LIMIT_EXCEEDED",
        TemplateErrorKind::Unsupported => "UNSUPPORTED_FORMAT",
        TemplateErrorKind::Syntax | TemplateErrorKind::Runtime => "TEMPLATE_ERROR",
        TemplateErrorKind::Crashed => "RENDERER_FAILED",
        TemplateErrorKind::Unavailable => RENDERER_UNAVAILABLE,
    };
    RenderFailure {
        code,
        document: document.to_owned(),
        message: e.describe(),
    }
}

/// Formats whose bytes are compressed already (a PDF's streams are deflated by Typst):
/// deflating them again costs time and saves nothing, so the archive stores them as they are.
const COMPRESSED_FORMATS: [&str; 4] = ["pdf", "png", "jpeg", "zip"];

/// A ZIP of `artefacts` in the given (sorted) order, with a fixed timestamp (1980-01-01) and
/// permissions, so that the archive's bytes depend only on its contents. Text is deflated;
/// already-compressed formats are stored.
pub fn archive(artefacts: &[RenderedArtefact]) -> Result<Vec<u8>, String> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for artefact in artefacts {
        let method = if COMPRESSED_FORMATS.contains(&artefact.format.as_str()) {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        writer
            .start_file(artefact.name.as_str(), options.compression_method(method))
            .map_err(|e| e.to_string())?;
        writer
            .write_all(&artefact.bytes)
            .map_err(|e| e.to_string())?;
    }
    writer
        .finish()
        .map(|cursor| cursor.into_inner())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DocumentFormat, RenderLimits};
    use serde_json::json;

    fn docs() -> Vec<DocumentSpec> {
        vec![
            DocumentSpec {
                name: "b.txt".into(),
                format: DocumentFormat::Txt,
                template: "Hello {{ data.name }}".into(),
                pdf_standard: None,
                signature: None,
                einvoice: None,
            },
            DocumentSpec {
                name: "a.html".into(),
                format: DocumentFormat::Html,
                template: "<p>{{ data.name }}</p>".into(),
                pdf_standard: None,
                signature: None,
                einvoice: None,
            },
        ]
    }

    fn input<'a>(docs: &'a [DocumentSpec], data: &'a Value) -> BundleInput<'a> {
        BundleInput {
            documents: docs,
            archive: true,
            data,
            seed_hash: "h",
            configuration_name: "c",
            configuration_version: 1,
            assets: &[],
        }
    }

    #[test]
    fn bundles_are_sorted_and_byte_identical_across_renders() {
        let docs = docs();
        let data = json!({"name": "Acme"});
        let first = render_bundle(
            &input(&docs, &data),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap();
        let names: Vec<_> = first.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, vec!["a.html", "b.txt", "bundle.zip"]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = render_bundle(
            &input(&docs, &data),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap();
        assert_eq!(first, second, "no clock or randomness leaks into the bytes");
    }

    #[test]
    fn the_archive_holds_every_artefact() {
        let docs = docs();
        let data = json!({"name": "Acme"});
        let artefacts = render_bundle(
            &input(&docs, &data),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap();
        let zip_bytes = &artefacts
            .iter()
            .find(|a| a.name == ARCHIVE_NAME)
            .unwrap()
            .bytes;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.clone())).unwrap();
        assert_eq!(archive.len(), 2);
        let mut member = archive.by_name("b.txt").unwrap();
        // Text is deflated (a PDF is stored: see below).
        assert_eq!(member.compression(), zip::CompressionMethod::Deflated);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut member, &mut text).unwrap();
        assert_eq!(text, "Hello Acme");
    }

    #[test]
    fn template_errors_name_the_document() {
        let docs = vec![DocumentSpec {
            name: "bad.txt".into(),
            format: DocumentFormat::Txt,
            template: "{{ 1 + 'x' }}".into(),
            pdf_standard: None,
            signature: None,
            einvoice: None,
        }];
        let data = json!({});
        let err = render_bundle(
            &input(&docs, &data),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap_err();
        assert_eq!(err.code, "TEMPLATE_ERROR");
        assert_eq!(err.document, "bad.txt");
        assert!(err.run_error().message.contains("bad.txt"));
    }

    #[test]
    #[cfg(feature = "pdf")]
    fn pdf_documents_render_and_join_the_archive() {
        let docs = vec![DocumentSpec {
            name: "invoice.pdf".into(),
            format: DocumentFormat::Pdf,
            template: "#let data = json(\"data.json\")\n= Invoice for #data.name".into(),
            pdf_standard: None,
            signature: None,
            einvoice: None,
        }];
        let data = json!({"name": "Acme"});
        let artefacts = render_bundle(
            &input(&docs, &data),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap();
        let pdf = artefacts.iter().find(|a| a.name == "invoice.pdf").unwrap();
        assert!(pdf.bytes.starts_with(b"%PDF-"));
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(artefacts.len(), 2, "the PDF and bundle.zip");
        // Already compressed: stored in the archive as it is, byte for byte.
        let zip_bytes = &artefacts[0].bytes;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes.clone())).unwrap();
        let member = archive.by_name("invoice.pdf").unwrap();
        assert_eq!(member.compression(), zip::CompressionMethod::Stored);
        assert_eq!(member.compressed_size(), pdf.bytes.len() as u64);
    }
}
