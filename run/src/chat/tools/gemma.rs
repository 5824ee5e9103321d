//! Gemma 4's value syntax, as its template's `format_argument` writes arguments:
//! `{key:value,...}` with bare keys, strings between `<|"|>` markers, JSON numbers, `true`,
//! `false`, `null` and `[...]` lists. Read into JSON here, and written as Lark rules from a JSON
//! Schema for the grammar.

use serde_json::{Map, Value};

use super::grammar::{json_rule, lit};
use super::parse::Cursor;

/// What quotes a string.
const QUOTE: &str = "<|\"|>";

/// Reads a value at `c`, lenient where a model may stray: whitespace between tokens, keys quoted
/// by `<|"|>` or `"`, JSON strings, and bare words (as strings).
pub(super) fn read_value(c: &mut Cursor) -> Option<Value> {
    if c.eat("{") {
        let mut map = Map::new();
        if c.eat("}") {
            return Some(Value::Object(map));
        }
        loop {
            let key = match read_string(c) {
                Some(k) => k,
                None => c.word(|ch| matches!(ch, ':' | ',' | '{' | '}'))?.to_string(),
            };
            if !c.eat(":") {
                return None;
            }
            map.insert(key, read_value(c)?);
            if c.eat("}") {
                return Some(Value::Object(map));
            }
            if !c.eat(",") {
                return None;
            }
        }
    }
    if c.eat("[") {
        let mut items = Vec::new();
        if c.eat("]") {
            return Some(Value::Array(items));
        }
        loop {
            items.push(read_value(c)?);
            if c.eat("]") {
                return Some(Value::Array(items));
            }
            if !c.eat(",") {
                return None;
            }
        }
    }
    if let Some(s) = read_string(c) {
        return Some(Value::String(s));
    }
    // A number, true/false/null, or a bare word.
    let word = c.word(|ch| matches!(ch, ',' | '}' | ']') || ch.is_whitespace())?;
    Some(serde_json::from_str::<Value>(word).ok().filter(|v| !v.is_string()).unwrap_or_else(|| Value::from(word)))
}

/// A string quoted by `<|"|>`, or a JSON string.
fn read_string(c: &mut Cursor) -> Option<String> {
    c.skip_space();
    if let Some(inner) = c.rest().strip_prefix(QUOTE) {
        let len = inner.find(QUOTE)?;
        c.at += QUOTE.len() + len + QUOTE.len();
        return Some(inner[..len].to_string());
    }
    if c.rest().starts_with('"') {
        return c.json();
    }
    None
}

/// `v` as Gemma 4 writes it (its template's `format_argument` with bare keys).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{QUOTE}{s}{QUOTE}"),
        Value::Array(items) => format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(",")),
        Value::Object(o) => {
            format!(
                "{{{}}}",
                sorted(o).into_iter().map(|(k, v)| format!("{k}:{}", text(v))).collect::<Vec<_>>().join(",")
            )
        }
        _ => v.to_string(),
    }
}

/// An object's entries in the order Jinja's `dictsort` gives them (by key, ignoring case), the
/// order Gemma 4's template writes arguments in.
fn sorted(o: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = o.iter().collect();
    entries.sort_by_key(|(k, _)| k.to_lowercase());
    entries
}

/// Lark rules for Gemma 4 values, built from JSON Schemas: objects with `properties` take those
/// keys in `dictsort` order (the required ones always), typed values take their type, and
/// anything else takes any value.
pub(super) struct Rules {
    rules: Vec<String>,
    /// Rules made so far, to name the next one.
    count: usize,
    /// Whether the rules for any value are needed.
    any: bool,
}

