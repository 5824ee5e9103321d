//! Gemma 3n (text): llama.cpp's `gemma3n` architecture, as its converter writes it: per-layer
//! embeddings (PLE), AltUp (the hidden state kept as four predictions, with projections into and
//! out of them stacked into 3-D tensors), LAuReL (a low-rank residual branch), activation
//! sparsity on the first layers, and KV sharing.
//!
//! llama.cpp's gemma3n graph reads few of these keys: it hard-codes what the released E2B and E4B
//! models have (src/models/gemma3n.cpp, llama-hparams.h). A checkpoint that differs would load
//! and compute something else, or fail to load, so the converter refuses it, naming the value.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde_json::Value as Json;
use strata_gguf::{ModelShape, Value, ValueType};

use super::gemma::{self, Common, Defaults};
use super::{lookup, text_name, Architecture, Config, Mapped, Meta, Rows, Tensors, Transform};
use crate::tokenizer::Vocab;

const PER_LAYER: &[(&str, &str)] = &[
    ("altup.correct_output_scale", "altup_correct_scale.weight"),
    ("altup.correction_coefs.weight", "altup_correct_coef.weight"),
    ("altup.prediction_coefs.weight", "altup_predict_coef.weight"),
    ("altup.modality_router.weight", "altup_router.weight"),
    ("altup.router_norm.weight", "altup_router_norm.weight"),
    ("laurel.linear_left.weight", "laurel_l.weight"),
    ("laurel.linear_right.weight", "laurel_r.weight"),
    ("laurel.post_laurel_norm.weight", "laurel_post_norm.weight"),
];

/// Checkpoint prefixes of the tensors stacked into one: `model.altup_projections.{i}.weight`.
const STACKED: &[(&str, &str)] = &[
    ("model.altup_projections.", "altup_proj.weight"),
    ("model.altup_unembed_projections.", "altup_unembd_proj.weight"),
];

/// Layers llama.cpp gives their own KV; each later layer reuses layer 18 (sliding) or 19 (full).
const LLAMA_CPP_KV_LAYERS: usize = 20;
/// Layers on which llama.cpp applies activation sparsity, at [`LLAMA_CPP_SPARSITY`].
const LLAMA_CPP_SPARSE_LAYERS: usize = 10;
const LLAMA_CPP_SPARSITY: f64 = 0.95;

pub struct Gemma3n {
    config: Json,
    g: Common,
    /// Feed-forward width per layer (`intermediate_size`, a list in Gemma3nTextConfig).
    n_ff: Vec<u64>,
    /// config.json gives `intermediate_size` as a list (written as one, as llama.cpp's converter does).
    n_ff_listed: bool,
    sliding: Vec<bool>,
    /// Layers from the end that read an earlier layer's KV cache.
    shared: u64,
    sparsity: Vec<f64>,
    /// AltUp's predictions (llama.cpp's converter stacks one projection fewer).
    altup: u64,
    active_idx: u64,
    /// Width of each layer's slice of the per-layer embedding.
    ple: u64,
    laurel_rank: u64,
}

impl Gemma3n {
    /// Gemma3nTextConfig's own defaults: 2 KV heads, a context of 32768, a window of 512, 15
    /// KV-shared layers. Values llama.cpp's gemma3n graph assumes instead of reading them must
    /// be those (they are also the config class's defaults, so a config.json without the key has
    /// them): 4 AltUp inputs, active index 0, PLE width 256, LAuReL rank 64, softcap 30, and the
    /// KV sharing and sparsity checked below.
    pub fn boxed(config: Json) -> Result<Box<dyn Architecture>> {
        let c = Config::new(&config)?;
        let g = Common::read(&c, Defaults { n_head_kv: 2, n_ctx: 32_768, sliding_window: 512 })?;
        assumed(&c, "final_logit_softcapping", 30.0)?;
        let sliding = c.sliding_layers(g.n_layer)?;
        let shared = c.u64_or("num_kv_shared_layers", 15)?;
        check_kv_sharing(&sliding, shared as usize)?;
        Ok(Box::new(Gemma3n {
            altup: assumed(&c, "altup_num_inputs", 4.0)? as u64,
            active_idx: assumed(&c, "altup_active_idx", 0.0)? as u64,
            ple: assumed(&c, "hidden_size_per_layer_input", 256.0)? as u64,
            laurel_rank: assumed(&c, "laurel_rank", 64.0)? as u64,
            sparsity: sparsity_pattern(&c, g.n_layer as usize)?,
            n_ff: c.per_layer_u64("intermediate_size", g.n_layer)?,
            n_ff_listed: c.0["intermediate_size"].is_array(),
            sliding,
            shared,
            g,
            config,
        }))
    }

