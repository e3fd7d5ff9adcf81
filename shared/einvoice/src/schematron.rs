//! The official Schematron rules, read from the XSLT they are published as.
//!
//! Factur-X publishes each profile's Schematron compiled to XSLT 2.0 (ISO skeleton). Every
//! pattern is a `mode`; every rule a template of that mode with its `match` (the rule's
//! context) and its `priority` (its order in the pattern); every assertion an
//! `xsl:choose/xsl:when test` whose `xsl:otherwise` writes `svrl:failed-assert` with the rule
//! id, every report an `xsl:if test` writing `svrl:successful-report`. This module reads exactly
//! those, and refuses any other construct in a rule, so no rule is skipped unnoticed. Run as
//! the processor runs them: in each pattern, each node is the context of the first rule (by
//! priority) whose context it matches; each assertion of that rule is then evaluated.
//!
//! XSLT's `document('…codedb.xml')` (the code lists) becomes `$codedb` and `current()` becomes
//! `$current` before parsing; the rest is XPath ([`crate::xpath`]).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::xpath::{self, Axis, Evaluator, Expr, Item, Node, NodeTest, XPathError};

const XSL: &str = "http://www.w3.org/1999/XSL/Transform";
const SVRL: &str = "http://purl.oclc.org/dsdl/svrl";

/// One failed assertion or fired report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// The rule's id (`BR-CO-15`, `FX-SCH-A-000123`), or `None` for a report without one.
    pub rule: Option<String>,
    pub message: String,
    /// Where: the context node's path (`/rsm:CrossIndustryInvoice/…`).
    pub location: String,
    /// The rule's `flag` as published (`fatal`, `warning`, `information`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

impl Finding {
    /// Whether the finding makes the invoice invalid: every finding but the rules published
    /// as `warning` or `information` (which a receiver's validator reports and accepts).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self.flag.as_deref(),
            Some("warning" | "information" | "info")
        )
    }
}

/// A message as published: text, `<name/>` (the context node's name) and
/// `<value-of select=…/>`.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Name,
    Value(Expr),
}

#[derive(Debug)]
enum Stmt {
    Let(String, Expr),
    /// Fails when `test` is false (an assertion) or true (a report).
    Check {
        id: Option<String>,
        flag: Option<String>,
        test: Expr,
        report: bool,
        message: Vec<Part>,
    },
}

#[derive(Debug)]
struct Rule {
    /// The `match` as published.
    source: String,
    priority: f64,
    context: Vec<Expr>,
    body: Vec<Stmt>,
}

type NameKey = (String, String, bool);

/// A profile's compiled rules.
pub struct RuleSet {
    /// Each pattern's rules, in priority order.
    patterns: Vec<Vec<Rule>>,
    /// `(pattern, rule)` of the rules whose every context ends in a step naming
    /// `(namespace, local, attribute?)`, sorted.
    by_name: HashMap<NameKey, Vec<(usize, usize)>>,
    /// The others (wildcards, `node()`, …), tried at every node, sorted.
    others: Vec<(usize, usize)>,
    /// The code lists, by id.
    codelists: HashMap<String, HashSet<String>>,
    /// Global variables (a Schematron's schema and pattern `let`s), evaluated in order at the
    /// document node before any rule.
    globals: Vec<(String, Expr)>,
    assertions: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("rules: {0}")]
pub struct LoadError(String);

fn load_err<T>(m: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError(m.into()))
}

fn xsl<'a>(n: &roxmltree::Node<'a, 'a>, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(XSL) && n.tag_name().name() == name
}

const SCH: &str = "http://purl.oclc.org/dsdl/schematron";

fn sch(n: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(SCH) && n.tag_name().name() == name
}

/// A rule's context as the XPath each of its alternatives selects: one that does not start
/// at the root matches at any depth.
fn context_of(
    matches: &str,
    compile: &dyn Fn(&str) -> Result<Expr, LoadError>,
) -> Result<Vec<Expr>, LoadError> {
    let mut context = Vec::new();
    for part in split_union(matches) {
        let part = part.trim();
        let path = if part.starts_with('/') {
            part.to_owned()
        } else {
            format!("//{part}")
        };
        context.push(compile(&path)?);
    }
    Ok(context)
}

