//! The thinking segment of an answer: `<think>…</think>` (Qwen3, DeepSeek) or Gemma 4's
//! `<|channel>thought…<channel|>`, removed from streamed text when the user hides reasoning.

/// Markers that open and close a thinking segment, per model family.
const SEGMENTS: &[(&str, &str)] = &[("<think>", "</think>"), ("<|channel>", "<channel|>")];

/// Removes thinking segments from text that arrives in pieces; shows everything when not hiding.
pub struct ThinkingFilter {
    hide: bool,
    /// The segment being hidden (an index into `SEGMENTS`).
    inside: Option<usize>,
    /// Text held back because it may be the start of a marker.
    held: String,
}

impl ThinkingFilter {
    pub fn new(hide: bool) -> Self {
        ThinkingFilter { hide, inside: None, held: String::new() }
    }

    /// The part of `piece` to show; may hold back the start of a marker until it is complete.
    pub fn push(&mut self, piece: &str) -> String {
        if !self.hide {
            return piece.to_string();
        }
        self.held.push_str(piece);
        let mut out = String::new();
        loop {
            let found = match self.inside {
                Some(i) => self.held.find(SEGMENTS[i].1).map(|at| (at, i, SEGMENTS[i].1.len())),
                None => SEGMENTS.iter().enumerate().filter_map(|(i, (open, _))| self.held.find(open).map(|at| (at, i, open.len()))).min(),
            };
            if let Some((at, i, len)) = found {
                if self.inside.is_none() {
                    out.push_str(&self.held[..at]);
                }
                self.held.drain(..at + len);
                self.inside = if self.inside.is_some() { None } else { Some(i) };
                continue;
            }
            let markers: Vec<&str> = match self.inside {
                Some(i) => vec![SEGMENTS[i].1],
                None => SEGMENTS.iter().map(|(open, _)| *open).collect(),
            };
            let keep = markers.iter().map(|m| (1..m.len()).rev().find(|&n| self.held.ends_with(&m[..n])).unwrap_or(0)).max().unwrap_or(0);
            let cut = self.held.len() - keep;
            if self.inside.is_none() {
                out.push_str(&self.held[..cut]);
            }
            self.held.drain(..cut);
            return out.trim_start_matches('\n').to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(pieces: &[&str]) -> String {
        let mut f = ThinkingFilter::new(true);
        pieces.iter().map(|p| f.push(p)).collect()
    }

    #[test]
    fn hides_thinking_across_pieces() {
        assert_eq!(shown(&["<thi", "nk>I should", " say hi</th", "ink>\n\nHello", " there"]), "Hello there");
        assert_eq!(ThinkingFilter::new(false).push("<think>x</think>y"), "<think>x</think>y");
    }

    #[test]
    fn hides_gemma4_thought_channel() {
        assert_eq!(shown(&["<|chan", "nel>thought\nThe user greets", " me.<chan", "nel|>Hello!"]), "Hello!");
        // A marker of the other family inside a segment does not end it.
        assert_eq!(shown(&["<|channel>a</think>b<channel|>c"]), "c");
        assert_eq!(shown(&["x <think>a<|channel>b</think> y"]), "x  y");
    }
}
