//! `strata serve MODEL.gguf [--host 127.0.0.1] [--port 8080] [-np N] [-c CTX] [--api-key KEY]`:
//! an OpenAI-compatible server (src/server/), with the sampling, template and reasoning flags
//! of `chat` as defaults that a request may override.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::run_args::{ModelArgs, ProjectorArgs, Reasoning, SamplingArgs, TemplateArgs, TokenLimit, DEFAULT_CTX_SIZE};
use strata_run::chat::template::{ChatTemplate, RenderOptions};
use strata_run::chat::tools::ToolFormat;

use crate::server::access_log::LogFormat;
use crate::server::cors::Origins;
use crate::server::engine;
use crate::server::media_urls::MediaUrls;
use crate::server::supervisor::{self, Supervisor};
use crate::server::{self, AppState, Options, Ready, ReasoningOut};

#[derive(clap::Args, Clone)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub projector: ProjectorArgs,
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Address to listen on (loopback unless told otherwise); several, comma-separated, are
    /// each listened on (`127.0.0.1,::1`).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together (slots, -np); -c is shared among them.
    #[arg(long = "parallel", default_value_t = 4)]
    pub parallel: u32,
    /// Requests that may wait for a slot; more get 503.
    #[arg(long = "max-queue", default_value_t = 64)]
    pub max_queue: usize,
    /// Tokens to generate when a request gives no max_tokens (-1: to the end of the slot's context).
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value = "-1", allow_negative_numbers = true)]
    pub n_predict: TokenLimit,
    /// Require `Authorization: Bearer KEY` (also from STRATA_API_KEY).
    #[arg(long = "api-key", env = "STRATA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model's name in responses and /v1/models (default: the file name); several,
    /// comma-separated, are names it also answers to (the first in sorted order is its id).
    #[arg(long)]
    pub alias: Option<String>,
    /// Labels listed with the model in /v1/models (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Seconds a client may take to send a request's headers, and that an idle keep-alive
    /// connection stays open (llama-server's --timeout).
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// MiB of host memory for the prompts slots give up, restored when a request shares more
    /// with one of them than with any slot (llama-server's --cache-ram; 0: off, -1: no limit).
    #[arg(long = "cache-ram", value_name = "MIB", default_value_t = 1024, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..))]
    pub cache_ram: i64,
    /// Origins whose web pages may call the server from a browser (repeatable or comma-separated):
    /// `*`, or SCHEME://HOST[:PORT], PORT may be `*`. Default: this machine's loopback origins.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// Serve /metrics (Prometheus' text format).
    #[arg(long)]
    pub metrics: bool,
    /// Serve /slots (each slot's state).
    #[arg(long)]
    pub slots: bool,
    /// A folder for slot files: `POST /slots/{id}?action=save|restore` writes and reads a
    /// slot's cache there (`?action=erase` empties it). Created if missing.
    #[arg(long = "slot-save-path", value_name = "DIR")]
    pub slot_save_path: Option<PathBuf>,
    /// End the model's process after this many seconds without a request, giving its memory
    /// back, and load it again for the next request that needs it (`/health`, `/props`,
    /// `/v1/models` and `/metrics` don't wake it).
    #[arg(long = "sleep-idle-seconds", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub sleep_idle_seconds: Option<u64>,
    /// One KV cache shared by the slots: each may use all of -c, as long as together they fit
    /// (a slot that finds it full fails with "the context size has been exceeded").
    #[arg(long = "kv-unified")]
    pub kv_unified: bool,
    /// Fetch the http(s) image URLs requests name (each at most 100 MiB, in 10 s; up to 3
    /// redirects); without it the server fetches nothing and refuses such URLs.
    #[arg(long = "allow-media-urls")]
    pub allow_media_urls: bool,
    /// How access-log lines (one per request, on stderr) are written.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Run as the model's process under a supervising `strata serve`: listen on a loopback port
    /// of the OS's choosing, and end when standard input closes.
    #[arg(long, hide = true)]
    pub supervised: bool,
}