fn svrl<'a>(n: &roxmltree::Node<'a, 'a>, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(SVRL) && n.tag_name().name() == name
}

/// The XSLT-only parts of the rules in XPath: `current()` is the rule's context node
/// (`$current`); the one form the code lists are read in,
/// `document('…codedb.xml')/codedb/cl[@id=N]/enumeration[@value=$V]`, is
/// `codelist-contains(N, $V)` (true when some item of `$V` is one of list N's values: the
/// same general comparison, answered from a set).
fn rewrite(expr: &str) -> String {
    static CODE_LIST: OnceLock<regex::Regex> = OnceLock::new();
    let pattern = CODE_LIST.get_or_init(|| {
        regex::Regex::new(
            r"document\('[^']*'\)/codedb/cl\[@id=([0-9]+)\]/enumeration\[@value=\$([A-Za-z0-9_.-]+)\]",
        )
        .expect("a valid pattern")
    });
    let out = expr.replace("current()", "$current");
    pattern
        .replace_all(&out, "codelist-contains($1, $$$2)")
        .into_owned()
}

fn text_of(n: roxmltree::Node<'_, '_>) -> String {
    let raw: String = n
        .descendants()
        .filter(|d| d.is_text())
        .filter_map(|d| d.text())
        .collect();
    raw.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl RuleSet {
    /// Reads the rules from the XSLT text and its code lists.
    pub fn load(xslt: &str, codedb: Option<&'static str>) -> Result<RuleSet, LoadError> {
        let doc = roxmltree::Document::parse(xslt).map_err(|e| LoadError(e.to_string()))?;
        let root = doc.root_element();
        let namespaces: HashMap<String, String> = root
            .namespaces()
            .filter_map(|ns| ns.name().map(|p| (p.to_owned(), ns.uri().to_owned())))
            .collect();
        let resolve = |p: &str| namespaces.get(p).cloned();
        let compile = |src: &str| -> Result<Expr, LoadError> {
            xpath::parse(&rewrite(src), &resolve)
                .map_err(|e| LoadError(format!("`{}`: {e}", src.trim())))
        };
        // The patterns: the modes the root template applies, in order.
        let Some(start) = root.children().find(|t| {
            xsl(t, "template") && t.attribute("match") == Some("/") && t.attribute("mode").is_none()
        }) else {
            return load_err("no root template");
        };
        let modes: Vec<&str> = start
            .descendants()
            .filter(|d| xsl(d, "apply-templates"))
            .filter_map(|d| d.attribute("mode"))
            .collect();
        if modes.is_empty() {
            return load_err("no patterns");
        }
        let mut patterns = Vec::new();
        let mut assertions = 0;
        for mode in modes {
            let mut rules = Vec::new();
            for t in root
                .children()
                .filter(|t| xsl(t, "template") && t.attribute("mode") == Some(mode))
            {
                let priority: f64 = t
                    .attribute("priority")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0.0);
                let Some(matches) = t.attribute("match") else {
                    continue;
                };
                // The skeleton's own templates: walk on (`@*|node()`), ignore text.
                if priority < 0.0 || matches == "/" {
                    continue;
                }
                let context = context_of(matches, &compile)?;
                let mut body = Vec::new();
                for s in t.children().filter(|c| c.is_element()) {
                    if svrl(&s, "fired-rule") || xsl(&s, "apply-templates") {
                        continue;
                    }
                    if xsl(&s, "variable") {
                        let (Some(name), Some(select)) =
                            (s.attribute("name"), s.attribute("select"))
                        else {
                            return load_err(format!("a variable without select in `{matches}`"));
                        };
                        body.push(Stmt::Let(name.to_owned(), compile(select)?));
                    } else if xsl(&s, "choose") {
                        let when = s.children().find(|c| xsl(c, "when"));
                        let otherwise = s.children().find(|c| xsl(c, "otherwise"));
                        let (Some(when), Some(otherwise)) = (when, otherwise) else {
                            return load_err(format!(
                                "an assertion without when/otherwise in `{matches}`"
                            ));
                        };
                        let Some(fail) = otherwise.children().find(|c| svrl(c, "failed-assert"))
                        else {
                            return load_err(format!(
                                "an otherwise without failed-assert in `{matches}`"
                            ));
                        };
                        let test = when.attribute("test").unwrap_or_default();
                        body.push(check(&compile(test)?, fail, false));
                        assertions += 1;
                    } else if xsl(&s, "if") {
                        let test = s.attribute("test").unwrap_or_default();
                        if let Some(fail) = s.children().find(|c| svrl(c, "failed-assert")) {
                            // Newer skeletons: `if not(test)` writes the failed assertion.
                            body.push(check(&compile(test)?, fail, true));
                        } else if let Some(rep) =
                            s.children().find(|c| svrl(c, "successful-report"))
                        {
                            body.push(check(&compile(test)?, rep, true));
                        } else {
                            return load_err(format!(
                                "an xsl:if that reports nothing in `{matches}`"
                            ));
                        }
                        assertions += 1;
                    } else {
                        return load_err(format!(
                            "`{}` in the rule `{matches}` is not understood",
                            s.tag_name().name()
                        ));
                    }
                }
                rules.push(Rule {
                    source: matches.to_owned(),
                    priority,
                    context,
                    body,
                });
            }
            rules.sort_by(|a, b| b.priority.total_cmp(&a.priority));
            patterns.push(rules);
        }
        let mut codelists: HashMap<String, HashSet<String>> = HashMap::new();
        if let Some(text) = codedb {
            let db = roxmltree::Document::parse(text).map_err(|e| LoadError(e.to_string()))?;
            for cl in db
                .root_element()
                .children()
                .filter(|c| c.has_tag_name("cl"))
            {
                let values = codelists
                    .entry(cl.attribute("id").unwrap_or("").to_owned())
                    .or_default();
                for e in cl.children().filter(|c| c.has_tag_name("enumeration")) {
                    values.insert(e.attribute("value").unwrap_or("").to_owned());
                }
            }
        }
        Ok(RuleSet::new(patterns, codelists, Vec::new(), assertions))
    }

    fn new(
        patterns: Vec<Vec<Rule>>,
        codelists: HashMap<String, HashSet<String>>,
        globals: Vec<(String, Expr)>,
        assertions: usize,
    ) -> RuleSet {
        let mut by_name: HashMap<NameKey, Vec<(usize, usize)>> = HashMap::new();
        let mut others = Vec::new();
        for (p, rules) in patterns.iter().enumerate() {
            for (i, rule) in rules.iter().enumerate() {
                let keys: Option<Vec<_>> = rule.context.iter().map(last_name).collect();
                match keys {
                    Some(keys) => {
                        for k in keys {
                            let list = by_name.entry(k).or_default();
                            if list.last() != Some(&(p, i)) {
                                list.push((p, i));
                            }
                        }
                    }
                    None => others.push((p, i)),
                }
            }
        }
        RuleSet {
            patterns,
            by_name,
            others,
            codelists,
            globals,
            assertions,
        }
    }

    /// Reads the rules of a Schematron schema as published (ISO Schematron, `queryBinding`
    /// `xslt2`), the way SchXslt compiles it: the schema's and every pattern's `let`s are
    /// global variables evaluated at the document node; `include` takes a file of `files`
    /// (by name); with no `defaultPhase` every pattern is active; in each pattern, a node is
    /// the context of its first rule that matches. Abstract patterns and rules, `extends` and
    /// any other construct are refused, so no rule is skipped unnoticed. `xsl:function`
    /// declarations are not read: a rule calling one fails to load.
    pub fn load_sch(files: &[(&str, &str)], main: &str) -> Result<RuleSet, LoadError> {
        let file = |name: &str| -> Result<&str, LoadError> {
            let base = name.rsplit('/').next().unwrap_or(name);
            files
                .iter()
                .find(|(n, _)| *n == base)
                .map(|(_, text)| *text)
                .ok_or_else(|| LoadError(format!("`{name}` is not among the rule files")))
        };
        let main_doc =
            roxmltree::Document::parse(file(main)?).map_err(|e| LoadError(e.to_string()))?;
        let schema = main_doc.root_element();
        if !sch(&schema, "schema") {
            return load_err("not a Schematron schema");
        }
        if let Some(binding) = schema.attribute("queryBinding") {
            if !matches!(binding, "xslt2" | "xslt3" | "xpath2" | "xpath3") {
                return load_err(format!("query binding `{binding}`"));
            }
        }
        if schema.attribute("defaultPhase").is_some() {
            return load_err("a default phase is not supported");
        }
        let mut namespaces: HashMap<String, String> = HashMap::from([(
            "xs".to_owned(),
            "http://www.w3.org/2001/XMLSchema".to_owned(),
        )]);
        for ns in schema.children().filter(|c| sch(c, "ns")) {
            if let (Some(p), Some(u)) = (ns.attribute("prefix"), ns.attribute("uri")) {
                namespaces.insert(p.to_owned(), u.to_owned());
            }
        }
        let resolve = |p: &str| namespaces.get(p).cloned();
        let compile = |src: &str| -> Result<Expr, LoadError> {
            xpath::parse(src, &resolve).map_err(|e| LoadError(format!("`{}`: {e}", src.trim())))
        };
        // The included files, parsed once; their root element stands for the `include`.
        let mut included = Vec::new();
        for inc in schema.descendants().filter(|c| sch(c, "include")) {
            let href = inc.attribute("href").unwrap_or_default();
            included.push((
                inc.id(),
                roxmltree::Document::parse(file(href)?)
                    .map_err(|e| LoadError(format!("{href}: {e}")))?,
            ));
        }
        let top: Vec<roxmltree::Node<'_, '_>> = schema
            .children()
            .filter(|c| c.is_element())
            .map(|c| match included.iter().find(|(id, _)| *id == c.id()) {
                Some((_, doc)) => doc.root_element(),
                None => c,
            })
            .collect();
        let mut globals = Vec::new();
        let mut patterns = Vec::new();
        let mut assertions = 0;
        let let_of = |l: roxmltree::Node<'_, '_>| -> Result<(String, Expr), LoadError> {
            match (l.attribute("name"), l.attribute("value")) {
                (Some(name), Some(value)) => Ok((name.to_owned(), compile(value)?)),
                _ => load_err("a let without name and value"),
            }
        };
        for node in &top {
            if sch(node, "let") {
                globals.push(let_of(*node)?);
            }
        }
        for pattern in top.iter().filter(|n| sch(n, "pattern")) {
            if pattern.attribute("abstract") == Some("true") || pattern.attribute("is-a").is_some()
            {
                return load_err("abstract patterns are not supported");
            }
            let mut rules = Vec::new();
            for node in pattern.children().filter(|c| c.is_element()) {
                if sch(&node, "let") {
                    globals.push(let_of(node)?);
                    continue;
                }
                if sch(&node, "title") || sch(&node, "p") {
                    continue;
                }
                if !sch(&node, "rule") {
                    return load_err(format!("`{}` in a pattern", node.tag_name().name()));
                }
                let Some(matches) = node.attribute("context") else {
                    return load_err("a rule without context");
                };
                if node.attribute("abstract") == Some("true") {
                    return load_err("abstract rules are not supported");
                }
                let mut body = Vec::new();
                for s in node.children().filter(|c| c.is_element()) {
                    if sch(&s, "let") {
                        let (name, value) = let_of(s)?;
                        body.push(Stmt::Let(name, value));
                    } else if sch(&s, "assert") || sch(&s, "report") {
                        let test = s.attribute("test").unwrap_or_default();
                        let mut message = Vec::new();
                        for part in s.children() {
                            if part.is_text() {
                                message
                                    .push(Part::Text(part.text().unwrap_or_default().to_owned()));
                            } else if sch(&part, "name") && part.attribute("path").is_none() {
                                message.push(Part::Name);
                            } else if sch(&part, "value-of") {
                                let select = part.attribute("select").unwrap_or(".");
                                message.push(Part::Value(compile(select)?));
                            } else if part.is_element() {
                                message.push(Part::Text(text_of(part)));
                            }
                        }
                        body.push(Stmt::Check {
                            id: s.attribute("id").map(str::to_owned),
                            flag: s.attribute("flag").map(str::to_owned),
                            test: compile(test)?,
                            report: sch(&s, "report"),
                            message,
                        });
                        assertions += 1;
                    } else {
                        return load_err(format!(
                            "`{}` in the rule `{matches}` is not understood",
                            s.tag_name().name()
                        ));
                    }
                }
                rules.push(Rule {
                    source: matches.to_owned(),
                    priority: -(rules.len() as f64),
                    context: context_of(matches, &compile)?,
                    body,
                });
            }
            patterns.push(rules);
        }
        Ok(RuleSet::new(patterns, HashMap::new(), globals, assertions))
    }

    /// How many assertions and reports the rules hold.
    pub fn assertions(&self) -> usize {
        self.assertions
    }

    /// Runs every rule on `doc`. An assertion that cannot be evaluated (a value the
    /// reference processor would also stop on, such as `abc` where a decimal is expected) is a
    /// finding under its own rule id.
    pub fn check<'a>(
        &'a self,
        doc: &'a roxmltree::Document<'a>,
        fuel: u64,
    ) -> Result<Vec<Finding>, XPathError> {
        let mut ev: Evaluator<'a> = Evaluator::new(fuel).with_codelists(&self.codelists);
        let mut findings = Vec::new();
        let document = Item::Node(Node::of(doc.root()));
        for (name, e) in &self.globals {
            let value = match ev.eval(e, document.clone()) {
                Ok(v) => v,
                Err(e) if e.0.contains("budget") => return Err(e),
                Err(_) => Vec::new(),
            };
            ev.bind(name, value);
        }
        // Every element and attribute, in document order: what the skeleton's templates visit.
        let mut nodes = Vec::new();
        for e in doc.root().descendants().filter(|d| d.is_element()) {
            nodes.push(Node::of(e));
            for i in 0..e.attributes().len() {
                nodes.push(Node {
                    node: e,
                    attr: Some(i),
                });
            }
        }
        // Node by node, each pattern's first rule (by priority) whose context matches; the
        // findings then in the processor's order: pattern by pattern, in document order.
        let mut tagged: Vec<((usize, usize), Finding)> = Vec::new();
        for (position, n) in nodes.iter().enumerate() {
            let named = index_key(n)
                .and_then(|k| self.by_name.get(&k))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut candidates = named
                .iter()
                .chain(&self.others)
                .copied()
                .collect::<Vec<_>>();
            if !self.others.is_empty() {
                candidates.sort_unstable();
            }
            let mut decided: Option<usize> = None;
            for (pattern, index) in candidates {
                if decided == Some(pattern) {
                    continue;
                }
                let rule = &self.patterns[pattern][index];
                if self.matches_rule(&mut ev, rule, *n)? {
                    decided = Some(pattern);
                    if std::env::var_os("EINVOICE_TRACE").is_some() {
                        eprintln!("{} <- {}", location(n), rule.source);
                    }
                    let before = findings.len();
                    self.fire(&mut ev, rule, *n, &mut findings)?;
                    tagged.extend(findings.drain(before..).map(|f| ((pattern, position), f)));
                }
            }
        }
        tagged.sort_by_key(|(order, _)| *order);
        findings.extend(tagged.into_iter().map(|(_, f)| f));
        Ok(findings)
    }

    fn matches_rule<'a>(
        &'a self,
        ev: &mut Evaluator<'a>,
        rule: &'a Rule,
        n: Node<'a>,
    ) -> Result<bool, XPathError> {
        for context in &rule.context {
            match matches(ev, context, n) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) if e.0.contains("budget") => return Err(e),
                // A context that cannot be evaluated at a node does not match it.
                Err(_) => {}
            }
        }
        Ok(false)
    }

    fn fire<'a>(
        &'a self,
        ev: &mut Evaluator<'a>,
        rule: &'a Rule,
        n: Node<'a>,
        findings: &mut Vec<Finding>,
    ) -> Result<(), XPathError> {
        let context = Item::Node(n);
        ev.bind("current", vec![context.clone()]);
        let mut bound = 1;
        let mut result = Ok(());
        for stmt in &rule.body {
            match stmt {
                Stmt::Let(name, e) => {
                    let value = match ev.eval(e, context.clone()) {
                        Ok(v) => v,
                        Err(e) if e.0.contains("budget") => {
                            result = Err(e);
                            break;
                        }
                        Err(_) => Vec::new(),
                    };
                    ev.bind(name, value);
                    bound += 1;
                }
                Stmt::Check {
                    id,
                    flag,
                    test,
                    report,
                    message,
                } => {
                    let failed = match ev.test(test, context.clone()) {
                        Ok(v) => v == *report,
                        Err(e) if e.0.contains("budget") => {
                            result = Err(e);
                            break;
                        }
                        Err(e) => {
                            let text = render_message(ev, message, n);
                            findings.push(Finding {
                                rule: id.clone(),
                                message: format!("{text} ({e})"),
                                location: location(&n),
                                flag: flag.clone(),
                            });
                            continue;
                        }
                    };
                    if failed {
                        findings.push(Finding {
                            rule: id.clone(),
                            message: render_message(ev, message, n),
                            location: location(&n),
                            flag: flag.clone(),
                        });
                    }
                }
            }
        }
        ev.unbind(bound);
        result
    }
}

