//! The world a Typst document compiles in: the template, the three data files, the
//! configuration's image assets and the seed's images (`/seed/…`), the formatting library and
//! its virtual files, and the fonts embedded in the binary plus the configuration's; every other
//! file is access denied and there is no clock.

use std::sync::{Arc, Mutex, OnceLock};

use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

use super::format::{format_file, FORMAT_LIBRARY, FORMAT_LIBRARY_PATH, FORMAT_PREFIX};
use crate::RenderInput;

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

fn library() -> &'static LazyHash<Library> {
    static LIBRARY: OnceLock<LazyHash<Library>> = OnceLock::new();
    LIBRARY.get_or_init(|| LazyHash::new(Library::default()))
}

/// Where a carried file (an e-invoice's XML) is, for the line that attaches it.
pub(super) const ATTACHMENT_PATH: &str = "docbundle-attachment/factur-x.xml";

fn file_id(path: &str) -> FileId {
    let path = VirtualPath::new(path).expect("a valid virtual path");
    RootedPath::new(VirtualRoot::Project, path).intern()
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

/// What a configuration's assets are to Typst: its files (images) and its fonts, parsed.
struct PreparedAssets {
    files: Vec<(FileId, Bytes)>,
    fonts: Option<Arc<RenderFonts>>,
}

/// The assets of the last render, prepared, with the names and bytes they were made from.
///
/// A rendering process renders one configuration's documents over and over: parsing its fonts,
/// building a font book over every embedded font and hashing each asset's bytes again for each
/// render would be most of a warm render's cost, and new `Font` and `Bytes` values would also
/// miss Typst's memoized results (shaping, image decoding) kept from the render before. Only
/// the last set is kept, so memory is that of the assets in use.
fn prepared_assets(
    assets: &[crate::RenderAsset],
) -> (Vec<(FileId, Bytes)>, Option<Arc<RenderFonts>>) {
    type Key = Vec<(String, bytes::Bytes)>;
    static LAST: Mutex<Option<(Key, Arc<PreparedAssets>)>> = Mutex::new(None);
    let same = |key: &Key| {
        key.len() == assets.len()
            && key
                .iter()
                .zip(assets)
                .all(|((name, bytes), asset)| *name == asset.name && *bytes == asset.bytes)
    };
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let prepared = match last.as_ref() {
        Some((key, prepared)) if same(key) => Arc::clone(prepared),
        _ => {
            let prepared = Arc::new(prepare(assets));
            let key = assets
                .iter()
                .map(|a| (a.name.clone(), a.bytes.clone()))
                .collect();
            *last = Some((key, Arc::clone(&prepared)));
            prepared
        }
    };
    (prepared.files.clone(), prepared.fonts.clone())
}

fn prepare(assets: &[crate::RenderAsset]) -> PreparedAssets {
    let mut files = Vec::new();
    let mut extra = Vec::new();
    for asset in assets {
        if asset.kind.is_font() {
            extra.extend(Font::iter(Bytes::new(asset.bytes.clone())));
        } else if let Ok(path) = VirtualPath::new(&asset.name) {
            let id = RootedPath::new(VirtualRoot::Project, path).intern();
            files.push((id, Bytes::new(asset.bytes.clone())));
        }
    }
    let fonts = (!extra.is_empty()).then(|| {
        let base = fonts();
        Arc::new(RenderFonts {
            book: LazyHash::new(FontBook::from_fonts(base.fonts.iter().chain(&extra))),
            extra,
        })
    });
    PreparedAssets { files, fonts }
}

/// The formatting library, parsed once per process.
fn library_source() -> Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE
        .get_or_init(|| Source::new(file_id(FORMAT_LIBRARY_PATH), FORMAT_LIBRARY.to_owned()))
        .clone()
}

/// The template parsed, reused while the same template is rendered (its syntax tree is then
/// the same, so Typst's memoized evaluation of it can be reused too).
fn main_source(template: &str) -> Source {
    static LAST: Mutex<Option<Source>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match last.as_ref() {
        Some(source) if source.text() == template => source.clone(),
        _ => {
            let source = Source::new(file_id("main.typ"), template.to_owned());
            *last = Some(source.clone());
            source
        }
    }
}

/// The whole world a document can see.
pub(super) struct DocumentWorld<'a> {
    pub(super) main: Source,
    library: Source,
    files: Vec<(FileId, Bytes)>,
    seed: &'a serde_json::Value,
    fonts: Option<Arc<RenderFonts>>,
}

impl<'a> DocumentWorld<'a> {
    pub(super) fn new(template: &str, input: Option<&RenderInput<'a>>) -> Self {
        let main = main_source(template);
        let mut files = Vec::new();
        if let Some(input) = input {
            let json = |v: &serde_json::Value| Bytes::new(v.to_string().into_bytes());
            files.push((file_id("data.json"), json(input.data)));
            files.push((
                file_id("bundle.json"),
                json(&serde_json::json!({"seedHash": input.seed_hash})),
            ));
            files.push((
                file_id("configuration.json"),
                json(&serde_json::json!({"name": input.configuration_name, "version": input.configuration_version})),
            ));
        }
        if let Some(a) = input.and_then(|i| i.attachment) {
            files.push((
                file_id(ATTACHMENT_PATH),
                Bytes::new(a.text.clone().into_bytes()),
            ));
        }
        let (asset_files, fonts) = match input {
            Some(input) if !input.assets.is_empty() => prepared_assets(input.assets),
            _ => (Vec::new(), None),
        };
        files.extend(asset_files);
        DocumentWorld {
            main,
            library: library_source(),
            files,
            seed: input.map_or(&serde_json::Value::Null, |i| i.data),
            fonts,
        }
    }
}

impl World for DocumentWorld<'_> {
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
                return seed_image(self.seed, &format!("/{rest}"));
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::{DocumentFormat, RenderInput, RenderLimits, Renderer};

    #[test]
    fn assets_named_like_the_seed_folder_are_still_assets() {
        let logo = include_bytes!("../../../../events/samples/assets/logo.png");
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
            attachment: None,
        };
        let pdf = Renderer::in_process(RenderLimits::default())
            .render(
                DocumentFormat::Pdf,
                "#image(\"seedling.png\", width: 2cm)",
                &input,
            )
            .unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
