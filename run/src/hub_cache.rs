//! GGUF models in the Hugging Face cache, named `hf:OWNER/NAME[:QUANT]` as llama.cpp's `-hf`
//! names them. The cache is the layout `huggingface_hub` and the `hf` CLI write (`HF_HUB_CACHE`,
//! else `HF_HOME/hub`, else `~/.cache/huggingface/hub`): `models--OWNER--NAME/refs/main` names the
//! snapshot, `snapshots/REV/` holds the files (links into `blobs/`). Here strata finds what a
//! download (`strata pull`, `hf download`) left there.

use std::path::{Path, PathBuf};

/// A model named by its Hub repository and, optionally, its quantization (`Q4_K_M`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubModel {
    pub repo: String,
    pub quant: Option<String>,
}

impl HubModel {
    /// `hf:OWNER/NAME[:QUANT]`; `None` for a name without the `hf:` prefix (a path).
    pub fn parse(name: &str) -> Option<Result<HubModel, String>> {
        let rest = name.strip_prefix("hf:")?;
        let (repo, quant) = match rest.split_once(':') {
            Some((repo, quant)) => (repo, Some(quant.to_string())),
            None => (rest, None),
        };
        let part_ok = |p: &str| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let valid = matches!(repo.split_once('/'), Some((owner, name)) if part_ok(owner) && part_ok(name));
        Some(if !valid {
            Err(format!("{name}: a Hub model is hf:OWNER/NAME or hf:OWNER/NAME:QUANT"))
        } else if quant.as_deref().is_some_and(|q| !part_ok(q)) {
            Err(format!("{name}: the quantization after the second ':' is a name such as Q4_K_M"))
        } else {
            Ok(HubModel { repo: repo.to_string(), quant })
        })
    }

    /// The GGUF file in `cache` this names: the snapshot `refs/main` names, its one GGUF file
    /// (a projector, `mmproj`, is not the model; of a split model the first part), or with a
    /// quantization the one whose name carries it.
    pub fn resolve(&self, cache: &Path) -> Result<PathBuf, String> {
        let label = format!("hf:{}", self.repo);
        let pattern = self.quant.as_deref().map_or_else(|| "*.gguf".to_string(), |q| format!("*{q}*.gguf"));
        let fetch = match &self.quant {
            Some(q) => format!("strata pull {}:{q}", self.repo),
            None => format!("strata pull {}:QUANT, or hf download {} --include \"{pattern}\"", self.repo, self.repo),
        };
        let snapshot = self.snapshot(cache, &fetch)?;
        let mut models = Vec::new();
        gguf_files(&snapshot, &mut models);
        models.retain(|p| {
            let name = file_name(p).to_ascii_lowercase();
            !name.contains("mmproj") && split_part(&name).is_none_or(|part| part == 1)
        });
        models.sort();
        let listed = |files: &[PathBuf]| {
            files.iter().map(|p| p.strip_prefix(&snapshot).unwrap_or(p).display().to_string()).collect::<Vec<_>>()
        };
        let found = match &self.quant {
            None => models.clone(),
            Some(q) => models.iter().filter(|p| carries(file_name(p), q)).cloned().collect(),
        };
        match (found.as_slice(), &self.quant) {
            ([one], _) => Ok(one.clone()),
            ([], _) if models.is_empty() => Err(format!("{label}: the cached snapshot holds no GGUF model")),
            ([], Some(q)) => {
                Err(format!("{label}: no cached GGUF file is {q}; there are: {}", listed(&models).join(", ")))
            }
            (several, _) => Err(format!(
                "{label}: {} cached GGUF files: {}; name one as {label}:QUANT",
                several.len(),
                listed(several).join(", ")
            )),
        }
    }
}

impl HubModel {
    /// The folder of the repository's snapshot that `refs/main` names: a safetensors checkpoint
    /// for `convert` (no quantization then).
    pub fn checkpoint(&self, cache: &Path) -> Result<PathBuf, String> {
        if let Some(q) = &self.quant {
            return Err(format!("hf:{}:{q}: a checkpoint folder is named without a quantization", self.repo));
        }
        self.snapshot(cache, &format!("hf download {}", self.repo))
    }

    /// The snapshot folder; an error naming the command (`fetch`) that fetches the repository
    /// when the cache lacks it.
    fn snapshot(&self, cache: &Path, fetch: &str) -> Result<PathBuf, String> {
        let label = format!("hf:{}", self.repo);
        let dir = cache.join(format!("models--{}", self.repo.replace('/', "--")));
        if !dir.is_dir() {
            return Err(format!(
                "{label}: not in the Hugging Face cache ({}): fetch it with `{fetch}`",
                cache.display()
            ));
        }
        snapshot(&dir).map_err(|e| format!("{label}: {e}"))
    }
}