    /// The Gemma 3n tensors Gemma 3 does not have.
    fn own_tensor(hf: &str) -> Option<Mapped> {
        if let Some(gguf_name) = lookup(hf, &[], PER_LAYER) {
            return Some(Mapped::whole(gguf_name, Transform::Copy));
        }
        let hf = text_name(hf);
        STACKED.iter().find_map(|(prefix, gguf_name)| {
            let part = hf.strip_prefix(prefix)?.strip_suffix(".weight")?.parse().ok()?;
            Some(Mapped { gguf_name: gguf_name.to_string(), transform: Transform::Copy, part: Some(part) })
        })
    }
}

impl Architecture for Gemma3n {
    fn name(&self) -> &'static str {
        "gemma3n"
    }

    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let g = &self.g;
        let mut m = Meta::new("gemma3n");
        g.metadata(&mut m)?;
        if self.n_ff_listed {
            m.i32_per_layer("feed_forward_length", &self.n_ff)?;
        } else {
            m.u32("feed_forward_length", self.n_ff[0])?;
        }
        m.u32("attention.head_count_kv", g.n_head_kv)?;
        m.u32("attention.key_length", g.head_dim)?;
        m.u32("attention.value_length", g.head_dim)?;
        m.u32("attention.sliding_window", g.sliding_window)?;
        m.u32("altup.num_inputs", self.altup)?;
        m.u32("altup.active_idx", self.active_idx)?;
        m.u32("embedding_length_per_layer_input", self.ple)?;
        m.u32("attention.shared_kv_layers", self.shared)?;
        let scales = self.sparsity.iter().map(|&p| Value::F32(inverse_normal_cdf(p) as f32)).collect();
        m.put("activation_sparsity_scale", Value::Array(ValueType::F32, scales));
        m.bools("attention.sliding_window_pattern", &self.sliding);
        Ok(m.entries)
    }

    fn shape(&self, _n_tokens: Option<u64>) -> Result<ModelShape> {
        let g = &self.g;
        let (d, altup, rank, ple) = (g.n_embd, self.altup, self.laurel_rank, self.ple);
        let first_shared = g.n_layer - self.shared;
        let mut t = Tensors::default();
        let mut layers = Vec::new();
        for (i, &swa) in self.sliding.iter().enumerate() {
            let l = g.layer(g.n_head_kv, g.head_dim, self.n_ff[i], swa, i as u64 >= first_shared);
            // KV-shared layers keep K and V weights they do not use.
            g.layer_tensors(&mut t, i, &l, true, true);
            t.layer(i, "altup_correct_scale.weight", &[d]);
            t.layer(i, "altup_correct_coef.weight", &[altup, altup]);
            t.layer(i, "altup_router.weight", &[d, altup]);
            t.layer(i, "altup_predict_coef.weight", &[altup, altup * altup]);
            t.layer(i, "altup_router_norm.weight", &[d]);
            t.layer(i, "laurel_l.weight", &[d, rank]);
            t.layer(i, "laurel_r.weight", &[rank, d]);
            t.layer(i, "laurel_post_norm.weight", &[d]);
            t.layer(i, "inp_gate.weight", &[d, ple]);
            t.layer(i, "proj.weight", &[ple, d]);
            t.layer(i, "post_norm.weight", &[d]);
            layers.push(l);
        }
        // The embedding tables are padded to vocab_size (see `rows`).
        g.model_tensors(&mut t, g.n_vocab);
        t.add("altup_proj.weight", &[d, d, altup - 1]);
        t.add("altup_unembd_proj.weight", &[d, d, altup - 1]);
        t.add("per_layer_token_embd.weight", &[ple * g.n_layer, g.n_vocab]);
        t.add("per_layer_model_proj.weight", &[d, ple * g.n_layer]);
        t.add("per_layer_proj_norm.weight", &[ple]);
        Ok(ModelShape {
            arch: "gemma3n".into(),
            n_embd: d,
            n_vocab: g.n_vocab,
            layers,
            sliding_window: Some(g.sliding_window),
            tensors: t.0,
        })
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        Gemma3n::own_tensor(hf).or_else(|| Some(Mapped::whole(gemma::gguf_name(hf)?, Transform::Copy)))
    }

    /// The embedding tables get zero rows up to `vocab_size`: the released checkpoints' per-layer
    /// table stops at the text tokens (262144), while the vocabulary goes on with the vision and
    /// audio tokens (262400), whose embeddings come from those towers.
    fn rows(&self, gguf_name: &str) -> Rows {
        match gguf_name {
            "token_embd.weight" | "per_layer_token_embd.weight" => Rows::Pad,
            _ => Rows::Exact,
        }
    }

    fn vocab(&self, dir: &Path) -> Result<Vocab> {
        gemma::sentencepiece_vocab(dir, &self.config, self.g.n_vocab)
    }
}

