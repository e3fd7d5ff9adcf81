//! A configuration judged as it is saved: the domain's checks ([`configuration::check`]), every
//! template compiled by its format's engine, the assets it names, and a trial render of every
//! document with its `defaults` (or `{}`), as a launch without a seed would render it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{
    assets_used_by, renderer_for, RenderAsset, RenderInput, Renderer, TemplateError,
    TemplateErrorKind,
};
use docbundle_domain::asset;
use docbundle_domain::configuration::{self, ConfigurationBody, ConfigurationSpec, StoredAssets};
use docbundle_domain::retention::RetentionLimits;
use docbundle_domain::FieldError;

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
    retention: &RetentionLimits,
) -> Result<ConfigurationSpec, Rejection> {
    let mut errors = Vec::new();
    let render_assets = match render_assets(&body.assets.clone().unwrap_or_default(), stored) {
        Ok(found) => found,
        Err(problems) => {
            errors.extend(problems);
            Vec::new()
        }
    };
    let compile = |i: usize, format, template: &str| match renderer.check(format, template) {
        Ok(()) => None,
        // A format this build cannot render is accepted: the function that renders it can.
        Err(e) if e.kind == TemplateErrorKind::Unsupported => None,
        Err(e) => Some(template_error(i, &e)),
    };
    let spec = configuration::check(
        body,
        retention,
        renderer.limits().max_template_bytes,
        compile,
        &mut errors,
    );
    if !errors.is_empty() {
        return Err(Rejection::Invalid(errors));
    }
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

/// Renders every document with `defaults` (or `{}`), as a launch without a seed would.
fn trial_render(
    spec: &ConfigurationSpec,
    assets: &[RenderAsset],
    renderer: &Renderer,
) -> Result<(), Rejection> {
    let data = Value::Object(spec.defaults.clone().unwrap_or_default());
    let mut errors = Vec::new();
    // Rendered XML, for the e-invoice PDFs that carry it (rendered after it).
    let mut rendered: Vec<(String, Vec<u8>)> = Vec::new();
    for i in crate::einvoice::render_order(&spec.documents) {
        let doc = &spec.documents[i];
        if renderer_for(doc.format).is_none() {
            continue;
        }
        let attachment = match &doc.einvoice {
            Some(e) if doc.format == docbundle_domain::document::DocumentFormat::Pdf => {
                let xml = e.xml.as_deref().unwrap_or_default();
                match rendered.iter().find(|(name, _)| name == xml) {
                    Some((_, bytes)) => Some(crate::einvoice::attachment(e.profile, bytes)),
                    // The XML failed (and says why): this PDF cannot be tried.
                    None => continue,
                }
            }
            _ => None,
        };
        // The standard is enforced here too: a template that cannot conform fails at save.
        let input = RenderInput {
            data: &data,
            seed_hash: "0000000000000000000000000000000000000000000000000000000000000000",
            configuration_name: &spec.name,
            configuration_version: 1,
            pdf_standard: doc.pdf_standard.as_deref(),
            assets: &assets_used_by(assets, doc.format, &doc.template),
            attachment: attachment.as_ref(),
        };
        match renderer.render(doc.format, &doc.template, &input) {
            Ok(bytes) => {
                let mut valid = true;
                for profile in crate::einvoice::profiles_of(&spec.documents, doc) {
                    if let Err(e) = crate::einvoice::check_xml(profile, &bytes) {
                        valid = false;
                        errors.push(FieldError::new(
                            format!("documents[{i}]"),
                            format!("trial render with defaults: {}", e.message),
                        ));
                    }
                }
                if let (Some(e), Some(_)) = (&doc.einvoice, &attachment) {
                    if let Err(message) = crate::einvoice::finish_pdf(bytes.clone(), e.profile) {
                        errors.push(FieldError::new(
                            format!("documents[{i}]"),
                            format!("the Factur-X metadata cannot be written: {message}"),
                        ));
                    }
                }
                if valid {
                    rendered.push((doc.name.clone(), bytes));
                }
            }
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

fn template_error(index: usize, e: &TemplateError) -> FieldError {
    FieldError::new(format!("documents[{index}].template"), e.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RenderLimits;
    use docbundle_domain::document::DocumentFormat;
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
            &RetentionLimits::default(),
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
            &RetentionLimits::default(),
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
            &RetentionLimits::default(),
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
            &RetentionLimits::default(),
        )
        .unwrap_err();
        let errors = invalid(errors);
        assert_eq!(fields(&errors), vec!["documents[0].template"]);
        assert!(errors[0].message.starts_with("trial render"));
    }
}
