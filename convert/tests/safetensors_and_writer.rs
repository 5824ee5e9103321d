//! The safetensors reader against lying headers, and the GGUF writer's all-or-nothing output.

use std::path::{Path, PathBuf};

use strata_convert::gguf::{layout, parse, write_gguf, Value};
use strata_convert::safetensors::Checkpoint;
use strata_quantize::GgmlType;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-st-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file from a JSON header and data bytes.
fn write_st(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn open_err(dir: &Path) -> String {
    format!("{:#}", Checkpoint::open(dir).err().expect("a bad checkpoint must not open"))
}

#[test]
fn reads_f32_f16_bf16_rows() {
    let dir = scratch("ok");
    let mut data = Vec::new();
    for v in [1.0f32, -2.0, 0.5, 4.0] {
        data.extend_from_slice(&v.to_le_bytes());
    }
    for v in [1.5f32, -0.25] {
        data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
    }
    for v in [3.0f32, -8.0] {
        data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
    }
    write_st(
        &dir.join("model.safetensors"),
        r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[2],"data_offsets":[16,20]},"c":{"dtype":"BF16","shape":[1,2],"data_offsets":[20,24]},"__metadata__":{"format":"pt"}}"#,
        &data,
    );
    let ck = Checkpoint::open(&dir).unwrap();
    let mut rows = Vec::new();
    ck.read_rows(ck.get("a").unwrap(), 1..2, &mut rows);
    assert_eq!(rows, vec![0.5, 4.0]);
    ck.read_rows(ck.get("b").unwrap(), 0..1, &mut rows);
    assert_eq!(rows, vec![1.5, -0.25]);
    ck.read_rows(ck.get("c").unwrap(), 0..1, &mut rows);
    assert_eq!(rows, vec![3.0, -8.0]);
}

#[test]
fn lying_headers_are_errors() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("past-end", r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8, "outside the 8 bytes"),
        ("overlap", r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12, "overlap"),
        ("dtype-size", r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}"#, 16, "needs 8 bytes, its range holds 16"),
        ("dtype", r#"{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#, 16, "dtype I64 is not supported"),
        ("not-json", r#"{"a": nope"#, 0, "not valid JSON"),
        ("reversed", r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, 8, "outside"),
    ];
    for (name, header, data_len, needle) in cases {
        let dir = scratch(name);
        write_st(&dir.join("model.safetensors"), header, &vec![0u8; *data_len]);
        let err = open_err(&dir);
        assert!(err.contains(needle) && err.contains("model.safetensors"), "{name}: {err}");
    }
    let dir = scratch("huge-header");
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    assert!(open_err(&dir).contains("header claims 1099511627776 bytes"));
    let dir = scratch("truncated");
    std::fs::write(dir.join("model.safetensors"), [1u8, 0, 0]).unwrap();
    assert!(open_err(&dir).contains("too short"));
    let dir = scratch("empty");
    assert!(open_err(&dir).contains("no model.safetensors"));
}

#[test]
fn sharded_index_must_match_the_shards() {
    let dir = scratch("sharded");
    write_st(&dir.join("s1.safetensors"), r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    write_st(&dir.join("s2.safetensors"), r#"{"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]);
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.tensors().count(), 2);
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"}}"#).unwrap();
    assert!(open_err(&dir).contains("\"c\" is named in the index but missing"));
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"../x.safetensors"}}"#).unwrap();
    assert!(open_err(&dir).contains("outside the folder"));
}

#[test]
fn writer_output_is_complete_or_absent() {
    let dir = scratch("writer");
    let out = dir.join("m.gguf");
    let metadata = vec![("general.architecture".to_string(), Value::String("llama".into()))];
    let (tensors, _) = layout([("a".to_string(), GgmlType::F32, vec![8]), ("b".to_string(), GgmlType::F32, vec![3])], 32);
    write_gguf(&out, &metadata, &tensors, 32, |i, w| Ok(w.write_all(&vec![i as u8; tensors[i].n_bytes() as usize])?)).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let file = parse(&bytes).unwrap();
    assert_eq!(file.tensors.len(), 2);
    let b = &file.tensors[1];
    assert_eq!(&bytes[(file.data_offset + b.offset) as usize..][..12], &[1u8; 12]);

    // A producer that fails, or writes the wrong amount, leaves nothing behind.
    let bad = dir.join("bad.gguf");
    let err = write_gguf(&bad, &metadata, &tensors, 32, |i, w| {
        if i == 1 {
            anyhow::bail!("disk on fire")
        }
        Ok(w.write_all(&[0; 32])?)
    })
    .unwrap_err();
    assert!(err.to_string().contains("disk on fire"));
    let err = write_gguf(&bad, &metadata, &tensors, 32, |_, w| Ok(w.write_all(&[0; 5])?)).unwrap_err();
    assert!(err.to_string().contains("wrote 5 bytes, expected 32"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, vec!["m.gguf".to_string()], "no partial or temporary file stays");
}
