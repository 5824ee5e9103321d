//! `strata plan`, `strata devices` and `strata convert --device/--dry-run`: the sizes a plan
//! predicts from a config alone (a models.toml entry) against what `convert` then writes, on
//! the fixtures and on a Gemma-4-E2B-shaped checkpoint; the recommendation; and bad input.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{assert_clean_failure, repo, scratch_dir, scratch_file, strata, strata_ok};
use serde_json::{json, Value};
use strata_run::catalog::CONFIG_KEYS;
use strata_run::media_cost::MediaCost;

/// A catalog with one model entry made from a config.json, as models.toml entries are.
fn catalog_for(name: &str, config: &Value) -> PathBuf {
    let mut entry = toml::Table::new();
    // Multimodal configs: models.toml holds the text_config's keys.
    let text = if config["text_config"].is_object() { &config["text_config"] } else { config };
    for (k, v) in text.as_object().unwrap() {
        if CONFIG_KEYS.contains(&k.as_str()) && !v.is_null() {
            entry.insert(k.clone(), toml::Value::try_from(v).unwrap());
        }
    }
    // transformers 5 writes Gemma 4's global head dim into per_layer_config.
    if let Some(per_layer) = text["per_layer_config"].as_object() {
        if let Some(dim) = per_layer.values().find_map(|c| c["head_dim"].as_u64()) {
            entry.insert("global_head_dim".into(), toml::Value::Integer(dim as i64));
        }
    }
    let text = format!(
        "[device.laptop-cpu-8gb]\ndescription = \"test\"\ngpu_memory_gib = 0.0\ngpu_bandwidth_gb_s = 0.0\nram_gib = 8.0\n\
         ram_bandwidth_gb_s = 51.2\nshared_memory = false\nsources = []\n[model.{name}]\nrepo = \"test\"\narchitecture = {:?}\nsource = \"tests/plan.rs\"\n[model.{name}.config]\n{}",
        config["architectures"][0].as_str().unwrap(),
        toml::to_string(&entry).unwrap()
    );
    scratch_file(&format!("{name}-catalog.toml"), text.as_bytes())
}

fn plan_json(args: &[&str]) -> Value {
    serde_json::from_str(&strata_ok(&[&["plan"], args, &["--json"]].concat())).unwrap()
}

fn mix_bytes(plan: &Value, body: &str, ple: Option<&str>) -> u64 {
    let m = plan["mixes"].as_array().unwrap().iter().find(|m| m["body"] == body && m["ple"].as_str() == ple);
    m.unwrap_or_else(|| panic!("no mix {body}/{ple:?} in {plan}"))["file_bytes"].as_u64().unwrap()
}

fn dry_run_bytes(dir: &Path, extra: &[&str]) -> u64 {
    let out = strata_ok(&[&["convert", dir.to_str().unwrap(), "--dry-run", "--json"], extra].concat());
    serde_json::from_str::<Value>(&out).unwrap()["total_bytes"].as_u64().unwrap()
}

fn assert_within_1_percent(predicted: u64, written: u64, what: &str) {
    let rel = (predicted as f64 - written as f64).abs() / written as f64;
    assert!(rel <= 0.01, "{what}: plan predicts {predicted} bytes, convert writes {written} ({:.2}% off)", rel * 100.0);
}

#[test]
fn plan_sizes_from_config_match_convert_on_the_fixtures() {
    for (name, body, ple) in [
        ("gemma4", "q8_0", Some("Q4_0")),
        ("gemma4", "q4_k_m", Some("Q8_0")),
        ("gemma3n", "q8_0", Some("Q4_0")),
        ("gemma4-cg", "q6_k", Some("Q8_0")),
        ("gemma3", "q8_0", None),
        ("qwen3", "q6_k", None),
    ] {
        let dir = repo().join("tests/fixtures/models").join(name);
        let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
        let catalog = catalog_for(name, &config);
        let plan = plan_json(&[name, "--catalog", catalog.to_str().unwrap(), "--device", "laptop-cpu-8gb"]);
        let mut extra = vec!["--type", body];
        let ple_flag = ple.map(str::to_lowercase);
        if let Some(p) = &ple_flag {
            extra.extend(["--ple-type", p]);
        }
        assert_within_1_percent(mix_bytes(&plan, body, ple), dry_run_bytes(&dir, &extra), name);
    }
}

