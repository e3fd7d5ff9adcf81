//! PDF documents from Typst markup, compiled in-process with the `typst` library.
//!
//! Sandboxed: the template sees only three virtual files — `data.json` (the seed), `bundle.json`
//! (`{"seedHash"}`) and `configuration.json` (`{"name", "version"}`) — plus the fonts embedded
//! in the binary; no other file, no package download, no network, no clock (`datetime.today()`
//! is an error). Deterministic: no creation date and a document identifier derived from the
//! inputs, so the same template and seed give the same bytes. Bounded: source size, page count,
//! output size; the wall-clock and memory budgets are enforced around the engine by
//! [`super::Renderer`].
//!
//! This module compiles a document and bounds it; what the document can see is in `world`, and
//! the locale library it may import (`docbundle.typ`) in `format`.

mod format;
mod world;

use std::sync::OnceLock;

use typst::diag::SourceDiagnostic;
use typst::foundations::Smart;
use typst::WorldExt;
use typst_layout::PagedDocument;

use super::{DocumentRenderer, RenderInput, RenderLimits, TemplateError, TemplateErrorKind};
use world::DocumentWorld;

pub struct PdfRenderer;

/// After each render, Typst's memoized results not used by the last this many renders are
/// dropped. What every render of a template shares (the parsed library, shaped static text,
/// decoded images, laid-out parts whose data did not change) stays warm, and what one
/// render's data made ages out: memory stays bounded by a few renders' worth, which the
/// rendering process's retirement past half its budget bounds again. (`0`, dropping
/// everything, made each render start cold: ~27% slower than Typst's own compile.)
const MEMO_MAX_AGE: usize = 3;

static RENDERER: PdfRenderer = PdfRenderer;

pub(super) fn renderer() -> &'static PdfRenderer {
    &RENDERER
}

/// SHA-256 over the embedded fonts' bytes, in order (the manifest's `renderer.fonts`).
pub fn fonts_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for data in typst_assets::fonts() {
            hasher.update((data.len() as u64).to_be_bytes());
            hasher.update(data);
        }
        hex::encode(hasher.finalize())
    })
}

/// The first error diagnostic, with its line and column in the template.
fn diagnostic_error(world: &DocumentWorld, diagnostics: &[SourceDiagnostic]) -> TemplateError {
    let Some(first) = diagnostics.first() else {
        return TemplateError::new(TemplateErrorKind::Runtime, "compilation failed");
    };
    let mut message = first.message.to_string();
    if let Some(hint) = first.hints.first() {
        message.push_str(&format!(" (hint: {})", hint.v));
    }
    // Where the template itself is at fault: the error's own place when it is in the
    // template, else the template's call that led to it (into `docbundle.typ`, say).
    let main = Some(world.main.id());
    let span = std::iter::once(first.span)
        .chain(first.trace.iter().map(|t| t.span.into()))
        .find(|span: &typst::syntax::DiagSpan| span.id() == main);
    let position = span
        .and_then(|span| world.range(span))
        .and_then(|range| world.main.lines().byte_to_line_column(range.start));
    TemplateError {
        kind: TemplateErrorKind::Runtime,
        message,
        line: position.map(|(l, _)| l + 1),
        column: position.map(|(_, c)| c + 1),
    }
}

fn compile(
    template: &str,
    input: &RenderInput<'_>,
    limits: &RenderLimits,
) -> Result<Vec<u8>, TemplateError> {
    // A carried file (an e-invoice's XML) is attached by one more line after the template's
    // own: positions in the template's errors stay where they were.
    let source;
    let template = match input.attachment {
        Some(a) => {
            source = format!(
                "{template}\n#pdf.attach({}, read({}, encoding: none), relationship: {}, mime-type: {}, description: {})\n",
                typst_string(&a.name),
                typst_string(&format!("/{}", world::ATTACHMENT_PATH)),
                typst_string(&a.relationship),
                typst_string(&a.mime_type),
                typst_string(&a.description),
            );
            source.as_str()
        }
        None => template,
    };
    let world = DocumentWorld::new(template, Some(input));
    let compiled = typst::compile::<PagedDocument>(&world).output;
    let document = compiled.map_err(|diagnostics| diagnostic_error(&world, &diagnostics))?;
    let pages = document.pages().len();
    if pages > limits.max_pages {
        return Err(TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "document has {pages} pages, over the limit of {}",
                limits.max_pages
            ),
        ));
    }
    // A stable identifier from the inputs: without one every PDF would share one `/ID`, and
    // with a random one re-renders would differ.
    let ident =
        docbundle_domain::digest::sha256_hex(format!("{template}\u{0}{}", input.data).as_bytes());
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(ident),
        timestamp: None,
        standards: standards(input.pdf_standard)?,
        ..Default::default()
    };
    let bytes = typst_pdf::pdf(&document, &options)
        .map_err(|diagnostics| diagnostic_error(&world, &diagnostics))?;
    if bytes.len() > limits.max_output_bytes {
        return Err(TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "PDF of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                limits.max_output_bytes
            ),
        ));
    }
    Ok(bytes)
}

