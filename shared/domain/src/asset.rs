//! Assets: the images and fonts a merchant uploads for its templates. Stored once per
//! merchant under their SHA-256, immutable; a configuration version names the ones it uses
//! (`{"logo.png": "<sha256>"}`), so a replay renders with the very same bytes.
//!
//! The type is read from the bytes, never from the name or a header the client sends, and the
//! bytes must really be what they claim: an image's header must parse and give a bounded
//! size, a font must parse as a font, an SVG must be an `<svg>` document without entity
//! declarations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::FieldError;

crate::text_enum! {
    /// What an asset is, read from its bytes.
    AssetKind {
        Png => "png",
        Jpeg => "jpeg",
        Svg => "svg",
        Webp => "webp",
        Ttf => "ttf",
        Otf => "otf",
    }
}

/// Most pixels an image may have: a decoded image is held in memory while a PDF is made.
pub const MAX_PIXELS: u64 = 16_000_000;
/// Most assets one configuration may use.
pub const MAX_ASSETS_PER_CONFIGURATION: usize = 20;
/// Most bytes of assets one configuration may use: every render carries them to its
/// rendering process.
pub const MAX_ASSET_BYTES_PER_CONFIGURATION: usize = 24 * 1024 * 1024;

impl AssetKind {
    pub const fn content_type(self) -> &'static str {
        match self {
            AssetKind::Png => "image/png",
            AssetKind::Jpeg => "image/jpeg",
            AssetKind::Svg => "image/svg+xml",
            AssetKind::Webp => "image/webp",
            AssetKind::Ttf => "font/ttf",
            AssetKind::Otf => "font/otf",
        }
    }

    pub const fn is_font(self) -> bool {
        matches!(self, AssetKind::Ttf | AssetKind::Otf)
    }

    /// The file extensions a name of this kind may have.
    pub const fn extensions(self) -> &'static [&'static str] {
        match self {
            AssetKind::Png => &["png"],
            AssetKind::Jpeg => &["jpg", "jpeg"],
            AssetKind::Svg => &["svg"],
            AssetKind::Webp => &["webp"],
            AssetKind::Ttf => &["ttf"],
            AssetKind::Otf => &["otf"],
        }
    }

    /// The kind a file name announces by its extension.
    pub fn from_name(name: &str) -> Option<AssetKind> {
        let extension = name.rsplit_once('.')?.1.to_ascii_lowercase();
        AssetKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.extensions().contains(&extension.as_str()))
    }

    /// A `data:` URI of `bytes` (for HTML documents, which must stand alone).
    pub fn data_uri(self, bytes: &[u8]) -> String {
        use base64::Engine;
        format!(
            "data:{};base64,{}",
            self.content_type(),
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }
}

const ACCEPTED: &str = "PNG, JPEG, SVG or WebP image, or a TrueType/OpenType font";

/// The kind of `bytes`, checked: the header of an image parses with bounded dimensions, a
/// font parses, an SVG is an `<svg>` document. Anything else is refused with a reason.
pub fn inspect(bytes: &[u8]) -> Result<AssetKind, String> {
    let kind = sniff(bytes).ok_or_else(|| format!("the content is not a {ACCEPTED}"))?;
    match kind {
        AssetKind::Png | AssetKind::Jpeg | AssetKind::Webp => {
            let size = imagesize::blob_size(bytes)
                .map_err(|e| format!("the {} image is damaged: {e}", kind.as_str()))?;
            let pixels = (size.width as u64).saturating_mul(size.height as u64);
            if pixels == 0 || pixels > MAX_PIXELS {
                return Err(format!(
                    "the image is {}×{} pixels; at most {MAX_PIXELS} pixels are allowed",
                    size.width, size.height
                ));
            }
        }
        AssetKind::Svg => check_svg(bytes)?,
        AssetKind::Ttf | AssetKind::Otf => {
            ttf_parser::Face::parse(bytes, 0).map_err(|e| format!("the font is damaged: {e}"))?;
        }
    }
    Ok(kind)
}

/// The kind the first bytes announce.
fn sniff(bytes: &[u8]) -> Option<AssetKind> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(AssetKind::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(AssetKind::Jpeg)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(AssetKind::Webp)
    } else if bytes.starts_with(&[0x00, 0x01, 0x00, 0x00]) || bytes.starts_with(b"true") {
        Some(AssetKind::Ttf)
    } else if bytes.starts_with(b"OTTO") {
        Some(AssetKind::Otf)
    } else if looks_like_svg(bytes) {
        Some(AssetKind::Svg)
    } else {
        None
    }
}

/// UTF-8 text whose first element (after an XML declaration, comments and a doctype) is
/// `<svg`.
fn looks_like_svg(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            match after.find("?>") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => return false,
            }
        } else if let Some(after) = rest.strip_prefix("<!--") {
            match after.find("-->") {
                Some(end) => rest = after[end + 3..].trim_start(),
                None => return false,
            }
        } else if let Some(after) = rest.strip_prefix("<!DOCTYPE") {
            // An internal subset (`[ … ]`) ends with `]>`; `check_svg` then judges it.
            let end = match (after.find('['), after.find('>')) {
                (Some(open), Some(close)) if open < close => after.find("]>").map(|e| e + 1),
                (_, close) => close,
            };
            match end {
                Some(end) => rest = after[end + 1..].trim_start(),
                None => return false,
            }
        } else {
            return rest.starts_with("<svg")
                && rest[4..].starts_with(|c: char| c.is_whitespace() || c == '>' || c == '/');
        }
    }
}

