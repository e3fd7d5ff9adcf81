//! Documents as a configuration declares them: their formats, the PDF standards a PDF may
//! conform to, and how the API document describes their names.

use utoipa::openapi::schema::Type;
use utoipa::openapi::{ObjectBuilder, RefOr};

crate::text_enum! {
    /// The formats a document can have. Adding one is a variant here; the compiler then lists
    /// what it needs: its content type below, its engine in [`renderer_for`].
    DocumentFormat {
        Html => "html",
        Md => "md",
        Txt => "txt",
        Csv => "csv",
        Json => "json",
        Xml => "xml",
        Pdf => "pdf",
    }
}

impl DocumentFormat {
    pub const fn content_type(self) -> &'static str {
        match self {
            DocumentFormat::Html => "text/html; charset=utf-8",
            DocumentFormat::Md => "text/markdown; charset=utf-8",
            DocumentFormat::Txt => "text/plain; charset=utf-8",
            DocumentFormat::Csv => "text/csv; charset=utf-8",
            DocumentFormat::Json => "application/json",
            DocumentFormat::Xml => "application/xml",
            DocumentFormat::Pdf => "application/pdf",
        }
    }
}

/// The PDF standards a PDF document may ask for (`pdfStandard`), as Typst enforces them:
/// PDF/A (archival) parts 1 to 4 and PDF/UA-1 (accessible).
pub const PDF_STANDARDS: [&str; 12] = [
    "a-1b", "a-1a", "a-2b", "a-2u", "a-2a", "a-3b", "a-3u", "a-3a", "a-4", "a-4f", "a-4e", "ua-1",
];

/// A name as a configuration's `triggers` lists it: an inbound event's `type`.
pub struct InboundEventType;

impl utoipa::PartialSchema for InboundEventType {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9._:-]{1,100}$"))
            .into()
    }
}

impl utoipa::ToSchema for InboundEventType {}

/// A document's name: its file name in the bundle.
pub struct DocumentName;

impl utoipa::PartialSchema for DocumentName {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(100))
            .pattern(Some("^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$"))
            .description(Some(
                "Letters, digits, '.', '_' and '-', not starting with '.'; not `manifest.json`, \
                 `manifest.sig` or `bundle.zip`",
            ))
            .into()
    }
}

impl utoipa::ToSchema for DocumentName {}

/// A PDF standard a PDF document may conform to (`pdfStandard`).
pub struct PdfStandard;

impl utoipa::PartialSchema for PdfStandard {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(PDF_STANDARDS))
            .description(Some(
                "PDF/A (`a-1b` … `a-4e`, archival) or PDF/UA-1 (`ua-1`, accessible), enforced by \
                 Typst at save and on every render",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PdfStandard {}
