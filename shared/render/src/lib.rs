//! Document rendering: one interface for every format, so that adding a format touches one
//! place ([`renderer_for`]).
//!
//! Text formats (html, md, txt, csv, json) are MiniJinja templates ([`text`]); PDF is Typst
//! (`pdf`, behind the `pdf` feature so that only the functions that need it carry it).
//! Rendering is a pure function of the template and [`RenderInput`]: no clock, randomness, file
//! or network access reaches the output, so the same configuration version and seed give the
//! same bytes.
//!
//! Templates come from tenants, so the engines never run in a request's own process: a
//! [`Renderer`] hands every render to a supervised child process ([`sandbox`]) that has an OS
//! memory limit and is killed on its wall-clock budget, so a template that loops or allocates
//! without end is *stopped*, its memory returned, and every other request goes on.

pub mod bundle;
pub mod configuration;
pub mod einvoice;
#[cfg(feature = "render")]
pub mod locale;
#[cfg(feature = "pdf")]
pub mod pdf;
pub mod sandbox;
pub mod text;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use docbundle_domain::document::{DocumentFormat, PDF_STANDARDS};

/// What a template can see, and the standard a PDF must conform to.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The seed.
    pub data: &'a Value,
    pub seed_hash: &'a str,
    pub configuration_name: &'a str,
    pub configuration_version: i32,
    /// A PDF document's standard ([`PDF_STANDARDS`]); `None` for plain PDF 1.7 (and for
    /// every other format).
    pub pdf_standard: Option<&'a str>,
    /// The images and fonts the configuration version pinned.
    pub assets: &'a [RenderAsset],
    /// A file a PDF carries (a PDF/A-3 associated file): an e-invoice's XML.
    pub attachment: Option<&'a RenderAttachment>,
}

/// A file a rendered PDF carries as a PDF/A-3 associated file, as Typst's `pdf.attach`
/// embeds it: an e-invoice's XML, rendered before the PDF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderAttachment {
    /// Its file name in the PDF (`factur-x.xml`).
    pub name: String,
    pub mime_type: String,
    /// `/AFRelationship` as Typst names it: `alternative`, `data`, `source`, `supplement`.
    pub relationship: String,
    pub description: String,
    pub text: String,
}

/// An image or a font a template may use by its name: one of the configuration's assets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderAsset {
    pub name: String,
    pub kind: docbundle_domain::asset::AssetKind,
    pub bytes: bytes::Bytes,
}

/// The assets a document's renders carry: those its template names (`"logo.png"` in
/// `image("logo.png")` or `assets['logo.png']`), and for a PDF every font (fonts are used by
/// family, not by file name). Carrying only these keeps a bundle of many documents from
/// moving every asset through every render.
pub fn assets_used_by(
    assets: &[RenderAsset],
    format: DocumentFormat,
    template: &str,
) -> Vec<RenderAsset> {
    assets
        .iter()
        .filter(|a| {
            (a.kind.is_font() && format == DocumentFormat::Pdf)
                || template.contains(a.name.as_str())
        })
        .cloned()
        .collect()
}

/// Why a template could not be compiled or rendered, with a position where the engine has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateError {
    pub kind: TemplateErrorKind,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateErrorKind {
    /// The template does not compile.
    Syntax,
    /// The template compiled but failed on this data.
    Runtime,
    /// A limit (fuel, size, time, memory, pages) was exceeded.
    Limit,
    /// The format cannot be rendered by this build.
    Unsupported,
    /// The renderer itself failed (a panic, or its process ended unexpectedly): a defect of
    /// ours or of an engine, reported for this document only.
    Crashed,
    /// No rendering process could be started (a fault of the host, not of the template):
    /// worth a retry.
    Unavailable,
}

impl TemplateError {
    pub fn new(kind: TemplateErrorKind, message: impl Into<String>) -> Self {
        TemplateError {
            kind,
            message: message.into(),
            line: None,
            column: None,
        }
    }

    /// `message (line L, column C)` — the form used in API error details and run errors.
    pub fn describe(&self) -> String {
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{} (line {l}, column {c})", self.message),
            (Some(l), None) => format!("{} (line {l})", self.message),
            _ => self.message.clone(),
        }
    }
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Resource limits for rendering one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderLimits {
    pub max_template_bytes: usize,
    pub max_output_bytes: usize,
    /// MiniJinja fuel: roughly, instructions a template may execute.
    pub fuel: u64,
    /// Most pages a PDF document may have.
    pub max_pages: usize,
    /// Wall-clock budget for one document, any format.
    pub time_budget: std::time::Duration,
    /// Memory a rendering process may hold (its private writable memory, `RLIMIT_DATA`).
    pub max_memory_bytes: u64,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            max_template_bytes: 256 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            fuel: 5_000_000,
            max_pages: 500,
            time_budget: std::time::Duration::from_secs(10),
            max_memory_bytes: 256 * 1024 * 1024,
        }
    }
}

