//! The GGUF reader: parses a whole file held in memory (normally a memory map), checking every
//! count, length and offset against the bytes that are actually there before trusting it.
//!
//! Nothing is allocated from a count before that count is shown to fit in the rest of the file,
//! so a lying header costs at most a few times the file's size, never 2^60 elements.

use std::collections::HashSet;
use std::fmt;

use strata_quantize::GgmlType;

use super::value::{Value, ValueType};
use super::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAGIC};

/// Why a file is not a valid GGUF file, and where in it the problem is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GgufError {
    /// Byte offset in the file where the offending item starts.
    pub offset: u64,
    pub message: String,
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for GgufError {}

/// Deepest nesting of arrays accepted (GGUF allows arrays of arrays; real files use one level).
const MAX_ARRAY_DEPTH: usize = 4;
/// The most dimensions a ggml tensor has.
const MAX_DIMS: u32 = 4;

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, GgufError> {
        Err(GgufError { offset: at as u64, message: message.into() })
    }

    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return self.err(self.pos, format!("file ends inside {what}: needs {n} bytes, {} left", self.remaining()));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        Ok(self.bytes(N as u64, what)?.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each taking at least `min_item_size` bytes, checked against the rest of the file.
    fn count(&mut self, min_item_size: u64, what: &str) -> Result<usize, GgufError> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n.saturating_mul(min_item_size) > self.remaining() {
            return self
                .err(at, format!("{what} is {n}, more than the {} bytes left in the file can hold", self.remaining()));
        }
        Ok(n as usize)
    }

    fn raw_string(&mut self, what: &str) -> Result<&'a [u8], GgufError> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() {
            return self.err(at, format!("{what} claims {len} bytes, only {} left in the file", self.remaining()));
        }
        self.bytes(len, what)
    }

    /// A string that must be valid UTF-8 (keys and tensor names).
    fn name(&mut self, what: &str) -> Result<String, GgufError> {
        let at = self.pos;
        let raw = self.raw_string(what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err(at, format!("{what} is not valid UTF-8")),
        }
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType, GgufError> {
        let at = self.pos;
        let id = self.u32(what)?;
        ValueType::from_id(id).map_or_else(|| self.err(at, format!("{what}: unknown value type id {id}")), Ok)
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = format!("the value of {key:?}");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&what)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&what)?)),
            ValueType::U32 => Value::U32(self.u32(&what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&what)?)),
            ValueType::U64 => Value::U64(self.u64(&what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(&what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return self.err(at, format!("{what}: bool byte is {b}, not 0 or 1")),
                }
            }
            ValueType::String => Value::String(String::from_utf8_lossy(self.raw_string(&what)?).into_owned()),
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return self.err(at, format!("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let elem = self.value_type(&format!("the element type of {key:?}"))?;
                let n = self.count(elem.min_size(), &format!("the length of array {key:?}"))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(elem, items)
            }
        })
    }

    /// Checks and steps over a value without building it (for metadata a caller does not keep).
    fn skip_value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<(), GgufError> {
        match ty {
            ValueType::String => {
                self.raw_string(&format!("the value of {key:?}"))?;
            }
            ValueType::Array => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return self.err(at, format!("the value of {key:?}: arrays nested deeper than {MAX_ARRAY_DEPTH}"));
                }
                let elem = self.value_type(&format!("the element type of {key:?}"))?;
                let n = self.count(elem.min_size(), &format!("the length of array {key:?}"))?;
                for _ in 0..n {
                    self.skip_value(elem, key, depth + 1)?;
                }
            }
            // Fixed-size values, bools included, are checked as they are read.
            _ => {
                self.value(ty, key, depth)?;
            }
        }
        Ok(())
    }

    fn tensor_info(&mut self) -> Result<(usize, TensorInfo), GgufError> {
        let at = self.pos;
        let name = self.name("a tensor name")?;
        let dims_at = self.pos;
        let n_dims = self.u32(&format!("the dimension count of tensor {name:?}"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return self.err(dims_at, format!("tensor {name:?} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(self.u64(&format!("the shape of tensor {name:?}"))?);
        }
        let type_at = self.pos;
        let type_id = self.u32(&format!("the type of tensor {name:?}"))?;
        let ty = match GgmlType::from_id(type_id) {
            Some(ty) => ty,
            None => return self.err(type_at, format!("tensor {name:?} has unknown ggml type id {type_id}")),
        };
        let offset = self.u64(&format!("the data offset of tensor {name:?}"))?;
        let info = TensorInfo { name, ty, shape, offset };
        let elements = shape_elements(&info.shape);
        match elements.and_then(|_| info.shape[0].checked_rem(ty.block_size() as u64)) {
            None => return self.err(dims_at, format!("tensor {:?}: shape {:?} overflows", info.name, info.shape)),
            Some(0) => {}
            Some(_) => {
                return self.err(
                    dims_at,
                    format!(
                        "tensor {:?}: row width {} is not a multiple of {}'s block size {}",
                        info.name,
                        info.shape[0],
                        ty,
                        ty.block_size()
                    ),
                )
            }
        }
        if info.n_bytes_checked().is_none() {
            return self.err(dims_at, format!("tensor {:?}: byte size overflows", info.name));
        }
        Ok((at, info))
    }
}

/// The number of elements of a shape, or `None` on overflow.
pub(crate) fn shape_elements(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// Parses a GGUF file (versions 2 and 3) held entirely in `data`.
pub fn parse(data: &[u8]) -> Result<GgufFile, GgufError> {
    parse_keeping(data, |_| true)
}

/// Parses and checks a GGUF file as [`parse`] does, keeping only the metadata whose key `keep`
/// accepts (`general.alignment` always): the others are checked and stepped over, never built,
/// so a 262,144-token vocabulary costs no memory.
pub fn parse_keeping(data: &[u8], keep: impl Fn(&str) -> bool) -> Result<GgufFile, GgufError> {
    let mut c = Cursor { data, pos: 0 };
    let magic = c.array::<4>("the magic number")?;
    if &magic != MAGIC {
        return c.err(0, format!("bad magic {magic:02x?}: not a GGUF file (expected \"GGUF\")"));
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return c.err(4, format!("GGUF version {version} is not supported (2 and 3 are)"));
    }
    let n_tensors = c.count(24, "the tensor count")?;
    let n_kv = c.count(13, "the metadata key count")?;

    let mut metadata = Vec::with_capacity(n_kv);
    let mut keys = HashSet::with_capacity(n_kv);
    for _ in 0..n_kv {
        let at = c.pos;
        let key = c.name("a metadata key")?;
        if !keys.insert(key.clone()) {
            return c.err(at, format!("metadata key {key:?} appears twice"));
        }
        let ty = c.value_type(&format!("the type of {key:?}"))?;
        if keep(&key) || key == "general.alignment" {
            let value = c.value(ty, &key, 0)?;
            metadata.push((key, value));
        } else {
            c.skip_value(ty, &key, 0)?;
        }
    }

    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
        Some((_, v)) => return c.err(c.pos, format!("general.alignment must be a power of two u32, found {v:?}")),
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut starts = Vec::with_capacity(n_tensors);
    let mut names = HashSet::with_capacity(n_tensors);
    for _ in 0..n_tensors {
        let (at, info) = c.tensor_info()?;
        if !names.insert(info.name.clone()) {
            return c.err(at, format!("tensor {:?} appears twice", info.name));
        }
        starts.push(at);
        tensors.push(info);
    }

    let file_size = data.len() as u64;
    let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
    if n_tensors > 0 && data_offset > file_size {
        return c.err(c.pos, format!("file ends before the tensor data, which starts at byte {data_offset}"));
    }
    let data_size = file_size.saturating_sub(data_offset);
    for (info, &at) in tensors.iter().zip(&starts) {
        if info.offset % alignment != 0 {
            return c.err(
                at,
                format!(
                    "tensor {:?}: data offset {} is not a multiple of the alignment {alignment}",
                    info.name, info.offset
                ),
            );
        }
        let end = info.offset.checked_add(info.n_bytes());
        if end.is_none_or(|end| end > data_size) {
            return c.err(
                at,
                format!(
                    "tensor {:?}: its {} bytes at data offset {} run past the end of the file ({data_size} bytes of tensor data)",
                    info.name,
                    info.n_bytes(),
                    info.offset
                ),
            );
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| tensors[i].offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        if a.offset + a.n_bytes() > b.offset {
            return c.err(starts[pair[1]], format!("tensors {:?} and {:?} overlap", a.name, b.name));
        }
    }
    Ok(GgufFile { version, metadata, tensors, alignment, data_offset, file_size })
}
