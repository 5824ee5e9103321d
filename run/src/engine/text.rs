//! A generation's text as it may be handed out: whole UTF-8 that cannot be the start of a stop
//! string; and the rule for stop strings.

/// The most stop strings one generation takes.
pub const MAX_STOP: usize = 16;

/// The one rule for stop strings, on the command line and in requests: at most [`MAX_STOP`],
/// none empty (an empty one would stop before the first token).
pub fn check_stop_strings(stop: &[String]) -> Result<(), String> {
    if stop.len() > MAX_STOP {
        return Err(format!("{} stop strings; at most {MAX_STOP}", stop.len()));
    }
    if stop.iter().any(String::is_empty) {
        return Err("a stop string is empty".into());
    }
    Ok(())
}

/// Bytes to text: holds back an incomplete UTF-8 sequence, and any tail that could still grow
/// into a stop string.
pub struct TextStream {
    stop: Vec<String>,
    pending: Vec<u8>,
    text: String,
    emitted: usize,
}

impl TextStream {
    pub fn new(stop: &[String]) -> Self {
        TextStream { stop: stop.to_vec(), pending: Vec::new(), text: String::new(), emitted: 0 }
    }

    /// Adds a token's bytes; emits what is settled. Returns true when a stop string appeared.
    pub fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(&str)) -> bool {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Invalid (not merely incomplete) bytes: replace them rather than wait forever.
                let lossy = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                self.text.push_str(&lossy);
                0
            }
            Err(e) => e.valid_up_to(),
        };
        let settled: Vec<u8> = self.pending.drain(..valid).collect();
        self.text.push_str(std::str::from_utf8(&settled).expect("checked"));
        // A stop string can only start in the held-back tail: anything that could begin one is held.
        let tail = &self.text[self.emitted..];
        if let Some(at) = self.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| tail.find(s.as_str())).min() {
            if at > 0 {
                emit(&tail[..at]);
            }
            self.emitted += at;
            self.text.truncate(self.emitted);
            return true;
        }
        let hold = self.stop.iter().map(|s| longest_suffix_prefix(&self.text, s)).max().unwrap_or(0);
        let upto = self.text.len() - hold;
        if upto > self.emitted {
            emit(&self.text[self.emitted..upto]);
            self.emitted = upto;
        }
        false
    }

    /// Emits what was held back (unless a stop string ended the text) and returns the whole text.
    /// An incomplete UTF-8 sequence at the end (a character cut by the token limit) is dropped,
    /// never turned into U+FFFD: only invalid bytes become that, in [`TextStream::push`].
    pub fn finish(self, stopped: bool, emit: &mut impl FnMut(&str)) -> String {
        if !stopped && self.text.len() > self.emitted {
            emit(&self.text[self.emitted..]);
        }
        self.text
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, on a char boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && stop.is_char_boundary(n) && text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], stop: &[&str]) -> (Vec<String>, String, bool) {
        let stop: Vec<String> = stop.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let mut s = TextStream::new(&stop);
        let mut stopped = false;
        for p in pieces {
            if s.push(p, &mut |t| out.push(t.to_string())) {
                stopped = true;
                break;
            }
        }
        let text = s.finish(stopped, &mut |t| out.push(t.to_string()));
        (out, text, stopped)
    }

    #[test]
    fn never_emits_half_a_character() {
        let euro = "€".as_bytes(); // three bytes
        let (out, text, _) = run(&[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"], &[]);
        assert_eq!(out, vec!["a", "€", "b"]);
        assert_eq!(text, "a€b");
    }

    #[test]
    fn a_character_cut_at_the_end_is_dropped_not_replaced() {
        let star = "🌟".as_bytes(); // four bytes
        let (out, text, _) = run(&[b"a", star, &star[..2]], &[]);
        assert_eq!(out.concat(), "a🌟");
        assert_eq!(text, "a🌟");
        // Invalid bytes in the middle still become U+FFFD rather than stall the stream.
        let (_, text, _) = run(&[b"a", &[0xff], b"b"], &[]);
        assert_eq!(text, "a\u{fffd}b");
    }

    #[test]
    fn stop_strings_across_tokens_are_cut_and_not_shown() {
        let (out, text, stopped) = run(&[b"Hello", b" wor", b"ld", b"!", b"more"], &["world!"]);
        assert!(stopped);
        assert_eq!(text, "Hello ");
        assert_eq!(out.concat(), "Hello ");
        let (out, text, stopped) = run(&[b"Hello", b" wo", b"rk"], &["world"]);
        assert!(!stopped);
        assert_eq!(text, "Hello work");
        assert_eq!(out.concat(), "Hello work");
    }
}
