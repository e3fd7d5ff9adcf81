//! Reading only what a signature's update needs — the trailer, the catalog, the first page —
//! through a classic cross-reference table and its `/Prev` chain, instead of parsing every
//! object of the file (a tagged invoice has a thousand). Each object needed is parsed by
//! `lopdf` alone, from its own bytes. Anything unexpected (a cross-reference stream, an
//! encrypted file, an offset that does not point at its object) gives `None`, and the caller
//! parses the whole file instead.

use std::collections::{BTreeMap, HashMap, HashSet};

use lopdf::{Dictionary, Document, Object, ObjectId};

use crate::pdf::{last_startxref, Original};

/// The deepest page tree followed to the first page.
const MAX_DEPTH: usize = 32;

pub(crate) fn read(pdf: &[u8]) -> Option<Original> {
    let startxref = last_startxref(pdf).ok()?;
    let (offsets, trailer) = table(pdf, startxref)?;
    if trailer.has(b"Encrypt") {
        return None;
    }
    let object = |id: ObjectId| -> Option<Object> {
        let (offset, generation) = *offsets.get(&id.0)?;
        (generation == id.1).then_some(())?;
        parse(id, body(pdf, offset, id)?)
    };
    let root = trailer.get(b"Root").ok()?.as_reference().ok()?;
    let catalog = object(root)?.as_dict().ok()?.clone();
    let mut node = catalog.get(b"Pages").ok()?.as_reference().ok()?;
    let mut found = None;
    for _ in 0..MAX_DEPTH {
        let dict = object(node)?.as_dict().ok()?.clone();
        if dict.get(b"Type").ok()?.as_name().ok()? == b"Page" {
            found = Some((node, dict));
            break;
        }
        node = dict
            .get(b"Kids")
            .ok()?
            .as_array()
            .ok()?
            .first()?
            .as_reference()
            .ok()?;
    }
    let (page, page_dict) = found?;
    let annots = match page_dict.get(b"Annots") {
        Ok(Object::Reference(id)) => Some((*id, object(*id)?.as_array().ok()?.clone())),
        _ => None,
    };
    let size = u32::try_from(trailer.get(b"Size").ok()?.as_i64().ok()?).ok()?;
    let highest = offsets.keys().max().copied().unwrap_or(0);
    Some(Original {
        root,
        catalog,
        page,
        page_dict,
        annots,
        next_id: size.max(highest + 1),
        trailer,
        startxref,
    })
}

/// An unfiltered stream's dictionary and bytes (`/Length` a direct number), found through
/// the classic cross-reference table: `None` for anything else (the caller parses the file).
pub(crate) fn plain_stream(pdf: &[u8], id: ObjectId) -> Option<(Dictionary, &[u8])> {
    let startxref = last_startxref(pdf).ok()?;
    let (offsets, _) = table(pdf, startxref)?;
    let (offset, generation) = *offsets.get(&id.0)?;
    (generation == id.1).then_some(())?;
    let body = body(pdf, offset, id)?;
    let keyword = find(body, b"stream")?;
    let dict = parse(id, &body[..keyword])?.as_dict().ok()?.clone();
    if dict.has(b"Filter") || dict.has(b"DecodeParms") {
        return None;
    }
    let length = usize::try_from(dict.get(b"Length").ok()?.as_i64().ok()?).ok()?;
    let mut start = keyword + b"stream".len();
    if body.get(start) == Some(&b'\r') {
        start += 1;
    }
    if body.get(start) != Some(&b'\n') {
        return None;
    }
    start += 1;
    let content = body.get(start..start.checked_add(length)?)?;
    Some((dict, content))
}

/// Object number → its offset and generation.
type Offsets = HashMap<u32, (usize, u16)>;