/// A message's text at the node it is about, whitespace collapsed.
fn render_message<'a>(ev: &mut Evaluator<'a>, parts: &[Part], n: Node<'a>) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Name => out.push_str(&n.qualified_name()),
            Part::Value(e) => {
                if let Ok(value) = ev.eval(e, Item::Node(n)) {
                    let text: Vec<String> = value.iter().map(Item::string).collect();
                    out.push_str(&text.join(" "));
                }
            }
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check(test: &Expr, out: roxmltree::Node<'_, '_>, report: bool) -> Stmt {
    let attribute = |name: &str| {
        out.attribute(name)
            .map(str::to_owned)
            .or_else(|| {
                out.children()
                    .find(|c| xsl(c, "attribute") && c.attribute("name") == Some(name))
                    .map(text_of)
            })
            .filter(|s| !s.is_empty())
    };
    let message = out
        .children()
        .find(|c| svrl(c, "text"))
        .map(text_of)
        .unwrap_or_default();
    Stmt::Check {
        id: attribute("id"),
        flag: attribute("flag"),
        test: test.clone(),
        report,
        message: vec![Part::Text(message)],
    }
}

/// Splits a match pattern on its top-level `|`.
fn split_union(pattern: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut current = String::new();
    for c in pattern.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '[' | '(' => depth += 1,
                ']' | ')' => depth -= 1,
                '|' if depth == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            },
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// The name a node is indexed under: `(namespace, local, attribute?)`.
fn index_key(n: &Node<'_>) -> Option<(String, String, bool)> {
    let (ns, local) = n.name_parts()?;
    Some((
        ns.unwrap_or("").to_owned(),
        local.to_owned(),
        n.attr.is_some(),
    ))
}