impl Args {
    fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

/// The least context a slot may have: llama.cpp gives each slot a multiple of 256 tokens, so a
/// smaller share becomes 256 per slot (`-c 512 -np 4`: 1024 in all).
const MIN_SLOT_CTX: u32 = 256;

/// `n_ctx` over `parallel` slots that leaves a slot less than [`MIN_SLOT_CTX`] tokens: llama.cpp
/// then gives each that many, more memory than asked. Up to twice the context asked (llama-server
/// starts, e.g. `-c 512 -np 4`) a warning says so; beyond, an error.
fn check_slot_context(n_ctx: u32, parallel: u32, warn: bool) -> Result<()> {
    let total = MIN_SLOT_CTX * parallel;
    if n_ctx / parallel < MIN_SLOT_CTX && total > 2 * n_ctx {
        bail!(
            "-c {n_ctx} over {parallel} slot{} leaves {} tokens each; llama.cpp gives a slot at least {MIN_SLOT_CTX} \
             ({total} tokens in all): raise -c to {total}, lower --parallel, or share -c with --kv-unified",
            if parallel == 1 { "" } else { "s" },
            n_ctx / parallel,
        );
    }
    if warn && n_ctx / parallel < MIN_SLOT_CTX {
        eprintln!(
            "warning: -c {n_ctx} over {parallel} slots leaves {} tokens each; llama.cpp gives a slot at least \
             {MIN_SLOT_CTX}, so the cache holds {} tokens in all (--kv-unified shares -c among the slots instead)",
            n_ctx / parallel,
            MIN_SLOT_CTX * parallel
        );
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    if !(1..=64).contains(&args.parallel) {
        bail!("--parallel {}: between 1 and 64", args.parallel);
    }
    if args.api_key.as_deref() == Some("") {
        bail!("--api-key is empty");
    }
    if let Some(dir) = &args.slot_save_path {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--slot-save-path {}: cannot create the folder", dir.display()))?;
    }
    match args.model.ctx_size.unwrap_or(DEFAULT_CTX_SIZE) {
        0 => {} // the model's training context: checked once it is known
        // The supervisor warns; its child, started with the same flags, need not again.
        n_ctx if !args.kv_unified => check_slot_context(n_ctx, args.parallel, !args.supervised)?,
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if args.supervised {
        runtime.block_on(serve_model(args))
    } else {
        runtime.block_on(supervise(args))
    }
}

/// Listens on `--host`/`--port` and forwards to a child `strata serve --supervised` with the
/// same arguments, started again whenever it ends after having loaded the model.
async fn supervise(args: &Args) -> Result<()> {
    // What can be checked before listening is: the flags above, the origins, and that the model
    // is a GGUF file; the rest is the child's first load, whose error ends serve.
    let origins = Origins::new(&args.cors_origin)?;
    args.model.check_file()?;
    let mut listeners = Vec::new();
    for host in args.host.split(',').map(str::trim) {
        let (listener, addr) = server::bind(host, args.port).await?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {addr}, reachable from other machines{}",
                if args.api_key.is_none() { ", without an API key" } else { "" }
            );
        }
        eprintln!("listening on http://{addr}");
        listeners.push(listener);
    }
    let sleep_idle = args.sleep_idle_seconds.map(Duration::from_secs);
    let supervisor = Supervisor::new(args.api_key.clone(), args.header_timeout(), origins, args.log_format, sleep_idle);
    tokio::spawn(supervisor.clone().sleep_when_idle());
    let program = std::env::current_exe().context("cannot find strata's own executable")?;
    let child_args: Vec<_> = std::env::args_os().skip(1).chain(["--supervised".into()]).collect();
    let runner = supervisor.clone();
    std::thread::spawn(move || {
        if let Err(e) = runner.run_children(program, child_args) {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(1);
        }
    });
    let app = supervisor::router(supervisor);
    let last = listeners.pop().context("--host names no address")?;
    for listener in listeners {
        tokio::spawn(server::serve(listener, app.clone(), args.header_timeout()));
    }
    server::serve(last, app, args.header_timeout()).await
}

/// The model's process: loads the model and serves it on a loopback port; the server answers
/// 503 until the model is loaded.
async fn serve_model(args: &Args) -> Result<()> {
    let (listener, addr) = server::bind("127.0.0.1", 0).await?;
    eprintln!("listening on http://{addr}");
    // The supervisor holds the other end of standard input: when it ends, so does this process.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let options = Options {
        log_format: args.log_format,
        metrics: args.metrics,
        slots: args.slots,
        slot_save_path: args.slot_save_path.clone(),
        media_urls: args.allow_media_urls.then(MediaUrls::new).transpose()?.map(Arc::new),
    };
    let state = AppState::new(args.api_key.clone(), options);
    let loading = state.clone();
    let load_args = args.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = load(loading, load_args) {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            std::process::exit(1);
        }
    });
    server::serve(listener, server::router(state), args.header_timeout()).await
}

