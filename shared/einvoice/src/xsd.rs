//! XML Schema validation for the Factur-X XSDs, read as they ship.
//!
//! The profiles' schemas use a small part of XSD 1.0: global and local element declarations
//! with `minOccurs`/`maxOccurs`, `sequence` and `choice`, complex types with element content or
//! `simpleContent` (extension of a simple type, with attributes), simple types restricting a
//! built-in type, and the built-ins `string`, `token`, `decimal`, `boolean`, `base64Binary`.
//! This module implements exactly that part and refuses to load a schema using anything else,
//! so a construct cannot be ignored unnoticed. The schemas are deterministic (Unique Particle
//! Attribution), so content models are matched greedily, as a validating parser does.

use std::collections::HashMap;

const XS: &str = "http://www.w3.org/2001/XMLSchema";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

type QName = (String, String);

#[derive(Debug, Clone)]
enum TypeRef {
    Named(QName),
    Anonymous(Box<Complex>),
}

#[derive(Debug, Clone)]
enum Particle {
    Element {
        name: QName,
        ty: TypeRef,
        min: usize,
        max: usize,
    },
    Group {
        choice: bool,
        items: Vec<Particle>,
        min: usize,
        max: usize,
    },
}

#[derive(Debug, Clone)]
enum Content {
    Elements(Particle),
    /// The simple type (a built-in's or a named simple type's name).
    Simple(QName),
}

#[derive(Debug, Clone)]
struct Attribute {
    name: String,
    ty: QName,
    required: bool,
}

#[derive(Debug, Clone)]
struct Complex {
    content: Content,
    attributes: Vec<Attribute>,
}

#[derive(Debug, Clone)]
struct Simple {
    base: QName,
    enumeration: Vec<String>,
    /// `minLength` / `maxLength`, in characters (of the whitespace-collapsed value for
    /// tokens).
    min_length: Option<usize>,
    max_length: Option<usize>,
}

/// A profile's schema, all its files loaded.
pub struct Schema {
    elements: HashMap<QName, TypeRef>,
    complex: HashMap<QName, Complex>,
    simple: HashMap<QName, Simple>,
}

#[derive(Debug, thiserror::Error)]
#[error("schema: {0}")]
pub struct SchemaError(String);

fn bad<T>(m: impl Into<String>) -> Result<T, SchemaError> {
    Err(SchemaError(m.into()))
}

fn is_xs(n: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(XS) && n.tag_name().name() == name
}

fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn qname(n: &roxmltree::Node<'_, '_>, value: &str) -> Result<QName, SchemaError> {
    let (prefix, local) = value.split_once(':').unwrap_or(("", value));
    let ns = n
        .lookup_namespace_uri(if prefix.is_empty() {
            None
        } else {
            Some(prefix)
        })
        .unwrap_or("");
    if !prefix.is_empty() && ns.is_empty() {
        return bad(format!("unknown prefix in `{value}`"));
    }
    Ok((ns.to_owned(), local.to_owned()))
}

fn occurs(n: &roxmltree::Node<'_, '_>, name: &str) -> Result<usize, SchemaError> {
    match n.attribute(name) {
        None => Ok(1),
        Some("unbounded") => Ok(usize::MAX),
        Some(v) => v.parse().map_err(|_| SchemaError(format!("{name}=`{v}`"))),
    }
}

const BUILTINS: [&str; 8] = [
    "string",
    "token",
    "decimal",
    "boolean",
    "base64Binary",
    "anyURI",
    "date",
    "dateTime",
];

