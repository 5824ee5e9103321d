//! The quantization policy: which ggml type each tensor gets.
//!
//! Two steps, as llama.cpp's llama-quant.cpp does them, but as data: every tensor is first put in
//! a [`TensorClass`]; then a preset's base type applies, adjusted by the rules in [`RULES`]
//! (llama-quantize's choices, some depending on the imatrix or on the model's head grouping), then `--ple-type`
//! for the per-layer embedding table, then `--tensor-type REGEX=TYPE` overrides. Last, a type
//! whose block does not divide a tensor's row width falls back to one that does, as
//! llama-quantize falls back, and the fallback is reported.

use std::fmt;

use anyhow::{anyhow, bail, Result};
use regex::Regex;
use strata_quantize::GgmlType;

use strata_gguf::{block_index, is_per_expert, LayerShape, TensorClass, TensorSpec};

macro_rules! presets {
    ($($variant:ident = $name:literal, $base:ident, $file_type:literal;)*) => {
        /// A named mix, llama-quantize's: the base type and the rules in [`RULES`] that give
        /// some tensors other types.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum Preset { $($variant),* }

        impl Preset {
            pub const ALL: &'static [Preset] = &[$(Preset::$variant),*];

            /// The lower-case name used on the command line: "q4_k_m".
            pub fn name(self) -> &'static str {
                match self { $(Preset::$variant => $name),* }
            }

            /// The type most matrices get.
            pub fn base_type(self) -> GgmlType {
                match self { $(Preset::$variant => GgmlType::$base),* }
            }

            /// llama.cpp's `general.file_type` (`llama_ftype`).
            pub fn file_type(self) -> u32 {
                match self { $(Preset::$variant => $file_type),* }
            }
        }
    };
}

presets! {
    F32 = "f32", F32, 0;
    F16 = "f16", F16, 1;
    BF16 = "bf16", BF16, 32;
    Q8_0 = "q8_0", Q8_0, 7;
    Q4_0 = "q4_0", Q4_0, 2;
    Q4_1 = "q4_1", Q4_1, 3;
    Q5_0 = "q5_0", Q5_0, 8;
    Q5_1 = "q5_1", Q5_1, 9;
    Q2_K = "q2_k", Q2_K, 10;
    Q2_K_S = "q2_k_s", Q2_K, 21;
    Q3_K_S = "q3_k_s", Q3_K, 11;
    Q3_K_M = "q3_k_m", Q3_K, 12;
    Q3_K_L = "q3_k_l", Q3_K, 13;
    Q4_K_S = "q4_k_s", Q4_K, 14;
    Q4_K_M = "q4_k_m", Q4_K, 15;
    Q5_K_S = "q5_k_s", Q5_K, 16;
    Q5_K_M = "q5_k_m", Q5_K, 17;
    Q6_K = "q6_k", Q6_K, 18;
    IQ4_NL = "iq4_nl", IQ4_NL, 25;
    IQ4_XS = "iq4_xs", IQ4_XS, 30;
}