/// A config.json number llama.cpp assumes to be `value`; absent means transformers' default,
/// which is that value.
fn assumed(c: &Config, key: &str, value: f64) -> Result<f64> {
    match c.0.get(key) {
        None => Ok(value),
        Some(v) if v.as_f64() == Some(value) => Ok(value),
        Some(v) => bail!("config.json: {key} is {v}; llama.cpp's gemma3n assumes {value} (as in Gemma 3n E2B/E4B) and would not run this model as trained"),
    }
}

/// Transformers' KV sharing (each of the last `shared` layers reuses the KV of the last earlier
/// layer of its kind before them) against llama.cpp's (layers from 20 on reuse 18 or 19).
fn check_kv_sharing(swa: &[bool], shared: usize) -> Result<()> {
    let n_layer = swa.len();
    let first_shared = n_layer
        .checked_sub(shared)
        .ok_or_else(|| anyhow!("config.json: num_kv_shared_layers {shared} exceeds the {n_layer} layers"))?;
    let describe = |source: Option<usize>| source.map_or("its own KV".to_string(), |j| format!("the KV of layer {j}"));
    for (il, &is_swa) in swa.iter().enumerate() {
        let trained = match (il >= first_shared).then(|| (0..first_shared).rev().find(|&j| swa[j] == is_swa)) {
            Some(None) => bail!("config.json: with num_kv_shared_layers {shared} of {n_layer} layers, layer {il} reuses KV, but no layer before {first_shared} is of its kind"),
            reused => reused.flatten(),
        };
        let llama_cpp = (il >= LLAMA_CPP_KV_LAYERS).then(|| LLAMA_CPP_KV_LAYERS - if is_swa { 2 } else { 1 });
        if trained != llama_cpp {
            bail!(
                "config.json: with num_kv_shared_layers {shared} of {n_layer} layers, layer {il} uses {}, but llama.cpp's gemma3n gives it {} (it assumes layers 0-19 keep their own KV, as in Gemma 3n E2B/E4B)",
                describe(trained),
                describe(llama_cpp)
            );
        }
    }
    Ok(())
}

