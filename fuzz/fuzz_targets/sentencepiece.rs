//! SentencePiece `tokenizer.model` (protobuf).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strata_convert::sentencepiece::parse(data);
});
