//! The Hugging Face Hub, as `strata pull` talks to it: a repository's files at a commit
//! (`/api/models/REPO/revision/main`), a file's metadata (`HEAD /REPO/resolve/COMMIT/FILE`: the
//! commit, the LFS file's SHA-256 as its ETag, its size) and its bytes (`GET`, from a byte on,
//! through the redirect to the CDN). `HF_ENDPOINT` names a mirror, `HF_TOKEN` (or the token file
//! the `hf` CLI writes) authorizes gated repositories, `HF_HUB_OFFLINE=1` forbids the network,
//! `HF_HUB_DOWNLOAD_TIMEOUT` bounds a wait.

pub mod download;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{header, Request, Response, StatusCode, Uri};

use crate::http_client::{error_chain, https_client, redirect_target, HttpsClient};

/// How long a request may wait for an answer, and a download for its next bytes, unless
/// `HF_HUB_DOWNLOAD_TIMEOUT` says otherwise (seconds; huggingface_hub's variable and default).
const DEFAULT_STALL: Duration = Duration::from_secs(10);
/// Redirects followed (the Hub sends file downloads to its CDN).
const MAX_REDIRECTS: usize = 5;

/// A connection to the Hub (or a mirror).
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    client: HttpsClient,
    /// How long to wait for an answer or for the next bytes.
    pub stall: Duration,
}

/// A repository's files at one commit.
pub struct Listing {
    pub commit: String,
    pub files: Vec<String>,
}

/// A file's metadata, from `HEAD .../resolve/...`.
#[derive(Clone, Debug)]
pub struct FileMeta {
    /// The blob's name in the cache: the LFS file's SHA-256, else the Git object id.
    pub etag: String,
    pub size: u64,
}

