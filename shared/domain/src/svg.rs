//! What an SVG asset may hold: a picture and nothing that acts. An SVG is XML that a browser
//! runs as a document when an HTML template embeds it in an `<object>` or `<iframe>`, so a
//! script, an event handler, a `javascript:` link, an embedded HTML document or a style sheet
//! that loads from elsewhere would run or call out there. The document is parsed as XML (with
//! the parser Typst's SVG support uses) and every element, attribute, processing instruction
//! and style is held against an allow-list: what is not known to be inert is refused, naming
//! what was found and where, so the merchant can fix the file.

use roxmltree::{Document, Node, ParsingOptions};

const SVG_NS: &str = "http://www.w3.org/2000/svg";
const XLINK_NS: &str = "http://www.w3.org/1999/xlink";

/// Namespaces whose elements editors write as metadata (Inkscape, Sodipodi, RDF, Dublin Core,
/// Creative Commons): no browser renders or runs them.
const METADATA_NS: [&str; 7] = [
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "http://purl.org/dc/elements/1.1/",
    "http://purl.org/dc/terms/",
    "http://creativecommons.org/ns#",
    "http://web.resource.org/cc/",
    "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    "http://www.inkscape.org/namespaces/inkscape",
];

/// The SVG elements that draw, group, define paint or describe: SVG 1.1 and 2 without
/// `script`, `foreignObject`, `handler`/`listener` (SVG Tiny), `iframe`/`video`/`audio`/
/// `canvas` (SVG 2 embeds) and the old `font`/`cursor` machinery.
const SVG_ELEMENTS: [&str; 62] = [
    "a",
    "animate",
    "animateMotion",
    "animateTransform",
    "circle",
    "clipPath",
    "defs",
    "desc",
    "ellipse",
    "feBlend",
    "feColorMatrix",
    "feComponentTransfer",
    "feComposite",
    "feConvolveMatrix",
    "feDiffuseLighting",
    "feDisplacementMap",
    "feDistantLight",
    "feDropShadow",
    "feFlood",
    "feFuncA",
    "feFuncB",
    "feFuncG",
    "feFuncR",
    "feGaussianBlur",
    "feImage",
    "feMerge",
    "feMergeNode",
    "feMorphology",
    "feOffset",
    "fePointLight",
    "feSpecularLighting",
    "feSpotLight",
    "feTile",
    "feTurbulence",
    "filter",
    "g",
    "image",
    "line",
    "linearGradient",
    "marker",
    "mask",
    "metadata",
    "mpath",
    "path",
    "pattern",
    "polygon",
    "polyline",
    "radialGradient",
    "rect",
    "set",
    "solidcolor",
    "stop",
    "style",
    "svg",
    "switch",
    "symbol",
    "text",
    "textPath",
    "title",
    "tspan",
    "use",
    "view",
];

/// Image types a link may carry inline (`data:` URIs): pictures that run nothing.
const INLINE_IMAGES: [&str; 4] = [
    "data:image/png;",
    "data:image/jpeg;",
    "data:image/gif;",
    "data:image/webp;",
];

/// Most XML nodes an SVG may have (a 4 MiB upload of empty elements has about 400 000).
const MAX_NODES: u32 = 1_000_000;

/// `Ok` when `text` is an SVG picture with nothing active in it; otherwise what was found
/// first, with its line.
pub fn check(text: &str) -> Result<(), String> {
    let options = ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let document = Document::parse_with_options(text, options)
        .map_err(|e| format!("the SVG is not well-formed XML: {e}"))?;
    for node in document.root().descendants() {
        if let Some(problem) = problem(&node) {
            let line = document.text_pos_at(node.range().start).row;
            return Err(format!(
                "the SVG contains active content, which is not allowed: {problem} (line {line})"
            ));
        }
    }
    Ok(())
}

