//! Hugging Face tokenizers to the GGUF vocabulary, as llama.cpp's converter writes it: tokens in
//! id order with their types, BPE merges, special token ids, whether to add BOS/EOS, the
//! pre-tokenizer identified by hashing a test tokenization (so that llama.cpp's tokenizer picks
//! the same splitting rules), and the chat template.
//!
//! Supported: byte-level BPE `tokenizer.json` (llama.cpp's `gpt2`), SentencePiece
//! `tokenizer.model` (`llama`), and SentencePiece-derived byte-fallback BPE `tokenizer.json`
//! (Gemma 4's `gemma4`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

use crate::pre_tokenizers;
use strata_gguf::{Value, ValueType};

/// GGUF token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;
const BYTE: i32 = 6;

/// The most tokens a vocabulary may have (the largest real ones have about 260 000): a larger
/// `vocab_size` or token id is a hostile file, and would be allocated as padding tokens.
pub const MAX_VOCAB: usize = 1 << 22;

/// Fails on a vocabulary size no real tokenizer has.
fn check_vocab_size(n: u64, what: &dyn std::fmt::Display) -> Result<()> {
    if n > MAX_VOCAB as u64 {
        bail!("{what}: a vocabulary of {n} tokens is more than {MAX_VOCAB}");
    }
    Ok(())
}

/// A vocabulary ready to be written as `tokenizer.*` metadata.
#[derive(Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE), `llama` (SentencePiece), `gemma4`.
    pub model: &'static str,
    /// `tokenizer.ggml.pre`, where the model has one.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    pub scores: Option<Vec<f32>>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub special_ids: BTreeMap<&'static str, u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
    pub chat_template: Option<String>,
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// The text of a special token entry in tokenizer_config.json: a string or `{"content": ...}`.
fn token_text(v: &Json) -> Option<&str> {
    v.as_str().or_else(|| v["content"].as_str())
}

/// Whether llama.cpp's converter would call an added token a control token by its look.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// A parsed `tokenizer.json` with the parts every reader needs.
struct TokenizerJson {
    path: std::path::PathBuf,
    json: Json,
}

impl TokenizerJson {
    fn open(dir: &Path, what: &str) -> Result<TokenizerJson> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            bail!("{}: no tokenizer.json ({what})", dir.display());
        }
        let json = read_json(&path)?;
        if json["model"]["type"].as_str() != Some("BPE") {
            bail!("{}: tokenizer model {:?} is not supported (BPE is)", path.display(), json["model"]["type"]);
        }
        Ok(TokenizerJson { path, json })
    }

    /// The base vocabulary by id.
    fn base_vocab(&self) -> Result<HashMap<u64, String>> {
        let vocab = self.json["model"]["vocab"]
            .as_object()
            .ok_or_else(|| anyhow!("{}: model.vocab is not an object", self.path.display()))?;
        let mut by_id = HashMap::new();
        for (tok, id) in vocab {
            let id = id.as_u64().ok_or_else(|| anyhow!("{}: id of {tok:?} is not a number", self.path.display()))?;
            by_id.insert(id, tok.clone());
        }
        Ok(by_id)
    }

    /// `added_tokens`: id → (content, special).
    fn added(&self) -> Result<BTreeMap<u64, (String, bool)>> {
        let mut added = BTreeMap::new();
        for a in self.json["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
                bail!("{}: an added token lacks id or content", self.path.display());
            };
            added.insert(id, (content.to_string(), a["special"].as_bool().unwrap_or(false)));
        }
        Ok(added)
    }

    /// The BPE merges as `"left right"` strings (spaces inside parts as `Ġ`, as gguf-py writes them).
    fn merges(&self) -> Result<Vec<String>> {
        let Some(list) = self.json["model"]["merges"].as_array() else { return Ok(Vec::new()) };
        list.iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    let part = |p: &Json| {
                        p.as_str().map(|s| s.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect::<String>())
                    };
                    Ok(format!("{} {}", part(&pair[0]).unwrap_or_default(), part(&pair[1]).unwrap_or_default()))
                }
                _ => Err(anyhow!("{}: unknown merges format", self.path.display())),
            })
            .collect()
    }

    /// Whether the post-processor adds BOS / EOS (gguf-py's SpecialVocab reading).
    fn post_processor_adds(&self, tc: &Json) -> (Option<bool>, Option<bool>) {
        let (mut add_bos, mut add_eos) = (None, None);
        let post = &self.json["post_processor"];
        let processors: Vec<&Json> = match post["processors"].as_array() {
            Some(list) => list.iter().collect(),
            None if !post.is_null() => vec![post],
            None => vec![],
        };
        for p in processors {
            match p["type"].as_str() {
                Some("ByteLevel") => {
                    add_bos.get_or_insert(false);
                    add_eos.get_or_insert(false);
                }
                Some("TemplateProcessing") => {
                    let single = p["single"].as_array().cloned().unwrap_or_default();
                    if single.len() > 1 {
                        let first = single[0]["SpecialToken"]["id"].as_str();
                        let last = single[single.len() - 1]["SpecialToken"]["id"].as_str();
                        if first.is_some() {
                            add_bos = Some(first == token_text(&tc["bos_token"]));
                        }
                        if last.is_some() {
                            add_eos = Some(last == token_text(&tc["eos_token"]));
                        }
                    }
                }
                _ => {}
            }
        }
        (add_bos, add_eos)
    }
}

