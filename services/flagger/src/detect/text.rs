//! Notes as words, and phrases found in them: what the lexicon and the patterns share.
//!
//! A note is folded (lower case, plain quotes and dashes) and split into words; each word knows
//! whether a clause break (`.` `;` `,` `!` `?` `:` a new line, ` - `, or the word "but") comes
//! before it. A phrase is one or more words, each matched whole or, with a trailing `*`, as a
//! prefix; one Aho-Corasick automaton finds every phrase of a set in one pass.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use lantern_shared::domain::text::{fold, fold_char, is_word_char};

/// How many characters of note a reason carries.
pub const SNIPPET_CHARS: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WordPat {
    Exact(String),
    Prefix(String),
}

impl WordPat {
    fn matches(&self, word: &str) -> bool {
        match self {
            WordPat::Exact(w) => word == w,
            WordPat::Prefix(p) => word.starts_with(p.as_str()),
        }
    }
}

/// A phrase as written in config, compiled to its words.
pub fn compile_words(phrase: &str) -> Vec<WordPat> {
    fold(phrase)
        .split(|c: char| !is_word_char(c) && c != '*')
        .filter(|w| !w.is_empty())
        .map(|w| match w.strip_suffix('*') {
            Some(stem) => WordPat::Prefix(stem.to_string()),
            None => WordPat::Exact(w.to_string()),
        })
        .collect()
}

/// The automaton pattern for a phrase: its words up to the first wildcard, space-separated,
/// with a leading space so it starts on a word boundary. The rest is checked word by word.
fn anchor(words: &[WordPat]) -> String {
    let mut s = String::from(" ");
    for (i, w) in words.iter().enumerate() {
        match w {
            WordPat::Exact(x) => {
                s.push_str(x);
                s.push(' ');
                if i + 1 == words.len() {
                    break;
                }
            }
            WordPat::Prefix(p) => {
                s.push_str(p);
                break;
            }
        }
    }
    s
}

/// A note ready for matching: folded, split into words, the words joined by single spaces.
pub struct Note<'a> {
    pub text: &'a str,
    folded: String,
    /// For each byte of `folded`, the byte of `text` it came from (and one past the end).
    origin: Vec<usize>,
    /// Byte range of each word in `folded`.
    spans: Vec<(usize, usize)>,
    break_before: Vec<bool>,
    /// " word word ... word ": phrase anchors can span the gaps between words.
    joined: String,
    /// Where each word starts in `joined`.
    word_at: Vec<usize>,
    /// The note masked, as characters, made on the first snippet and shared by the rest.
    masked: std::cell::OnceCell<Vec<char>>,
}

