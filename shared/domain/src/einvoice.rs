//! A document's e-invoice declaration (`documents[i].einvoice`): the standard and profile the
//! document conforms to, and for a hybrid PDF the `xml` document of the same configuration it
//! carries as `factur-x.xml`. Checked at save; the rules themselves run on every render.

use serde::{Deserialize, Serialize};

use crate::document::DocumentFormat;
use crate::FieldError;

/// The e-invoice standards a document may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EinvoiceStandard {
    /// Factur-X 1.0 / ZUGFeRD 2.x: a PDF/A-3 carrying the UN/CEFACT CII XML.
    #[serde(rename = "factur-x")]
    #[schema(rename = "factur-x")]
    FacturX,
    /// XRechnung (the German CIUS of EN 16931) as UN/CEFACT CII XML alone: what German
    /// public-sector receivers take.
    #[serde(rename = "xrechnung")]
    #[schema(rename = "xrechnung")]
    XRechnung,
}

impl EinvoiceStandard {
    pub const fn as_str(self) -> &'static str {
        match self {
            EinvoiceStandard::FacturX => "factur-x",
            EinvoiceStandard::XRechnung => "xrechnung",
        }
    }
}

/// The profiles: Factur-X's conformance levels, from the smallest to the richest, and the
/// XRechnung version (`3.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EinvoiceProfile {
    #[serde(rename = "MINIMUM")]
    #[schema(rename = "MINIMUM")]
    Minimum,
    #[serde(rename = "BASIC WL")]
    #[schema(rename = "BASIC WL")]
    BasicWl,
    #[serde(rename = "BASIC")]
    #[schema(rename = "BASIC")]
    Basic,
    #[serde(rename = "EN 16931")]
    #[schema(rename = "EN 16931")]
    En16931,
    #[serde(rename = "EXTENDED")]
    #[schema(rename = "EXTENDED")]
    Extended,
    /// XRechnung 3.0.
    #[serde(rename = "3.0")]
    #[schema(rename = "3.0")]
    XRechnung30,
}

impl EinvoiceProfile {
    pub const ALL: [EinvoiceProfile; 6] = [
        EinvoiceProfile::Minimum,
        EinvoiceProfile::BasicWl,
        EinvoiceProfile::Basic,
        EinvoiceProfile::En16931,
        EinvoiceProfile::Extended,
        EinvoiceProfile::XRechnung30,
    ];

    /// The Factur-X levels.
    pub const FACTUR_X: [EinvoiceProfile; 5] = [
        EinvoiceProfile::Minimum,
        EinvoiceProfile::BasicWl,
        EinvoiceProfile::Basic,
        EinvoiceProfile::En16931,
        EinvoiceProfile::Extended,
    ];

    /// The standard the profile belongs to.
    pub const fn standard(self) -> EinvoiceStandard {
        match self {
            EinvoiceProfile::XRechnung30 => EinvoiceStandard::XRechnung,
            _ => EinvoiceStandard::FacturX,
        }
    }

