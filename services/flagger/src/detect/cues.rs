//! Mental-health cues (SPEC section 4): a lexicon matched on whole words with one
//! Aho-Corasick automaton, negation within a word window that stops at clause breaks.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use lantern_shared::config::{MentalHealthConfig, Severity};
use lantern_shared::flag::{CueReason, CueSource};
use lantern_shared::lexicon::{fold, fold_char, is_word_char};
use std::collections::HashSet;

/// How many characters of note a reason carries.
pub const SNIPPET_CHARS: usize = 160;

#[derive(Debug, Clone, PartialEq, Eq)]
enum WordPat {
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

#[derive(Debug, Clone)]
struct Phrase {
    words: Vec<WordPat>,
    cue: usize,
    text: String,
}

#[derive(Debug, Clone)]
struct Cue {
    category: String,
    severity: Severity,
}

/// One cue found in a text: a mental-health reason of SPEC section 5.
pub type CueHit = CueReason;

/// The compiled lexicon.
pub struct Lexicon {
    automaton: Option<AhoCorasick>,
    /// Automaton pattern `i` belongs to phrase `i`.
    phrases: Vec<Phrase>,
    cues: Vec<Cue>,
    negations: Vec<Vec<WordPat>>,
    negation_window: usize,
    incident_types: HashSet<String>,
    qualifiers: HashSet<String>,
}

fn compile_words(phrase: &str) -> Vec<WordPat> {
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
                if i + 1 == words.len() {
                    s.push(' ');
                    break;
                }
                s.push(' ');
            }
            WordPat::Prefix(p) => {
                s.push_str(p);
                break;
            }
        }
    }
    s
}

/// A note split into words, with where each word starts and whether a clause break precedes it.
struct Words<'a> {
    folded: &'a str,
    /// Byte range of each word in `folded`.
    spans: Vec<(usize, usize)>,
    break_before: Vec<bool>,
}

fn split_words(folded: &str) -> Words<'_> {
    let mut spans = Vec::new();
    let mut break_before = Vec::new();
    let mut start = None;
    let mut last_end = 0usize;
    let mut pending_break = false;
    for (i, c) in folded.char_indices() {
        if is_word_char(c) {
            if start.is_none() {
                let gap = &folded[last_end..i];
                let brk = pending_break || gap.contains(['.', ';', ',', '!', '?', ':', '\n']) || gap.contains(" - ") || gap.contains("--");
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
    Words { folded, spans, break_before }
}

impl<'a> Words<'a> {
    fn word(&self, i: usize) -> &'a str {
        let (s, e) = self.spans[i];
        &self.folded[s..e]
    }
    fn matches_at(&self, at: usize, pat: &[WordPat]) -> bool {
        at + pat.len() <= self.spans.len()
            && pat.iter().enumerate().all(|(k, w)| (k == 0 || !self.break_before[at + k]) && w.matches(self.word(at + k)))
    }
}

impl Lexicon {
    pub fn new(config: &MentalHealthConfig) -> Lexicon {
        let cues: Vec<Cue> = config.cues.iter().map(|c| Cue { category: c.category.clone(), severity: c.severity }).collect();
        let mut phrases = Vec::new();
        let mut seen = HashSet::new();
        for (ci, c) in config.cues.iter().enumerate() {
            for p in &c.phrases {
                let words = compile_words(p);
                if words.is_empty() || !seen.insert((fold(p), ci)) {
                    continue;
                }
                phrases.push(Phrase { words, cue: ci, text: p.clone() });
            }
        }
        let patterns: Vec<String> = phrases.iter().map(|p| anchor(&p.words)).collect();
        let automaton = AhoCorasickBuilder::new().match_kind(MatchKind::Standard).build(&patterns).ok();
        Lexicon {
            automaton,
            phrases,
            cues,
            negations: config.negation_terms.iter().map(|t| compile_words(t)).filter(|w| !w.is_empty()).collect(),
            negation_window: config.negation_window.max(0) as usize,
            incident_types: config.incident_types.iter().map(|s| s.to_uppercase()).collect(),
            qualifiers: config.qualifiers.iter().map(|s| s.to_uppercase()).collect(),
        }
    }

    /// Every cue in a note, at most one hit per phrase (its first, unnegated if any).
    pub fn scan(&self, notes: &str) -> Vec<CueHit> {
        let Some(ac) = &self.automaton else {
            return Vec::new();
        };
        let (folded, origin) = fold_with_origin(notes);
        // Words joined by single spaces, so phrase anchors can span the gaps between words.
        let words = split_words(&folded);
        let mut joined = String::with_capacity(folded.len() + 2);
        let mut word_at = Vec::with_capacity(words.spans.len());
        joined.push(' ');
        for i in 0..words.spans.len() {
            word_at.push(joined.len());
            joined.push_str(words.word(i));
            joined.push(' ');
        }
        // Best hit per phrase that matched (few per note): (phrase index, hit).
        let mut best: Vec<(usize, CueHit)> = Vec::new();
        for m in ac.find_overlapping_iter(&joined) {
            let pi = m.pattern().as_usize();
            let phrase = &self.phrases[pi];
            // The match starts at the space before a word; find that word.
            let Ok(wi) = word_at.binary_search(&(m.start() + 1)) else {
                continue;
            };
            if !words.matches_at(wi, &phrase.words) {
                continue;
            }
            let negated = self.negated(&words, wi);
            let slot = best.iter().position(|(p, _)| *p == pi);
            if slot.is_some_and(|i| !best[i].1.negated || negated) {
                continue;
            }
            let cue = &self.cues[phrase.cue];
            let start = words.spans[wi].0;
            let end = words.spans[wi + phrase.words.len() - 1].1;
            let hit = CueHit {
                category: cue.category.clone(),
                cue: phrase.text.clone(),
                severity: cue.severity,
                negated,
                snippet: snippet(notes, origin[start], origin.get(end).copied().unwrap_or(notes.len())),
                source: CueSource::Lexicon,
                score: None,
                terms: Vec::new(),
            };
            match slot {
                Some(i) => best[i].1 = hit,
                None => best.push((pi, hit)),
            }
        }
        best.sort_by_key(|(p, _)| *p);
        let mut hits: Vec<CueHit> = best.into_iter().map(|(_, h)| h).collect();
        // Most severe first, then as written.
        hits.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.negated.cmp(&b.negated)));
        hits
    }

    /// A cue is negated when a negation term ends within the window before it, in the same clause.
    fn negated(&self, words: &Words<'_>, at: usize) -> bool {
        let from = at.saturating_sub(self.negation_window);
        let mut j = at;
        while j > from {
            if words.break_before[j] {
                return false;
            }
            j -= 1;
            for term in &self.negations {
                if j + term.len() <= at && words.matches_at(j, term) {
                    return true;
                }
            }
        }
        false
    }

    /// Incident codes from config that mark a mental-health call.
    pub fn incident_hits(&self, kind: Option<&str>, qualifiers: &[String]) -> Vec<CueHit> {
        let mut out = Vec::new();
        if let Some(k) = kind.filter(|k| self.incident_types.contains(&k.to_uppercase())) {
            out.push(code_hit("incident_type", k));
        }
        for q in qualifiers.iter().filter(|q| self.qualifiers.contains(&q.to_uppercase())) {
            out.push(code_hit("incident_qualifier", q));
        }
        out
    }

    pub fn phrase_count(&self) -> usize {
        self.phrases.len()
    }
}

