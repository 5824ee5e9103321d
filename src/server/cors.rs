//! Which web pages may call the server from a browser (CORS), as Ollama decides it: an allow-list
//! of origins (`--cors-origin`), by default the loopback ones. A request that names another origin
//! is refused, so a page the user happens to visit cannot make the local server generate.

use anyhow::{bail, Result};

/// The origins allowed to call the server: `*`, `scheme://host`, or `scheme://host:port` with `*`
/// for any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins(Vec<String>);

/// The default: pages served from this machine's loopback addresses, on any port.
const LOOPBACK: &[&str] = &["localhost", "127.0.0.1", "[::1]"];

impl Origins {
    /// The allow-list from `--cors-origin` values; none given: the loopback origins.
    pub fn new(given: &[String]) -> Result<Origins> {
        if given.is_empty() {
            let mut list = Vec::new();
            for scheme in ["http", "https"] {
                for host in LOOPBACK {
                    list.push(format!("{scheme}://{host}"));
                    list.push(format!("{scheme}://{host}:*"));
                }
            }
            return Ok(Origins(list));
        }
        for origin in given {
            let ok = origin == "*"
                || origin.split_once("://").is_some_and(|(scheme, rest)| {
                    !scheme.is_empty() && !rest.is_empty() && !rest.contains('/') && !rest.starts_with(':')
                });
            if !ok {
                bail!("--cors-origin {origin:?}: expected *, or SCHEME://HOST[:PORT] (PORT may be *)");
            }
        }
        Ok(Origins(given.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect()))
    }

    /// Whether a request with this `Origin` header may be answered.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.0.iter().any(|pattern| {
            pattern == "*"
                || *pattern == origin
                || pattern.strip_suffix(":*").is_some_and(|base| {
                    origin
                        .strip_prefix(base)
                        .and_then(|p| p.strip_prefix(':'))
                        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_by_default() {
        let o = Origins::new(&[]).unwrap();
        for ok in [
            "http://localhost",
            "http://localhost:5173",
            "https://127.0.0.1:8443",
            "http://[::1]:3000",
            "HTTP://LOCALHOST",
        ] {
            assert!(o.allows(ok), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://localhost:",
            "http://localhost:80x",
            "null",
            "http://127.0.0.2",
        ] {
            assert!(!o.allows(bad), "{bad}");
        }
    }

    #[test]
    fn an_allow_list() {
        let o = Origins::new(&["https://chat.example.com".into(), "http://10.0.0.5:*".into()]).unwrap();
        assert!(o.allows("https://chat.example.com"));
        assert!(!o.allows("http://chat.example.com"));
        assert!(!o.allows("http://localhost:3000"), "the default is replaced, not extended");
        assert!(o.allows("http://10.0.0.5:8080"));
        assert!(Origins::new(&["*".into()]).unwrap().allows("http://anything.example"));
        for bad in ["example.com", "http://", "http://x/path", "://x"] {
            assert!(Origins::new(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