impl<'a> Note<'a> {
    pub fn new(text: &'a str) -> Note<'a> {
        let mut folded = String::with_capacity(text.len());
        let mut origin = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            let before = folded.len();
            fold_char(c, &mut folded);
            origin.extend(std::iter::repeat_n(i, folded.len() - before));
        }
        origin.push(text.len());
        // About one word in five bytes of text: room for most notes without growing.
        let words = folded.len() / 5 + 4;
        let mut spans = Vec::with_capacity(words);
        let mut break_before = Vec::with_capacity(words);
        let mut start = None;
        let mut last_end = 0usize;
        let mut pending_break = false;
        for (i, c) in folded.char_indices() {
            if is_word_char(c) {
                if start.is_none() {
                    let gap = &folded[last_end..i];
                    let brk =
                        pending_break || gap.contains(['.', ';', ',', '!', '?', ':', '\n']) || gap.contains(" - ") || gap.contains("--");
                    start = Some(i);
                    break_before.push(brk);
                    pending_break = false;
                }
            } else if let Some(s) = start.take() {
                spans.push((s, i));
                last_end = i;
                if &folded[s..i] == "but" {
                    pending_break = true;
                }
            }
        }
        if let Some(s) = start {
            spans.push((s, folded.len()));
        }
        let mut joined = String::with_capacity(folded.len() + 2);
        let mut word_at = Vec::with_capacity(spans.len());
        joined.push(' ');
        for &(s, e) in &spans {
            word_at.push(joined.len());
            joined.push_str(&folded[s..e]);
            joined.push(' ');
        }
        Note { text, folded, origin, spans, break_before, joined, word_at, masked: std::cell::OnceCell::new() }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn word(&self, i: usize) -> &str {
        let (s, e) = self.spans[i];
        &self.folded[s..e]
    }

    /// The byte range of word `i` in the note as written.
    pub fn source_range(&self, i: usize) -> (usize, usize) {
        let (s, e) = self.spans[i];
        (self.origin[s], self.origin.get(e).copied().unwrap_or(self.text.len()))
    }

    /// True when a clause break comes just before word `i`.
    pub fn break_before(&self, i: usize) -> bool {
        self.break_before[i]
    }

    /// True when the phrase `pat` matches at word `at`, within one clause.
    pub fn matches_at(&self, at: usize, pat: &[WordPat]) -> bool {
        at + pat.len() <= self.spans.len()
            && pat.iter().enumerate().all(|(k, w)| (k == 0 || !self.break_before[at + k]) && w.matches(self.word(at + k)))
    }

    /// The snippet around words `first..=last`.
    pub fn snippet(&self, first: usize, last: usize) -> String {
        let start = self.origin[self.spans[first].0];
        let end = self.origin.get(self.spans[last].1).copied().unwrap_or(self.text.len());
        let masked = self.masked.get_or_init(|| lantern_shared::domain::mask::mask(self.text).chars().collect());
        cut(self.text, masked, start, end)
    }
}

/// A set of phrases found together in one pass over a note.
pub struct PhraseSet {
    automaton: Option<AhoCorasick>,
    phrases: Vec<Vec<WordPat>>,
}

impl PhraseSet {
    pub fn new(phrases: Vec<Vec<WordPat>>) -> PhraseSet {
        let anchors: Vec<String> = phrases.iter().map(|p| anchor(p)).collect();
        let automaton = AhoCorasickBuilder::new().match_kind(MatchKind::Standard).build(&anchors).ok();
        PhraseSet { automaton, phrases }
    }

    pub fn phrase(&self, i: usize) -> &[WordPat] {
        &self.phrases[i]
    }

    /// Every (phrase index, first word index) where a phrase matches, in the order found.
    pub fn find(&self, note: &Note<'_>) -> Vec<(usize, usize)> {
        let Some(ac) = &self.automaton else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in ac.find_overlapping_iter(&note.joined) {
            let pi = m.pattern().as_usize();
            // The match starts at the space before a word; find that word.
            let Ok(wi) = note.word_at.binary_search(&(m.start() + 1)) else {
                continue;
            };
            if note.matches_at(wi, &self.phrases[pi]) {
                out.push((pi, wi));
            }
        }
        out
    }
}

/// Up to [`SNIPPET_CHARS`] characters of the original note around the match `[start, end)`
/// (byte offsets), whitespace runs made single spaces. Phone-like runs are masked in the whole
/// note first, so cutting can never leave part of a number at an edge, and in the snippet
/// again, for digits that only read as a number once cut or joined. A match longer than the
/// snippet is cut to its first [`SNIPPET_CHARS`] characters.
pub fn snippet(text: &str, start: usize, end: usize) -> String {
    let masked: Vec<char> = lantern_shared::domain::mask::mask(text).chars().collect();
    cut(text, &masked, start, end)
}

/// [`snippet`] with the note already masked (`masked`: its characters).
fn cut(text: &str, masked: &[char], start: usize, end: usize) -> String {
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
    // Character positions of the match; offsets that are not on a character boundary round down.
    let char_at = |byte: usize| text.char_indices().take_while(|(i, _)| *i < byte).count();
    let (first, last) = (char_at(start), char_at(end));
    let match_chars = last - first;
    let room = SNIPPET_CHARS.saturating_sub(match_chars);
    let from = first.saturating_sub(room / 2);
    let to = (last + (room - (first - from))).min(masked.len());
    let window: String = masked[from.min(masked.len())..to.max(from).min(masked.len())].iter().collect();
    let mut s = window.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > SNIPPET_CHARS {
        s = s.chars().take(SNIPPET_CHARS).collect();
    }
    // Cutting a long run of digits, or joining lines, can leave digits that read as a number
    // where the whole note held none: mask again (masking keeps the length).
    lantern_shared::domain::mask::mask(&s)
}