/// A checkpoint with Gemma 4 E2B's tensor names and shapes (from transformers, in
/// tests/fixtures/gemma-4-e2b.manifest.json, made by scripts/fixtures/synthetic_checkpoint.py from
/// models.toml's entry) whose weights are a sparse hole: planning and --dry-run read headers only.
fn e2b_shaped_checkpoint() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(write_e2b_shaped_checkpoint).clone()
}

fn write_e2b_shaped_checkpoint() -> PathBuf {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/gemma-4-e2b.manifest.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch_dir("e2b");
    std::fs::write(dir.join("config.json"), manifest["config"].to_string()).unwrap();
    write_hollow_safetensors(&dir.join("model.safetensors"), manifest["tensors"].as_array().unwrap().iter());
    // The gemma4 fixture's tokenizer, its vocabulary padded to E2B's 262144 entries.
    let fixture = repo().join("tests/fixtures/models/gemma4");
    for name in ["tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(fixture.join(name), dir.join(name)).unwrap();
    }
    let mut tok: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    let next = vocab.values().map(|v| v.as_u64().unwrap()).max().unwrap() + 1;
    for id in next..manifest["config"]["vocab_size"].as_u64().unwrap() {
        vocab.insert(format!("<unused{id}>"), json!(id));
    }
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    dir
}

/// A BF16 safetensors file of the manifest's `[name, shape]` entries whose data is a sparse hole.
fn write_hollow_safetensors<'a>(path: &Path, tensors: impl Iterator<Item = &'a Value>) {
    let (mut header, mut offset) = (serde_json::Map::new(), 0u64);
    for t in tensors {
        let shape: Vec<u64> = t[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        let size = 2 * shape.iter().product::<u64>();
        header.insert(
            t[0].as_str().unwrap().into(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}),
        );
        offset += size;
    }
    let mut head = Value::Object(header).to_string().into_bytes();
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(&(head.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&head).unwrap();
    f.set_len(8 + head.len() as u64 + offset).unwrap();
}

/// Gemma 4 E2B's towers as models.toml describes them weigh what convert writes from a
/// checkpoint with the names and shapes transformers gives those towers
/// (tests/fixtures/gemma-4-e2b-towers.manifest.json, made by scripts/fixtures/synthetic_checkpoint.py
/// from models.toml's entry): every tensor found, every shape as the config makes it.
#[test]
fn plan_tower_sizes_from_models_toml_match_convert_on_e2b_shaped_towers() {
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("tests/fixtures/gemma-4-e2b-towers.manifest.json")).unwrap(),
    )
    .unwrap();
    let dir = scratch_dir("e2b-towers");
    std::fs::write(dir.join("config.json"), manifest["config"].to_string()).unwrap();
    let catalog = strata_run::catalog::Catalog::builtin().unwrap();
    let known = &catalog.models["gemma-4-e2b"];
    let preprocessor = serde_json::to_value(&known.towers.as_ref().unwrap().preprocessor).unwrap();
    std::fs::write(dir.join("preprocessor_config.json"), preprocessor.to_string()).unwrap();
    let towers =
        manifest["tensors"].as_array().unwrap().iter().filter(|t| !t[0].as_str().unwrap().contains("language_model"));
    write_hollow_safetensors(&dir.join("model.safetensors"), towers);
    let written = MediaCost::from_folder(&dir, None).unwrap().unwrap();
    let plan = plan_json(&["gemma-4-e2b", "--device", "phone-8gb-lpddr5x"]);
    let towers = &plan["towers"];
    for (key, bytes) in [
        ("vision_bytes", written.vision_bytes),
        ("audio_bytes", written.audio_bytes),
        ("projector_bytes", written.projector_bytes),
    ] {
        assert_eq!(towers[key].as_u64().unwrap(), bytes, "{key}");
    }
    // The model card's "~150M" vision and "~300M" audio parameters, mostly at two bytes each.
    let params = |bytes: u64| bytes as f64 / 2e6;
    assert!((140.0..190.0).contains(&params(written.vision_bytes)), "{} M", params(written.vision_bytes));
    assert!((280.0..330.0).contains(&params(written.audio_bytes)), "{} M", params(written.audio_bytes));
    assert_eq!(towers["image_tokens"], json!([70, 1120]));
    assert_eq!(towers["audio_tokens_per_second"], json!(25.0));
}