/// A string with the schema's length bounds, if it has any: `<|"|>`, so many characters other
/// than `<` (which could start the closing quote), `<|"|>`.
fn string(schema: &Value) -> Option<String> {
    let min = schema.get("minLength").and_then(Value::as_u64);
    let max = schema.get("maxLength").and_then(Value::as_u64);
    if min.is_none() && max.is_none() {
        return None;
    }
    let (min, max) = (min.unwrap_or(0), max.map_or(String::new(), |m| m.to_string()));
    Some(format!(r#"/<\|"\|>[^<]{{{min},{max}}}<\|"\|>/"#))
}

/// The numeric keywords of `schema` (type, bounds, `multipleOf`).
fn numeric(schema: &Value) -> Value {
    let keys = ["type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];
    Value::Object(keys.iter().filter_map(|k| Some((k.to_string(), schema.get(*k)?.clone()))).collect())
}

/// Any value, in Gemma 4's syntax.
const ANY: &str = r#"gemma-value: gemma-string | gemma-dict | gemma-list | GEMMA_NUMBER | "true" | "false" | "null"
gemma-string[lazy]: /<\|"\|>(.|\n)*<\|"\|>/
gemma-dict: "{" (gemma-entry ("," gemma-entry)*)? "}"
gemma-entry: GEMMA_KEY ":" gemma-value
gemma-list: "[" (gemma-value ("," gemma-value)*)? "]"
GEMMA_KEY: /[^\s:{}\[\],<>"]+/
GEMMA_NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/"#;

impl Rules {
    pub(super) fn new() -> Self {
        Rules { rules: Vec::new(), count: 0, any: false }
    }

    /// The rules made, to add to a grammar.
    pub(super) fn into_lark(mut self) -> Vec<String> {
        if self.any {
            self.rules.push(ANY.to_string());
        }
        self.rules
    }

    fn rule(&mut self, body: String) -> String {
        self.count += 1;
        let name = format!("gemma-{}", self.count);
        self.rules.push(format!("{name}: {body}"));
        name
    }

    fn any(&mut self, rule: &str) -> String {
        self.any = true;
        rule.to_string()
    }

    /// A Lark expression for an object `schema` admits: the arguments of a call.
    pub(super) fn object(&mut self, schema: &Value) -> String {
        match schema.get("properties").and_then(Value::as_object) {
            Some(props) if !props.is_empty() => self.dict(props, schema.get("required")),
            _ => self.any("gemma-dict"),
        }
    }

    /// A Lark expression for the values `schema` admits.
    fn value(&mut self, schema: &Value) -> String {
        let alternatives = |rules: &mut Self, schemas: &[Value]| {
            let alts: Vec<String> = schemas.iter().map(|s| rules.value(s)).collect();
            format!("({})", alts.join(" | "))
        };
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let alts: Vec<String> = values.iter().map(|v| lit(&text(v))).collect();
            return format!("({})", alts.join(" | "));
        }
        if let Some(v) = schema.get("const") {
            return lit(&text(v));
        }
        if let Some(schemas) = schema.get("anyOf").or(schema.get("oneOf")).and_then(Value::as_array) {
            return alternatives(self, schemas);
        }
        match schema.get("type") {
            Some(Value::Array(types)) => {
                let schemas: Vec<Value> = types
                    .iter()
                    .map(|t| {
                        let mut s = schema.clone();
                        s["type"] = t.clone();
                        s
                    })
                    .collect();
                alternatives(self, &schemas)
            }
            Some(Value::String(t)) => match t.as_str() {
                "string" => string(schema).unwrap_or_else(|| self.any("gemma-string")),
                // Numbers are written as in JSON: JSON's rule, with the schema's bounds.
                "integer" | "number" => json_rule(numeric(schema)),
                "boolean" => r#"("true" | "false")"#.to_string(),
                "null" => r#""null""#.to_string(),
                "array" => match schema.get("items").filter(|i| i.is_object()) {
                    Some(items) => {
                        let item = self.value(items);
                        self.rule(format!(r#""[" ({item} ("," {item})*)? "]""#))
                    }
                    None => self.any("gemma-list"),
                },
                "object" => self.object(schema),
                _ => self.any("gemma-value"),
            },
            _ if schema.get("properties").is_some() => self.object(schema),
            _ => self.any("gemma-value"),
        }
    }

    /// `{...}` with the keys of `props` in `dictsort` order, each optional one may be left out.
    fn dict(&mut self, props: &Map<String, Value>, required: Option<&Value>) -> String {
        let is_required = |k: &str| required.and_then(Value::as_array).is_some_and(|r| r.iter().any(|x| x == k));
        let entries: Vec<(String, bool)> = sorted(props)
            .into_iter()
            .map(|(k, schema)| {
                let value = self.value(schema);
                (format!("{} {value}", lit(&format!("{k}:"))), is_required(k))
            })
            .collect();
        // tails[i]: the entries from i (> 0) on, each after a comma (as some entry came before).
        let mut tails = vec![String::new(); entries.len() + 1];
        for (i, (entry, required)) in entries.iter().enumerate().skip(1).rev() {
            let own = if *required { format!(r#""," {entry}"#) } else { format!(r#"("," {entry})?"#) };
            tails[i] = if tails[i + 1].is_empty() { own } else { self.rule(format!("{own} {}", tails[i + 1])) };
        }
        // The first entry written is the first required one or an optional one before it.
        let first_required = entries.iter().position(|(_, r)| *r);
        let firsts: Vec<String> = entries[..=first_required.unwrap_or(entries.len() - 1)]
            .iter()
            .enumerate()
            .map(|(i, (entry, _))| format!("{entry} {}", tails[i + 1]))
            .collect();
        let body = format!("({})", firsts.join(" | "));
        let body = if first_required.is_some() { body } else { format!("{body}?") };
        self.rule(format!(r#""{{" {body} "}}""#))
    }
}