impl Preset {
    pub fn from_name(name: &str) -> Result<Preset> {
        Preset::ALL.iter().copied().find(|p| p.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            anyhow!("unknown preset {name:?}: known ones are {}", names.join(", "))
        })
    }

    /// Whether llama-quantize refuses this preset's type for tensor `name` without an imatrix:
    /// Q2_K tensors of a q2_k_s file, but for the token embedding, the PLE table and the output
    /// (`tensor_requires_imatrix` in llama-quant.cpp: "the result will be garbage").
    pub fn requires_imatrix(self, name: &str, ty: GgmlType) -> bool {
        let exempt = matches!(name, "token_embd.weight" | "per_layer_token_embd.weight" | "output.weight");
        self == Preset::Q2_K_S && ty == GgmlType::Q2_K && !exempt
    }

    /// Whether the preset quantizes (llama-quantize leaves float presets' tensors alone).
    fn is_quantized(self) -> bool {
        !matches!(self, Preset::F32 | Preset::F16 | Preset::BF16)
    }

    /// The per-layer embedding table's default: Q8_0 for every preset of fewer bits, the
    /// preset's own type otherwise. llama-quantize treats the table like the token embedding
    /// (Q4_K at Q4_K_M), and that costs quality others measured: Gemma 4 E4B's base perplexity is
    /// 7.11 at BF16, 8.31 at Q5_K_M and 23.06 at Q4_K_M (llama.cpp issue 22407); Rapid-MLX found a
    /// 4-bit table gave garbage and forces at least 8 bits (PR 1114); Unsloth keeps it at F16 and
    /// Ollama never quantizes it. Read lazily (strata's default), its bits cost disk, not RAM.
    /// `--ple-type` changes it independently of the body.
    pub fn default_ple_type(self) -> GgmlType {
        match self.base_type() {
            t @ (GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0) => t,
            _ => GgmlType::Q8_0,
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which layers a rule applies to, given the tensor's rank `i` among the `n` tensors of its class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layers {
    All,
    /// llama.cpp's `use_more_bits`: the first and last eighth, and every third layer between.
    MoreBits,
    /// The first `k` tensors of the class.
    First(usize),
    /// The first eighth.
    FirstEighth,
    /// The first sixteenth.
    FirstSixteenth,
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layers::All => f.write_str("every layer"),
            Layers::MoreBits => {
                f.write_str("the first and last eighth of the layers and every third between (use_more_bits)")
            }
            Layers::First(k) => write!(f, "the first {k} layers"),
            Layers::FirstEighth => f.write_str("the first eighth of the layers"),
            Layers::FirstSixteenth => f.write_str("the first sixteenth of the layers"),
        }
    }
}

impl Layers {
    fn applies(self, i: usize, n: usize) -> bool {
        match self {
            Layers::All => true,
            Layers::MoreBits => i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64).rem_euclid(3) == 2,
            Layers::First(k) => i < k,
            Layers::FirstEighth => i < n / 8,
            Layers::FirstSixteenth => i < n / 16,
        }
    }
}

/// A condition on the model or the conversion under which a [`Rule`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Always,
    /// An importance matrix is given.
    WithImatrix,
    /// No importance matrix is given.
    WithoutImatrix,
    /// Four or more query heads share each KV head (llama.cpp's `n_gqa() >= 4`, of layer 0).
    Gqa4,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            When::Always => "",
            When::WithImatrix => " when an imatrix is given",
            When::WithoutImatrix => " when no imatrix is given",
            When::Gqa4 => " where 4 or more query heads share a KV head",
        })
    }
}

/// One adjustment of a preset: tensors of `class` in `layers` get `ty`, `when` that holds.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub presets: &'static [Preset],
    pub class: TensorClass,
    pub layers: Layers,
    pub ty: GgmlType,
    pub when: When,
}

const fn rule(presets: &'static [Preset], class: TensorClass, layers: Layers, ty: GgmlType, when: When) -> Rule {
    Rule { presets, class, layers, ty, when }
}

