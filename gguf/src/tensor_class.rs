//! What each tensor of a model is, by its GGUF name: the one taxonomy that `inspect`, the
//! quantization policy and `plan` share.

use std::fmt;

/// The role of a tensor in a model, as far as choosing its storage type is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorClass {
    /// `token_embd`: the input token embedding table.
    TokenEmbedding,
    /// `per_layer_token_embd`: the per-layer embedding (PLE) table of Gemma 3n and Gemma 4,
    /// read a few rows per token and never multiplied.
    PerLayerTokenEmbedding,
    /// The per-layer PLE projections `inp_gate` and `proj`.
    PerLayerProjection,
    AttentionQ,
    AttentionK,
    AttentionV,
    /// A fused Q/K/V projection (`attn_qkv`).
    AttentionQkv,
    AttentionOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Small matrices llama-quantize never quantizes, left at the converter's float type:
    /// `per_layer_model_proj`, AltUp's projections and router, LAuReL.
    KeptFloat,
    /// Small matrices llama.cpp's converter writes F32 whatever the output type, and
    /// llama-quantize then leaves alone: mixture-of-experts routers (`ffn_gate_inp`) and AltUp's
    /// prediction and correction coefficients.
    KeptF32,
    /// `output`: the language-model head.
    Output,
    /// Any other matrix.
    OtherMatrix,
    /// Norms and other one-dimensional tensors (biases, scales, `rope_freqs`): always F32.
    NormOrVector,
}

/// Base names (without `blk.N.` and `.weight`) and the class each belongs to. Checked in order;
/// the first pattern that matches wins. `*` matches any suffix.
const NAME_RULES: &[(&str, TensorClass)] = &[
    ("per_layer_token_embd", TensorClass::PerLayerTokenEmbedding),
    ("per_layer_model_proj", TensorClass::KeptFloat),
    ("altup_correct_coef", TensorClass::KeptF32),
    ("altup_predict_coef", TensorClass::KeptF32),
    ("altup*", TensorClass::KeptFloat),
    ("laurel*", TensorClass::KeptFloat),
    ("inp_gate", TensorClass::PerLayerProjection),
    ("proj", TensorClass::PerLayerProjection),
    ("token_embd", TensorClass::TokenEmbedding),
    ("output", TensorClass::Output),
    ("attn_qkv", TensorClass::AttentionQkv),
    ("attn_q", TensorClass::AttentionQ),
    ("attn_k", TensorClass::AttentionK),
    ("attn_v", TensorClass::AttentionV),
    ("attn_output", TensorClass::AttentionOutput),
    ("ffn_gate_inp*", TensorClass::KeptF32),
    ("ffn_gate*", TensorClass::FfnGate),
    ("ffn_up*", TensorClass::FfnUp),
    ("ffn_down*", TensorClass::FfnDown),
];

impl TensorClass {
    /// Every class, in display order.
    pub const ALL: &'static [TensorClass] = &[
        TensorClass::TokenEmbedding,
        TensorClass::PerLayerTokenEmbedding,
        TensorClass::PerLayerProjection,
        TensorClass::AttentionQ,
        TensorClass::AttentionK,
        TensorClass::AttentionV,
        TensorClass::AttentionQkv,
        TensorClass::AttentionOutput,
        TensorClass::FfnGate,
        TensorClass::FfnUp,
        TensorClass::FfnDown,
        TensorClass::KeptFloat,
        TensorClass::KeptF32,
        TensorClass::Output,
        TensorClass::OtherMatrix,
        TensorClass::NormOrVector,
    ];

    /// Classifies a tensor by its GGUF name and number of dimensions.
    pub fn of(name: &str, n_dims: usize) -> TensorClass {
        if n_dims <= 1 || name.contains("norm") {
            return TensorClass::NormOrVector;
        }
        let base = base_name(name);
        NAME_RULES
            .iter()
            .find(|(pattern, _)| match pattern.strip_suffix('*') {
                Some(prefix) => base.starts_with(prefix),
                None => base == *pattern,
            })
            .map_or(TensorClass::OtherMatrix, |&(_, class)| class)
    }

    /// The stable name used in `--json` output and tables: "token_embd", "per_layer_token_embd", ...
    pub fn name(self) -> &'static str {
        match self {
            TensorClass::TokenEmbedding => "token_embd",
            TensorClass::PerLayerTokenEmbedding => "per_layer_token_embd",
            TensorClass::PerLayerProjection => "per_layer_proj",
            TensorClass::AttentionQ => "attn_q",
            TensorClass::AttentionK => "attn_k",
            TensorClass::AttentionV => "attn_v",
            TensorClass::AttentionQkv => "attn_qkv",
            TensorClass::AttentionOutput => "attn_output",
            TensorClass::FfnGate => "ffn_gate",
            TensorClass::FfnUp => "ffn_up",
            TensorClass::FfnDown => "ffn_down",
            TensorClass::KeptFloat => "kept_float",
            TensorClass::KeptF32 => "kept_f32",
            TensorClass::Output => "output",
            TensorClass::OtherMatrix => "other",
            TensorClass::NormOrVector => "norm_or_vector",
        }
    }
}

