//! PDF documents from Typst markup, compiled in-process with the `typst` library.
//!
//! Sandboxed: the template sees only three virtual files — `data.json` (the seed), `bundle.json`
//! (`{"seedHash"}`) and `configuration.json` (`{"name", "version"}`) — plus the fonts embedded
//! in the binary; no other file, no package download, no network, no clock (`datetime.today()`
//! is an error). Deterministic: no creation date and a document identifier derived from the
//! inputs, so the same template and seed give the same bytes. Bounded: source size, page count,
//! output size; the wall-clock and memory budgets are enforced around the engine by
//! [`super::Renderer`].

use std::sync::OnceLock;

use typst::diag::{FileError, FileResult, SourceDiagnostic};
use typst::foundations::{Bytes, Datetime, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World, WorldExt};
use typst_layout::PagedDocument;

use super::{DocumentRenderer, RenderInput, RenderLimits, TemplateError, TemplateErrorKind};

pub struct PdfRenderer;

static RENDERER: PdfRenderer = PdfRenderer;

pub(super) fn renderer() -> &'static PdfRenderer {
    &RENDERER
}

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

/// Fonts and the standard library are loaded once per process (the first render pays it).
fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        Fonts {
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
        }
    })
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

fn library() -> &'static LazyHash<Library> {
    static LIBRARY: OnceLock<LazyHash<Library>> = OnceLock::new();
    LIBRARY.get_or_init(|| LazyHash::new(Library::default()))
}

fn file_id(path: &str) -> FileId {
    let path = VirtualPath::new(path).expect("a valid virtual path");
    RootedPath::new(VirtualRoot::Project, path).intern()
}

/// The Typst side of [`super::locale`]: `#import "docbundle.typ" as fmt`, then
/// `fmt.money(12345.5, "EUR", "de-DE")` → `12.345,50 €`. Each function reads a virtual file
/// under `/.format/` that the world computes from its path (see [`format_file`]): Typst has no
/// other way to call into the host, and the answer is as deterministic as any file's.
const FORMAT_LIBRARY: &str = r#"// Locale formatting with CLDR data, provided by docbundle.
#let _arg(value) = {
  let text = str(value)
  if text == "" or text.contains("/") or text == "." or text == ".." {
    panic("docbundle.typ: an argument may not be empty or hold a slash: " + repr(text))
  }
  text
}
#let _zone(zone) = {
  for part in str(zone).split("/") {
    if part == "" or part == "." or part == ".." {
      panic("docbundle.typ: not a time zone name: " + repr(str(zone)))
    }
  }
  str(zone)
}
#let _format(kind, ..args) = read("/.format/" + kind + "/" + args.pos().join("/"))
#let _digits(digits) = if digits == none { "-" } else { _arg(digits) }
/// money(12345.5, "EUR", "de-DE") → 12.345,50 €
#let money(value, currency, locale) = _format("money", _arg(currency), _arg(locale), _arg(value))
/// number(1234.5, "en-US") → 1,234.5; digits: fixed fraction digits
#let number(value, locale, digits: none) = _format("number", _arg(locale), _digits(digits), _arg(value))
/// percent(0.19, "de-DE") → 19 %
#let percent(value, locale, digits: none) = _format("percent", _arg(locale), _digits(digits), _arg(value))
/// date("2026-11-30", "de-DE", style: "long") → 30. November 2026
#let date(value, locale, style: "medium", zone: "UTC") = _format("date", _arg(locale), _arg(style), _arg(value), _zone(zone))
/// datetime("2026-11-30T09:05:00Z", "de-DE", zone: "Europe/Berlin") → 30.11.2026, 10:05:00 MEZ
#let datetime(value, locale, zone: "UTC", style: "medium") = _format("datetime", _arg(locale), _arg(style), _arg(value), _zone(zone))
"#;

const FORMAT_LIBRARY_PATH: &str = "docbundle.typ";
const FORMAT_PREFIX: &str = "/.format/";