/// llama-quantize's adjustments (`llama_tensor_get_type_impl` in llama-quant.cpp), for models
/// other than 8-expert ones and Falcon; per class the first rule that applies wins. Not
/// carried over: Llama 2 70B's attn_v bump (a model type strata does not tell apart).
pub const RULES: &[Rule] = {
    use GgmlType::{Q3_K, Q4_1, Q4_K, Q5_1, Q5_K, Q6_K};
    use Layers::{All, First, FirstEighth, FirstSixteenth, MoreBits};
    use TensorClass::{AttentionOutput, AttentionQkv, AttentionV, FfnDown};
    use When::{Always, Gqa4, WithImatrix, WithoutImatrix};
    &[
        rule(&[Preset::Q2_K, Preset::Q2_K_S], AttentionV, All, Q4_K, Gqa4),
        rule(&[Preset::Q2_K], AttentionV, All, Q3_K, Always),
        rule(&[Preset::Q3_K_M], AttentionV, First(2), Q5_K, Always),
        rule(&[Preset::Q3_K_M], AttentionV, All, Q4_K, Always),
        rule(&[Preset::Q3_K_L], AttentionV, All, Q5_K, Always),
        rule(&[Preset::IQ4_NL, Preset::IQ4_XS], AttentionV, All, Q5_K, Gqa4),
        rule(&[Preset::Q4_K_M, Preset::Q5_K_M], AttentionV, MoreBits, Q6_K, Always),
        rule(&[Preset::Q4_K_S], AttentionV, First(4), Q5_K, Always),
        rule(&[Preset::Q2_K], FfnDown, All, Q3_K, Always),
        rule(&[Preset::Q2_K_S], FfnDown, FirstEighth, Q4_K, Always),
        rule(&[Preset::Q3_K_M], FfnDown, FirstSixteenth, Q5_K, Always),
        rule(&[Preset::Q3_K_M], FfnDown, All, Q4_K, Always),
        rule(&[Preset::Q3_K_L], FfnDown, All, Q5_K, Always),
        rule(&[Preset::Q4_K_M, Preset::Q5_K_M], FfnDown, MoreBits, Q6_K, Always),
        rule(&[Preset::IQ4_NL, Preset::IQ4_XS], FfnDown, FirstEighth, Q5_K, WithoutImatrix),
        rule(&[Preset::Q4_K_S], FfnDown, FirstEighth, Q5_K, Always),
        // "Guard against craziness in the first few ffn_down layers that can happen even with
        // imatrix for Q4_0/Q5_0" (llama-quant.cpp): only with an imatrix, so that a file quantized
        // without one stays what it always was.
        rule(&[Preset::Q4_0], FfnDown, FirstEighth, Q4_1, WithImatrix),
        rule(&[Preset::Q5_0], FfnDown, FirstEighth, Q5_1, WithImatrix),
        rule(&[Preset::Q2_K], AttentionOutput, All, Q3_K, Always),
        rule(&[Preset::Q3_K_M], AttentionOutput, All, Q4_K, Always),
        rule(&[Preset::Q3_K_L], AttentionOutput, All, Q5_K, Always),
        rule(&[Preset::Q3_K_M, Preset::Q3_K_L], AttentionQkv, All, Q4_K, Always),
        rule(&[Preset::Q4_K_M], AttentionQkv, All, Q5_K, Always),
        rule(&[Preset::Q5_K_M], AttentionQkv, All, Q6_K, Always),
    ]
};

/// Where a tensor's type came from: the rule that chose it, as `convert --explain` prints it.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Norms and vectors: always F32.
    Vector,
    /// The preset's base type.
    Preset(Preset),
    /// A small matrix llama.cpp's converter writes F32 and llama-quantize leaves alone.
    KeptF32,
    /// A small matrix llama-quantize leaves at the converter's float type.
    KeptFloat,
    /// The output projection (or the tied token embedding).
    Output,
    /// One of [`RULES`].
    Rule(&'static Rule),
    /// The per-layer embedding table's own type (`--ple-type`, or the preset's default for it).
    PleType,
    /// A `--tensor-type` pattern.
    Override(String),
    /// A projector file's type (`--mmproj-type`, by default the checkpoint's float type).
    MmprojType,
    /// A type llama.cpp's converter forces on a projector file's tensor, and why.
    Forced(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Vector => f.write_str("a vector: always F32"),
            Source::Preset(p) => write!(f, "{p}'s base type"),
            Source::KeptF32 => f.write_str("kept F32, as llama.cpp's converter writes it and llama-quantize leaves it"),
            Source::KeptFloat => f.write_str("kept F16: llama-quantize does not quantize it"),
            Source::Output => f.write_str("the output projection (or the token embedding it is tied to): Q6_K, or Q8_0 where the preset is Q8_0 or its blocks don't divide the row (llama-quantize)"),
            Source::Rule(r) => {
                let presets: Vec<&str> = r.presets.iter().map(|p| p.name()).collect();
                write!(f, "{}: {} in {} get {}{} (llama-quantize)", presets.join("/"), r.class, r.layers, r.ty, r.when)
            }
            Source::PleType => f.write_str("the PLE table's own type (--ple-type; by default Q8_0 for presets below 8 bits)"),
            Source::Override(pattern) => write!(f, "--tensor-type {pattern}"),
            Source::MmprojType => f.write_str("the projector file's type (--mmproj-type; by default the checkpoint's float type, as llama.cpp's converter)"),
            Source::Forced(why) => f.write_str(why),
        }
    }
}

/// The type chosen for one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub class: TensorClass,
    pub ty: GgmlType,
    pub source: Source,
    /// The type asked for, when its block did not divide the row width.
    pub fell_back_from: Option<GgmlType>,
}

