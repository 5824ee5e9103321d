//! The token list of a slot file, as llama-server writes it beside the cache (llama.cpp's
//! sequence state file holds both): a marker (-1, `LLAMA_TOKEN_NULL`), the version (1), the
//! number of tokens, the tokens, then the number of media chunks (0: strata has none). Older
//! llama-server versions wrote the plain token list, which is read too.

/// The first word of a versioned token list.
const MARKER: i32 = -1;
const VERSION: i32 = 1;
/// Words around the tokens: marker, version, count, then the media chunks' count.
pub const OVERHEAD: usize = 4;

/// The words a slot file holds for `tokens`.
pub fn pack(tokens: &[i32]) -> Vec<i32> {
    let mut words = Vec::with_capacity(tokens.len() + OVERHEAD);
    words.extend([MARKER, VERSION, tokens.len() as i32]);
    words.extend_from_slice(tokens);
    words.push(0);
    words
}

/// The tokens of a slot file's words; an error says what is wrong with them.
pub fn unpack(words: &[i32]) -> Result<Vec<i32>, String> {
    if words.first() != Some(&MARKER) {
        return Ok(words.to_vec()); // the plain token list of older versions
    }
    let [_, version, count, rest @ ..] = words else { return Err("its token list is cut short".into()) };
    if *version != VERSION {
        return Err(format!("its token list has version {version}; strata reads version {VERSION}"));
    }
    let count = usize::try_from(*count).map_err(|_| format!("its token list claims {count} tokens"))?;
    if rest.len() < count + 1 {
        return Err(format!("its token list claims {count} tokens but holds {}", rest.len().saturating_sub(1)));
    }
    match &rest[count..] {
        [0] => Ok(rest[..count].to_vec()),
        [n, ..] if *n > 0 => Err(format!("it holds {n} images or audio clips, which strata cannot restore")),
        _ => Err("its token list has data past its end".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists_as_llama_server_writes_them() {
        assert_eq!(pack(&[5, 6, 7]), [-1, 1, 3, 5, 6, 7, 0]);
        assert_eq!(unpack(&pack(&[5, 6, 7])).unwrap(), [5, 6, 7]);
        assert_eq!(unpack(&pack(&[])).unwrap(), Vec::<i32>::new());
        assert_eq!(unpack(&[1, 2, 3]).unwrap(), [1, 2, 3], "the older plain list");
        assert!(unpack(&[-1, 2, 0, 0]).unwrap_err().contains("version 2"));
        assert!(unpack(&[-1, 1, 5, 1, 2, 0]).unwrap_err().contains("claims 5 tokens"));
        assert!(unpack(&[-1, 1, 1, 9, 1]).unwrap_err().contains("images or audio"));
        assert!(unpack(&[-1, 1, 1, 9, 0, 4]).unwrap_err().contains("past its end"));
        assert!(unpack(&[-1, 1]).unwrap_err().contains("cut short"));
    }
}
