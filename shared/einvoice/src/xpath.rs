//! XPath 2.0, as far as the official Factur-X Schematron rules use it, over `roxmltree`.
//!
//! The rules are the published ones, read as they ship ([`crate::schematron`]); this module only
//! evaluates their expressions with XPath 2.0's typing — an element's value is
//! `xs:untypedAtomic`, cast to `xs:double` against a number and in arithmetic (so `sum()` and
//! `round()` over amounts are IEEE doubles, as in the reference processor), `xs:decimal(...)` is
//! exact — so that a rule fails here exactly when it fails there. Anything the parser does not
//! know is an error at load, never a rule silently skipped: the unit tests load every profile.
//!
//! Work is bounded by fuel (steps), so hostile XML cannot make a rule run for ever.

use std::cmp::Ordering;
use std::str::FromStr;
use std::sync::Arc as Rc;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

pub type XNode<'a> = roxmltree::Node<'a, 'a>;

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct XPathError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, XPathError> {
    Err(XPathError(message.into()))
}

// ------------------------------------------------------------------ the data model

/// A node: an element, text, the document, or one of an element's attributes.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    pub node: XNode<'a>,
    pub attr: Option<usize>,
}

impl<'a> Node<'a> {
    pub fn of(node: XNode<'a>) -> Self {
        Node { node, attr: None }
    }

    fn key(&self) -> (usize, usize, usize) {
        (
            self.node.document() as *const _ as usize,
            self.node.id().get_usize(),
            self.attr.map_or(0, |i| i + 1),
        )
    }

    fn attribute(&self) -> Option<roxmltree::Attribute<'a, 'a>> {
        self.attr.and_then(|i| self.node.attributes().nth(i))
    }

    /// The string value: an attribute's value, a text's text, an element's or the document's
    /// descendant texts.
    pub fn string_value(&self) -> String {
        if let Some(a) = self.attribute() {
            return a.value().to_owned();
        }
        if self.node.is_text() {
            return self.node.text().unwrap_or("").to_owned();
        }
        let mut out = String::new();
        for d in self.node.descendants() {
            if d.is_text() {
                out.push_str(d.text().unwrap_or(""));
            }
        }
        out
    }

    pub(crate) fn parent(&self) -> Option<Node<'a>> {
        if self.attr.is_some() {
            Some(Node::of(self.node))
        } else {
            self.node.parent().map(Node::of)
        }
    }

    pub(crate) fn name_parts(&self) -> Option<(Option<&'a str>, &'a str)> {
        if let Some(a) = self.attribute() {
            return Some((a.namespace(), a.name()));
        }
        if self.node.is_element() {
            let t = self.node.tag_name();
            return Some((t.namespace(), t.name()));
        }
        None
    }

    /// `name()`: the prefixed name as the document spells it.
    pub(crate) fn qualified_name(&self) -> String {
        match self.name_parts() {
            Some((Some(ns), local)) => match self.node.lookup_prefix(ns) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}:{local}"),
                _ => local.to_owned(),
            },
            Some((None, local)) => local.to_owned(),
            None => String::new(),
        }
    }
}

impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

/// An atomic value.
#[derive(Clone, Debug)]
pub enum Atom {
    Untyped(Rc<str>),
    Str(Rc<str>),
    Bool(bool),
    /// xs:decimal and xs:integer.
    Dec(Decimal),
    Dbl(f64),
}

#[derive(Clone, Debug)]
pub enum Item<'a> {
    Node(Node<'a>),
    Atom(Atom),
}

pub type Seq<'a> = Vec<Item<'a>>;

impl Item<'_> {
    /// The item's string value (a node's text, an atomic value's canonical form).
    pub fn string(&self) -> String {
        atomize(self).string()
    }
}

fn atomize(item: &Item<'_>) -> Atom {
    match item {
        Item::Node(n) => Atom::Untyped(n.string_value().into()),
        Item::Atom(a) => a.clone(),
    }
}

fn atomize_all(seq: &[Item<'_>]) -> Vec<Atom> {
    seq.iter().map(atomize).collect()
}

fn is_numeric_lexical(s: &str, allow_exponent: bool) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) if allow_exponent => (&s[..i], Some(&s[i + 1..])),
        Some(_) => return false,
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int)
        && frac.is_none_or(digits)
        && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

fn xml_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
}

