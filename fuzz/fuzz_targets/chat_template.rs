//! Chat templates (strata-run's chat::template): a hostile template rendering hostile
//! messages. The input's NUL-separated parts: the template source, then options (one byte of
//! flags, then the BOS token text), then the EOS token text, then role, content, role, ...
//! Rendering must end (fuel, recursion limit, output cap) with text or an error, never a panic
//! or hang. (The binary also holds each render to a memory budget through its global allocator,
//! which exits the process past it; this target does not install it, so libFuzzer's RSS limit
//! stands in.)
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use strata_run::chat::template::{ChatTemplate, RenderOptions};
use strata_run::chat::Message;

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = common::parts(data).into_iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let now = chrono::NaiveDate::from_ymd_opt(2026, 1, 2).and_then(|d| d.and_hms_opt(3, 4, 5));
    let Ok(template) = ChatTemplate::with_clock(&parts[0], "fuzz input", now) else { return };
    let opts_part = parts.get(1).map(String::as_bytes).unwrap_or_default();
    let flags = opts_part.first().copied().unwrap_or(0);
    let opts = RenderOptions {
        add_generation_prompt: flags & 1 != 0,
        enable_thinking: match flags >> 1 & 3 {
            0 => None,
            1 => Some(false),
            _ => Some(true),
        },
        bos_token: String::from_utf8_lossy(opts_part.get(1..).unwrap_or_default()).into_owned(),
        eos_token: parts.get(2).cloned().unwrap_or_default(),
        tools: None,
        // llama.cpp's date and `functions` variables, as the runtime renders.
        llama_cpp_variables: flags & 8 != 0,
    };
    let messages: Vec<Message> = parts
        .get(3..)
        .unwrap_or_default()
        .chunks(2)
        .map(|c| Message::new(&c[0], c.get(1).map_or("", String::as_str)))
        .collect();
    let _ = template.render(&messages, &opts);
});
