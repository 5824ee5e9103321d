use super::*;
use crate::sampling::{Rng, Sampler, SamplingParams};

/// A vocabulary like a real one: every byte, common multi-byte pieces (some that cross JSON's
/// structure, as BPE merges do), a control token and two end-of-generation tokens.
fn vocabulary() -> Vocabulary {
    let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for p in ["{\"", "\":", "\": ", ", \"", "\"}", "true", "false", "null", "name", "tags", "ab", "12", "\n", "<tool>"]
    {
        pieces.push(p.as_bytes().to_vec());
    }
    let mut control = vec![false; pieces.len()];
    for p in ["<start>", "<eos>", "<eot>"] {
        pieces.push(p.as_bytes().to_vec());
        control.push(true);
    }
    let n = pieces.len() as u32;
    Vocabulary { pieces, control, eog: vec![n - 2, n - 1] }
}

/// Generates under `constraint` from random logits (a model that would write anything): the
/// bytes, and whether it ended on an end-of-generation token or by completing the grammar.
fn generate(vocab: &Vocabulary, constraint: &mut dyn Constraint, seed: u64) -> (String, bool) {
    let mut rng = Rng::new(seed);
    let mut sampler = Sampler::new(SamplingParams { seed, top_k: 0, min_p: 0.0, top_p: 1.0, ..Default::default() });
    let mut out = Vec::new();
    for _ in 0..400 {
        let mut logits: Vec<f32> = (0..vocab.pieces.len()).map(|_| (rng.uniform() * 8.0) as f32).collect();
        constraint.mask(&mut logits).expect("some token is allowed");
        let token = sampler.sample(&logits);
        if vocab.eog.contains(&token) {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
        assert!(!vocab.control[token as usize], "control token {token} drawn");
        out.extend_from_slice(&vocab.pieces[token as usize]);
        constraint.accept(token as i32, &vocab.pieces[token as usize]).unwrap();
        if constraint.is_complete() {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

#[test]
fn random_logits_under_a_schema_give_valid_json() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 6},
            "n": {"type": "integer", "minimum": 1, "maximum": 5},
            "tags": {"type": "array", "items": {"enum": ["ab", "cd"]}, "maxItems": 3},
            "ok": {"type": "boolean"},
            "ratio": {"type": "number"},
            "big": {"type": "integer"}
        },
        "required": ["name", "n", "tags", "ratio", "big"],
        "additionalProperties": false
    });
    let grammar = Grammar::JsonSchema(schema);
    for seed in 0..20 {
        let mut c = compiler.constraint(&grammar).unwrap();
        let (text, ended) = generate(&vocab, c.as_mut(), seed);
        assert!(ended, "seed {seed}: no end after 400 tokens: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("seed {seed}: {e}: {text}"));
        let o = v.as_object().unwrap();
        assert!(o.keys().all(|k| ["name", "n", "tags", "ok", "ratio", "big"].contains(&k.as_str())), "{text}");
        // Unbounded numbers are written in at most 15 digits, and 9 decimals.
        assert!(o["big"].as_f64().is_some_and(|b| b.abs() < 1e15 && b.fract() == 0.0), "{text}");
        let ratio = text.split("\"ratio\": ").nth(1).unwrap().split([',', '}']).next().unwrap();
        assert!(ratio.split('.').nth(1).is_none_or(|d| d.len() <= 9), "{text}");
        assert!(o["name"].as_str().unwrap().chars().count() <= 6, "{text}");
        assert!((1..=5).contains(&o["n"].as_i64().unwrap()), "{text}");
        let tags = o["tags"].as_array().unwrap();
        assert!(tags.len() <= 3 && tags.iter().all(|t| t == "ab" || t == "cd"), "{text}");
        assert!(o.get("ok").is_none_or(Value::is_boolean), "{text}");
    }
}

