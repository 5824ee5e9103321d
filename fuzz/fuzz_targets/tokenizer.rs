//! The vocabulary readers. The input's NUL-separated parts become a model folder's
//! `tokenizer.json`, `tokenizer_config.json`, `tokenizer.model`, `config.json` and
//! `added_tokens.json` (an empty or missing part: no such file); then the three readers run on
//! that folder, as each architecture's `vocab` calls them.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use strata_convert::tokenizer::Vocab;

const FILES: [&str; 5] =
    ["tokenizer.json", "tokenizer_config.json", "tokenizer.model", "config.json", "added_tokens.json"];
const VISIBLE: &[&str] = &["<|channel>", "<channel|>"];

fuzz_target!(|data: &[u8]| {
    let parts = common::parts(data);
    let dir = common::scratch_dir();
    for (name, body) in FILES.iter().zip(&parts) {
        if !body.is_empty() {
            std::fs::write(dir.join(name), body).unwrap();
        }
    }
    let config: serde_json::Value = parts.get(3).and_then(|c| serde_json::from_slice(c).ok()).unwrap_or_default();
    let vocab_size = config["vocab_size"].as_u64().map(|n| n as usize);
    let readers: [&dyn Fn() -> anyhow::Result<Vocab>; 4] = [
        &|| Vocab::from_hf_bpe(&dir, vocab_size, &config),
        &|| Vocab::from_hf_bpe(&dir, None, &config),
        &|| Vocab::from_hf_llama(&dir, "gemma4", VISIBLE),
        &|| Vocab::from_sentencepiece(&dir, vocab_size, &config),
    ];
    for read in readers {
        if let Ok(v) = read() {
            let _ = v.with_add_space_prefix(false).metadata();
        }
    }
});