/// A template engine for one or more formats. Engines run in the caller's thread and enforce
/// only the limits they can count (fuel, output size, pages); time and memory are the
/// [`Renderer`]'s job.
pub trait DocumentRenderer: Send + Sync {
    /// Checks that `template` compiles, without rendering it.
    fn check(&self, template: &str, limits: &RenderLimits) -> Result<(), TemplateError>;

    /// Renders `template` with `input`.
    fn render(
        &self,
        template: &str,
        input: &RenderInput<'_>,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError>;
}

/// The renderer of `format`, or `None` where this build has none (PDF without the `pdf`
/// feature). Adding a format means adding its arm here.
pub fn renderer_for(format: DocumentFormat) -> Option<&'static dyn DocumentRenderer> {
    match format {
        DocumentFormat::Html
        | DocumentFormat::Md
        | DocumentFormat::Txt
        | DocumentFormat::Csv
        | DocumentFormat::Json
        | DocumentFormat::Xml => text::renderer(format).map(|r| r as &dyn DocumentRenderer),
        #[cfg(feature = "pdf")]
        DocumentFormat::Pdf => Some(pdf::renderer()),
        #[cfg(not(feature = "pdf"))]
        DocumentFormat::Pdf => None,
    }
}

/// The engines' versions, as `Cargo.lock` pins them (a unit test keeps them in step).
pub const TYPST_VERSION: &str = "0.15.1";
pub const MINIJINJA_VERSION: &str = "3.1.0";
pub const ICU_VERSION: &str = "2.4.0";

/// This build's renderer: engine versions, the embedded fonts' digest, the architecture.
#[cfg(feature = "pdf")]
pub fn build() -> docbundle_domain::manifest::RendererBuild {
    docbundle_domain::manifest::RendererBuild {
        typst: TYPST_VERSION.to_owned(),
        minijinja: MINIJINJA_VERSION.to_owned(),
        icu: ICU_VERSION.to_owned(),
        fonts: pdf::fonts_digest().to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        signer: None,
    }
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn the_engine_versions_are_the_locked_ones() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"))
                .unwrap();
        let locked = |name: &str| {
            let pattern = format!("name = \"{name}\"\nversion = \"");
            let at = lock.find(&pattern).unwrap();
            let rest = &lock[at + pattern.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        };
        assert_eq!(locked("typst"), super::TYPST_VERSION);
        assert_eq!(locked("minijinja"), super::MINIJINJA_VERSION);
        assert_eq!(locked("icu_datetime"), super::ICU_VERSION);
    }
}

/// Where templates are rendered.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// In supervised child processes: enforced memory and time budgets. What every function
    /// uses.
    Process(sandbox::SandboxSettings),
    /// On a thread of the calling process. A runaway template is abandoned, not stopped, and
    /// nothing bounds its memory: for unit tests of the engines and for benchmarks only.
    InProcess,
}

/// Renders documents under [`RenderLimits`] and an [`Isolation`]; cheap to clone (one pool of
/// rendering processes per [`Renderer`] and its clones).
#[derive(Clone, Debug)]
pub struct Renderer {
    limits: RenderLimits,
    sandbox: Option<Arc<sandbox::Sandbox>>,
}

impl Renderer {
    /// A renderer with its own (lazily started) pool when `isolation` asks for processes.
    pub fn new(limits: RenderLimits, isolation: Isolation) -> Self {
        let sandbox = match isolation {
            Isolation::Process(settings) => Some(Arc::new(sandbox::Sandbox::new(settings))),
            Isolation::InProcess => None,
        };
        Renderer { limits, sandbox }
    }

    /// Renders on a thread of this process (unit tests and benchmarks of the engines).
    pub fn in_process(limits: RenderLimits) -> Self {
        Self::new(limits, Isolation::InProcess)
    }

    pub fn limits(&self) -> &RenderLimits {
        &self.limits
    }

    /// The pool of rendering processes, when renders are isolated.
    pub fn sandbox(&self) -> Option<&sandbox::Sandbox> {
        self.sandbox.as_deref()
    }

