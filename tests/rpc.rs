//! ggml's RPC backend on loopback: `strata rpc-server` processes serving a client that offloads
//! every layer to them (`--rpc`, `-ngl 99`), against the same model run locally.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use common::serve::{post_request, Server as Serve};
use common::{assert_clean_failure, model, repo, strata, strata_command, strata_ok, GEMMA3, SMOLLM2};

/// A `strata rpc-server` on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

/// A loopback port nothing listens on (just now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// `strata rpc-server` with one thread.
    fn start() -> Server {
        Server::spawn(strata_command(), &["rpc-server", "-t", "1", "--port"])
    }

    /// llama.cpp's own rpc-server (scripts/setup/build_llama_tools.sh), with one thread.
    fn llama_cpp() -> Server {
        let path = repo().join(".llama-tools/bin/llama-rpc-server");
        assert!(path.is_file(), "{} is missing: run scripts/setup/build_llama_tools.sh", path.display());
        Server::spawn(Command::new(path), &["-t", "1", "-p"])
    }

    /// `strata rpc-server` with one thread on `port`.
    fn start_on(port: u16) -> Server {
        Server::spawn_on(strata_command(), &["rpc-server", "-t", "1", "--port"], port)
    }

    /// Runs `command` with `args` and a free port after them; returns once it listens.
    fn spawn(command: Command, args: &[&str]) -> Server {
        Server::spawn_on(command, args, free_port())
    }

    fn spawn_on(mut command: Command, args: &[&str], port: u16) -> Server {
        let child = command
            .args(args)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start an RPC server");
        let endpoint = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&endpoint).is_err() {
            assert!(Instant::now() < deadline, "the RPC server on {endpoint} did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, endpoint }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROMPT: &str = "The capital of France is";

/// Greedy text of `model` for [`PROMPT`], with `extra` flags.
fn greedy(model_name: &str, extra: &[&str]) -> String {
    let path = model(model_name);
    let args = [
        &["generate", path.to_str().unwrap(), "-p", PROMPT, "--temp", "0", "-n", "32", "-t", "1", "--json"][..],
        extra,
    ]
    .concat();
    let out: serde_json::Value =
        serde_json::from_str(&strata_ok(&args)).expect("generate --json prints one JSON object");
    out["text"].as_str().expect("text").to_string()
}

#[test]
fn two_rpc_servers_give_the_local_output_without_repacking() {
    for name in [SMOLLM2, GEMMA3] {
        let (a, b) = (Server::start(), Server::start());
        let local = greedy(name, &["--no-repack"]);
        let remote = greedy(name, &["--rpc", &format!("{},{}", a.endpoint, b.endpoint), "-ngl", "99"]);
        assert!(!local.trim().is_empty(), "{name}: empty output");
        assert_eq!(remote, local, "{name}: RPC output differs from the local --no-repack run");
    }
}

#[test]
fn logits_over_rpc_equal_the_local_ones() {
    let (a, b) = (Server::start(), Server::start());
    let path = model(SMOLLM2);
    let text = common::scratch_file("rpc-text.txt", &include_bytes!("fixtures/imatrix/calibration.txt")[..1500]);
    let base = common::scratch_dir("rpc-logits").join("base.logits");
    let run = |extra: &[&str]| -> serde_json::Value {
        let args = [&["perplexity", path.to_str().unwrap(), "-c", "512", "-t", "1", "--json"][..], extra].concat();
        serde_json::from_str(&strata_ok(&args)).unwrap()
    };
    run(&["-f", text.to_str().unwrap(), "--no-repack", "--save-logits", base.to_str().unwrap()]);
    let remote =
        run(&["--kl-base", base.to_str().unwrap(), "--rpc", &format!("{},{}", a.endpoint, b.endpoint), "-ngl", "99"]);
    assert!(remote["tokens"].as_u64().unwrap() > 100, "{remote}");
    assert!(remote["relative_max_diff"].as_f64().unwrap() <= 1e-3 && remote["top1_agreement"] == 1.0, "{remote}");
}

/// The same protocol version on both sides (llama.cpp's tools here are built from the llama.cpp
/// strata links): strata's client on llama.cpp's server, and llama.cpp's client on strata's.
#[test]
fn llama_cpp_rpc_server_and_client_interoperate_with_strata() {
    let local = greedy(GEMMA3, &["--no-repack"]);
    let theirs = Server::llama_cpp();
    assert_eq!(
        greedy(GEMMA3, &["--rpc", &theirs.endpoint, "-ngl", "99"]),
        local,
        "strata's client on llama.cpp's rpc-server"
    );
    let ours = Server::start();
    let path = model(GEMMA3);
    let completion = |extra: &[&str]| {
        let args = [
            &[
                "-m",
                path.to_str().unwrap(),
                "-p",
                PROMPT,
                "--temp",
                "0",
                "-n",
                "32",
                "-t",
                "1",
                "-no-cnv",
                "--no-warmup",
            ][..],
            extra,
        ]
        .concat();
        let out = common::llama_tool_output("completion", &args);
        assert!(out.status.success(), "llama-completion {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let remote = completion(&["--rpc", &ours.endpoint, "-ngl", "99"]);
    assert_eq!(remote, completion(&["--no-repack"]), "llama.cpp's client on strata's rpc-server");
    assert_eq!(
        remote.trim_end(),
        format!("{PROMPT}{local}"),
        "llama-completion prints the prompt, then what strata generates"
    );
}

#[test]
fn tensor_split_places_the_layers() {
    let (a, b) = (Server::start(), Server::start());
    let path = model(SMOLLM2);
    let rpc = format!("{},{}", a.endpoint, b.endpoint);
    let run = |extra: &[&str]| {
        strata(
            &[&["generate", path.to_str().unwrap(), "-p", "Hi", "-n", "2", "-t", "1", "--rpc", &rpc][..], extra]
                .concat(),
        )
    };
    let out = run(&["-ngl", "99", "-ts", "1,0", "-v"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let loaded = stderr.lines().find(|l| l.starts_with("[loaded ")).unwrap_or_else(|| panic!("no load line: {stderr}"));
    assert!(loaded.contains(&format!("RPC0[{}]", a.endpoint)) && !loaded.contains(&b.endpoint), "{loaded}");
    assert_clean_failure(&run(&["-ngl", "99", "-ts", "1,0,1"]), &["3 shares for 2 devices"]);
    assert_clean_failure(&run(&["-ts", "1,1"]), &["--tensor-split needs -ngl N"]);
    assert_clean_failure(&run(&["-ngl", "99", "-ts", "0,0"]), &["not all zero"]);
}

/// Gemma 4's last layers read the KV cache of the two layers before them. Split over two servers
/// by free memory, llama.cpp would put layers 0-3 on the first and 4-5 on the second, and copy
/// the cache across for every token; strata keeps layers 2-5 on one server, and the output stays
/// the local one.
#[test]
fn layers_sharing_a_kv_cache_stay_on_one_server() {
    let (a, b) = (Server::start(), Server::start());
    // The tiny Gemma 4 fixture as llama.cpp's converter writes it: 6 layers, the last 2 shared.
    let path = repo().join("tests/fixtures/models/gemma4/llamacpp-f32.gguf");
    let run = |extra: &[&str]| {
        strata(
            &[&["generate", path.to_str().unwrap(), "-p", PROMPT, "--temp", "0", "-n", "8", "-t", "1"][..], extra]
                .concat(),
        )
    };
    let out = run(&["--rpc", &format!("{},{}", a.endpoint, b.endpoint), "-ngl", "99", "-v"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("[layers 2-5 share a KV cache: keeping them on one device, as -ts 2,5 would]"), "{stderr}");
    // llama.cpp's own log of where each layer went: "layer   2 assigned to device RPC1, ...".
    let device = |layer: usize| {
        let needle = format!("layer {layer:>3} assigned to device ");
        let line = stderr
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no placement of layer {layer}: {stderr}"));
        line.split_once(&needle).unwrap().1.split(',').next().unwrap().to_string()
    };
    let devices: Vec<String> = (0..=6).map(device).collect();
    assert_eq!(devices, ["RPC0", "RPC0", "RPC1", "RPC1", "RPC1", "RPC1", "RPC1"], "layers 0-5 and the output");
    let local = run(&["--no-repack"]);
    assert!(local.status.success() && !local.stdout.is_empty(), "{}", String::from_utf8_lossy(&local.stderr));
    assert_eq!(out.stdout, local.stdout, "the split run's text differs from the local --no-repack run");
}

#[test]
fn devices_lists_an_rpc_servers_device() {
    let server = Server::start();
    let out: serde_json::Value =
        serde_json::from_str(&strata_ok(&["devices", "--rpc", &server.endpoint, "--json"])).unwrap();
    let rpc = out["devices"].as_array().unwrap().iter().find(|d| d["description"] == server.endpoint.as_str());
    let rpc = rpc.unwrap_or_else(|| panic!("no device for {} in {out}", server.endpoint));
    assert!(rpc["name"].as_str().unwrap().starts_with("RPC") && rpc["memory_total"].as_u64().unwrap() > 0, "{rpc}");
}

#[test]
fn a_server_that_is_down_is_a_clean_error() {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let path = model(SMOLLM2);
    let out = strata(&["generate", path.to_str().unwrap(), "-p", "Hi", "-n", "4", "--rpc", &endpoint, "-ngl", "99"]);
    assert_clean_failure(&out, &[&format!("RPC server {endpoint}: cannot connect")]);
    assert_clean_failure(&strata(&["devices", "--rpc", "localhost"]), &["expected HOST:PORT"]);
}

#[test]
fn a_server_that_dies_mid_generation_ends_the_client_cleanly() {
    let mut server = Server::start();
    let mut client = generating_on(&server, &[]);
    server.child.kill().unwrap();
    let stderr = failed_within_30_s(&mut client);
    assert!(stderr.starts_with("error: ") && stderr.contains("RPC server"), "{stderr}");
}

/// `serve` outlives an RPC server that dies: the requests in flight get a 503 that names it,
/// `/health` says why, and once a server listens on that port again the model is back.
#[test]
fn serve_answers_503_while_its_rpc_server_is_lost_and_recovers() {
    let rpc = Server::start();
    let endpoint = rpc.endpoint.clone();
    let path = model(SMOLLM2);
    let serve =
        Serve::start(path.to_str().unwrap(), &["--rpc", &endpoint, "-ngl", "99", "--parallel", "2", "--api-key", "k"]);
    let key = "Authorization: Bearer k\r\n";
    let long = |stream: bool| {
        json!({"prompt": "Count:", "max_tokens": 4000, "ignore_eos": true, "stream": stream}).to_string()
    };
    // A streamed completion, read until its first token has come, and a whole one beside it.
    let mut streamed = TcpStream::connect(&serve.addr).unwrap();
    streamed.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    streamed.write_all(&post_request("/v1/completions", key, long(true).as_bytes())).unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let mut buf = [0u8; 4096];
        let n = streamed.read(&mut buf).expect("the streamed completion starts");
        assert!(n > 0, "the stream ended before its first token: {}", String::from_utf8_lossy(&seen));
        seen.extend(&buf[..n]);
    }
    let (status, whole) = std::thread::scope(|scope| {
        let whole = scope.spawn(|| serve.post_raw("/v1/completions", key, long(false).as_bytes()));
        std::thread::sleep(Duration::from_secs(1));
        drop(rpc);
        whole.join().unwrap()
    });
    assert!(status == 503 && whole.contains("RPC server") && whole.contains(&endpoint), "{status}: {whole}");
    streamed.read_to_end(&mut seen).expect("the stream ends within 30 s");
    let events = String::from_utf8_lossy(&seen);
    let last = events.lines().rfind(|l| l.starts_with("data: ")).unwrap();
    assert!(last.contains("\"code\":503") && last.contains("RPC server"), "{events}");
    let (status, health) = serve.try_get("/health").unwrap();
    assert!(status == 503 && health.contains("RPC server"), "{status}: {health}");
    // Without the key, a request learns nothing more than /health says.
    let (status, refused) = serve.post_raw("/v1/completions", "", b"{}");
    assert!(status == 401 && !refused.contains("RPC server"), "{status}: {refused}");
    let _rpc = Server::start_on(endpoint.rsplit_once(':').unwrap().1.parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    while serve.try_get("/health").unwrap().0 != 200 {
        assert!(Instant::now() < deadline, "the model did not come back within 90 s of its RPC server");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, answer) =
        serve.post_raw("/v1/completions", key, json!({"prompt": "Hi", "max_tokens": 4}).to_string().as_bytes());
    assert_eq!(status, 200, "{answer}");
}

/// A client generating a long text on `server`, once its first text has come (so that what
/// happens to the server next happens mid-generation).
fn generating_on(server: &Server, extra: &[&str]) -> Child {
    let path = model(SMOLLM2);
    let args = [
        &[
            "generate",
            path.to_str().unwrap(),
            "-p",
            "Count:",
            "-n",
            "4000",
            "--ignore-eos",
            "-t",
            "1",
            "--rpc",
            &server.endpoint,
            "-ngl",
            "99",
        ][..],
        extra,
    ]
    .concat();
    let mut client = strata_command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 16];
    client.stdout.as_mut().unwrap().read_exact(&mut first).expect("the client generates");
    client
}

/// Waits at most 30 s for `client` to fail with exit status 1 and one line on stderr; returns it.
fn failed_within_30_s(client: &mut Child) -> String {
    let status = wait_at_most(client, Duration::from_secs(30));
    let mut stderr = String::new();
    client.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.code() == Some(1) && stderr.lines().count() == 1, "{status:?}, stderr: {stderr}");
    stderr
}

#[test]
fn a_server_that_stops_answering_times_out() {
    // A listener that accepts and never answers: the handshake waits on it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || listener.incoming().collect::<Vec<_>>());
    let start = Instant::now();
    assert_clean_failure(
        &strata(&["devices", "--rpc", &endpoint, "--rpc-timeout", "2"]),
        &["no reply from the RPC servers for 2 s"],
    );
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());

    // A server frozen mid-generation (SIGSTOP): the decode waiting on it.
    let server = Server::start();
    let mut client = generating_on(&server, &["--rpc-timeout", "3"]);
    assert!(Command::new("kill").args(["-STOP", &server.child.id().to_string()]).status().unwrap().success());
    let stderr = failed_within_30_s(&mut client);
    assert!(stderr.contains("no reply from the RPC servers for 3 s"), "{stderr}");
}

/// The child's exit status, failing the test if it runs longer than `limit`.
fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the client still runs {limit:?} after its RPC server failed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_server_of_another_protocol_version_is_named() {
    // A server that answers the hello (| cmd | size: u64 | caps |) as protocol 6.0.0 would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut head = [0u8; 9];
                if stream.read_exact(&mut head).is_err() {
                    return; // strata's connect probe
                }
                let mut caps = vec![0u8; u64::from_le_bytes(head[1..9].try_into().unwrap()) as usize];
                stream.read_exact(&mut caps).unwrap();
                let mut reply = (4 + caps.len() as u64).to_le_bytes().to_vec();
                reply.extend([6, 0, 0, 0]);
                reply.extend(&caps);
                stream.write_all(&reply).unwrap();
                let _ = stream.read(&mut head); // held open until the client goes
            });
        }
    });
    assert_clean_failure(
        &strata(&["devices", "--rpc", &endpoint]),
        &["version mismatch: 6.0.0", "speaks RPC protocol 7.0.0", &endpoint],
    );
}

#[test]
fn rpc_server_refuses_a_public_address_without_allow_remote() {
    assert_clean_failure(
        &strata(&["rpc-server", "--host", "0.0.0.0", "--port", "1"]),
        &["--host 0.0.0.0", "no authentication", "--allow-remote"],
    );
}
