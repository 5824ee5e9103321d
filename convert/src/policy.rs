//! The quantization policy: which ggml type each tensor gets.
//!
//! Two steps, as llama.cpp's llama-quant.cpp does them, but as data: every tensor is first put in
//! a [`TensorClass`]; then a preset's base type applies, adjusted by the rules in [`RULES`]
//! (llama-quantize's choices, some only with an importance matrix), then `--ple-type`
//! for the per-layer embedding table, then `--tensor-type REGEX=TYPE` overrides. Last, a type
//! whose block does not divide a tensor's row width falls back to one that does, as
//! llama-quantize falls back, and the fallback is reported.

use std::fmt;

use anyhow::{anyhow, bail, Result};
use regex::Regex;
use strata_quantize::GgmlType;

use strata_gguf::{block_index, is_per_expert, TensorClass, TensorSpec};

/// A named mix: the base type and, for K mixes, the rules that give some tensors more bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum Preset {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4_K_S,
    Q4_K_M,
    Q5_K_M,
    Q6_K,
}

impl Preset {
    pub const ALL: &'static [Preset] = &[
        Preset::F32,
        Preset::F16,
        Preset::BF16,
        Preset::Q8_0,
        Preset::Q4_0,
        Preset::Q4_1,
        Preset::Q5_0,
        Preset::Q5_1,
        Preset::Q4_K_S,
        Preset::Q4_K_M,
        Preset::Q5_K_M,
        Preset::Q6_K,
    ];

    /// The lower-case name used on the command line: "q4_k_m".
    pub fn name(self) -> &'static str {
        match self {
            Preset::F32 => "f32",
            Preset::F16 => "f16",
            Preset::BF16 => "bf16",
            Preset::Q8_0 => "q8_0",
            Preset::Q4_0 => "q4_0",
            Preset::Q4_1 => "q4_1",
            Preset::Q5_0 => "q5_0",
            Preset::Q5_1 => "q5_1",
            Preset::Q4_K_S => "q4_k_s",
            Preset::Q4_K_M => "q4_k_m",
            Preset::Q5_K_M => "q5_k_m",
            Preset::Q6_K => "q6_k",
        }
    }

    pub fn from_name(name: &str) -> Result<Preset> {
        Preset::ALL.iter().copied().find(|p| p.name().eq_ignore_ascii_case(name)).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            anyhow!("unknown preset {name:?}: known ones are {}", names.join(", "))
        })
    }

    /// The type most matrices get.
    pub fn base_type(self) -> GgmlType {
        match self {
            Preset::F32 => GgmlType::F32,
            Preset::F16 => GgmlType::F16,
            Preset::BF16 => GgmlType::BF16,
            Preset::Q8_0 => GgmlType::Q8_0,
            Preset::Q4_0 => GgmlType::Q4_0,
            Preset::Q4_1 => GgmlType::Q4_1,
            Preset::Q5_0 => GgmlType::Q5_0,
            Preset::Q5_1 => GgmlType::Q5_1,
            Preset::Q4_K_S | Preset::Q4_K_M => GgmlType::Q4_K,
            Preset::Q5_K_M => GgmlType::Q5_K,
            Preset::Q6_K => GgmlType::Q6_K,
        }
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
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layers::All => f.write_str("every layer"),
            Layers::MoreBits => f.write_str("the first and last eighth of the layers and every third between (use_more_bits)"),
            Layers::First(k) => write!(f, "the first {k} layers"),
            Layers::FirstEighth => f.write_str("the first eighth of the layers"),
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
        }
    }
}

/// One adjustment of a preset: tensors of `class` in `layers` get `ty` (`with_imatrix`: only
/// when an importance matrix is given).
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub presets: &'static [Preset],
    pub class: TensorClass,
    pub layers: Layers,
    pub ty: GgmlType,
    pub with_imatrix: bool,
}

/// llama-quantize's adjustments (llama-quant.cpp, dense models).
pub const RULES: &[Rule] = &[
    Rule { presets: &[Preset::Q4_K_M, Preset::Q5_K_M], class: TensorClass::AttentionV, layers: Layers::MoreBits, ty: GgmlType::Q6_K, with_imatrix: false },
    Rule { presets: &[Preset::Q4_K_S], class: TensorClass::AttentionV, layers: Layers::First(4), ty: GgmlType::Q5_K, with_imatrix: false },
    Rule { presets: &[Preset::Q4_K_M, Preset::Q5_K_M], class: TensorClass::FfnDown, layers: Layers::MoreBits, ty: GgmlType::Q6_K, with_imatrix: false },
    Rule { presets: &[Preset::Q4_K_S], class: TensorClass::FfnDown, layers: Layers::FirstEighth, ty: GgmlType::Q5_K, with_imatrix: false },
    // "Guard against craziness in the first few ffn_down layers that can happen even with
    // imatrix for Q4_0/Q5_0" (llama-quant.cpp): only with an imatrix, so that a file quantized
    // without one stays what it always was.
    Rule { presets: &[Preset::Q4_0], class: TensorClass::FfnDown, layers: Layers::FirstEighth, ty: GgmlType::Q4_1, with_imatrix: true },
    Rule { presets: &[Preset::Q5_0], class: TensorClass::FfnDown, layers: Layers::FirstEighth, ty: GgmlType::Q5_1, with_imatrix: true },
    Rule { presets: &[Preset::Q4_K_M], class: TensorClass::AttentionQkv, layers: Layers::All, ty: GgmlType::Q5_K, with_imatrix: false },
    Rule { presets: &[Preset::Q5_K_M], class: TensorClass::AttentionQkv, layers: Layers::All, ty: GgmlType::Q6_K, with_imatrix: false },
];

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
                let when = if r.with_imatrix { " when an imatrix is given" } else { "" };
                write!(f, "{}: {} in {} get {}{when} (llama-quantize)", presets.join("/"), r.class, r.layers, r.ty)
            }
            Source::PleType => f.write_str("the PLE table's own type (--ple-type; by default Q8_0 for presets below 8 bits)"),
            Source::Override(pattern) => write!(f, "--tensor-type {pattern}"),
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
            Some(from) => format!("{}; {from}'s blocks of {} don't divide {width} columns, so {}", self.source, from.block_size(), self.ty),
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
}

impl Policy {
    pub fn new(preset: Preset) -> Self {
        Policy { preset, ple_type: preset.default_ple_type(), overrides: Vec::new(), tied_embeddings: false, has_imatrix: false }
    }

    /// Adds a `REGEX=TYPE` override.
    pub fn add_override(&mut self, spec: &str) -> Result<()> {
        let (pattern, ty) = spec.rsplit_once('=').ok_or_else(|| anyhow!("--tensor-type {spec:?}: expected REGEX=TYPE"))?;
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
            let ty = if t.shape[0] % base.block_size() as u64 != 0 || base == GgmlType::Q8_0 { GgmlType::Q8_0 } else { GgmlType::Q6_K };
            return (ty, Source::Output);
        }
        let applies = |r: &Rule| r.class == class && r.presets.contains(&self.preset) && r.layers.applies(i, n) && (self.has_imatrix || !r.with_imatrix);
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

/// llama-quantize's fallback for a row width the type's blocks do not divide: 256-blocks to a
/// 32-block type, then F16.
pub fn fallback(ty: GgmlType, row_width: u64) -> GgmlType {
    let fits = |t: GgmlType| row_width % t.block_size() as u64 == 0;
    if fits(ty) {
        return ty;
    }
    let next = match ty {
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