/// `plan` counts a projector as llama.cpp's converter writes it (the fixtures' mmproj files,
/// F16 for an F32 checkpoint): from a folder's towers, from a GGUF's projector beside it or
/// named by --mmproj; --no-mmproj leaves it out, and every mix needs that much less.
#[test]
fn plan_counts_the_towers_as_llama_cpp_writes_them() {
    for name in ["gemma4-av", "gemma3-vision"] {
        let dir = repo().join("tests/fixtures/models").join(name);
        let reference = dir.join("mmproj-llamacpp-f16.gguf");
        let bytes = strata_gguf::GgufFile::open(&reference).unwrap().tensor_bytes();
        let args = [dir.to_str().unwrap(), "--device", "laptop-cpu-8gb"];
        let with = plan_json(&args);
        let towers = &with["towers"];
        let weights: u64 =
            ["vision_bytes", "audio_bytes", "projector_bytes"].iter().map(|k| towers[k].as_u64().unwrap()).sum();
        assert_eq!(weights, bytes, "{name}");
        let total =
            weights + towers["vision_buffer_bytes"].as_u64().unwrap() + towers["audio_buffer_bytes"].as_u64().unwrap();
        let without = plan_json(&[&args[..], &["--no-mmproj"]].concat());
        assert!(without["towers"].is_null());
        for (a, b) in with["mixes"].as_array().unwrap().iter().zip(without["mixes"].as_array().unwrap()) {
            assert_eq!(a["ram_bytes"].as_u64().unwrap(), b["ram_bytes"].as_u64().unwrap() + total, "{name}");
        }
        // A GGUF: the projector beside it under llama.cpp's name, or the one --mmproj names.
        let gguf = dir.join("llamacpp-f32.gguf");
        let named = plan_json(&[gguf.to_str().unwrap(), "--mmproj", reference.to_str().unwrap()]);
        assert_eq!(named["towers"]["vision_bytes"], towers["vision_bytes"], "{name}");
        let beside = scratch_dir(&format!("plan-beside-{name}"));
        std::fs::copy(&gguf, beside.join("m.gguf")).unwrap();
        std::fs::copy(&reference, beside.join("mmproj-m.gguf")).unwrap();
        let found = plan_json(&[beside.join("m.gguf").to_str().unwrap()]);
        assert_eq!(found["towers"]["audio_bytes"], towers["audio_bytes"], "{name}");
    }
    let text_only = plan_json(&[repo().join("tests/fixtures/models/gemma3").to_str().unwrap()]);
    assert!(text_only["towers"].is_null());
    // A text model given as a projector is refused by name.
    let gguf = repo().join("tests/fixtures/models/gemma4-av/llamacpp-f32.gguf");
    let out = strata(&["plan", gguf.to_str().unwrap(), "--mmproj", gguf.to_str().unwrap()]);
    assert_clean_failure(&out, &["llamacpp-f32.gguf: not a projector file"]);
}

/// On an 8 GB phone, Gemma 4 E2B says what its towers cost, what an image and a second of audio
/// take of the context, and what leaving the towers out would change.
#[test]
fn plan_says_what_the_towers_cost_on_a_phone() {
    let out = strata_ok(&["plan", "gemma-4-e2b", "--device", "phone-8gb-lpddr5x"]);
    for said in [
        "towers at BF16: vision ",
        "towers from: the towers of google/gemma-4-E2B-it",
        "an image takes 70 to 1120 tokens of the context, by its size; a second of audio 25 (a minute: 1500)",
        "leaving the towers out (--no-mmproj) frees",
        "recommended: --type",
    ] {
        assert!(out.contains(said), "{said:?} not in:\n{out}");
    }
    let without = strata_ok(&["plan", "gemma-4-e2b", "--device", "phone-8gb-lpddr5x", "--no-mmproj"]);
    assert!(!without.contains("towers"), "{without}");
}

