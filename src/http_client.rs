//! The HTTP client strata's network features share (`serve --allow-media-urls`, `pull`): hyper
//! over http and https, rustls with Mozilla's root certificates built in (no system store).

use std::sync::Arc;

use axum::body::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A client for bodiless requests (GET, HEAD).
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for http and https, trusting Mozilla's root certificates.
pub fn https_client() -> anyhow::Result<HttpsClient> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    // ring, not aws-lc-rs (rustls' default, a C library built with cmake for minutes): rustls
    // deprecates it for lacking post-quantum key exchange, which fetching files can do without.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An `http` or `https` URL.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// A redirect's target: absolute, or a path on the same server; `http` or `https` only.
pub fn redirect_target(from: &hyper::Uri, to: &str) -> Result<String, String> {
    if is_http_url(to) {
        return Ok(to.to_string());
    }
    match (to.starts_with('/'), from.scheme_str(), from.authority()) {
        (true, Some(scheme), Some(authority)) => Ok(format!("{scheme}://{authority}{to}")),
        _ => Err(format!("a redirect to {to:?}, not an http or https URL")),
    }
}

/// An error with its causes, as one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}
