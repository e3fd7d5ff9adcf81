//! The update a signature appends, read back: the original bytes untouched, a `/ByteRange`
//! that covers everything but the `/Contents` string, the signature field and form, and a
//! CMS SignedData with the PAdES signed attributes (no signing-time).

use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use docbundle_pades::{prepare, Details};

/// A minimal one-page PDF with a classic cross-reference table.
fn minimal_pdf() -> Vec<u8> {
    let objects = [
        "<</Type/Catalog/Pages 2 0 R>>",
        "<</Type/Pages/Kids[3 0 R]/Count 1>>",
        "<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]/Annots[]>>",
    ];
    let mut pdf = b"%PDF-1.7\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(b"xref\n0 4\n0000000000 65535 f\r\n");
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n\r\n").as_bytes());
    }
    pdf.extend_from_slice(
        format!("trailer\n<</Size 4/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    pdf
}

fn chain() -> Vec<Vec<u8>> {
    vec![include_bytes!("fixtures/signer.der").to_vec()]
}

fn byte_range(pdf: &[u8]) -> [usize; 4] {
    let text = String::from_utf8_lossy(pdf);
    let at = text.rfind("/ByteRange[").unwrap() + "/ByteRange[".len();
    let end = at + text[at..].find(']').unwrap();
    let numbers: Vec<usize> = text[at..end]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    [numbers[0], numbers[1], numbers[2], numbers[3]]
}

#[test]
fn the_update_is_appended_and_the_byte_range_spans_all_but_the_contents() {
    let original = minimal_pdf();
    let details = Details {
        reason: Some("Invoice — März".into()),
        ..Details::default()
    };
    let prepared = prepare(&original, &chain(), &details, 4096).unwrap();
    assert_eq!(prepared.signer(), "O=docbundle tests,CN=Test Signer");
    let digest = prepared.digest();
    let signed = prepared
        .finish(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01], None)
        .unwrap();

    assert_eq!(&signed[..original.len()], original.as_slice());
    let [start, first, second, rest] = byte_range(&signed);
    assert_eq!(start, 0);
    assert_eq!(second + rest, signed.len());
    assert_eq!(signed[first], b'<');
    assert_eq!(signed[second - 1], b'>');
    assert_eq!(second - first, 2 + 2 * 4096);

    let doc = lopdf::Document::load_mem(&signed).unwrap();
    let catalog = doc.catalog().unwrap();
    let form = catalog.get(b"AcroForm").unwrap().as_dict().unwrap();
    assert_eq!(form.get(b"SigFlags").unwrap().as_i64().unwrap(), 3);
    let page = doc.get_pages()[&1];
    let annots = doc
        .get_dictionary(page)
        .unwrap()
        .get(b"Annots")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(annots.len(), 1);
    let widget = doc
        .get_dictionary(annots[0].as_reference().unwrap())
        .unwrap();
    let sig = doc
        .get_dictionary(widget.get(b"V").unwrap().as_reference().unwrap())
        .unwrap();
    assert_eq!(
        sig.get(b"SubFilter").unwrap().as_name().unwrap(),
        b"ETSI.CAdES.detached"
    );

    // The CMS in /Contents: one signer, the PAdES signed attributes, the signature given.
    let hex = std::str::from_utf8(&signed[first + 1..second - 1])
        .unwrap()
        .trim_end_matches('0');
    let der = hex::decode(if hex.len() % 2 == 1 {
        format!("{hex}0")
    } else {
        hex.to_owned()
    })
    .unwrap();
    let info = ContentInfo::from_der(&der).unwrap();
    let data: SignedData = info.content.decode_as().unwrap();
    let signer = &data.signer_infos.0.as_slice()[0];
    let oids: Vec<String> = signer
        .signed_attrs
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.oid.to_string())
        .collect();
    assert!(oids.contains(&"1.2.840.113549.1.9.3".to_owned()));
    assert!(oids.contains(&"1.2.840.113549.1.9.4".to_owned()));
    assert!(oids.contains(&"1.2.840.113549.1.9.16.2.47".to_owned()));
    assert!(
        !oids.contains(&"1.2.840.113549.1.9.5".to_owned()),
        "no signing-time"
    );
    assert!(signer.unsigned_attrs.is_none());
    // What was signed is the digest of these attributes.
    let attrs = signer.signed_attrs.as_ref().unwrap().to_der().unwrap();
    use sha2::Digest;
    assert_eq!(sha2::Sha256::digest(attrs).as_slice(), digest.as_slice());
}

#[test]
fn a_signature_too_large_for_its_room_is_refused_and_a_signed_pdf_is_not_signed_twice() {
    let prepared = prepare(&minimal_pdf(), &chain(), &Details::default(), 600).unwrap();
    assert!(prepared.finish(&[0u8; 64], None).is_err());
    let signed = prepare(&minimal_pdf(), &chain(), &Details::default(), 4096)
        .unwrap()
        .finish(&[0x30, 0x00], None)
        .unwrap();
    assert!(prepare(&signed, &chain(), &Details::default(), 4096).is_err());
    assert!(prepare(b"not a pdf", &chain(), &Details::default(), 4096).is_err());
}
