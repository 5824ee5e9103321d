//! The thinking segment of an answer: `<think>…</think>` (Qwen3, DeepSeek), Gemma 4's
//! `<|channel>thought…<channel|>` or Mistral's `[THINK]…[/THINK]` (Magistral, Ministral
//! reasoning), removed from streamed text when the user hides reasoning.

/// Markers that open and close a thinking segment, per model family.
const SEGMENTS: &[(&str, &str)] = &[("<think>", "</think>"), ("<|channel>", "<channel|>"), ("[THINK]", "[/THINK]")];

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

/// The thinking segment a prompt ends inside (a template that opens it for the model, as
/// DeepSeek R1's and some Qwen3 ones do), as an index into the markers.
pub fn open_segment(prompt: &str) -> Option<usize> {
    SEGMENTS.iter().enumerate().find_map(|(i, (open, close))| {
        let opened = prompt.rfind(open)?;
        prompt.rfind(close).is_none_or(|closed| closed < opened).then_some(i)
    })
}

impl ReasoningSplitter {
    /// A splitter for an answer whose prompt ended inside thinking segment `segment`
    /// ([`open_segment`]).
    pub fn inside(segment: usize) -> Self {
        ReasoningSplitter { inside: Some(segment), ..Default::default() }
    }

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

/// Ends the thinking segment after `budget` tokens by forcing its closing marker, token by token
/// (`--reasoning-budget`, a request's `reasoning_budget`): a constraint on the answer that masks
/// nothing outside the segment.
pub struct ThinkingBudget {
    budget: usize,
    /// Each segment's closing marker as the model's tokens.
    closers: Vec<Vec<i32>>,
    state: Budget,
    /// The text since the last change of state (to find markers across tokens).
    seen: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Budget {
    Outside,
    Inside { segment: usize, used: usize },
    Closing { segment: usize, next: usize },
}

impl ThinkingBudget {
    /// `closers` gives each segment's closing marker as tokens (in [`SEGMENTS`]' order); the
    /// answer starts inside `open` (the prompt's [`open_segment`]), if any.
    pub fn new(budget: usize, closers: Vec<Vec<i32>>, open: Option<usize>) -> Self {
        let state = match open {
            Some(segment) if budget == 0 => Budget::Closing { segment, next: 0 },
            Some(segment) => Budget::Inside { segment, used: 0 },
            None => Budget::Outside,
        };
        ThinkingBudget { budget, closers, state, seen: String::new() }
    }

    /// The closing markers' texts, in the order [`ThinkingBudget::new`] takes their tokens.
    pub fn closing_markers() -> impl Iterator<Item = &'static str> {
        SEGMENTS.iter().map(|(_, close)| *close)
    }
}

impl crate::engine::Constraint for ThinkingBudget {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        if let Budget::Closing { segment, next } = self.state {
            let Some(&forced) = self.closers[segment].get(next) else { return Ok(()) };
            let forced = forced as usize;
            for (t, l) in logits.iter_mut().enumerate() {
                if t != forced {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self, _token: i32, piece: &[u8]) -> Result<(), String> {
        self.seen.push_str(&String::from_utf8_lossy(piece));
        let next = match self.state {
            Budget::Outside => match SEGMENTS.iter().position(|(open, _)| self.seen.contains(open)) {
                Some(segment) if self.budget == 0 => Budget::Closing { segment, next: 0 },
                Some(segment) => Budget::Inside { segment, used: 0 },
                None => Budget::Outside,
            },
            Budget::Inside { segment, .. } if self.seen.contains(SEGMENTS[segment].1) => Budget::Outside,
            Budget::Inside { segment, used } if used + 1 >= self.budget => Budget::Closing { segment, next: 0 },
            Budget::Inside { segment, used } => Budget::Inside { segment, used: used + 1 },
            Budget::Closing { segment, next } if next + 1 < self.closers[segment].len() => {
                Budget::Closing { segment, next: next + 1 }
            }
            Budget::Closing { .. } => Budget::Outside,
        };
        // Each state looks for its marker in the text since it began.
        if std::mem::discriminant(&next) != std::mem::discriminant(&self.state) {
            self.seen.clear();
        }
        self.state = next;
        Ok(())
    }

    fn is_complete(&mut self) -> bool {
        false
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
    fn a_budget_forces_the_closing_marker() {
        use crate::engine::Constraint;
        // Tokens: 0 "<think>", 1 "a", 2 "</", 3 "think>", 4 "b"; "</think>" is tokens 2, 3.
        let pieces = ["<think>", "a", "</", "think>", "b"];
        let mut budget = ThinkingBudget::new(2, vec![vec![2, 3], vec![], vec![]], None);
        let mut forced = Vec::new();
        for step in 0..6 {
            let mut logits = vec![0.0f32; 5];
            budget.mask(&mut logits).unwrap();
            let allowed: Vec<usize> = (0..5).filter(|&t| logits[t].is_finite()).collect();
            // The "model" thinks ("a") whenever it may, after opening the segment.
            let token = if step == 0 {
                0
            } else if allowed.len() == 1 {
                allowed[0]
            } else {
                1
            };
            if allowed.len() == 1 {
                forced.push(token);
            }
            budget.accept(token as i32, pieces[token].as_bytes()).unwrap();
        }
        // Open, two tokens of thought, then the closer forced; free again after it.
        assert_eq!(forced, vec![2, 3]);
        let mut logits = vec![0.0f32; 5];
        budget.mask(&mut logits).unwrap();
        assert!(logits.iter().all(|l| l.is_finite()));
        // A prompt that opened the segment, and a budget of 0: the closer comes first.
        let mut none = ThinkingBudget::new(0, vec![vec![2, 3], vec![], vec![]], Some(0));
        let mut logits = vec![0.0f32; 5];
        none.mask(&mut logits).unwrap();
        assert_eq!((0..5).filter(|&t| logits[t].is_finite()).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_prompt_may_end_inside_a_segment() {
        assert_eq!(open_segment("<|im_start|>assistant\n<think>\n"), Some(0));
        assert_eq!(open_segment("<think>\n\n</think>\n\n"), None);
        assert_eq!(open_segment("<start_of_turn>model\n<|channel>thought\n"), Some(1));
        assert_eq!(open_segment("[INST]Hi[/INST][THINK]"), Some(2));
        assert_eq!(open_segment("plain"), None);
        let mut s = ReasoningSplitter::inside(0);
        assert_eq!(s.push("plan</think>\n\nHi"), Split { content: "Hi".into(), reasoning: "plan".into() });
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