    /// As a person names it: `Factur-X EN 16931`, `XRechnung 3.0`.
    pub fn label(self) -> String {
        match self {
            EinvoiceProfile::XRechnung30 => format!("XRechnung {}", self.as_str()),
            _ => format!("Factur-X {}", self.as_str()),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            EinvoiceProfile::Minimum => "MINIMUM",
            EinvoiceProfile::BasicWl => "BASIC WL",
            EinvoiceProfile::Basic => "BASIC",
            EinvoiceProfile::En16931 => "EN 16931",
            EinvoiceProfile::Extended => "EXTENDED",
            EinvoiceProfile::XRechnung30 => "3.0",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// `documents[i].einvoice` as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EinvoiceBody {
    #[schema(value_type = EinvoiceStandard)]
    pub standard: String,
    /// Factur-X: the level (required). XRechnung: the version, `3.0` (the default).
    #[serde(default)]
    #[schema(value_type = Option<EinvoiceProfile>)]
    pub profile: Option<String>,
    /// A Factur-X PDF only: the name of the `xml` document of this configuration the PDF
    /// carries as `factur-x.xml`. Absent on an `xml` document, which is then checked as an
    /// e-invoice of the profile on its own (an XRechnung is always such an `xml` document).
    #[serde(default)]
    #[schema(value_type = Option<crate::document::DocumentName>)]
    pub xml: Option<String>,
}

/// A document's e-invoice declaration as stored with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EinvoiceSpec {
    pub standard: EinvoiceStandard,
    pub profile: EinvoiceProfile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xml: Option<String>,
}

/// The PDF standards a Factur-X PDF may have: PDF/A-3, the part that allows embedded files.
pub const PDF_A3: [&str; 3] = ["a-3b", "a-3u", "a-3a"];

/// Checks one document's declaration (`format` is the document's); adds every problem.
pub fn check(
    body: EinvoiceBody,
    format: DocumentFormat,
    pdf_standard: Option<&str>,
    field: impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<EinvoiceSpec> {
    let standard = match body.standard.as_str() {
        "factur-x" => Some(EinvoiceStandard::FacturX),
        "xrechnung" => Some(EinvoiceStandard::XRechnung),
        _ => {
            errors.push(FieldError::new(
                field("standard"),
                "must be factur-x or xrechnung",
            ));
            None
        }
    };
    let profile = match (standard, body.profile.as_deref()) {
        (Some(EinvoiceStandard::XRechnung), None) => Some(EinvoiceProfile::XRechnung30),
        (Some(EinvoiceStandard::XRechnung), Some(p)) => {
            let profile =
                EinvoiceProfile::parse(p).filter(|p| p.standard() == EinvoiceStandard::XRechnung);
            if profile.is_none() {
                errors.push(FieldError::new(
                    field("profile"),
                    "an XRechnung's profile is its version: 3.0",
                ));
            }
            profile
        }
        (_, p) => {
            let profile = p
                .and_then(EinvoiceProfile::parse)
                .filter(|p| p.standard() == EinvoiceStandard::FacturX);
            if profile.is_none() {
                let names: Vec<&str> = EinvoiceProfile::FACTUR_X
                    .iter()
                    .map(|p| p.as_str())
                    .collect();
                errors.push(FieldError::new(
                    field("profile"),
                    format!("must be one of {}", names.join(", ")),
                ));
            }
            profile
        }
    };
    if standard == Some(EinvoiceStandard::XRechnung) && format != DocumentFormat::Xml {
        errors.push(FieldError::new(
            field("standard"),
            "an XRechnung is the XML alone: declare it on an xml document (a PDF may carry it as Factur-X)",
        ));
        return None;
    }
    match (format, &body.xml) {
        (DocumentFormat::Pdf, None) => errors.push(FieldError::new(
            field("xml"),
            "a PDF e-invoice names the xml document it carries",
        )),
        (DocumentFormat::Pdf, Some(_)) => {
            if !pdf_standard.is_some_and(|s| PDF_A3.contains(&s)) {
                errors.push(FieldError::new(
                    field("standard"),
                    format!(
                        "a Factur-X PDF is PDF/A-3: set the document's pdfStandard to one of {}",
                        PDF_A3.join(", ")
                    ),
                ));
            }
        }
        (DocumentFormat::Xml, None) => {}
        (DocumentFormat::Xml, Some(_)) => errors.push(FieldError::new(
            field("xml"),
            "applies to pdf documents only (an xml document is the invoice itself)",
        )),
        _ => errors.push(FieldError::new(
            field("standard"),
            "applies to pdf and xml documents only",
        )),
    }
    Some(EinvoiceSpec {
        standard: standard?,
        profile: profile?,
        xml: body.xml,
    })
}

/// Every PDF e-invoice's `xml` names an `xml` document of the same configuration.
pub fn check_references(
    documents: &[crate::configuration::DocumentSpec],
    errors: &mut Vec<FieldError>,
) {
    for (i, doc) in documents.iter().enumerate() {
        let Some(xml) = doc.einvoice.as_ref().and_then(|e| e.xml.as_deref()) else {
            continue;
        };
        match documents.iter().find(|d| d.name == xml) {
            Some(d) if d.format == DocumentFormat::Xml => {}
            Some(_) => errors.push(FieldError::new(
                format!("documents[{i}].einvoice.xml"),
                format!("`{xml}` is not an xml document"),
            )),
            None => errors.push(FieldError::new(
                format!("documents[{i}].einvoice.xml"),
                format!("no document of this configuration is named `{xml}`"),
            )),
        }
    }
}
