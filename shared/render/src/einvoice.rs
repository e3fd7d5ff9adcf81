//! E-invoices in a bundle: the XML document checked against its profile's XSD and EN 16931
//! rules (and for an XRechnung, KoSIT's) before anything is stored, the PDF rendered as
//! PDF/A-3 carrying it as `factur-x.xml`, and the Factur-X XMP properties written into that
//! PDF before any signature.

use docbundle_domain::configuration::DocumentSpec;
use docbundle_domain::document::DocumentFormat;
use docbundle_domain::einvoice::EinvoiceProfile;

use crate::RenderAttachment;

/// The name the XML is embedded under.
pub const FILE_NAME: &str = "factur-x.xml";

/// Why an XML is not a valid e-invoice: the failed rules' ids, each once, and a message
/// naming them with what each says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EinvoiceInvalid {
    pub rules: Vec<String>,
    pub message: String,
}

/// The order documents render in: e-invoice PDFs after the XML they carry.
pub fn render_order(documents: &[DocumentSpec]) -> Vec<usize> {
    let carries = |d: &DocumentSpec| d.format == DocumentFormat::Pdf && d.einvoice.is_some();
    let mut order: Vec<usize> = (0..documents.len())
        .filter(|&i| !carries(&documents[i]))
        .collect();
    order.extend((0..documents.len()).filter(|&i| carries(&documents[i])));
    order
}

/// The profile whose rules an XML document is checked against: its own declaration's, and
/// the profile of each PDF that carries it.
pub fn profiles_of(documents: &[DocumentSpec], xml: &DocumentSpec) -> Vec<EinvoiceProfile> {
    let mut out = Vec::new();
    if xml.format != DocumentFormat::Xml {
        return out;
    }
    if let Some(e) = &xml.einvoice {
        out.push(e.profile);
    }
    for d in documents {
        if let Some(e) = &d.einvoice {
            if e.xml.as_deref() == Some(xml.name.as_str()) && !out.contains(&e.profile) {
                out.push(e.profile);
            }
        }
    }
    out
}

/// Most findings a message lists.
#[cfg(feature = "render")]
const LISTED: usize = 12;

/// Checks `xml` against the profile's XSD and Schematron rules.
#[cfg(feature = "render")]
pub fn check_xml(profile: EinvoiceProfile, xml: &[u8]) -> Result<(), EinvoiceInvalid> {
    use docbundle_einvoice::{validate, Invalid, Limits};
    let name = profile.label();
    let text = std::str::from_utf8(xml).map_err(|_| EinvoiceInvalid {
        rules: Vec::new(),
        message: format!("the XML is not a {name} invoice: it is not UTF-8"),
    })?;
    match validate(rules_profile(profile), text, &Limits::default()) {
        // Findings of rules published as warnings refuse nothing.
        Ok(_warnings) => Ok(()),
        Err(e @ Invalid::Unreadable(_)) => Err(EinvoiceInvalid {
            rules: Vec::new(),
            message: format!("the XML is not a {name} invoice: {e}"),
        }),
        Err(e @ Invalid::Rules(_)) => {
            let rules = e.rule_ids();
            let Invalid::Rules(findings) = e else {
                unreachable!("matched above")
            };
            let mut listed: Vec<String> = findings
                .iter()
                .take(LISTED)
                .map(|f| {
                    let id = f.rule.as_deref().unwrap_or("report");
                    if f.location.is_empty() {
                        format!("{id}: {}", f.message)
                    } else {
                        format!("{id}: {} (at {})", f.message, f.location)
                    }
                })
                .collect();
            if findings.len() > LISTED {
                listed.push(format!("and {} more", findings.len() - LISTED));
            }
            Err(EinvoiceInvalid {
                message: format!(
                    "the XML breaks {} rule(s) of {name} ({}): {}",
                    rules.len(),
                    rules.join(", "),
                    listed.join("; ")
                ),
                rules,
            })
        }
    }
}

/// Without the `render` feature nothing is rendered, so nothing is checked.
#[cfg(not(feature = "render"))]
pub fn check_xml(profile: EinvoiceProfile, _xml: &[u8]) -> Result<(), EinvoiceInvalid> {
    Err(EinvoiceInvalid {
        rules: Vec::new(),
        message: format!(
            "{} invoices are checked by the functions that render",
            profile.label()
        ),
    })
}

