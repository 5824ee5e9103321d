//! llama.cpp's GBNF grammars translated into llguidance's Lark dialect.
//!
//! The parser follows llama.cpp's (`src/llama-grammar.cpp`) step for step: what it accepts and rejects,
//! where a rule ends (at a newline, unless inside parentheses or right after `|` or `::=`), its escapes, a
//! later definition of a rule replacing the earlier one, and its limits on `{m,n}` (`m` at most 2000, an `n`
//! over 2000 meaning no bound, no `{,n}`). Rule `x-y` becomes `g_x_y`, and `start: g_root`; the tokens
//! `<[id]>`, `!<[id]>` and `<name>` become llguidance's `<[id]>`, `<[^id]>` and `<name>` (a special token).
//!
//! GBNF matches code points, and so does the translation: each character of a literal, each class, is a
//! Lark terminal of its own. llguidance's lexer is greedy, so a longer terminal (a whole literal, a run of a
//! class) could swallow characters the grammar gives to what follows and reject text GBNF accepts. The cost
//! shows in a mask that allows most tokens (free text in a JSON string): about 7 ms over a 262k vocabulary,
//! against well under 1 ms for the same text as one terminal.
//!
//! Unlike llama.cpp: left recursion, which it refuses, works (llguidance parses with Earley's algorithm);
//! right recursion deeper than about 2000 fails (llguidance's bound on items in a row); llama.cpp's bound on
//! the product of nested repetitions is not checked.

use std::collections::HashSet;
use std::fmt::Write;

/// llama.cpp's bound on `{m,n}`: a larger `m` is an error, a larger `n` means no upper bound.
const MAX_REPETITIONS: u64 = 2000;

/// Translates a GBNF grammar (llama.cpp's format: `root ::= ...`) into llguidance's Lark; an error says which line and what is wrong.
pub fn to_lark(gbnf: &str) -> Result<String, String> {
    // llama.cpp reads the grammar as a C string.
    let src = gbnf.split('\0').next().unwrap_or_default();
    let mut p = Parser { src, pos: 0, names: Vec::new(), first_seen: Vec::new(), defs: Vec::new(), depth: 0 };
    p.space(true);
    while p.pos < src.len() {
        p.rule()?;
    }
    if let Some(id) = p.defs.iter().position(Option::is_none) {
        return p.err(p.first_seen[id], format!("undefined rule '{}'", p.names[id]));
    }
    let Some(root) = p.names.iter().position(|&n| n == "root") else {
        return p.err(src.len(), "the grammar has no 'root' rule");
    };

    let lark_names = lark_names(&p.names);
    let mut out = format!("start: {}\n", lark_names[root]);
    for (name, def) in lark_names.iter().zip(&p.defs) {
        let _ = write!(out, "{name}: ");
        emit(def.as_ref().expect("every rule is defined"), Prec::Alt, &lark_names, &mut out);
        out.push('\n');
    }
    Ok(out)
}

/// A parsed GBNF expression; characters are code points (`\U` escapes may give ones beyond
/// Unicode, which, as in llama.cpp, match nothing).
enum Expr {
    /// A string literal (empty: the empty string).
    Literal(Vec<u32>),
    /// A character class: inclusive ranges, and whether it is negated (`[^...]`).
    Class(Vec<(u32, u32)>, bool),
    /// `.`: any character.
    Any,
    /// A reference to the rule with this index.
    Rule(usize),
    /// A token, already in llguidance's syntax (`<[12]>`, `<[^12]>`, `<|name|>`).
    Token(String),
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
    /// At least `.1`, at most `.2` (none: no bound) repetitions.
    Repeat(Box<Expr>, u64, Option<u64>),
}

