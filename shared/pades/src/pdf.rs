//! The incremental update that carries a signature: a signature dictionary with a
//! `/Contents` placeholder, an invisible signature field on the first page, the catalog's
//! `/AcroForm`, and a cross-reference section chained to the original by `/Prev`.

use std::io::Write;

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::{Details, PadesError};

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF cannot be read: {0}")]
    Unreadable(String),
    #[error("the PDF cannot be signed: {0}")]
    Unsupported(&'static str),
}

/// `/ByteRange` as first written: four numbers' worth of room, rewritten in place.
const BYTE_RANGE_PLACEHOLDER: &str = "[0 0000000000 0000000000 0000000000]";

/// The PDF with its update appended and the offsets of the `/Contents` hex string.
pub(crate) struct Placeholder {
    bytes: Vec<u8>,
    /// Offset of `<` and one past `>`.
    contents: (usize, usize),
}

impl Placeholder {
    /// The two signed byte ranges: everything but the `/Contents` string.
    pub(crate) fn signed_ranges(&self) -> [&[u8]; 2] {
        [
            &self.bytes[..self.contents.0],
            &self.bytes[self.contents.1..],
        ]
    }

    /// Writes `der` (hex, zero-padded) into the placeholder.
    pub(crate) fn fill(mut self, der: &[u8]) -> Result<Vec<u8>, PadesError> {
        let room = (self.contents.1 - self.contents.0 - 2) / 2;
        if der.len() > room {
            return Err(PadesError::TooLarge {
                actual: der.len(),
                reserved: room,
            });
        }
        let hex = hex::encode_upper(der);
        let start = self.contents.0 + 1;
        self.bytes[start..start + hex.len()].copy_from_slice(hex.as_bytes());
        Ok(self.bytes)
    }
}

/// The objects the update rewrites or adds, read from the original.
pub(crate) struct Original {
    pub(crate) root: ObjectId,
    pub(crate) catalog: Dictionary,
    pub(crate) page: ObjectId,
    pub(crate) page_dict: Dictionary,
    /// The page's `/Annots` when it is an indirect array.
    pub(crate) annots: Option<(ObjectId, Vec<Object>)>,
    pub(crate) next_id: u32,
    pub(crate) trailer: Dictionary,
    pub(crate) startxref: usize,
}

/// Reads what the update needs; `unsigned` refuses a PDF that has a form already (a first
/// signature's update adds the form). Through the cross-reference table when it is a classic
/// one (as this service's renders and updates are): only the trailer, the catalog and the
/// first page are parsed; else the whole file.
pub(crate) fn read_original(pdf: &[u8], unsigned: bool) -> Result<Original, PdfError> {
    let original = match crate::xref::read(pdf) {
        Some(original) => original,
        None => read_whole(pdf)?,
    };
    if unsigned && original.catalog.has(b"AcroForm") {
        return Err(PdfError::Unsupported("it already has an interactive form"));
    }
    Ok(original)
}

/// [`read_original`] by parsing every object of the file.
fn read_whole(pdf: &[u8]) -> Result<Original, PdfError> {
    let unreadable = |e: lopdf::Error| PdfError::Unreadable(e.to_string());
    let doc = Document::load_mem(pdf).map_err(unreadable)?;
    if doc.is_encrypted() {
        return Err(PdfError::Unsupported("it is encrypted"));
    }
    let root = doc
        .trailer
        .get(b"Root")
        .and_then(Object::as_reference)
        .map_err(unreadable)?;
    let catalog = doc.get_dictionary(root).map_err(unreadable)?.clone();
    let page = *doc
        .get_pages()
        .values()
        .next()
        .ok_or(PdfError::Unsupported("it has no page"))?;
    let page_dict = doc.get_dictionary(page).map_err(unreadable)?.clone();
    let annots = match page_dict.get(b"Annots") {
        Ok(Object::Reference(id)) => {
            let list = doc
                .get_object(*id)
                .and_then(Object::as_array)
                .map_err(unreadable)?
                .clone();
            Some((*id, list))
        }
        _ => None,
    };
    let size = doc
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .map_err(unreadable)?;
    let next_id = u32::try_from(size)
        .map_err(|_| PdfError::Unreadable("the trailer's /Size is out of range".into()))?
        .max(doc.max_id + 1);
    Ok(Original {
        root,
        catalog,
        page,
        page_dict,
        annots,
        next_id,
        trailer: doc.trailer.clone(),
        startxref: last_startxref(pdf)?,
    })
}

