//! The supervisor: `strata serve` runs the model in a child process (the same binary, `serve
//! --supervised`, on a loopback port of the OS's choosing) and forwards every request to it, as
//! Ollama's server does with its runners. A model lost mid-request — ggml aborts the process when
//! an RPC server dies — then costs the requests in flight a 503, not the server: `/health` says
//! why the model is down, and the child is started again, with backoff, until it loads.
//!
//! With `--sleep-idle-seconds N` the supervisor also ends the child after N seconds without a
//! request, which gives all of the model's memory back, and starts it again for the next request
//! that needs the model. While it sleeps, `/health`, `/props`, `/v1/models` and `/metrics` are
//! answered from what the child said just before it ended.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use tokio::sync::watch;

use super::access_log::{Entry, LogFormat};
use super::cors::Origins;
use super::openai::ApiError;
use super::read_body;

/// Where the model is.
#[derive(Clone, Debug, PartialEq)]
enum Status {
    /// The first child is loading it.
    Loading,
    /// A child serves it on this address.
    Ready(SocketAddr),
    /// The child ended, for this reason; another is loading the model.
    Down(String),
    /// Idle: the child was ended to give its memory back (`--sleep-idle-seconds`).
    Asleep,
}

/// The routes whose answers the child gives just before it sleeps, answered from them while it
/// sleeps.
const SAVED: &[&str] = &["/props", "/v1/models", "/metrics"];

/// The health check, which needs neither a key nor the model.
fn is_health(path: &str) -> bool {
    matches!(path, "/health" | "/v1/health")
}

/// The saved route (of [`SAVED`]) that answers `path` while the model sleeps.
fn saved_as(path: &str) -> Option<&'static str> {
    let path = if path == "/models" { "/v1/models" } else { path };
    SAVED.iter().copied().find(|&p| p == path)
}

/// Routes that read and don't need the model: they neither count as activity nor wake it.
fn is_read_only(path: &str) -> bool {
    is_health(path) || saved_as(path).is_some()
}

/// What the model sleeps by: the idle time, and the state of the moment.
struct Sleep {
    idle: Duration,
    state: std::sync::Mutex<SleepState>,
    /// Wakes the thread that runs the children.
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct SleepState {
    /// Requests being answered (a stream counts until it ends).
    in_flight: usize,
    last_active: Option<Instant>,
    /// The child's stdin: dropping it ends the child.
    child_stdin: Option<std::process::ChildStdin>,
    /// The model sleeps until a request wakes it.
    sleeping: bool,
    /// The child was ended to sleep: its end is no failure (kept until the runner has seen it).
    ended_to_sleep: bool,
    /// Read-only answers saved before sleeping: path, content type, body.
    saved: Vec<(String, String, Bytes)>,
}

/// The shared state of the supervisor's routes and of the thread that runs the children.
pub struct Supervisor {
    status: watch::Sender<Status>,
    client: Client<HttpConnector, Body>,
    /// The server's key: checked here too, so that a client without it learns nothing of the
    /// model's state but from `/health`, as when the model is up.
    api_key: Option<String>,
    /// The origins browsers may call from.
    origins: Origins,
    log_format: LogFormat,
    sleep: Option<Sleep>,
}

/// The longest wait between two starts of the child.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a request that lost its child waits to learn why.
const REASON_WAIT: Duration = Duration::from_secs(5);

impl Supervisor {
    /// A supervisor whose child closes connections idle for `child_idle` (its header timeout).
    pub fn new(
        api_key: Option<String>,
        child_idle: Duration,
        origins: Origins,
        log_format: LogFormat,
        sleep_idle: Option<Duration>,
    ) -> Arc<Supervisor> {
        // Pooled connections are dropped well before the child would close them, so that none
        // is used as it closes (what is left of that race, `send` retries).
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(child_idle / 2)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build_http();
        let sleep = sleep_idle.map(|idle| Sleep { idle, state: Default::default(), wake: Default::default() });
        Arc::new(Supervisor {
            status: watch::Sender::new(Status::Loading),
            client,
            api_key,
            origins,
            log_format,
            sleep,
        })
    }

