//! `strata inspect FILE.gguf`: header, metadata, tensor table and bytes per tensor class.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;
use strata_gguf::{GgufFile, TensorClass};
use strata_quantize::GgmlType;

use super::human_bytes;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF file, or hf:OWNER/NAME[:QUANT] from the Hugging Face cache.
    #[arg(value_name = "FILE.gguf", value_parser = super::run_args::model_file)]
    pub model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Arrays longer than this are summarized (first elements and length).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_array: usize,
    /// Check the file instead: every tensor inside it and none overlapping, and for files strata
    /// wrote, the tensor data's SHA-256 against the one in the header (strata.data_sha256).
    #[arg(long)]
    pub verify: bool,
}

/// Count and bytes of a group of tensors.
#[derive(Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) count: usize,
    pub(super) bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.verify {
        let v = strata_gguf::verify(&args.model)?;
        let checksum = match &v.sha256 {
            Some(sha) => format!("data SHA-256 matches the header ({sha})"),
            None => "no strata.data_sha256 in the header (not written by strata): data not checksummed".to_string(),
        };
        return super::print(&format!(
            "{}: ok: {} tensors inside the file, none overlapping; {} of data; {checksum}",
            args.model.display(),
            v.tensors,
            human_bytes(v.data_bytes)
        ));
    }
    let file = GgufFile::open(&args.model)?;
    let classes = tally_by(&file, |t| TensorClass::of(&t.name, t.shape.len()));
    let types = tally_by(&file, |t| t.ty);
    if args.json {
        super::print(&serde_json::to_string_pretty(&to_json(args, &file, &classes, &types))?)
    } else {
        super::print(&render_text(args, &file, &classes, &types))
    }
}

/// The tensors' count and bytes by `key` (their class, their type).
pub(super) fn tally_by<K: Ord>(file: &GgufFile, key: impl Fn(&strata_gguf::TensorInfo) -> K) -> BTreeMap<K, Tally> {
    let mut out = BTreeMap::new();
    for t in &file.tensors {
        out.entry(key(t)).or_insert_with(Tally::default).add(t.n_bytes());
    }
    out
}

fn to_json(
    args: &Args,
    file: &GgufFile,
    classes: &BTreeMap<TensorClass, Tally>,
    types: &BTreeMap<GgmlType, Tally>,
) -> serde_json::Value {
    let metadata: serde_json::Map<String, serde_json::Value> =
        file.metadata.iter().map(|(k, v)| (k.clone(), v.to_json(args.max_array))).collect();
    let tensors: Vec<_> = file
        .tensors
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "shape": t.shape,
                "bytes": t.n_bytes(),
                "class": TensorClass::of(&t.name, t.shape.len()).name(),
            })
        })
        .collect();
    json!({
        "path": args.model,
        "version": file.version,
        "alignment": file.alignment,
        "data_offset": file.data_offset,
        "file_size": file.file_size,
        "metadata": metadata,
        "tensors": tensors,
        "classes": classes.iter().map(|(c, t)| json!({"class": c.name(), "count": t.count, "bytes": t.bytes})).collect::<Vec<_>>(),
        "types": types.iter().map(|(ty, t)| json!({"type": ty.name(), "count": t.count, "bytes": t.bytes})).collect::<Vec<_>>(),
        "total_bytes": file.tensor_bytes(),
        "ple_table": ple_table(file).map(|p| json!({"name": p.name, "type": p.ty.name(), "bytes": p.bytes, "file_fraction": p.fraction, "read_lazily": p.lazy})),
    })
}

/// A per-layer embedding table: its size, its share of the file, and whether llama.cpp can read
/// it lazily for this architecture.
struct PleTable<'a> {
    name: &'a str,
    ty: GgmlType,
    bytes: u64,
    fraction: f64,
    lazy: bool,
}

fn ple_table(file: &GgufFile) -> Option<PleTable<'_>> {
    let t =
        file.tensors.iter().find(|t| TensorClass::of(&t.name, t.shape.len()) == TensorClass::PerLayerTokenEmbedding)?;
    let shape = strata_gguf::ModelShape::from_gguf(file).ok();
    Some(PleTable {
        name: &t.name,
        ty: t.ty,
        bytes: t.n_bytes(),
        fraction: t.n_bytes() as f64 / file.file_size.max(1) as f64,
        lazy: shape.is_some_and(|s| s.reads_lazily(&t.name)),
    })
}

fn render_text(
    args: &Args,
    file: &GgufFile,
    classes: &BTreeMap<TensorClass, Tally>,
    types: &BTreeMap<GgmlType, Tally>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", args.model.display());
    let _ = writeln!(
        out,
        "GGUF v{}: {} metadata keys, {} tensors, {} of tensor data from byte {} (alignment {}), file {}",
        file.version,
        file.metadata.len(),
        file.tensors.len(),
        human_bytes(file.tensor_bytes()),
        file.data_offset,
        file.alignment,
        human_bytes(file.file_size),
    );

    let _ = writeln!(out, "\nmetadata:");
    let key_width = file.metadata.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &file.metadata {
        let _ = writeln!(out, "  {key:key_width$}  {}", value.summary(args.max_array));
    }

    let _ = writeln!(out, "\ntensors:");
    let name_width = file.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "  {:name_width$}  {:7}  {:>22}  {:>12}  class", "name", "type", "shape", "bytes");
    for t in &file.tensors {
        let shape = t.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
        let class = TensorClass::of(&t.name, t.shape.len());
        let _ = writeln!(out, "  {:name_width$}  {:7}  {shape:>22}  {:>12}  {class}", t.name, t.ty.name(), t.n_bytes());
    }

    let total = file.tensor_bytes().max(1);
    let _ = writeln!(out, "\nbytes by tensor class:");
    let _ = writeln!(out, "  {:22}  {:>6}  {:>12}  {:>6}", "class", "count", "bytes", "share");
    for (class, tally) in classes {
        let share = 100.0 * tally.bytes as f64 / total as f64;
        let _ =
            writeln!(out, "  {:22}  {:>6}  {:>12}  {share:5.1}%", class.name(), tally.count, human_bytes(tally.bytes));
    }
    let _ = writeln!(out, "\nbytes by type:");
    for (ty, tally) in types {
        let _ = writeln!(out, "  {:22}  {:>6}  {:>12}", ty.name(), tally.count, human_bytes(tally.bytes));
    }
    let _ = writeln!(
        out,
        "\ntotal: {} tensors, {} ({} bytes)",
        file.tensors.len(),
        human_bytes(file.tensor_bytes()),
        file.tensor_bytes()
    );
    if let Some(p) = ple_table(file) {
        let how = if p.lazy {
            "llama.cpp reads it lazily, a row per token (strata's --lazy-mode on)"
        } else {
            "llama.cpp loads it whole into RAM (this architecture does not mark it lazy)"
        };
        let _ = writeln!(
            out,
            "per-layer embedding table {}: {} at {}, {:.1}% of the file; {how}",
            p.name,
            human_bytes(p.bytes),
            p.ty.name(),
            100.0 * p.fraction
        );
    }
    out
}
