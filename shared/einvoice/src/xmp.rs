//! The Factur-X XMP properties and their PDF/A extension schema declaration, added to the XMP
//! packet a PDF/A renderer wrote (which has no way to add custom properties itself).

use crate::Profile;

/// The Factur-X XMP namespace.
pub const FX_NAMESPACE: &str = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#";

/// The name the XML is embedded under.
pub const FILE_NAME: &str = "factur-x.xml";

const PROPERTIES: [(&str, &str); 4] = [
    ("DocumentFileName", "The name of the embedded XML document"),
    (
        "DocumentType",
        "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER",
    ),
    (
        "Version",
        "The actual version of the standard applying to the embedded XML document",
    ),
    (
        "ConformanceLevel",
        "The conformance level of the embedded XML document",
    ),
];

/// The Factur-X properties' `rdf:Description`.
fn properties(profile: Profile) -> String {
    format!(
        "<rdf:Description rdf:about=\"\" xmlns:fx=\"{FX_NAMESPACE}\">\
<fx:DocumentType>INVOICE</fx:DocumentType>\
<fx:DocumentFileName>{FILE_NAME}</fx:DocumentFileName>\
<fx:Version>1.0</fx:Version>\
<fx:ConformanceLevel>{}</fx:ConformanceLevel>\
</rdf:Description>",
        profile.name()
    )
}

/// The declaration of the `fx:` properties as a PDF/A extension schema (one `rdf:li` of
/// `pdfaExtension:schemas`): they are not predefined XMP, so PDF/A asks for it.
fn schema_entry() -> String {
    let mut out = format!(
        "<rdf:li rdf:parseType=\"Resource\">\
<pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>\
<pdfaSchema:namespaceURI>{FX_NAMESPACE}</pdfaSchema:namespaceURI>\
<pdfaSchema:prefix>fx</pdfaSchema:prefix><pdfaSchema:property><rdf:Seq>"
    );
    for (name, description) in PROPERTIES {
        out.push_str(&format!(
            "<rdf:li rdf:parseType=\"Resource\">\
<pdfaProperty:name>{name}</pdfaProperty:name>\
<pdfaProperty:valueType>Text</pdfaProperty:valueType>\
<pdfaProperty:category>external</pdfaProperty:category>\
<pdfaProperty:description>{description}</pdfaProperty:description></rdf:li>"
        ));
    }
    out.push_str("</rdf:Seq></pdfaSchema:property></rdf:li>");
    out
}

const SCHEMAS_BAG: &str = "<pdfaExtension:schemas><rdf:Bag>";

#[derive(Debug, thiserror::Error)]
#[error("the PDF's XMP metadata cannot take the Factur-X properties: {0}")]
pub struct XmpError(&'static str);

/// `packet` (the renderer's XMP) with the Factur-X descriptions added to its `rdf:RDF`.
pub fn with_factur_x(packet: &[u8], profile: Profile) -> Result<Vec<u8>, XmpError> {
    if profile == Profile::XRechnung {
        return Err(XmpError(
            "an XRechnung is the XML alone, not a Factur-X level",
        ));
    }
    let text = std::str::from_utf8(packet).map_err(|_| XmpError("it is not UTF-8"))?;
    if text.contains(FX_NAMESPACE) {
        return Err(XmpError("it has Factur-X properties already"));
    }
    let at = text
        .rfind("</rdf:RDF>")
        .ok_or(XmpError("it has no rdf:RDF"))?;
    let mut out = String::with_capacity(text.len() + 2048);
    // The schema joins the packet's own list of extension schemas when it has one (a
    // property may appear once), else comes in a description of its own.
    match text.find(SCHEMAS_BAG) {
        Some(bag) if bag < at => {
            let after = bag + SCHEMAS_BAG.len();
            out.push_str(&text[..after]);
            out.push_str(&schema_entry());
            out.push_str(&text[after..at]);
            out.push_str(&properties(profile));
        }
        _ => {
            out.push_str(&text[..at]);
            out.push_str(&properties(profile));
            out.push_str(
                "<rdf:Description rdf:about=\"\" \
xmlns:pdfaExtension=\"http://www.aiim.org/pdfa/ns/extension/\" \
xmlns:pdfaSchema=\"http://www.aiim.org/pdfa/ns/schema#\" \
xmlns:pdfaProperty=\"http://www.aiim.org/pdfa/ns/property#\">",
            );
            out.push_str(SCHEMAS_BAG);
            out.push_str(&schema_entry());
            out.push_str("</rdf:Bag></pdfaExtension:schemas></rdf:Description>");
        }
    }
    out.push_str(&text[at..]);
    // Well-formed before and after.
    roxmltree::Document::parse(&out).map_err(|_| XmpError("the result is not well-formed"))?;
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_properties_join_the_packet() {
        let packet = br#"<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"><pdfaid:part>3</pdfaid:part></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>"#;
        let out = String::from_utf8(with_factur_x(packet, Profile::En16931).unwrap()).unwrap();
        assert!(out.contains("<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>"));
        assert!(out.contains("<pdfaid:part>3</pdfaid:part>"));
        assert!(out.ends_with("<?xpacket end=\"w\"?>"));
        assert!(
            with_factur_x(out.as_bytes(), Profile::En16931).is_err(),
            "only once"
        );
    }
}
