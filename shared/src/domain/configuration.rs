//! Configurations: what a caller sends, and the checks that turn it into a
//! [`ConfigurationSpec`] that can be stored as a new immutable version.
//!
//! On save every template must compile, `dataSchema` must be a JSON Schema, `defaults` must
//! satisfy it, and a trial render of every document with `defaults` must succeed. Each failure
//! names its field (`documents[2].template`) and, where the engine gives them, line and column.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::asset::{self, AssetKind};
use crate::error::FieldError;
use crate::render::{
    renderer_for, DocumentFormat, RenderAsset, RenderInput, Renderer, TemplateErrorKind,
};

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
    #[schema(value_type = Option<Vec<crate::http::openapi::EventType>>, max_items = 50)]
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
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentBody {
    #[schema(value_type = crate::http::openapi::DocumentName)]
    pub name: String,
    #[schema(value_type = crate::render::DocumentFormat)]
    pub format: String,
    pub template: String,
    /// PDF documents only: the standard the PDF must conform to, enforced by Typst at save
    /// and on every render: `a-1b`, `a-1a`, `a-2b`, `a-2u`, `a-2a`, `a-3b`, `a-3u`, `a-3a`,
    /// `a-4`, `a-4f`, `a-4e` (PDF/A) or `ua-1` (PDF/UA-1).
    #[serde(default)]
    #[schema(value_type = Option<crate::http::openapi::PdfStandard>)]
    pub pdf_standard: Option<String>,
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
}

/// The merchant's stored assets a configuration names, by SHA-256: their kind and bytes.
pub type StoredAssets = HashMap<String, (AssetKind, bytes::Bytes)>;

/// Why a configuration was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Every problem of the configuration, each with its field.
    Invalid(Vec<FieldError>),
    /// The trial render could not run at all (no rendering process could be started): the
    /// host's fault, not the configuration's.
    RendererUnavailable(String),
}

impl From<Vec<FieldError>> for Rejection {
    fn from(errors: Vec<FieldError>) -> Self {
        Rejection::Invalid(errors)
    }
}

/// Checks `body` completely; returns every problem found, not just the first.
/// Blocking (the trial render runs in a rendering process): call it from a blocking context.
/// `stored` holds the merchant's assets among those `body.assets` names (see
/// [`StoredAssets`]); a name whose asset is not there is an error of its field.
pub fn validate(
    body: ConfigurationBody,
    stored: &StoredAssets,
    renderer: &Renderer,
) -> Result<ConfigurationSpec, Rejection> {
    let mut errors = Vec::new();
    let (name, description) = check_texts(&body, &mut errors);
    let assets = body.assets.clone().unwrap_or_default();
    asset::check_map(&assets, &mut errors);
    let render_assets = match render_assets(&assets, stored) {
        Ok(found) => found,
        Err(problems) => {
            errors.extend(problems);
            Vec::new()
        }
    };
    let documents = check_documents(body.documents, renderer, &mut errors);
    let defaults = check_schema_and_defaults(body.data_schema.as_ref(), body.defaults, &mut errors);
    let triggers = check_triggers(body.triggers.unwrap_or_default(), &mut errors);
    if !errors.is_empty() {
        return Err(Rejection::Invalid(errors));
    }
    let spec = ConfigurationSpec {
        name,
        description,
        documents,
        data_schema: body.data_schema,
        defaults,
        triggers,
        archive: body.archive.unwrap_or(false),
        assets,
    };
    trial_render(&spec, &render_assets, renderer)?;
    Ok(spec)
}