/// `activation_sparsity_pattern` (transformers' default where absent: 0.95 on the first 10 layers
/// of models with more than 10), checked against llama.cpp's: 0.95 on layers 0-9 whatever the depth.
fn sparsity_pattern(c: &Config, n_layer: usize) -> Result<Vec<f64>> {
    let pattern: Vec<f64> = match c.0.get("activation_sparsity_pattern") {
        Some(v) => v
            .as_array()
            .and_then(|a| a.iter().map(Json::as_f64).collect())
            .ok_or_else(|| anyhow!("config.json: activation_sparsity_pattern is {v}, not a list of numbers"))?,
        None => (0..n_layer).map(|il| if n_layer > 10 && il < 10 { 0.95 } else { 0.0 }).collect(),
    };
    if pattern.len() != n_layer {
        bail!("config.json: activation_sparsity_pattern has {} entries for {n_layer} layers", pattern.len());
    }
    if let Some(il) =
        (0..n_layer).find(|&il| pattern[il] != if il < LLAMA_CPP_SPARSE_LAYERS { LLAMA_CPP_SPARSITY } else { 0.0 })
    {
        bail!("config.json: activation_sparsity_pattern gives layer {il} {}; llama.cpp's gemma3n applies 0.95 to layers 0-9 and none after (as in Gemma 3n E2B/E4B)", pattern[il]);
    }
    Ok(pattern)
}