fn parse_double(s: &str) -> Result<f64, XPathError> {
    let t = xml_trim(s);
    match t {
        "INF" | "+INF" => return Ok(f64::INFINITY),
        "-INF" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    if !is_numeric_lexical(t, true) {
        return err(format!("`{}` is not a number (FORG0001)", shorten(s)));
    }
    t.parse::<f64>()
        .map_err(|_| XPathError(format!("`{}` is not a number (FORG0001)", shorten(s))))
}

fn parse_decimal(s: &str) -> Result<Decimal, XPathError> {
    let t = xml_trim(s);
    if !is_numeric_lexical(t, false) {
        return err(format!("`{}` is not a decimal (FORG0001)", shorten(s)));
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let mut owned = t.to_owned();
    if owned.ends_with('.') {
        owned.pop();
    }
    if owned.starts_with('.') || owned.starts_with("-.") {
        owned = owned.replacen('.', "0.", 1);
    }
    Decimal::from_str(&owned)
        .map_err(|_| XPathError(format!("`{}` is out of the decimal range", shorten(s))))
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

fn dec_to_f64(d: Decimal) -> f64 {
    d.to_string().parse().unwrap_or(f64::NAN)
}

fn decimal_string(d: Decimal) -> String {
    let n = d.normalize();
    if n.is_zero() {
        "0".to_owned()
    } else {
        n.to_string()
    }
}

fn double_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "INF" } else { "-INF" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let a = x.abs();
    if (1e-6..1e6).contains(&a) {
        let s = format!("{x}");
        s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
    } else {
        let s = format!("{x:E}");
        // Rust: 1.5E20 / 1E20; XPath: 1.5E20 / 1.0E20.
        match s.split_once('E') {
            Some((m, e)) if !m.contains('.') => format!("{m}.0E{e}"),
            _ => s,
        }
    }
}

impl Atom {
    pub fn string(&self) -> String {
        match self {
            Atom::Untyped(s) | Atom::Str(s) => s.to_string(),
            Atom::Bool(b) => b.to_string(),
            Atom::Dec(d) => decimal_string(*d),
            Atom::Dbl(x) => double_string(*x),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Atom::Dec(_) | Atom::Dbl(_))
    }

    fn to_double(&self) -> Result<f64, XPathError> {
        match self {
            Atom::Untyped(s) | Atom::Str(s) => parse_double(s),
            Atom::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
            Atom::Dec(d) => Ok(dec_to_f64(*d)),
            Atom::Dbl(x) => Ok(*x),
        }
    }

    fn to_decimal(&self) -> Result<Decimal, XPathError> {
        match self {
            Atom::Untyped(s) | Atom::Str(s) => parse_decimal(s),
            Atom::Bool(b) => Ok(if *b { Decimal::ONE } else { Decimal::ZERO }),
            Atom::Dec(d) => Ok(*d),
            Atom::Dbl(x) => {
                if !x.is_finite() {
                    return err(format!(
                        "{} cannot be a decimal (FOCA0002)",
                        double_string(*x)
                    ));
                }
                // The double's shortest decimal form, as the reference processor casts it.
                Decimal::from_str(&format!("{x}"))
                    .or_else(|_| Decimal::from_scientific(&format!("{x:e}")))
                    .map_err(|_| XPathError("a number out of the decimal range".into()))
            }
        }
    }

    fn to_bool(&self) -> Result<bool, XPathError> {
        match self {
            Atom::Untyped(s) | Atom::Str(s) => match xml_trim(s) {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => err(format!("`{}` is not a boolean (FORG0001)", shorten(s))),
            },
            Atom::Bool(b) => Ok(*b),
            Atom::Dec(d) => Ok(!d.is_zero()),
            Atom::Dbl(x) => Ok(*x != 0.0 && !x.is_nan()),
        }
    }
}

// ------------------------------------------------------------------ syntax

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Child,
    Attribute,
    Parent,
    SelfAxis,
    Descendant,
    DescendantOrSelf,
    Ancestor,
    AncestorOrSelf,
    PrecedingSibling,
    FollowingSibling,
}

impl Axis {
    fn named(name: &str) -> Option<Axis> {
        Some(match name {
            "child" => Axis::Child,
            "attribute" => Axis::Attribute,
            "parent" => Axis::Parent,
            "self" => Axis::SelfAxis,
            "descendant" => Axis::Descendant,
            "descendant-or-self" => Axis::DescendantOrSelf,
            "ancestor" => Axis::Ancestor,
            "ancestor-or-self" => Axis::AncestorOrSelf,
            "preceding-sibling" => Axis::PrecedingSibling,
            "following-sibling" => Axis::FollowingSibling,
            _ => return None,
        })
    }

    fn reverse(self) -> bool {
        matches!(
            self,
            Axis::Parent | Axis::Ancestor | Axis::AncestorOrSelf | Axis::PrecedingSibling
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeTest {
    /// A name: namespace (None: no namespace) and local name; `None` local is `prefix:*`.
    Name(Option<String>, Option<String>),
    /// `*`.
    Any,
    /// `node()`.
    Node,
    /// `text()`.
    Text,
    /// `comment()`, `processing-instruction()`: never in the invoices' checks' way.
    Other,
    /// `element()`.
    Element,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    IDiv,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    Decimal,
    Integer,
    Double,
    Boolean,
    String,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Sequence(Vec<Expr>),
    For(Vec<(String, Expr)>, Box<Expr>),
    Quantified {
        every: bool,
        bindings: Vec<(String, Expr)>,
        test: Box<Expr>,
    },
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    General(Cmp, Box<Expr>, Box<Expr>),
    Value(Cmp, Box<Expr>, Box<Expr>),
    Range(Box<Expr>, Box<Expr>),
    Arith(Arith, Box<Expr>, Box<Expr>),
    Negate(Box<Expr>),
    Union(Box<Expr>, Box<Expr>),
    Cast {
        expr: Box<Expr>,
        to: AtomicType,
        optional: bool,
        castable: bool,
    },
    Root,
    Path(Box<Expr>, Box<Expr>),
    Step {
        axis: Axis,
        test: NodeTest,
        predicates: Vec<Expr>,
    },
    Filter(Box<Expr>, Vec<Expr>),
    Context,
    Literal(Atom),
    Variable(String),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Var(String),
    Str(String),
    Num(String),
    Sym(&'static str),
}

const SYMBOLS: [&str; 22] = [
    "//", "::", "..", "!=", "<=", ">=", "/", "(", ")", "[", "]", "@", ",", ".", "|", "=", "<", ">",
    "+", "-", "*", "$",
];

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '\u{B7}')
}

fn tokenize(src: &str) -> Result<Vec<Tok>, XPathError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' && chars.get(i + 1) == Some(&':') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '(' && chars.get(i + 1) == Some(&':') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == ':' && chars.get(i + 1) == Some(&')') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err("unterminated string literal"),
                    Some(&q) if q == c => {
                        if chars.get(i + 1) == Some(&c) {
                            s.push(c);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                i += 1;
                if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
            continue;
        }
        if c == '$' {
            i += 1;
            let start = i;
            while i < chars.len() && (is_name_char(chars[i]) || chars[i] == ':') {
                i += 1;
            }
            if start == i {
                return err("`$` without a variable name");
            }
            out.push(Tok::Var(chars[start..i].iter().collect()));
            continue;
        }
        if is_name_start(c) {
            let start = i;
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            // A QName (`ram:Name`) or `prefix:*`, but not an axis (`child::`).
            if chars.get(i) == Some(&':') && chars.get(i + 1) != Some(&':') {
                if chars.get(i + 1) == Some(&'*') {
                    i += 2;
                } else if chars.get(i + 1).is_some_and(|&c| is_name_start(c)) {
                    i += 1;
                    while i < chars.len() && is_name_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            out.push(Tok::Name(chars[start..i].iter().collect()));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) if *sym != "$" => {
                out.push(Tok::Sym(sym));
                i += sym.len();
            }
            _ => return err(format!("unexpected character `{c}`")),
        }
    }
    Ok(out)
}

/// Resolves a prefix to its namespace; `None` for an unknown prefix.
pub type Namespaces<'n> = &'n dyn Fn(&str) -> Option<String>;

struct Parser<'n> {
    toks: Vec<Tok>,
    pos: usize,
    ns: Namespaces<'n>,
    depth: usize,
}

/// Deepest nesting of parentheses, steps and signs: the rules nest about ten deep, and
/// each level costs the recursive-descent parser a dozen frames.
const MAX_DEPTH: usize = 48;

/// Parses an expression; prefixes are resolved with `ns`.
pub fn parse(src: &str, ns: Namespaces<'_>) -> Result<Expr, XPathError> {
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
        ns,
        depth: 0,
    };
    let e = p.expr()?;
    if p.pos != p.toks.len() {
        return err(format!(
            "unexpected {:?} in `{}`",
            p.toks[p.pos],
            shorten(src)
        ));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, k: usize) -> Option<&Tok> {
        self.toks.get(self.pos + k)
    }

    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Sym(x)) if *x == s)
    }

    fn is_name(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(x)) if x == s)
    }

    fn eat_sym(&mut self, s: &str) -> bool {
        if self.is_sym(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_name(&mut self, s: &str) -> bool {
        if self.is_name(s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, s: &str) -> Result<(), XPathError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            err(format!("expected `{s}`, found {:?}", self.peek()))
        }
    }

    fn expect_name(&mut self, s: &str) -> Result<(), XPathError> {
        if self.eat_name(s) {
            Ok(())
        } else {
            err(format!("expected `{s}`, found {:?}", self.peek()))
        }
    }

    fn enter(&mut self) -> Result<(), XPathError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("expression nested too deeply");
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, XPathError> {
        self.enter()?;
        let mut items = vec![self.expr_single()?];
        while self.eat_sym(",") {
            items.push(self.expr_single()?);
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Expr::Sequence(items)
        })
    }

    fn bindings(&mut self) -> Result<Vec<(String, Expr)>, XPathError> {
        let mut out = Vec::new();
        loop {
            let Some(Tok::Var(name)) = self.peek().cloned() else {
                return err("expected a variable");
            };
            self.pos += 1;
            self.expect_name("in")?;
            out.push((name, self.expr_single()?));
            if !self.eat_sym(",") {
                return Ok(out);
            }
        }
    }

    fn expr_single(&mut self) -> Result<Expr, XPathError> {
        let keyword_then = |p: &Self, k: &str, next: fn(&Tok) -> bool| {
            p.is_name(k) && p.peek_at(1).is_some_and(next)
        };
        if keyword_then(self, "for", |t| matches!(t, Tok::Var(_))) {
            self.pos += 1;
            let bindings = self.bindings()?;
            self.expect_name("return")?;
            return Ok(Expr::For(bindings, Box::new(self.expr_single()?)));
        }
        for (k, every) in [("some", false), ("every", true)] {
            if keyword_then(self, k, |t| matches!(t, Tok::Var(_))) {
                self.pos += 1;
                let bindings = self.bindings()?;
                self.expect_name("satisfies")?;
                return Ok(Expr::Quantified {
                    every,
                    bindings,
                    test: Box::new(self.expr_single()?),
                });
            }
        }
        if keyword_then(self, "if", |t| *t == Tok::Sym("(")) {
            self.pos += 1;
            self.expect_sym("(")?;
            let cond = self.expr()?;
            self.expect_sym(")")?;
            self.expect_name("then")?;
            let then = self.expr_single()?;
            self.expect_name("else")?;
            let otherwise = self.expr_single()?;
            return Ok(Expr::If(
                Box::new(cond),
                Box::new(then),
                Box::new(otherwise),
            ));
        }
        self.or()
    }

    fn or(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.and()?;
        while self.eat_name("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.comparison()?;
        while self.eat_name("and") {
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, XPathError> {
        let left = self.range()?;
        let general = [
            ("=", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        for (s, c) in general {
            if self.eat_sym(s) {
                return Ok(Expr::General(c, Box::new(left), Box::new(self.range()?)));
            }
        }
        let value = [
            ("eq", Cmp::Eq),
            ("ne", Cmp::Ne),
            ("lt", Cmp::Lt),
            ("le", Cmp::Le),
            ("gt", Cmp::Gt),
            ("ge", Cmp::Ge),
        ];
        for (s, c) in value {
            if self.eat_name(s) {
                return Ok(Expr::Value(c, Box::new(left), Box::new(self.range()?)));
            }
        }
        Ok(left)
    }

    fn range(&mut self) -> Result<Expr, XPathError> {
        let left = self.additive()?;
        if self.eat_name("to") {
            return Ok(Expr::Range(Box::new(left), Box::new(self.additive()?)));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = if self.eat_sym("+") {
                Arith::Add
            } else if self.eat_sym("-") {
                Arith::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Arith(op, Box::new(left), Box::new(self.multiplicative()?));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.union()?;
        loop {
            let op = if self.eat_sym("*") {
                Arith::Mul
            } else if self.eat_name("div") {
                Arith::Div
            } else if self.eat_name("idiv") {
                Arith::IDiv
            } else if self.eat_name("mod") {
                Arith::Mod
            } else {
                return Ok(left);
            };
            left = Expr::Arith(op, Box::new(left), Box::new(self.union()?));
        }
    }

    fn union(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.cast()?;
        while self.eat_sym("|") || self.eat_name("union") {
            left = Expr::Union(Box::new(left), Box::new(self.cast()?));
        }
        Ok(left)
    }

    fn cast(&mut self) -> Result<Expr, XPathError> {
        let expr = self.unary()?;
        let castable =
            if self.is_name("cast") && matches!(self.peek_at(1), Some(Tok::Name(n)) if n == "as") {
                false
            } else if self.is_name("castable")
                && matches!(self.peek_at(1), Some(Tok::Name(n)) if n == "as")
            {
                true
            } else {
                return Ok(expr);
            };
        self.pos += 2;
        let Some(Tok::Name(ty)) = self.peek().cloned() else {
            return err("expected a type after `cast as`");
        };
        self.pos += 1;
        let to = self.atomic_type(&ty)?;
        let optional = self.eat_sym("?");
        Ok(Expr::Cast {
            expr: Box::new(expr),
            to,
            optional,
            castable,
        })
    }

    fn atomic_type(&self, name: &str) -> Result<AtomicType, XPathError> {
        let (prefix, local) = name.split_once(':').unwrap_or(("", name));
        if (self.ns)(prefix).as_deref() != Some("http://www.w3.org/2001/XMLSchema") {
            return err(format!("`{name}` is not an XML Schema type"));
        }
        Ok(match local {
            "decimal" => AtomicType::Decimal,
            "integer" => AtomicType::Integer,
            "double" => AtomicType::Double,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            _ => return err(format!("type `{name}` is not supported")),
        })
    }

    fn unary(&mut self) -> Result<Expr, XPathError> {
        let mut negate = false;
        let mut signs = 0;
        while self.is_sym("-") || self.is_sym("+") {
            negate ^= self.is_sym("-");
            self.pos += 1;
            signs += 1;
            if signs > MAX_DEPTH {
                return err("too many signs");
            }
        }
        let e = self.path()?;
        Ok(if negate { Expr::Negate(Box::new(e)) } else { e })
    }

    fn path(&mut self) -> Result<Expr, XPathError> {
        if self.eat_sym("/") {
            if self.starts_step() {
                let rel = self.relative()?;
                return Ok(Expr::Path(Box::new(Expr::Root), Box::new(rel)));
            }
            return Ok(Expr::Root);
        }
        if self.eat_sym("//") {
            let rel = self.relative()?;
            return Ok(Expr::Path(Box::new(Expr::Root), Box::new(any_depth(rel))));
        }
        self.relative()
    }

    fn starts_step(&self) -> bool {
        match self.peek() {
            Some(Tok::Name(_)) | Some(Tok::Var(_)) | Some(Tok::Str(_)) | Some(Tok::Num(_)) => true,
            Some(Tok::Sym(s)) => matches!(*s, "@" | "." | ".." | "*" | "("),
            None => false,
        }
    }

    fn relative(&mut self) -> Result<Expr, XPathError> {
        let mut left = self.step()?;
        loop {
            if self.eat_sym("/") {
                let right = self.step()?;
                left = Expr::Path(Box::new(left), Box::new(right));
            } else if self.eat_sym("//") {
                let right = self.step()?;
                left = Expr::Path(Box::new(left), Box::new(any_depth(right)));
            } else {
                return Ok(left);
            }
        }
    }

    fn predicates(&mut self) -> Result<Vec<Expr>, XPathError> {
        let mut out = Vec::new();
        while self.eat_sym("[") {
            out.push(self.expr()?);
            self.expect_sym("]")?;
        }
        Ok(out)
    }

    fn step(&mut self) -> Result<Expr, XPathError> {
        self.enter()?;
        let e = self.step_inner();
        self.depth -= 1;
        e
    }

    fn step_inner(&mut self) -> Result<Expr, XPathError> {
        if self.eat_sym("..") {
            return Ok(Expr::Step {
                axis: Axis::Parent,
                test: NodeTest::Node,
                predicates: self.predicates()?,
            });
        }
        if self.eat_sym("@") {
            let test = self.node_test(Axis::Attribute)?;
            return Ok(Expr::Step {
                axis: Axis::Attribute,
                test,
                predicates: self.predicates()?,
            });
        }
        if let Some(Tok::Name(name)) = self.peek().cloned() {
            if self.peek_at(1) == Some(&Tok::Sym("::")) {
                let axis =
                    Axis::named(&name).ok_or_else(|| XPathError(format!("axis `{name}`")))?;
                self.pos += 2;
                let test = self.node_test(axis)?;
                return Ok(Expr::Step {
                    axis,
                    test,
                    predicates: self.predicates()?,
                });
            }
            let call = self.peek_at(1) == Some(&Tok::Sym("("));
            let kind_test = matches!(
                name.as_str(),
                "node" | "text" | "comment" | "processing-instruction" | "element"
            );
            if !call || kind_test {
                let test = self.node_test(Axis::Child)?;
                return Ok(Expr::Step {
                    axis: Axis::Child,
                    test,
                    predicates: self.predicates()?,
                });
            }
        }
        if self.is_sym("*") {
            let test = self.node_test(Axis::Child)?;
            return Ok(Expr::Step {
                axis: Axis::Child,
                test,
                predicates: self.predicates()?,
            });
        }
        let primary = self.primary()?;
        let predicates = self.predicates()?;
        Ok(if predicates.is_empty() {
            primary
        } else {
            Expr::Filter(Box::new(primary), predicates)
        })
    }

    fn node_test(&mut self, axis: Axis) -> Result<NodeTest, XPathError> {
        if self.eat_sym("*") {
            return Ok(NodeTest::Any);
        }
        let Some(Tok::Name(name)) = self.peek().cloned() else {
            return err(format!("expected a node test, found {:?}", self.peek()));
        };
        self.pos += 1;
        if self.is_sym("(") {
            self.pos += 1;
            self.expect_sym(")")?;
            return match name.as_str() {
                "node" => Ok(NodeTest::Node),
                "text" => Ok(NodeTest::Text),
                "element" => Ok(NodeTest::Element),
                "comment" | "processing-instruction" => Ok(NodeTest::Other),
                _ => err(format!("`{name}()` is not a node test")),
            };
        }
        match name.split_once(':') {
            Some((prefix, local)) => {
                let uri = (self.ns)(prefix)
                    .ok_or_else(|| XPathError(format!("unknown prefix `{prefix}`")))?;
                let local = (local != "*").then(|| local.to_owned());
                Ok(NodeTest::Name(Some(uri), local))
            }
            // Unprefixed names are in no namespace (no default element namespace is declared).
            None => {
                let _ = axis;
                Ok(NodeTest::Name(None, Some(name)))
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, XPathError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Expr::Literal(Atom::Str(s.into())))
            }
            Some(Tok::Num(n)) => {
                self.pos += 1;
                let atom = if n.contains(['e', 'E']) {
                    Atom::Dbl(parse_double(&n)?)
                } else {
                    Atom::Dec(parse_decimal(&n)?)
                };
                Ok(Expr::Literal(atom))
            }
            Some(Tok::Var(v)) => {
                self.pos += 1;
                Ok(Expr::Variable(v))
            }
            Some(Tok::Sym("(")) => {
                self.pos += 1;
                if self.eat_sym(")") {
                    return Ok(Expr::Sequence(Vec::new()));
                }
                let e = self.expr()?;
                self.expect_sym(")")?;
                Ok(match e {
                    Expr::Sequence(_) => e,
                    other => Expr::Sequence(vec![other]),
                })
            }
            Some(Tok::Sym(".")) => {
                self.pos += 1;
                Ok(Expr::Context)
            }
            Some(Tok::Name(name)) if self.peek_at(1) == Some(&Tok::Sym("(")) => {
                self.pos += 2;
                let mut args = Vec::new();
                if !self.eat_sym(")") {
                    loop {
                        args.push(self.expr_single()?);
                        if self.eat_sym(")") {
                            break;
                        }
                        self.expect_sym(",")?;
                    }
                }
                let name = match name.split_once(':') {
                    Some((prefix, local)) => match (self.ns)(prefix).as_deref() {
                        Some("http://www.w3.org/2001/XMLSchema") => format!("xs:{local}"),
                        Some("http://www.w3.org/2005/xpath-functions") => local.to_owned(),
                        _ => return err(format!("unknown function `{name}`")),
                    },
                    None => name,
                };
                check_function(&name, args.len())?;
                Ok(Expr::Call(name, args))
            }
            other => err(format!("unexpected {other:?}")),
        }
    }
}

/// `//rel`: `descendant-or-self::node()/rel`, or — when `rel` starts with a child step whose
/// predicates read no position and yield no number — that step on the descendant axis, which
/// selects the same nodes in one walk instead of a child step from every node.
fn any_depth(rel: Expr) -> Expr {
    fn fold(e: &Expr) -> Option<Expr> {
        match e {
            Expr::Step {
                axis: Axis::Child,
                test,
                predicates,
            } if predicates.iter().all(never_a_position) => Some(Expr::Step {
                axis: Axis::Descendant,
                test: test.clone(),
                predicates: predicates.clone(),
            }),
            Expr::Path(first, rest) => {
                fold(first).map(|first| Expr::Path(Box::new(first), rest.clone()))
            }
            _ => None,
        }
    }
    fold(&rel).unwrap_or_else(|| Expr::Path(Box::new(descendant_or_self()), Box::new(rel)))
}

/// Whether a predicate's value is a boolean or nodes whatever the input — never a number
/// (which would select by position) — and reads no position.
fn never_a_position(e: &Expr) -> bool {
    let boolean = match e {
        Expr::Or(..) | Expr::And(..) | Expr::General(..) | Expr::Value(..) => true,
        Expr::Quantified { .. } => true,
        Expr::Call(name, _) => matches!(
            name.as_str(),
            "not"
                | "boolean"
                | "exists"
                | "empty"
                | "contains"
                | "starts-with"
                | "ends-with"
                | "matches"
                | "true"
                | "false"
        ),
        Expr::Path(_, last) => matches!(**last, Expr::Step { .. }),
        Expr::Step { .. } => true,
        _ => false,
    };
    boolean && !uses_position(e)
}

fn descendant_or_self() -> Expr {
    Expr::Step {
        axis: Axis::DescendantOrSelf,
        test: NodeTest::Node,
        predicates: Vec::new(),
    }
}

/// The functions the evaluator knows, with their arities.
const FUNCTIONS: [(&str, usize, usize); 43] = [
    ("replace", 3, 3),
    ("translate", 3, 3),
    ("string-to-codepoints", 1, 1),
    ("distinct-values", 1, 1),
    ("codelist-contains", 2, 2),
    ("string-join", 1, 2),
    ("count", 1, 1),
    ("sum", 1, 2),
    ("true", 0, 0),
    ("false", 0, 0),
    ("not", 1, 1),
    ("boolean", 1, 1),
    ("exists", 1, 1),
    ("empty", 1, 1),
    ("string-length", 0, 1),
    ("string", 0, 1),
    ("normalize-space", 0, 1),
    ("upper-case", 1, 1),
    ("lower-case", 1, 1),
    ("substring-after", 2, 2),
    ("substring-before", 2, 2),
    ("substring", 2, 3),
    ("contains", 2, 2),
    ("starts-with", 2, 2),
    ("ends-with", 2, 2),
    ("concat", 2, usize::MAX),
    ("tokenize", 2, 2),
    ("matches", 2, 2),
    ("round", 1, 1),
    ("abs", 1, 1),
    ("floor", 1, 1),
    ("ceiling", 1, 1),
    ("number", 0, 1),
    ("name", 0, 1),
    ("local-name", 0, 1),
    ("namespace-uri", 0, 1),
    ("position", 0, 0),
    ("last", 0, 0),
    ("xs:decimal", 1, 1),
    ("xs:double", 1, 1),
    ("xs:integer", 1, 1),
    ("xs:string", 1, 1),
    ("xs:boolean", 1, 1),
];

fn check_function(name: &str, arity: usize) -> Result<(), XPathError> {
    match FUNCTIONS.iter().find(|(n, _, _)| *n == name) {
        Some((_, min, max)) if (*min..=*max).contains(&arity) => Ok(()),
        Some(_) => err(format!("`{name}` does not take {arity} arguments")),
        None => err(format!("function `{name}` is not supported")),
    }
}

// ------------------------------------------------------------------ evaluation

/// Evaluation state: variables in scope and the remaining fuel.
pub struct Evaluator<'a> {
    vars: Vec<(String, Seq<'a>)>,
    fuel: u64,
    codelists: Option<&'a std::collections::HashMap<String, std::collections::HashSet<String>>>,
    /// The patterns of fn:matches, fn:tokenize and fn:replace, compiled once.
    regexes: std::collections::HashMap<String, regex::Regex>,
    /// What an absolute path that reads no variable selected (keyed by the expression's
    /// address): the same for every context in the one document an evaluator sees. The rules
    /// ask `//ram:…` paths at many nodes.
    absolute: std::collections::HashMap<usize, Seq<'a>>,
    /// Whether the absolute path at an address reads a variable (and so is not kept).
    reads_variables: std::collections::HashMap<usize, bool>,
    /// How many items `absolute` holds.
    absolute_items: usize,
}

/// Most items the absolute paths' answers kept by one evaluator hold in all.
const MAX_KEPT_ITEMS: usize = 500_000;

#[derive(Clone)]
struct Focus<'a> {
    item: Option<Item<'a>>,
    position: usize,
    size: usize,
}

impl<'a> Evaluator<'a> {
    pub fn new(fuel: u64) -> Self {
        Evaluator {
            vars: Vec::new(),
            fuel,
            codelists: None,
            regexes: std::collections::HashMap::new(),
            absolute: std::collections::HashMap::new(),
            reads_variables: std::collections::HashMap::new(),
            absolute_items: 0,
        }
    }

    /// The code lists `codelist-contains(id, $values)` reads.
    pub fn with_codelists(
        mut self,
        lists: &'a std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Self {
        self.codelists = Some(lists);
        self
    }

    pub fn fuel(&self) -> u64 {
        self.fuel
    }

    pub fn bind(&mut self, name: &str, value: Seq<'a>) {
        self.vars.push((name.to_owned(), value));
    }

    pub fn unbind(&mut self, count: usize) {
        let keep = self.vars.len().saturating_sub(count);
        self.vars.truncate(keep);
    }

    /// Evaluates `expr` with `context` as the context item.
    pub fn eval(&mut self, expr: &Expr, context: Item<'a>) -> Result<Seq<'a>, XPathError> {
        let focus = Focus {
            item: Some(context),
            position: 1,
            size: 1,
        };
        self.eval_in(expr, &focus)
    }

    /// The effective boolean value of `expr` at `context`.
    pub fn test(&mut self, expr: &Expr, context: Item<'a>) -> Result<bool, XPathError> {
        let seq = self.eval(expr, context)?;
        ebv(&seq)
    }

    fn burn(&mut self, n: u64) -> Result<(), XPathError> {
        if self.fuel < n {
            return err("the checks ran out of their step budget");
        }
        self.fuel -= n;
        Ok(())
    }

    fn eval_in(&mut self, expr: &Expr, f: &Focus<'a>) -> Result<Seq<'a>, XPathError> {
        self.burn(1)?;
        match expr {
            Expr::Sequence(items) => {
                let mut out = Vec::new();
                for e in items {
                    out.extend(self.eval_in(e, f)?);
                }
                Ok(out)
            }
            Expr::For(bindings, body) => {
                let mut out = Vec::new();
                self.for_each(bindings, f, &mut |ev, f| {
                    out.extend(ev.eval_in(body, f)?);
                    Ok(true)
                })?;
                Ok(out)
            }
            Expr::Quantified {
                every,
                bindings,
                test,
            } => {
                let every = *every;
                let mut result = every;
                // A conjunct of the test that reads none of the bound variables has one value
                // for every item: evaluated once, at its first use (a rule's `every $line in …
                // satisfies matches($line, …) and matches(<the whole text>, …)` would otherwise
                // read the whole text again for each line).
                let names: Vec<&str> = bindings.iter().map(|(n, _)| n.as_str()).collect();
                let mut conjuncts = Vec::new();
                flatten_and(test, &mut conjuncts);
                let invariant: Vec<bool> =
                    conjuncts.iter().map(|c| !reads_any_of(c, &names)).collect();
                let mut known: Vec<Option<bool>> = vec![None; conjuncts.len()];
                self.for_each(bindings, f, &mut |ev, f| {
                    let mut t = true;
                    for (i, c) in conjuncts.iter().enumerate() {
                        let value = match known[i] {
                            Some(v) => v,
                            None => {
                                let v = ebv(&ev.eval_in(c, f)?)?;
                                if invariant[i] {
                                    known[i] = Some(v);
                                }
                                v
                            }
                        };
                        if !value {
                            t = false;
                            break;
                        }
                    }
                    if t != every {
                        result = !every;
                        return Ok(false);
                    }
                    Ok(true)
                })?;
                Ok(vec![Item::Atom(Atom::Bool(result))])
            }
            Expr::If(c, t, e) => {
                if ebv(&self.eval_in(c, f)?)? {
                    self.eval_in(t, f)
                } else {
                    self.eval_in(e, f)
                }
            }
            Expr::Or(a, b) => {
                let v = ebv(&self.eval_in(a, f)?)? || ebv(&self.eval_in(b, f)?)?;
                Ok(vec![Item::Atom(Atom::Bool(v))])
            }
            Expr::And(a, b) => {
                let v = ebv(&self.eval_in(a, f)?)? && ebv(&self.eval_in(b, f)?)?;
                Ok(vec![Item::Atom(Atom::Bool(v))])
            }
            Expr::General(op, a, b) => {
                let left = atomize_all(&self.eval_in(a, f)?);
                let right = atomize_all(&self.eval_in(b, f)?);
                self.burn((left.len() * right.len()) as u64)?;
                for x in &left {
                    for y in &right {
                        if general_compare(*op, x, y)? {
                            return Ok(vec![Item::Atom(Atom::Bool(true))]);
                        }
                    }
                }
                Ok(vec![Item::Atom(Atom::Bool(false))])
            }
            Expr::Value(op, a, b) => {
                let (Some(x), Some(y)) = (self.single(a, f)?, self.single(b, f)?) else {
                    return Ok(Vec::new());
                };
                let x = untyped_as_string(x);
                let y = untyped_as_string(y);
                Ok(vec![Item::Atom(Atom::Bool(value_compare(*op, &x, &y)?))])
            }
            Expr::Range(a, b) => {
                let (Some(x), Some(y)) = (self.single(a, f)?, self.single(b, f)?) else {
                    return Ok(Vec::new());
                };
                let (x, y) = (integer_of(&x)?, integer_of(&y)?);
                if y - x > 100_000 {
                    return err("range too long");
                }
                Ok((x..=y)
                    .map(|i| Item::Atom(Atom::Dec(Decimal::from(i))))
                    .collect())
            }
            Expr::Arith(op, a, b) => {
                let (Some(x), Some(y)) = (self.single(a, f)?, self.single(b, f)?) else {
                    return Ok(Vec::new());
                };
                Ok(vec![Item::Atom(arith(*op, &x, &y)?)])
            }
            Expr::Negate(a) => {
                let Some(x) = self.single(a, f)? else {
                    return Ok(Vec::new());
                };
                Ok(vec![Item::Atom(match numeric(&x)? {
                    Atom::Dec(d) => Atom::Dec(-d),
                    Atom::Dbl(v) => Atom::Dbl(-v),
                    _ => unreachable!("numeric"),
                })])
            }
            Expr::Union(a, b) => {
                let mut all = self.eval_in(a, f)?;
                all.extend(self.eval_in(b, f)?);
                nodes_in_order(all)
            }
            Expr::Cast {
                expr,
                to,
                optional,
                castable,
            } => {
                let value = self.single(expr, f);
                let result = match value {
                    Ok(None) if *optional => Ok(None),
                    Ok(None) => err("cast of an empty sequence (XPTY0004)"),
                    Ok(Some(a)) => cast(&a, *to).map(Some),
                    Err(e) => Err(e),
                };
                if *castable {
                    return Ok(vec![Item::Atom(Atom::Bool(result.is_ok()))]);
                }
                Ok(result?.map(Item::Atom).into_iter().collect())
            }
            Expr::Root => match &f.item {
                Some(Item::Node(n)) => Ok(vec![Item::Node(Node::of(n.node.document().root()))]),
                _ => err("`/` without a context node (XPDY0050)"),
            },
            Expr::Path(a, b) if matches!(**a, Expr::Root) => {
                let key = expr as *const Expr as usize;
                if let Some(seq) = self.absolute.get(&key) {
                    // Copying the answer costs what it holds.
                    let seq = seq.clone();
                    self.burn(seq.len() as u64)?;
                    return Ok(seq);
                }
                let reads = *self
                    .reads_variables
                    .entry(key)
                    .or_insert_with(|| reads_variables(b));
                let seq = self.path(a, b, f)?;
                // Kept while what is kept stays small (a hostile document of 200,000 nodes
                // must not make every path's answer a copy of it).
                if !reads && self.absolute_items + seq.len() <= MAX_KEPT_ITEMS {
                    self.absolute_items += seq.len();
                    self.absolute.insert(key, seq.clone());
                }
                Ok(seq)
            }
            Expr::Path(a, b) => self.path(a, b, f),
            Expr::Step {
                axis,
                test,
                predicates,
            } => {
                let Some(Item::Node(n)) = &f.item else {
                    return err("a step without a context node (XPTY0020)");
                };
                let mut found: Vec<Item<'a>> = if *axis == Axis::Child && n.attr.is_none() {
                    // The common step, without collecting every child first.
                    let mut out = Vec::new();
                    let mut visited = 0u64;
                    for c in n.node.children() {
                        visited += 1;
                        let c = Node::of(c);
                        if matches_test(&c, Axis::Child, test) {
                            out.push(Item::Node(c));
                        }
                    }
                    self.burn(visited)?;
                    out
                } else {
                    self.axis(*n, *axis)?
                        .into_iter()
                        .filter(|m| matches_test(m, *axis, test))
                        .map(Item::Node)
                        .collect()
                };
                for p in predicates {
                    found = self.filter(found, p)?;
                }
                if axis.reverse() {
                    found.reverse();
                }
                Ok(found)
            }
            Expr::Filter(e, predicates) => {
                let mut seq = self.eval_in(e, f)?;
                for p in predicates {
                    seq = self.filter(seq, p)?;
                }
                Ok(seq)
            }
            Expr::Context => match &f.item {
                Some(i) => Ok(vec![i.clone()]),
                None => err("`.` without a context item (XPDY0002)"),
            },
            Expr::Literal(a) => Ok(vec![Item::Atom(a.clone())]),
            Expr::Variable(name) => match self.vars.iter().rev().find(|(n, _)| n == name) {
                Some((_, v)) => Ok(v.clone()),
                None => err(format!("variable `${name}` is not bound")),
            },
            Expr::Call(name, args) => self.call(name, args, f),
        }
    }

    /// `a/b`: `b` from each node `a` selects; nodes in document order without duplicates.
    fn path(&mut self, a: &Expr, b: &Expr, f: &Focus<'a>) -> Result<Seq<'a>, XPathError> {
        let left = self.eval_in(a, f)?;
        let size = left.len();
        let mut out = Vec::new();
        let mut nodes = true;
        let mut atoms = true;
        for (i, item) in left.into_iter().enumerate() {
            if !matches!(item, Item::Node(_)) {
                return err("a path step over a value that is not a node (XPTY0019)");
            }
            let inner = Focus {
                item: Some(item),
                position: i + 1,
                size,
            };
            for r in self.eval_in(b, &inner)? {
                match r {
                    Item::Node(_) => atoms = false,
                    Item::Atom(_) => nodes = false,
                }
                out.push(r);
            }
        }
        if nodes {
            nodes_in_order(out)
        } else if atoms {
            Ok(out)
        } else {
            err("a path yields both nodes and values (XPTY0018)")
        }
    }

    fn for_each(
        &mut self,
        bindings: &[(String, Expr)],
        f: &Focus<'a>,
        body: &mut dyn FnMut(&mut Self, &Focus<'a>) -> Result<bool, XPathError>,
    ) -> Result<bool, XPathError> {
        let Some(((name, e), rest)) = bindings.split_first() else {
            return body(self, f);
        };
        let values = self.eval_in(e, f)?;
        for v in values {
            self.burn(1)?;
            self.vars.push((name.clone(), vec![v]));
            let go_on = self.for_each(rest, f, body);
            self.vars.pop();
            if !go_on? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn filter(&mut self, seq: Seq<'a>, predicate: &Expr) -> Result<Seq<'a>, XPathError> {
        let size = seq.len();
        let mut out = Vec::new();
        for (i, item) in seq.into_iter().enumerate() {
            let focus = Focus {
                item: Some(item.clone()),
                position: i + 1,
                size,
            };
            let v = self.eval_in(predicate, &focus)?;
            let keep = match v.as_slice() {
                [Item::Atom(a)] if a.is_numeric() => a.to_double()? == (i + 1) as f64,
                _ => ebv(&v)?,
            };
            if keep {
                out.push(item);
            }
        }
        Ok(out)
    }

    fn axis(&mut self, n: Node<'a>, axis: Axis) -> Result<Vec<Node<'a>>, XPathError> {
        let out: Vec<Node<'a>> = match axis {
            Axis::SelfAxis => vec![n],
            Axis::Parent => n.parent().into_iter().collect(),
            Axis::Attribute => {
                if n.attr.is_some() || !n.node.is_element() {
                    Vec::new()
                } else {
                    (0..n.node.attributes().len())
                        .map(|i| Node {
                            node: n.node,
                            attr: Some(i),
                        })
                        .collect()
                }
            }
            _ if n.attr.is_some() => match axis {
                Axis::Ancestor | Axis::AncestorOrSelf => {
                    let mut v = if axis == Axis::AncestorOrSelf {
                        vec![n]
                    } else {
                        Vec::new()
                    };
                    v.extend(n.node.ancestors().map(Node::of));
                    v
                }
                _ => Vec::new(),
            },
            Axis::Child => n.node.children().map(Node::of).collect(),
            Axis::Descendant => n.node.descendants().skip(1).map(Node::of).collect(),
            Axis::DescendantOrSelf => n.node.descendants().map(Node::of).collect(),
            Axis::Ancestor => n.node.ancestors().skip(1).map(Node::of).collect(),
            Axis::AncestorOrSelf => n.node.ancestors().map(Node::of).collect(),
            Axis::PrecedingSibling => n.node.prev_siblings().skip(1).map(Node::of).collect(),
            Axis::FollowingSibling => n.node.next_siblings().skip(1).map(Node::of).collect(),
        };
        self.burn(out.len() as u64)?;
        Ok(out)
    }

    /// At most one atomized item; `None` for the empty sequence.
    fn single(&mut self, e: &Expr, f: &Focus<'a>) -> Result<Option<Atom>, XPathError> {
        let seq = self.eval_in(e, f)?;
        match seq.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(atomize(one))),
            _ => err("more than one item where one is expected (XPTY0004)"),
        }
    }

    /// An XPath pattern (no flags) as a compiled regex, from the cache.
    fn regex(&mut self, pattern: &str) -> Result<regex::Regex, XPathError> {
        if let Some(re) = self.regexes.get(pattern) {
            return Ok(re.clone());
        }
        if self.regexes.len() > 256 {
            self.regexes.clear();
        }
        let re = regex::RegexBuilder::new(&xpath_regex(pattern))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| XPathError(format!("invalid pattern: {e}")))?;
        self.regexes.insert(pattern.to_owned(), re.clone());
        Ok(re)
    }

    fn string_arg(&mut self, args: &[Expr], i: usize, f: &Focus<'a>) -> Result<String, XPathError> {
        match args.get(i) {
            Some(e) => Ok(self.single(e, f)?.map(|a| a.string()).unwrap_or_default()),
            None => match &f.item {
                Some(item) => Ok(atomize(item).string()),
                None => err("no context item (XPDY0002)"),
            },
        }
    }

    fn node_arg(&mut self, args: &[Expr], f: &Focus<'a>) -> Result<Option<Node<'a>>, XPathError> {
        let seq = match args.first() {
            Some(e) => self.eval_in(e, f)?,
            None => f.item.clone().into_iter().collect(),
        };
        match seq.as_slice() {
            [] => Ok(None),
            [Item::Node(n)] => Ok(Some(*n)),
            _ => err("a node is expected (XPTY0004)"),
        }
    }

    fn call(&mut self, name: &str, args: &[Expr], f: &Focus<'a>) -> Result<Seq<'a>, XPathError> {
        let one = |a: Atom| Ok(vec![Item::Atom(a)]);
        let text = |s: String| Ok(vec![Item::Atom(Atom::Str(s.into()))]);
        match name {
            "true" => one(Atom::Bool(true)),
            "false" => one(Atom::Bool(false)),
            "not" => one(Atom::Bool(!ebv(&self.eval_in(&args[0], f)?)?)),
            "boolean" => one(Atom::Bool(ebv(&self.eval_in(&args[0], f)?)?)),
            "exists" => one(Atom::Bool(!self.eval_in(&args[0], f)?.is_empty())),
            "empty" => one(Atom::Bool(self.eval_in(&args[0], f)?.is_empty())),
            "count" => one(Atom::Dec(Decimal::from(self.eval_in(&args[0], f)?.len()))),
            "position" => one(Atom::Dec(Decimal::from(f.position))),
            "last" => one(Atom::Dec(Decimal::from(f.size))),
            "sum" => {
                let values = atomize_all(&self.eval_in(&args[0], f)?);
                if values.is_empty() {
                    return match args.get(1) {
                        Some(zero) => self.eval_in(zero, f),
                        None => one(Atom::Dec(Decimal::ZERO)),
                    };
                }
                let mut total: Option<Atom> = None;
                for v in values {
                    let v = numeric(&v)?;
                    total = Some(match total {
                        None => v,
                        Some(t) => arith(Arith::Add, &t, &v)?,
                    });
                }
                one(total.expect("non-empty"))
            }
            "string" => text(self.string_arg(args, 0, f)?),
            "string-length" => {
                let s = self.string_arg(args, 0, f)?;
                one(Atom::Dec(Decimal::from(s.chars().count())))
            }
            "normalize-space" => {
                let s = self.string_arg(args, 0, f)?;
                text(
                    s.split([' ', '\t', '\n', '\r'])
                        .filter(|w| !w.is_empty())
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            }
            "upper-case" => text(self.string_arg(args, 0, f)?.to_uppercase()),
            "lower-case" => text(self.string_arg(args, 0, f)?.to_lowercase()),
            "substring-after" | "substring-before" | "contains" | "starts-with" | "ends-with" => {
                let s = self.string_arg(args, 0, f)?;
                let t = self.string_arg(args, 1, f)?;
                match name {
                    "substring-after" => text(
                        s.find(&t)
                            .map(|i| s[i + t.len()..].to_owned())
                            .unwrap_or_default(),
                    ),
                    "substring-before" => {
                        text(s.find(&t).map(|i| s[..i].to_owned()).unwrap_or_default())
                    }
                    "contains" => one(Atom::Bool(s.contains(&t))),
                    "starts-with" => one(Atom::Bool(s.starts_with(&t))),
                    _ => one(Atom::Bool(s.ends_with(&t))),
                }
            }
            "substring" => {
                let s = self.string_arg(args, 0, f)?;
                let start = match self.single(&args[1], f)? {
                    Some(a) => round_half_up(numeric(&a)?.to_double()?),
                    None => return text(String::new()),
                };
                let end = match args.get(2) {
                    Some(e) => match self.single(e, f)? {
                        Some(a) => start + round_half_up(numeric(&a)?.to_double()?),
                        None => return text(String::new()),
                    },
                    None => f64::INFINITY,
                };
                text(
                    s.chars()
                        .enumerate()
                        .filter(|(i, _)| {
                            let p = (*i + 1) as f64;
                            p >= start && p < end
                        })
                        .map(|(_, c)| c)
                        .collect(),
                )
            }
            "codelist-contains" => {
                let id = self.string_arg(args, 0, f)?;
                let values = atomize_all(&self.eval_in(&args[1], f)?);
                let list = self
                    .codelists
                    .and_then(|l| l.get(&id))
                    .ok_or_else(|| XPathError(format!("no code list {id}")))?;
                one(Atom::Bool(
                    values.iter().any(|v| list.contains(v.string().as_str())),
                ))
            }
            "string-join" => {
                let parts: Vec<String> = atomize_all(&self.eval_in(&args[0], f)?)
                    .iter()
                    .map(Atom::string)
                    .collect();
                let sep = match args.get(1) {
                    Some(_) => self.string_arg(args, 1, f)?,
                    None => String::new(),
                };
                text(parts.join(&sep))
            }
            "concat" => {
                let mut s = String::new();
                for i in 0..args.len() {
                    s.push_str(&self.string_arg(args, i, f)?);
                }
                text(s)
            }
            "tokenize" | "matches" | "replace" => {
                let s = self.string_arg(args, 0, f)?;
                // A regex's work grows with its input: so does what it costs the budget.
                self.burn(1 + s.len() as u64 / 64)?;
                let pattern = self.string_arg(args, 1, f)?;
                let re = self.regex(&pattern)?;
                if name == "replace" {
                    if re.is_match("") {
                        return err("the pattern matches the empty string (FORX0003)");
                    }
                    let replacement = replacement(&self.string_arg(args, 2, f)?)?;
                    return text(re.replace_all(&s, replacement.as_str()).into_owned());
                }
                if name == "matches" {
                    return one(Atom::Bool(re.is_match(&s)));
                }
                if s.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(re
                    .split(&s)
                    .map(|t| Item::Atom(Atom::Str(t.into())))
                    .collect())
            }
            "round" | "abs" | "floor" | "ceiling" => {
                let Some(a) = self.single(&args[0], f)? else {
                    return Ok(Vec::new());
                };
                one(match numeric(&a)? {
                    Atom::Dec(d) => Atom::Dec(match name {
                        "round" => d.round_dp_with_strategy(
                            0,
                            if d.is_sign_negative() {
                                RoundingStrategy::MidpointTowardZero
                            } else {
                                RoundingStrategy::MidpointAwayFromZero
                            },
                        ),
                        "abs" => d.abs(),
                        "floor" => d.floor(),
                        _ => d.ceil(),
                    }),
                    Atom::Dbl(x) => Atom::Dbl(match name {
                        "round" => round_half_up(x),
                        "abs" => x.abs(),
                        "floor" => x.floor(),
                        _ => x.ceil(),
                    }),
                    _ => unreachable!("numeric"),
                })
            }
            "translate" => {
                let s = self.string_arg(args, 0, f)?;
                let from: Vec<char> = self.string_arg(args, 1, f)?.chars().collect();
                let to: Vec<char> = self.string_arg(args, 2, f)?.chars().collect();
                text(
                    s.chars()
                        .filter_map(|c| match from.iter().position(|x| *x == c) {
                            Some(i) => to.get(i).copied(),
                            None => Some(c),
                        })
                        .collect(),
                )
            }
            "string-to-codepoints" => Ok(self
                .string_arg(args, 0, f)?
                .chars()
                .map(|c| Item::Atom(Atom::Dec(Decimal::from(c as u32))))
                .collect()),
            "distinct-values" => {
                let mut seen: Vec<Atom> = Vec::new();
                for a in atomize_all(&self.eval_in(&args[0], f)?) {
                    let a = untyped_as_string(a);
                    self.burn(seen.len() as u64)?;
                    let dup = seen
                        .iter()
                        .any(|b| value_compare(Cmp::Eq, &a, b).unwrap_or(false));
                    if !dup {
                        seen.push(a);
                    }
                }
                Ok(seen.into_iter().map(Item::Atom).collect())
            }
            "number" => {
                let v = match args.first() {
                    Some(e) => self.eval_in(e, f)?.first().map(atomize),
                    None => f.item.as_ref().map(atomize),
                };
                one(Atom::Dbl(
                    v.and_then(|a| a.to_double().ok()).unwrap_or(f64::NAN),
                ))
            }
            "name" | "local-name" | "namespace-uri" => {
                let Some(n) = self.node_arg(args, f)? else {
                    return text(String::new());
                };
                let (ns, local) = n.name_parts().unwrap_or((None, ""));
                text(match name {
                    "name" => n.qualified_name(),
                    "local-name" => local.to_owned(),
                    _ => ns.unwrap_or("").to_owned(),
                })
            }
            "xs:decimal" | "xs:double" | "xs:integer" | "xs:string" | "xs:boolean" => {
                let Some(a) = self.single(&args[0], f)? else {
                    return Ok(Vec::new());
                };
                let to = match name {
                    "xs:decimal" => AtomicType::Decimal,
                    "xs:double" => AtomicType::Double,
                    "xs:integer" => AtomicType::Integer,
                    "xs:string" => AtomicType::String,
                    _ => AtomicType::Boolean,
                };
                one(cast(&a, to)?)
            }
            _ => err(format!("function `{name}` is not supported")),
        }
    }
}

/// An XPath (XML Schema) regular expression in the regex crate's syntax, where the two
/// differ: `\s` is only space, tab, CR and LF (the crate's is every Unicode space), `\S` its
/// complement, `.` any character but LF and CR (the crate's takes CR), `\i`/`\c` (XML name
/// characters, approximated by letters, digits, marks and `._:-`) and their complements.
fn xpath_regex(pattern: &str) -> String {
    const SPACE: &str = r"\x20\t\n\r";
    const INITIAL: &str = r"_:A-Za-z\p{L}";
    const NAME: &str = r"\-._:A-Za-z0-9\p{L}\p{N}\p{M}";
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut class = 0usize;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('s') if class > 0 => out.push_str(SPACE),
                Some('s') => out.push_str(&format!("[{SPACE}]")),
                Some('S') => out.push_str(&format!("[^{SPACE}]")),
                Some('i') if class > 0 => out.push_str(INITIAL),
                Some('i') => out.push_str(&format!("[{INITIAL}]")),
                Some('I') => out.push_str(&format!("[^{INITIAL}]")),
                Some('c') if class > 0 => out.push_str(NAME),
                Some('c') => out.push_str(&format!("[{NAME}]")),
                Some('C') => out.push_str(&format!("[^{NAME}]")),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' => {
                class += 1;
                out.push(c);
            }
            ']' if class > 0 => {
                class -= 1;
                out.push(c);
            }
            '.' if class == 0 => out.push_str(r"[^\n\r]"),
            _ => out.push(c),
        }
    }
    out
}

/// fn:replace's replacement string in the regex crate's syntax: `$N` is a group, `\$` and
/// `\\` the characters themselves; any other `\` or a bare `$` is an error (FORX0004).
fn replacement(r: &str) -> Result<String, XPathError> {
    let mut out = String::new();
    let mut chars = r.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some('\\') => out.push('\\'),
                _ => return err("an invalid replacement string (FORX0004)"),
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                if digits.is_empty() {
                    return err("an invalid replacement string (FORX0004)");
                }
                out.push_str(&format!("${{{digits}}}"));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn round_half_up(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let floor = x.floor();
    if x - floor >= 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

pub(crate) fn matches_test(n: &Node<'_>, axis: Axis, test: &NodeTest) -> bool {
    let principal_attr = axis == Axis::Attribute;
    match test {
        NodeTest::Node => true,
        NodeTest::Text => n.attr.is_none() && n.node.is_text(),
        NodeTest::Other => false,
        NodeTest::Element => n.attr.is_none() && n.node.is_element(),
        NodeTest::Any => {
            if principal_attr {
                n.attr.is_some()
            } else {
                n.attr.is_none() && n.node.is_element()
            }
        }
        NodeTest::Name(ns, local) => {
            if principal_attr != n.attr.is_some() {
                return false;
            }
            if !principal_attr && !n.node.is_element() {
                return false;
            }
            let Some((node_ns, node_local)) = n.name_parts() else {
                return false;
            };
            local.as_deref().is_none_or(|l| l == node_local) && node_ns == ns.as_deref()
        }
    }
}

fn nodes_in_order(items: Seq<'_>) -> Result<Seq<'_>, XPathError> {
    let mut nodes = Vec::with_capacity(items.len());
    for i in items {
        match i {
            Item::Node(n) => nodes.push(n),
            Item::Atom(_) => return err("a union of values that are not nodes (XPTY0004)"),
        }
    }
    nodes.sort_by_key(|a| a.key());
    nodes.dedup_by(|a, b| a.key() == b.key());
    Ok(nodes.into_iter().map(Item::Node).collect())
}

/// Whether `e` reads the focus's position or size (`position()`, `last()`) outside of a
/// nested predicate (which has a focus of its own).
pub fn uses_position(e: &Expr) -> bool {
    match e {
        Expr::Call(name, args) => {
            name == "position" || name == "last" || args.iter().any(uses_position)
        }
        Expr::Sequence(items) => items.iter().any(uses_position),
        Expr::For(bindings, body) => {
            bindings.iter().any(|(_, b)| uses_position(b)) || uses_position(body)
        }
        Expr::Quantified { bindings, test, .. } => {
            bindings.iter().any(|(_, b)| uses_position(b)) || uses_position(test)
        }
        Expr::If(a, b, c) => uses_position(a) || uses_position(b) || uses_position(c),
        Expr::Or(a, b)
        | Expr::And(a, b)
        | Expr::General(_, a, b)
        | Expr::Value(_, a, b)
        | Expr::Range(a, b)
        | Expr::Arith(_, a, b)
        | Expr::Union(a, b) => uses_position(a) || uses_position(b),
        Expr::Negate(a) => uses_position(a),
        Expr::Cast { expr, .. } => uses_position(expr),
        // The right of a path and a predicate have their own focus; the left shares ours.
        Expr::Path(a, _) => uses_position(a),
        Expr::Filter(a, _) => uses_position(a),
        Expr::Root | Expr::Step { .. } | Expr::Context | Expr::Literal(_) | Expr::Variable(_) => {
            false
        }
    }
}

/// The conjuncts of `e` (`a and b and c` → a, b, c), in order.
fn flatten_and<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e {
        Expr::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

/// Whether `e` reads one of the variables `names` anywhere.
fn reads_any_of(e: &Expr, names: &[&str]) -> bool {
    let mut found = false;
    visit(e, &mut |x| {
        if let Expr::Variable(v) = x {
            found |= names.contains(&v.as_str());
        }
    });
    found
}

/// Calls `f` on `e` and every expression inside it.
fn visit(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Sequence(items) | Expr::Call(_, items) => items.iter().for_each(|i| visit(i, f)),
        Expr::For(bindings, body) => {
            bindings.iter().for_each(|(_, b)| visit(b, f));
            visit(body, f);
        }
        Expr::Quantified { bindings, test, .. } => {
            bindings.iter().for_each(|(_, b)| visit(b, f));
            visit(test, f);
        }
        Expr::If(a, b, c) => {
            visit(a, f);
            visit(b, f);
            visit(c, f);
        }
        Expr::Or(a, b)
        | Expr::And(a, b)
        | Expr::General(_, a, b)
        | Expr::Value(_, a, b)
        | Expr::Range(a, b)
        | Expr::Arith(_, a, b)
        | Expr::Union(a, b)
        | Expr::Path(a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Expr::Negate(a) => visit(a, f),
        Expr::Cast { expr, .. } => visit(expr, f),
        Expr::Filter(a, predicates) => {
            visit(a, f);
            predicates.iter().for_each(|p| visit(p, f));
        }
        Expr::Step { predicates, .. } => predicates.iter().for_each(|p| visit(p, f)),
        Expr::Root | Expr::Context | Expr::Literal(_) | Expr::Variable(_) => {}
    }
}

/// Whether `e` reads a variable anywhere (`current()` is `$current`).
fn reads_variables(e: &Expr) -> bool {
    let mut found = false;
    visit(e, &mut |x| found |= matches!(x, Expr::Variable(_)));
    found
}

/// The effective boolean value.
pub fn ebv(seq: &[Item<'_>]) -> Result<bool, XPathError> {
    match seq {
        [] => Ok(false),
        [Item::Node(_), ..] => Ok(true),
        [Item::Atom(a)] => match a {
            Atom::Bool(b) => Ok(*b),
            Atom::Untyped(s) | Atom::Str(s) => Ok(!s.is_empty()),
            Atom::Dec(d) => Ok(!d.is_zero()),
            Atom::Dbl(x) => Ok(*x != 0.0 && !x.is_nan()),
        },
        _ => err("no effective boolean value of several values (FORG0006)"),
    }
}

fn untyped_as_string(a: Atom) -> Atom {
    match a {
        Atom::Untyped(s) => Atom::Str(s),
        other => other,
    }
}

fn numeric(a: &Atom) -> Result<Atom, XPathError> {
    match a {
        Atom::Untyped(_) => Ok(Atom::Dbl(a.to_double()?)),
        Atom::Dec(_) | Atom::Dbl(_) => Ok(a.clone()),
        _ => err(format!(
            "`{}` is not a number (XPTY0004)",
            shorten(&a.string())
        )),
    }
}

fn integer_of(a: &Atom) -> Result<i64, XPathError> {
    match numeric(a)? {
        Atom::Dec(d) if d.fract().is_zero() => d
            .to_i64()
            .ok_or_else(|| XPathError("integer out of range".into())),
        _ => err("an integer is expected"),
    }
}

fn cast(a: &Atom, to: AtomicType) -> Result<Atom, XPathError> {
    Ok(match to {
        AtomicType::Decimal => Atom::Dec(a.to_decimal()?),
        AtomicType::Integer => {
            let d = match a {
                Atom::Untyped(s) | Atom::Str(s) => {
                    let t = xml_trim(s);
                    if t.contains('.') {
                        return err(format!("`{}` is not an integer (FORG0001)", shorten(s)));
                    }
                    parse_decimal(t)?
                }
                other => other.to_decimal()?.trunc(),
            };
            Atom::Dec(d)
        }
        AtomicType::Double => Atom::Dbl(a.to_double()?),
        AtomicType::Boolean => Atom::Bool(a.to_bool()?),
        AtomicType::String => Atom::Str(a.string().into()),
    })
}

fn arith(op: Arith, x: &Atom, y: &Atom) -> Result<Atom, XPathError> {
    let (x, y) = (numeric(x)?, numeric(y)?);
    match (&x, &y) {
        (Atom::Dec(a), Atom::Dec(b)) => {
            let overflow = || XPathError("decimal overflow (FOAR0002)".into());
            let r = match op {
                Arith::Add => a.checked_add(*b).ok_or_else(overflow)?,
                Arith::Sub => a.checked_sub(*b).ok_or_else(overflow)?,
                Arith::Mul => a.checked_mul(*b).ok_or_else(overflow)?,
                Arith::Div | Arith::IDiv | Arith::Mod if b.is_zero() => {
                    return err("division by zero (FOAR0001)")
                }
                Arith::Div => a.checked_div(*b).ok_or_else(overflow)?,
                Arith::IDiv => a.checked_div(*b).ok_or_else(overflow)?.trunc(),
                Arith::Mod => a.checked_rem(*b).ok_or_else(overflow)?,
            };
            Ok(Atom::Dec(r))
        }
        _ => {
            let (a, b) = (x.to_double()?, y.to_double()?);
            let r = match op {
                Arith::Add => a + b,
                Arith::Sub => a - b,
                Arith::Mul => a * b,
                Arith::Div => a / b,
                Arith::IDiv => {
                    if b == 0.0 {
                        return err("division by zero (FOAR0001)");
                    }
                    return Ok(Atom::Dec(
                        Decimal::from_f64_retain((a / b).trunc())
                            .ok_or_else(|| XPathError("integer out of range".into()))?,
                    ));
                }
                Arith::Mod => a % b,
            };
            Ok(Atom::Dbl(r))
        }
    }
}

fn ordering(op: Cmp, o: Option<Ordering>) -> bool {
    match o {
        None => op == Cmp::Ne,
        Some(o) => match op {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Ne => o != Ordering::Equal,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Le => o != Ordering::Greater,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Ge => o != Ordering::Less,
        },
    }
}

fn value_compare(op: Cmp, x: &Atom, y: &Atom) -> Result<bool, XPathError> {
    let o = match (x, y) {
        (Atom::Str(a), Atom::Str(b)) => Some(a.cmp(b)),
        (Atom::Bool(a), Atom::Bool(b)) => Some(a.cmp(b)),
        (Atom::Dec(a), Atom::Dec(b)) => Some(a.cmp(b)),
        (a, b) if a.is_numeric() && b.is_numeric() => a.to_double()?.partial_cmp(&b.to_double()?),
        _ => {
            return err(format!(
                "`{}` and `{}` cannot be compared (XPTY0004)",
                shorten(&x.string()),
                shorten(&y.string())
            ))
        }
    };
    Ok(ordering(op, o))
}

fn general_compare(op: Cmp, x: &Atom, y: &Atom) -> Result<bool, XPathError> {
    let (x, y) = match (x, y) {
        (Atom::Untyped(a), Atom::Untyped(b)) => (Atom::Str(a.clone()), Atom::Str(b.clone())),
        (Atom::Untyped(a), Atom::Str(_)) => (Atom::Str(a.clone()), y.clone()),
        (Atom::Str(_), Atom::Untyped(b)) => (x.clone(), Atom::Str(b.clone())),
        (Atom::Untyped(_), other) if other.is_numeric() => (Atom::Dbl(x.to_double()?), y.clone()),
        (other, Atom::Untyped(_)) if other.is_numeric() => (x.clone(), Atom::Dbl(y.to_double()?)),
        (Atom::Untyped(_), Atom::Bool(_)) => (Atom::Bool(x.to_bool()?), y.clone()),
        (Atom::Bool(_), Atom::Untyped(_)) => (x.clone(), Atom::Bool(y.to_bool()?)),
        _ => (x.clone(), y.clone()),
    };
    value_compare(op, &x, &y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &str) -> Option<String> {
        match prefix {
            "xs" => Some("http://www.w3.org/2001/XMLSchema".into()),
            "a" => Some("urn:a".into()),
            _ => None,
        }
    }

    fn eval_on(xml: &str, expr: &str) -> Result<Vec<String>, XPathError> {
        let doc = roxmltree::Document::parse(xml).unwrap();
        let e = parse(expr, &ns)?;
        let mut ev = Evaluator::new(1_000_000);
        let seq = ev.eval(&e, Item::Node(Node::of(doc.root())))?;
        Ok(seq.iter().map(|i| atomize(i).string()).collect())
    }

    const DOC: &str = r#"<a:r xmlns:a="urn:a"><a:l><a:amt>10.10</a:amt><a:q c="x">2</a:q></a:l><a:l><a:amt>20.20</a:amt><a:q>3</a:q></a:l><a:t>30.30</a:t><a:b>true</a:b></a:r>"#;

    #[test]
    fn sums_of_untyped_values_are_doubles_and_decimals_are_exact() {
        // 10.10 + 20.20 in IEEE doubles is 30.299999999999997: a general comparison with the
        // untyped 30.30 (cast to double) is false, as in the reference processor …
        assert_eq!(
            eval_on(DOC, "sum(/a:r/a:l/a:amt) = /a:r/a:t").unwrap(),
            ["false"]
        );
        // … while the rules' round(x * 10 * 10) div 100 brings it back.
        assert_eq!(
            eval_on(
                DOC,
                "round(sum(/a:r/a:l/a:amt) * 10 * 10) div 100 = /a:r/a:t"
            )
            .unwrap(),
            ["true"]
        );
        assert_eq!(
            eval_on(
                DOC,
                "sum(/a:r/a:l/xs:decimal(a:amt)) = xs:decimal(/a:r/a:t)"
            )
            .unwrap(),
            ["true"]
        );
        assert_eq!(eval_on(DOC, "count(//a:l) + 1").unwrap(), ["3"]);
        assert_eq!(eval_on(DOC, "xs:decimal('2.50') * 2").unwrap(), ["5"]);
    }

    #[test]
    fn paths_predicates_quantifiers_and_strings() {
        assert_eq!(eval_on(DOC, "//a:l[2]/a:q").unwrap(), ["3"]);
        assert_eq!(eval_on(DOC, "//a:q[@c = 'x']/../a:amt").unwrap(), ["10.10"]);
        assert_eq!(
            eval_on(DOC, "every $l in //a:l satisfies $l/a:q > 1").unwrap(),
            ["true"]
        );
        assert_eq!(
            eval_on(DOC, "some $l in //a:l satisfies $l/a:q > 2 and false()").unwrap(),
            ["false"]
        );
        assert_eq!(
            eval_on(DOC, "for $x in //a:q return $x * 2").unwrap(),
            ["4", "6"]
        );
        assert_eq!(
            eval_on(DOC, "string-length(substring-after(//a:t, '.'))").unwrap(),
            ["2"]
        );
        assert_eq!(eval_on(DOC, "//a:b = true()").unwrap(), ["true"]);
        assert_eq!(eval_on(DOC, "name(//a:l[1]/a:q)").unwrap(), ["a:q"]);
        assert_eq!(
            eval_on(DOC, "//a:l[1]/a:q/preceding-sibling::*[1]").unwrap(),
            ["10.10"]
        );
        assert_eq!(
            eval_on(DOC, "tokenize('30 58', '\\s')").unwrap(),
            ["30", "58"]
        );
        assert_eq!(eval_on(DOC, "'true' cast as xs:boolean").unwrap(), ["true"]);
        assert_eq!(eval_on(DOC, "(1, 2, 3)[. > 1]").unwrap(), ["2", "3"]);
        assert_eq!(eval_on(DOC, "round(2.5)").unwrap(), ["3"]);
        assert_eq!(eval_on(DOC, "round(-2.5)").unwrap(), ["-2"]);
        assert_eq!(
            eval_on(DOC, "if (1 le 2) then 'y' else 'n'").unwrap(),
            ["y"]
        );
    }

    #[test]
    fn type_errors_are_errors_not_answers() {
        assert!(eval_on(DOC, "xs:decimal('abc')").is_err());
        assert!(
            eval_on(DOC, "//a:l/a:amt + 1").is_err(),
            "two items in arithmetic"
        );
        assert!(eval_on(DOC, "'a' = 1").is_err());
        assert!(eval_on(DOC, "xs:decimal('99999999999999999999999999999999')").is_err());
        assert!(parse("frobnicate(1)", &ns).is_err());
        assert!(parse("b:x", &ns).is_err(), "unknown prefix");
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep, &ns).is_err());
    }

    #[test]
    fn fuel_bounds_the_work() {
        let doc = roxmltree::Document::parse(DOC).unwrap();
        let e = parse("for $i in 1 to 100000 return count(//*)", &ns).unwrap();
        let mut ev = Evaluator::new(10_000);
        let out = ev.eval(&e, Item::Node(Node::of(doc.root())));
        assert!(out.unwrap_err().0.contains("budget"));
    }

    #[test]
    fn replace_translate_codepoints_and_distinct_values() {
        assert_eq!(
            eval_on(DOC, "replace('DE02 1203 0000', '([ \\n\\r\\t\\s])', '')").unwrap(),
            ["DE0212030000"]
        );
        assert_eq!(
            eval_on(DOC, "replace('abc', '(b)', '[$1]')").unwrap(),
            ["a[b]c"]
        );
        assert_eq!(
            eval_on(DOC, "replace('a$b', '\\$', '\\$\\$')").unwrap(),
            ["a$$b"]
        );
        assert!(
            eval_on(DOC, "replace('abc', 'x*', '-')").is_err(),
            "matches ''"
        );
        assert!(
            eval_on(DOC, "replace('abc', 'b', '$')").is_err(),
            "a bare $"
        );
        assert_eq!(
            eval_on(DOC, "translate('a-b-c', '-c', '_')").unwrap(),
            ["a_b_"]
        );
        assert_eq!(
            eval_on(DOC, "string-to-codepoints('AZ')").unwrap(),
            ["65", "90"]
        );
        // Untyped values count as strings: '2' and '3' (the elements), 2 (a number: not
        // equal to the string '2'), 'x'; the string '3' is the element's.
        assert_eq!(
            eval_on(DOC, "count(distinct-values((//a:q, 2, '3', 'x')))").unwrap(),
            ["4"]
        );
        // XRechnung's IBAN check (BR-DE-19): letters to numbers, mod 97 = 1.
        let iban =
            "xs:integer(string-join(for $cp in string-to-codepoints(concat(substring($i, 5), \
                    substring($i, 1, 4))) return (if ($cp > 64) then string($cp - 55) else \
                    string($cp - 48)), '')) mod 97";
        for (value, rest) in [
            ("DE02120300000000202051", "1"),
            ("DE03120300000000202051", "2"),
        ] {
            let expr = iban.replace("$i", &format!("'{value}'"));
            assert_eq!(eval_on(DOC, &expr).unwrap(), [rest], "{value}");
        }
    }
}
