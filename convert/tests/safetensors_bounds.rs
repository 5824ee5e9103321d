//! The safetensors header parser against headers that lie about sizes (issue 6): a huge header
//! length, shapes of 2^40 and 2^60 elements, byte ranges past the end of the file. Each is an
//! error before anything is allocated from the claimed size.

use strata_convert::safetensors::parse_tensors;

#[path = "../../tests/support/peak_alloc.rs"]
mod peak_alloc;

use peak_alloc::largest_allocation;

fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// Parses `bytes`, asserting that it fails and that no single allocation exceeded 64 bytes per
/// byte of input plus 4 KiB (what parsing the JSON itself may take).
fn parse_err(bytes: &[u8]) -> String {
    let (result, largest) = largest_allocation(|| parse_tensors(bytes));
    assert!(largest <= 64 * bytes.len() + 4096, "allocated {largest} bytes for a {}-byte file", bytes.len());
    format!("{:#}", result.expect_err("a lying header must not parse"))
}

#[test]
fn a_valid_header_parses() {
    let t = parse_tensors(&file(r#"{"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}"#, 12)).unwrap();
    assert_eq!((t.len(), t[0].shape.clone(), t[0].n_elements()), (1, vec![2, 3], 6));
}

#[test]
fn huge_claims_fail_before_allocating() {
    // A header longer than the file, and longer than the format allows.
    for n in [u64::MAX, 1 << 60, 1 << 40, 200_000_000, 3] {
        let mut bytes = n.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"{}");
        assert!(parse_err(&bytes).contains(&format!("header claims {n} bytes")));
    }
    // 2^40 and 2^60 elements in a small range, and shapes whose byte size overflows.
    for shape in [
        "[1099511627776]",
        "[1152921504606846976]",
        "[1099511627776,1099511627776]",
        "[4294967296,4294967296,4294967296]",
    ] {
        let header = format!(r#"{{"a":{{"dtype":"F32","shape":{shape},"data_offsets":[0,16]}}}}"#);
        let msg = parse_err(&file(&header, 16));
        assert!(msg.contains("needs") && msg.contains("its range holds 16"), "{shape}: {msg}");
    }
    // A tensor past the end of the file, with sizes that agree with its shape.
    let header = r#"{"a":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}"#;
    assert!(parse_err(&file(header, 16)).contains("lie outside the 16 bytes of data"));
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551600,18446744073709551615]}}"#;
    assert!(parse_err(&file(header, 16)).contains("lie outside"));
    // Sizes that are not whole numbers.
    for shape in ["[-1]", "[1e300]", "[\"4\"]", "4"] {
        let header = format!(r#"{{"a":{{"dtype":"F32","shape":{shape},"data_offsets":[0,16]}}}}"#);
        assert!(parse_err(&file(&header, 16)).contains("shape is not a list of sizes"), "{shape}");
    }
}