    /// Runs `program args` until the process ends, relaying its stderr (less its listening
    /// line), and starts it again whenever it ends after having loaded the model once. A child
    /// that fails its first load ends the supervisor with its exit status: its error line has
    /// been relayed, as if the supervisor had failed itself.
    pub fn run_children(&self, program: PathBuf, args: Vec<OsString>) -> Result<()> {
        let mut loaded_once = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut child = Command::new(&program)
                .args(&args)
                // The child ends when this pipe closes, that is when the supervisor does.
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()))?;
            if let Some(sleep) = &self.sleep {
                let mut state = lock(&sleep.state);
                state.child_stdin = child.stdin.take();
                state.last_active = Some(Instant::now());
            }
            let (mut addr, mut error) = (None, None);
            for line in BufReader::new(child.stderr.take().context("no stderr")?).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("listening on http://") {
                    addr = a.parse().ok();
                    continue;
                }
                if let (true, Some(a)) = (line.starts_with("model loaded:"), addr) {
                    self.status.send_replace(Status::Ready(a));
                    loaded_once = true;
                    backoff = Duration::from_secs(1);
                }
                if let Some(e) = line.strip_prefix("error: ") {
                    error = Some(e.to_string());
                }
                say(&line);
            }
            let status = child.wait().context("cannot wait for the model's process")?;
            if let Some(sleep) = &self.sleep {
                let mut state = lock(&sleep.state);
                if std::mem::take(&mut state.ended_to_sleep) {
                    if state.sleeping {
                        say("the model sleeps (--sleep-idle-seconds): its memory is given back until a request needs it");
                    }
                    while state.sleeping {
                        state = sleep.wake.wait(state).unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                    self.status.send_replace(Status::Loading);
                    backoff = Duration::from_secs(1);
                    continue;
                }
            }
            let reason = error.unwrap_or_else(|| format!("the model's process ended ({status})"));
            if !loaded_once {
                if status.code().is_none() {
                    say(&format!("error: {reason}"));
                }
                std::process::exit(status.code().unwrap_or(1));
            }
            say(&format!("warning: the model is down: {reason}; loading it again in {} s", backoff.as_secs()));
            self.status.send_replace(Status::Down(reason));
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Why the child at `addr` stopped answering, once the thread that runs it knows (a
    /// request may notice first).
    async fn reason_lost(&self, addr: SocketAddr) -> String {
        let mut status = self.status.subscribe();
        let _ = tokio::time::timeout(REASON_WAIT, status.wait_for(|s| *s != Status::Ready(addr))).await;
        let reason = match &*status.borrow() {
            Status::Down(reason) => reason.clone(),
            _ => "the model's process stopped answering".into(),
        };
        reason
    }
}

impl Supervisor {
    /// Sends a request to the child. A pooled connection that the child closed before sending
    /// any byte of an answer (it closes idle ones: a request can cross that close) gets the
    /// request again on a fresh connection, once: the child never began on it. A child that is
    /// gone refuses the fresh connection, and that error is returned.
    async fn send(
        &self,
        parts: axum::http::request::Parts,
        bytes: Bytes,
    ) -> Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let first = self.client.request(Request::from_parts(parts.clone(), Body::from(bytes.clone()))).await;
        match first {
            Err(e) if closed_before_answering(&e) => {
                self.client.request(Request::from_parts(parts, Body::from(bytes))).await
            }
            other => other,
        }
    }
}

/// Whether a request failed because its connection closed before any byte of the answer came.
fn closed_before_answering(e: &hyper_util::client::legacy::Error) -> bool {
    use std::error::Error as _;
    !e.is_connect()
        && e.source()
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(|h| h.is_incomplete_message() || h.is_canceled())
}

impl SleepState {
    /// No request in flight, and none for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        self.in_flight == 0 && self.last_active.is_some_and(|t| t.elapsed() >= idle)
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Supervisor {
    /// Puts the model to sleep once it has been idle long enough: checks twice a second.
    pub async fn sleep_when_idle(self: Arc<Self>) {
        let Some(sleep) = &self.sleep else { return };
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Status::Ready(addr) = *self.status.borrow() else { continue };
            if !lock(&sleep.state).idle_for(sleep.idle) {
                continue;
            }
            let mut saved = Vec::new();
            // `/metrics` twice: a scrape empties the window of llama-server's throughput gauges,
            // so the first answers the first scrape while asleep, the second every later one.
            for path in SAVED.iter().chain(&["/metrics"]) {
                if let Some(answer) = self.fetch(addr, path).await {
                    saved.push(answer);
                }
            }
            let mut state = lock(&sleep.state);
            // A request came while the answers were being saved: stay awake.
            if !state.idle_for(sleep.idle) {
                continue;
            }
            state.saved = saved;
            state.sleeping = true;
            state.ended_to_sleep = true;
            // Asleep before the child ends, so that no request is sent to it as it goes.
            self.status.send_replace(Status::Asleep);
            state.child_stdin = None; // the child ends when its stdin closes
        }
    }

