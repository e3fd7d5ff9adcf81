//! Configurations: what a caller sends, and the checks that turn it into a
//! [`ConfigurationSpec`] that can be stored as a new immutable version.
//!
//! On save `dataSchema` must be a JSON Schema, `defaults` must satisfy it, names, formats,
//! triggers and assets must be sound, and (judged by the engines, `render::configuration`)
//! every template must compile and a trial render of every document with `defaults` must
//! succeed. Each failure names its field (`documents[2].template`) and, where the engine gives
//! them, line and column.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::asset::{self, AssetKind};
use crate::document::{DocumentFormat, PDF_STANDARDS};
use crate::FieldError;

pub const MAX_DOCUMENTS: usize = 50;
pub const MAX_TRIGGERS: usize = 50;
/// Names the bundle itself uses for its own files (`manifest.sig` holds the manifest's
/// signature in a downloaded bundle).
const RESERVED_NAMES: [&str; 3] = ["manifest.json", "manifest.sig", "bundle.zip"];

/// The body of `POST` / `PUT /api/v1/configurations`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigurationBody {
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub documents: Vec<DocumentBody>,
    /// A JSON Schema every seed must satisfy.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
    /// The seed of trial renders at save, and of `render` without one; must satisfy
    /// `dataSchema`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<Value>,
    /// The inbound event types that launch a run of this configuration.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::document::InboundEventType>>, max_items = 50)]
    pub triggers: Option<Vec<String>>,
    #[serde(default)]
    pub archive: Option<bool>,
    /// The images and fonts the templates use, by the name they use them with
    /// (`{"logo.png": "<sha256>"}`): uploaded with `POST /api/v1/assets`, pinned with the
    /// version. Typst reads them as files (`image("logo.png")`, fonts by family); HTML and
    /// the other text formats get `assets["logo.png"]` as a `data:` URI.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    pub assets: Option<BTreeMap<String, String>>,
    /// How long its runs' artefacts and seeds are kept (pinned with the version); the
    /// platform's default for a part left out.
    #[serde(default)]
    pub retention: Option<crate::retention::RetentionBody>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentBody {
    #[schema(value_type = crate::document::DocumentName)]
    pub name: String,
    #[schema(value_type = DocumentFormat)]
    pub format: String,
    pub template: String,
    /// PDF documents only: the standard the PDF must conform to, enforced by Typst at save
    /// and on every render: `a-1b`, `a-1a`, `a-2b`, `a-2u`, `a-2a`, `a-3b`, `a-3u`, `a-3a`,
    /// `a-4`, `a-4f`, `a-4e` (PDF/A) or `ua-1` (PDF/UA-1).
    #[serde(default)]
    #[schema(value_type = Option<crate::document::PdfStandard>)]
    pub pdf_standard: Option<String>,
    /// PDF documents only: sign every rendered PDF as the merchant (PAdES baseline, the key in
    /// Vault); `B-T` and `B-LT` need a time-stamping authority (`TSA_URL`).
    #[serde(default)]
    pub signature: Option<crate::signature::SignatureBody>,
    /// PDF and xml documents: an e-invoice (Factur-X) of a profile. A PDF names the `xml`
    /// document it carries as `factur-x.xml` and must be PDF/A-3; the XML is checked against
    /// the profile's XSD and EN 16931 rules at save (with the defaults) and on every render.
    #[serde(default)]
    pub einvoice: Option<crate::einvoice::EinvoiceBody>,
}

/// One document of a configuration version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DocumentSpec {
    pub name: String,
    pub format: DocumentFormat,
    pub template: String,
    /// The PDF standard it conforms to, when it asked for one.
    #[serde(
        rename = "pdfStandard",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pdf_standard: Option<String>,
    /// The signature every rendered PDF gets, when it asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::SignatureSpec>,
    /// The e-invoice it is, when it declared one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einvoice: Option<crate::einvoice::EinvoiceSpec>,
}

