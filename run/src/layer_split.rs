//! Which offload device each layer goes to, as llama.cpp's loader assigns them
//! (llama-model.cpp, `load_tensors`), and a split that keeps the layers of a shared KV cache on
//! one device.
//!
//! Gemma 3n and Gemma 4 end in layers that compute no K and V of their own: each reads the cache
//! of one of the two layers before them (llama.cpp: layer `il >= n_layer_kv_from_start` reads
//! `n_layer_kv_from_start - 2` if sliding, else `- 1`). A split that puts those on another device
//! than the layers they read makes ggml's scheduler copy the cache views across, for every such
//! layer and every token: over RPC, through the client, some 11 MB a token at 256 cached tokens on
//! the E2B-shaped model, growing with the context. Keeping the block on one device costs nothing.

/// The device of each of the `n_layer + 1` layers (the output layer last), as llama.cpp assigns
/// them for `n_gpu_layers` offloaded layers and the offload devices' `shares` (llama.cpp's
/// `tensor_split`, or the devices' free memory): `None` for the CPU, else the device's index.
pub fn assign(n_layer: usize, n_gpu_layers: usize, shares: &[f32]) -> Vec<Option<usize>> {
    // llama.cpp's arithmetic, in its single precision.
    let mut splits: Vec<f32> = Vec::with_capacity(shares.len());
    let mut sum = 0.0f32;
    for &s in shares {
        sum += s;
        splits.push(sum);
    }
    for s in &mut splits {
        *s /= sum;
    }
    let start = (n_layer + 1).saturating_sub(n_gpu_layers);
    let active = if shares.is_empty() { 0 } else { n_gpu_layers.min(n_layer + 1) };
    (0..=n_layer)
        .map(|il| {
            if il < start || il - start >= active {
                return None;
            }
            let at = (il - start) as f32 / active as f32;
            Some(splits.partition_point(|&s| s <= at).min(shares.len() - 1))
        })
        .collect()
}

/// The first layer of the shared-KV block of a model whose last `shared` of `n_layer` layers
/// read an earlier layer's cache: the two layers they read, then themselves. `None` when no
/// layer shares.
pub fn shared_kv_block(n_layer: usize, shared: usize) -> Option<usize> {
    let first_shared = n_layer.checked_sub(shared)?;
    (shared > 0 && first_shared >= 2).then(|| first_shared - 2)
}

/// Layers per offload device (a `tensor_split`) that keeps the layers from `block_start` to the
/// last on one device, moving each boundary inside the block to the nearer of its ends; `None`
/// when the split `shares` gives already does, or cannot (some of the block stays on the CPU).
pub fn keep_block_together(
    n_layer: usize,
    n_gpu_layers: usize,
    shares: &[f32],
    block_start: usize,
) -> Option<Vec<f32>> {
    let devices = assign(n_layer, n_gpu_layers, shares);
    let block = devices.get(block_start..n_layer)?;
    if block.iter().any(Option::is_none) || block.windows(2).all(|w| w[0] == w[1]) {
        return None;
    }
    let start = devices.iter().position(Option::is_some)?;
    let (lo, hi) = (block_start - start, n_layer - start);
    // Where each device's layers end, counted from the first offloaded layer.
    let mut ends = vec![0usize; shares.len()];
    for (i, d) in devices[start..].iter().enumerate() {
        let d = d.expect("offloaded layers are contiguous");
        ends[d] = ends[d].max(i + 1);
    }
    for d in 1..ends.len() {
        ends[d] = ends[d].max(ends[d - 1]);
    }
    let last = ends.len() - 1;
    let moved: Vec<usize> = ends
        .iter()
        .enumerate()
        .map(|(d, &e)| {
            if d == last || e <= lo || e >= hi {
                e
            } else if e - lo <= hi - e {
                lo
            } else {
                hi
            }
        })
        .collect();
    Some(moved.iter().enumerate().map(|(d, &e)| (e - if d == 0 { 0 } else { moved[d - 1] }) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Devices as a string: "0" for device 0, "c" for the CPU.
    fn show(devices: &[Option<usize>]) -> String {
        devices.iter().map(|d| d.map_or('c', |d| char::from_digit(d as u32, 10).unwrap())).collect()
    }

    #[test]
    fn assigns_as_llama_cpp_does() {
        // 35 layers and the output over two equal devices: 18 and 18.
        assert_eq!(show(&assign(35, 99, &[1.0, 1.0])), format!("{}{}", "0".repeat(18), "1".repeat(18)));
        // -ngl 10: the last 9 layers and the output, the first 26 on the CPU.
        assert_eq!(show(&assign(35, 10, &[1.0])), format!("{}{}", "c".repeat(26), "0".repeat(10)));
        // -ts 25,47 (the counts 12.5 : 23.5 of 36): layer 12 on the first, 13 on the second.
        let d = assign(35, 99, &[25.0, 47.0]);
        assert_eq!((d[12], d[13]), (Some(0), Some(1)));
        assert_eq!(show(&assign(4, 0, &[1.0])), "ccccc");
    }

    #[test]
    fn the_shared_kv_block_starts_two_layers_before_the_sharing_ones() {
        // Gemma 4 E2B: 35 layers, the last 20 share; they read layers 13 and 14.
        assert_eq!(shared_kv_block(35, 20), Some(13));
        assert_eq!(shared_kv_block(35, 0), None);
        assert_eq!(shared_kv_block(2, 2), None);
        assert_eq!(shared_kv_block(3, 9), None);
    }

    #[test]
    fn moves_a_boundary_inside_the_block_to_its_nearer_end() {
        // E2B over two equal servers: 18 | 18 cuts the block 13..35; 13 | 23 keeps it whole.
        let split = keep_block_together(35, 99, &[1.0, 1.0], 13).unwrap();
        assert_eq!(split, vec![13.0, 23.0]);
        let d = assign(35, 99, &[13.0, 23.0]);
        assert!(d[13..35].iter().all(|&x| x == Some(1)) && d[..13].iter().all(|&x| x == Some(0)), "{}", show(&d));
        // A second server three times the first: its share already holds the block.
        assert_eq!(keep_block_together(35, 99, &[1.0, 3.0], 13), None);
        // Nearer the end: the block goes to the first device, the output alone to the second.
        assert_eq!(keep_block_together(35, 99, &[15.0, 1.0], 13), Some(vec![35.0, 1.0]));
        // Three equal devices, 12 | 12 | 12: the second boundary (24) moves to 13.
        let split = keep_block_together(35, 99, &[1.0, 1.0, 1.0], 13).unwrap();
        assert_eq!(split, vec![12.0, 1.0, 23.0]);
        assert!(assign(35, 99, &split)[13..35].iter().all(|&x| x == Some(2)));
        // Part of the block on the CPU (-ngl 10): nothing to do among the devices.
        assert_eq!(keep_block_together(35, 10, &[1.0, 1.0], 13), None);
        // One device holds everything already.
        assert_eq!(keep_block_together(35, 99, &[1.0], 13), None);
    }
}