#[test]
fn json_object_mode_gives_an_object() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    for seed in 0..10 {
        let mut c = compiler.constraint(&Grammar::JsonObject).unwrap();
        let (text, _) = generate(&vocab, c.as_mut(), seed);
        // Random logits may run to the limit inside a deep object; what came out is a prefix of
        // one, and always starts as an object.
        assert!(text.starts_with('{'), "{text}");
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            assert!(v.is_object());
        }
    }
}

#[test]
fn unsupported_and_invalid_schemas_are_named() {
    let compiler = Compiler::new(&vocabulary()).unwrap();
    let err = compiler.check(&Grammar::JsonSchema(json!({"type": "array", "uniqueItems": true}))).unwrap_err();
    assert!(err.contains("uniqueItems"), "{err}");
    let err = compiler.check(&Grammar::JsonSchema(json!({"type": "strin"}))).unwrap_err();
    assert!(err.contains("strin"), "{err}");
    let err = compiler.check(&Grammar::JsonSchema(json!([1, 2]))).unwrap_err();
    assert!(err.contains("must be an object"), "{err}");
    let err = compiler.check(&Grammar::JsonSchema(json!({"$ref": "#/$defs/missing"}))).unwrap_err();
    assert!(err.contains("missing"), "{err}");
    assert!(compiler.check(&Grammar::Lark("start: (".into())).is_err());
}

#[test]
fn a_recursive_schema_compiles_and_holds() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    let tree = json!({
        "$defs": {"node": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3},
            "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
            "required": ["name"], "additionalProperties": false}},
        "$ref": "#/$defs/node"
    });
    let mut c = compiler.constraint(&Grammar::JsonSchema(tree)).unwrap();
    let (text, ended) = generate(&vocab, c.as_mut(), 7);
    if ended {
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(v["name"].is_string(), "{text}");
    } else {
        assert!(text.starts_with("{\"name\": \""), "{text}");
    }
}

#[test]
fn a_lark_grammar_is_followed() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    let grammar = Grammar::Lark(r#"start: ("yes" | "no") " " /[0-9]{2}/"#.into());
    for seed in 0..10 {
        let mut c = compiler.constraint(&grammar).unwrap();
        let (text, ended) = generate(&vocab, c.as_mut(), seed);
        assert!(ended);
        let (word, digits) = text.split_once(' ').unwrap();
        assert!(word == "yes" || word == "no", "{text}");
        assert!(digits.len() == 2 && digits.bytes().all(|b| b.is_ascii_digit()), "{text}");
    }
}

