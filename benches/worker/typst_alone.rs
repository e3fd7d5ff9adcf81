//! The reference: the same invoice compiled by Typst alone, as its own compiler does in watch
//! mode (one world kept across compiles, the memo evicted by age after each: `evict(10)`),
//! with the same fonts, logo, data, PDF standard and identifier. Only `docbundle.typ`, the
//! locale library, is a plain-Typst stand-in (Typst has no CLDR data): the difference between
//! this and a render through `docbundle` is what the service adds — the sandboxed world, the
//! locale formatting, the rendering process's pipe — not Typst's own work.

use std::time::{Duration, Instant};

use serde_json::Value;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Smart};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};
use typst_layout::PagedDocument;

/// `docbundle.typ` in plain Typst: the same functions, without the locale's digits.
const STAND_IN_LIBRARY: &str = r#"
#let money(value, currency, locale) = str(calc.round(float(value), digits: 2)) + " " + currency
#let number(value, locale, digits: none) = str(value)
#let percent(value, locale, digits: none) = str(value * 100) + " %"
#let date(value, locale, style: "medium", zone: "UTC") = str(value)
#let datetime(value, locale, zone: "UTC", style: "medium") = str(value)
"#;

struct ReferenceWorld {
    library: LazyHash<Library>,
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
    main: Source,
    format: Source,
    files: Vec<(FileId, Bytes)>,
}

fn id(path: &str) -> FileId {
    RootedPath::new(VirtualRoot::Project, VirtualPath::new(path).unwrap()).intern()
}

impl ReferenceWorld {
    fn new(template: &str, font: &[u8], logo: &[u8]) -> Self {
        let mut fonts: Vec<Font> = typst_assets::fonts()
            .flat_map(|data| Font::iter(Bytes::new(data)))
            .collect();
        fonts.extend(Font::iter(Bytes::new(font.to_vec())));
        ReferenceWorld {
            library: LazyHash::new(Library::default()),
            book: LazyHash::new(FontBook::from_fonts(&fonts)),
            fonts,
            main: Source::new(id("main.typ"), template.to_owned()),
            format: Source::new(id("docbundle.typ"), STAND_IN_LIBRARY.to_owned()),
            files: vec![
                (id("logo.png"), Bytes::new(logo.to_vec())),
                (
                    id("bundle.json"),
                    Bytes::new(br#"{"seedHash":"bench"}"#.to_vec()),
                ),
                (
                    id("configuration.json"),
                    Bytes::new(br#"{"name":"Invoices","version":1}"#.to_vec()),
                ),
            ],
        }
    }

    /// New data, as a changed `data.json` on disk would be.
    fn set_data(&mut self, data: &Value) {
        let data_id = id("data.json");
        self.files.retain(|(file, _)| *file != data_id);
        self.files
            .push((data_id, Bytes::new(data.to_string().into_bytes())));
    }
}

impl World for ReferenceWorld {
    fn library(&self) -> &LazyHash<Library> {
        &self.library
    }
    fn book(&self) -> &LazyHash<FontBook> {
        &self.book
    }
    fn main(&self) -> FileId {
        self.main.id()
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else if id == self.format.id() {
            Ok(self.format.clone())
        } else {
            Err(FileError::AccessDenied)
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        self.files
            .iter()
            .find(|(file, _)| *file == id)
            .map(|(_, bytes)| bytes.clone())
            .ok_or(FileError::AccessDenied)
    }
    fn font(&self, index: usize) -> Option<Font> {
        self.fonts.get(index).cloned()
    }
    fn today(&self, _offset: Option<typst::foundations::Duration>) -> Option<Datetime> {
        None
    }
}

/// Compiles the invoice once per seed (the first is the warm-up) and returns the warm
/// compile + PDF export times.
pub fn compile_each(template: &str, font: &[u8], logo: &[u8], seeds: &[Value]) -> Vec<Duration> {
    let mut world = ReferenceWorld::new(template, font, logo);
    let standards =
        typst_pdf::PdfStandards::new(&[typst_pdf::PdfStandard::A_2b]).expect("PDF/A-2b");
    let mut samples = Vec::new();
    for (i, seed) in seeds.iter().enumerate() {
        let started = Instant::now();
        world.set_data(seed);
        let document = typst::compile::<PagedDocument>(&world)
            .output
            .expect("the invoice compiles");
        let ident =
            docbundle::domain::digest::sha256_hex(format!("{template}\u{0}{seed}").as_bytes());
        let options = typst_pdf::PdfOptions {
            ident: Smart::Custom(ident),
            timestamp: None,
            standards: standards.clone(),
            ..Default::default()
        };
        let pdf = typst_pdf::pdf(&document, &options).expect("the invoice exports");
        comemo::evict(10);
        assert!(pdf.starts_with(b"%PDF"));
        if i > 0 {
            samples.push(started.elapsed());
        }
    }
    samples
}