#[cfg(feature = "render")]
fn rules_profile(p: EinvoiceProfile) -> docbundle_einvoice::Profile {
    use docbundle_einvoice::Profile;
    match p {
        EinvoiceProfile::Minimum => Profile::Minimum,
        EinvoiceProfile::BasicWl => Profile::BasicWl,
        EinvoiceProfile::Basic => Profile::Basic,
        EinvoiceProfile::En16931 => Profile::En16931,
        EinvoiceProfile::Extended => Profile::Extended,
        EinvoiceProfile::XRechnung30 => Profile::XRechnung,
    }
}

/// The XML as a PDF carries it: `/AFRelationship /Alternative` from BASIC on (the XML is the
/// invoice), `/Data` for MINIMUM and BASIC WL, which are not complete invoices.
pub fn attachment(profile: EinvoiceProfile, xml: &[u8]) -> RenderAttachment {
    let relationship = match profile {
        EinvoiceProfile::Minimum | EinvoiceProfile::BasicWl => "data",
        _ => "alternative",
    };
    RenderAttachment {
        name: FILE_NAME.to_owned(),
        mime_type: "text/xml".to_owned(),
        relationship: relationship.to_owned(),
        description: format!("Factur-X invoice ({})", profile.as_str()),
        text: String::from_utf8_lossy(xml).into_owned(),
    }
}

/// The rendered PDF with the Factur-X XMP properties and their PDF/A extension schema, in an
/// incremental update (the render's bytes stay in front).
#[cfg(feature = "pdf")]
pub fn finish_pdf(pdf: Vec<u8>, profile: EinvoiceProfile) -> Result<Vec<u8>, String> {
    let packet = docbundle_pades::metadata::read(&pdf)
        .map_err(|e| e.to_string())?
        .ok_or("the PDF has no XMP metadata (is its pdfStandard PDF/A-3?)")?;
    let xmp = docbundle_einvoice::xmp::with_factur_x(&packet, rules_profile(profile))
        .map_err(|e| e.to_string())?;
    docbundle_pades::metadata::replace(&pdf, &xmp).map_err(|e| e.to_string())
}

#[cfg(not(feature = "pdf"))]
pub fn finish_pdf(_pdf: Vec<u8>, _profile: EinvoiceProfile) -> Result<Vec<u8>, String> {
    Err("PDFs are rendered by the functions that render them".into())
}

/// What the manifest says of each e-invoice artefact (by document name): standard, profile
/// and the SHA-256 of its XML (the one a PDF carries, or the XML document's own bytes).
pub fn manifest_entries(
    documents: &[DocumentSpec],
    artefacts: &[crate::bundle::RenderedArtefact],
) -> std::collections::HashMap<String, docbundle_domain::manifest::ArtefactEinvoice> {
    let mut out = std::collections::HashMap::new();
    for doc in documents {
        // A PDF's declaration, an XML's own, or (for the XML a PDF carries) the PDF's.
        let carried = || {
            documents.iter().find_map(|d| {
                let e = d.einvoice.as_ref()?;
                (e.xml.as_deref() == Some(doc.name.as_str())).then_some(e)
            })
        };
        let Some(e) = doc.einvoice.as_ref().or_else(carried) else {
            continue;
        };
        let xml_name = match doc.format {
            DocumentFormat::Pdf => e.xml.as_deref().unwrap_or_default(),
            _ => doc.name.as_str(),
        };
        let Some(xml) = artefacts.iter().find(|a| a.name == xml_name) else {
            continue;
        };
        out.insert(
            doc.name.clone(),
            docbundle_domain::manifest::ArtefactEinvoice {
                standard: e.standard,
                profile: e.profile,
                xml_sha256: docbundle_domain::digest::sha256_hex(&xml.bytes),
            },
        );
    }
    out
}

#[cfg(all(test, feature = "pdf"))]
mod tests {
    use super::*;
    use crate::bundle::{render_bundle, BundleInput};
    use crate::configuration::{validate, Rejection};
    use crate::{RenderLimits, Renderer};
    use docbundle_domain::configuration::{ConfigurationBody, StoredAssets};
    use docbundle_domain::retention::RetentionLimits;
    use serde_json::Value;

    fn sample() -> Value {
        let text = include_str!("../../../events/samples/einvoice-configuration.json");
        serde_json::from_str(text).unwrap()
    }

    fn renderer() -> Renderer {
        Renderer::in_process(RenderLimits::default())
    }