/// A validated configuration, ready to be stored as a version.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigurationSpec {
    pub name: String,
    pub description: Option<String>,
    pub documents: Vec<DocumentSpec>,
    pub data_schema: Option<Value>,
    pub defaults: Option<Map<String, Value>>,
    pub triggers: Vec<String>,
    pub archive: bool,
    /// Asset name → SHA-256.
    pub assets: BTreeMap<String, String>,
    pub retention: crate::retention::Retention,
}

/// The merchant's stored assets a configuration names, by SHA-256: their kind and bytes.
pub type StoredAssets = HashMap<String, (AssetKind, bytes::Bytes)>;

/// Checks everything about `body` that needs no engine, and each document's template with
/// `compile` (its index, format and text → the problem, if any); every problem is added to
/// `errors` with its field. The spec is only meaningful when no error was added.
pub fn check(
    body: ConfigurationBody,
    retention: &crate::retention::RetentionLimits,
    max_template_bytes: usize,
    compile: impl Fn(usize, DocumentFormat, &str) -> Option<FieldError>,
    errors: &mut Vec<FieldError>,
) -> ConfigurationSpec {
    let (name, description) = check_texts(&body, errors);
    let assets = body.assets.clone().unwrap_or_default();
    asset::check_map(&assets, errors);
    let documents = check_documents(body.documents, max_template_bytes, compile, errors);
    let defaults = check_schema_and_defaults(body.data_schema.as_ref(), body.defaults, errors);
    let triggers = check_triggers(body.triggers.unwrap_or_default(), errors);
    let retention = retention.resolve(body.retention, errors);
    ConfigurationSpec {
        name,
        description,
        documents,
        data_schema: body.data_schema,
        defaults,
        triggers,
        archive: body.archive.unwrap_or(false),
        assets,
        retention,
    }
}

/// The name and description, trimmed.
fn check_texts(body: &ConfigurationBody, errors: &mut Vec<FieldError>) -> (String, Option<String>) {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    let description = body
        .description
        .as_ref()
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 2000)
    {
        errors.push(FieldError::new(
            "description",
            "must be at most 2000 characters",
        ));
    }
    (name, description)
}

/// Names unique and plain, formats known, templates within size and compiling.
fn check_documents(
    raw: Vec<DocumentBody>,
    max_template_bytes: usize,
    compile: impl Fn(usize, DocumentFormat, &str) -> Option<FieldError>,
    errors: &mut Vec<FieldError>,
) -> Vec<DocumentSpec> {
    if raw.is_empty() || raw.len() > MAX_DOCUMENTS {
        errors.push(FieldError::new(
            "documents",
            format!("must hold 1 to {MAX_DOCUMENTS} documents"),
        ));
    }
    let mut seen = HashSet::new();
    let mut documents = Vec::new();
    for (i, doc) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("documents[{i}].{f}");
        if let Err(problem) = check_document_name(&doc.name) {
            errors.push(FieldError::new(field("name"), problem));
        } else if !seen.insert(doc.name.to_ascii_lowercase()) {
            errors.push(FieldError::new(
                field("name"),
                "is used by another document",
            ));
        }
        let Some(format) = DocumentFormat::parse(&doc.format) else {
            errors.push(FieldError::new(
                field("format"),
                format!("must be one of {}", DocumentFormat::names().join(", ")),
            ));
            continue;
        };
        if doc.template.len() > max_template_bytes {
            errors.push(FieldError::new(
                field("template"),
                format!("exceeds the limit of {max_template_bytes} bytes"),
            ));
            continue;
        }
        errors.extend(compile(i, format, &doc.template));
        match (&doc.pdf_standard, format) {
            (None, _) => {}
            (Some(standard), DocumentFormat::Pdf) if PDF_STANDARDS.contains(&standard.as_str()) => {
            }
            (Some(_), DocumentFormat::Pdf) => errors.push(FieldError::new(
                field("pdfStandard"),
                format!("must be one of {}", PDF_STANDARDS.join(", ")),
            )),
            (Some(_), _) => errors.push(FieldError::new(
                field("pdfStandard"),
                "applies to pdf documents only",
            )),
        }
        let signature = match (doc.signature, format) {
            (None, _) => None,
            (Some(body), DocumentFormat::Pdf) => {
                crate::signature::check(body, |f| field(&format!("signature.{f}")), errors)
            }
            (Some(_), _) => {
                errors.push(FieldError::new(
                    field("signature"),
                    "applies to pdf documents only",
                ));
                None
            }
        };
        let einvoice = doc.einvoice.and_then(|body| {
            crate::einvoice::check(
                body,
                format,
                doc.pdf_standard.as_deref(),
                |f| field(&format!("einvoice.{f}")),
                errors,
            )
        });
        documents.push(DocumentSpec {
            name: doc.name,
            format,
            template: doc.template,
            pdf_standard: doc.pdf_standard,
            signature,
            einvoice,
        });
    }
    crate::einvoice::check_references(&documents, errors);
    documents
}

