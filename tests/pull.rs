//! `strata pull` against a local stand-in for the Hugging Face Hub (the suite cannot reach the
//! Hub): the endpoints the client uses (the repository's files at a commit, `resolve` with a
//! HEAD that carries the LFS headers and a redirect to a second "CDN" path, byte ranges), serving
//! small real GGUF files. Resuming after a cut, a corrupted byte, gated and missing repositories
//! and files, a server that stops answering, two pulls at once, and Python's `huggingface_hub`
//! finding what strata pulled.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::{assert_clean_failure, repo, scratch_dir, strata_command};
use sha2::{Digest, Sha256};

const REPO: &str = "test/tiny-GGUF";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// How the stand-in misbehaves on the next download.
#[derive(Clone, Copy, Default, PartialEq)]
enum Fault {
    #[default]
    None,
    /// Send half the file, then close.
    CutHalfWay,
    /// Flip a byte in the middle.
    Corrupt,
    /// Say nothing more after the headers.
    Stall,
}

struct StandIn {
    base: String,
    /// Each CDN request's Range header ("" for none).
    ranges: Arc<Mutex<Vec<String>>>,
    fault: Arc<Mutex<Fault>>,
}

fn files() -> Vec<(String, Vec<u8>)> {
    let read = |p: &str| std::fs::read(repo().join(p)).unwrap();
    vec![
        ("tiny-Q8_0.gguf".into(), read("tests/fixtures/models/gemma3/llamacpp-q8_0.gguf")),
        ("tiny-F32.gguf".into(), read("tests/fixtures/models/gemma3/llamacpp-f32.gguf")),
        ("mmproj-tiny-F16.gguf".into(), read("tests/fixtures/models/gemma3-vision/mmproj-llamacpp-f16.gguf")),
        ("README.md".into(), b"a tiny model\n".to_vec()),
    ]
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let fault = Arc::new(Mutex::new(Fault::None));
        let (log, faults) = (ranges.clone(), fault.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (log, faults) = (log.clone(), faults.clone());
                std::thread::spawn(move || answer(stream, &log, &faults));
            }
        });
        StandIn { base, ranges, fault }
    }

    fn set_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

/// One HTTP/1.1 exchange.
fn answer(stream: std::net::TcpStream, log: &Mutex<Vec<String>>, fault: &Mutex<Fault>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap_or(0);
    let mut range = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = v.trim().to_string();
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
    let mut out = stream;
    let send = |out: &mut std::net::TcpStream, status: &str, headers: &str, body: &[u8], head_only: bool| {
        let head = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = out.write_all(head.as_bytes());
        if !head_only {
            let _ = out.write_all(body);
        }
    };
    let files = files();
    let find = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, b)| b.clone());
    if path == format!("/api/models/{REPO}/revision/main") {
        let siblings: Vec<_> = files.iter().map(|(n, _)| serde_json::json!({"rfilename": n})).collect();
        let body = serde_json::json!({"id": REPO, "sha": COMMIT, "siblings": siblings}).to_string();
        return send(&mut out, "200 OK", "Content-Type: application/json\r\n", body.as_bytes(), false);
    }
    if path == "/api/models/test/gated-GGUF/revision/main" {
        return send(&mut out, "403 Forbidden", "X-Error-Code: GatedRepo\r\n", b"gated", false);
    }
    if path.starts_with("/api/models/") {
        return send(&mut out, "401 Unauthorized", "X-Error-Code: RepoNotFound\r\n", b"not found", false);
    }
    if let Some(name) = path.strip_prefix(&format!("/{REPO}/resolve/{COMMIT}/")) {
        let Some(bytes) = find(name) else {
            return send(&mut out, "404 Not Found", "X-Error-Code: EntryNotFound\r\n", b"", false);
        };
        // As the Hub answers for an LFS file: its SHA-256 and size, and the CDN's address.
        let headers = format!(
            "X-Repo-Commit: {COMMIT}\r\nX-Linked-Etag: \"{}\"\r\nX-Linked-Size: {}\r\nLocation: /cdn/{name}\r\n",
            sha256(&bytes),
            bytes.len()
        );
        return send(&mut out, "302 Found", &headers, b"", method == "HEAD");
    }
    if let Some(name) = path.strip_prefix("/cdn/") {
        let Some(mut bytes) = find(name) else { return send(&mut out, "404 Not Found", "", b"", false) };
        log.lock().unwrap().push(range.clone());
        let from: usize = range.strip_prefix("bytes=").and_then(|r| r.trim_end_matches('-').parse().ok()).unwrap_or(0);
        let now = std::mem::take(&mut *fault.lock().unwrap());
        if now == Fault::Corrupt {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
        }
        let total = bytes.len();
        let (status, headers) = if from > 0 {
            ("206 Partial Content", format!("Content-Range: bytes {from}-{}/{total}\r\n", total - 1))
        } else {
            ("200 OK", String::new())
        };
        let body = &bytes[from..];
        let head = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        let _ = out.write_all(head.as_bytes());
        match now {
            Fault::CutHalfWay => {
                let _ = out.write_all(&body[..body.len() / 2]);
            }
            Fault::Stall => std::thread::sleep(std::time::Duration::from_secs(8)),
            _ => {
                let _ = out.write_all(body);
            }
        }
        return;
    }
    send(&mut out, "404 Not Found", "", b"", false)
}

