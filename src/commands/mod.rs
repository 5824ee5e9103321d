//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod convert;
pub mod devices;
pub mod generate;
pub mod inspect;
pub mod perplexity;
pub mod plan;
pub mod run_args;
pub mod template;
pub mod tokenize;

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout, ending it with a newline if it has none; a closed pipe (`strata inspect ... | head`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let newline: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    match out.write_all(text.as_bytes()).and_then(|()| out.write_all(newline)).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