impl Schema {
    /// Loads the schema from its files (name → text); `main` is the root file.
    pub fn load(files: &[(&str, &str)], main: &str) -> Result<Schema, SchemaError> {
        let mut schema = Schema {
            elements: HashMap::new(),
            complex: HashMap::new(),
            simple: HashMap::new(),
        };
        let mut pending = vec![main.to_owned()];
        let mut done = Vec::new();
        while let Some(name) = pending.pop() {
            if done.contains(&name) {
                continue;
            }
            let Some((_, text)) = files.iter().find(|(n, _)| *n == name) else {
                return bad(format!("`{name}` is not bundled"));
            };
            let doc = roxmltree::Document::parse(text).map_err(|e| SchemaError(e.to_string()))?;
            let root = doc.root_element();
            let target = root.attribute("targetNamespace").unwrap_or("").to_owned();
            if root.attribute("elementFormDefault") != Some("qualified") {
                return bad(format!("`{name}`: elementFormDefault must be qualified"));
            }
            for top in elements(root) {
                let Some(local) = top.attribute("name") else {
                    if is_xs(&top, "import") {
                        if let Some(loc) = top.attribute("schemaLocation") {
                            pending.push(loc.to_owned());
                        }
                        continue;
                    }
                    return bad(format!("`{name}`: unnamed {}", top.tag_name().name()));
                };
                let key = (target.clone(), local.to_owned());
                if is_xs(&top, "element") {
                    schema.elements.insert(key, schema_type_of(&top, &target)?);
                } else if is_xs(&top, "complexType") {
                    schema.complex.insert(key, complex(&top, &target)?);
                } else if is_xs(&top, "simpleType") {
                    schema.simple.insert(key, simple(&top)?);
                } else {
                    return bad(format!(
                        "`{name}`: {} is not supported",
                        top.tag_name().name()
                    ));
                }
            }
            done.push(name);
        }
        schema.check_references()?;
        Ok(schema)
    }