impl Choice {
    /// Why the tensor got its type, for a row `width` wide: the rule, and the fallback if any.
    pub fn reason(&self, width: u64) -> String {
        match self.fell_back_from {
            Some(from) => format!(
                "{}; {from}'s blocks of {} don't divide {width} columns, so {}",
                self.source,
                from.block_size(),
                self.ty
            ),
            None => self.source.to_string(),
        }
    }
}

/// A preset, a PLE type and overrides: everything that decides types.
pub struct Policy {
    pub preset: Preset,
    pub ple_type: GgmlType,
    pub overrides: Vec<(Regex, GgmlType)>,
    /// Whether the output projection is the token embedding (no `output.weight`).
    pub tied_embeddings: bool,
    /// Whether an importance matrix is given (some of llama-quantize's rules depend on it).
    pub has_imatrix: bool,
    /// Query heads per KV head in layer 0 (llama.cpp's `n_gqa()`; some rules depend on it).
    pub n_gqa: u64,
}

impl Policy {
    pub fn new(preset: Preset) -> Self {
        Policy {
            preset,
            ple_type: preset.default_ple_type(),
            overrides: Vec::new(),
            tied_embeddings: false,
            has_imatrix: false,
            n_gqa: 0,
        }
    }

    /// The preset's policy for a model of these tensors and layers: whether its output is the
    /// token embedding, and its query heads per KV head (layer 0, as llama.cpp's `n_gqa()`).
    pub fn for_model(preset: Preset, tensors: &[TensorSpec], layers: &[LayerShape]) -> Self {
        let mut policy = Policy::new(preset);
        policy.tied_embeddings = !tensors.iter().any(|t| t.class == TensorClass::Output);
        policy.n_gqa = layers.first().map_or(0, |l| l.n_head.checked_div(l.n_head_kv).unwrap_or(0));
        policy
    }

    /// Adds a `REGEX=TYPE` override.
    pub fn add_override(&mut self, spec: &str) -> Result<()> {
        let (pattern, ty) =
            spec.rsplit_once('=').ok_or_else(|| anyhow!("--tensor-type {spec:?}: expected REGEX=TYPE"))?;
        let ty = quantizable_type(ty).map_err(|e| anyhow!("--tensor-type {spec:?}: {e}"))?;
        let re = Regex::new(pattern).map_err(|e| anyhow!("--tensor-type {spec:?}: bad pattern: {e}"))?;
        self.overrides.push((re, ty));
        Ok(())
    }

    /// Chooses a type for every tensor. Errors if an override matches nothing.
    pub fn assign(&self, tensors: &[TensorSpec]) -> Result<Vec<Choice>> {
        let classes: Vec<TensorClass> = tensors.iter().map(|t| t.class).collect();
        let mut used = vec![false; self.overrides.len()];
        let mut seen = std::collections::HashMap::new();
        let counts = classes.iter().fold(std::collections::HashMap::new(), |mut m, c| {
            *m.entry(*c).or_insert(0usize) += 1;
            m
        });
        // llama-quantize places a tensor by its rank among those of its class, but an FFN
        // tensor of a mixture of experts (where expert and dense FFN tensors share a layer) by
        // its block number among the model's layers.
        let n_layers = tensors.iter().filter_map(|t| block_index(&t.name)).max().map_or(0, |b| b + 1);
        let has_experts = tensors.iter().any(|t| is_per_expert(&t.name));
        let mut out = Vec::with_capacity(tensors.len());
        for (t, &class) in tensors.iter().zip(&classes) {
            let rank = seen.entry(class).or_insert(0usize);
            let ffn = matches!(class, TensorClass::FfnDown | TensorClass::FfnGate | TensorClass::FfnUp);
            let (i, n) = match block_index(&t.name) {
                Some(block) if ffn && has_experts => (block, n_layers),
                _ => (*rank, counts[&class]),
            };
            *rank += 1;
            let (mut ty, mut source) = self.class_type(t, class, i, n);
            if class == TensorClass::PerLayerTokenEmbedding {
                (ty, source) = (self.ple_type, Source::PleType);
            }
            if class != TensorClass::NormOrVector {
                if let Some(k) = self.overrides.iter().position(|(re, _)| re.is_match(&t.name)) {
                    used[k] = true;
                    (ty, source) = (self.overrides[k].1, Source::Override(self.overrides[k].0.as_str().to_string()));
                }
            }
            let fitted = fallback(ty, t.shape[0]);
            out.push(Choice { class, ty: fitted, source, fell_back_from: (fitted != ty).then_some(ty) });
        }
        if let Some(k) = used.iter().position(|u| !u) {
            bail!("--tensor-type {}: the pattern matches no tensor", self.overrides[k].0.as_str());
        }
        Ok(out)
    }

