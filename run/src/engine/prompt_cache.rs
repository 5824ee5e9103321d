//! Prompts kept in host memory, as llama-server's `--cache-ram` keeps them: when a slot is given
//! to a job that will not keep what the slot's cache holds, that cache (its tokens and the
//! decoder's saved state) is kept here, and a later job whose prompt shares a longer prefix with
//! an entry than with any slot gets the entry restored into its slot instead of evaluating the
//! prefix again. A request that comes back (a conversation's next turn after other requests took
//! its slot, the same prompt again) costs only its new tokens, and computes its prefix exactly as
//! before, whatever else the batches held in between.

/// The entries, within a byte budget, least recently used dropped first.
pub struct PromptCache<S> {
    budget: usize,
    bytes: usize,
    /// Oldest first.
    entries: Vec<Entry<S>>,
}

struct Entry<S> {
    tokens: Vec<i32>,
    state: S,
    bytes: usize,
}

/// Prefixes shorter than this are not worth a saved state.
pub const MIN_TOKENS: usize = 16;

/// How many tokens `a` and `b` share from the start.
pub(super) fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<S> PromptCache<S> {
    /// A cache of at most `budget` bytes (0: none).
    pub fn new(budget: usize) -> PromptCache<S> {
        PromptCache { budget, bytes: 0, entries: Vec::new() }
    }

    pub fn is_enabled(&self) -> bool {
        self.budget > 0
    }

    /// Bytes held, and entries.
    pub fn size(&self) -> (usize, usize) {
        (self.bytes, self.entries.len())
    }

    /// Keeps `tokens` and their saved `state` of `bytes`; entries it extends are dropped, and
    /// the oldest go while the budget is exceeded. A state larger than the budget is not kept.
    pub fn insert(&mut self, tokens: Vec<i32>, state: S, bytes: usize) {
        if tokens.len() < MIN_TOKENS || bytes > self.budget {
            return;
        }
        let mut freed = 0;
        self.entries.retain(|e| {
            let superseded = e.tokens.len() <= tokens.len() && tokens.starts_with(&e.tokens);
            if superseded {
                freed += e.bytes;
            }
            !superseded
        });
        self.bytes -= freed;
        self.entries.push(Entry { tokens, state, bytes });
        self.bytes += bytes;
        while self.bytes > self.budget {
            let oldest = self.entries.remove(0);
            self.bytes -= oldest.bytes;
        }
    }

    /// Takes out the entry sharing the longest prefix with `prompt`, if that prefix is longer
    /// than `better_than` tokens: its tokens and state.
    pub fn take_best(&mut self, prompt: &[i32], better_than: usize) -> Option<(Vec<i32>, S)> {
        let (i, n) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|&(i, n)| (n, i))?;
        if n <= better_than || n < MIN_TOKENS {
            return None;
        }
        let e = self.entries.remove(i);
        self.bytes -= e.bytes;
        Some((e.tokens, e.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(first: i32, n: usize) -> Vec<i32> {
        (0..n as i32).map(|i| first + i).collect()
    }

    #[test]
    fn keeps_within_its_budget_and_finds_the_longest_prefix() {
        let mut cache = PromptCache::new(100);
        cache.insert(tokens(0, 20), "a", 40);
        cache.insert(tokens(1000, 20), "b", 40);
        assert_eq!(cache.size(), (80, 2));
        // A third over the budget drops the oldest.
        cache.insert(tokens(2000, 20), "c", 40);
        assert_eq!(cache.size(), (80, 2));
        assert!(cache.take_best(&tokens(0, 30), 0).is_none(), "a was dropped");
        // The longest shared prefix, if longer than what the slot keeps.
        let prompt = [tokens(1000, 18), vec![-1; 5]].concat();
        assert!(cache.take_best(&prompt, 18).is_none());
        let (t, s) = cache.take_best(&prompt, 3).unwrap();
        assert_eq!((t.len(), s), (20, "b"));
        assert_eq!(cache.size(), (40, 1), "taken out");
        // Short prefixes, and states over the budget, are not kept.
        cache.insert(tokens(0, 10), "short", 1);
        cache.insert(tokens(3000, 20), "huge", 101);
        assert_eq!(cache.size(), (40, 1));
    }

    #[test]
    fn an_entry_that_extends_another_replaces_it() {
        let mut cache = PromptCache::new(1000);
        cache.insert(tokens(0, 20), 1, 10);
        cache.insert(tokens(0, 30), 2, 15);
        assert_eq!(cache.size(), (15, 1));
        assert_eq!(cache.take_best(&tokens(0, 25), 0).map(|(t, s)| (t.len(), s)), Some((30, 2)));
        assert!(!PromptCache::<()>::new(0).is_enabled());
    }
}