    fn check_references(&self) -> Result<(), SchemaError> {
        let simple_ok = |q: &QName| {
            (q.0 == XS && BUILTINS.contains(&q.1.as_str())) || self.simple.contains_key(q)
        };
        for s in self.simple.values() {
            if !(s.base.0 == XS && BUILTINS.contains(&s.base.1.as_str())) {
                return bad(format!("simple type base `{}` is not supported", s.base.1));
            }
        }
        let mut stack: Vec<&Complex> = self.complex.values().collect();
        for t in self.elements.values() {
            if let TypeRef::Anonymous(c) = t {
                stack.push(c);
            }
        }
        fn particles<'c>(p: &'c Particle, out: &mut Vec<&'c TypeRef>) {
            match p {
                Particle::Element { ty, .. } => out.push(ty),
                Particle::Group { items, .. } => items.iter().for_each(|i| particles(i, out)),
            }
        }
        while let Some(c) = stack.pop() {
            for a in &c.attributes {
                if !simple_ok(&a.ty) {
                    return bad(format!("attribute type `{}` unknown", a.ty.1));
                }
            }
            match &c.content {
                Content::Simple(q) => {
                    if !simple_ok(q) {
                        return bad(format!("simple content `{}` unknown", q.1));
                    }
                }
                Content::Elements(p) => {
                    let mut refs = Vec::new();
                    particles(p, &mut refs);
                    for r in refs {
                        match r {
                            TypeRef::Named(q) if !self.complex.contains_key(q) && !simple_ok(q) => {
                                return bad(format!("type `{}` unknown", q.1));
                            }
                            TypeRef::Anonymous(inner) => stack.push(inner),
                            _ => {}
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Validates a document; the findings say what and where, empty when it is valid.
    pub fn validate(&self, doc: &roxmltree::Document<'_>) -> Vec<String> {
        let mut errors = Vec::new();
        let root = doc.root_element();
        let key = (
            root.tag_name().namespace().unwrap_or("").to_owned(),
            root.tag_name().name().to_owned(),
        );
        match self.elements.get(&key) {
            Some(ty) => self.element(root, ty, &mut errors),
            None => errors.push(format!(
                "Element '{}': No matching global declaration available for the validation root.",
                display(&key)
            )),
        }
        errors
    }

    fn resolve<'s>(&'s self, ty: &'s TypeRef) -> Result<&'s Complex, QName> {
        match ty {
            TypeRef::Anonymous(c) => Ok(c),
            TypeRef::Named(q) => self.complex.get(q).ok_or_else(|| q.clone()),
        }
    }

    fn element(&self, e: roxmltree::Node<'_, '_>, ty: &TypeRef, errors: &mut Vec<String>) {
        if errors.len() >= 50 {
            return;
        }
        let name = display_node(&e);
        let complex = match self.resolve(ty) {
            Ok(c) => c,
            Err(simple) => {
                // An element of a simple type: text only, no attributes.
                self.no_elements(e, &name, errors);
                for a in e.attributes() {
                    if a.namespace() != Some(XSI) {
                        errors.push(format!(
                            "Element '{name}', attribute '{}': The attribute '{}' is not allowed.",
                            a.name(),
                            a.name()
                        ));
                    }
                }
                self.simple_value(&simple, &text(e), &name, errors);
                return;
            }
        };
        self.attributes(e, complex, &name, errors);
        match &complex.content {
            Content::Simple(q) => {
                self.no_elements(e, &name, errors);
                self.simple_value(q, &text(e), &name, errors);
            }
            Content::Elements(p) => {
                for t in e.children().filter(|c| c.is_text()) {
                    if !t.text().unwrap_or("").trim().is_empty() {
                        errors.push(format!(
                            "Element '{name}': Character content other than whitespace is not allowed because the content type is 'element-only'."
                        ));
                        break;
                    }
                }
                let children: Vec<_> = elements(e).collect();
                let mut i = 0;
                let ok = self.particle(p, &children, &mut i, errors);
                if ok && i < children.len() {
                    errors.push(format!(
                        "Element '{}': This element is not expected.",
                        display_node(&children[i])
                    ));
                } else if !ok && errors.is_empty() {
                    errors.push(format!("Element '{name}': Missing child element(s)."));
                }
            }
        }
    }

    fn no_elements(&self, e: roxmltree::Node<'_, '_>, name: &str, errors: &mut Vec<String>) {
        if let Some(child) = elements(e).next() {
            errors.push(format!(
                "Element '{name}': Element content is not allowed ('{}').",
                display_node(&child)
            ));
        }
    }

    fn attributes(
        &self,
        e: roxmltree::Node<'_, '_>,
        c: &Complex,
        name: &str,
        errors: &mut Vec<String>,
    ) {
        for a in e.attributes() {
            if a.namespace() == Some(XSI) {
                if a.name() == "type" || a.name() == "nil" {
                    errors.push(format!(
                        "Element '{name}': the attribute xsi:{} is not accepted here.",
                        a.name()
                    ));
                }
                continue;
            }
            match c
                .attributes
                .iter()
                .find(|d| a.namespace().is_none() && d.name == a.name())
            {
                Some(d) => {
                    self.simple_value(&d.ty, a.value(), &format!("{name}/@{}", a.name()), errors)
                }
                None => errors.push(format!(
                    "Element '{name}', attribute '{}': The attribute '{}' is not allowed.",
                    a.name(),
                    a.name()
                )),
            }
        }
        for d in c.attributes.iter().filter(|d| d.required) {
            if e.attribute(d.name.as_str()).is_none() {
                errors.push(format!(
                    "Element '{name}': The attribute '{}' is required but missing.",
                    d.name
                ));
            }
        }
    }

    fn simple_value(&self, ty: &QName, value: &str, name: &str, errors: &mut Vec<String>) {
        let (base, enumeration, lengths) = match self.simple.get(ty) {
            Some(s) => (
                &s.base.1,
                s.enumeration.as_slice(),
                (s.min_length, s.max_length),
            ),
            None => (&ty.1, &[][..], (None, None)),
        };
        let collapsed = value.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
        let ok = match base.as_str() {
            "string" | "token" | "anyURI" => true,
            "decimal" => crate::lexical_decimal(&collapsed),
            "boolean" => matches!(collapsed.as_str(), "true" | "false" | "1" | "0"),
            "base64Binary" => base64_ok(&collapsed),
            "date" => lexical_date(&collapsed),
            "dateTime" => lexical_date_time(&collapsed),
            _ => false,
        };
        let length = if base == "string" {
            value.chars().count()
        } else {
            collapsed.chars().count()
        };
        if ok {
            if let Some(min) = lengths.0.filter(|m| length < *m) {
                errors.push(format!(
                    "Element '{name}': [facet 'minLength'] The value '{}' has a length of '{length}'; this underruns the allowed minimum length of '{min}'.",
                    short(value)
                ));
                return;
            }
            if let Some(max) = lengths.1.filter(|m| length > *m) {
                errors.push(format!(
                    "Element '{name}': [facet 'maxLength'] The value '{}' has a length of '{length}'; this exceeds the allowed maximum length of '{max}'.",
                    short(value)
                ));
                return;
            }
        }
        if !ok {
            errors.push(format!(
                "Element '{name}': '{}' is not a valid value of the atomic type 'xs:{base}'.",
                short(value)
            ));
        } else if !enumeration.is_empty() {
            let v = if base == "string" { value } else { &collapsed };
            if !enumeration.iter().any(|e| e == v) {
                errors.push(format!(
                    "Element '{name}': [facet 'enumeration'] The value '{}' is not an element of the set.",
                    short(value)
                ));
            }
        }
    }

    /// Matches `p` greedily from `children[*i]`; false when a required part is missing
    /// (an error is then recorded).
    fn particle(
        &self,
        p: &Particle,
        children: &[roxmltree::Node<'_, '_>],
        i: &mut usize,
        errors: &mut Vec<String>,
    ) -> bool {
        let (min, max) = match p {
            Particle::Element { min, max, .. } | Particle::Group { min, max, .. } => (*min, *max),
        };
        let mut count = 0;
        while count < max {
            let Some(next) = children.get(*i) else { break };
            if !self.starts(p, next) {
                break;
            }
            match p {
                Particle::Element { ty, .. } => {
                    self.element(*next, ty, errors);
                    *i += 1;
                }
                Particle::Group { choice, items, .. } => {
                    if *choice {
                        let Some(branch) = items.iter().find(|b| self.starts(b, next)) else {
                            break;
                        };
                        if !self.particle(branch, children, i, errors) {
                            return false;
                        }
                    } else {
                        for item in items {
                            if !self.particle(item, children, i, errors) {
                                return false;
                            }
                        }
                    }
                }
            }
            count += 1;
        }
        if count < min && !self.nullable(p) {
            let expected = self.first_names(p).join(", ");
            match children.get(*i) {
                Some(n) => errors.push(format!(
                    "Element '{}': This element is not expected. Expected is ( {expected} ).",
                    display_node(n)
                )),
                None => {
                    let parent = children
                        .first()
                        .and_then(|c| c.parent())
                        .map(|p| display_node(&p))
                        .unwrap_or_default();
                    errors.push(format!(
                        "Element '{parent}': Missing child element(s). Expected is ( {expected} )."
                    ))
                }
            }
            return false;
        }
        true
    }

    fn nullable(&self, p: &Particle) -> bool {
        match p {
            Particle::Element { min, .. } => *min == 0,
            Particle::Group {
                choice, items, min, ..
            } => {
                *min == 0
                    || if *choice {
                        items.iter().any(|i| self.nullable(i))
                    } else {
                        items.iter().all(|i| self.nullable(i))
                    }
            }
        }
    }

    fn starts(&self, p: &Particle, n: &roxmltree::Node<'_, '_>) -> bool {
        match p {
            Particle::Element { name, .. } => {
                n.tag_name().namespace().unwrap_or("") == name.0 && n.tag_name().name() == name.1
            }
            Particle::Group { choice, items, .. } => {
                if *choice {
                    items.iter().any(|i| self.starts(i, n))
                } else {
                    for item in items {
                        if self.starts(item, n) {
                            return true;
                        }
                        if !self.nullable(item) {
                            return false;
                        }
                    }
                    false
                }
            }
        }
    }

    fn first_names(&self, p: &Particle) -> Vec<String> {
        match p {
            Particle::Element { name, .. } => vec![display(name)],
            Particle::Group { choice, items, .. } => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(self.first_names(item));
                    if !*choice && !self.nullable(item) {
                        break;
                    }
                }
                out
            }
        }
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn text(e: roxmltree::Node<'_, '_>) -> String {
    e.children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect()
}

fn display(q: &QName) -> String {
    if q.0.is_empty() {
        q.1.clone()
    } else {
        format!("{{{}}}{}", q.0, q.1)
    }
}

fn display_node(n: &roxmltree::Node<'_, '_>) -> String {
    display(&(
        n.tag_name().namespace().unwrap_or("").to_owned(),
        n.tag_name().name().to_owned(),
    ))
}

fn base64_ok(s: &str) -> bool {
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    if !compact.len().is_multiple_of(4) {
        return false;
    }
    let body = compact
        .iter()
        .rposition(|b| *b != b'=')
        .map_or(0, |p| p + 1);
    let padding = compact.len() - body;
    padding <= 2
        && compact[..body]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

fn schema_type_of(e: &roxmltree::Node<'_, '_>, target: &str) -> Result<TypeRef, SchemaError> {
    if let Some(t) = e.attribute("type") {
        return Ok(TypeRef::Named(qname(e, t)?));
    }
    match elements(*e).next() {
        Some(c) if is_xs(&c, "complexType") => {
            Ok(TypeRef::Anonymous(Box::new(complex(&c, target)?)))
        }
        _ => bad(format!(
            "element `{}` without a type",
            e.attribute("name").unwrap_or("?")
        )),
    }
}

fn particle(n: &roxmltree::Node<'_, '_>, target: &str) -> Result<Particle, SchemaError> {
    let (min, max) = (occurs(n, "minOccurs")?, occurs(n, "maxOccurs")?);
    if is_xs(n, "element") {
        if n.attribute("ref").is_some() {
            return bad("element references are not supported");
        }
        let name = n
            .attribute("name")
            .ok_or_else(|| SchemaError("an element without a name".into()))?;
        return Ok(Particle::Element {
            name: (target.to_owned(), name.to_owned()),
            ty: schema_type_of(n, target)?,
            min,
            max,
        });
    }
    let choice = if is_xs(n, "sequence") {
        false
    } else if is_xs(n, "choice") {
        true
    } else {
        return bad(format!("`{}` in a content model", n.tag_name().name()));
    };
    let items = elements(*n)
        .map(|c| particle(&c, target))
        .collect::<Result<_, _>>()?;
    Ok(Particle::Group {
        choice,
        items,
        min,
        max,
    })
}

fn attribute(n: &roxmltree::Node<'_, '_>) -> Result<Attribute, SchemaError> {
    let name = n
        .attribute("name")
        .ok_or_else(|| SchemaError("an attribute without a name".into()))?;
    let ty = qname(n, n.attribute("type").unwrap_or("xs:string"))?;
    Ok(Attribute {
        name: name.to_owned(),
        ty,
        required: n.attribute("use") == Some("required"),
    })
}

fn complex(n: &roxmltree::Node<'_, '_>, target: &str) -> Result<Complex, SchemaError> {
    let mut attributes = Vec::new();
    let mut content = None;
    for c in elements(*n) {
        if is_xs(&c, "sequence") || is_xs(&c, "choice") {
            content = Some(Content::Elements(particle(&c, target)?));
        } else if is_xs(&c, "attribute") {
            attributes.push(attribute(&c)?);
        } else if is_xs(&c, "simpleContent") {
            let Some(ext) = elements(c).next().filter(|e| is_xs(e, "extension")) else {
                return bad("simpleContent other than an extension");
            };
            let base = qname(&ext, ext.attribute("base").unwrap_or(""))?;
            for a in elements(ext) {
                if !is_xs(&a, "attribute") {
                    return bad(format!("`{}` in an extension", a.tag_name().name()));
                }
                attributes.push(attribute(&a)?);
            }
            content = Some(Content::Simple(base));
        } else {
            return bad(format!("`{}` in a complex type", c.tag_name().name()));
        }
    }
    let content = content.unwrap_or(Content::Elements(Particle::Group {
        choice: false,
        items: Vec::new(),
        min: 1,
        max: 1,
    }));
    Ok(Complex {
        content,
        attributes,
    })
}

fn simple(n: &roxmltree::Node<'_, '_>) -> Result<Simple, SchemaError> {
    let Some(r) = elements(*n).next().filter(|r| is_xs(r, "restriction")) else {
        return bad("a simple type other than a restriction");
    };
    let base = qname(&r, r.attribute("base").unwrap_or(""))?;
    let mut enumeration = Vec::new();
    let (mut min_length, mut max_length) = (None, None);
    for f in elements(r) {
        let value = f.attribute("value").unwrap_or("");
        if is_xs(&f, "enumeration") {
            enumeration.push(value.to_owned());
        } else if is_xs(&f, "minLength") || is_xs(&f, "maxLength") {
            let Ok(n) = value.parse::<usize>() else {
                return bad(format!("a length facet of `{value}`"));
            };
            if is_xs(&f, "minLength") {
                min_length = Some(n);
            } else {
                max_length = Some(n);
            }
        } else {
            return bad(format!("facet `{}` is not supported", f.tag_name().name()));
        }
    }
    Ok(Simple {
        base,
        enumeration,
        min_length,
        max_length,
    })
}

/// xs:date's lexical space: `-?YYYY-MM-DD` (a year of four digits or more, not 0000, a day
/// that exists in its month) and an optional zone (`Z` or `±hh:mm`, at most 14:00).
fn lexical_date(s: &str) -> bool {
    let (date, zone) = split_zone(s);
    zone_ok(zone) && date_ok(date)
}

/// xs:dateTime's: a date, `T`, `hh:mm:ss(.s+)?` (24:00:00 alone allowed), an optional zone.
fn lexical_date_time(s: &str) -> bool {
    let Some((date, rest)) = s.split_once('T') else {
        return false;
    };
    let (time, zone) = split_zone(rest);
    if !(zone_ok(zone) && date_ok(date)) {
        return false;
    }
    let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
    if time.contains('.') && (fraction.is_empty() || !fraction.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return false;
    };
    let two = |t: &str| {
        (t.len() == 2 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse::<u32>().unwrap_or(99))
    };
    match (two(h), two(m), two(sec)) {
        (Some(24), Some(0), Some(0)) => fraction.bytes().all(|b| b == b'0'),
        (Some(h), Some(m), Some(s)) => h < 24 && m < 60 && s < 60,
        _ => false,
    }
}

fn split_zone(s: &str) -> (&str, &str) {
    if let Some(rest) = s.strip_suffix('Z') {
        return (rest, "Z");
    }
    // `±hh:mm` at the end (the date's own `-`s come earlier).
    if s.len() > 6 {
        let (head, tail) = s.split_at(s.len() - 6);
        if (tail.starts_with('+') || tail.starts_with('-')) && tail.as_bytes()[3] == b':' {
            return (head, tail);
        }
    }
    (s, "")
}

fn zone_ok(zone: &str) -> bool {
    if zone.is_empty() || zone == "Z" {
        return true;
    }
    let b = zone.as_bytes();
    let digit = |i: usize| b[i].is_ascii_digit();
    if !(digit(1) && digit(2) && digit(4) && digit(5)) {
        return false;
    }
    let h = u32::from(b[1] - b'0') * 10 + u32::from(b[2] - b'0');
    let m = u32::from(b[4] - b'0') * 10 + u32::from(b[5] - b'0');
    (h < 14 && m < 60) || (h == 14 && m == 0)
}

fn date_ok(date: &str) -> bool {
    let unsigned = date.strip_prefix('-').unwrap_or(date);
    let parts: Vec<&str> = unsigned.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !(digits(y) && digits(m) && digits(d)) || y.len() < 4 || m.len() != 2 || d.len() != 2 {
        return false;
    }
    if y.len() > 4 && y.starts_with('0') {
        return false;
    }
    let (Ok(year), Ok(month), Ok(day)) = (y.parse::<u64>(), m.parse::<u32>(), d.parse::<u32>())
    else {
        return false;
    };
    if year == 0 || !(1..=12).contains(&month) || day == 0 {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    day <= days
}