    /// Checks that `template` compiles. Compiling is bounded by the template's size limit, so
    /// it runs in this process.
    pub fn check(&self, format: DocumentFormat, template: &str) -> Result<(), TemplateError> {
        match renderer_for(format) {
            Some(engine) => engine.check(template, &self.limits),
            None => Err(unsupported(format)),
        }
    }

    /// Renders one document. Blocking: call it from a blocking context
    /// (`tokio::task::spawn_blocking`).
    pub fn render(
        &self,
        format: DocumentFormat,
        template: &str,
        input: &RenderInput<'_>,
    ) -> Result<Vec<u8>, TemplateError> {
        if renderer_for(format).is_none() {
            return Err(unsupported(format));
        }
        if template.len() > self.limits.max_template_bytes {
            return Err(TemplateError::new(
                TemplateErrorKind::Limit,
                format!(
                    "template exceeds the limit of {} bytes",
                    self.limits.max_template_bytes
                ),
            ));
        }
        match &self.sandbox {
            Some(sandbox) => sandbox.render(format, template, input, &self.limits),
            None => render_on_thread(format, template, input, &self.limits),
        }
    }
}

fn unsupported(format: DocumentFormat) -> TemplateError {
    TemplateError::new(
        TemplateErrorKind::Unsupported,
        format!(
            "format `{}` cannot be rendered by this build",
            format.as_str()
        ),
    )
}

/// Runs the engine on a thread with a large stack (Typst recurses deeply), waiting at most
/// the time budget. On timeout the thread is abandoned: only fit for [`Isolation::InProcess`].
fn render_on_thread(
    format: DocumentFormat,
    template: &str,
    input: &RenderInput<'_>,
    limits: &RenderLimits,
) -> Result<Vec<u8>, TemplateError> {
    let (send, receive) = std::sync::mpsc::channel();
    let template = template.to_owned();
    let data = input.data.clone();
    let seed_hash = input.seed_hash.to_owned();
    let name = input.configuration_name.to_owned();
    let version = input.configuration_version;
    let standard = input.pdf_standard.map(str::to_owned);
    let assets = input.assets.to_vec();
    let attachment = input.attachment.cloned();
    let limits_copy = *limits;
    let spawned = std::thread::Builder::new()
        .name("render".into())
        .stack_size(sandbox::RENDER_STACK_BYTES)
        .spawn(move || {
            let input = RenderInput {
                data: &data,
                seed_hash: &seed_hash,
                configuration_name: &name,
                configuration_version: version,
                pdf_standard: standard.as_deref(),
                assets: &assets,
                attachment: attachment.as_ref(),
            };
            let result = match renderer_for(format) {
                Some(engine) => engine.render(&template, &input, &limits_copy),
                None => Err(unsupported(format)),
            };
            let _ = send.send(result);
        });
    if let Err(e) = spawned {
        return Err(TemplateError::new(
            TemplateErrorKind::Unavailable,
            format!("cannot start rendering: {e}"),
        ));
    }
    match receive.recv_timeout(limits.time_budget) {
        Ok(result) => result,
        Err(_) => Err(time_budget_exceeded(limits)),
    }
}

fn time_budget_exceeded(limits: &RenderLimits) -> TemplateError {
    TemplateError::new(
        TemplateErrorKind::Limit,
        format!(
            "rendering exceeded the time budget of {} ms",
            limits.time_budget.as_millis()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_render_carries_only_the_assets_its_document_uses() {
        let asset = |name: &str, kind| RenderAsset {
            name: name.into(),
            kind,
            bytes: bytes::Bytes::from_static(b"x"),
        };
        let all = [
            asset("logo.png", docbundle_domain::asset::AssetKind::Png),
            asset("photo.jpg", docbundle_domain::asset::AssetKind::Jpeg),
            asset("brand.ttf", docbundle_domain::asset::AssetKind::Ttf),
        ];
        let names = |v: Vec<RenderAsset>| v.into_iter().map(|a| a.name).collect::<Vec<_>>();
        assert_eq!(
            names(assets_used_by(
                &all,
                DocumentFormat::Pdf,
                "#image(\"logo.png\")"
            )),
            ["logo.png", "brand.ttf"]
        );
        assert_eq!(
            names(assets_used_by(
                &all,
                DocumentFormat::Html,
                "<img src=\"{{ assets['photo.jpg'] }}\">"
            )),
            ["photo.jpg"]
        );
        assert!(assets_used_by(&all, DocumentFormat::Csv, "a,b\n").is_empty());
    }
}