/// The offset after the file's last `startxref`.
pub(crate) fn last_startxref(pdf: &[u8]) -> Result<usize, PdfError> {
    let tail = &pdf[pdf.len().saturating_sub(1024)..];
    let at = tail
        .windows(9)
        .rposition(|w| w == b"startxref")
        .ok_or_else(|| PdfError::Unreadable("no startxref".into()))?;
    std::str::from_utf8(&tail[at + 9..])
        .ok()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| PdfError::Unreadable("startxref is not a number".into()))
}

/// Appends the update to `pdf`; the `/ByteRange` is final, the `/Contents` zeros.
pub(crate) fn append_placeholder(
    pdf: &[u8],
    details: &Details,
    reserve: usize,
) -> Result<Placeholder, PdfError> {
    let original = read_original(pdf, true)?;
    let sig = (original.next_id, 0);
    let field = (original.next_id + 1, 0);

    let mut catalog = original.catalog.clone();
    let mut form = Dictionary::new();
    form.set("Fields", vec![Object::Reference(field)]);
    // SignaturesExist | AppendOnly.
    form.set("SigFlags", 3);
    catalog.set("AcroForm", form);

    let mut page = original.page_dict.clone();
    let mut rewritten: Vec<(ObjectId, Object)> = vec![(original.root, catalog.into())];
    match (&original.annots, page.get_mut(b"Annots")) {
        (Some((id, list)), _) => {
            let mut list = list.clone();
            list.push(Object::Reference(field));
            rewritten.push((*id, Object::Array(list)));
        }
        (None, Ok(Object::Array(list))) => list.push(Object::Reference(field)),
        (None, _) => page.set("Annots", vec![Object::Reference(field)]),
    }
    rewritten.push((original.page, page.into()));

    let mut out = pdf.to_vec();
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let mut offsets: Vec<(ObjectId, usize)> = Vec::new();

    offsets.push((sig, out.len()));
    let (contents_at, byte_range_at) = write_signature_dictionary(&mut out, sig, details, reserve);
    offsets.push((field, out.len()));
    let widget = format!(
        "{} 0 obj\n<</Type/Annot/Subtype/Widget/FT/Sig/T(Signature1)/V {} 0 R/P {} {} R/F 132/Rect[0 0 0 0]>>\nendobj\n",
        field.0, sig.0, original.page.0, original.page.1
    );
    out.extend_from_slice(widget.as_bytes());
    for (id, object) in &rewritten {
        offsets.push((*id, out.len()));
        write_object(&mut out, *id, object)?;
    }
    write_xref_and_trailer(&mut out, offsets, &original, field.0 + 1)?;

    let contents = (contents_at, contents_at + 2 + 2 * reserve);
    let byte_range = format!(
        "[0 {} {} {}]",
        contents.0,
        contents.1,
        out.len() - contents.1
    );
    let padded = format!("{byte_range:<width$}", width = BYTE_RANGE_PLACEHOLDER.len());
    // The digits fit: ten per number covers files up to 9 GB.
    out[byte_range_at..byte_range_at + padded.len()].copy_from_slice(padded.as_bytes());
    Ok(Placeholder {
        bytes: out,
        contents,
    })
}

/// Writes the signature dictionary; returns the offsets of `/Contents`' `<` and of the
/// `/ByteRange` array.
fn write_signature_dictionary(
    out: &mut Vec<u8>,
    id: ObjectId,
    details: &Details,
    reserve: usize,
) -> (usize, usize) {
    let mut head = format!(
        "{} 0 obj\n<</Type/Sig/Filter/Adobe.PPKLite/SubFilter/ETSI.CAdES.detached",
        id.0
    );
    if let Some(time) = details.signing_time {
        head.push_str(&time.format("/M(D:%Y%m%d%H%M%S+00'00')").to_string());
    }
    for (key, value) in [
        ("Reason", &details.reason),
        ("Location", &details.location),
        ("ContactInfo", &details.contact_info),
    ] {
        if let Some(text) = value {
            head.push_str(&format!("/{key}{}", text_string(text)));
        }
    }
    head.push_str("/ByteRange");
    out.extend_from_slice(head.as_bytes());
    let byte_range_at = out.len();
    out.extend_from_slice(BYTE_RANGE_PLACEHOLDER.as_bytes());
    out.extend_from_slice(b"/Contents");
    let contents_at = out.len();
    out.push(b'<');
    out.resize(out.len() + 2 * reserve, b'0');
    out.extend_from_slice(b">>>\nendobj\n");
    (contents_at, byte_range_at)
}

