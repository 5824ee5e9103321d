//! The thinking segment of an answer: `<think>…</think>` (Qwen3, DeepSeek) or Gemma 4's
//! `<|channel>thought…<channel|>`, removed from streamed text when the user hides reasoning.

/// Markers that open and close a thinking segment, per model family.
const SEGMENTS: &[(&str, &str)] = &[("<think>", "</think>"), ("<|channel>", "<channel|>")];

/// What a piece of an answer holds: the answer's text, and the thinking (markers removed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub content: String,
    pub reasoning: String,
}

/// Splits text that arrives in pieces into the thinking segments and the rest.
#[derive(Default)]
pub struct ReasoningSplitter {
    /// The segment being read (an index into `SEGMENTS`).
    inside: Option<usize>,
    /// Text held back because it may be the start of a marker.
    held: String,
    /// A segment just closed: newlines that follow it are the segment's, not the answer's.
    after_segment: bool,
}

impl ReasoningSplitter {
    /// The settled part of `piece` (with what was held back), split; the start of a marker is
    /// held until it is complete.
    pub fn push(&mut self, piece: &str) -> Split {
        self.held.push_str(piece);
        let mut out = Split::default();
        loop {
            let found = match self.inside {
                Some(i) => self.held.find(SEGMENTS[i].1).map(|at| (at, i, SEGMENTS[i].1.len())),
                None => SEGMENTS
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (open, _))| self.held.find(open).map(|at| (at, i, open.len())))
                    .min(),
            };
            if let Some((at, i, len)) = found {
                let text = self.held[..at].to_string();
                self.emit(&text, &mut out);
                self.held.drain(..at + len);
                self.after_segment = self.inside.is_some();
                self.inside = if self.inside.is_some() { None } else { Some(i) };
                continue;
            }
            let markers: Vec<&str> = match self.inside {
                Some(i) => vec![SEGMENTS[i].1],
                None => SEGMENTS.iter().map(|(open, _)| *open).collect(),
            };
            let keep = markers
                .iter()
                .map(|m| (1..m.len()).rev().find(|&n| self.held.ends_with(&m[..n])).unwrap_or(0))
                .max()
                .unwrap_or(0);
            let cut = self.held.len() - keep;
            let text = self.held[..cut].to_string();
            self.emit(&text, &mut out);
            self.held.drain(..cut);
            return out;
        }
    }

    /// What is still held back at the end of the answer.
    pub fn finish(&mut self) -> Split {
        let text = std::mem::take(&mut self.held);
        let mut out = Split::default();
        self.emit(&text, &mut out);
        out
    }

    fn emit(&mut self, text: &str, out: &mut Split) {
        match self.inside {
            Some(_) => out.reasoning.push_str(text),
            None => {
                let text = if self.after_segment { text.trim_start_matches('\n') } else { text };
                if !text.is_empty() {
                    self.after_segment = false;
                }
                out.content.push_str(text);
            }
        }
    }
}

/// Removes thinking segments from text that arrives in pieces; shows everything when not hiding.
pub struct ThinkingFilter {
    hide: bool,
    splitter: ReasoningSplitter,
}

impl ThinkingFilter {
    pub fn new(hide: bool) -> Self {
        ThinkingFilter { hide, splitter: ReasoningSplitter::default() }
    }

    /// The part of `piece` to show; may hold back the start of a marker until it is complete.
    pub fn push(&mut self, piece: &str) -> String {
        if !self.hide {
            return piece.to_string();
        }
        self.splitter.push(piece).content
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

    #[test]
    fn splits_thinking_from_the_answer() {
        let mut s = ReasoningSplitter::default();
        let mut all = Split::default();
        for piece in ["<thi", "nk>Plan: gre", "et.</th", "ink>\n\nHel", "lo <thin"] {
            let p = s.push(piece);
            all.content += &p.content;
            all.reasoning += &p.reasoning;
        }
        let tail = s.finish();
        assert_eq!(
            (all.content + &tail.content, all.reasoning + &tail.reasoning),
            ("Hello <thin".to_string(), "Plan: greet.".to_string())
        );
        let mut s = ReasoningSplitter::default();
        assert_eq!(
            s.push("<|channel>thought\nhmm<channel|>Hi"),
            Split { content: "Hi".into(), reasoning: "thought\nhmm".into() }
        );
    }
}