/// The standard normal distribution's inverse CDF (Wichura's algorithm AS 241, PPND16, relative
/// error about 1e-16): the cut-off, in standard deviations, below which a layer's sparsity `p`
/// zeroes the activations; -inf for a dense layer (`p` = 0).
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 8] = [
        3.387_132_872_796_366_6,
        133.141_667_891_784_38,
        1_971.590_950_306_551_4,
        13_731.693_765_509_46,
        45_921.953_931_549_87,
        67_265.770_927_008_7,
        33_430.575_583_588_13,
        2_509.080_928_730_122_7,
    ];
    const B: [f64; 8] = [
        1.0,
        42.313_330_701_600_91,
        687.187_007_492_057_9,
        5_394.196_021_424_751,
        21_213.794_301_586_596,
        39_307.895_800_092_71,
        28_729.085_735_721_943,
        5_226.495_278_852_854,
    ];
    const C: [f64; 8] = [
        1.423_437_110_749_683_6,
        4.630_337_846_156_546,
        5.769_497_221_460_691,
        3.647_848_324_763_204_6,
        1.270_458_252_452_368_4,
        0.241_780_725_177_450_6,
        0.022_723_844_989_269_184,
        7.745_450_142_783_414e-4,
    ];
    const D: [f64; 8] = [
        1.0,
        2.053_191_626_637_759,
        1.676_384_830_183_803_8,
        0.689_767_334_985_1,
        0.148_103_976_427_480_07,
        0.015_198_666_563_616_457,
        5.475_938_084_995_345e-4,
        1.050_750_071_644_416_8e-9,
    ];
    const E: [f64; 8] = [
        6.657_904_643_501_104,
        5.463_784_911_164_114,
        1.784_826_539_917_291_3,
        0.296_560_571_828_504_9,
        0.026_532_189_526_576_124,
        0.001_242_660_947_388_078_4,
        2.711_555_568_743_487_6e-5,
        2.010_334_399_292_288_1e-7,
    ];
    const F: [f64; 8] = [
        1.0,
        0.599_832_206_555_887_9,
        0.136_929_880_922_735_8,
        0.014_875_361_290_850_615,
        7.868_691_311_456_133e-4,
        1.846_318_317_510_054_7e-5,
        1.421_511_758_316_446e-7,
        2.044_263_103_389_939_8e-15,
    ];
    let poly = |c: &[f64; 8], x: f64| c.iter().rev().fold(0.0, |acc, &k| acc * x + k);
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180_625 - q * q;
        return q * poly(&A, r) / poly(&B, r);
    }
    let r = (-(if q < 0.0 { p } else { 1.0 - p }).ln()).sqrt();
    let x = if r <= 5.0 { poly(&C, r - 1.6) / poly(&D, r - 1.6) } else { poly(&E, r - 5.0) / poly(&F, r - 5.0) };
    x.copysign(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_normal_cdf_matches_known_quantiles() {
        // Φ⁻¹ to 16 digits (scipy.special.ndtri in float64).
        for (p, x) in [
            (0.5, 0.0),
            (0.95, 1.6448536269514722),
            (0.975, 1.959963984540054),
            (0.01, -2.3263478740408408),
            (1e-10, -6.361340902404056),
        ] {
            assert!(
                (inverse_normal_cdf(p) - x).abs() <= 1e-14 * x.abs().max(1.0),
                "p {p}: {} vs {x}",
                inverse_normal_cdf(p)
            );
        }
        assert_eq!(inverse_normal_cdf(0.0), f64::NEG_INFINITY);
        // What torch's float32 icdf gives llama.cpp's converter for 0.95.
        assert_eq!(inverse_normal_cdf(0.95) as f32, 1.644_853_6_f32);
    }

    fn config(n_layer: usize, shared: usize, full_every: usize) -> Json {
        let types: Vec<&str> = (0..n_layer)
            .map(|i| if (i + 1) % full_every == 0 { "full_attention" } else { "sliding_attention" })
            .collect();
        let sparsity: Vec<f64> = (0..n_layer).map(|i| if i < 10 { 0.95 } else { 0.0 }).collect();
        serde_json::json!({"num_hidden_layers": n_layer, "hidden_size": 64, "intermediate_size": 96, "vocab_size": 10,
            "num_kv_shared_layers": shared, "layer_types": types, "activation_sparsity_pattern": sparsity})
    }

    #[test]
    fn accepts_the_released_layouts_and_refuses_what_llama_cpp_would_run_differently() {
        let err = |c: Json| Gemma3n::boxed(c).err().expect("refused").to_string();
        Gemma3n::boxed(config(30, 10, 5)).expect("E2B's layout");
        Gemma3n::boxed(config(35, 15, 5)).expect("E4B's layout");
        Gemma3n::boxed(config(4, 0, 2)).expect("no sharing, all layers sparse");
        let e = err(config(30, 12, 5));
        assert!(e.contains("layer 18 uses the KV of layer 17") && e.contains("its own KV"), "{e}");
        let e = err(config(2, 1, 2));
        assert!(e.contains("layer 1 reuses KV, but no layer before 1 is of its kind"), "{e}");
        let e = err(config(24, 4, 3));
        assert!(
            e.contains("layer 20 uses the KV of layer 17, but llama.cpp's gemma3n gives it the KV of layer 19"),
            "{e}"
        );
        let mut c = config(12, 0, 6);
        c["activation_sparsity_pattern"] = serde_json::json!(vec![0.95; 12]);
        assert!(err(c).contains("gives layer 10 0.95"));
        let mut c = config(4, 0, 2);
        c["laurel_rank"] = serde_json::json!(32);
        assert!(err(c).contains("laurel_rank is 32; llama.cpp's gemma3n assumes 64"));
    }

    #[test]
    fn maps_stacked_altup_projections_with_their_index() {
        let g = Gemma3n::boxed(config(4, 0, 2)).unwrap();
        let m = g.map("model.language_model.altup_unembed_projections.2.weight").unwrap();
        assert_eq!((m.gguf_name.as_str(), m.part), ("altup_unembd_proj.weight", Some(2)));
        assert_eq!(g.map("model.layers.3.laurel.linear_left.weight").unwrap().gguf_name, "blk.3.laurel_l.weight");
        assert_eq!(Gemma3n::own_tensor("model.layers.3.self_attn.q_proj.weight"), None);
        assert_eq!(g.map("model.layers.3.self_attn.q_proj.weight").unwrap().gguf_name, "blk.3.attn_q.weight");
    }
}