#[test]
fn plan_sizes_from_models_toml_match_convert_on_an_e2b_shaped_checkpoint() {
    let dir = e2b_shaped_checkpoint();
    let plan = plan_json(&["gemma-4-e2b", "--device", "rtx4060-8gb"]);
    for (body, ple) in [("q4_k_m", "q8_0"), ("q8_0", "q4_0"), ("q6_k", "q6_k")] {
        let predicted = mix_bytes(&plan, body, Some(&ple.to_uppercase()));
        assert_within_1_percent(
            predicted,
            dry_run_bytes(&dir, &["--type", body, "--ple-type", ple]),
            &format!("E2B {body} + PLE {ple}"),
        );
    }
    // The PLE table is a third of the file at Q8_0: planned on its own, on disk and read lazily
    // (by default), or whole in host memory (--lazy-mode off).
    let q8 = plan["mixes"].as_array().unwrap().iter().find(|m| m["body"] == "q8_0" && m["ple"] == "Q8_0").unwrap();
    assert!(q8["ple_bytes"].as_u64().unwrap() > q8["file_bytes"].as_u64().unwrap() / 3);
    assert!(q8["ple_lazy"].as_bool().unwrap() && q8["ram_bytes"].as_u64().unwrap() < q8["ple_bytes"].as_u64().unwrap());
    let whole = plan_json(&["gemma-4-e2b", "--device", "rtx4060-8gb", "--lazy-mode", "off"]);
    let q8 = whole["mixes"].as_array().unwrap().iter().find(|m| m["body"] == "q8_0" && m["ple"] == "Q8_0").unwrap();
    assert!(q8["ram_bytes"].as_u64().unwrap() >= q8["ple_bytes"].as_u64().unwrap());
}

