//! Preview: a configuration (a draft, or a saved version) rendered synchronously with a seed,
//! by the code a run uses, with nothing stored. One document answers its own bytes; all of
//! them answer the bundle's ZIP.

use serde_json::{Map, Value};

use docbundle_domain::configuration::DocumentSpec;
use docbundle_domain::seed::CanonicalSeed;
use docbundle_domain::FieldError;
use docbundle_render::bundle::{
    render_bundle, BundleInput, RenderFailure, ARCHIVE_NAME, RENDERER_UNAVAILABLE,
};
use docbundle_render::Renderer;

/// What is previewed: a validated draft or a stored version.
pub struct Previewed<'a> {
    pub documents: &'a [DocumentSpec],
    pub name: &'a str,
    /// The version the templates see (`configuration.json`); 1 for a draft.
    pub version: i32,
    pub data_schema: Option<&'a Value>,
    pub defaults: Option<&'a Map<String, Value>>,
    pub assets: &'a [docbundle_render::RenderAsset],
}

/// The rendered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    pub file_name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Why a preview has no answer.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The seed, the document named or a template is wrong: the caller's to fix.
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<FieldError>,
    },
    /// No rendering process could take the work now.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of this process.
    #[error("{0}")]
    Internal(String),
}

fn invalid(message: impl Into<String>, details: Vec<FieldError>) -> PreviewError {
    PreviewError::Invalid {
        message: message.into(),
        details,
    }
}

fn internal(e: impl std::fmt::Display) -> PreviewError {
    PreviewError::Internal(e.to_string())
}

/// Renders `document` (or every document, as a ZIP) with `seed` (or the defaults), checked
/// against the schema as a launch checks it. Blocking: call it from a blocking context.
pub fn render(
    previewed: &Previewed<'_>,
    seed: Option<Value>,
    document: Option<&str>,
    renderer: &Renderer,
) -> Result<Preview, PreviewError> {
    let canonical = checked_seed(previewed, seed)?;
    let data = canonical.value().map_err(internal)?;
    let selected = selected_documents(previewed, document)?;
    let artefacts = render_bundle(
        &BundleInput {
            documents: &selected,
            archive: document.is_none(),
            data: &data,
            seed_hash: canonical.hash.as_str(),
            configuration_name: previewed.name,
            configuration_version: previewed.version,
            assets: previewed.assets,
        },
        renderer,
    )
    .map_err(|failure| render_failed(previewed, failure))?;
    let wanted = document.unwrap_or(ARCHIVE_NAME);
    let artefact = artefacts
        .into_iter()
        .find(|a| a.name == wanted)
        .ok_or_else(|| internal(format!("the preview produced no `{wanted}`")))?;
    Ok(Preview {
        file_name: artefact.name,
        content_type: artefact.content_type,
        bytes: artefact.bytes,
    })
}

/// The seed (the defaults without one), checked against the data schema and canonicalised.
fn checked_seed(
    previewed: &Previewed<'_>,
    seed: Option<Value>,
) -> Result<CanonicalSeed, PreviewError> {
    let seed =
        seed.unwrap_or_else(|| Value::Object(previewed.defaults.cloned().unwrap_or_default()));
    if !seed.is_object() {
        return Err(invalid(
            "The seed is not valid",
            vec![FieldError::new("seed", "must be a JSON object")],
        ));
    }
    if let Some(schema) = previewed.data_schema {
        let validator = docbundle_domain::schema::compile(schema).map_err(internal)?;
        let violations = docbundle_domain::schema::violations(&validator, &seed, "seed");
        if !violations.is_empty() {
            return Err(invalid(
                "The seed does not satisfy the configuration's dataSchema",
                violations,
            ));
        }
    }
    CanonicalSeed::of(&seed).map_err(|e| {
        invalid(
            "The seed is not valid",
            vec![FieldError::new(
                "seed",
                format!("cannot be canonicalised: {e}"),
            )],
        )
    })
}

/// The document named, or every document without a name.
fn selected_documents(
    previewed: &Previewed<'_>,
    document: Option<&str>,
) -> Result<Vec<DocumentSpec>, PreviewError> {
    match document {
        Some(name) => {
            let doc = previewed
                .documents
                .iter()
                .find(|d| d.name == name)
                .ok_or_else(|| {
                    invalid(
                        "No such document",
                        vec![FieldError::new(
                            "document",
                            format!("the configuration has no document `{name}`"),
                        )],
                    )
                })?;
            // An e-invoice PDF is rendered with the XML it carries (and that XML checked),
            // as a run renders it.
            let carried = doc
                .einvoice
                .as_ref()
                .and_then(|e| e.xml.as_deref())
                .and_then(|xml| previewed.documents.iter().find(|d| d.name == xml));
            Ok(std::iter::once(doc).chain(carried).cloned().collect())
        }
        None => Ok(previewed.documents.to_vec()),
    }
}

/// A failed render: unavailable when no rendering process could take it, else the caller's
/// to fix, named by the failing document's template.
fn render_failed(previewed: &Previewed<'_>, failure: RenderFailure) -> PreviewError {
    if failure.code == RENDERER_UNAVAILABLE {
        return PreviewError::Unavailable(failure.message);
    }
    let field = match previewed
        .documents
        .iter()
        .position(|d| d.name == failure.document)
    {
        Some(i) => format!("documents[{i}].template"),
        None => "documents".to_owned(),
    };
    invalid(
        format!("The preview failed ({})", failure.code),
        vec![FieldError::new(field, failure.message)],
    )
}