/// What makes `node` active, if anything.
fn problem(node: &Node) -> Option<String> {
    if let Some(pi) = node.pi() {
        return Some(format!("processing instruction <?{}?>", pi.target));
    }
    if !node.is_element() {
        return None;
    }
    let tag = node.tag_name();
    let name = tag.name();
    match tag.namespace() {
        // No namespace: a browser does not treat it as SVG, but Typst might; judged the same.
        None | Some(SVG_NS) if !SVG_ELEMENTS.contains(&name) => {
            return Some(format!("element <{name}>"));
        }
        None | Some(SVG_NS) => {}
        Some(ns) if METADATA_NS.contains(&ns) => {}
        Some(ns) => return Some(format!("element <{name}> in namespace {ns}")),
    }
    if name == "style" {
        let css: String = node.children().filter_map(|child| child.text()).collect();
        if let Some(found) = css_problem(&css) {
            return Some(format!("<style> {found}"));
        }
    }
    if matches!(name, "set" | "animate") {
        let target = node.attribute("attributeName").unwrap_or_default();
        if is_link_attribute(target) || target.to_ascii_lowercase().starts_with("on") {
            return Some(format!("<{name}> changing attribute {target}"));
        }
    }
    node.attributes().find_map(|attribute| {
        attribute_problem(attribute.name(), attribute.namespace(), attribute.value())
    })
}

fn attribute_problem(name: &str, namespace: Option<&str>, value: &str) -> Option<String> {
    if name.to_ascii_lowercase().starts_with("on") {
        return Some(format!("event handler attribute {name}"));
    }
    if has_script_url(value) {
        return Some(format!("a javascript: URL in attribute {name}"));
    }
    let link = is_link_attribute(name) || namespace == Some(XLINK_NS) && name == "href";
    if link && !is_inert_link(value) {
        return Some(format!(
            "attribute {name}=\"{}\" (only #fragment links and inline PNG, JPEG, GIF or WebP images are allowed)",
            value.chars().take(60).collect::<String>()
        ));
    }
    if name == "style" {
        if let Some(found) = css_problem(value) {
            return Some(format!("style attribute {found}"));
        }
    }
    None
}

fn is_link_attribute(name: &str) -> bool {
    matches!(name, "href" | "xlink:href" | "src")
}

/// A link to a fragment of this document, or an inline picture.
fn is_inert_link(value: &str) -> bool {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    value.starts_with('#') || INLINE_IMAGES.iter().any(|prefix| lower.starts_with(prefix))
}

/// `javascript:` (or `vbscript:`) however it is spelt: browsers ignore whitespace and control
/// characters inside the scheme and its case.
fn has_script_url(value: &str) -> bool {
    let squeezed: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .flat_map(char::to_lowercase)
        .collect();
    squeezed.contains("javascript:") || squeezed.contains("vbscript:")
}