/// A GGUF file in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedFile {
    /// `OWNER/NAME`.
    pub repo: String,
    /// Its path in the snapshot, as the repository names it.
    pub name: String,
    /// Where it is (the snapshot's link).
    pub path: PathBuf,
    pub bytes: u64,
    /// When it was last read (the blob's access time).
    pub last_used: Option<std::time::SystemTime>,
}

/// Every GGUF file of the cache's model repositories, in the snapshots `refs/main` names (or
/// the one snapshot), by repository and name.
pub fn list(cache: &Path) -> Vec<CachedFile> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(cache) else { return out };
    for dir in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let Some(repo) = file_name(&dir).strip_prefix("models--").map(|r| r.replacen("--", "/", 1)) else { continue };
        let Ok(snapshot) = snapshot(&dir) else { continue };
        let mut files = Vec::new();
        gguf_files(&snapshot, &mut files);
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let name = path.strip_prefix(&snapshot).unwrap_or(&path).display().to_string();
            out.push(CachedFile { repo: repo.clone(), name, bytes: meta.len(), last_used: meta.accessed().ok(), path });
        }
    }
    out.sort_by(|a, b| (&a.repo, &a.name).cmp(&(&b.repo, &b.name)));
    out
}

impl HubModel {
    /// Removes what this names from `cache` (every part of a split model), as `huggingface_hub`
    /// deletes a revision's files: the snapshot's links, the blobs no other link uses, and the
    /// folders left empty. The names removed.
    pub fn remove(&self, cache: &Path) -> Result<Vec<String>, String> {
        let first = self.resolve(cache)?;
        let snapshot_dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = file_name(&first).to_string();
        let parts: Vec<PathBuf> = match split_part(&name.to_ascii_lowercase()) {
            None => vec![first.clone()],
            Some(_) => {
                let stem = &name[..name.len() - "00001-of-00002.gguf".len()];
                let mut all = Vec::new();
                gguf_files(&snapshot_dir, &mut all);
                all.into_iter()
                    .filter(|p| file_name(p).starts_with(stem) && split_part(file_name(p)).is_some())
                    .collect()
            }
        };
        let repo_dir = cache.join(format!("models--{}", self.repo.replace('/', "--")));
        let mut removed = Vec::new();
        for part in &parts {
            let blob = std::fs::canonicalize(part).map_err(|e| format!("{}: {e}", part.display()))?;
            std::fs::remove_file(part).map_err(|e| format!("cannot remove {}: {e}", part.display()))?;
            let mut links = Vec::new();
            all_links(&repo_dir.join("snapshots"), &mut links);
            if blob.starts_with(repo_dir.join("blobs").canonicalize().unwrap_or_default())
                && !links.iter().any(|l| std::fs::canonicalize(l).is_ok_and(|t| t == blob))
            {
                std::fs::remove_file(&blob).map_err(|e| format!("cannot remove {}: {e}", blob.display()))?;
            }
            removed.push(file_name(part).to_string());
        }
        // Folders left empty go, up to the repository's, which goes when it holds no file.
        let mut dir = snapshot_dir;
        while dir.starts_with(&repo_dir) && dir != repo_dir && std::fs::remove_dir(&dir).is_ok() {
            dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        let mut left = Vec::new();
        all_links(&repo_dir.join("snapshots"), &mut left);
        if left.is_empty() {
            std::fs::remove_dir_all(&repo_dir).map_err(|e| format!("cannot remove {}: {e}", repo_dir.display()))?;
        }
        Ok(removed)
    }
}

/// Every file (or link) under `dir`.
fn all_links(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() && !path.is_symlink() {
            all_links(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// The Hub cache folder: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as `huggingface_hub`
/// finds it; an error when none of these is set.
pub fn cache_dir() -> Result<PathBuf, String> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE") {
        return Ok(dir);
    }
    let home = var("HF_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("huggingface")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface")))
        .ok_or("no Hugging Face cache: set HF_HUB_CACHE or HF_HOME")?;
    Ok(home.join("hub"))
}

/// The snapshot `refs/main` names; without it, the only snapshot there is.
fn snapshot(dir: &Path) -> Result<PathBuf, String> {
    if let Ok(rev) = std::fs::read_to_string(dir.join("refs").join("main")) {
        let path = dir.join("snapshots").join(rev.trim());
        return if path.is_dir() {
            Ok(path)
        } else {
            Err(format!("refs/main names {}, which is not cached", rev.trim()))
        };
    }
    let snapshots: Vec<PathBuf> = std::fs::read_dir(dir.join("snapshots"))
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    match snapshots.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("the cache holds no snapshot of it".into()),
        _ => Err("the cache holds several snapshots and no refs/main to choose one".into()),
    }
}