/// The name a context's last step tests, when it is one name.
fn last_name(e: &Expr) -> Option<(String, String, bool)> {
    match e {
        Expr::Path(_, last) => last_name(last),
        Expr::Step {
            axis: axis @ (Axis::Child | Axis::Attribute | Axis::Descendant),
            test: NodeTest::Name(ns, Some(local)),
            ..
        } => Some((
            ns.clone().unwrap_or_default(),
            local.clone(),
            *axis == Axis::Attribute,
        )),
        _ => None,
    }
}

/// Whether `n` is among the nodes the context `pattern` selects, decided from `n` upwards as
/// an XSLT processor matches a pattern: the last step at `n`, the steps before it at its
/// parent (`/`) or at some ancestor (`//`), `/` at the document. A step's predicates are
/// evaluated by selecting the step from the parent, so positions count as they do there.
fn matches<'a>(ev: &mut Evaluator<'a>, pattern: &Expr, n: Node<'a>) -> Result<bool, XPathError> {
    if let Expr::Union(a, b) = pattern {
        return Ok(matches(ev, a, n)? || matches(ev, b, n)?);
    }
    let mut steps = Vec::with_capacity(8);
    if flatten(pattern, &mut steps) {
        return match_from(ev, &steps, steps.len() - 1, n);
    }
    // Anything else: select it from the document and look for `n`.
    let root = Item::Node(Node::of(n.node.document().root()));
    let selected = ev.eval(pattern, root)?;
    Ok(selected
        .iter()
        .any(|i| matches!(i, Item::Node(m) if *m == n)))
}

