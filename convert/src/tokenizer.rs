//! Hugging Face tokenizers to the GGUF vocabulary, as llama.cpp's converter writes it: tokens in
//! id order with their types, BPE merges, special token ids, whether to add BOS/EOS, the
//! pre-tokenizer identified by hashing a test tokenization (so that llama.cpp's tokenizer picks
//! the same splitting rules), and the chat template.
//!
//! Supported here: BPE `tokenizer.json` (the `gpt2` model in llama.cpp's terms).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;

use crate::gguf::{Value, ValueType};
use crate::pre_tokenizers;

/// GGUF token types.
const NORMAL: i32 = 1;
const UNUSED: i32 = 5;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// A vocabulary ready to be written as `tokenizer.*` metadata.
#[derive(Debug)]
pub struct Vocab {
    pub pre: String,
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub special_ids: BTreeMap<&'static str, u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
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

impl Vocab {
    /// Reads `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja` and `config.json`
    /// from a model folder. `vocab_size` is config.json's (the token list is padded to it).
    pub fn from_hf(dir: &Path, vocab_size: Option<usize>, config: &Json) -> Result<Vocab> {
        let tj_path = dir.join("tokenizer.json");
        if !tj_path.is_file() {
            bail!("{}: no tokenizer.json (only BPE tokenizer.json vocabularies are supported so far)", dir.display());
        }
        let tj = read_json(&tj_path)?;
        let model = &tj["model"];
        if model["type"].as_str() != Some("BPE") {
            bail!("{}: tokenizer model {:?} is not supported (BPE is)", tj_path.display(), model["type"]);
        }
        let vocab = model["vocab"].as_object().ok_or_else(|| anyhow!("{}: model.vocab is not an object", tj_path.display()))?;
        let mut by_id: HashMap<u64, String> = HashMap::new();
        for (tok, id) in vocab {
            let id = id.as_u64().ok_or_else(|| anyhow!("{}: id of {tok:?} is not a number", tj_path.display()))?;
            by_id.insert(id, tok.clone());
        }
        let mut added: HashMap<u64, (String, bool)> = HashMap::new();
        for a in tj["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (a["id"].as_u64(), a["content"].as_str()) else {
                bail!("{}: an added token lacks id or content", tj_path.display());
            };
            added.insert(id, (content.to_string(), a["special"].as_bool().unwrap_or(false)));
            by_id.insert(id, content.to_string());
        }
        let max_id = by_id.keys().max().copied().unwrap_or(0) as usize;
        let n = vocab_size.unwrap_or(max_id + 1);
        if max_id >= n {
            bail!("{}: token id {max_id} is not below the vocabulary size {n} of config.json", tj_path.display());
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
        let merges = match model["merges"].as_array() {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .map(|m| match m {
                    Json::String(s) => Ok(s.clone()),
                    Json::Array(pair) if pair.len() == 2 => {
                        let part = |p: &Json| p.as_str().map(|s| s.chars().map(|c| if c == ' ' { '\u{120}' } else { c }).collect::<String>());
                        Ok(format!("{} {}", part(&pair[0]).unwrap_or_default(), part(&pair[1]).unwrap_or_default()))
                    }
                    _ => Err(anyhow!("{}: unknown merges format", tj_path.display())),
                })
                .collect::<Result<_>>()?,
        };

        let tc_path = dir.join("tokenizer_config.json");
        let tc = if tc_path.is_file() { read_json(&tc_path)? } else { Json::Null };
        let id_of = |text: &str| by_id.iter().find(|(_, t)| t.as_str() == text).map(|(&id, _)| id as u32);
        let mut special_ids = BTreeMap::new();
        for (kind, key) in [("bos", "bos_token"), ("eos", "eos_token"), ("unk", "unk_token"), ("sep", "sep_token"), ("pad", "pad_token"), ("cls", "cls_token"), ("mask", "mask_token")] {
            if let Some(id) = token_text(&tc[key]).and_then(id_of) {
                special_ids.insert(kind, id);
            }
        }
        for (kind, key) in [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "pad_token_id")] {
            if let Some(id) = config[key].as_u64().filter(|&id| (id as usize) < n) {
                special_ids.entry(kind).or_insert(id as u32);
            }
        }
        let (mut add_bos, mut add_eos) = (None, None);
        let post = &tj["post_processor"];
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
                        let bos = token_text(&tc["bos_token"]);
                        let eos = token_text(&tc["eos_token"]);
                        if first.is_some() {
                            add_bos = Some(first == bos);
                        }
                        if last.is_some() {
                            add_eos = Some(last == eos);
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(b) = tc["add_bos_token"].as_bool() {
            add_bos = Some(b);
        }
        if let Some(b) = tc["add_eos_token"].as_bool() {
            add_eos = Some(b);
        }
        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).with_context(|| format!("{}: cannot read", jinja.display()))?)
        } else {
            tc["chat_template"].as_str().map(str::to_string)
        };
        let pre = identify_pre_tokenizer(&tj_path)?;
        Ok(Vocab { pre, tokens, token_types, merges, special_ids, add_bos, add_eos, chat_template })
    }

    /// The `tokenizer.*` metadata, in llama.cpp's converter's order.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let mut m = vec![
            ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".to_string(), Value::String(self.pre.clone())),
            ("tokenizer.ggml.tokens".to_string(), Value::Array(ValueType::String, self.tokens.iter().map(|t| Value::String(t.clone())).collect())),
            ("tokenizer.ggml.token_type".to_string(), Value::Array(ValueType::I32, self.token_types.iter().map(|&t| Value::I32(t)).collect())),
        ];
        if !self.merges.is_empty() {
            m.push(("tokenizer.ggml.merges".into(), Value::Array(ValueType::String, self.merges.iter().map(|t| Value::String(t.clone())).collect())));
        }
        for kind in ["bos", "eos", "unk", "sep", "pad", "cls", "mask"] {
            if let Some(&id) = self.special_ids.get(kind) {
                let key = if kind == "pad" { "padding".to_string() } else { kind.to_string() };
                m.push((format!("tokenizer.ggml.{key}_token_id"), Value::U32(id)));
            }
        }
        if let Some(b) = self.add_bos {
            m.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(b)));
        }
        if let Some(b) = self.add_eos {
            m.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(b)));
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
    let tok = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| anyhow!("{}: {e}", tokenizer_json.display()))?;
    let enc = tok.encode(pre_tokenizers::CHECK_TEXT, true).map_err(|e| anyhow!("{}: cannot tokenize: {e}", tokenizer_json.display()))?;
    let ids: Vec<String> = enc.get_ids().iter().map(u32::to_string).collect();
    let hash = format!("{:x}", sha2::Sha256::digest(format!("[{}]", ids.join(", ")).as_bytes()));
    pre_tokenizers::KNOWN.iter().find(|(h, _)| *h == hash).map(|(_, name)| name.to_string()).ok_or_else(|| {
        anyhow!("{}: unknown BPE pre-tokenizer (hash {hash}); llama.cpp would not know how to split text for it", tokenizer_json.display())
    })
}
