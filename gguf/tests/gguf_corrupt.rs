//! The GGUF reader against truncated, corrupted and lying files: every one is an error that
//! says what is wrong, never a panic, and no allocation is driven by a count the file cannot hold.

use strata_gguf::{encode_header, layout, parse, parse_keeping, Value, ValueType};
use strata_quantize::GgmlType;

#[path = "../../tests/support/peak_alloc.rs"]
mod peak_alloc;

use peak_alloc::largest_allocation;

/// Parses `bytes` and returns the error message, asserting that it failed and that no single
/// allocation exceeded 32 bytes per byte of input (a parsed value takes at most 32 bytes for
/// each byte it occupies in the file) plus 4 KiB.
fn parse_err(bytes: &[u8]) -> String {
    let (result, largest) = largest_allocation(|| parse(bytes));
    assert!(largest <= 32 * bytes.len() + 4096, "allocated {largest} bytes for a {}-byte file", bytes.len());
    match result {
        Ok(_) => panic!("a corrupted file of {} bytes parsed", bytes.len()),
        Err(e) => e.to_string(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("pattern present")
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A small valid file: three kinds of metadata and two tensors, the last ending at end of file.
fn sample() -> Vec<u8> {
    let strings =
        |v: &[&str]| Value::Array(ValueType::String, v.iter().map(|s| Value::String(s.to_string())).collect());
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("tokenizer.ggml.tokens".to_string(), strings(&["<s>", "</s>", "a", "b", "ab"])),
        ("general.alignment".to_string(), Value::U32(32)),
        ("llama.block_count".to_string(), Value::U32(1)),
        ("x.flags".to_string(), Value::Array(ValueType::Bool, vec![Value::Bool(true), Value::Bool(false)])),
    ];
    let (tensors, data_size) = layout(
        [("a.weight".to_string(), GgmlType::F32, vec![4]), ("b.weight".to_string(), GgmlType::Q8_0, vec![32, 2])],
        32,
    )
    .unwrap();
    let mut bytes = encode_header(&metadata, &tensors, 32).bytes;
    let last = tensors.last().unwrap();
    bytes.resize(bytes.len() + (last.offset + last.n_bytes()) as usize, 0x11);
    assert!(data_size >= last.offset + last.n_bytes());
    bytes
}

#[test]
fn the_sample_is_valid() {
    let file = parse(&sample()).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 2);
    assert_eq!(file.tensors[1].n_bytes(), 68);
    assert_eq!(file.get("llama.block_count"), Some(&Value::U32(1)));
    assert_eq!(file.architecture(), Some("llama"));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    for cut in 0..bytes.len() {
        let msg = parse_err(&bytes[..cut]);
        assert!(
            msg.contains("file ends") || msg.contains("past the end") || msg.contains("left in the file"),
            "cut at {cut}: {msg}"
        );
    }
}

/// Reading the layout alone (metadata stepped over, not built) gives the same tensor table and
/// refuses every truncation the full reader refuses.
#[test]
fn layout_only_reading_agrees_and_checks_as_much() {
    let bytes = sample();
    let full = parse(&bytes).unwrap();
    let lean = parse_keeping(&bytes, |_| false).unwrap();
    assert_eq!((lean.tensors, lean.data_offset, lean.alignment), (full.tensors, full.data_offset, full.alignment));
    assert_eq!(lean.metadata, [("general.alignment".to_string(), Value::U32(32))]);
    for cut in 0..bytes.len() {
        assert_eq!(parse_keeping(&bytes[..cut], |_| false).is_err(), parse(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn bad_magic_and_versions() {
    let mut bytes = sample();
    bytes[..4].copy_from_slice(b"GGML");
    assert!(parse_err(&bytes).contains("bad magic"));
    for version in [0u32, 1, 4, u32::MAX] {
        let mut bytes = sample();
        put_u32(&mut bytes, 4, version);
        assert!(parse_err(&bytes).contains(&format!("version {version} is not supported")));
    }
}

#[test]
fn huge_counts_fail_before_allocating() {
    for (at, what) in [(8, "tensor count"), (16, "metadata key count")] {
        for n in [u64::MAX, 1 << 60, 1 << 40, 1000] {
            let mut bytes = sample();
            put_u64(&mut bytes, at, n);
            let msg = parse_err(&bytes);
            assert!(msg.contains(what) && msg.contains(&n.to_string()), "{what} = {n}: {msg}");
        }
    }
}

#[test]
fn huge_string_lengths_fail() {
    let bytes = sample();
    let key_len_at = 24; // the first key's length
    let value_len_at = find(&bytes, b"general.architecture") + "general.architecture".len() + 4;
    let name_len_at = find(&bytes, b"a.weight") - 8;
    for at in [key_len_at, value_len_at, name_len_at] {
        for n in [u64::MAX, 1 << 40, bytes.len() as u64] {
            let mut bad = bytes.clone();
            put_u64(&mut bad, at, n);
            let msg = parse_err(&bad);
            assert!(msg.contains(&format!("claims {n} bytes")), "length {n} at {at}: {msg}");
        }
    }
}

#[test]
fn huge_array_lengths_fail() {
    let bytes = sample();
    let len_at = find(&bytes, b"tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".len() + 8;
    for n in [u64::MAX, 1 << 40, 1 << 20] {
        let mut bad = bytes.clone();
        put_u64(&mut bad, len_at, n);
        let msg = parse_err(&bad);
        assert!(msg.contains("length of array \"tokenizer.ggml.tokens\""), "{msg}");
    }
}

#[test]
fn unknown_type_ids() {
    let bytes = sample();
    let value_type_at = find(&bytes, b"llama.block_count") + "llama.block_count".len();
    let mut bad = bytes.clone();
    put_u32(&mut bad, value_type_at, 13);
    assert!(parse_err(&bad).contains("unknown value type id 13"));

    let elem_type_at = find(&bytes, b"x.flags") + "x.flags".len() + 4;
    let mut bad = bytes.clone();
    put_u32(&mut bad, elem_type_at, 0xdead);
    assert!(parse_err(&bad).contains("unknown value type id 57005"));

    let tensor_type_at = find(&bytes, b"a.weight") + "a.weight".len() + 4 + 8;
    for id in [4u32, 31, 43, 1000] {
        let mut bad = bytes.clone();
        put_u32(&mut bad, tensor_type_at, id);
        let msg = parse_err(&bad);
        assert!(msg.contains(&format!("tensor \"a.weight\" has unknown ggml type id {id}")), "{msg}");
    }
}

#[test]
fn lying_tensor_tables() {
    let bytes = sample();
    let a = find(&bytes, b"a.weight") + "a.weight".len();
    let b = find(&bytes, b"b.weight") + "b.weight".len();
    let (a_dims, a_shape, a_offset) = (a, a + 4, a + 4 + 8 + 4);
    let b_offset = b + 4 + 16 + 4;

    let mut bad = bytes.clone();
    put_u64(&mut bad, b_offset, 1 << 20);
    assert!(parse_err(&bad).contains("run past the end of the file"));

    let mut bad = bytes.clone();
    put_u64(&mut bad, b_offset, u64::MAX - 31);
    assert!(parse_err(&bad).contains("run past the end of the file"));

    let mut bad = bytes.clone();
    put_u64(&mut bad, a_offset, 8);
    assert!(parse_err(&bad).contains("not a multiple of the alignment"));

    let mut bad = bytes.clone();
    put_u64(&mut bad, a_shape, 20);
    assert!(parse_err(&bad).contains("overlap"));

    let mut bad = bytes.clone();
    put_u64(&mut bad, a_shape, 1 << 62);
    assert!(parse_err(&bad).contains("overflows") || parse_err(&bad).contains("past the end"));

    for dims in [0u32, 5, u32::MAX] {
        let mut bad = bytes.clone();
        put_u32(&mut bad, a_dims, dims);
        assert!(parse_err(&bad).contains(&format!("has {dims} dimensions")));
    }

    let b_shape = b + 4;
    let mut bad = bytes.clone();
    put_u64(&mut bad, b_shape, 48);
    assert!(parse_err(&bad).contains("row width 48 is not a multiple of Q8_0's block size 32"));
}

#[test]
fn duplicates_and_bad_alignment() {
    let bytes = sample();
    let mut bad = bytes.clone();
    let at = find(&bytes, b"b.weight");
    bad[at] = b'a';
    assert!(parse_err(&bad).contains("tensor \"a.weight\" appears twice"));

    // "llama.block_count" and "general.alignment" have the same length: rename one to the other.
    let mut bad = bytes.clone();
    let at = find(&bytes, b"llama.block_count");
    bad[at..at + 17].copy_from_slice(b"general.alignment");
    assert!(parse_err(&bad).contains("\"general.alignment\" appears twice"));

    let mut bad = bytes.clone();
    let at = find(&bytes, b"general.alignment") + "general.alignment".len() + 4;
    put_u32(&mut bad, at, 48);
    assert!(parse_err(&bad).contains("general.alignment must be a power of two"));
}

#[test]
fn random_corruption_never_panics() {
    let bytes = sample();
    let header_len = parse(&bytes).unwrap().data_offset as usize;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut bad = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % header_len as u64) as usize;
            bad[at] = match next() % 3 {
                0 => next() as u8,
                1 => 0xFF,
                _ => 0,
            };
        }
        // Some flips are harmless (e.g. inside a string); none may panic.
        let (_, largest) = largest_allocation(|| parse(&bad));
        assert!(largest <= 32 * bad.len() + 4096);
    }
}