/// A location path as its steps: `/`, `//` (descendant-or-self) and child or attribute steps.
enum PathPart<'e> {
    Root,
    AnyDepth,
    Step(&'e Expr),
}

fn flatten<'e>(e: &'e Expr, out: &mut Vec<PathPart<'e>>) -> bool {
    match e {
        Expr::Path(a, b) => flatten(a, out) && flatten(b, out),
        Expr::Root => {
            out.push(PathPart::Root);
            true
        }
        _ if is_descendant_or_self(e) => {
            out.push(PathPart::AnyDepth);
            true
        }
        Expr::Step {
            axis: Axis::Child | Axis::Attribute,
            ..
        } => {
            out.push(PathPart::Step(e));
            true
        }
        // `//name` as the parser writes it (a descendant step): any depth, then the step.
        Expr::Step {
            axis: Axis::Descendant,
            ..
        } => {
            out.push(PathPart::AnyDepth);
            out.push(PathPart::Step(e));
            true
        }
        _ => false,
    }
}

/// Whether `steps[..=i]` select `n`.
fn match_from<'a>(
    ev: &mut Evaluator<'a>,
    steps: &[PathPart<'_>],
    i: usize,
    n: Node<'a>,
) -> Result<bool, XPathError> {
    match &steps[i] {
        PathPart::Root => Ok(n.attr.is_none() && n.node.is_root()),
        PathPart::AnyDepth => {
            if i == 0 {
                return Ok(true);
            }
            let mut at = Some(n);
            while let Some(a) = at {
                if match_from(ev, steps, i - 1, a)? {
                    return Ok(true);
                }
                at = a.parent();
            }
            Ok(false)
        }
        PathPart::Step(step) => {
            if !step_matches(ev, step, n)? {
                return Ok(false);
            }
            if i == 0 {
                return Ok(true);
            }
            match n.parent() {
                Some(p) => match_from(ev, steps, i - 1, p),
                None => Ok(false),
            }
        }
    }
}

