//! `hf:OWNER/NAME[:QUANT]` models from the Hugging Face cache: a cache laid out as
//! `huggingface_hub` lays it out (its own `try_to_load_from_cache` and `scan_cache_dir` read it,
//! so the layout is theirs, not ours), then strata's commands run the model by that name,
//! `strata models` lists it and `strata models rm` removes it, leaving a cache that
//! `huggingface_hub` reads without a warning.

mod common;

use std::path::Path;
use std::process::Command;

use common::strata_command;

const REPO: &str = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF";
const FILE: &str = "SmolLM2-135M-Instruct-Q4_1.gguf";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";

/// A cache holding the SmolLM2 GGUF as one revision of `REPO`: the file a blob, the snapshot a
/// relative link to it, `refs/main` the revision.
fn cache_with_smollm2(cache: &Path) {
    let repo = cache.join(format!("models--{}", REPO.replace('/', "--")));
    let blob = "3c5b4ad1e2cc6b4a3a0b1b3ed3a73dbb5b2bb8e7b0f6f0a5c2c6c6f0b4a1d2e3";
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(REVISION)).unwrap();
    std::fs::copy(common::model(common::SMOLLM2), repo.join("blobs").join(blob)).unwrap();
    std::os::unix::fs::symlink(format!("../../blobs/{blob}"), repo.join("snapshots").join(REVISION).join(FILE))
        .unwrap();
    std::fs::write(repo.join("refs").join("main"), REVISION).unwrap();
}

#[test]
fn a_model_in_the_hugging_face_cache_runs_by_its_hub_name() {
    let cache = common::scratch_dir("hub-cache");
    cache_with_smollm2(&cache);
    let check = format!(
        "import huggingface_hub as h, sys\n\
         c = sys.argv[1]\n\
         info = h.scan_cache_dir(c)\n\
         assert not info.warnings, info.warnings\n\
         [repo] = info.repos\n\
         assert repo.repo_id == '{REPO}' and [r.commit_hash for r in repo.revisions] == ['{REVISION}'], repo\n\
         print(h.try_to_load_from_cache('{REPO}', '{FILE}', cache_dir=c))"
    );
    let out = Command::new(common::python()).args(["-c", &check, cache.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "huggingface_hub: {}", String::from_utf8_lossy(&out.stderr));
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        theirs.trim(),
        cache
            .join(format!("models--{}", REPO.replace('/', "--")))
            .join("snapshots")
            .join(REVISION)
            .join(FILE)
            .to_str()
            .unwrap()
    );

    let run = |model: &str| {
        let out = strata_command()
            .env("HF_HUB_CACHE", &cache)
            .args(["generate", model, "-p", "The capital of France is", "-n", "6", "--temp", "0", "-t", "2"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{model}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let by_file = run(common::model(common::SMOLLM2).to_str().unwrap());
    assert_eq!(run(&format!("hf:{REPO}:Q4_1")), by_file);
    assert_eq!(run(&format!("hf:{REPO}")), by_file, "the one GGUF file of the repository");
    assert_eq!(run(&format!("{REPO}:Q4_1")), by_file, "no such path: the cached model");
    let inspect =
        strata_command().env("HF_HUB_CACHE", &cache).args(["inspect", &format!("hf:{REPO}:q4_1")]).output().unwrap();
    assert!(inspect.status.success() && String::from_utf8_lossy(&inspect.stdout).contains("llama"));

    for (model, needle) in [
        (format!("hf:{REPO}:Q8_0"), "no cached GGUF file is Q8_0; there are: SmolLM2-135M-Instruct-Q4_1.gguf"),
        ("hf:someone/absent-GGUF:Q4_K_M".to_string(), "not in the Hugging Face cache"),
        ("hf:someone/absent-GGUF:Q4_K_M".to_string(), "fetch it with `strata pull someone/absent-GGUF:Q4_K_M`"),
        ("hf:no-owner".to_string(), "hf:OWNER/NAME"),
    ] {
        let out = strata_command().env("HF_HUB_CACHE", &cache).args(["generate", &model, "-p", "x"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(needle), "{model}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    let models = |extra: &[&str]| {
        let out = strata_command().env("HF_HUB_CACHE", &cache).arg("models").args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed: serde_json::Value = serde_json::from_str(&models(&["--json"])).unwrap();
    let [entry] = listed["models"].as_array().unwrap().as_slice() else { panic!("{listed}") };
    let size = std::fs::metadata(common::model(common::SMOLLM2)).unwrap().len();
    assert_eq!(
        (entry["repo"].as_str(), entry["file"].as_str(), entry["bytes"].as_u64()),
        (Some(REPO), Some(FILE), Some(size))
    );
    assert_eq!(entry["types"][0]["type"], "Q4_1", "{entry}");
    let table = models(&[]);
    assert!(table.contains(REPO) && table.contains("Q4_1 "), "{table}");
    assert_eq!(models(&["rm", &format!("hf:{REPO}:Q4_1")]).trim(), format!("removed {FILE}"));
    assert!(models(&[]).contains("no GGUF models"));
    let check = "import huggingface_hub as h, sys\n\
                 info = h.scan_cache_dir(sys.argv[1])\n\
                 assert not info.warnings and not info.repos, (info.warnings, info.repos)";
    let out = Command::new(common::python()).args(["-c", check, cache.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "huggingface_hub after rm: {}", String::from_utf8_lossy(&out.stderr));
}

/// `convert hf:OWNER/NAME` converts the repository's snapshot in the cache: the same GGUF as
/// from the folder it was made of.
#[test]
fn a_checkpoint_in_the_cache_converts_by_its_hub_name() {
    let cache = common::scratch_dir("hub-cache-checkpoint");
    let fixture = common::repo().join("tests/fixtures/models/gemma3");
    let repo = cache.join("models--someone--gemma3-tiny");
    let snapshot = repo.join("snapshots").join(REVISION);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), REVISION).unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"] {
        let blob = format!("blob-{name}");
        std::fs::copy(fixture.join(name), repo.join("blobs").join(&blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(name)).unwrap();
    }
    let convert = |model: &str, out: &Path| {
        strata_command()
            .env("HF_HUB_CACHE", &cache)
            .args(["convert", model, "-o", out.to_str().unwrap(), "--type", "q8_0"])
            .output()
            .unwrap()
    };
    let (from_cache, from_folder) = (cache.join("cache.gguf"), cache.join("folder.gguf"));
    for (model, out) in [("hf:someone/gemma3-tiny", &from_cache), (fixture.to_str().unwrap(), &from_folder)] {
        let o = convert(model, out);
        assert!(o.status.success(), "{model}: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(common::tensor_data(&from_cache) == common::tensor_data(&from_folder), "tensors differ");
    let o = convert("hf:someone/gemma3-tiny:Q4_0", &cache.join("x.gguf"));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("named without a quantization"));
}