/// Every `.gguf` file under `dir` (following the cache's links).
fn gguf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            gguf_files(&path, out);
        } else if path.is_file() && file_name(&path).to_ascii_lowercase().ends_with(".gguf") {
            out.push(path);
        }
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The part number of a split model's file (`…-00002-of-00003.gguf`).
pub fn split_part(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (_, part) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(part) && digits(total)).then(|| part.parse().ok()).flatten()
}

/// Whether a file name carries quantization `q` as a whole word (`-Q4_K_M.gguf`, `.q4_k_m-`):
/// `Q4_K` is not `Q4_K_M`.
pub fn carries(name: &str, q: &str) -> bool {
    let (name, q) = (name.to_ascii_uppercase(), q.to_ascii_uppercase());
    let bytes = name.as_bytes();
    name.match_indices(&q).any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + q.len()).copied();
        before.is_none_or(|b| matches!(b, b'-' | b'.' | b'_' | b'/')) && after.is_none_or(|b| matches!(b, b'-' | b'.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let m = HubModel::parse("hf:bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M").unwrap().unwrap();
        assert_eq!((m.repo.as_str(), m.quant.as_deref()), ("bartowski/SmolLM2-135M-Instruct-GGUF", Some("Q4_K_M")));
        assert_eq!(HubModel::parse("hf:a/b").unwrap().unwrap().quant, None);
        assert_eq!(HubModel::parse("model.gguf"), None);
        for bad in ["hf:", "hf:noslash", "hf:a/b/c", "hf:../b", "hf:a/..", "hf:a/b:", "hf:a/b:Q4/K"] {
            assert!(HubModel::parse(bad).unwrap().is_err(), "{bad}");
        }
    }

    #[test]
    fn quantization_names_and_split_parts() {
        assert!(carries("SmolLM2-135M-Instruct-Q4_K_M.gguf", "q4_k_m"));
        assert!(carries("model.Q8_0.gguf", "Q8_0"));
        assert!(!carries("model-Q4_K_M.gguf", "Q4_K"));
        assert!(!carries("model-IQ4_XS.gguf", "Q4_XS"));
        assert!(carries("model-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"));
        assert_eq!(split_part("model-q4_k_m-00002-of-00003.gguf"), Some(2));
        assert_eq!(split_part("model-q4_k_m.gguf"), None);
    }

    /// A cache as `huggingface_hub` lays it out: blobs, a snapshot of links, refs/main.
    #[test]
    fn models_are_found_in_the_cache_layout() {
        let cache = std::env::temp_dir().join(format!("strata-hub-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        let repo = cache.join("models--owner--model-GGUF");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(snap.join("sub")).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        for (i, name) in [
            "model-Q4_K_M.gguf",
            "model-Q8_0.gguf",
            "mmproj-model-f16.gguf",
            "sub/model-Q2_K-00001-of-00002.gguf",
            "sub/model-Q2_K-00002-of-00002.gguf",
        ]
        .iter()
        .enumerate()
        {
            let blob = repo.join("blobs").join(format!("blob{i}"));
            std::fs::write(&blob, name).unwrap();
            std::os::unix::fs::symlink(&blob, snap.join(name)).unwrap();
        }
        let get = |name: &str| HubModel::parse(name).unwrap().unwrap().resolve(&cache);
        assert_eq!(get("hf:owner/model-GGUF:q8_0").unwrap(), snap.join("model-Q8_0.gguf"));
        assert_eq!(get("hf:owner/model-GGUF:Q2_K").unwrap(), snap.join("sub/model-Q2_K-00001-of-00002.gguf"));
        let several = get("hf:owner/model-GGUF").unwrap_err();
        assert!(several.contains("3 cached GGUF files") && !several.contains("mmproj"), "{several}");
        assert!(get("hf:owner/model-GGUF:Q6_K").unwrap_err().contains("no cached GGUF file is Q6_K"));
        let missing = get("hf:owner/other:Q4_0").unwrap_err();
        assert!(
            missing.contains("not in the Hugging Face cache") && missing.contains("`strata pull owner/other:Q4_0`"),
            "{missing}"
        );
        // A split model goes whole: both parts, their blobs; the rest stays.
        let removed = HubModel::parse("hf:owner/model-GGUF:Q2_K").unwrap().unwrap().remove(&cache).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(!snap.join("sub").exists() && !repo.join("blobs").join("blob3").exists());
        assert!(repo.join("blobs").join("blob0").exists());
        assert_eq!(
            list(&cache).iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["mmproj-model-f16.gguf", "model-Q4_K_M.gguf", "model-Q8_0.gguf"]
        );
        std::fs::write(repo.join("refs").join("main"), "def456").unwrap();
        assert!(get("hf:owner/model-GGUF:Q8_0").unwrap_err().contains("def456, which is not cached"));
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