impl Expr {
    /// Whether llama.cpp emits no element for it, so that a `*`, `+`, `?` or `{` after it has nothing
    /// to apply to.
    fn is_nothing(&self) -> bool {
        matches!(self, Expr::Literal(s) if s.is_empty()) || matches!(self, Expr::Repeat(_, _, Some(0)))
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Rule names, in order of first appearance.
    names: Vec<&'a str>,
    /// Where each name first appears.
    first_seen: Vec<usize>,
    /// Each rule's definition, once read.
    defs: Vec<Option<Expr>>,
    /// Parentheses open around the current position.
    depth: usize,
}

/// The deepest nesting of parentheses, and the most repetitions stacked on one item (`x{2}{3}`),
/// a grammar may have: the translation and llguidance recurse over them.
const MAX_NESTING: usize = 100;

fn is_word_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

impl<'a> Parser<'a> {
    fn err<T>(&self, at: usize, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("GBNF line {}: {msg}", self.line(at)))
    }

    /// The byte `ahead` bytes on, or 0 at the end.
    fn peek_at(&self, ahead: usize) -> u8 {
        self.src.as_bytes().get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn peek(&self) -> u8 {
        self.peek_at(0)
    }

    /// What is at the current position, for an error.
    fn found(&self) -> String {
        match self.src[self.pos..].chars().next() {
            None => "the end of the grammar".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    /// Skips blanks and comments, and newlines where `newline_ok`.
    fn space(&mut self, newline_ok: bool) {
        loop {
            match self.peek() {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newline_ok => self.pos += 1,
                b'#' => {
                    while !matches!(self.peek(), 0 | b'\r' | b'\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn name(&mut self) -> Result<&'a str, String> {
        let start = self.pos;
        while is_word_char(self.peek()) {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(start, format!("expecting a rule name, found {}", self.found()));
        }
        Ok(&self.src[start..self.pos])
    }

    fn int(&mut self) -> Result<u64, String> {
        let start = self.pos;
        while self.peek().is_ascii_digit() {
            self.pos += 1;
        }
        if self.pos == start {
            return self.err(start, format!("expecting an integer, found {}", self.found()));
        }
        self.src[start..self.pos].parse().or_else(|_| self.err(start, "integer too large"))
    }

    /// The index of rule `name`, first seen at `at`.
    fn symbol(&mut self, name: &'a str, at: usize) -> usize {
        self.names.iter().position(|&n| n == name).unwrap_or_else(|| {
            self.names.push(name);
            self.first_seen.push(at);
            self.defs.push(None);
            self.names.len() - 1
        })
    }

    /// `name ::= alternatives`, up to and including the newline that ends it; a rule defined again
    /// replaces the first definition, as in llama.cpp.
    fn rule(&mut self) -> Result<(), String> {
        let start = self.pos;
        let name = self.name()?;
        let id = self.symbol(name, start);
        self.space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return self.err(self.pos, format!("expecting '::=' after '{name}', found {}", self.found()));
        }
        self.pos += 3;
        self.space(true);
        let body = self.alternates(false)?;
        match self.peek() {
            b'\r' => self.pos += if self.peek_at(1) == b'\n' { 2 } else { 1 },
            b'\n' => self.pos += 1,
            0 => {}
            _ => return self.err(self.pos, format!("unexpected {} in rule '{name}'", self.found())),
        }
        self.space(true);
        self.defs[id] = Some(body);
        Ok(())
    }

    fn alternates(&mut self, nested: bool) -> Result<Expr, String> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == b'|' {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 { alts.pop().unwrap() } else { Expr::Alt(alts) })
    }

    /// Items up to `|`, `)`, the end of the rule or anything else no item starts with; newlines are
    /// blanks only when `nested` (in parentheses).
    fn sequence(&mut self, nested: bool) -> Result<Expr, String> {
        let mut items = Vec::new();
        // Repetitions applied to the last item so far.
        let mut stacked = 0;
        loop {
            let start = self.pos;
            let item = match self.peek() {
                b'"' => {
                    self.pos += 1;
                    let mut s = Vec::new();
                    while self.peek() != b'"' {
                        if self.pos == self.src.len() {
                            return self.err(start, "unterminated string literal");
                        }
                        s.push(self.char()?);
                    }
                    self.pos += 1;
                    Expr::Literal(s)
                }
                b'[' => self.class()?,
                b'<' | b'!' => self.token()?,
                b'(' => {
                    if self.depth == MAX_NESTING {
                        return self.err(start, format!("parentheses nested more than {MAX_NESTING} deep"));
                    }
                    self.pos += 1;
                    self.space(true);
                    self.depth += 1;
                    let inner = self.alternates(true);
                    self.depth -= 1;
                    let inner = inner?;
                    if self.peek() != b')' {
                        return self.err(
                            self.pos,
                            format!("expecting ')' for the '(' on line {}, found {}", self.line(start), self.found()),
                        );
                    }
                    self.pos += 1;
                    inner
                }
                b'.' => {
                    self.pos += 1;
                    Expr::Any
                }
                b'*' | b'+' | b'?' | b'{' => {
                    let (min, max) = self.repetition(nested)?;
                    stacked += 1;
                    if stacked > MAX_NESTING {
                        return self.err(start, format!("more than {MAX_NESTING} repetitions stacked on one item"));
                    }
                    match items.pop() {
                        Some(last) if !Expr::is_nothing(&last) => items.push(Expr::Repeat(Box::new(last), min, max)),
                        _ => return self.err(start, "a repetition (*, +, ?, {m,n}) with nothing before it"),
                    }
                    continue;
                }
                b if is_word_char(b) => {
                    let name = self.name()?;
                    Expr::Rule(self.symbol(name, start))
                }
                _ => break,
            };
            self.space(nested);
            items.push(item);
            stacked = 0;
        }
        Ok(if items.len() == 1 { items.pop().unwrap() } else { Expr::Seq(items) })
    }

    fn line(&self, at: usize) -> usize {
        self.src[..at].matches('\n').count() + 1
    }

    /// `*`, `+`, `?`, `{m}`, `{m,}` or `{m,n}`, and the blanks after it: the least and most repetitions.
    fn repetition(&mut self, nested: bool) -> Result<(u64, Option<u64>), String> {
        let start = self.pos;
        self.pos += 1;
        self.space(nested);
        let (min, max) = match self.src.as_bytes()[start] {
            b'*' => return Ok((0, None)),
            b'+' => return Ok((1, None)),
            b'?' => return Ok((0, Some(1))),
            _ => {
                let min = self.int()?;
                self.space(nested);
                let max = match self.peek() {
                    b'}' => Some(min),
                    b',' => {
                        self.pos += 1;
                        self.space(nested);
                        let max = if self.peek().is_ascii_digit() { Some(self.int()?) } else { None };
                        self.space(nested);
                        if self.peek() != b'}' {
                            return self.err(self.pos, format!("expecting '}}', found {}", self.found()));
                        }
                        max
                    }
                    _ => return self.err(self.pos, format!("expecting ',' or '}}', found {}", self.found())),
                };
                self.pos += 1;
                self.space(nested);
                (min, max)
            }
        };
        if min > MAX_REPETITIONS {
            return self.err(start, format!("more than {MAX_REPETITIONS} repetitions"));
        }
        if max.is_some_and(|max| max < min) {
            return self.err(start, "in {m,n}, n is less than m");
        }
        Ok((min, max.filter(|&max| max <= MAX_REPETITIONS)))
    }

    /// `[...]` or `[^...]`; an empty one (`[]`, `[^]`) gives llama.cpp no element at all, like `""`.
    fn class(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        self.pos += 1;
        let negated = self.peek() == b'^';
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        while self.peek() != b']' {
            if self.pos == self.src.len() {
                return self.err(start, "unterminated character class");
            }
            let lo = self.char()?;
            let hi = if self.peek() == b'-' && self.peek_at(1) != b']' {
                self.pos += 1;
                self.char()?
            } else {
                lo
            };
            ranges.push((lo, hi));
        }
        self.pos += 1;
        Ok(if ranges.is_empty() { Expr::Literal(Vec::new()) } else { Expr::Class(ranges, negated) })
    }

    /// One character of a literal or class: itself, or an escape (`\n \t \r \\ \" \[ \] \-`, `\xHH`,
    /// `\uHHHH`, `\UHHHHHHHH`).
    fn char(&mut self) -> Result<u32, String> {
        let start = self.pos;
        let mut chars = self.src[start..].chars();
        let Some(c) = chars.next() else { return self.err(start, "unexpected end of the grammar") };
        if c != '\\' {
            self.pos += c.len_utf8();
            return Ok(c as u32);
        }
        let Some(e) = chars.next() else { return self.err(start, "unexpected end of the grammar after '\\'") };
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        if digits > 0 {
            let hex = self.src.get(start + 2..start + 2 + digits).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let Some(hex) = hex else { return self.err(start, format!("expecting {digits} hex digits after \\{e}")) };
            self.pos += 2 + digits;
            return Ok(u32::from_str_radix(hex, 16).expect("hex digits"));
        }
        let c = match e {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            '\\' | '"' | '[' | ']' | '-' => e,
            _ => return self.err(start, format!("unknown escape '\\{e}'")),
        };
        self.pos += 2;
        Ok(c as u32)
    }

    /// `<[id]>`, `<text>`, `!<[id]>` (any token but that one) or `!<text>`. llguidance names tokens
    /// by text only when they are special tokens, and cannot negate a token named by its text.
    fn token(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        let negated = self.peek() == b'!';
        if negated {
            self.pos += 1;
        }
        if self.peek() != b'<' {
            return self.err(self.pos, format!("expecting '<' after '!', found {}", self.found()));
        }
        self.pos += 1;
        if self.peek() == b'[' {
            self.pos += 1;
            let id = self.int()?;
            if id > u64::from(u32::MAX) {
                return self.err(start, "token id too large");
            }
            for close in [b']', b'>'] {
                if self.peek() != close {
                    return self.err(self.pos, format!("expecting '{}', found {}", close as char, self.found()));
                }
                self.pos += 1;
            }
            return Ok(Expr::Token(format!("<[{}{id}]>", if negated { "^" } else { "" })));
        }
        let Some(len) = self.src[self.pos..].find('>') else {
            return self.err(start, "expecting '>' to end the token");
        };
        let text = &self.src[start..self.pos + len + 1];
        self.pos += len + 1;
        if negated {
            return self.err(
                start,
                format!("a negated token named by its text ({text}) is not supported; use its id: !<[id]>"),
            );
        }
        if text.len() < 3 || text[1..text.len() - 1].contains(|c: char| c == '<' || c.is_whitespace()) {
            return self.err(start, format!("token {text} cannot be named in llguidance; use its id: <[id]>"));
        }
        Ok(Expr::Token(text.into()))
    }
}

/// Lark names for GBNF's rule names: lowercase, `-` as `_`, `g_` in front (so never `start`), and
/// a number after where that would make two the same (GBNF's `A` and `a`).
fn lark_names(names: &[&str]) -> Vec<String> {
    let mut taken = HashSet::new();
    names
        .iter()
        .map(|name| {
            let base = format!("g_{}", name.to_ascii_lowercase().replace('-', "_"));
            let lark = (1..)
                .map(|n| if n == 1 { base.clone() } else { format!("{base}_{n}") })
                .find(|lark| !taken.contains(lark))
                .expect("some number is free");
            taken.insert(lark.clone());
            lark
        })
        .collect()
}

/// Where an expression is written: as an alternative, an item of a sequence, or what a repetition
/// repeats; a looser expression gets parentheses.
#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Prec {
    Alt,
    Seq,
    Atom,
}

fn emit(e: &Expr, prec: Prec, names: &[String], out: &mut String) {
    let own = match e {
        Expr::Alt(_) => Prec::Alt,
        Expr::Seq(_) => Prec::Seq,
        Expr::Literal(s) if s.len() > 1 => Prec::Seq,
        _ => Prec::Atom,
    };
    if own < prec {
        out.push('(');
        emit(e, Prec::Alt, names, out);
        out.push(')');
        return;
    }
    match e {
        Expr::Literal(s) if s.is_empty() => out.push_str("\"\""),
        Expr::Literal(s) => {
            for (i, &c) in s.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                match char::from_u32(c) {
                    Some(c) => string(c, out),
                    None => out.push_str(NOTHING),
                }
            }
        }
        Expr::Class(ranges, negated) => class(ranges, *negated, out),
        Expr::Any => out.push_str(ANY),
        Expr::Rule(id) => out.push_str(&names[*id]),
        Expr::Token(t) => out.push_str(t),
        Expr::Seq(items) if items.is_empty() => out.push_str("\"\""),
        Expr::Seq(items) | Expr::Alt(items) => {
            let sep = if matches!(e, Expr::Seq(_)) { " " } else { " | " };
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                emit(item, Prec::Seq, names, out);
            }
        }
        // Lark rejects `{0}`.
        Expr::Repeat(_, _, Some(0)) => out.push_str("\"\""),
        Expr::Repeat(inner, min, max) => {
            if matches!(**inner, Expr::Repeat(..)) {
                // Lark takes one operator per operand: `x{2}{3}` is `(x{2}){3}`.
                out.push('(');
                emit(inner, Prec::Alt, names, out);
                out.push(')');
            } else {
                emit(inner, Prec::Atom, names, out);
            }
            let _ = match (min, max) {
                (0, None) => write!(out, "*"),
                (1, None) => write!(out, "+"),
                (0, Some(1)) => write!(out, "?"),
                (m, None) => write!(out, "{{{m},}}"),
                (m, Some(n)) if m == n => write!(out, "{{{m}}}"),
                (m, Some(n)) => write!(out, "{{{m},{n}}}"),
            };
        }
    }
}

/// Any character, newline included.
const ANY: &str = "/(?s:.)/";
/// No character at all (a class of none, or a code point beyond Unicode).
const NOTHING: &str = r"/[^\x{0}-\x{10FFFF}]/";

/// `c` as a Lark string literal, with JSON's escapes.
fn string(c: char, out: &mut String) {
    out.push('"');
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        c if c < ' ' || c == '\x7f' => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
    out.push('"');
}

/// A character class as a Lark regex. Ranges are clipped to Unicode scalar values (the rest are
/// code points no text has); every character but ASCII letters and digits is escaped.
fn class(ranges: &[(u32, u32)], negated: bool, out: &mut String) {
    let mut valid = Vec::new();
    for &(lo, hi) in ranges {
        for (a, b) in [(lo, hi.min(0xD7FF)), (lo.max(0xE000), hi.min(0x10FFFF))] {
            if a <= b {
                valid.push((a, b));
            }
        }
    }
    if valid.is_empty() {
        out.push_str(if negated { ANY } else { NOTHING });
        return;
    }
    out.push_str(if negated { "/[^" } else { "/[" });
    let put = |c: u32, out: &mut String| match char::from_u32(c) {
        Some(c) if c.is_ascii_alphanumeric() => out.push(c),
        _ => {
            let _ = write!(out, "\\x{{{c:x}}}");
        }
    };
    for (lo, hi) in valid {
        put(lo, out);
        if hi > lo {
            out.push('-');
            put(hi, out);
        }
    }
    out.push_str("]/");
}

#[cfg(test)]
mod tests {
    use super::*;
    use llguidance::api::TopLevelGrammar;
    use llguidance::{Matcher, ParserFactory};
    use toktrie::ApproximateTokEnv;

    const JSON: &str = include_str!("testdata/json.gbnf");

    /// A grammar compiled by llguidance over a vocabulary of single bytes (and a few special tokens).
    struct Check {
        factory: ParserFactory,
        lark: String,
    }

    impl Check {
        fn new(gbnf: &str) -> Check {
            let lark = to_lark(gbnf).unwrap();
            let mut factory = ParserFactory::new_simple(&ApproximateTokEnv::single_byte_env()).unwrap();
            factory.quiet();
            Check { factory, lark }
        }

        /// Whether the tokens, each allowed by the mask before it, make a complete text.
        fn accepts_tokens(&self, tokens: &[u32]) -> bool {
            let grammar = TopLevelGrammar::from_lark(self.lark.clone());
            let parser = self.factory.create_parser(grammar).unwrap_or_else(|e| panic!("{e}\n{}", self.lark));
            let mut m = Matcher::new(Ok(parser));
            for &t in tokens {
                if m.is_stopped() || !m.compute_mask().is_ok_and(|mask| mask.is_allowed(t)) {
                    return false;
                }
                m.consume_token(t).unwrap();
            }
            m.is_accepting().unwrap()
        }

        fn accepts(&self, text: &str) -> bool {
            self.accepts_tokens(&text.bytes().map(u32::from).collect::<Vec<_>>())
        }

        fn assert(&self, good: &[&str], bad: &[&str]) {
            for text in good {
                assert!(self.accepts(text), "should accept {text:?}:\n{}", self.lark);
            }
            for text in bad {
                assert!(!self.accepts(text), "should reject {text:?}:\n{}", self.lark);
            }
        }
    }

    #[test]
    fn json_grammar() {
        Check::new(JSON).assert(
            &[r#"{"a": [1, 2.5, "x", true, null]}"#, "{\"k\\n\\u00e9\": {\"b\": []},\n\"c\": -0.5e3}"],
            &[r#"{"a": }"#, "[]", "[1, 2,]", "[01]", r#"["\q"]"#, "{\"a\": 1", "\"x\""],
        );
    }

    #[test]
    fn arithmetic_grammar() {
        let gbnf = r#"root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
"#;
        Check::new(gbnf).assert(&["1+2=3\n", "(a1 +2)*x = 42\nb=c\n"], &["1 + = 2\n", "1=2", "A=1\n", "=1\n"]);
    }

    #[test]
    fn list_grammar() {
        let gbnf = r#"root ::= item+

# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
"#;
        Check::new(gbnf).assert(&["- milk\n", "- milk\n- 2 eggs\n"], &["", "- \n", "milk\n", "- a\u{2028}b\n", "- a"]);
    }

    #[test]
    fn bounded_repetitions() {
        let check = Check::new(r#"root ::= "a"{2} "b"{1,3} "c"{2,} "d"? ("ef"{0,2} [x-z]){1}"#);
        check.assert(&["aabccx", "aabbbcccdefefz", "aabccdy"], &["abccx", "aabbbbccx", "aabcx", "aabccefefefx"]);
        // Repetitions apply in turn, and llama.cpp reads a bound over 2000 as none.
        Check::new(r#"root ::= "x"{2}{3} "y"{0,5000}"#).assert(&["xxxxxx", "xxxxxxyyyy"], &["xxxxx", "xxxxxxx"]);
        Check::new(r#"root ::= "a" "b"{0} "c"{0,0}"#).assert(&["a"], &["ab", "ac"]);
    }

    #[test]
    fn escapes_and_classes() {
        let check =
            Check::new(r#"root ::= "\x41\u00e9\U0001F600\"\\\n\t" [\]\-\[a] [^\x00-\x40] | "b" [] [^] . | "c" [z-a]"#);
        check.assert(
            &["Aé😀\"\\\n\t]Z", "Aé😀\"\\\n\t-é", "b\n", "bé"],
            &["Aé😀\"\\\n\t]@", "Aé😀\"\\\n\tba", "b", "ca", "cz"],
        );
        // A code point beyond Unicode matches nothing.
        Check::new(r#"root ::= "a" | "\UFFFFFFFF" | [\UFFFFFFF0-\UFFFFFFFF]"#).assert(&["a"], &[""]);
    }

    #[test]
    fn greedy_terminals_do_not_change_the_language() {
        Check::new("root ::= x \"bc\"\nx ::= \"a\" | \"ab\"").assert(&["abc", "abbc"], &["ac"]);
        Check::new(r#"root ::= [a-z]* "x" [a-z]+ [a-z]"#).assert(&["xab", "axxab", "xxxx"], &["xa", "ax"]);
    }

    #[test]
    fn names_with_dashes_and_case_stay_distinct() {
        let gbnf = "root ::= a-b A-b a-b-2 Ab\na-b ::= \"1\"\nA-b ::= \"2\"\na-b-2 ::= \"3\"\nAb ::= \"4\"\n";
        let lark = to_lark(gbnf).unwrap();
        for rule in [
            "g_root: g_a_b g_a_b_2 g_a_b_2_2 g_ab\n",
            "g_a_b: \"1\"\n",
            "g_a_b_2: \"2\"\n",
            "g_a_b_2_2: \"3\"\n",
            "g_ab: \"4\"\n",
        ] {
            assert!(lark.contains(rule), "{rule:?} in\n{lark}");
        }
        Check::new(gbnf).assert(&["1234"], &["1111", "4321"]);
        // `_` is no part of a GBNF name.
        assert_eq!(
            to_lark("root ::= \"x\"\na_b ::= \"y\"").unwrap_err(),
            "GBNF line 2: expecting '::=' after 'a', found '_'"
        );
    }

    #[test]
    fn comments_and_rules_over_several_lines() {
        let gbnf = r#"
# a comment
root ::= # after ::= a newline is a blank
  (
    "a" # inside parentheses too
    "b"
  ) tail |
  "c" ()*
tail ::= "t" # the rule ends at this newline
   # even one indented
tail ::= "x"*   # a later definition replaces an earlier one, as in llama.cpp
unused ::= "u"
"#;
        Check::new(gbnf).assert(&["ab", "abxx", "c"], &["abt", "cx", ""]);
        // Outside parentheses, a newline ends the rule, however the next line is indented.
        assert_eq!(to_lark("root ::= \"a\"\n  \"b\"").unwrap_err(), "GBNF line 2: expecting a rule name, found '\"'");
        assert_eq!(to_lark("root ::= \"a\"\n  | \"b\"").unwrap_err(), "GBNF line 2: expecting a rule name, found '|'");
    }

    #[test]
    fn tokens() {
        // In the test vocabulary a token's id is its byte; 256 is the special token <|tool|>.
        let check = Check::new(r#"root ::= <|tool|> "x" <[65]> !<[66]>"#);
        assert!(check.accepts_tokens(&[256, 120, 65, 67]));
        assert!(!check.accepts_tokens(&[256, 120, 65, 66]));
        assert!(!check.accepts_tokens(&[120, 65, 67]));
        assert!(to_lark("root ::= !<think>").unwrap_err().contains("use its id: !<[id]>"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("root ::= a\n", "GBNF line 1: undefined rule 'a'"),
            ("a ::= \"x\"\n", "GBNF line 2: the grammar has no 'root' rule"),
            ("root ::= \"a\" }\n", "GBNF line 1: unexpected '}' in rule 'root'"),
            ("root ::= \"abc", "GBNF line 1: unterminated string literal"),
            ("root ::=\n  \"a\\q\"", "GBNF line 2: unknown escape '\\q'"),
            ("root ::= \"\\x4\"", "GBNF line 1: expecting 2 hex digits after \\x"),
            ("root ::= (\"a\"\n", "GBNF line 2: expecting ')' for the '(' on line 1, found the end of the grammar"),
            ("root ::= \"a\")", "GBNF line 1: unexpected ')' in rule 'root'"),
            ("root ::= [a-z", "GBNF line 1: unterminated character class"),
            ("root ::= \"a\"{,3}", "GBNF line 1: expecting an integer, found ','"),
            ("root ::= \"a\"{3,2}", "GBNF line 1: in {m,n}, n is less than m"),
            ("root ::= \"a\"{2001}", "GBNF line 1: more than 2000 repetitions"),
            ("root ::= *", "GBNF line 1: a repetition (*, +, ?, {m,n}) with nothing before it"),
            ("root ::= \"\"+", "GBNF line 1: a repetition (*, +, ?, {m,n}) with nothing before it"),
            ("root = \"a\"", "GBNF line 1: expecting '::=' after 'root', found '='"),
        ];
        for (gbnf, err) in cases {
            assert_eq!(to_lark(gbnf).unwrap_err(), err, "{gbnf:?}");
        }
    }

    #[test]
    fn output_shape() {
        let lark = to_lark("root ::= \"a\\\"\" [^a-c/] x*\nx ::= \"-\" | .").unwrap();
        assert_eq!(lark, "start: g_root\ng_root: \"a\" \"\\\"\" /[^a-c\\x{2f}]/ g_x*\ng_x: \"-\" | /(?s:.)/\n");
    }
}
