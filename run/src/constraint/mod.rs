//! Constrained sampling: a JSON Schema, a grammar (llguidance's Lark, or llama.cpp's GBNF,
//! translated in [`gbnf`]) or "any JSON object", compiled by `llguidance` into a token mask over
//! the model's own vocabulary. The engine applies the mask before the sampler draws
//! ([`crate::engine::Constraint`]), so the text matches by construction.

pub mod gbnf;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use crate::engine::Constraint;

/// What the generated text must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `json_object`).
    JsonObject,
    /// A JSON Schema.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark dialect.
    Lark(String),
    /// A grammar in llama.cpp's GBNF.
    Gbnf(String),
}

impl Grammar {
    /// The grammar as llguidance takes it ([`compiled_schema`] for JSON).
    fn top_level(&self) -> Result<TopLevelGrammar, String> {
        Ok(match self {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(compiled_schema(&json!({"type": "object"}))),
            Grammar::JsonSchema(s) => {
                if !s.is_object() && !s.is_boolean() {
                    return Err(format!("a JSON schema must be an object, not {s}"));
                }
                check_schema_size(s)?;
                TopLevelGrammar::from_json_schema(compiled_schema(s))
            }
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
            Grammar::Gbnf(gbnf) => TopLevelGrammar::from_lark(gbnf::to_lark(gbnf)?),
        })
    }
}

/// `schema` as strata gives it to llguidance (alone, or in a Lark grammar's `%json`): its
/// unbounded numbers bounded ([`bound_numbers`]), and JSON written compactly, with one space
/// after `,` and `:` (`{"a": 1, "b": [2, 3]}`): a small model given free whitespace may emit it
/// forever.
pub fn compiled_schema(schema: &Value) -> Value {
    let mut schema = schema.clone();
    bound_numbers(&mut schema);
    if let Value::Object(o) = &mut schema {
        o.insert(
            "x-guidance".into(),
            json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "}),
        );
    }
    schema
}

/// The largest schema compiled: properties in one object (compiling takes time quadratic in
/// them, and 10,000 overflowed the stack), properties in all, and nesting (llguidance recurses).
const MAX_PROPERTIES: usize = 1000;
const MAX_ALL_PROPERTIES: usize = 5000;
const MAX_DEPTH: usize = 64;

/// Refuses a schema beyond the limits above, saying which.
pub fn check_schema_size(schema: &Value) -> Result<(), String> {
    let mut all = 0;
    let mut stack = vec![(schema, 0)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(format!("the schema is nested more than {MAX_DEPTH} deep"));
        }
        match v {
            Value::Object(o) => {
                if let Some(Value::Object(props)) = o.get("properties") {
                    if props.len() > MAX_PROPERTIES {
                        return Err(format!(
                            "the schema has {} properties in one object; at most {MAX_PROPERTIES}",
                            props.len()
                        ));
                    }
                    all += props.len();
                }
                stack.extend(o.values().map(|c| (c, depth + 1)));
            }
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, depth + 1))),
            _ => {}
        }
    }
    if all > MAX_ALL_PROPERTIES {
        return Err(format!("the schema has {all} properties; at most {MAX_ALL_PROPERTIES}"));
    }
    Ok(())
}

/// The largest number a schema's unbounded integers and numbers are written up to, either side
/// of 0 (15 digits), and the finest step of a number without `multipleOf` (9 decimals): a small
/// model cannot write digits forever. llama.cpp's grammars allow 16 digits each side of the point.
const MAX_NUMBER: i64 = 999_999_999_999_999;
const NUMBER_STEP: f64 = 1e-9;

/// Bounds every integer and number the schema leaves unbounded ([`MAX_NUMBER`],
/// [`NUMBER_STEP`]): what comes out still validates against the schema as given.
fn bound_numbers(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            let is = |kind: &str| match o.get("type") {
                Some(Value::String(t)) => t == kind,
                Some(Value::Array(types)) => types.iter().any(|t| t == kind),
                _ => false,
            };
            let (integer, number) = (is("integer"), is("number"));
            if integer || number {
                if !o.contains_key("maximum") && !o.contains_key("exclusiveMaximum") {
                    o.insert("maximum".into(), MAX_NUMBER.into());
                }
                if !o.contains_key("minimum") && !o.contains_key("exclusiveMinimum") {
                    o.insert("minimum".into(), (-MAX_NUMBER).into());
                }
            }
            if number && !integer && !o.contains_key("multipleOf") {
                o.insert("multipleOf".into(), NUMBER_STEP.into());
            }
            o.values_mut().for_each(bound_numbers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_numbers),
        _ => {}
    }
}

/// A model's vocabulary as the constraint sees it: each token's bytes, which tokens are control
/// tokens (never part of constrained text), and the end-of-generation tokens (allowed once the
/// text is complete).
pub struct Vocabulary {
    pub pieces: Vec<Vec<u8>>,
    pub control: Vec<bool>,
    pub eog: Vec<u32>,
}

/// Compiles grammars into constraints over one model's tokens; built once per model (the token
/// trie of a 262k vocabulary takes a moment), shared by every request.
pub struct Compiler {
    factory: ParserFactory,
}

