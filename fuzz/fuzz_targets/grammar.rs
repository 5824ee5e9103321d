//! What a request may send to constrain an answer: GBNF (translated to Lark), Lark, and JSON
//! Schemas, compiled over a byte-level vocabulary and stepped a few tokens; and the tool-call
//! parsers over arbitrary model output. Each must answer with a value or an error, never a
//! panic, a stack overflow or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_run::chat::tools::{parse, ToolFormat};
use strata_run::constraint::{Compiler, Grammar, Vocabulary};

fn compiler() -> &'static Compiler {
    static COMPILER: std::sync::OnceLock<Compiler> = std::sync::OnceLock::new();
    COMPILER.get_or_init(|| {
        let mut pieces: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        pieces.push(b"<eos>".to_vec());
        let control = (0..pieces.len()).map(|t| t == 256).collect();
        Compiler::new(&Vocabulary { pieces, control, eog: vec![256] }).expect("a byte vocabulary")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest).into_owned();
    let grammar = match kind % 4 {
        0 => Grammar::Gbnf(text.clone()),
        1 => Grammar::Lark(text.clone()),
        2 => match serde_json::from_str(&text) {
            Ok(schema) => Grammar::JsonSchema(schema),
            Err(_) => return,
        },
        _ => {
            for format in [ToolFormat::Generic, ToolFormat::Hermes, ToolFormat::Llama3, ToolFormat::Mistral, ToolFormat::Gemma4] {
                let _ = parse(format, &text);
            }
            return;
        }
    };
    let Ok(mut constraint) = compiler().constraint(&grammar) else { return };
    // A few steps: the first allowed token each time.
    let mut logits = vec![0.0f32; 257];
    for _ in 0..16 {
        logits.fill(0.0);
        if constraint.mask(&mut logits).is_err() {
            return;
        }
        let Some(token) = logits.iter().position(|l| l.is_finite()) else { return };
        if token == 256 || constraint.accept(token as i32, &[token as u8]).is_err() || constraint.is_complete() {
            return;
        }
    }
});
