//! The safetensors reader against lying headers.

use std::path::{Path, PathBuf};

use strata_convert::safetensors::Checkpoint;

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
        (
            "overlap",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            "overlap",
        ),
        (
            "dtype-size",
            r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}"#,
            16,
            "needs 8 bytes, its range holds 16",
        ),
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
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}"#,
    )
    .unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    assert_eq!(ck.tensors().count(), 2);
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","c":"s2.safetensors"}}"#,
    )
    .unwrap();
    assert!(open_err(&dir).contains("\"c\" is named in the index but missing"));
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"../x.safetensors"}}"#).unwrap();
    assert!(open_err(&dir).contains("outside the folder"));
}
