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
}

#[derive(Debug)]
enum Stmt {
    Let(String, Expr),
    /// Fails when `test` is false (an assertion) or true (a report).
    Check {
        id: Option<String>,
        test: Expr,
        report: bool,
        message: String,
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
        let mut by_name: HashMap<NameKey, Vec<(usize, usize)>> = HashMap::new();
        let mut others = Vec::new();
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
            let p = patterns.len();
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
        Ok(RuleSet {
            patterns,
            by_name,
            others,
            codelists,
            assertions,
        })
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
                            findings.push(Finding {
                                rule: id.clone(),
                                message: format!("{message} ({e})"),
                                location: location(&n),
                            });
                            continue;
                        }
                    };
                    if failed {
                        findings.push(Finding {
                            rule: id.clone(),
                            message: message.clone(),
                            location: location(&n),
                        });
                    }
                }
            }
        }
        ev.unbind(bound);
        result
    }
}

fn check(test: &Expr, out: roxmltree::Node<'_, '_>, report: bool) -> Stmt {
    let id = out
        .attribute("id")
        .map(str::to_owned)
        .or_else(|| {
            out.children()
                .find(|c| xsl(c, "attribute") && c.attribute("name") == Some("id"))
                .map(text_of)
        })
        .filter(|s| !s.is_empty());
    let message = out
        .children()
        .find(|c| svrl(c, "text"))
        .map(text_of)
        .unwrap_or_default();
    Stmt::Check {
        id,
        test: test.clone(),
        report,
        message,
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
            axis: axis @ (Axis::Child | Axis::Attribute),
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