fn step_matches<'a>(ev: &mut Evaluator<'a>, step: &Expr, n: Node<'a>) -> Result<bool, XPathError> {
    let Expr::Step {
        axis,
        test,
        predicates,
    } = step
    else {
        return Ok(false);
    };
    if n.attr.is_none() && n.node.is_root() {
        return Ok(false);
    }
    if !xpath::matches_test(&n, *axis, test) {
        return Ok(false);
    }
    if predicates.is_empty() {
        return Ok(true);
    }
    // A predicate that reads no position and yields no number is true or false of the node
    // whatever its position: decided at the node, instead of selecting every sibling.
    let mut positional = false;
    for p in predicates {
        if xpath::uses_position(p) {
            positional = true;
            break;
        }
        let value = ev.eval(p, Item::Node(n))?;
        if let [Item::Atom(a)] = value.as_slice() {
            if a.is_numeric() {
                positional = true;
                break;
            }
        }
        if !xpath::ebv(&value)? {
            return Ok(false);
        }
    }
    if !positional {
        return Ok(true);
    }
    let Some(parent) = n.parent() else {
        return Ok(false);
    };
    let selected = ev.eval(step, Item::Node(parent))?;
    Ok(selected
        .iter()
        .any(|i| matches!(i, Item::Node(m) if *m == n)))
}