/// Style that loads from elsewhere or runs: `@import`, `url()` to anything but a fragment or
/// an inline picture, `expression()`, bindings.
fn css_problem(css: &str) -> Option<String> {
    let lower: String = css
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    for forbidden in ["@import", "expression(", "binding:", "behavior:"] {
        if lower.contains(forbidden) {
            return Some(format!("uses {forbidden}"));
        }
    }
    let mut rest = lower.as_str();
    while let Some(start) = rest.find("url(") {
        rest = &rest[start + 4..];
        let target = rest.trim_start_matches(['"', '\'']);
        if !is_inert_link(target) {
            let shown: String = target.chars().take(40).collect();
            return Some(format!("loads url({shown}…)"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svg(body: &str) -> String {
        format!(
            r###"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="10" height="10">{body}</svg>"###
        )
    }

    #[track_caller]
    fn refused(text: &str, expected: &str) {
        let err = check(text).expect_err(text);
        assert!(err.contains(expected), "{err} — expected {expected}");
        assert!(
            err.contains("active content") || err.contains("well-formed"),
            "{err}"
        );
    }

    #[test]
    fn pictures_pass() {
        check(&svg(r###"<defs><linearGradient id="g"><stop offset="0" stop-color="red"/></linearGradient></defs>
            <rect width="10" height="10" fill="url(#g)" style="fill: url('#g'); opacity: .5"/>
            <use href="#g"/><use xlink:href="#g"/>
            <image href="data:image/png;base64,iVBORw0KGgo=" width="1" height="1"/>
            <text x="1" y="9">Invoice <tspan>№ 1</tspan></text>
            <a href="#top"><circle r="2"/></a>
            <animateTransform attributeName="transform" type="rotate" from="0" to="90" dur="1s"/>
            <style>rect { fill: #000 } .x { stroke: url(#g) }</style>"###))
        .unwrap();
        // What an editor writes around a picture.
        check(r###"<?xml version="1.0" encoding="UTF-8"?>
            <!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
            <svg xmlns="http://www.w3.org/2000/svg" xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
                 xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"
                 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:dc="http://purl.org/dc/elements/1.1/"
                 inkscape:version="1.3" sodipodi:docname="logo.svg">
              <sodipodi:namedview id="base"/>
              <metadata><rdf:RDF><dc:title>Logo</dc:title></rdf:RDF></metadata>
              <g inkscape:label="Layer 1"><path d="M0 0h10v10z"/></g>
            </svg>"###)
        .unwrap();
    }

    #[test]
    fn scripts_are_refused_in_any_spelling() {
        refused(&svg("<script>alert(1)</script>"), "element <script>");
        refused(
            r###"<svg xmlns="http://www.w3.org/2000/svg"><s:script xmlns:s="http://www.w3.org/2000/svg">alert(1)</s:script></svg>"###,
            "element <script>",
        );
        refused(
            &svg(r###"<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>"###),
            "namespace http://www.w3.org/1999/xhtml",
        );
        refused(&svg("<handler>x</handler>"), "element <handler>");
        refused(
            &svg("<![CDATA[x]]><Script>alert(1)</Script>"),
            "element <Script>",
        );
    }

    #[test]
    fn event_handlers_are_refused() {
        refused(
            r###"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"###,
            "event handler attribute onload",
        );
        refused(
            &svg(r###"<rect ONCLICK="x"/>"###),
            "event handler attribute ONCLICK",
        );
        refused(
            &svg(r###"<set attributeName="onmouseover" to="alert(1)"/>"###),
            "<set> changing attribute onmouseover",
        );
    }

    #[test]
    fn embedded_documents_and_script_links_are_refused() {
        refused(
            &svg(
                r###"<foreignObject width="10" height="10"><iframe xmlns="http://www.w3.org/1999/xhtml" src="javascript:alert(1)"/></foreignObject>"###,
            ),
            "element <foreignObject>",
        );
        refused(
            &svg(r###"<a href="javascript:alert(1)"><rect/></a>"###),
            "javascript:",
        );
        refused(
            &svg(r###"<a xlink:href="&#x6A;ava&#9;script:alert(1)"><rect/></a>"###),
            "javascript:",
        );
        refused(
            &svg(r###"<animate attributeName="href" values="javascript:alert(1)"/>"###),
            "<animate> changing attribute href",
        );
        refused(
            &svg(r###"<animate attributeName="fill" values="javascript:alert(1)"/>"###),
            "javascript:",
        );
        refused(
            &svg(
                r###"<a href="#x"><animate attributeName="href" to="https://evil.example"/></a>"###,
            ),
            "<animate> changing attribute href",
        );
        refused(
            &svg(r###"<use href="data:image/svg+xml;base64,PHN2Zz4="/>"###),
            "attribute href",
        );
        refused(
            &svg(r###"<image href="https://tracker.example/p.png"/>"###),
            "attribute href",
        );
        refused(
            r###"<?xml-stylesheet type="text/xsl" href="data:text/xml,x"?><svg xmlns="http://www.w3.org/2000/svg"/>"###,
            "processing instruction <?xml-stylesheet?>",
        );
        refused(
            &svg(r###"<math xmlns="http://www.w3.org/1998/Math/MathML"/>"###),
            "namespace http://www.w3.org/1998/Math/MathML",
        );
    }

    #[test]
    fn styles_that_load_or_run_are_refused() {
        refused(
            &svg("<style>@import url(https://evil.example/x.css);</style>"),
            "@import",
        );
        refused(
            &svg(r###"<rect style="fill: url( 'https://evil.example/p' )"/>"###),
            "loads url(https://evil.example",
        );
        refused(
            &svg(r###"<rect style="background:url(javascript:alert(1))"/>"###),
            "javascript:",
        );
        refused(
            &svg("<style>* { -moz-binding: url(#x) }</style>"),
            "binding:",
        );
    }

    #[test]
    fn broken_xml_is_refused_with_its_reason() {
        let err = check("<svg xmlns=\"http://www.w3.org/2000/svg\"><rect></svg>").unwrap_err();
        assert!(err.contains("not well-formed"), "{err}");
        let deep = format!("{}{}", "<g>".repeat(5000), "</g>".repeat(5000));
        // Deep nesting is parsed without recursion; it is a picture (if a silly one) or refused.
        let _ = check(&svg(&deep));
        assert!(check(&format!("<svg>{}</svg>", "<g/>".repeat(2000))).is_ok());
    }
}
