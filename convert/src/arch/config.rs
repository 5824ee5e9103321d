//! Reading config.json: typed values with errors that name the key, and transformers' defaults
//! given where the key is read (each architecture reads its keys in one function).

use anyhow::{anyhow, bail, Result};
use serde_json::Value as Json;
use strata_gguf::shape::MAX_LAYERS;

/// The largest number a config may give for a size: GGUF stores sizes as u32, and with every
/// factor below 2^32 no product of two of them overflows.
const MAX_SIZE: u64 = u32::MAX as u64;

/// A (text) config.json, checked: no size above [`MAX_SIZE`], at most [`MAX_LAYERS`] layers.
pub(crate) struct Config<'a>(pub &'a Json);

impl<'a> Config<'a> {
    /// Checks the sizes in `config` (nested objects and arrays included).
    pub fn new(config: &'a Json) -> Result<Config<'a>> {
        check_sizes(config, "")?;
        let c = Config(config);
        if let Some(n) = c.opt_u64("num_hidden_layers")? {
            if n > MAX_LAYERS {
                bail!("config.json: num_hidden_layers is {n}, more than {MAX_LAYERS}");
            }
        }
        Ok(c)
    }

    /// A required whole number.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.opt_u64(key)?.ok_or_else(|| anyhow!("config.json: {key} is missing"))
    }

    /// A whole number, `None` where absent or null; an error where it is something else.
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        match &self.0[key] {
            Json::Null => Ok(None),
            v => v.as_u64().map(Some).ok_or_else(|| anyhow!("config.json: {key} is {v}, not a whole number")),
        }
    }

    /// A whole number, or the config class's `default` where absent.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64> {
        Ok(self.opt_u64(key)?.unwrap_or(default))
    }

    /// A number, `None` where absent or null.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match &self.0[key] {
            Json::Null => Ok(None),
            v => v.as_f64().map(Some).ok_or_else(|| anyhow!("config.json: {key} is {v}, not a number")),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A boolean, or the config class's `default` where absent or null.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match &self.0[key] {
            Json::Null => Ok(default),
            v => v.as_bool().ok_or_else(|| anyhow!("config.json: {key} is {v}, not true or false")),
        }
    }

    /// `layer_types` as booleans, one per layer: true for sliding-window layers.
    pub fn sliding_layers(&self, n_layer: u64) -> Result<Vec<bool>> {
        let types = self.0["layer_types"].as_array().ok_or_else(|| anyhow!("config.json: layer_types is missing"))?;
        if types.len() as u64 != n_layer {
            bail!("config.json: layer_types has {} entries for {n_layer} layers", types.len());
        }
        types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => bail!("config.json: layer_types holds {t}, not sliding_attention or full_attention"),
            })
            .collect()
    }

    /// `intermediate_size`: one width for all layers, or (Gemma 3n) one per layer.
    pub fn per_layer_u64(&self, key: &str, n_layer: u64) -> Result<Vec<u64>> {
        match &self.0[key] {
            Json::Array(items) => {
                if items.len() as u64 != n_layer {
                    bail!("config.json: {key} has {} entries for {n_layer} layers", items.len());
                }
                items
                    .iter()
                    .map(|v| v.as_u64().ok_or_else(|| anyhow!("config.json: {key} holds {v}, not a whole number")))
                    .collect()
            }
            _ => Ok(vec![self.u64(key)?; n_layer as usize]),
        }
    }

    /// `rope_parameters.{section}.{key}`, else `rope_parameters.{key}` (transformers 5), else the
    /// older top-level `key`.
    pub fn rope(&self, section: Option<&str>, key: &str) -> Option<f64> {
        let rope = &self.0["rope_parameters"];
        section.and_then(|s| rope[s][key].as_f64()).or_else(|| rope[key].as_f64()).or_else(|| self.0[key].as_f64())
    }
}

/// Fails on any whole number in `v` (nested objects and arrays included) above [`MAX_SIZE`].
fn check_sizes(v: &Json, path: &str) -> Result<()> {
    match v {
        Json::Number(n) => match n.as_u64() {
            Some(n) if n > MAX_SIZE => bail!("config.json: {path} is {n}, more than any size a model has ({MAX_SIZE})"),
            _ => Ok(()),
        },
        Json::Array(items) => items.iter().enumerate().try_for_each(|(i, x)| check_sizes(x, &format!("{path}[{i}]"))),
        Json::Object(map) => map
            .iter()
            .try_for_each(|(k, x)| check_sizes(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_errors_name_the_key() {
        let json = serde_json::json!({"a": 3, "b": "x", "f": 0.5, "t": true, "n": null, "w": [1, 2]});
        let c = Config::new(&json).unwrap();
        assert_eq!(c.u64("a").unwrap(), 3);
        assert_eq!(c.u64_or("zz", 7).unwrap(), 7);
        assert_eq!(c.u64_or("n", 7).unwrap(), 7);
        assert_eq!(c.u64("b").unwrap_err().to_string(), "config.json: b is \"x\", not a whole number");
        assert_eq!(c.u64("zz").unwrap_err().to_string(), "config.json: zz is missing");
        assert_eq!(c.f64_or("f", 1.0).unwrap(), 0.5);
        assert!(c.bool_or("t", false).unwrap());
        assert_eq!(c.per_layer_u64("w", 2).unwrap(), [1, 2]);
        assert_eq!(c.per_layer_u64("a", 2).unwrap(), [3, 3]);
        assert!(c.per_layer_u64("w", 3).unwrap_err().to_string().contains("w has 2 entries for 3 layers"));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): 2^60 layers allocated a layer table
    /// before anything else was checked; a head_dim of 2^64-1 overflowed `n_head * head_dim`.
    #[test]
    fn hostile_sizes_are_errors() {
        let err = |json: Json| Config::new(&json).err().unwrap().to_string();
        assert!(err(serde_json::json!({"num_hidden_layers": 1u64 << 60})).contains("more than"));
        assert!(
            err(serde_json::json!({"num_hidden_layers": 4097})).contains("num_hidden_layers is 4097, more than 4096")
        );
        assert!(err(serde_json::json!({"head_dim": u64::MAX})).contains("head_dim is 18446744073709551615"));
        assert!(
            err(serde_json::json!({"rope_scaling": {"factor": [1, 1u64 << 33]}})).contains("rope_scaling.factor[1]")
        );
    }
}