/// The answer to a `/.format/<kind>/<arguments…>` read: the formatted text, or the reason
/// as the file's error (which Typst reports at the template's call).
fn format_file(path: &str) -> FileResult<Bytes> {
    let failed = |message: String| FileError::Other(Some(message.into()));
    // Typst writes a negative number's sign as U+2212.
    let path = path.replace('\u{2212}', "-");
    let rest = path.strip_prefix(FORMAT_PREFIX).unwrap_or_default();
    let (kind, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let digits = |raw: &str| -> Result<Option<u8>, String> {
        match raw {
            "-" => Ok(None),
            other => other
                .parse::<u8>()
                .map(Some)
                .map_err(|_| format!("digits must be 0 to {}", super::locale::MAX_DIGITS)),
        }
    };
    let result = match kind {
        "money" => match rest.splitn(3, '/').collect::<Vec<_>>()[..] {
            [currency, locale, value] => super::locale::money(value, currency, locale),
            _ => Err("money needs a value, a currency and a locale".to_owned()),
        },
        "number" | "percent" => match rest.splitn(3, '/').collect::<Vec<_>>()[..] {
            [locale, raw_digits, value] => digits(raw_digits).and_then(|d| {
                if kind == "number" {
                    super::locale::number(value, locale, d)
                } else {
                    super::locale::percent(value, locale, d)
                }
            }),
            _ => Err(format!("{kind} needs a value and a locale")),
        },
        // The zone comes last: IANA names have slashes of their own.
        "date" | "datetime" => match rest.splitn(4, '/').collect::<Vec<_>>()[..] {
            [locale, style, value, zone] if kind == "date" => {
                super::locale::date(value, locale, style, zone)
            }
            [locale, style, value, zone] => super::locale::datetime(value, locale, zone, style),
            _ => Err(format!("{kind} needs a value and a locale")),
        },
        other => Err(format!("there is no formatter `{other}`")),
    };
    result
        .map(|text| Bytes::new(text.into_bytes()))
        .map_err(|message| failed(format!("{kind}: {message}")))
}

/// Where a seed's images appear: the string at JSON pointer `/customer/signature`, a
/// `data:image/png;base64,…` URI, is the file `/seed/customer/signature`.
const SEED_PREFIX: &str = "/seed/";

/// The image a seed carries at `pointer` as a data URI, decoded and checked like an upload.
fn seed_image(data: &serde_json::Value, pointer: &str) -> FileResult<Bytes> {
    use base64::Engine;
    let failed =
        |message: &str| FileError::Other(Some(format!("seed {pointer}: {message}").into()));
    let value = data
        .pointer(pointer)
        .ok_or_else(|| failed("the seed has no value here"))?;
    let uri = value
        .as_str()
        .ok_or_else(|| failed("is not a string holding a data: URI"))?;
    let payload = uri
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .filter(|(mime, _)| mime.starts_with("image/"))
        .map(|(_, payload)| payload)
        .ok_or_else(|| failed("is not a data:image/…;base64, URI"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|_| failed("is not valid base64"))?;
    match docbundle_domain::asset::inspect(&bytes) {
        Ok(kind) if !kind.is_font() => Ok(Bytes::new(bytes)),
        Ok(_) => Err(failed("is a font, not an image")),
        Err(message) => Err(failed(&message)),
    }
}

/// The fonts of one render: the embedded ones, plus the configuration's font assets when it
/// has any.
struct RenderFonts {
    book: LazyHash<FontBook>,
    extra: Vec<Font>,
}

/// The whole world a document can see.
struct DocumentWorld {
    main: Source,
    library: Source,
    files: Vec<(FileId, Bytes)>,
    seed: serde_json::Value,
    fonts: Option<RenderFonts>,
}

impl DocumentWorld {
    fn new(template: &str, input: Option<&RenderInput<'_>>) -> Self {
        let main = Source::new(file_id("main.typ"), template.to_owned());
        let mut files = Vec::new();
        if let Some(input) = input {
            let json = |v: serde_json::Value| Bytes::new(v.to_string().into_bytes());
            files.push((file_id("data.json"), json(input.data.clone())));
            files.push((
                file_id("bundle.json"),
                json(serde_json::json!({"seedHash": input.seed_hash})),
            ));
            files.push((
                file_id("configuration.json"),
                json(serde_json::json!({"name": input.configuration_name, "version": input.configuration_version})),
            ));
        }
        let library = Source::new(file_id(FORMAT_LIBRARY_PATH), FORMAT_LIBRARY.to_owned());
        let mut extra = Vec::new();
        for asset in input.map(|i| i.assets).unwrap_or_default() {
            if asset.kind.is_font() {
                extra.extend(Font::iter(Bytes::new(asset.bytes.clone())));
            } else if let Ok(path) = VirtualPath::new(&asset.name) {
                let id = RootedPath::new(VirtualRoot::Project, path).intern();
                files.push((id, Bytes::new(asset.bytes.clone())));
            }
        }
        let fonts = (!extra.is_empty()).then(|| {
            let base = fonts();
            RenderFonts {
                book: LazyHash::new(FontBook::from_fonts(base.fonts.iter().chain(&extra))),
                extra,
            }
        });
        DocumentWorld {
            main,
            library,
            files,
            seed: input.map(|i| i.data.clone()).unwrap_or_default(),
            fonts,
        }
    }
}

impl World for DocumentWorld {
    fn library(&self) -> &LazyHash<Library> {
        library()
    }

    fn book(&self) -> &LazyHash<FontBook> {
        match &self.fonts {
            Some(fonts) => &fonts.book,
            None => &fonts().book,
        }
    }

    fn main(&self) -> FileId {
        self.main.id()
    }

    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else if id == self.library.id() {
            Ok(self.library.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }

    fn file(&self, id: FileId) -> FileResult<Bytes> {
        let path = id.get().vpath().get_with_slash();
        if path.starts_with(FORMAT_PREFIX) && *id.get().root() == VirtualRoot::Project {
            return format_file(path);
        }
        if let Some(rest) = path.strip_prefix(SEED_PREFIX) {
            if *id.get().root() == VirtualRoot::Project {
                return seed_image(&self.seed, &format!("/{rest}"));
            }
        }
        self.files
            .iter()
            .find(|(file, _)| *file == id)
            .map(|(_, bytes)| bytes.clone())
            .ok_or(FileError::AccessDenied)
    }

    fn font(&self, index: usize) -> Option<Font> {
        let base = &fonts().fonts;
        match base.get(index) {
            Some(font) => Some(font.clone()),
            None => self.fonts.as_ref()?.extra.get(index - base.len()).cloned(),
        }
    }

    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        None
    }
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
        // Keep memory flat across renders with different data.
        comemo::evict(0);
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

    fn render(
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
    fn locale_functions_format_as_cldr_says() {
        let template = r#"#import "docbundle.typ" as fmt
#let data = json("data.json")
#fmt.money(data.total, "EUR", "de-DE") | #fmt.money("0.10", "USD", "en-US") | #fmt.money(data.total, "JPY", "ja-JP")
#fmt.number(data.total, "de-DE", digits: 2) | #fmt.percent(0.125, "de-DE", digits: 1)
#fmt.date("2026-11-30", "de-DE", style: "long") | #fmt.datetime("2026-11-30T09:05:00Z", "en-US", zone: "America/Argentina/Buenos_Aires")
#datetime(year: 2026, month: 1, day: 2).display()"#;
        let pdf = render(
            template,
            &json!({"total": 12345.5}),
            &RenderLimits::default(),
        )
        .unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        // Typst writes negative numbers with U+2212: a refund formats like any amount.
        render(
            "#import \"docbundle.typ\" as fmt\n#fmt.money(-3.5, \"EUR\", \"de-DE\") #fmt.number(-2, \"en\") #fmt.percent(decimal(\"-0.5\"), \"en\")",
            &json!({}),
            &RenderLimits::default(),
        )
        .unwrap();
        assert_eq!(
            format_file("/.format/money/EUR/de-DE/\u{2212}3.5").map(|b| b.to_vec()),
            Ok("-3,50\u{a0}€".as_bytes().to_vec())
        );
        // A wrong argument is the template's error, placed at its call.
        let err = render(
            "#import \"docbundle.typ\" as fmt\n\n#fmt.money(1, \"EURO\", \"de-DE\")",
            &json!({}),
            &RenderLimits::default(),
        )
        .unwrap_err();
        assert!(err.message.contains("ISO 4217"), "{err:?}");
        assert_eq!(err.line, Some(3), "{err:?}");
        for (call, expected) in [
            ("fmt.money(\"../../x\", \"EUR\", \"de\")", "slash"),
            (
                "fmt.money(\"1e9999999999\", \"EUR\", \"de\")",
                "not a number",
            ),
            ("fmt.number(1, \"de\", digits: 99)", "digits"),
            (
                "fmt.datetime(\"2026-11-30T09:05:00Z\", \"de\", zone: \"Nowhere/At_All\")",
                "IANA",
            ),
            ("read(\"/.format/nope/x\")", "no formatter"),
            // Arguments cannot steer the virtual path: no slash outside a zone name.
            ("fmt.number(\"1/../777\", \"en-US\")", "slash"),
            ("fmt.number(\"../../../../data.json\", \"en-US\")", "slash"),
            ("fmt.date(\"2026-11-30\", \"de\", style: \"a/b\")", "slash"),
            (
                "fmt.datetime(\"2026-11-30T09:05:00Z\", \"de\", zone: \"../../etc/localtime\")",
                "zone",
            ),
        ] {
            let err = render(
                &format!("#import \"docbundle.typ\" as fmt\n#{call}"),
                &json!({}),
                &RenderLimits::default(),
            )
            .unwrap_err();
            assert!(err.message.contains(expected), "{call}: {err:?}");
        }
    }

    #[test]
    fn assets_named_like_the_seed_folder_are_still_assets() {
        let logo = include_bytes!("../../../events/samples/assets/logo.png");
        let assets = [crate::RenderAsset {
            name: "seedling.png".into(),
            kind: docbundle_domain::asset::AssetKind::Png,
            bytes: bytes::Bytes::from_static(logo),
        }];
        let data = json!({});
        let input = RenderInput {
            data: &data,
            seed_hash: "abc",
            configuration_name: "Assets",
            configuration_version: 1,
            pdf_standard: None,
            assets: &assets,
        };
        let pdf = super::super::Renderer::in_process(RenderLimits::default())
            .render(
                super::super::DocumentFormat::Pdf,
                "#image(\"seedling.png\", width: 2cm)",
                &input,
            )
            .unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
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