/// The schema compiles, and the defaults (an object) satisfy it; returns the defaults.
fn check_schema_and_defaults(
    data_schema: Option<&Value>,
    defaults: Option<Value>,
    errors: &mut Vec<FieldError>,
) -> Option<Map<String, Value>> {
    let validator = match data_schema {
        None => None,
        Some(schema) if !schema.is_object() && !schema.is_boolean() => {
            errors.push(FieldError::new(
                "dataSchema",
                "must be a JSON Schema object",
            ));
            None
        }
        Some(schema) => match crate::schema::compile(schema) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(FieldError::new(
                    "dataSchema",
                    format!("is not a valid JSON Schema: {e}"),
                ));
                None
            }
        },
    };
    let defaults = match defaults {
        None => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => {
            errors.push(FieldError::new("defaults", "must be a JSON object"));
            None
        }
    };
    if let (Some(validator), Some(defaults)) = (&validator, &defaults) {
        errors.extend(crate::schema::violations(
            validator,
            &Value::Object(defaults.clone()),
            "defaults",
        ));
    }
    defaults
}

/// Event types: plain, unique, not too many.
fn check_triggers(raw: Vec<String>, errors: &mut Vec<FieldError>) -> Vec<String> {
    if raw.len() > MAX_TRIGGERS {
        errors.push(FieldError::new(
            "triggers",
            format!("must hold at most {MAX_TRIGGERS} event types"),
        ));
    }
    let mut triggers = Vec::new();
    for (i, trigger) in raw.into_iter().enumerate() {
        let ok = !trigger.is_empty()
            && trigger.len() <= 100
            && trigger
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if !ok {
            errors.push(FieldError::new(
                format!("triggers[{i}]"),
                "must be 1 to 100 characters of letters, digits, '.', '_', ':' or '-'",
            ));
        } else if triggers.contains(&trigger) {
            errors.push(FieldError::new(format!("triggers[{i}]"), "is listed twice"));
        } else {
            triggers.push(trigger);
        }
    }
    triggers
}

/// A document name becomes an object key and a file name inside `bundle.zip` and a downloaded
/// bundle's folder: keep it plain.
pub fn check_document_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 100 {
        return Err("must be 1 to 100 characters");
    }
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain || name.starts_with('.') || name.contains("..") {
        return Err("may hold only letters, digits, '.', '_' and '-', and must not start with '.'");
    }
    if RESERVED_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
        return Err("is reserved for the bundle's own files");
    }
    Ok(())
}

#[cfg(test)]
mod name_tests {
    use super::check_document_name;

    #[test]
    fn the_bundle_files_own_names_are_reserved_in_any_case() {
        for name in [
            "manifest.json",
            "MANIFEST.SIG",
            "manifest.sig",
            "Bundle.Zip",
        ] {
            assert_eq!(
                check_document_name(name),
                Err("is reserved for the bundle's own files"),
                "{name}"
            );
        }
        assert!(check_document_name("manifest.sig.txt").is_ok());
    }
}
