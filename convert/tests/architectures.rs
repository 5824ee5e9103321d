//! Every architecture in the registry, held to what the registry promises: its shape from
//! config.json alone names, shapes and classes every tensor exactly as the converter writes
//! them from the checkpoint itself, and its metadata writes each key once.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};
use strata_convert::arch::{for_config, REGISTRY};
use strata_convert::convert::{folder_shape, plan, Options};
use strata_convert::policy::Preset;
use strata_gguf::{GgufFile, ModelShape, TensorClass};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

fn read_config(dir: &Path) -> Json {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

/// A config.json for each registered class: the fixtures' (tests/fixtures/models), and for the
/// classes no fixture is saved as, a fixture's config under that class name.
fn configs() -> Vec<(String, Json)> {
    let mut out: Vec<(String, Json)> = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let config = read_config(&entry.unwrap().path());
        out.push((config["architectures"][0].as_str().unwrap().to_string(), config));
    }
    let renamed = |fixture: &str, class: &str| {
        let mut c = read_config(&fixtures().join(fixture));
        c["architectures"] = json!([class]);
        (class.to_string(), c)
    };
    out.push(renamed("qwen3", "Qwen2ForCausalLM"));
    out.push(renamed("llama", "MistralForCausalLM"));
    out.push(renamed("gemma3", "Gemma3ForConditionalGeneration"));
    out.push(renamed("gemma3n", "Gemma3nForConditionalGeneration"));
    out
}

#[test]
fn every_registered_architecture_sizes_and_writes_each_key_once() {
    let configs = configs();
    for (class, _) in REGISTRY {
        let (_, config) = configs
            .iter()
            .find(|(c, _)| c == class)
            .unwrap_or_else(|| panic!("no config for {class}: add a fixture or a renamed config here"));
        let arch = for_config(config.clone()).unwrap_or_else(|e| panic!("{class}: {e:#}"));
        let metadata = arch.metadata().unwrap();
        let mut keys = HashSet::new();
        for (key, _) in &metadata {
            assert!(keys.insert(key), "{class}: {key} written twice");
            assert!(key.starts_with(&format!("{}.", arch.name())), "{class}: {key}");
        }
        let shape = arch.shape(None).unwrap();
        let block_count = metadata.iter().find(|(k, _)| k.ends_with(".block_count")).unwrap().1.as_u64().unwrap();
        assert_eq!(shape.layers.len() as u64, block_count, "{class}");
        for t in &shape.tensors {
            assert_ne!(
                t.class,
                TensorClass::OtherMatrix,
                "{class}: {} is not one of llama.cpp's names strata knows",
                t.name
            );
            assert_eq!(t.class, TensorClass::of(&t.name, t.shape.len()), "{class}: {}", t.name);
        }
    }
}

#[test]
fn shape_from_config_matches_the_converters_tensors() {
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let dir = entry.unwrap().path();
        let predicted: BTreeMap<String, (Vec<u64>, TensorClass)> = for_config(read_config(&dir))
            .unwrap()
            .shape(None)
            .unwrap()
            .tensors
            .into_iter()
            .map(|t| (t.name, (t.shape, t.class)))
            .collect();
        let plan =
            plan(&dir, &Options { preset: Preset::F32, ple_type: None, tensor_types: Vec::new(), imatrix: None })
                .unwrap();
        let converted: BTreeMap<String, (Vec<u64>, TensorClass)> =
            plan.tensors.iter().map(|t| (t.info.name.clone(), (t.info.shape.clone(), t.choice.class))).collect();
        assert_eq!(predicted, converted, "{}", dir.display());
    }
}

/// `ModelShape::from_gguf` (how `plan` and `inspect` size a GGUF file, from its metadata as
/// llama.cpp's loader reads it) gives, for every fixture, the shape its architecture computes
/// from config.json and the tokenizer (`folder_shape`, which `plan` uses on a Hugging Face
/// folder): on the file llama.cpp's own converter made (llamacpp-f32.gguf) and on ours. Tensors
/// are compared by name: the two orders differ.
#[test]
fn shape_from_gguf_equals_the_architectures_shape() {
    let scratch = std::env::temp_dir().join(format!("strata-shape-from-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures()).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected = folder_shape(&dir).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let ours = scratch.join(format!("{name}.gguf"));
        plan(&dir, &Options { preset: Preset::F32, ple_type: None, tensor_types: Vec::new(), imatrix: None })
            .and_then(|p| p.write(&ours, |_| {}))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let theirs = dir.join("llamacpp-f32.gguf");
        assert!(theirs.is_file(), "{name}: no llamacpp-f32.gguf (scripts/fixtures/make_fixtures.py makes it)");
        for file in [&theirs, &ours] {
            let what = file.display();
            let gguf = GgufFile::open(file).unwrap();
            // Every field, so a field added to ModelShape is added here too.
            let ModelShape { arch, n_embd, n_vocab, layers, sliding_window, mut tensors } =
                ModelShape::from_gguf(&gguf).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(
                (&arch, n_embd, n_vocab, sliding_window),
                (&expected.arch, expected.n_embd, expected.n_vocab, expected.sliding_window),
                "{what}"
            );
            assert_eq!(layers, expected.layers, "{what}: layers");
            let mut expected_tensors = expected.tensors.clone();
            tensors.sort_by(|a, b| a.name.cmp(&b.name));
            expected_tensors.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(tensors, expected_tensors, "{what}: tensors");
        }
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}