fn pull(hub: &StandIn, cache: &Path, what: &str) -> Output {
    strata_command()
        .env("HF_ENDPOINT", &hub.base)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "3")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .args(["pull", what])
        .output()
        .unwrap()
}

fn pull_ok(hub: &StandIn, cache: &Path, what: &str) -> String {
    let out = pull(hub, cache, what);
    assert!(out.status.success(), "pull {what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test--tiny-GGUF")
}

/// Every file under `blobs/`, by name.
fn blobs(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_dir(cache).join("blobs"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A pull by tag lays the file and its projector out as huggingface_hub does (blobs named by
/// SHA-256, relative links in the snapshot, refs/main), `strata models` and `hf:` names find
/// them, and Python's huggingface_hub finds them offline.
#[test]
fn a_pull_by_tag_fills_the_hub_cache() {
    let hub = StandIn::start();
    let cache = scratch_dir("pull-tag");
    let said = pull_ok(&hub, &cache, &format!("{REPO}:Q8_0"));
    assert!(said.contains(&format!("pulled hf:{REPO}:Q8_0")), "{said}");
    let dir = repo_dir(&cache);
    assert_eq!(std::fs::read_to_string(dir.join("refs/main")).unwrap(), COMMIT);
    let files = files();
    for name in ["tiny-Q8_0.gguf", "mmproj-tiny-F16.gguf"] {
        let bytes = &files.iter().find(|(n, _)| n == name).unwrap().1;
        let pointer = dir.join("snapshots").join(COMMIT).join(name);
        assert_eq!(std::fs::read_link(&pointer).unwrap(), PathBuf::from(format!("../../blobs/{}", sha256(bytes))));
        assert_eq!(&std::fs::read(&pointer).unwrap(), bytes);
    }
    assert_eq!(blobs(&cache).len(), 2, "the F32 file and the README are not fetched: {:?}", blobs(&cache));
    let listed = strata_command().env("HF_HUB_CACHE", &cache).arg("models").output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("tiny-Q8_0.gguf"));
    let inspect =
        strata_command().env("HF_HUB_CACHE", &cache).args(["inspect", &format!("hf:{REPO}:Q8_0")]).output().unwrap();
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let python = std::process::Command::new(common::python())
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .args(["-c", &format!("from huggingface_hub import hf_hub_download; print(hf_hub_download('{REPO}', 'tiny-Q8_0.gguf', local_files_only=True))")])
        .output()
        .unwrap();
    assert!(python.status.success(), "{}", String::from_utf8_lossy(&python.stderr));
    let found = String::from_utf8_lossy(&python.stdout).trim().to_string();
    assert_eq!(PathBuf::from(found), dir.join("snapshots").join(COMMIT).join("tiny-Q8_0.gguf"));
    // Pulled again: nothing fetched.
    let before = hub.ranges.lock().unwrap().len();
    pull_ok(&hub, &cache, &format!("hf:{REPO}:Q8_0"));
    assert_eq!(hub.ranges.lock().unwrap().len(), before, "the cached blobs are used");
}

/// A download cut half way leaves its bytes under a temporary name, never as the file; the next
/// pull asks for the rest only, and the file's SHA-256 is right. A corrupted byte is an error
/// that leaves nothing of the file in the cache.
#[test]
fn a_cut_download_resumes_and_a_corrupted_one_is_removed() {
    let hub = StandIn::start();
    let cache = scratch_dir("pull-resume");
    hub.set_fault(Fault::CutHalfWay);
    let out = pull(&hub, &cache, &format!("{REPO}:F32"));
    assert_clean_failure(&out, &["tiny-F32.gguf: the download stopped at byte", "run strata pull again to resume"]);
    let partial = blobs(&cache);
    assert!(partial.iter().all(|b| b.ends_with(".incomplete")) && !partial.is_empty(), "{partial:?}");
    assert!(!repo_dir(&cache).join("snapshots").join(COMMIT).join("tiny-F32.gguf").exists());
    let have = std::fs::metadata(repo_dir(&cache).join("blobs").join(&partial[0])).unwrap().len();
    assert!(have > 0);
    hub.ranges.lock().unwrap().clear();
    pull_ok(&hub, &cache, &format!("{REPO}:F32"));
    assert!(hub.ranges.lock().unwrap().contains(&format!("bytes={have}-")), "{:?}", hub.ranges.lock().unwrap());
    let file = repo_dir(&cache).join("snapshots").join(COMMIT).join("tiny-F32.gguf");
    let expected = &files().into_iter().find(|(n, _)| n == "tiny-F32.gguf").unwrap().1;
    assert_eq!(sha256(&std::fs::read(file).unwrap()), sha256(expected));

    let cache = scratch_dir("pull-corrupt");
    hub.set_fault(Fault::Corrupt);
    let out = pull(&hub, &cache, &format!("{REPO}:Q8_0"));
    assert_clean_failure(&out, &["tiny-Q8_0.gguf: its SHA-256 is", "the download was corrupted and is removed"]);
    assert!(blobs(&cache).is_empty(), "{:?}", blobs(&cache));
}

/// What the Hub refuses, and a server that stops answering: one line each, naming the cause.
#[test]
fn refusals_and_silences_are_one_line_errors() {
    let hub = StandIn::start();
    let cache = scratch_dir("pull-errors");
    for (what, expected) in [
        ("test/gated-GGUF:Q8_0", "accept its licence on https://huggingface.co/test/gated-GGUF and set HF_TOKEN"),
        ("test/nothing-here:Q8_0", "test/nothing-here: no such repository on the Hub"),
        (
            &format!("{REPO}:Q2_K") as &str,
            "no GGUF file carries Q2_K; the repository has tiny-F32.gguf, tiny-Q8_0.gguf",
        ),
        (REPO, "name the quantization to fetch, as hf:test/tiny-GGUF:Q4_K_M"),
        ("not a repo", "a Hub model is hf:OWNER/NAME"),
    ] {
        assert_clean_failure(&pull(&hub, &cache, what), &[expected]);
    }
    hub.set_fault(Fault::Stall);
    let started = std::time::Instant::now();
    assert_clean_failure(&pull(&hub, &cache, &format!("{REPO}:Q8_0")), &["no bytes for 3 s", "resume"]);
    assert!(started.elapsed().as_secs() < 8, "bounded by HF_HUB_DOWNLOAD_TIMEOUT");
    let offline = strata_command()
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", &cache)
        .args(["pull", &format!("{REPO}:Q8_0")])
        .output()
        .unwrap();
    assert_clean_failure(&offline, &["HF_HUB_OFFLINE is set"]);
}

/// Two pulls of one file at once: both succeed, one blob, whole.
#[test]
fn two_pulls_of_one_file_at_once() {
    let hub = StandIn::start();
    let cache = scratch_dir("pull-twice");
    let spawn = || {
        strata_command()
            .env("HF_ENDPOINT", &hub.base)
            .env("HF_HUB_CACHE", &cache)
            .args(["pull", &format!("{REPO}:F32"), "--no-mmproj"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let expected = &files().into_iter().find(|(n, _)| n == "tiny-F32.gguf").unwrap().1;
    assert_eq!(blobs(&cache), vec![sha256(expected)]);
    let file = repo_dir(&cache).join("snapshots").join(COMMIT).join("tiny-F32.gguf");
    assert_eq!(&std::fs::read(file).unwrap(), expected);
}
