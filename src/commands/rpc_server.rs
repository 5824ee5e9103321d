//! `strata rpc-server [--host 127.0.0.1] [--port 50052] [-t N] [--cache DIR] [--device NAME]`:
//! serves this machine's CPU (or a GPU) to other machines' `--rpc`, with ggml's RPC protocol,
//! as llama.cpp's rpc-server does; llama.cpp's own clients and servers of the same protocol
//! version interoperate with it.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::llama::rpc;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on. Anything but loopback needs --allow-remote.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    #[arg(short = 'p', long, default_value_t = 50052)]
    pub port: u16,
    /// Threads for the CPU backend (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Keep tensors clients send in this folder, so that a reconnecting client need not send
    /// them again (llama.cpp's `-c`).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// The device to serve, by `strata devices` name (default: the CPU).
    #[arg(long)]
    pub device: Option<String>,
    /// Listen on a non-loopback address. The protocol has no authentication and no encryption:
    /// anyone who reaches the port can run computations and read what clients send.
    #[arg(long)]
    pub allow_remote: bool,
    /// Show llama.cpp's own log.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if !args.host.is_loopback() && !args.allow_remote {
        bail!("--host {}: not a loopback address; RPC has no authentication or encryption, so anyone who reaches the port can use this machine. Use an SSH tunnel or a private network, and pass --allow-remote to listen there anyway", args.host);
    }
    if !args.host.is_loopback() {
        eprintln!(
            "warning: serving {} without authentication or encryption: never expose this port to an open network",
            args.host
        );
    }
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    let cache = match &args.cache {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("{}: cannot create the cache folder: {e}", dir.display()))?;
            Some(dir.to_str().ok_or_else(|| anyhow::anyhow!("{}: not UTF-8", dir.display()))?.to_string())
        }
        None => None,
    };
    let endpoint = match args.host {
        IpAddr::V6(ip) => format!("[{ip}]:{}", args.port),
        IpAddr::V4(ip) => format!("{ip}:{}", args.port),
    };
    eprintln!(
        "strata rpc-server: serving {} on {endpoint} with {threads} threads (RPC protocol {})",
        args.device.as_deref().unwrap_or("CPU"),
        rpc::PROTOCOL_VERSION
    );
    rpc::serve(&endpoint, args.device.as_deref(), threads, cache.as_deref(), args.verbose)
}
