//! The GGUF writer's all-or-nothing output, and the header's checksum slot.

use std::path::PathBuf;

use strata_gguf::{encode_header, layout, parse, verify, write_gguf, Value, DATA_SHA256_KEY, DATA_SHA256_PLACEHOLDER};
use strata_quantize::GgmlType;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-gguf-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn writer_output_is_complete_or_absent() {
    let dir = scratch("writer");
    let out = dir.join("m.gguf");
    let metadata = vec![("general.architecture".to_string(), Value::String("llama".into()))];
    let (tensors, _) =
        layout([("a".to_string(), GgmlType::F32, vec![8]), ("b".to_string(), GgmlType::F32, vec![3])], 32).unwrap();
    write_gguf(&out, &metadata, &tensors, 32, |i, w| Ok(w.write_all(&vec![i as u8; tensors[i].n_bytes() as usize])?))
        .unwrap();
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
    let left: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, vec!["m.gguf".to_string()], "no partial or temporary file stays");
}

/// The writer fills the reserved checksum slot with the data's SHA-256, which `verify` then
/// recomputes; a header without the placeholder has no slot.
#[test]
fn checksum_slot_is_where_the_placeholder_value_starts() {
    let (tensors, _) = layout([("a".to_string(), GgmlType::F32, vec![8])], 32).unwrap();
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        (DATA_SHA256_KEY.to_string(), Value::String(DATA_SHA256_PLACEHOLDER.into())),
    ];
    let header = encode_header(&metadata, &tensors, 32);
    let slot = header.checksum_slot.expect("a slot");
    assert_eq!(&header.bytes[slot..slot + 64], DATA_SHA256_PLACEHOLDER.as_bytes());
    assert_eq!(encode_header(&metadata[..1], &tensors, 32).checksum_slot, None);

    let dir = scratch("checksum");
    let out = dir.join("m.gguf");
    write_gguf(&out, &metadata, &tensors, 32, |_, w| Ok(w.write_all(&[7u8; 32])?)).unwrap();
    let verified = verify(&out).unwrap();
    let recorded =
        parse(&std::fs::read(&out).unwrap()).unwrap().get(DATA_SHA256_KEY).unwrap().as_str().unwrap().to_string();
    assert_eq!(verified.sha256.as_deref(), Some(recorded.as_str()));
    assert_ne!(recorded, DATA_SHA256_PLACEHOLDER);
}
