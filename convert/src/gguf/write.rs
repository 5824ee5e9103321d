//! The GGUF writer's encoding half: the header, metadata and tensor table, laid out so that
//! tensor data follows at aligned offsets. Same input, same bytes.

use strata_quantize::GgmlType;

use super::value::Value;
use super::{TensorInfo, MAGIC};

/// Tensor infos for `(name, type, shape)` entries, with data offsets assigned in order, each
/// aligned to `alignment`. Returns the infos and the size of the data section.
pub fn layout(entries: impl IntoIterator<Item = (String, GgmlType, Vec<u64>)>, alignment: u64) -> (Vec<TensorInfo>, u64) {
    let mut offset = 0u64;
    let mut infos = Vec::new();
    for (name, ty, shape) in entries {
        let info = TensorInfo { name, ty, shape, offset };
        offset = (offset + info.n_bytes()).div_ceil(alignment) * alignment;
        infos.push(info);
    }
    (infos, offset)
}

/// Everything before the tensor data of a GGUF v3 file, padded to `alignment`.
pub fn encode_header(metadata: &[(String, Value)], tensors: &[TensorInfo], alignment: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key);
        out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut out, value);
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
    out
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