fn is_descendant_or_self(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Step {
            axis: Axis::DescendantOrSelf,
            test: NodeTest::Node,
            predicates,
        } if predicates.is_empty()
    )
}

/// `/rsm:CrossIndustryInvoice/rsm:ExchangedDocument/ram:ID` — the prefixed path of a node.
pub fn location(n: &Node<'_>) -> String {
    let mut parts = Vec::new();
    let name = |e: roxmltree::Node<'_, '_>| {
        let t = e.tag_name();
        match t.namespace().and_then(|ns| e.lookup_prefix(ns)) {
            Some(p) if !p.is_empty() => format!("{p}:{}", t.name()),
            _ => t.name().to_owned(),
        }
    };
    for a in n.node.ancestors().filter(|a| a.is_element()) {
        let same = a
            .prev_siblings()
            .skip(1)
            .filter(|s| s.is_element() && s.tag_name() == a.tag_name())
            .count();
        let more = same > 0
            || a.next_siblings()
                .skip(1)
                .any(|s| s.is_element() && s.tag_name() == a.tag_name());
        if more {
            parts.push(format!("{}[{}]", name(a), same + 1));
        } else {
            parts.push(name(a));
        }
    }
    parts.reverse();
    let mut path = format!("/{}", parts.join("/"));
    if let Some(i) = n.attr {
        if let Some(a) = n.node.attributes().nth(i) {
            path.push_str(&format!("/@{}", a.name()));
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = r#"<schema xmlns="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
  <ns prefix="a" uri="urn:a"/>
  <let name="limit" value="2"/>
  <include href="../common.sch"/>
  <pattern id="p1">
    <let name="isStrict" value="exists(/a:r[@strict = 'yes'])"/>
    <rule context="/a:r/a:l[$isStrict]">
      <let name="q" value="xs:decimal(a:q)"/>
      <assert id="R-1" flag="fatal" test="$q &lt;= $limit">Line <value-of select="a:id"/> of <name/>: at most <value-of select="$limit"/>.</assert>
      <report id="R-2" flag="warning" test="$q = $limit">at the limit</report>
    </rule>
    <rule context="a:l">
      <assert id="R-3" test="a:id">every line has an id</assert>
    </rule>
  </pattern>
  <pattern id="p2">
    <rule context="a:l">
      <assert id="R-4" flag="information" test="$greeting = 'hi'">never</assert>
    </rule>
  </pattern>
</schema>"#;
    const COMMON: &str = r#"<pattern xmlns="http://purl.oclc.org/dsdl/schematron" id="vars">
  <let name="greeting" value="'hello'"/>
</pattern>"#;

    fn findings(xml: &str) -> Vec<(String, Option<String>, String)> {
        let rules =
            RuleSet::load_sch(&[("main.sch", MAIN), ("common.sch", COMMON)], "main.sch").unwrap();
        let doc = roxmltree::Document::parse(xml).unwrap();
        rules
            .check(&doc, 1_000_000)
            .unwrap()
            .into_iter()
            .map(|f| (f.rule.unwrap_or_default(), f.flag, f.message))
            .collect()
    }

    #[test]
    fn a_schematron_schema_runs_as_schxslt_compiles_it() {
        let strict = r#"<a:r xmlns:a="urn:a" strict="yes"><a:l><a:id>1</a:id><a:q>3</a:q></a:l><a:l><a:id>2</a:id><a:q>2</a:q></a:l><a:l><a:q>1</a:q></a:l></a:r>"#;
        let found = findings(strict);
        let ids: Vec<&str> = found.iter().map(|(id, _, _)| id.as_str()).collect();
        // In p1 the first matching rule wins: the strict rule for every line, so R-3 (the
        // second rule) never runs; p2's information rule runs for each line, after p1's.
        assert_eq!(ids, ["R-1", "R-2", "R-4", "R-4", "R-4"], "{found:?}");
        assert_eq!(found[0].2, "Line 1 of a:l: at most 2.");
        assert_eq!(found[0].1.as_deref(), Some("fatal"));
        assert_eq!(found[1].1.as_deref(), Some("warning"));
        // Without the pattern variable's condition, the second rule is the one that matches.
        let lax = strict.replace(" strict=\"yes\"", "");
        let ids: Vec<String> = findings(&lax).into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(ids, ["R-3", "R-4", "R-4", "R-4"]);
        let fatal = Finding {
            rule: None,
            message: String::new(),
            location: String::new(),
            flag: None,
        };
        assert!(fatal.is_fatal());
        assert!(!Finding {
            flag: Some("information".into()),
            ..fatal
        }
        .is_fatal());
    }

    #[test]
    fn constructs_it_does_not_read_are_refused() {
        for (bad, why) in [
            (
                MAIN.replace(
                    "<pattern id=\"p2\">",
                    "<pattern id=\"p2\" abstract=\"true\">",
                ),
                "abstract",
            ),
            (
                MAIN.replace(
                    "<assert id=\"R-3\"",
                    "<extends rule=\"x\"/><assert id=\"R-3\"",
                ),
                "extends",
            ),
            (
                MAIN.replace(
                    "queryBinding=\"xslt2\"",
                    "queryBinding=\"xslt2\" defaultPhase=\"x\"",
                ),
                "phase",
            ),
            (MAIN.replace("a:id", "u:f(a:id)"), "unknown function"),
            (
                MAIN.replace("../common.sch", "../missing.sch"),
                "a missing include",
            ),
        ] {
            assert!(
                RuleSet::load_sch(&[("main.sch", &bad), ("common.sch", COMMON)], "main.sch")
                    .is_err(),
                "{why}"
            );
        }
    }
}
