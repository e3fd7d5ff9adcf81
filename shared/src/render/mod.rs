//! Document rendering: one interface for every format, so that adding a format touches one
//! place ([`renderer_for`]).
//!
//! Text formats (html, md, txt, csv, json) are MiniJinja templates ([`text`]); PDF is Typst
//! (`pdf`, behind the `pdf` feature so that only the functions that need it carry it).
//! Rendering is a pure function of the template and [`RenderInput`]: no clock, randomness, file
//! or network access reaches the output, so the same configuration version and seed give the
//! same bytes.

#[cfg(feature = "pdf")]
pub mod pdf;
pub mod text;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The formats a document can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentFormat {
    Html,
    Md,
    Txt,
    Csv,
    Json,
    Pdf,
}

impl DocumentFormat {
    pub const ALL: [DocumentFormat; 6] = [
        DocumentFormat::Html,
        DocumentFormat::Md,
        DocumentFormat::Txt,
        DocumentFormat::Csv,
        DocumentFormat::Json,
        DocumentFormat::Pdf,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == raw)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            DocumentFormat::Html => "html",
            DocumentFormat::Md => "md",
            DocumentFormat::Txt => "txt",
            DocumentFormat::Csv => "csv",
            DocumentFormat::Json => "json",
            DocumentFormat::Pdf => "pdf",
        }
    }

    pub const fn content_type(self) -> &'static str {
        match self {
            DocumentFormat::Html => "text/html; charset=utf-8",
            DocumentFormat::Md => "text/markdown; charset=utf-8",
            DocumentFormat::Txt => "text/plain; charset=utf-8",
            DocumentFormat::Csv => "text/csv; charset=utf-8",
            DocumentFormat::Json => "application/json",
            DocumentFormat::Pdf => "application/pdf",
        }
    }
}

/// What a template can see.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    /// The seed.
    pub data: &'a Value,
    pub seed_hash: &'a str,
    pub configuration_name: &'a str,
    pub configuration_version: i32,
}

/// Why a template could not be compiled or rendered, with a position where the engine has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub kind: TemplateErrorKind,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateErrorKind {
    /// The template does not compile.
    Syntax,
    /// The template compiled but failed on this data.
    Runtime,
    /// A limit (fuel, size, time, pages) was exceeded.
    Limit,
    /// The format cannot be rendered by this build.
    Unsupported,
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
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    pub max_template_bytes: usize,
    pub max_output_bytes: usize,
    /// MiniJinja fuel: roughly, instructions a template may execute.
    pub fuel: u64,
    /// Most pages a PDF document may have.
    pub max_pages: usize,
    /// Wall-clock budget for one PDF document.
    pub time_budget: std::time::Duration,
}

impl Default for RenderLimits {
    fn default() -> Self {
        RenderLimits {
            max_template_bytes: 256 * 1024,
            max_output_bytes: 8 * 1024 * 1024,
            fuel: 5_000_000,
            max_pages: 500,
            time_budget: std::time::Duration::from_secs(10),
        }
    }
}

/// A template engine for one or more formats.
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
        | DocumentFormat::Json => Some(text::renderer(format)),
        #[cfg(feature = "pdf")]
        DocumentFormat::Pdf => Some(pdf::renderer()),
        #[cfg(not(feature = "pdf"))]
        DocumentFormat::Pdf => None,
    }
}