/// A PDF text string: UTF-16BE with its byte-order mark, as hex (any character survives).
fn text_string(text: &str) -> String {
    let mut hex = String::from("<FEFF");
    for unit in text.encode_utf16() {
        hex.push_str(&format!("{unit:04X}"));
    }
    hex.push('>');
    hex
}

pub(crate) fn write_object(
    out: &mut Vec<u8>,
    id: ObjectId,
    object: &Object,
) -> Result<(), PdfError> {
    let io = |e: std::io::Error| PdfError::Unreadable(e.to_string());
    writeln!(out, "{} {} obj", id.0, id.1).map_err(io)?;
    serialize(out, object)?;
    out.extend_from_slice(b"\nendobj\n");
    Ok(())
}

/// A cross-reference table of the update's objects (in subsections of consecutive numbers)
/// and its trailer, chained to the previous section.
pub(crate) fn write_xref_and_trailer(
    out: &mut Vec<u8>,
    mut offsets: Vec<(ObjectId, usize)>,
    original: &Original,
    size: u32,
) -> Result<(), PdfError> {
    offsets.sort_by_key(|((number, _), _)| *number);
    let xref_at = out.len();
    out.extend_from_slice(b"xref\n");
    let mut i = 0;
    while i < offsets.len() {
        let mut j = i + 1;
        while j < offsets.len() && offsets[j].0 .0 == offsets[j - 1].0 .0 + 1 {
            j += 1;
        }
        out.extend_from_slice(format!("{} {}\n", offsets[i].0 .0, j - i).as_bytes());
        for ((_, generation), offset) in &offsets[i..j] {
            out.extend_from_slice(format!("{offset:010} {generation:05} n\r\n").as_bytes());
        }
        i = j;
    }
    let mut trailer = Dictionary::new();
    trailer.set("Size", i64::from(size.max(original.next_id)));
    trailer.set("Root", Object::Reference(original.root));
    for key in [b"Info".as_slice(), b"ID".as_slice()] {
        if let Ok(value) = original.trailer.get(key) {
            trailer.set(key, value.clone());
        }
    }
    trailer.set("Prev", original.startxref as i64);
    out.extend_from_slice(b"trailer\n");
    serialize(out, &Object::Dictionary(trailer))?;
    out.extend_from_slice(format!("\nstartxref\n{xref_at}\n%%EOF\n").as_bytes());
    Ok(())
}

/// Writes a parsed object back in PDF syntax (what the update rewrites: dictionaries of
/// names, numbers, strings, arrays and references; never a stream).
fn serialize(out: &mut Vec<u8>, object: &Object) -> Result<(), PdfError> {
    match object {
        Object::Null => out.extend_from_slice(b"null"),
        Object::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Object::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Object::Real(r) => out.extend_from_slice(format!("{r}").as_bytes()),
        Object::Name(name) => serialize_name(out, name),
        Object::String(bytes, _) => {
            out.push(b'<');
            out.extend_from_slice(hex::encode_upper(bytes).as_bytes());
            out.push(b'>');
        }
        Object::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                serialize(out, item)?;
            }
            out.push(b']');
        }
        Object::Dictionary(dict) => {
            out.extend_from_slice(b"<<");
            for (key, value) in dict.iter() {
                serialize_name(out, key);
                out.push(b' ');
                serialize(out, value)?;
            }
            out.extend_from_slice(b">>");
        }
        Object::Reference((number, generation)) => {
            out.extend_from_slice(format!("{number} {generation} R").as_bytes())
        }
        Object::Stream(_) => {
            return Err(PdfError::Unsupported("a rewritten object is a stream"));
        }
    }
    Ok(())
}

/// `/Name`, with delimiters, whitespace, `#` and bytes outside `!`..`~` as `#xx`.
fn serialize_name(out: &mut Vec<u8>, name: &[u8]) {
    out.push(b'/');
    for &byte in name {
        let plain = (b'!'..=b'~').contains(&byte) && !b"#()<>[]{}/%".contains(&byte);
        if plain {
            out.push(byte);
        } else {
            out.extend_from_slice(format!("#{byte:02X}").as_bytes());
        }
    }
}