/// `text` as a Typst string literal.
fn typst_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The standards Typst enforces for `name` (one of [`super::PDF_STANDARDS`]).
fn standards(name: Option<&str>) -> Result<typst_pdf::PdfStandards, TemplateError> {
    let Some(name) = name else {
        return Ok(typst_pdf::PdfStandards::default());
    };
    let unknown = || {
        TemplateError::new(
            TemplateErrorKind::Unsupported,
            format!("`{name}` is not a PDF standard this build enforces"),
        )
    };
    if !super::PDF_STANDARDS.contains(&name) {
        return Err(unknown());
    }
    let standard: typst_pdf::PdfStandard =
        serde_json::from_value(serde_json::Value::from(name)).map_err(|_| unknown())?;
    typst_pdf::PdfStandards::new(&[standard])
        .map_err(|e| TemplateError::new(TemplateErrorKind::Unsupported, e.message().to_string()))
}

fn check_size(template: &str, limits: &RenderLimits) -> Result<(), TemplateError> {
    if template.len() > limits.max_template_bytes {
        return Err(TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "template exceeds the limit of {} bytes",
                limits.max_template_bytes
            ),
        ));
    }
    Ok(())
}

impl DocumentRenderer for PdfRenderer {
    /// Only the size: a Typst document is checked by compiling it, which the trial render
    /// with `defaults` does at save time (it needs the data files).
    fn check(&self, template: &str, limits: &RenderLimits) -> Result<(), TemplateError> {
        check_size(template, limits)
    }

    /// Compiles in the calling thread, which needs a large stack (see
    /// [`super::sandbox::RENDER_STACK_BYTES`]); time and memory are bounded by the caller.
    fn render(
        &self,
        template: &str,
        input: &RenderInput<'_>,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError> {
        check_size(template, limits)?;
        let result = compile(template, input, limits);
        comemo::evict(MEMO_MAX_AGE);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub const INVOICE: &str = r#"#set page(paper: "a4", margin: 2cm)
#set text(size: 10pt)
#let data = json("data.json")
#let bundle = json("bundle.json")
#let configuration = json("configuration.json")
= Invoice #data.number
Customer: #data.customer.name \
Configuration: #configuration.name v#configuration.version

#table(
  columns: (auto, 1fr, auto, auto),
  [*No*], [*Item*], [*Qty*], [*Price*],
  ..data.lines.enumerate().map(((i, l)) => (str(i + 1), l.description, str(l.quantity), str(l.price))).flatten()
)
Total: #data.lines.map(l => l.quantity * l.price).sum(default: 0)

#text(size: 6pt)[Seed #bundle.seedHash]
"#;

    fn data(lines: usize) -> serde_json::Value {
        json!({
            "number": "INV-7",
            "customer": {"name": "Acme GmbH"},
            "lines": (0..lines).map(|i| json!({"description": format!("Item {i}"), "quantity": i % 5 + 1, "price": 10 + i})).collect::<Vec<_>>()
        })
    }

    pub(super) fn render(
        template: &str,
        data: &serde_json::Value,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError> {
        let input = RenderInput {
            data,
            seed_hash: "abc123",
            configuration_name: "Invoices",
            configuration_version: 4,
            pdf_standard: None,
            assets: &[],
            attachment: None,
        };
        super::super::Renderer::in_process(*limits).render(
            super::super::DocumentFormat::Pdf,
            template,
            &input,
        )
    }

    #[test]
    fn invoices_render_to_identical_pdfs() {
        let data = data(150);
        let first = render(INVOICE, &data, &RenderLimits::default()).unwrap();
        assert!(first.starts_with(b"%PDF-"));
        let second = render(INVOICE, &data, &RenderLimits::default()).unwrap();
        assert_eq!(first, second, "byte-identical on re-render");
        let other = render(
            INVOICE,
            &json!({"number": "INV-8", "customer": {"name": "B"}, "lines": []}),
            &RenderLimits::default(),
        )
        .unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err = render(
            "#let data = json(\"data.json\")\nHello #data.nope.deeper",
            &data(1),
            &RenderLimits::default(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2), "{err:?}");
        assert!(err.column.is_some());
        let err = render("#read(\"/etc/passwd\")", &data(1), &RenderLimits::default()).unwrap_err();
        assert!(
            err.message.contains("denied") || err.message.contains("access"),
            "{err:?}"
        );
        let err = render("#datetime.today()", &data(1), &RenderLimits::default()).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Runtime);
    }

    #[test]
    fn limits_trip_with_clear_errors() {
        let pages = RenderLimits {
            max_pages: 2,
            ..RenderLimits::default()
        };
        let err = render(INVOICE, &data(300), &pages).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit);
        assert!(err.message.contains("limit of 2"), "{err:?}");

        // Typst stops `while` loops after 10 000 rounds itself; a long `for` needs the budget.
        let budget = RenderLimits {
            time_budget: std::time::Duration::from_millis(200),
            ..RenderLimits::default()
        };
        let runaway = "#let x = 0\n#for i in range(3000000) { x += i }\n#x";
        let err = render(runaway, &data(1), &budget).unwrap_err();
        assert_eq!(err.kind, TemplateErrorKind::Limit);
        assert!(err.message.contains("time budget"), "{err:?}");

        let small = RenderLimits {
            max_output_bytes: 1000,
            ..RenderLimits::default()
        };
        let err = render(INVOICE, &data(10), &small).unwrap_err();
        assert!(err.message.contains("exceeds the limit"), "{err:?}");
    }
}