/// tokenizer_config.json, or null when absent.
fn tokenizer_config(dir: &Path) -> Result<Json> {
    let path = dir.join("tokenizer_config.json");
    if path.is_file() {
        read_json(&path)
    } else {
        Ok(Json::Null)
    }
}

impl Vocab {
    /// A byte-level BPE `tokenizer.json` (llama.cpp's `gpt2` model, with the pre-tokenizer
    /// identified by hash). `vocab_size` is config.json's (the token list is padded to it).
    pub fn from_hf_bpe(dir: &Path, vocab_size: Option<usize>, config: &Json) -> Result<Vocab> {
        let tj = TokenizerJson::open(dir, "a BPE tokenizer.json or a SentencePiece tokenizer.model is needed")?;
        let mut by_id = tj.base_vocab()?;
        let added = tj.added()?;
        for (&id, (content, _)) in &added {
            by_id.insert(id, content.clone());
        }
        let max_id = by_id.keys().max().copied().unwrap_or(0);
        check_vocab_size(max_id.saturating_add(1).max(vocab_size.unwrap_or(0) as u64), &tj.path.display())?;
        let max_id = max_id as usize;
        let n = vocab_size.unwrap_or(max_id + 1);
        if max_id >= n {
            bail!("{}: token id {max_id} is not below the vocabulary size {n} of config.json", tj.path.display());
        }
        let mut tokens = Vec::with_capacity(n);
        let mut token_types = Vec::with_capacity(n);
        for i in 0..n as u64 {
            match (by_id.get(&i), added.get(&i)) {
                (None, _) => {
                    tokens.push(format!("[PAD{i}]"));
                    token_types.push(UNUSED);
                }
                (Some(t), Some((_, special))) => {
                    token_types.push(if *special || looks_special(t) { CONTROL } else { USER_DEFINED });
                    tokens.push(if *special || looks_special(t) { t.clone() } else { t.replace('\u{2581}', " ") });
                }
                (Some(t), None) => {
                    tokens.push(t.clone());
                    token_types.push(NORMAL);
                }
            }
        }
        let tc = tokenizer_config(dir)?;
        let (add_bos, add_eos) = tj.post_processor_adds(&tc);
        let pre = Some(identify_pre_tokenizer(&tj.path)?);
        let mut v = Vocab {
            model: "gpt2",
            pre,
            tokens,
            token_types,
            merges: tj.merges()?,
            add_bos,
            add_eos,
            ..Vocab::default()
        };
        v.read_specials(dir, &tc, config)?;
        Ok(v)
    }