/// No entity declarations (the "billion laughs" family) and nothing active ([`svg`]): an SVG
/// is a picture.
///
/// [`svg`]: crate::svg
fn check_svg(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the SVG is not UTF-8".to_owned())?;
    let lower = text.to_ascii_lowercase();
    if lower.contains("<!entity") {
        return Err("the SVG declares XML entities, which are not allowed".to_owned());
    }
    crate::svg::check(text)
}

/// What a merchant uploaded, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetInfo {
    /// The name it was first uploaded with.
    pub name: String,
    /// Lowercase hex SHA-256 of the bytes: the asset's identity.
    pub sha256: String,
    pub kind: AssetKind,
    pub content_type: String,
    pub size: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// An asset name as templates use it: a plain file name whose extension says its kind.
pub fn check_name(name: &str) -> Result<AssetKind, String> {
    let plain = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return Err(
            "must be 1 to 100 characters of letters, digits, '.', '_' or '-', not starting with '.'"
                .to_owned(),
        );
    }
    AssetKind::from_name(name)
        .ok_or_else(|| "must end in .png, .jpg, .jpeg, .svg, .webp, .ttf or .otf".to_owned())
}

/// Checks a configuration's `assets` map (names and hashes only; whether each asset exists
/// is the caller's question). Every problem is reported with its field.
pub fn check_map(assets: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if assets.len() > MAX_ASSETS_PER_CONFIGURATION {
        errors.push(FieldError::new(
            "assets",
            format!("must name at most {MAX_ASSETS_PER_CONFIGURATION} assets"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, sha256) in assets.iter().take(MAX_ASSETS_PER_CONFIGURATION + 1) {
        let field = format!("assets.{name}");
        if let Err(problem) = check_name(name) {
            errors.push(FieldError::new(field.clone(), problem));
        } else if !seen.insert(name.to_ascii_lowercase()) {
            // They become files of one folder (`docbundle pull`), on case-blind disks too.
            errors.push(FieldError::new(
                field.clone(),
                "differs from another asset's name only in case",
            ));
        }
        if !is_sha256(sha256) {
            errors.push(FieldError::new(
                field,
                "must be the asset's SHA-256 (64 lowercase hex digits)",
            ));
        }
    }
}

pub fn is_sha256(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The bucket key of a merchant's asset.
pub fn asset_key(merchant: crate::MerchantId, sha256: &str) -> String {
    format!("merchants/{merchant}/assets/{sha256}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        bytes.extend_from_slice(&width.to_be_bytes());
        bytes.extend_from_slice(&height.to_be_bytes());
        bytes.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    }

    #[test]
    fn the_type_comes_from_the_bytes() {
        assert_eq!(inspect(&png(120, 40)), Ok(AssetKind::Png));
        let elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert!(inspect(elf).unwrap_err().contains("not a PNG"));
        assert!(inspect(b"MZ\x90\x00").is_err());
        assert!(inspect(b"").is_err());
        assert!(inspect(b"<html><svg></svg></html>").is_err());
        // A PNG signature with no header behind it is damaged, not a PNG.
        assert!(inspect(b"\x89PNG\r\n\x1a\n")
            .unwrap_err()
            .contains("damaged"));
        // A font's magic alone does not make a font.
        assert!(inspect(b"\x00\x01\x00\x00garbage")
            .unwrap_err()
            .contains("font"));
    }

    #[test]
    fn decompression_bombs_are_refused_by_their_header() {
        let err = inspect(&png(100_000, 100_000)).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        assert!(inspect(&png(0, 10)).is_err());
    }

    #[test]
    fn svgs_are_pictures_only() {
        let svg = br#"<?xml version="1.0"?><!-- logo --><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>"#;
        assert_eq!(inspect(svg), Ok(AssetKind::Svg));
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaa">]><svg>&a;</svg>"#;
        assert!(inspect(bomb).unwrap_err().contains("entities"));
        let script = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        assert!(inspect(script).unwrap_err().contains("<script>"));
        assert!(inspect(b"<svgx>").is_err());
    }

    #[test]
    fn names_say_their_kind() {
        assert_eq!(check_name("logo.png"), Ok(AssetKind::Png));
        assert_eq!(check_name("Photo.JPG"), Ok(AssetKind::Jpeg));
        assert_eq!(check_name("brand-Regular.otf"), Ok(AssetKind::Otf));
        for bad in [
            "",
            ".png",
            "../logo.png",
            "a/b.png",
            "logo",
            "logo.exe",
            "data.json",
            "main.typ",
            "x\u{0}.png",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let mut errors = Vec::new();
        let map: BTreeMap<String, String> = [
            ("logo.png".to_owned(), "a".repeat(64)),
            ("bad name.png".to_owned(), "A".repeat(64)),
        ]
        .into();
        check_map(&map, &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.field == "assets.bad name.png"));
    }
}