    /// A read-only route's answer from the child, to keep while it sleeps.
    async fn fetch(&self, addr: SocketAddr, path: &str) -> Option<(String, String, Bytes)> {
        let mut request = Request::get(format!("http://{addr}{path}")).body(Body::empty()).ok()?;
        if let Some(key) = &self.api_key {
            request.headers_mut().insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {key}")).ok()?);
        }
        let answer = self.client.request(request).await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        let kind = answer.headers().get(header::CONTENT_TYPE)?.to_str().ok()?.to_string();
        let body = axum::body::to_bytes(Body::new(answer.into_body()), super::BODY_LIMIT).await.ok()?;
        Some((path.to_string(), kind, body))
    }

    /// While the model sleeps: the saved answer of a read-only route (`/props` saying it
    /// sleeps), or none for a request that needs the model.
    fn asleep_answer(&self, path: &str) -> Option<Response> {
        let sleep = self.sleep.as_ref()?;
        if is_health(path) {
            return Some(axum::Json(serde_json::json!({"status": "ok"})).into_response());
        }
        let path = saved_as(path)?;
        let mut state = lock(&sleep.state);
        let at = state.saved.iter().position(|(p, _, _)| p == path)?;
        // An answer saved twice (`/metrics`) gives its first once.
        let once = state.saved[at + 1..].iter().any(|(p, _, _)| p == path);
        let (_, kind, body) = if once { state.saved.remove(at) } else { state.saved[at].clone() };
        let body = if path == "/props" {
            let mut props: serde_json::Value = serde_json::from_slice(&body).ok()?;
            props["is_sleeping"] = true.into();
            Bytes::from(props.to_string())
        } else {
            body
        };
        Some(([(header::CONTENT_TYPE, kind)], body).into_response())
    }

    /// Wakes the model for a request that needs it; waits until it is loaded (or down).
    async fn wake(&self) {
        let Some(sleep) = &self.sleep else { return };
        {
            let mut state = lock(&sleep.state);
            if state.sleeping {
                state.sleeping = false;
                sleep.wake.notify_all();
            }
        }
        let mut status = self.status.subscribe();
        let _ = status.wait_for(|s| matches!(s, Status::Ready(_) | Status::Down(_))).await;
    }

    /// Counts a request in flight until the guard drops (the end of its answer).
    fn busy(self: &Arc<Self>) -> Option<Busy> {
        let sleep = self.sleep.as_ref()?;
        let mut state = lock(&sleep.state);
        state.in_flight += 1;
        state.last_active = Some(Instant::now());
        Some(Busy(self.clone()))
    }
}

/// A request in flight ([`Supervisor::busy`]).
struct Busy(Arc<Supervisor>);

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(sleep) = &self.0.sleep {
            let mut state = lock(&sleep.state);
            state.in_flight -= 1;
            state.last_active = Some(Instant::now());
        }
    }
}

/// A line on stderr; one that cannot be written (stderr closed) is not worth stopping for.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A 503 for a model that is down, with the reason.
fn unavailable(reason: &str) -> ApiError {
    ApiError::unavailable(format!("the model is unavailable: {reason}; strata serve is loading it again"), 5)
}

/// Every route: forwarded to the child.
pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new().fallback(front).with_state(supervisor)
}

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: &[header::HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// Forwards one request to the child, the body read whole first (within the server's limits),
/// the answer streamed back. A child lost before it answers is a 503; one lost in the middle of
/// server-sent events ends them with an error event.
/// Every request: the browser's origin checked (CORS), then forwarded; what the supervisor
/// answers itself (a preflight, a refusal, a 503 while the model is down) it logs itself, what
/// the child answers the child logs.
async fn front(State(s): State<Arc<Supervisor>>, request: Request) -> Response {
    let started = Instant::now();
    let (method, path) = (request.method().to_string(), request.uri().path().to_string());
    let origin = request.headers().get(header::ORIGIN).map(|o| o.to_str().unwrap_or("").to_string());
    let (mut response, by_child) = match &origin {
        Some(o) if !s.origins.allows(o) => {
            let why = format!("origin {o:?} may not call this server (start strata serve with --cors-origin {o})");
            (ApiError::new(StatusCode::FORBIDDEN, why).into_response(), false)
        }
        Some(_) if request.method() == Method::OPTIONS => (preflight(request.headers()), false),
        _ => forward(&s, request).await,
    };
    if let Some(o) = origin.filter(|o| s.origins.allows(o)) {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&o) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        }
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if !by_child {
        let status = response.status().as_u16();
        drop(Entry { format: s.log_format, method, path, status, started, tokens: Default::default() });
    }
    response
}

