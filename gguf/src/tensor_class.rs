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
    /// A matrix of a projector file's vision tower (`v.*`: its patch embedding, attention and
    /// feed-forward blocks).
    Vision,
    /// A matrix of a projector file's audio tower (`a.*`).
    Audio,
    /// A matrix of the projector proper (`mm.*`), which maps a tower's output into the text
    /// model's embedding space.
    Projector,
    /// Norms and other one-dimensional tensors (biases, scales, `rope_freqs`): always F32.
    NormOrVector,
}

/// A matrix llama.cpp names, by its base name (without `blk.N.` and `.weight`): its class, and
/// whether its outermost dimension counts experts (a mixture-of-experts stack). llama.cpp's
/// names, as gguf-py's `constants.py` spells them.
struct Known {
    base: &'static str,
    class: TensorClass,
    per_expert: bool,
}

const fn known(base: &'static str, class: TensorClass) -> Known {
    Known { base, class, per_expert: false }
}

const fn experts(base: &'static str, class: TensorClass) -> Known {
    Known { base, class, per_expert: true }
}

/// The matrices strata tells apart. One-dimensional tensors (norms, biases, scales) need no
/// entry: they are [`TensorClass::NormOrVector`] by their shape; a matrix not listed is
/// [`TensorClass::OtherMatrix`].
const KNOWN: &[Known] = &[
    known("token_embd", TensorClass::TokenEmbedding),
    known("per_layer_token_embd", TensorClass::PerLayerTokenEmbedding),
    known("inp_gate", TensorClass::PerLayerProjection),
    known("proj", TensorClass::PerLayerProjection),
    known("per_layer_model_proj", TensorClass::KeptFloat),
    known("altup_proj", TensorClass::KeptFloat),
    known("altup_unembd_proj", TensorClass::KeptFloat),
    known("altup_router", TensorClass::KeptFloat),
    known("laurel_l", TensorClass::KeptFloat),
    known("laurel_r", TensorClass::KeptFloat),
    known("altup_correct_coef", TensorClass::KeptF32),
    known("altup_predict_coef", TensorClass::KeptF32),
    known("ffn_gate_inp", TensorClass::KeptF32),
    known("ffn_gate_inp_shexp", TensorClass::KeptF32),
    known("output", TensorClass::Output),
    known("attn_q", TensorClass::AttentionQ),
    known("attn_k", TensorClass::AttentionK),
    known("attn_v", TensorClass::AttentionV),
    known("attn_qkv", TensorClass::AttentionQkv),
    known("attn_output", TensorClass::AttentionOutput),
    known("ffn_gate", TensorClass::FfnGate),
    known("ffn_gate_shexp", TensorClass::FfnGate),
    experts("ffn_gate_exps", TensorClass::FfnGate),
    experts("ffn_gate_up_exps", TensorClass::FfnGate),
    known("ffn_up", TensorClass::FfnUp),
    known("ffn_up_shexp", TensorClass::FfnUp),
    experts("ffn_up_exps", TensorClass::FfnUp),
    known("ffn_down", TensorClass::FfnDown),
    known("ffn_down_shexp", TensorClass::FfnDown),
    experts("ffn_down_exps", TensorClass::FfnDown),
];

fn lookup(name: &str) -> Option<&'static Known> {
    let base = base_name(name);
    KNOWN.iter().find(|k| k.base == base)
}

/// Whether a GGUF tensor is a mixture-of-experts stack (`blk.N.ffn_down_exps.weight`): its
/// outermost dimension counts the experts.
pub fn is_per_expert(name: &str) -> bool {
    lookup(name).is_some_and(|k| k.per_expert)
}

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
        TensorClass::Vision,
        TensorClass::Audio,
        TensorClass::Projector,
        TensorClass::NormOrVector,
    ];

    /// Classifies a tensor by its GGUF name (llama.cpp's, looked up whole) and its number of
    /// dimensions: every vector is [`TensorClass::NormOrVector`]; a projector file's matrices go
    /// by their prefix (`v.`, `a.`, `mm.`).
    pub fn of(name: &str, n_dims: usize) -> TensorClass {
        if n_dims <= 1 {
            return TensorClass::NormOrVector;
        }
        for (prefix, class) in
            [("v.", TensorClass::Vision), ("a.", TensorClass::Audio), ("mm.", TensorClass::Projector)]
        {
            if name.starts_with(prefix) {
                return class;
            }
        }
        lookup(name).map_or(TensorClass::OtherMatrix, |k| k.class)
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
            TensorClass::Vision => "vision",
            TensorClass::Audio => "audio",
            TensorClass::Projector => "projector",
            TensorClass::NormOrVector => "norm_or_vector",
        }
    }
}

/// The block (layer) a tensor belongs to: `blk.12.attn_q.weight` -> 12.
pub fn block_index(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split_once('.')?.0.parse().ok()
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
            // A matrix is classed by its whole name, not by a word in it.
            ("blk.2.norm_mixer.weight", 2, OtherMatrix),
            ("blk.2.ffn_gate_extra.weight", 2, OtherMatrix),
            // A projector file's towers and projector, by prefix.
            ("v.blk.0.attn_q.weight", 2, Vision),
            ("v.patch_embd.weight", 4, Vision),
            ("v.blk.0.ln1.weight", 1, NormOrVector),
            ("a.blk.0.ffn_up.weight", 2, Audio),
            ("mm.input_projection.weight", 2, Projector),
            ("mm.soft_emb_norm.weight", 1, NormOrVector),
        ];
        for &(name, dims, class) in cases {
            assert_eq!(TensorClass::of(name, dims), class, "{name}");
        }
    }

    #[test]
    fn expert_stacks_by_name() {
        assert!(super::is_per_expert("blk.3.ffn_gate_up_exps.weight"));
        assert!(super::is_per_expert("blk.3.ffn_down_exps.weight"));
        assert!(!super::is_per_expert("blk.3.ffn_down_exps.scale"));
        assert!(!super::is_per_expert("blk.3.ffn_down_shexp.weight"));
        assert!(!super::is_per_expert("blk.3.ffn_down_exps_extra.weight"));
    }
}