/// The template's `enable_thinking` on unless `--think` says otherwise, where the template reads
/// it: llama-server's default (`--reasoning auto`). Templates that open a thinking segment unless
/// told to think (QwQ, DeepSeek-R1, Command-R7B) would otherwise close it at once.
fn thinking_by_default(mut render: RenderOptions, template: &ChatTemplate) -> RenderOptions {
    if render.enable_thinking.is_none() && template.source().contains("enable_thinking") {
        render.enable_thinking = Some(true);
    }
    render
}

/// Loads the model and starts the engine; the server answers 503 until then.
fn load(state: Arc<AppState>, args: Args) -> Result<()> {
    // A full-size cache for sliding-window layers, so that a slot keeps its prefix.
    let (mut model, mut context) = args.model.load(true)?;
    args.projector.attach(&mut model, &context)?;
    context.kv_unified = args.kv_unified;
    if context.n_ctx == 0 && !args.kv_unified {
        check_slot_context(model.n_ctx_train(), args.parallel, true)?;
    }
    let model = Arc::new(model);
    let cache = usize::try_from(args.cache_ram).map_or(usize::MAX, |mib| mib << 20);
    let engine = engine::start(model.clone(), &context, args.parallel, args.max_queue, cache)?;
    let file_name = || model.path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let mut aliases: Vec<String> = match &args.alias {
        Some(list) => list.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect(),
        None => Vec::new(),
    };
    if aliases.is_empty() {
        aliases.push(file_name());
    }
    aliases.sort();
    aliases.dedup();
    let alias = aliases[0].clone();
    let slot = engine.n_ctx_slot();
    let template = args.template.resolve(&model)?;
    let render = thinking_by_default(args.template.render_options(&model), &template);
    let ready = Ready {
        tool_format: ToolFormat::detect(template.source()),
        compiler: OnceLock::new(),
        reasoning_budget: args.template.reasoning_budget.0,
        seed: args.sampling.seed,
        verbose: args.model.verbose,
        eog: (0..model.n_vocab() as i32).filter(|&t| model.is_eog(t)).map(|t| t as u32).collect(),
        template,
        render,
        sampling: args.sampling.params(&model)?,
        max_tokens: args.n_predict.0,
        reasoning: if args.template.reasoning == Reasoning::Hide { ReasoningOut::Hide } else { ReasoningOut::Split },
        alias,
        aliases,
        tags: args.tags.clone(),
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        model,
        engine,
        n_slots: args.parallel as usize,
    };
    let _ = state.ready.set(ready);
    // The supervisor forwards requests from this line on.
    let n = args.parallel;
    eprintln!("model loaded: {n} slot{} of {slot} tokens", if n == 1 { "" } else { "s" });
    Ok(())
}