/// The largest peak resident memory of any child process this test process has waited for.
fn children_peak_rss_bytes() -> u64 {
    #[repr(C)]
    struct Rusage {
        times: [i64; 4],
        maxrss_kib: i64,
        rest: [i64; 13],
    }
    extern "C" {
        fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
    const RUSAGE_CHILDREN: i32 = -1;
    let mut usage = Rusage { times: [0; 4], maxrss_kib: 0, rest: [0; 13] };
    // SAFETY: getrusage fills the struct, laid out as Linux's struct rusage on 64-bit targets.
    assert_eq!(unsafe { getrusage(RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.maxrss_kib as u64 * 1024
}

#[test]
fn converting_an_e2b_shaped_checkpoint_stays_in_flat_memory() {
    // 9.3 GB of BF16 input, the PLE table alone 4.7 GB: streamed in row chunks whose pages are
    // unmapped once read, peak memory stays far below any one table.
    let dir = e2b_shaped_checkpoint();
    let out = scratch_dir("e2b-out").join("e2b.gguf");
    strata_ok(&[
        "convert",
        dir.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "q4_k_m",
        "--ple-type",
        "q8_0",
    ]);
    let written = std::fs::metadata(&out).unwrap().len();
    std::fs::remove_file(&out).unwrap();
    assert!(written > 3 << 30, "{written} bytes written");
    let peak = children_peak_rss_bytes();
    assert!(peak < 1 << 30, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn recommendation_follows_the_device() {
    // An 8 GB GPU holds E2B's body at Q8_0; the PLE table stays in host memory.
    let gpu = plan_json(&["gemma-4-e2b", "--device", "rtx4060-8gb"]);
    let rec = &gpu["mixes"][gpu["recommended"].as_u64().unwrap() as usize];
    assert_eq!(
        (rec["body"].as_str(), rec["ple"].as_str(), rec["offload"].as_str()),
        (Some("q8_0"), Some("Q8_0"), Some("full")),
        "{gpu}"
    );
    // A 6 GB phone sharing its memory holds E4B's text model at Q8_0 with a Q8_0 table read
    // lazily from flash; with the table in RAM (--lazy-mode off) both the body and the table
    // must shrink; with the towers too (the default), the body shrinks.
    let phone = plan_json(&["gemma-4-e4b", "--device", "phone-6gb-lpddr5", "--no-mmproj"]);
    let rec = &phone["mixes"][phone["recommended"].as_u64().unwrap() as usize];
    assert_eq!(
        (rec["body"].as_str(), rec["ple"].as_str(), rec["ple_lazy"].as_bool()),
        (Some("q8_0"), Some("Q8_0"), Some(true)),
        "{}",
        phone["reason"]
    );
    let towers = plan_json(&["gemma-4-e4b", "--device", "phone-6gb-lpddr5"]);
    let rec = &towers["mixes"][towers["recommended"].as_u64().unwrap() as usize];
    assert_eq!(rec["body"], "q5_k_m", "{}", towers["reason"]);
    assert_eq!(towers["recommended_without_towers"]["body"], "q8_0");
    let phone = plan_json(&["gemma-4-e4b", "--device", "phone-6gb-lpddr5", "--lazy-mode", "off", "--no-mmproj"]);
    let rec = &phone["mixes"][phone["recommended"].as_u64().unwrap() as usize];
    assert!(rec["fits"].as_bool().unwrap() && rec["ram_bytes"].as_u64().unwrap() > rec["ple_bytes"].as_u64().unwrap());
    assert!(rec["file_bytes"].as_u64().unwrap() < mix_bytes(&phone, "q8_0", Some("Q8_0")), "{}", phone["reason"]);
    // Without a GPU, a layer count is never offloaded.
    let cpu = plan_json(&["smollm2-135m", "--device", "laptop-cpu-8gb"]);
    assert!(cpu["mixes"].as_array().unwrap().iter().all(|m| m["offload"] == "cpu" && m["gpu_bytes"] == 0));
}

#[test]
fn machines_lending_memory_over_rpc_raise_the_mix() {
    let body = |plan: &Value| {
        let rec = &plan["mixes"][plan["recommended"].as_u64().unwrap() as usize];
        (rec["body"].as_str().unwrap().to_string(), rec["offload"].clone())
    };
    // Gemma 4 31B on one 16 GB laptop only fits at 2 bits; a second lending its RAM over RPC
    // takes a share of the layers, and a 6-bit body fits across the two.
    let alone = plan_json(&["gemma-4-31b", "--device", "laptop-cpu-16gb"]);
    assert_eq!(body(&alone).0, "q2_k", "{}", alone["reason"]);
    let two = plan_json(&["gemma-4-31b", "--device", "laptop-cpu-16gb", "--device", "rpc:laptop-cpu-16gb"]);
    let (best, offload) = body(&two);
    assert!(
        ["q8_0", "q6_k", "q5_k_m", "q4_k_m"].contains(&best.as_str()) && offload["partial"].as_u64().unwrap() > 0,
        "{best} {offload}: {}",
        two["reason"]
    );
    assert!(
        two["reason"].as_str().unwrap().contains("offloaded over RPC")
            && two["device"]["name"] == "laptop-cpu-16gb + rpc:laptop-cpu-16gb",
        "{two}"
    );
    assert_clean_failure(
        &strata(&["plan", "gemma-4-31b", "--device", "rpc:laptop-cpu-16gb"]),
        &["the first --device is the machine that runs the model"],
    );
    assert_clean_failure(
        &strata(&["plan", "gemma-4-31b", "--device", "laptop-cpu-16gb", "--device", "laptop-cpu-8gb"]),
        &["each --device is rpc:PROFILE"],
    );
}

#[test]
fn plan_shows_the_quality_measured_with_or_without_an_imatrix() {
    let kl = |plan: &Value, body: &str| {
        let m = plan["mixes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["body"] == body)
            .unwrap_or_else(|| panic!("no {body} in {plan}"));
        m["kl_mean"].as_f64().unwrap_or_else(|| panic!("no KL for {body}: {m}"))
    };
    // models.toml's [quality.smollm2-135m] and its .imatrix table, as measure_quality.sh wrote them.
    let plain = plan_json(&["smollm2-135m", "--device", "laptop-cpu-8gb"]);
    let weighted = plan_json(&["smollm2-135m", "--device", "laptop-cpu-8gb", "--imatrix"]);
    assert_eq!((kl(&plain, "q4_0"), kl(&weighted, "q4_0")), (0.259371, 0.153209));
    assert!(weighted["quality_source"].as_str().unwrap().contains("with an imatrix"), "{weighted}");
    assert!(plain["quality_source"].as_str().unwrap().contains("without an imatrix"), "{plain}");
}

#[test]
fn convert_device_takes_the_recommendation() {
    let dir = repo().join("tests/fixtures/models/gemma4");
    let out = strata(&["convert", dir.to_str().unwrap(), "--dry-run", "--json", "--device", "laptop-cpu-8gb"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["preset"], "q8_0");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device laptop-cpu-8gb: --type q8_0 --ple-type q8_0"));
    // An explicit --type still wins.
    let out = strata_ok(&[
        "convert",
        dir.to_str().unwrap(),
        "--dry-run",
        "--json",
        "--device",
        "laptop-cpu-8gb",
        "--type",
        "q4_0",
    ]);
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["preset"], "q4_0");
}

#[test]
fn devices_lists_the_cpu_and_ram() {
    let out: Value = serde_json::from_str(&strata_ok(&["devices", "--json"])).unwrap();
    assert!(out["devices"].as_array().unwrap().iter().any(|d| d["kind"] == "CPU"), "{out}");
    assert!(out["ram"]["total"].as_u64().unwrap() >= out["ram"]["available"].as_u64().unwrap());
    assert!(out["ram"]["available"].as_u64().unwrap() > 0);
}

/// The linked ggml must not carry its AMX kernels (they segfault on Intel CPUs with AMX,
/// llama.cpp issue 20824), and must be built for this CPU (`-march=native`): what this
/// machine's /proc/cpuinfo lists of AVX2 and AVX-512 is among ggml's CPU features.
#[test]
fn linked_ggml_is_native_and_has_no_amx_kernels() {
    let out: Value = serde_json::from_str(&strata_ok(&["devices", "--json"])).unwrap();
    let info = &out["ggml"];
    let cpu = info["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "CPU")
        .unwrap_or_else(|| panic!("no CPU backend in {info}"));
    let features = cpu["features"].as_object().unwrap();
    let amx: Vec<&String> = features.keys().filter(|k| k.starts_with("AMX")).collect();
    assert!(amx.is_empty(), "ggml was built with its AMX kernels {amx:?}: {}", info["system_info"]);
    assert!(!info["system_info"].as_str().unwrap().contains("AMX"), "{info}");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let flags: Vec<&str> = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap().split_whitespace().collect();
    for (flag, feature) in [("avx2", "AVX2"), ("avx512f", "AVX512")] {
        if flags.contains(&flag) {
            assert_eq!(
                features.get(feature).and_then(Value::as_str),
                Some("1"),
                "this CPU has {flag} but ggml was not built for it: {info}"
            );
        }
    }
    let text = strata_ok(&["devices"]);
    assert!(text.contains("ggml built with") && text.contains("CPU: "), "{text}");
}

#[test]
fn bad_plans_say_what_is_wrong() {
    assert_clean_failure(
        &strata(&["plan", "gemma-9-huge"]),
        &["unknown model \"gemma-9-huge\"", "known: ", "gemma-4-e2b"],
    );
    assert_clean_failure(
        &strata(&["plan", "gemma-4-e2b", "--device", "toaster"]),
        &["unknown device \"toaster\"", "rtx4060-8gb"],
    );
    // Nothing fits: say what the smallest option needs and by how much it misses.
    assert_clean_failure(
        &strata(&["plan", "gemma-4-31b", "--device", "phone-6gb-lpddr5"]),
        &["nothing fits phone-6gb-lpddr5", "the smallest mix", "GiB more than"],
    );
    let bad = scratch_file("bad-catalog.toml", b"[device.d]\ndescription = \"x\"\ngpu_memory_gib = 8.0\ngpu_bandwidth_gb_s = 1.0\nram_gib = 16.0\nram_bandwidth_gb_s = 51.2\nsources = []\n");
    assert_clean_failure(
        &strata(&["plan", "x", "--catalog", bad.to_str().unwrap()]),
        &["bad-catalog.toml", "device.d", "missing field `shared_memory`"],
    );
    assert_clean_failure(&strata(&["plan", "smollm2-135m", "--ctx-size", "0"]), &["--ctx-size"]);
}

/// `convert --dry-run --json` lists every tensor with its type and the rule that chose it, and
/// `--explain` prints the same as a table, one line a tensor.
#[test]
fn convert_explains_each_tensors_type() {
    let dir = repo().join("tests/fixtures/models/gemma4");
    let args = [
        "convert",
        dir.to_str().unwrap(),
        "--dry-run",
        "--type",
        "q4_k_m",
        "--ple-type",
        "q8_0",
        "--tensor-type",
        r"^blk\.1\.ffn_up\.weight$=q6_k",
    ];
    let report: Value = serde_json::from_str(&strata_ok(&[&args[..], &["--json"]].concat())).unwrap();
    let tensors = report["tensors"].as_array().unwrap();
    let counted: u64 = report["plan"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(tensors.len() as u64, counted);
    let reason = |name: &str| {
        let t = tensors.iter().find(|t| t["name"] == name).unwrap_or_else(|| panic!("no {name}"));
        (t["type"].as_str().unwrap().to_string(), t["reason"].as_str().unwrap().to_string())
    };
    assert_eq!(
        reason("per_layer_token_embd.weight"),
        (
            "Q8_0".to_string(),
            "the PLE table's own type (--ple-type; by default Q8_0 for presets below 8 bits)".to_string()
        )
    );
    assert_eq!(
        reason("blk.1.ffn_up.weight"),
        (
            "Q8_0".to_string(),
            r"--tensor-type ^blk\.1\.ffn_up\.weight$; Q6_K's blocks of 256 don't divide 64 columns, so Q8_0"
                .to_string()
        )
    );
    assert_eq!(reason("blk.0.attn_norm.weight").1, "a vector: always F32");
    // ffn_down of layer 2 (of 6): llama-quantize's use_more_bits rule, then the fallback.
    let (ty, why) = reason("blk.2.ffn_down.weight");
    assert!(
        ty == "Q8_0"
            && why.starts_with("q4_k_m/q5_k_m: ffn_down in the first and last eighth")
            && why.contains("Q6_K's blocks of 256 don't divide 96 columns"),
        "{ty}: {why}"
    );
    let text = strata_ok(&[&args[..], &["--explain"]].concat());
    let lines: Vec<&str> = text.lines().skip_while(|l| !l.trim_start().starts_with("tensor ")).skip(1).collect();
    for t in tensors {
        let name = t["name"].as_str().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with(&format!("{name} ")) && l.ends_with(t["reason"].as_str().unwrap())),
            "no --explain line for {name}: {text}"
        );
    }
}

/// A gemma4 PLE table read lazily costs disk, not RAM: `plan` counts only the rows a context can
/// touch; gemma3n's, which llama.cpp never reads lazily, stays whole in RAM either way.
#[test]
fn plan_counts_a_lazy_ple_table_on_disk() {
    let ram = |name: &str, lazy: &str| -> (u64, u64, u64, bool) {
        let v = plan_json(&[name, "--device", "laptop-cpu-8gb", "--lazy-mode", lazy, "-c", "4096"]);
        let m =
            v["mixes"].as_array().unwrap().iter().find(|m| m["body"] == "q8_0" && m["ple"] == "Q8_0").unwrap().clone();
        (
            m["ram_bytes"].as_u64().unwrap(),
            m["ple_bytes"].as_u64().unwrap(),
            m["ple_resident_bytes"].as_u64().unwrap(),
            m["ple_lazy"].as_bool().unwrap(),
        )
    };
    let (on, ple, resident, lazy) = ram("gemma-4-e2b", "on");
    let (off, _, whole, not_lazy) = ram("gemma-4-e2b", "off");
    assert!(lazy && !not_lazy);
    assert_eq!(whole, ple);
    // 4096 tokens' rows of 35 x 256 Q8_0 values (9520 bytes: three pages and the one a row
    // straddles), of 262144 rows.
    assert_eq!(resident, 4096 * 4 * 4096, "of {ple}");
    assert_eq!(off - on, ple - resident);
    let (on, _, _, lazy) = ram("gemma-3n-e2b", "on");
    let (off, _, _, _) = ram("gemma-3n-e2b", "off");
    assert!(!lazy);
    assert_eq!(on, off);
}

/// `inspect` names the PLE table, its size (as gguf-py's reader sizes it) and its share of the file.
#[test]
fn inspect_reports_the_ple_table() {
    let out = scratch_dir("inspect-ple").join("g4.gguf");
    let fixture = repo().join("tests/fixtures/models/gemma4");
    strata_ok(&["convert", fixture.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q4_0"]);
    let v: Value = serde_json::from_str(&strata_ok(&["inspect", "--json", out.to_str().unwrap()])).unwrap();
    let script = "import os, sys; from gguf import GGUFReader; t = [t for t in GGUFReader(sys.argv[1]).tensors if t.name == 'per_layer_token_embd.weight'][0]; print(int(t.n_bytes), t.tensor_type.name, os.path.getsize(sys.argv[1]))";
    let py = std::process::Command::new(common::python()).args(["-c", script]).arg(&out).output().unwrap();
    let py = String::from_utf8(py.stdout).unwrap();
    let f: Vec<&str> = py.split_whitespace().collect();
    let (bytes, ty, size): (u64, &str, u64) = (f[0].parse().unwrap(), f[1], f[2].parse().unwrap());
    let ple = &v["ple_table"];
    assert_eq!(ple["bytes"].as_u64(), Some(bytes));
    assert_eq!(ple["type"], ty);
    assert_eq!(ty, "Q8_0", "q4_0's default PLE type");
    assert!((ple["file_fraction"].as_f64().unwrap() - bytes as f64 / size as f64).abs() < 1e-12);
    assert_eq!(ple["read_lazily"], true);
}

/// `plan`'s RAM for a model run on the CPU is within 10% of the peak resident memory of
/// `strata generate` running it (`-c 4096`, a 500-word prompt filling a batch, 16 tokens): Gemma 3
/// 270M as published (its Q4_K_M mix is plan's q4_k_m row, tensor for tensor), SmolLM2's real
/// weights converted at q8_0, and the gemma4 fixture at q8_0 with its PLE table read lazily
/// and whole.
#[test]
fn plan_agrees_with_the_process() {
    let words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge every boxing match";
    let prompt: Vec<&str> = words.split(' ').cycle().take(500).collect();
    let prompt = scratch_file("plan-process-prompt.txt", prompt.join(" ").as_bytes());
    let dir = scratch_dir("plan-process");
    let smol = dir.join("smollm2-q8_0.gguf");
    let smol_hf = repo().join(".models/SmolLM2-135M-Instruct-hf");
    strata_ok(&["convert", smol_hf.to_str().unwrap(), "-o", smol.to_str().unwrap(), "--type", "q8_0"]);
    let g4 = dir.join("gemma4-q8_0.gguf");
    let g4_hf = repo().join("tests/fixtures/models/gemma4");
    strata_ok(&["convert", g4_hf.to_str().unwrap(), "-o", g4.to_str().unwrap(), "--type", "q8_0"]);
    let gemma3 = common::model(common::GEMMA3);
    let cases: [(&Path, &Path, &str, &str); 4] = [
        (&gemma3, &gemma3, "q4_k_m", "on"),
        (&smol, &smol_hf, "q8_0", "on"),
        (&g4, &g4_hf, "q8_0", "on"),
        (&g4, &g4_hf, "q8_0", "off"),
    ];
    for (file, planned, body, lazy) in cases {
        let plan =
            plan_json(&[planned.to_str().unwrap(), "--device", "laptop-cpu-16gb", "-c", "4096", "--lazy-mode", lazy]);
        let mix = plan["mixes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["body"] == body && (m["ple"].is_null() || m["ple"] == "Q8_0"))
            .unwrap();
        let predicted = mix["ram_bytes"].as_u64().unwrap() as f64;
        let run = strata_ok(&[
            "generate",
            file.to_str().unwrap(),
            "-f",
            prompt.to_str().unwrap(),
            "-n",
            "16",
            "-c",
            "4096",
            "-t",
            "2",
            "--lazy-mode",
            lazy,
            "--json",
        ]);
        let measured = serde_json::from_str::<Value>(&run).unwrap()["memory"]["peak_rss"].as_u64().unwrap() as f64;
        let off = predicted / measured - 1.0;
        assert!(
            off.abs() <= 0.10,
            "{} ({body}, lazy {lazy}): plan {:.1} MiB, process peak {:.1} MiB ({:+.1}%)",
            file.display(),
            predicted / 1048576.0,
            measured / 1048576.0,
            off * 100.0
        );
    }
}

/// Every `$ strata plan ...` example in docs/plan.md prints the `recommended:` line shown under it.
#[test]
fn the_docs_plan_examples_are_what_plan_says() {
    let page = std::fs::read_to_string(repo().join("docs/plan.md")).unwrap();
    let lines: Vec<&str> = page.lines().collect();
    let mut checked = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(args) = line.strip_prefix("$ strata plan ") else { continue };
        let shown = lines[i + 1..]
            .iter()
            .take_while(|l| !l.starts_with("$ ") && !l.starts_with("```"))
            .find(|l| l.starts_with("recommended:"));
        let Some(shown) = shown else { continue };
        let args: Vec<&str> = std::iter::once("plan").chain(args.split_whitespace()).collect();
        let out = strata_ok(&args);
        let said = out.lines().find(|l| l.starts_with("recommended:")).unwrap_or_else(|| panic!("{args:?}: {out}"));
        assert_eq!(said, *shown, "docs/plan.md line {}: {args:?}", i + 1);
        // The lines shown between them are what plan prints too.
        for shown_line in lines[i + 1..].iter().take_while(|l| !l.starts_with("recommended:")) {
            let shown_line = shown_line.trim_end_matches('…');
            assert!(
                out.lines().any(|l| l.starts_with(shown_line)),
                "docs/plan.md: {shown_line:?} not in plan's {args:?}:\n{out}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} examples found");
}