    /// A byte-fallback BPE `tokenizer.json` converted from SentencePiece (gguf-py's
    /// `LlamaHfVocab`, as Gemma 4's converter uses it under the model name `model`): scores of
    /// -1000, byte tokens typed as bytes, the tokenizer's special tokens as control tokens
    /// except the `visible` ones, which stay user-defined so they are rendered.
    pub fn from_hf_llama(dir: &Path, model: &'static str, visible: &[&str]) -> Result<Vocab> {
        let tj = TokenizerJson::open(dir, "a byte-fallback BPE tokenizer.json is needed")?;
        let m = &tj.json["model"];
        if m["byte_fallback"].as_bool() != Some(true) || tj.json["decoder"]["type"].as_str() != Some("Sequence") {
            bail!(
                "{}: not a SentencePiece-style tokenizer (byte-fallback BPE with a Sequence decoder)",
                tj.path.display()
            );
        }
        let base = tj.base_vocab()?;
        let n_base = base.len() as u64;
        let tc = tokenizer_config(dir)?;
        let mut special_texts: Vec<&str> = Vec::new();
        if let Some(obj) = tc.as_object() {
            for (k, v) in obj {
                if k.ends_with("_token") {
                    special_texts.extend(token_text(v));
                }
            }
        }
        for key in ["extra_special_tokens", "additional_special_tokens"] {
            special_texts.extend(tc[key].as_array().into_iter().flatten().filter_map(token_text));
        }
        let mut tokens = Vec::new();
        let mut token_types = Vec::new();
        for id in 0..n_base {
            let t = base
                .get(&id)
                .ok_or_else(|| anyhow!("{}: the vocabulary has no token with id {id}", tj.path.display()))?;
            let is_byte = t.len() == 6
                && t.starts_with("<0x")
                && t.ends_with('>')
                && t[3..5].chars().all(|c| c.is_ascii_hexdigit());
            token_types.push(if visible.contains(&t.as_str()) {
                USER_DEFINED
            } else if is_byte {
                BYTE
            } else if special_texts.contains(&t.as_str()) {
                CONTROL
            } else {
                NORMAL
            });
            tokens.push(t.clone());
        }
        for (id, (content, _)) in tj.added()?.range(n_base..) {
            if *id != tokens.len() as u64 {
                bail!("{}: added token {content:?} has id {id}, not the next id {}", tj.path.display(), tokens.len());
            }
            let special = special_texts.contains(&content.as_str()) && !visible.contains(&content.as_str());
            token_types.push(if special { CONTROL } else { USER_DEFINED });
            tokens.push(content.clone());
        }
        let (add_bos, add_eos) = tj.post_processor_adds(&tc);
        let scores = Some(vec![-1000.0; tokens.len()]);
        let mut v =
            Vocab { model, scores, tokens, token_types, merges: tj.merges()?, add_bos, add_eos, ..Vocab::default() };
        v.read_specials(dir, &tc, &Json::Null)?;
        if model == "gemma4" {
            v.add_bos = Some(true);
        }
        Ok(v)
    }