#[test]
fn a_lazy_grammar_starts_at_its_trigger() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    let trigger = vocab.pieces.iter().position(|p| p == b"<tool>").unwrap() as i32;
    let mut c = compiler.lazy(&Grammar::Lark(r#"start: "ab" "12""#.into()), vec!["<tool>".into()]).unwrap();
    // Before the trigger nothing is masked.
    let mut logits = vec![0.0f32; vocab.pieces.len()];
    c.mask(&mut logits).unwrap();
    assert!(logits.iter().all(|l| l.is_finite()));
    for t in [b'h' as i32, b'i' as i32, trigger] {
        c.accept(t, &vocab.pieces[t as usize]).unwrap();
    }
    // After it, only the grammar's text: "ab" as one token or "a" then "b".
    c.mask(&mut logits).unwrap();
    let allowed: Vec<&[u8]> =
        (0..logits.len()).filter(|&i| logits[i].is_finite()).map(|i| vocab.pieces[i].as_slice()).collect();
    assert!(
        allowed.contains(&&b"ab"[..]) && allowed.contains(&&b"a"[..]) && !allowed.contains(&&b"h"[..]),
        "{:?}",
        allowed.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>()
    );
    for piece in [&b"ab"[..], b"12"] {
        let t = vocab.pieces.iter().position(|p| p == piece).unwrap() as i32;
        c.accept(t, piece).unwrap();
    }
    assert!(c.is_complete());
}

#[test]
fn a_trigger_inside_a_token_passes_the_rest_to_the_grammar() {
    let vocab = vocabulary();
    let compiler = Compiler::new(&vocab).unwrap();
    let mut c = compiler.lazy(&Grammar::Lark(r#"start: "b" "12""#.into()), vec!["a".into()]).unwrap();
    let ab = vocab.pieces.iter().position(|p| p == b"ab").unwrap() as i32;
    c.accept(ab, b"ab").unwrap();
    let mut logits = vec![0.0f32; vocab.pieces.len()];
    c.mask(&mut logits).unwrap();
    let allowed: Vec<&[u8]> =
        (0..logits.len()).filter(|&i| logits[i].is_finite()).map(|i| vocab.pieces[i].as_slice()).collect();
    assert!(allowed.contains(&&b"12"[..]) && allowed.contains(&&b"1"[..]) && !allowed.contains(&&b"b"[..]));
}

#[test]
fn huge_and_deep_grammars_are_refused_not_overflowing() {
    let compiler = Compiler::new(&vocabulary()).unwrap();
    let props: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!({"type": "integer"}))).collect();
    let err = compiler.check(&Grammar::JsonSchema(json!({"type": "object", "properties": props}))).unwrap_err();
    assert!(err.contains("10000 properties in one object"), "{err}");
    let mut deep = json!({"type": "integer"});
    for _ in 0..1000 {
        deep = json!({"type": "array", "items": deep});
    }
    let err = compiler.check(&Grammar::JsonSchema(deep)).unwrap_err();
    assert!(err.contains("nested more than"), "{err}");
    let gbnf = format!("root ::= {}\"a\"{}", "(".repeat(10_000), ")".repeat(10_000));
    let err = compiler.check(&Grammar::Gbnf(gbnf)).unwrap_err();
    assert!(err.contains("nested more than"), "{err}");
    let err = compiler.check(&Grammar::Gbnf(format!("root ::= \"a\"{}", "?".repeat(100_000)))).unwrap_err();
    assert!(err.contains("stacked"), "{err}");
    let lark = format!("start: {}\"a\"{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(compiler.check(&Grammar::Lark(lark)).is_err());
}

/// The keywords docs/tools.md lists as supported compile; those it lists as refused are named.
#[test]
fn documented_keywords() {
    let compiler = Compiler::new(&vocabulary()).unwrap();
    for (schema, refused) in [
        (json!({"type": "array", "uniqueItems": true}), "uniqueItems"),
        (json!({"type": "array", "contains": {"type": "integer"}}), "contains"),
        (json!({"not": {"type": "integer"}}), "not"),
        (json!({"if": {"type": "integer"}, "then": {"minimum": 1}}), "if"),
        (json!({"type": "object", "dependentRequired": {"a": ["b"]}}), "dependentRequired"),
        (json!({"type": "object", "dependentSchemas": {"a": {}}}), "dependentSchemas"),
        (json!({"oneOf": [{"type": "integer"}, {"type": "number"}]}), "oneOf"),
    ] {
        let err = compiler.check(&Grammar::JsonSchema(schema.clone())).unwrap_err();
        assert!(err.contains(refused), "{schema}: {err}");
    }
    for schema in [
        json!({"oneOf": [{"type": "integer"}, {"type": "string"}]}),
        json!({"type": "string", "format": "email"}),
        json!({"type": "string", "format": "date-time"}),
        json!({"type": "string", "format": "uuid"}),
        json!({"type": "string", "pattern": "^[a-z]+$", "minLength": 2}),
        json!({"type": "object", "patternProperties": {"^a": {"type": "integer"}}, "minProperties": 1}),
        json!({"definitions": {"a": {"type": "integer"}}, "$ref": "#/definitions/a"}),
        json!({"type": "object", "title": "x", "description": "y", "examples": [1], "default": {}}),
        json!({"type": "array", "prefixItems": [{"type": "integer"}], "items": false}),
        json!({"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5}),
        json!({"allOf": [{"type": "object"}, {"required": ["a"]}], "properties": {"a": {"const": 1}}}),
    ] {
        compiler.check(&Grammar::JsonSchema(schema.clone())).unwrap_or_else(|e| panic!("{schema}: {e}"));
    }
}