impl FileMeta {
    /// The SHA-256 the file must have, for an LFS file (its ETag is one).
    pub fn sha256(&self) -> Option<&str> {
        (self.etag.len() == 64 && self.etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(&self.etag)
    }
}

impl Hub {
    /// The Hub the environment names, or an error when `HF_HUB_OFFLINE` forbids the network.
    pub fn from_env() -> Result<Hub> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if var("HF_HUB_OFFLINE").is_some_and(|v| !matches!(v.as_str(), "0" | "false" | "no")) {
            bail!("HF_HUB_OFFLINE is set: strata pull needs the network (unset it, or use what is in the cache)");
        }
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let token = var("HF_TOKEN").or_else(|| {
            let path = var("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
                let home = var("HF_HOME")
                    .map(PathBuf::from)
                    .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface")))?;
                Some(home.join("token"))
            })?;
            std::fs::read_to_string(path).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
        });
        let stall = match var("HF_HUB_DOWNLOAD_TIMEOUT") {
            None => DEFAULT_STALL,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| anyhow!("HF_HUB_DOWNLOAD_TIMEOUT={s}: not a number of seconds"))?,
        };
        Ok(Hub { endpoint: endpoint.trim_end_matches('/').to_string(), token, client: https_client()?, stall })
    }

    /// The files of `repo` at its main branch's commit.
    pub async fn list(&self, repo: &str) -> Result<Listing> {
        let url = format!("{}/api/models/{repo}/revision/main", self.endpoint);
        let response = self.send("GET", &url, None, true).await?;
        check(&response, repo, None)?;
        let body = read_all(response.into_body(), 64 << 20, self.stall).await.with_context(|| url.clone())?;
        let info: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| anyhow!("{url}: not the Hub's JSON ({e})"))?;
        let commit = info["sha"].as_str().ok_or_else(|| anyhow!("{url}: no commit (sha) in the answer"))?;
        let files = info["siblings"].as_array().into_iter().flatten();
        Ok(Listing {
            commit: commit.to_string(),
            files: files.filter_map(|f| f["rfilename"].as_str().map(str::to_string)).collect(),
        })
    }

    /// A file's metadata at `commit`.
    pub async fn meta(&self, repo: &str, commit: &str, file: &str) -> Result<FileMeta> {
        let url = self.file_url(repo, commit, file);
        // Not followed: the ETag and size of an LFS file are on the Hub's own answer.
        let response = self.send("HEAD", &url, None, false).await?;
        if !response.status().is_redirection() {
            check(&response, repo, Some(file))?;
        }
        let h = response.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = text("x-linked-etag")
            .or_else(|| text("etag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains(['/', '.']))
            .ok_or_else(|| anyhow!("{url}: the Hub gave no ETag for it"))?;
        let size = text("x-linked-size")
            .or_else(|| text("content-length"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("{url}: the Hub gave no size for it"))?;
        Ok(FileMeta { etag, size })
    }

    /// The file's bytes from byte `from` on: the response (206 when the server honoured the
    /// range, 200 when it sends the whole file).
    pub async fn get(&self, repo: &str, commit: &str, file: &str, from: u64) -> Result<Response<Incoming>> {
        let url = self.file_url(repo, commit, file);
        let response = self.send("GET", &url, (from > 0).then_some(from), true).await?;
        check(&response, repo, Some(file))?;
        Ok(response)
    }

    fn file_url(&self, repo: &str, commit: &str, file: &str) -> String {
        format!("{}/{repo}/resolve/{commit}/{file}", self.endpoint)
    }

    /// A request, with the token for the Hub itself (not for the hosts it redirects to), within
    /// `stall` for its answer.
    async fn send(&self, method: &str, url: &str, from: Option<u64>, follow: bool) -> Result<Response<Incoming>> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: Uri = url.parse().map_err(|e| anyhow!("{url}: not a URL ({e})"))?;
            let mut request = Request::builder().method(method).uri(&uri);
            if let Some(token) = self.token.as_deref().filter(|_| url.starts_with(&self.endpoint)) {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            // The bytes as stored: their SHA-256 is the Hub's.
            request = request.header(header::ACCEPT_ENCODING, "identity");
            if let Some(from) = from {
                request = request.header(header::RANGE, format!("bytes={from}-"));
            }
            let request = request.body(Empty::<Bytes>::new())?;
            let response = tokio::time::timeout(self.stall, self.client.request(request))
                .await
                .map_err(|_| anyhow!("{url}: no answer in {} s", self.stall.as_secs_f64()))?
                .map_err(|e| anyhow!("{url}: cannot reach it ({})", error_chain(&e)))?;
            if !(follow && response.status().is_redirection()) {
                return Ok(response);
            }
            let to = response.headers().get(header::LOCATION).and_then(|l| l.to_str().ok());
            let to = to.ok_or_else(|| anyhow!("{url}: {} without a Location", response.status()))?;
            url = redirect_target(&uri, to).map_err(|e| anyhow!("{url}: {e}"))?;
        }
        bail!("{url}: more than {MAX_REDIRECTS} redirects")
    }
}

/// An error for a status that is not success, in the Hub's terms.
fn check(response: &Response<Incoming>, repo: &str, file: Option<&str>) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let code = response.headers().get("x-error-code").and_then(|v| v.to_str().ok()).unwrap_or("");
    let what = file.map_or_else(|| repo.to_string(), |f| format!("{repo}: {f}"));
    match (status, code) {
        (_, "RepoNotFound") => bail!("{repo}: no such repository on the Hub (or it is private or gated: set HF_TOKEN)"),
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) | (_, "GatedRepo") => bail!(
            "{what}: the Hub answered {status}: the repository is gated or private; accept its licence on https://huggingface.co/{repo} and set HF_TOKEN (or log in with `hf auth login`)"
        ),
        (StatusCode::NOT_FOUND, "EntryNotFound") => bail!("{what}: no such file in the repository"),
        (StatusCode::NOT_FOUND, _) if file.is_none() => {
            bail!("{repo}: no such repository on the Hub (or it is private: set HF_TOKEN)")
        }
        _ => bail!("{what}: the Hub answered {status}"),
    }
}

/// A whole (small) body, at most `limit` bytes.
async fn read_all(mut body: Incoming, limit: usize, stall: Duration) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) =
        tokio::time::timeout(stall, body.frame()).await.map_err(|_| anyhow!("the answer stalled"))?
    {
        if let Some(chunk) = frame?.data_ref() {
            if out.len() + chunk.len() > limit {
                bail!("an answer larger than {limit} bytes");
            }
            out.extend_from_slice(chunk);
        }
    }
    Ok(out)
}