/// `blk.12.attn_q.weight` -> `attn_q`; `token_embd.weight` -> `token_embd`.
fn base_name(name: &str) -> &str {
    let name = name.strip_suffix(".weight").or_else(|| name.strip_suffix(".bias")).unwrap_or(name);
    match name.strip_prefix("blk.") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, base)| base),
        None => name,
    }
}

impl fmt::Display for TensorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::TensorClass::{self, *};

    #[test]
    fn classifies_llama_cpp_names() {
        let cases: &[(&str, usize, TensorClass)] = &[
            ("token_embd.weight", 2, TokenEmbedding),
            ("per_layer_token_embd.weight", 2, PerLayerTokenEmbedding),
            ("per_layer_model_proj.weight", 2, KeptFloat),
            ("per_layer_proj_norm.weight", 1, NormOrVector),
            ("blk.3.inp_gate.weight", 2, PerLayerProjection),
            ("blk.3.proj.weight", 2, PerLayerProjection),
            ("blk.3.post_norm.weight", 1, NormOrVector),
            ("blk.0.attn_q.weight", 2, AttentionQ),
            ("blk.0.attn_k.weight", 2, AttentionK),
            ("blk.0.attn_v.weight", 2, AttentionV),
            ("blk.0.attn_qkv.weight", 2, AttentionQkv),
            ("blk.10.attn_output.weight", 2, AttentionOutput),
            ("blk.0.attn_q_norm.weight", 1, NormOrVector),
            ("blk.0.attn_q.bias", 1, NormOrVector),
            ("blk.1.ffn_gate.weight", 2, FfnGate),
            ("blk.1.ffn_up.weight", 2, FfnUp),
            ("blk.1.ffn_down.weight", 2, FfnDown),
            ("blk.1.ffn_gate_exps.weight", 3, FfnGate),
            ("blk.1.ffn_down_exps.weight", 3, FfnDown),
            ("blk.1.ffn_up_shexp.weight", 2, FfnUp),
            ("blk.1.ffn_gate_inp.weight", 2, KeptF32),
            ("output.weight", 2, Output),
            ("output_norm.weight", 1, NormOrVector),
            ("rope_freqs.weight", 1, NormOrVector),
            ("altup_proj.weight", 3, KeptFloat),
            ("altup_unembd_proj.weight", 3, KeptFloat),
            ("blk.2.altup_router.weight", 2, KeptFloat),
            ("blk.2.altup_predict_coef.weight", 2, KeptF32),
            ("blk.2.altup_correct_coef.weight", 2, KeptF32),
            ("blk.2.altup_correct_scale.weight", 1, NormOrVector),
            ("blk.2.laurel_l.weight", 2, KeptFloat),
            ("blk.2.laurel_r.weight", 2, KeptFloat),
            ("blk.2.some_new_matrix.weight", 2, OtherMatrix),
        ];
        for &(name, dims, class) in cases {
            assert_eq!(TensorClass::of(name, dims), class, "{name}");
        }
    }
}