/// The assets of `map` as templates get them, or every name whose asset is missing or is not
/// of the kind its name says.
pub fn render_assets(
    map: &BTreeMap<String, String>,
    stored: &StoredAssets,
) -> Result<Vec<RenderAsset>, Vec<FieldError>> {
    let mut found = Vec::with_capacity(map.len());
    let mut errors = Vec::new();
    if map.len() > asset::MAX_ASSETS_PER_CONFIGURATION {
        // None were loaded; the map's own check says why, once.
        return Ok(found);
    }
    for (name, sha256) in map {
        let field = format!("assets.{name}");
        let Some((kind, bytes)) = stored.get(sha256) else {
            if asset::is_sha256(sha256) {
                errors.push(FieldError::new(
                    field,
                    format!("no asset {sha256} was uploaded for this merchant"),
                ));
            }
            continue;
        };
        match asset::check_name(name) {
            Ok(named) if named == *kind => found.push(RenderAsset {
                name: name.clone(),
                kind: *kind,
                bytes: bytes.clone(),
            }),
            Ok(_) => errors.push(FieldError::new(
                field,
                format!(
                    "the asset is a {} file: its name must end in .{}",
                    kind.as_str(),
                    kind.extensions().join(" or .")
                ),
            )),
            // Reported by the map's own check.
            Err(_) => {}
        }
    }
    let total: usize = found.iter().map(|a| a.bytes.len()).sum();
    if total > asset::MAX_ASSET_BYTES_PER_CONFIGURATION {
        errors.push(FieldError::new(
            "assets",
            format!(
                "the assets add up to {total} bytes; at most {} are allowed",
                asset::MAX_ASSET_BYTES_PER_CONFIGURATION
            ),
        ));
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
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
    renderer: &Renderer,
    errors: &mut Vec<FieldError>,
) -> Vec<DocumentSpec> {
    let limits = renderer.limits();
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
        if doc.template.len() > limits.max_template_bytes {
            errors.push(FieldError::new(
                field("template"),
                format!("exceeds the limit of {} bytes", limits.max_template_bytes),
            ));
            continue;
        }
        match renderer.check(format, &doc.template) {
            Ok(()) => {}
            // A format this build cannot render is accepted: the function that renders it can.
            Err(e) if e.kind == crate::render::TemplateErrorKind::Unsupported => {}
            Err(e) => errors.push(template_error(i, &e)),
        }
        match (&doc.pdf_standard, format) {
            (None, _) => {}
            (Some(standard), DocumentFormat::Pdf)
                if crate::render::PDF_STANDARDS.contains(&standard.as_str()) => {}
            (Some(_), DocumentFormat::Pdf) => errors.push(FieldError::new(
                field("pdfStandard"),
                format!("must be one of {}", crate::render::PDF_STANDARDS.join(", ")),
            )),
            (Some(_), _) => errors.push(FieldError::new(
                field("pdfStandard"),
                "applies to pdf documents only",
            )),
        }
        documents.push(DocumentSpec {
            name: doc.name,
            format,
            template: doc.template,
            pdf_standard: doc.pdf_standard,
        });
    }
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
        Some(schema) => match crate::domain::schema::compile(schema) {
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
        errors.extend(crate::domain::schema::violations(
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

/// Renders every document with `defaults` (or `{}`), as a launch without a seed would.
fn trial_render(
    spec: &ConfigurationSpec,
    assets: &[RenderAsset],
    renderer: &Renderer,
) -> Result<(), Rejection> {
    let data = Value::Object(spec.defaults.clone().unwrap_or_default());
    let mut errors = Vec::new();
    for (i, doc) in spec.documents.iter().enumerate() {
        if renderer_for(doc.format).is_none() {
            continue;
        }
        // The standard is enforced here too: a template that cannot conform fails at save.
        let input = RenderInput {
            data: &data,
            seed_hash: "0000000000000000000000000000000000000000000000000000000000000000",
            configuration_name: &spec.name,
            configuration_version: 1,
            pdf_standard: doc.pdf_standard.as_deref(),
            assets: &asset::used_by(assets, doc.format, &doc.template),
        };
        match renderer.render(doc.format, &doc.template, &input) {
            Ok(_) => {}
            Err(e) if e.kind == TemplateErrorKind::Unavailable => {
                return Err(Rejection::RendererUnavailable(e.message));
            }
            Err(e) => {
                let mut error = template_error(i, &e);
                error.message = format!("trial render with defaults failed: {}", error.message);
                errors.push(error);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Rejection::Invalid(errors))
    }
}

fn template_error(index: usize, e: &crate::render::TemplateError) -> FieldError {
    FieldError::new(format!("documents[{index}].template"), e.describe())
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
mod tests {
    use super::*;
    use crate::render::RenderLimits;
    use serde_json::json;

    fn body(v: Value) -> ConfigurationBody {
        serde_json::from_value(v).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn invalid(rejection: Rejection) -> Vec<FieldError> {
        match rejection {
            Rejection::Invalid(errors) => errors,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sound_configuration_passes() {
        let spec = validate(
            body(json!({
                "name": " Statements ",
                "documents": [
                    {"name": "s.html", "format": "html", "template": "<p>{{ data.name }}</p>"},
                    {"name": "invoice.pdf", "format": "pdf", "template": "#let data = json(\"data.json\")"}
                ],
                "dataSchema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "defaults": {"name": "Acme"},
                "triggers": ["statement.closed"],
                "archive": true
            })),
            &StoredAssets::new(),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap();
        assert_eq!(spec.name, "Statements");
        assert_eq!(spec.documents[1].format, DocumentFormat::Pdf);
        assert!(spec.archive);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let errors = validate(
            body(json!({
                "name": "",
                "documents": [
                    {"name": "../etc", "format": "html", "template": "ok"},
                    {"name": "a.txt", "format": "docx", "template": "ok"},
                    {"name": "b.txt", "format": "txt", "template": "{% if %}"},
                    {"name": "B.TXT", "format": "txt", "template": "ok"},
                    {"name": "manifest.json", "format": "json", "template": "{}"}
                ],
                "dataSchema": {"type": "banana"},
                "defaults": [],
                "triggers": ["ok", "not ok!"]
            })),
            &StoredAssets::new(),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap_err();
        let errors = invalid(errors);
        let f = fields(&errors);
        for expected in [
            "name",
            "documents[0].name",
            "documents[1].format",
            "documents[2].template",
            "documents[3].name",
            "documents[4].name",
            "dataSchema",
            "defaults",
            "triggers[1]",
        ] {
            assert!(f.contains(&expected), "{expected} missing from {errors:?}");
        }
        let syntax = errors
            .iter()
            .find(|e| e.field == "documents[2].template")
            .unwrap();
        assert!(syntax.message.contains("line 1"), "{}", syntax.message);
    }

    #[test]
    fn defaults_must_satisfy_the_schema() {
        let errors = validate(
            body(json!({
                "name": "x",
                "documents": [{"name": "a.txt", "format": "txt", "template": "{{ data.n }}"}],
                "dataSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
                "defaults": {"n": "seven"}
            })),
            &StoredAssets::new(),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap_err();
        assert_eq!(fields(&invalid(errors)), vec!["defaults.n"]);
    }

    #[test]
    fn the_trial_render_runs_with_defaults() {
        let errors = validate(
            body(json!({
                "name": "x",
                "documents": [{"name": "a.txt", "format": "txt", "template": "{{ data.items|length + 'x' }}"}],
                "defaults": {"items": [1]}
            })),
            &StoredAssets::new(),
            &Renderer::in_process(RenderLimits::default()),
        )
        .unwrap_err();
        let errors = invalid(errors);
        assert_eq!(fields(&errors), vec!["documents[0].template"]);
        assert!(errors[0].message.starts_with("trial render"));
    }
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