fn code_hit(category: &str, code: &str) -> CueHit {
    CueHit {
        category: category.into(),
        cue: code.into(),
        severity: Severity::Medium,
        negated: false,
        snippet: format!("{} {code}", category.replace('_', " ")),
        source: CueSource::Incident,
        score: None,
        terms: Vec::new(),
    }
}

/// Folded text and, for each of its bytes, the byte in the original it came from.
fn fold_with_origin(text: &str) -> (String, Vec<usize>) {
    let mut folded = String::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len() + 1);
    for (i, c) in text.char_indices() {
        let before = folded.len();
        fold_char(c, &mut folded);
        origin.extend(std::iter::repeat_n(i, folded.len() - before));
    }
    origin.push(text.len());
    (folded, origin)
}

/// Up to [`SNIPPET_CHARS`] characters of the original note around the match `[start, end)`
/// (byte offsets), whitespace runs made single spaces. Phone-like runs are masked in the whole
/// note first, so cutting can never leave part of a number at an edge. A match longer than the
/// snippet is cut to its first [`SNIPPET_CHARS`] characters.
pub fn snippet(text: &str, start: usize, end: usize) -> String {
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
    // Character positions of the match; offsets that are not on a character boundary round down.
    let char_at = |byte: usize| text.char_indices().take_while(|(i, _)| *i < byte).count();
    let (first, last) = (char_at(start), char_at(end));
    let masked: Vec<char> = lantern_shared::mask::mask(text).chars().collect();
    let match_chars = last - first;
    let room = SNIPPET_CHARS.saturating_sub(match_chars);
    let from = first.saturating_sub(room / 2);
    let to = (last + (room - (first - from))).min(masked.len());
    let window: String = masked[from.min(masked.len())..to.max(from).min(masked.len())].iter().collect();
    let mut s = window.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > SNIPPET_CHARS {
        s = s.chars().take(SNIPPET_CHARS).collect();
    }
    s
}

#[cfg(test)]
mod tests;
