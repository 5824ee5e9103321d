//! A `strata serve` process for the end-to-end tests, and raw HTTP/1.1 to talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `strata serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Its stderr so far, a line each.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts the server on a free port and waits until `/health` says it is ready.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        let mut child = super::strata_command()
            .args(["serve", model, "--port", "0", "-t", "2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut before = Vec::new();
        let addr = loop {
            let line = lines.next().expect("strata serve ended before listening").unwrap();
            if let Some(a) = line.strip_prefix("listening on http://") {
                break a.to_string();
            }
            before.push(line);
        };
        // Keep draining stderr so the server never blocks on it.
        let stderr = Arc::new(Mutex::new(before));
        let kept = stderr.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| kept.lock().unwrap().push(l)));
        let server = Server { child, addr, stderr };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = server.try_get("/health") {
                return server;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "the model did not load in 2 minutes");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http(&self.addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes())
    }

    /// POSTs `body` (raw bytes) with `headers`; returns the status and the body.
    pub fn post_raw(&self, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
        http(&self.addr, &post_request(path, headers, body)).expect("request")
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.post_raw(path, "", body.to_string().as_bytes());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
    }

    pub fn chat(&self, body: &Value) -> Value {
        let (status, v) = self.post("/v1/chat/completions", body);
        assert_eq!(status, 200, "{v}");
        v
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON POST of `body` to `path` with extra `headers` ("Name: value\r\n" each), on a
/// connection the server closes after answering.
pub fn post_request(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n", body.len()).into_bytes();
    req.extend_from_slice(body);
    req
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the (de-chunked) body.
pub fn http(addr: &str, request: &[u8]) -> std::io::Result<(u16, String)> {
    exchange(addr, request).map(|(status, _, body)| (status, body))
}

/// One HTTP/1.1 exchange on a fresh connection: the status, the head (status line and headers,
/// lower-cased) and the (de-chunked) body.
pub fn exchange(addr: &str, request: &[u8]) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok((status, head, body))
}

pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