/// A browser's preflight for an allowed origin: the methods and headers it may send.
fn preflight(headers: &HeaderMap) -> Response {
    let asked = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked.unwrap_or_else(|| HeaderValue::from_static("Authorization, Content-Type")),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// Whether a POST says its body is JSON (`application/json`, with or without parameters).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Forwards one request to the child (true: the child answered), the body read whole first
/// (within the server's limits), the answer streamed back. A child lost before it answers is a
/// 503; one lost in the middle of server-sent events ends them with an error event.
async fn forward(s: &Arc<Supervisor>, request: Request) -> (Response, bool) {
    let refused = |e: ApiError| (e.into_response(), false);
    if !is_health(request.uri().path()) {
        if let Err(e) = super::authorize(s.api_key.as_deref(), request.headers()) {
            return refused(e);
        }
    }
    if request.method() == Method::POST && !is_json(request.headers()) {
        let why = "the request body must be JSON, sent with Content-Type: application/json";
        return refused(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, why));
    }
    // Read-only routes neither count as activity nor wake a sleeping model.
    let route = request.uri().path().to_string();
    let busy = if is_read_only(&route) { None } else { s.busy() };
    if *s.status.borrow() == Status::Asleep {
        if request.method() == Method::GET {
            if let Some(answer) = s.asleep_answer(&route) {
                return (answer, false);
            }
        }
        s.wake().await;
    }
    let addr = match s.status.borrow().clone() {
        Status::Ready(addr) => addr,
        Status::Loading | Status::Asleep => return refused(ApiError::loading()),
        Status::Down(reason) => return refused(unavailable(&reason)),
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(e) => return refused(e),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://{addr}{path}").parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return refused(ApiError::bad("cannot forward this request's path")),
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::CONTENT_LENGTH);
    let answer = match s.send(parts, bytes).await {
        Ok(answer) => answer,
        Err(_) => {
            // A read-only request (which does not keep the model awake) that met the child as it
            // ended to sleep gets the answer saved for the sleep.
            if *s.status.borrow() == Status::Asleep {
                if let Some(answer) = s.asleep_answer(&route) {
                    return (answer, false);
                }
            }
            return refused(unavailable(&s.reason_lost(addr).await));
        }
    };
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if !super::is_event_stream(&parts.headers) {
        return (Response::from_parts(parts, Body::new(body)), true);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let chunks = Body::new(body).into_data_stream();
    // The stream keeps the request in flight (`busy`) until it ends.
    let stream =
        futures_util::stream::unfold((chunks, Some(s.clone()), busy), move |(mut chunks, s, busy)| async move {
            let s = s?;
            match chunks.next().await {
                Some(Ok(chunk)) => Some((Ok::<Bytes, std::convert::Infallible>(chunk), (chunks, Some(s), busy))),
                None => None,
                Some(Err(_)) => {
                    let error = unavailable(&s.reason_lost(addr).await);
                    Some((Ok(Bytes::from(format!("data: {}\n\n", error.body()))), (chunks, None, busy)))
                }
            }
        });
    (Response::from_parts(parts, Body::from_stream(stream)), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

    /// Reads one bodiless request's head; false at the end of the stream.
    async fn read_head(stream: &mut TcpStream) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    /// A child that closes a pooled connection just as a request arrives on it, without a byte
    /// of answer (what its header timeout does to a request that crosses it): the request is
    /// sent again on a fresh connection and answered, never a 503.
    #[test]
    fn a_request_crossing_the_childs_close_is_sent_again() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut first, _) = listener.accept().await.unwrap();
                assert!(read_head(&mut first).await);
                first.write_all(OK).await.unwrap();
                // The second request on this connection: read, then the connection closes.
                assert!(read_head(&mut first).await);
                drop(first);
                loop {
                    let (mut next, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        while read_head(&mut next).await {
                            next.write_all(OK).await.unwrap();
                        }
                    });
                }
            });
            let origins = Origins::new(&[]).unwrap();
            let supervisor = Supervisor::new(None, Duration::from_secs(10), origins, LogFormat::Text, None);
            supervisor.status.send_replace(Status::Ready(addr));
            for i in 0..3 {
                let request = Request::get("/v1/models").body(Body::empty()).unwrap();
                let started = std::time::Instant::now();
                let response = front(State(supervisor.clone()), request).await;
                assert_eq!(response.status(), StatusCode::OK, "request {i}");
                assert!(started.elapsed() < REASON_WAIT, "request {i} waited {:?}", started.elapsed());
            }
        });
    }
}
