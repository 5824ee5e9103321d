//! `sizing::model_shape` (config.json alone) must name and shape every tensor exactly as the
//! converter does from the checkpoint itself.

use std::collections::BTreeMap;
use std::path::Path;

use strata_convert::convert::{plan, Options};
use strata_convert::policy::Preset;
use strata_convert::sizing::model_shape;

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

#[test]
fn sizing_from_config_matches_the_converters_tensors() {
    for name in ["gemma4", "gemma3n", "gemma4-cg", "gemma4-moe", "gemma3", "qwen3"] {
        let dir = fixture(name);
        let config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let predicted: BTreeMap<String, Vec<u64>> = model_shape(&config).unwrap().tensors.into_iter().map(|t| (t.name, t.shape)).collect();
        let plan = plan(&dir, &Options { preset: Preset::F32, ple_type: None, tensor_types: Vec::new() }).unwrap();
        let converted: BTreeMap<String, Vec<u64>> = plan.tensors.iter().map(|t| (t.info.name.clone(), t.info.shape.clone())).collect();
        assert_eq!(predicted, converted, "{name}");
    }
}
