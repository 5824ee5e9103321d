//! The GGUF writer: the header, metadata and tensor table, laid out so that tensor data follows
//! at aligned offsets, then the tensors streamed one by one into a temporary file that is renamed
//! into place only when complete. Same input, same bytes.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use strata_quantize::GgmlType;

use super::value::Value;
use super::{TensorInfo, MAGIC};

/// Tensor infos for `(name, type, shape)` entries, with data offsets assigned in order, each
/// aligned to `alignment`. Returns the infos and the size of the data section; a shape whose
/// bytes overflow, or a row width the type's blocks don't divide, is an error naming the tensor.
pub fn layout(
    entries: impl IntoIterator<Item = (String, GgmlType, Vec<u64>)>,
    alignment: u64,
) -> Result<(Vec<TensorInfo>, u64)> {
    let mut offset = 0u64;
    let mut infos = Vec::new();
    for (name, ty, shape) in entries {
        let info = TensorInfo { name, ty, shape, offset };
        let end = info
            .n_bytes_checked()
            .and_then(|b| offset.checked_add(b))
            .and_then(|e| e.checked_next_multiple_of(alignment));
        offset =
            end.ok_or_else(|| anyhow!("tensor {}: {} of shape {:?} has no valid size", info.name, ty, info.shape))?;
        infos.push(info);
    }
    Ok((infos, offset))
}

/// An encoded header, and where in it the value of [`DATA_SHA256_KEY`] starts when the metadata
/// reserves that slot with [`DATA_SHA256_PLACEHOLDER`].
pub struct Header {
    pub bytes: Vec<u8>,
    pub checksum_slot: Option<usize>,
}

/// Everything before the tensor data of a GGUF v3 file, padded to `alignment`.
pub fn encode_header(metadata: &[(String, Value)], tensors: &[TensorInfo], alignment: u64) -> Header {
    let mut out = Vec::new();
    let mut checksum_slot = None;
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_entry(&mut out, key, value);
        if key == DATA_SHA256_KEY && value.as_str() == Some(DATA_SHA256_PLACEHOLDER) {
            checksum_slot = Some(out.len() - DATA_SHA256_PLACEHOLDER.len());
        }
    }
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for d in &t.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.id().to_le_bytes());
        out.extend_from_slice(&t.offset.to_le_bytes());
    }
    let padded = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(padded as usize, 0);
    Header { bytes: out, checksum_slot }
}

/// One metadata entry: its key, its value's type, its value.
fn put_entry(out: &mut Vec<u8>, key: &str, value: &Value) {
    put_str(out, key);
    out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
    put_value(out, value);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.push(*v as u8),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_str(out, s),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Array(elem, items) => {
            out.extend_from_slice(&(*elem as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                debug_assert_eq!(item.value_type(), *elem, "GGUF arrays hold one type");
                put_value(out, item);
            }
        }
    }
}

/// A file being written next to its final path, removed unless [`PendingFile::commit`] renames
/// it into place: an error, a panic or an early return leaves nothing behind.
pub struct PendingFile {
    temp: PathBuf,
    target: PathBuf,
    file: Option<BufWriter<File>>,
}

impl PendingFile {
    /// Creates the temporary file in `target`'s directory.
    pub fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().ok_or_else(|| anyhow!("{}: not a file path", target.display()))?;
        let temp = dir.join(format!(".{}.strata-partial-{}", name.to_string_lossy(), std::process::id()));
        let file = File::create(&temp).with_context(|| format!("{}: cannot create the output", target.display()))?;
        register_temp(&temp);
        Ok(PendingFile { temp, target: target.to_path_buf(), file: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.file.as_mut().expect("open until commit")
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let what = || format!("{}: cannot write the output", self.target.display());
        let file = self.file.take().expect("open until commit");
        let file = file.into_inner().map_err(|e| e.into_error()).with_context(what)?;
        file.sync_all().with_context(what)?;
        std::fs::rename(&self.temp, &self.target).with_context(what)?;
        unregister_temp(&self.temp);
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
            unregister_temp(&self.temp);
        }
    }
}

/// Temporary files being written, so that a signal handler can remove them before exiting.
static TEMP_FILES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register_temp(path: &Path) {
    TEMP_FILES.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
}

fn unregister_temp(path: &Path) {
    TEMP_FILES.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p != path);
}

/// Removes every temporary file still being written (for a SIGINT/SIGTERM handler).
pub fn remove_partial_files() {
    for path in TEMP_FILES.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// Writes a GGUF v3 file: header, metadata and tensor table, then each tensor's data from
/// `write_tensor(index, out)`, which must write exactly that tensor's bytes. The file appears at
/// `path` only when complete.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
    alignment: u64,
    mut write_tensor: impl FnMut(usize, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut out = PendingFile::create(path)?;
    let header = encode_header(metadata, tensors, alignment);
    let io = |e: std::io::Error| anyhow!("{}: cannot write the output: {e}", path.display());
    out.writer().write_all(&header.bytes).map_err(io)?;
    let mut hash = Sha256::new();
    let mut offset = 0u64;
    for (i, t) in tensors.iter().enumerate() {
        let mut counting = CountingWriter { inner: out.writer(), written: 0, hash: &mut hash };
        write_tensor(i, &mut counting)?;
        let written = counting.written;
        if written != t.n_bytes() {
            bail!("tensor {}: wrote {written} bytes, expected {}", t.name, t.n_bytes());
        }
        offset += written;
        let padded = offset.div_ceil(alignment) * alignment;
        let padding = vec![0u8; (padded - offset) as usize];
        hash.update(&padding);
        out.writer().write_all(&padding).map_err(io)?;
        offset = padded;
    }
    if let Some(slot) = header.checksum_slot {
        let digest = hex(&hash.finalize());
        let w = out.writer();
        w.seek(SeekFrom::Start(slot as u64)).and_then(|_| w.write_all(digest.as_bytes())).map_err(io)?;
    }
    out.commit()
}

/// Metadata key for the SHA-256 of a file's data section (everything after the header), which
/// `strata inspect --verify` checks. Give it [`DATA_SHA256_PLACEHOLDER`] as its value: the
/// writer fills that reserved slot in once the data is written.
pub const DATA_SHA256_KEY: &str = "strata.data_sha256";
/// The reserved value of [`DATA_SHA256_KEY`]: as many characters as a hex SHA-256.
pub const DATA_SHA256_PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bytes as lowercase hex, as [`DATA_SHA256_KEY`] holds its digest.
pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    written: u64,
    hash: &'a mut Sha256,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
