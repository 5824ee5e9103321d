//! `strata inspect` on files that are not valid GGUF: one error line naming the file and the
//! problem, exit status 1, no panic.

mod common;

#[test]
fn missing_file_and_directory() {
    let out = common::strata(&["inspect", "/nonexistent/model.gguf"]);
    common::assert_clean_failure(&out, &["/nonexistent/model.gguf", "cannot open"]);
    let dir = std::env::temp_dir();
    let out = common::strata(&["inspect", dir.to_str().unwrap()]);
    common::assert_clean_failure(&out, &[dir.to_str().unwrap(), "is a directory"]);
}

/// Where a GGUF file's tensor data starts, and how many tensors it has, as llama.cpp's own
/// Python reader (gguf-py's GGUFReader) reads them.
fn gguf_py_layout(path: &std::path::Path) -> (usize, usize) {
    let script =
        "import sys; from gguf import GGUFReader; r = GGUFReader(sys.argv[1]); print(r.data_offset, len(r.tensors))";
    let out = std::process::Command::new(common::python()).args(["-c", script]).arg(path).output().expect("run python");
    assert!(out.status.success(), "GGUFReader: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (offset, count) = text.trim().split_once(' ').unwrap();
    (offset.parse().unwrap(), count.parse().unwrap())
}

#[test]
fn truncated_real_model() {
    let path = common::model(common::SMOLLM2);
    let real = std::fs::read(&path).unwrap();
    let (data_offset, _) = gguf_py_layout(&path);
    for cut in [0, 3, 4, 8, 17, 24, 100, 1000, 50_000, 1_000_000, data_offset - 1, data_offset + 4096, real.len() - 1] {
        let path = common::scratch_file(&format!("cut-{cut}.gguf"), &real[..cut]);
        let out = common::strata(&["inspect", path.to_str().unwrap()]);
        common::assert_clean_failure(&out, &[path.to_str().unwrap(), "not a valid GGUF file"]);
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn corrupted_real_header() {
    let path = common::model(common::SMOLLM2);
    let real = std::fs::read(&path).unwrap();
    let header = &real[..gguf_py_layout(&path).0];
    let cases: [(&str, usize, &[u8], &str); 4] = [
        ("magic", 0, b"GGML", "bad magic"),
        ("tensor-count", 8, &(1u64 << 60).to_le_bytes(), "tensor count is 1152921504606846976"),
        ("kv-count", 16, &u64::MAX.to_le_bytes(), "metadata key count is 18446744073709551615"),
        ("key-length", 24, &(1u64 << 40).to_le_bytes(), "claims 1099511627776 bytes"),
    ];
    for (name, at, patch, expected) in cases {
        let mut bad = header.to_vec();
        bad[at..at + patch.len()].copy_from_slice(patch);
        let path = common::scratch_file(&format!("{name}.gguf"), &bad);
        let out = common::strata(&["inspect", "--json", path.to_str().unwrap()]);
        common::assert_clean_failure(&out, &[path.to_str().unwrap(), expected]);
        assert!(out.stdout.is_empty(), "no partial output on stdout");
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn verify_checks_layout_and_the_data_checksum() {
    let dir = common::scratch_dir("verify");
    let out = dir.join("g4.gguf");
    let fixture = common::repo().join("tests/fixtures/models/gemma4");
    common::strata_ok(&["convert", fixture.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q8_0"]);
    let ok = common::strata_ok(&["inspect", "--verify", out.to_str().unwrap()]);
    // llama.cpp's converter wrote the same tensors from the same folder.
    let theirs = fixture.join("llamacpp-q8_0.gguf");
    let (_, n_tensors) = gguf_py_layout(&theirs);
    assert_eq!(gguf_py_layout(&out).1, n_tensors);
    assert!(
        ok.contains(&format!("ok: {n_tensors} tensors inside the file, none overlapping"))
            && ok.contains("data SHA-256 matches the header"),
        "{ok}"
    );
    // A file llama.cpp's converter wrote has no checksum: its layout is still checked.
    assert!(common::strata_ok(&["inspect", "--verify", theirs.to_str().unwrap()]).contains("not checksummed"));
    // One flipped bit in the tensor data.
    let mut bytes = std::fs::read(&out).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 1;
    let flipped = common::scratch_file("flipped.gguf", &bytes);
    let r = common::strata(&["inspect", "--verify", flipped.to_str().unwrap()]);
    common::assert_clean_failure(&r, &["flipped.gguf", "SHA-256", "the data changed after it was written"]);
}