impl Compiler {
    pub fn new(vocab: &Vocabulary) -> Result<Compiler, String> {
        let n = vocab.pieces.len();
        let eos = *vocab.eog.first().ok_or("the model has no end-of-generation token")?;
        let words: Vec<Vec<u8>> = vocab
            .pieces
            .iter()
            .zip(&vocab.control)
            .map(|(piece, &control)| {
                if control {
                    // A control token matches no text: llguidance's marker for special tokens.
                    [&[TokTrie::SPECIAL_TOKEN_MARKER][..], piece].concat()
                } else {
                    piece.clone()
                }
            })
            .collect();
        let trie = TokTrie::from(&TokRxInfo::new(n as u32, eos), &words).with_eos_tokens(&vocab.eog);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| e.to_string())?;
        factory.quiet();
        Ok(Compiler { factory })
    }

    /// A matcher for `grammar`, or why it does not compile (an unsupported JSON Schema keyword
    /// is named).
    fn matcher(&self, grammar: &Grammar) -> Result<Matcher, String> {
        let parser = self.factory.create_parser(grammar.top_level()?).map_err(|e| first_line(&e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(first_line(&e)),
            None => Ok(matcher),
        }
    }

    /// Checks that `grammar` compiles.
    pub fn check(&self, grammar: &Grammar) -> Result<(), String> {
        self.matcher(grammar).map(drop)
    }

    /// A constraint that holds from the first generated token.
    pub fn constraint(&self, grammar: &Grammar) -> Result<Box<dyn Constraint>, String> {
        Ok(Box::new(Masked { matcher: self.matcher(grammar)? }))
    }

    /// A constraint that holds only once one of `triggers` appears in the text (a tool call's
    /// opening marker): the text before it is free; the grammar covers what follows the trigger.
    pub fn lazy(&self, grammar: &Grammar, triggers: Vec<String>) -> Result<Box<dyn Constraint>, String> {
        let matcher = self.matcher(grammar)?;
        Ok(Box::new(Lazy { triggers, seen: Vec::new(), waiting: Some(matcher), active: None }))
    }
}

/// The first line of an error (llguidance's carry the grammar after it).
fn first_line(e: &str) -> String {
    e.lines().next().unwrap_or(e).trim().to_string()
}

/// A grammar applied to every token.
struct Masked {
    matcher: Matcher,
}

impl Constraint for Masked {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        mask(&mut self.matcher, logits)
    }

    fn accept(&mut self, token: i32, _piece: &[u8]) -> Result<(), String> {
        self.matcher.consume_token(token as u32).map_err(|e| first_line(&e.to_string()))
    }

    fn is_complete(&mut self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Sets every token `matcher` does not allow next to -inf. Tokens beyond the matcher's
/// vocabulary (a model whose output rows outnumber its tokens) are never allowed; every
/// end-of-generation token is, once the text is complete.
fn mask(matcher: &mut Matcher, logits: &mut [f32]) -> Result<(), String> {
    let allowed = matcher.compute_mask().map_err(|e| first_line(&e.to_string()))?;
    if allowed.is_zero() {
        return Err("no token may come next".into());
    }
    // A word of the mask at a time: most words of a 262k vocabulary allow nothing, or everything.
    let words = allowed.as_slice();
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        match words.get(w).copied().unwrap_or(0) {
            u32::MAX if chunk.len() == 32 => {}
            0 => chunk.fill(f32::NEG_INFINITY),
            bits => {
                for (b, l) in chunk.iter_mut().enumerate() {
                    if bits & (1 << b) == 0 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
    Ok(())
}

/// A grammar that starts at a trigger string: until one appears in the text, nothing is masked.
struct Lazy {
    triggers: Vec<String>,
    /// The text so far, while no trigger has appeared.
    seen: Vec<u8>,
    waiting: Option<Matcher>,
    active: Option<Matcher>,
}

impl Constraint for Lazy {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        match &mut self.active {
            Some(m) => mask(m, logits),
            None => Ok(()),
        }
    }

    fn accept(&mut self, token: i32, piece: &[u8]) -> Result<(), String> {
        if let Some(m) = &mut self.active {
            return m.consume_token(token as u32).map_err(|e| first_line(&e.to_string()));
        }
        let from = self.seen.len().saturating_sub(self.triggers.iter().map(String::len).max().unwrap_or(0));
        self.seen.extend_from_slice(piece);
        let found = self
            .triggers
            .iter()
            .filter_map(|t| find(&self.seen[from..], t.as_bytes()).map(|at| from + at + t.len()))
            .min();
        let Some(end) = found else { return Ok(()) };
        let Some(mut matcher) = self.waiting.take() else { return Ok(()) };
        // What the token held after the trigger is the grammar's first text.
        let rest = self.seen.split_off(end);
        let tokens = matcher.tok_env().map_err(|e| e.to_string())?.tokenize_bytes(&rest);
        matcher.consume_tokens(&tokens).map_err(|e| first_line(&e.to_string()))?;
        self.active = Some(matcher);
        Ok(())
    }

    fn is_complete(&mut self) -> bool {
        self.active.as_ref().is_some_and(Matcher::is_stopped)
    }
}

/// Two constraints on one answer (a grammar and a thinking budget): a token must pass both.
pub fn both(a: Option<Box<dyn Constraint>>, b: Option<Box<dyn Constraint>>) -> Option<Box<dyn Constraint>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Box::new(Both(a, b))),
        (a, b) => a.or(b),
    }
}

struct Both(Box<dyn Constraint>, Box<dyn Constraint>);

impl Constraint for Both {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        self.0.mask(logits)?;
        self.1.mask(logits)?;
        if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
            return Err("no token satisfies both constraints".into());
        }
        Ok(())
    }

    fn accept(&mut self, token: i32, piece: &[u8]) -> Result<(), String> {
        self.0.accept(token, piece)?;
        self.1.accept(token, piece)
    }

    fn is_complete(&mut self) -> bool {
        self.0.is_complete() || self.1.is_complete()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len().max(1)).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