    /// A SentencePiece `tokenizer.model` (llama.cpp's `llama` model), padded to `vocab_size`,
    /// with `added_tokens.json` and tokenizer_config.json's `added_tokens_decoder` applied.
    pub fn from_sentencepiece(dir: &Path, vocab_size: Option<usize>, config: &Json) -> Result<Vocab> {
        let path = dir.join("tokenizer.model");
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let pieces = crate::sentencepiece::parse(&bytes).with_context(|| path.display().to_string())?;
        let n = vocab_size.unwrap_or(pieces.len());
        check_vocab_size(n as u64, &"config.json: vocab_size")?;
        let mut tokens: Vec<String> = (0..n).map(|i| format!("[PAD{i}]")).collect();
        let mut scores = vec![-10000.0f32; n];
        let mut token_types = vec![UNUSED; n];
        for (id, p) in pieces.into_iter().enumerate().take(n) {
            token_types[id] = match p.kind {
                UNKNOWN | CONTROL | UNUSED | BYTE => p.kind,
                _ => NORMAL,
            };
            tokens[id] = p.piece;
            scores[id] = p.score;
        }
        let added_path = dir.join("added_tokens.json");
        if added_path.is_file() {
            let added = read_json(&added_path)?;
            for (text, id) in added.as_object().into_iter().flatten() {
                let id =
                    id.as_u64().ok_or_else(|| anyhow!("{}: id of {text:?} is not a number", added_path.display()))?
                        as usize;
                if id < n {
                    (tokens[id], scores[id], token_types[id]) = (text.clone(), -1000.0, USER_DEFINED);
                }
            }
        }
        let tc = tokenizer_config(dir)?;
        for (id, data) in tc["added_tokens_decoder"].as_object().into_iter().flatten() {
            let (Ok(id), Some(text)) = (id.parse::<usize>(), data["content"].as_str()) else {
                bail!(
                    "{}: added_tokens_decoder entry {id:?} is malformed",
                    dir.join("tokenizer_config.json").display()
                );
            };
            if id >= n {
                continue;
            }
            let special = data["special"].as_bool() == Some(true) || looks_special(text);
            tokens[id] = if special { text.to_string() } else { text.replace('\u{2581}', " ") };
            token_types[id] = if special { CONTROL } else { USER_DEFINED };
            scores[id] = -1000.0;
        }
        let tj = TokenizerJson::open(dir, "").ok();
        let (add_bos, add_eos) = tj.as_ref().map_or((None, None), |tj| tj.post_processor_adds(&tc));
        let pre = Some("default".to_string());
        let mut v = Vocab {
            model: "llama",
            pre,
            tokens,
            scores: Some(scores),
            token_types,
            add_bos,
            add_eos,
            ..Vocab::default()
        };
        v.read_specials(dir, &tc, config)?;
        Ok(v)
    }

    /// Special token ids (tokenizer_config.json's names, then config.json's ids), the
    /// tokenizer_config.json add_bos/add_eos flags and the chat template.
    fn read_specials(&mut self, dir: &Path, tc: &Json, config: &Json) -> Result<()> {
        let n = self.tokens.len();
        for (kind, key) in [
            ("bos", "bos_token"),
            ("eos", "eos_token"),
            ("unk", "unk_token"),
            ("sep", "sep_token"),
            ("pad", "pad_token"),
            ("cls", "cls_token"),
            ("mask", "mask_token"),
        ] {
            if let Some(text) = token_text(&tc[key]) {
                if let Some(id) = self.tokens.iter().position(|t| t == text) {
                    self.special_ids.insert(kind, id as u32);
                }
            }
        }
        for (kind, key) in [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "pad_token_id")] {
            if let Some(id) = config[key].as_u64().filter(|&id| (id as usize) < n) {
                self.special_ids.entry(kind).or_insert(id as u32);
            }
        }
        if let Some(b) = tc["add_bos_token"].as_bool() {
            self.add_bos = Some(b);
        }
        if let Some(b) = tc["add_eos_token"].as_bool() {
            self.add_eos = Some(b);
        }
        let jinja = dir.join("chat_template.jinja");
        self.chat_template = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).with_context(|| format!("{}: cannot read", jinja.display()))?)
        } else {
            tc["chat_template"].as_str().map(str::to_string)
        };
        Ok(())
    }

    /// Sets `tokenizer.ggml.add_space_prefix`.
    pub fn with_add_space_prefix(mut self, add: bool) -> Vocab {
        self.add_space_prefix = Some(add);
        self
    }

    /// The `tokenizer.*` metadata, in llama.cpp's converter's order.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let mut m = vec![("tokenizer.ggml.model".to_string(), Value::String(self.model.into()))];
        if let Some(pre) = &self.pre {
            m.push(("tokenizer.ggml.pre".to_string(), Value::String(pre.clone())));
        }
        m.push((
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(ValueType::String, self.tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ));
        if let Some(scores) = &self.scores {
            m.push((
                "tokenizer.ggml.scores".to_string(),
                Value::Array(ValueType::F32, scores.iter().map(|&s| Value::F32(s)).collect()),
            ));
        }
        m.push((
            "tokenizer.ggml.token_type".to_string(),
            Value::Array(ValueType::I32, self.token_types.iter().map(|&t| Value::I32(t)).collect()),
        ));
        if !self.merges.is_empty() {
            m.push((
                "tokenizer.ggml.merges".into(),
                Value::Array(ValueType::String, self.merges.iter().map(|t| Value::String(t.clone())).collect()),
            ));
        }
        // gguf-py's key names (its spelling of "seperator" included).
        for (kind, key) in [
            ("bos", "bos"),
            ("eos", "eos"),
            ("unk", "unknown"),
            ("sep", "seperator"),
            ("pad", "padding"),
            ("cls", "cls"),
            ("mask", "mask"),
        ] {
            if let Some(&id) = self.special_ids.get(kind) {
                m.push((format!("tokenizer.ggml.{key}_token_id"), Value::U32(id)));
            }
        }
        if let Some(b) = self.add_bos {
            m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
        }
        if let Some(b) = self.add_eos {
            m.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(b)));
        }
        if let Some(b) = self.add_space_prefix {
            m.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(b)));
        }
        if let Some(t) = &self.chat_template {
            m.push(("tokenizer.chat_template".into(), Value::String(t.clone())));
        }
        m
    }
}

