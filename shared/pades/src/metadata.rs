//! The document's XMP metadata replaced by an incremental update (a new metadata stream and
//! the catalog pointing at it), before any signature: how a PDF gets XMP properties its
//! renderer cannot write (Factur-X's). The rendered bytes stay as they were, in front.

use lopdf::{Document, Object};

use crate::pdf::{read_original, write_object, write_xref_and_trailer, PdfError};

/// The catalog's current XMP packet (decoded), if it has one.
pub fn read(pdf: &[u8]) -> Result<Option<Vec<u8>>, PdfError> {
    let unreadable = |e: lopdf::Error| PdfError::Unreadable(e.to_string());
    let original = read_original(pdf, false)?;
    let Ok(Object::Reference(id)) = original.catalog.get(b"Metadata") else {
        return Ok(None);
    };
    // PDF/A's metadata is an unfiltered stream: read it alone, without parsing the file.
    if let Some((_, content)) = crate::xref::plain_stream(pdf, *id) {
        return Ok(Some(content.to_vec()));
    }
    let doc = Document::load_mem(pdf).map_err(unreadable)?;
    let stream = doc
        .get_object(*id)
        .and_then(Object::as_stream)
        .map_err(unreadable)?;
    let bytes = if stream.dict.has(b"Filter") {
        stream.decompressed_content().map_err(unreadable)?
    } else {
        stream.content.clone()
    };
    Ok(Some(bytes))
}

/// `pdf` with an update whose catalog's `/Metadata` is `xmp` (an uncompressed stream, as
/// PDF/A asks).
pub fn replace(pdf: &[u8], xmp: &[u8]) -> Result<Vec<u8>, PdfError> {
    let original = read_original(pdf, true)?;
    let metadata = (original.next_id, 0);
    let mut catalog = original.catalog.clone();
    catalog.set("Metadata", Object::Reference(metadata));
    let mut out = pdf.to_vec();
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let mut offsets = vec![(metadata, out.len())];
    out.extend_from_slice(
        format!(
            "{} 0 obj\n<</Type/Metadata/Subtype/XML/Length {}>>\nstream\n",
            metadata.0,
            xmp.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(xmp);
    out.extend_from_slice(b"\nendstream\nendobj\n");
    offsets.push((original.root, out.len()));
    write_object(&mut out, original.root, &catalog.into())?;
    write_xref_and_trailer(&mut out, offsets, &original, metadata.0 + 1)?;
    Ok(out)
}

/// The bytes of the file embedded under `name` (an associated file of the catalog's `/AF`,
/// or an entry of its `/EmbeddedFiles` name tree), decoded; `None` when there is none.
pub fn embedded_file(pdf: &[u8], name: &str) -> Result<Option<Vec<u8>>, PdfError> {
    let unreadable = |e: lopdf::Error| PdfError::Unreadable(e.to_string());
    let doc = Document::load_mem(pdf).map_err(unreadable)?;
    let catalog = doc.catalog().map_err(unreadable)?;
    let resolve = |o: &Object| -> Option<Object> {
        match o {
            Object::Reference(id) => doc.get_object(*id).ok().cloned(),
            other => Some(other.clone()),
        }
    };
    let mut specs: Vec<Object> = Vec::new();
    if let Some(Object::Array(list)) = catalog.get(b"AF").ok().and_then(resolve) {
        specs.extend(list.iter().filter_map(resolve));
    }
    // The name tree, its kids followed a few levels down.
    if let Some(Object::Dictionary(names)) = catalog.get(b"Names").ok().and_then(resolve) {
        let mut nodes: Vec<Object> = names
            .get(b"EmbeddedFiles")
            .ok()
            .and_then(resolve)
            .into_iter()
            .collect();
        let mut visited = 0;
        while let Some(Object::Dictionary(node)) = nodes.pop() {
            visited += 1;
            if visited > 256 {
                break;
            }
            if let Some(Object::Array(pairs)) = node.get(b"Names").ok().and_then(resolve) {
                specs.extend(pairs.iter().skip(1).step_by(2).filter_map(resolve));
            }
            if let Some(Object::Array(kids)) = node.get(b"Kids").ok().and_then(resolve) {
                nodes.extend(kids.iter().filter_map(resolve));
            }
        }
    }
    for spec in specs {
        let Object::Dictionary(spec) = spec else {
            continue;
        };
        let file_name = ["UF", "F"]
            .iter()
            .find_map(|k| match spec.get(k.as_bytes()) {
                Ok(Object::String(bytes, _)) => Some(
                    lopdf::decode_text_string(&Object::String(
                        bytes.clone(),
                        lopdf::StringFormat::Literal,
                    ))
                    .unwrap_or_default(),
                ),
                _ => None,
            });
        if file_name.as_deref() != Some(name) {
            continue;
        }
        let Some(Object::Dictionary(ef)) = spec.get(b"EF").ok().and_then(resolve) else {
            continue;
        };
        let Some(Object::Stream(stream)) = ef.get(b"F").ok().and_then(resolve) else {
            continue;
        };
        let bytes = if stream.dict.has(b"Filter") {
            stream.decompressed_content().map_err(unreadable)?
        } else {
            stream.content.clone()
        };
        return Ok(Some(bytes));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packet_is_replaced_by_an_update_and_read_back() {
        let pdf = include_bytes!("../benches/invoice-5-pages.pdf");
        let packet = read(pdf).unwrap().expect("a Typst PDF/A has XMP");
        let text = String::from_utf8(packet).unwrap();
        assert!(text.contains("<x:xmpmeta"), "{text}");
        let changed = text.replace("</rdf:RDF>", "<rdf:Description rdf:about=\"\"/></rdf:RDF>");
        let updated = replace(pdf, changed.as_bytes()).unwrap();
        assert!(updated.starts_with(pdf), "the render's bytes stay in front");
        assert_eq!(read(&updated).unwrap().unwrap(), changed.as_bytes());
        // lopdf reads the updated file as a whole, and it has no embedded file.
        Document::load_mem(&updated).unwrap();
        assert_eq!(embedded_file(&updated, "factur-x.xml").unwrap(), None);
    }
}