/// Every object's offset and generation (the newest section's entry wins) and the newest
/// trailer, following `/Prev`.
fn table(pdf: &[u8], start: usize) -> Option<(Offsets, Dictionary)> {
    let mut offsets = HashMap::new();
    let mut newest: Option<Dictionary> = None;
    let mut seen = HashSet::new();
    let mut at = start;
    while seen.insert(at) {
        let section = pdf.get(at..)?;
        let rest = section.strip_prefix(b"xref")?;
        let trailer_at = find(rest, b"trailer")?;
        let entries = std::str::from_utf8(&rest[..trailer_at]).ok()?;
        let mut number = 0u32;
        for line in entries.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [] => {}
                [first, _count] => number = first.parse().ok()?,
                [offset, generation, kind] => {
                    if *kind == "n" {
                        offsets
                            .entry(number)
                            .or_insert((offset.parse().ok()?, generation.parse().ok()?));
                    }
                    number = number.checked_add(1)?;
                }
                _ => return None,
            }
        }
        let after = &rest[trailer_at + b"trailer".len()..];
        let dict = &after[..find(after, b"startxref")?];
        let trailer = parse((1, 0), dict)?.as_dict().ok()?.clone();
        let previous = trailer.get(b"Prev").ok().and_then(|p| p.as_i64().ok());
        newest.get_or_insert(trailer);
        match previous {
            Some(prev) => at = usize::try_from(prev).ok()?,
            None => break,
        }
    }
    Some((offsets, newest?))
}

/// The bytes between `N G obj` at `offset` and its `endobj`.
fn body(pdf: &[u8], offset: usize, id: ObjectId) -> Option<&[u8]> {
    let head = format!("{} {} obj", id.0, id.1);
    let from = pdf.get(offset..)?.strip_prefix(head.as_bytes())?;
    Some(&from[..find(from, b"endobj")?])
}

/// One object parsed from its body (a dictionary or array here, never a stream), by having
/// `lopdf` read a one-object file.
fn parse(id: ObjectId, body: &[u8]) -> Option<Object> {
    let mut file = b"%PDF-1.7\n".to_vec();
    let offset = file.len();
    file.extend_from_slice(format!("{} {} obj\n", id.0, id.1).as_bytes());
    file.extend_from_slice(body);
    file.extend_from_slice(b"\nendobj\n");
    let xref = file.len();
    file.extend_from_slice(
        format!(
            "xref\n{} 1\n{offset:010} {:05} n\r\ntrailer\n<</Size {}>>\nstartxref\n{xref}\n%%EOF\n",
            id.0,
            id.1,
            id.0 + 1
        )
        .as_bytes(),
    );
    let mut objects: BTreeMap<ObjectId, Object> = Document::load_mem(&file).ok()?.objects;
    objects.remove(&id)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_invoice_and_its_signed_update_are_read_through_the_table() {
        let pdf = include_bytes!("../benches/invoice-5-pages.pdf");
        let original = read(pdf).expect("a classic table");
        let whole = Document::load_mem(pdf).unwrap();
        assert_eq!(
            Some(&Object::Reference(original.root)),
            whole.trailer.get(b"Root").ok()
        );
        assert_eq!(
            &original.catalog,
            whole.get_dictionary(original.root).unwrap()
        );
        assert_eq!(Some(&original.page), whole.get_pages().get(&1));
        assert_eq!(
            &original.page_dict,
            whole.get_dictionary(original.page).unwrap()
        );

        // The update's own section is read too, the newest entries winning.
        let chain = vec![include_bytes!("../tests/fixtures/signer.der").to_vec()];
        let signed = crate::prepare(pdf, &chain, &crate::Details::default(), 4096)
            .unwrap()
            .finish(&[0x30, 0x00], None)
            .unwrap();
        let updated = read(&signed).expect("our update's table");
        assert!(updated.catalog.has(b"AcroForm"));
        assert!(updated.next_id > original.next_id);
    }

    #[test]
    fn anything_else_falls_back() {
        assert!(read(b"%PDF-1.7\nnot a table\nstartxref\n9\n%%EOF").is_none());
        assert!(read(b"").is_none());
    }
}