/// The pre-tokenizer name llama.cpp's converter would write: the sha256 of the ids (as a Python
/// list) that Hugging Face's tokenizer gives for [`pre_tokenizers::CHECK_TEXT`], looked up.
pub fn identify_pre_tokenizer(tokenizer_json: &Path) -> Result<String> {
    use sha2::Digest;
    let tok =
        tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| anyhow!("{}: {e}", tokenizer_json.display()))?;
    let enc = tok
        .encode(pre_tokenizers::CHECK_TEXT, true)
        .map_err(|e| anyhow!("{}: cannot tokenize: {e}", tokenizer_json.display()))?;
    let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
    let hash = format!("{:x}", sha2::Sha256::digest(format!("[{}]", ids.join(", ")).as_bytes()));
    pre_tokenizers::KNOWN.iter().find(|(h, _)| *h == hash).map(|(_, name)| name.to_string()).ok_or_else(|| {
        anyhow!(
            "{}: unknown BPE pre-tokenizer (hash {hash}); llama.cpp would not know how to split text for it",
            tokenizer_json.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str, files: &[(&str, &[u8])]) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-tok-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, body) in files {
            std::fs::write(dir.join(file), body).unwrap();
        }
        dir
    }

    /// Found by fuzzing (fuzz/fuzz_targets/tokenizer.rs): config.json's vocab_size, or the
    /// largest token id in tokenizer.json, sized the padded token list (2^60 entries), and an
    /// id of 2^64-1 overflowed `max_id + 1`.
    #[test]
    fn hostile_vocabulary_sizes_are_errors_not_allocations() {
        // One SentencePiece piece: "a", score 0, normal.
        let model: &[u8] = &[0x0a, 0x0a, 0x0a, 0x01, b'a', 0x15, 0, 0, 0, 0, 0x18, 0x01];
        let dir = scratch("sp", &[("tokenizer.model", model)]);
        assert_eq!(Vocab::from_sentencepiece(&dir, Some(3), &Json::Null).unwrap().tokens, ["a", "[PAD1]", "[PAD2]"]);
        let err = Vocab::from_sentencepiece(&dir, Some(1 << 60), &Json::Null).unwrap_err().to_string();
        assert!(err.contains("vocabulary of 1152921504606846976 tokens is more than 4194304"), "{err}");

        for id in [u64::MAX, 1 << 40] {
            let json = format!(r#"{{"model": {{"type": "BPE", "vocab": {{"a": 0, "b": {id}}}, "merges": []}}}}"#);
            let dir = scratch("bpe", &[("tokenizer.json", json.as_bytes())]);
            let err = Vocab::from_hf_bpe(&dir, None, &Json::Null).unwrap_err().to_string();
            assert!(err.contains("is more than 4194304"), "{err}");
            let err = Vocab::from_hf_bpe(&dir, Some(1 << 60), &Json::Null).unwrap_err().to_string();
            assert!(err.contains("is more than 4194304"), "{err}");
        }
    }
}