    /// The preset's choice for a tensor of `class`, the `i`-th of `n` such tensors.
    fn class_type(&self, t: &TensorSpec, class: TensorClass, i: usize, n: usize) -> (GgmlType, Source) {
        let base = self.preset.base_type();
        let is_output = class == TensorClass::Output || (self.tied_embeddings && class == TensorClass::TokenEmbedding);
        if class == TensorClass::NormOrVector {
            return (GgmlType::F32, Source::Vector);
        }
        if class == TensorClass::KeptF32 {
            return (GgmlType::F32, Source::KeptF32);
        }
        if !self.preset.is_quantized() {
            return (base, Source::Preset(self.preset));
        }
        if class == TensorClass::KeptFloat {
            // llama-quantize leaves these at the converter's float type, F16 by default.
            return (GgmlType::F16, Source::KeptFloat);
        }
        if is_output {
            // llama-quantize: the output (or the tied embedding) gets Q6_K, or Q8_0 where the
            // row does not divide into the preset's blocks.
            let ty = if !t.shape[0].is_multiple_of(base.block_size() as u64) || base == GgmlType::Q8_0 {
                GgmlType::Q8_0
            } else {
                GgmlType::Q6_K
            };
            return (ty, Source::Output);
        }
        let holds = |when: When| match when {
            When::Always => true,
            When::WithImatrix => self.has_imatrix,
            When::WithoutImatrix => !self.has_imatrix,
            When::Gqa4 => self.n_gqa >= 4,
        };
        let applies =
            |r: &Rule| r.class == class && r.presets.contains(&self.preset) && r.layers.applies(i, n) && holds(r.when);
        match RULES.iter().find(|r| applies(r)) {
            Some(rule) => (rule.ty, Source::Rule(rule)),
            None => (base, Source::Preset(self.preset)),
        }
    }
}

/// A type name that this crate can write.
pub fn quantizable_type(name: &str) -> Result<GgmlType> {
    match GgmlType::from_name(name) {
        Some(ty) if ty.can_quantize() => Ok(ty),
        _ => {
            let names: Vec<&str> = GgmlType::QUANTIZABLE.iter().map(|t| t.name()).collect();
            bail!("unknown or unsupported type {name:?}: supported types are {}", names.join(", "))
        }
    }
}

/// A projector file's tensor's type, as llama.cpp's converter chooses it: vectors and norms F32,
/// then what the family forces (`forced`), else `base` (`--mmproj-type`), F16 where its blocks
/// don't divide the row (the converter's fallback).
pub fn mmproj_choice(t: &TensorSpec, base: GgmlType, forced: Option<(GgmlType, &'static str)>) -> Choice {
    let (ty, source) = if t.shape.len() <= 1 || t.name.ends_with("_norm.weight") {
        (GgmlType::F32, Source::Vector)
    } else if let Some((ty, why)) = forced {
        (ty, Source::Forced(why))
    } else {
        (base, Source::MmprojType)
    };
    let fitted = if t.shape[0].is_multiple_of(ty.block_size() as u64) { ty } else { GgmlType::F16 };
    Choice { class: t.class, ty: fitted, source, fell_back_from: (fitted != ty).then_some(ty) }
}

/// llama-quantize's fallback for a row width the type's blocks do not divide: 256-blocks to a
/// 32-block type, then F16.
pub fn fallback(ty: GgmlType, row_width: u64) -> GgmlType {
    let fits = |t: GgmlType| row_width.is_multiple_of(t.block_size() as u64);
    if fits(ty) {
        return ty;
    }
    let next = match ty {
        GgmlType::IQ4_XS => GgmlType::IQ4_NL,
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if fits(next) {
        next
    } else {
        GgmlType::F16
    }
}
