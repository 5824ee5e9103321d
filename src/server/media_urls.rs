//! `serve --allow-media-urls`: the image URLs a request names (`http` and `https`), fetched by
//! the server within a size and a time limit and put into the request as the data they name,
//! before any route reads it. Off by default: then the server fetches nothing, and the routes
//! refuse such URLs.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use serde_json::{json, Value};

use super::openai::Fields;
use super::ApiError;
use crate::http_client::{error_chain, https_client, is_http_url, redirect_target, HttpsClient};

/// The most bytes one URL may bring (as much as a medium may have: `Medium`'s limit).
const MAX_BYTES: usize = 100 << 20;
/// The most time one URL may take, redirects and body included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed, each to an `http` or `https` URL.
const MAX_REDIRECTS: usize = 3;

/// Fetches the image URLs of requests.
pub struct MediaUrls {
    client: HttpsClient,
}

impl std::fmt::Debug for MediaUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MediaUrls {{ max_bytes: {MAX_BYTES}, timeout: {TIMEOUT:?} }}")
    }
}

impl MediaUrls {
    /// A fetcher with its own client.
    pub fn new() -> anyhow::Result<MediaUrls> {
        Ok(MediaUrls { client: https_client()? })
    }

    /// Replaces every `http(s)` image URL in a request body with the data it names: OpenAI's
    /// `image_url` (a string, or `{"url": ...}`, in Chat Completions and Responses) becomes a
    /// `data:` URL, Anthropic's `{"type": "url"}` image source a base64 source.
    pub async fn inline(&self, body: &mut Fields) -> Result<(), ApiError> {
        let mut urls = Vec::new();
        for v in body.values_mut() {
            walk(v, &mut |url| {
                urls.push(url.to_string());
                None
            });
        }
        urls.sort();
        urls.dedup();
        let mut fetched = HashMap::new();
        for url in urls {
            let data = tokio::time::timeout(TIMEOUT, self.fetch(&url))
                .await
                .map_err(|_| format!("took more than {} s", TIMEOUT.as_secs()))
                .and_then(|r| r)
                .map_err(|e| ApiError::bad(format!("image URL {url}: {e}")))?;
            fetched.insert(url, base64::engine::general_purpose::STANDARD.encode(data));
        }
        for v in body.values_mut() {
            walk(v, &mut |url| fetched.get(url).cloned());
        }
        Ok(())
    }

    /// The body `url` names, following redirects.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL ({e})"))?;
            let request = hyper::Request::get(uri.clone()).body(Empty::new()).map_err(|e| e.to_string())?;
            let response =
                self.client.request(request).await.map_err(|e| format!("cannot fetch it ({})", error_chain(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                let to = response.headers().get(hyper::header::LOCATION).and_then(|l| l.to_str().ok());
                let to = to.ok_or_else(|| format!("{status} without a Location"))?;
                url = redirect_target(&uri, to)?;
                continue;
            }
            if !status.is_success() {
                return Err(format!("the server answered {status}"));
            }
            let length = response.headers().get(hyper::header::CONTENT_LENGTH).and_then(|l| l.to_str().ok());
            if length.and_then(|l| l.parse::<u64>().ok()).is_some_and(|n| n > MAX_BYTES as u64) {
                return Err(format!("more than the {MAX_BYTES} bytes a medium may have"));
            }
            let mut body = response.into_body();
            let mut data = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("cannot read it ({e})"))?;
                if let Some(chunk) = frame.data_ref() {
                    if data.len() + chunk.len() > MAX_BYTES {
                        return Err(format!("more than the {MAX_BYTES} bytes a medium may have"));
                    }
                    data.extend_from_slice(chunk);
                }
            }
            return Ok(data);
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// Calls `f` on each `http(s)` image URL in `v`, and where it returns data (base64), puts the
/// data in the URL's place.
fn walk(v: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, f)),
        Value::Object(map) => {
            // OpenAI: {"image_url": "http..."} or {"image_url": {"url": "http..."}}.
            let openai = match map.get_mut("image_url") {
                Some(Value::Object(inner)) => inner.get_mut("url"),
                other => other,
            };
            if let Some(Value::String(url)) = openai {
                if is_http_url(url) {
                    if let Some(data) = f(url) {
                        *url = format!("data:application/octet-stream;base64,{data}");
                    }
                }
            }
            // Anthropic: {"source": {"type": "url", "url": "http..."}}.
            if let Some(source) = map.get_mut("source") {
                if source["type"] == "url" {
                    if let Some(url) = source["url"].as_str().filter(|u| is_http_url(u)) {
                        if let Some(data) = f(url) {
                            *source = json!({"type": "base64", "media_type": "application/octet-stream", "data": data});
                        }
                    }
                }
            }
            map.values_mut().for_each(|item| walk(item, f));
        }
        _ => {}
    }
}