    fn render(
        spec: &docbundle_domain::configuration::ConfigurationSpec,
        seed: &Value,
    ) -> Result<Vec<crate::bundle::RenderedArtefact>, crate::bundle::RenderFailure> {
        render_bundle(
            &BundleInput {
                documents: &spec.documents,
                archive: false,
                data: seed,
                seed_hash: "00",
                configuration_name: &spec.name,
                configuration_version: 1,
                assets: &[],
            },
            &renderer(),
        )
    }

    fn find(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[test]
    fn the_sample_renders_a_factur_x_pdf_carrying_its_valid_xml() {
        let config = sample();
        let body: ConfigurationBody = serde_json::from_value(config.clone()).unwrap();
        let spec = validate(
            body,
            &StoredAssets::new(),
            &renderer(),
            &RetentionLimits::default(),
        )
        .unwrap();
        let seed = config["defaults"].clone();
        let first = render(&spec, &seed).unwrap();
        let pdf = &first
            .iter()
            .find(|a| a.name == "invoice.pdf")
            .unwrap()
            .bytes;
        let xml = &first
            .iter()
            .find(|a| a.name == "factur-x.xml")
            .unwrap()
            .bytes;
        assert!(
            find(pdf, "/AFRelationship /Alternative") || find(pdf, "/AFRelationship/Alternative")
        );
        assert!(find(
            pdf,
            "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>"
        ));
        assert!(find(pdf, "<pdfaid:part>3</pdfaid:part>"));
        check_xml(EinvoiceProfile::En16931, xml).unwrap();
        let entries = manifest_entries(&spec.documents, &first);
        assert_eq!(
            entries["invoice.pdf"].xml_sha256,
            docbundle_domain::digest::sha256_hex(xml)
        );
        // No clock anywhere: the same seed gives the same bytes.
        assert_eq!(render(&spec, &seed).unwrap(), first);
        if let Some(dir) = std::env::var_os("EINVOICE_SAMPLE_OUT") {
            for a in &first {
                std::fs::write(std::path::Path::new(&dir).join(&a.name), &a.bytes).unwrap();
            }
        }
    }

    #[test]
    fn a_wrong_total_or_a_missing_buyer_fails_with_the_rule_ids() {
        let config = sample();
        let body: ConfigurationBody = serde_json::from_value(config.clone()).unwrap();
        let spec = validate(
            body,
            &StoredAssets::new(),
            &renderer(),
            &RetentionLimits::default(),
        )
        .unwrap();
        let mut seed = config["defaults"].clone();
        seed["totals"]["grand"] = serde_json::json!(626.41);
        seed["buyer"]["name"] = serde_json::json!("");
        let failure = render(&spec, &seed).unwrap_err();
        assert_eq!(failure.code, "EINVOICE_INVALID");
        assert_eq!(failure.document, "factur-x.xml");
        for id in ["BR-CO-15", "BR-07"] {
            assert!(failure.message.contains(id), "{id}: {}", failure.message);
        }

        // The same mistakes in the defaults are refused at save, naming the document.
        let mut bad = config.clone();
        bad["defaults"] = seed;
        let body: ConfigurationBody = serde_json::from_value(bad).unwrap();
        let Err(Rejection::Invalid(errors)) = validate(
            body,
            &StoredAssets::new(),
            &renderer(),
            &RetentionLimits::default(),
        ) else {
            panic!("accepted")
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "documents[0]");
        assert!(
            errors[0].message.contains("BR-CO-15"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn declarations_are_checked_at_save() {
        let mut config = sample();
        config["documents"][1]["pdfStandard"] = serde_json::json!("a-2b");
        config["documents"][1]["einvoice"]["xml"] = serde_json::json!("nope.xml");
        config["documents"][0]["einvoice"] =
            serde_json::json!({"standard": "zugferd", "profile": "COMFORT"});
        let body: ConfigurationBody = serde_json::from_value(config).unwrap();
        let Err(Rejection::Invalid(errors)) = validate(
            body,
            &StoredAssets::new(),
            &renderer(),
            &RetentionLimits::default(),
        ) else {
            panic!("accepted")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(
            fields.contains(&"documents[1].einvoice.standard"),
            "{errors:?}"
        );
        assert!(
            fields.contains(&"documents[0].einvoice.standard"),
            "{errors:?}"
        );
        assert!(
            fields.contains(&"documents[0].einvoice.profile"),
            "{errors:?}"
        );
        assert!(fields.contains(&"documents[1].einvoice.xml"), "{errors:?}");
    }
}
