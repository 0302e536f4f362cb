//! Mental-health cues (SPEC section 4): a lexicon matched on whole words with one
//! Aho-Corasick automaton, negation within a word window that stops at clause breaks.

use super::text::{compile_words, Note, PhraseSet, WordPat};
pub use super::text::{snippet, SNIPPET_CHARS};
use lantern_shared::config::MentalHealthConfig;
use lantern_shared::domain::flag::{CueReason, CueSource};
use lantern_shared::domain::text::fold;
use lantern_shared::domain::Severity;
use std::collections::HashSet;

#[derive(Debug, Clone)]
struct Phrase {
    cue: usize,
    text: String,
    /// A blocking phrase of the cue group, not a cue.
    block: bool,
}

#[derive(Debug, Clone)]
struct Cue {
    category: String,
    severity: Severity,
    /// How near a blocking phrase cancels a cue; `usize::MAX`: anywhere in the note.
    block_reach: usize,
}

/// One cue found in a text: a mental-health reason of SPEC section 5.
pub type CueHit = CueReason;

/// The compiled lexicon.
pub struct Lexicon {
    /// Phrase `i` of the set is `phrases[i]`.
    set: PhraseSet,
    phrases: Vec<Phrase>,
    cues: Vec<Cue>,
    negations: Vec<Vec<WordPat>>,
    /// The first word of every negation term that starts with a whole word, so most words are
    /// ruled out with one lookup; terms starting with a wildcard are checked one by one.
    negation_starts: std::collections::HashSet<String>,
    wildcard_negations: bool,
    negation_window: usize,
    incident_types: HashSet<String>,
    qualifiers: HashSet<String>,
}

impl Lexicon {
    pub fn new(config: &MentalHealthConfig) -> Lexicon {
        let cues: Vec<Cue> = config
            .cues
            .iter()
            .map(|c| Cue {
                category: c.category.clone(),
                severity: c.severity,
                block_reach: match c.block_within.unwrap_or(0) {
                    0 => usize::MAX,
                    b => b.max(0) as usize,
                },
            })
            .collect();
        let mut phrases = Vec::new();
        let mut compiled = Vec::new();
        let mut seen = HashSet::new();
        for (ci, c) in config.cues.iter().enumerate() {
            for p in &c.phrases {
                let words = compile_words(p);
                if words.is_empty() || !seen.insert((fold(p), ci)) {
                    continue;
                }
                compiled.push(words);
                phrases.push(Phrase { cue: ci, text: p.clone(), block: false });
            }
            for p in &c.block {
                let words = compile_words(p);
                if !words.is_empty() {
                    compiled.push(words);
                    phrases.push(Phrase { cue: ci, text: p.clone(), block: true });
                }
            }
        }
        let negations: Vec<Vec<WordPat>> = config.negation_terms.iter().map(|t| compile_words(t)).filter(|w| !w.is_empty()).collect();
        Lexicon {
            set: PhraseSet::new(compiled),
            phrases,
            cues,
            negation_starts: negations
                .iter()
                .filter_map(|t| match t.first() {
                    Some(WordPat::Exact(w)) => Some(w.clone()),
                    _ => None,
                })
                .collect(),
            wildcard_negations: negations.iter().any(|t| matches!(t.first(), Some(WordPat::Prefix(_)))),
            negations,
            negation_window: config.negation_window.max(0) as usize,
            incident_types: config.incident_types.iter().map(|s| s.to_uppercase()).collect(),
            qualifiers: config.qualifiers.iter().map(|s| s.to_uppercase()).collect(),
        }
    }

    /// Every cue in a note, at most one hit per phrase (its first, unnegated if any).
    pub fn scan(&self, notes: &str) -> Vec<CueHit> {
        self.scan_note(&Note::new(notes))
    }

    /// [`Lexicon::scan`] on a note already split into words.
    pub fn scan_note(&self, note: &Note<'_>) -> Vec<CueHit> {
        self.scan_spans(note).into_iter().map(|(hit, _)| hit).collect()
    }

    /// Every cue with the words it matched (first and last word index).
    pub fn scan_spans(&self, note: &Note<'_>) -> Vec<(CueHit, (usize, usize))> {
        self.scan_found(note, self.set.find(note))
    }

    /// The lexicon's phrases, compiled, in the order [`Lexicon::scan_found`] numbers them.
    pub fn phrases(&self) -> impl Iterator<Item = &[WordPat]> {
        (0..self.phrases.len()).map(|i| self.set.phrase(i))
    }

    /// Cues from phrase matches found already: `(phrase index, first word)` pairs, numbered as
    /// [`Lexicon::phrases`] lists them (so one pass over a note can serve several phrase sets).
    pub fn scan_found(&self, note: &Note<'_>, found: Vec<(usize, usize)>) -> Vec<(CueHit, (usize, usize))> {
        // Blocking phrases found, by cue group: (group, first word, last word).
        let blocks: Vec<(usize, usize, usize)> = found
            .iter()
            .filter(|(pi, _)| self.phrases[*pi].block)
            .map(|&(pi, wi)| (self.phrases[pi].cue, wi, wi + self.set.phrase(pi).len() - 1))
            .collect();
        // Best hit per phrase that matched (few per note): (phrase index, hit, span).
        let mut best: Vec<(usize, CueHit, (usize, usize))> = Vec::new();
        for (pi, wi) in found {
            if self.phrases[pi].block {
                continue;
            }
            let phrase = &self.phrases[pi];
            let reach = self.cues[phrase.cue].block_reach;
            let last = wi + self.set.phrase(pi).len() - 1;
            if blocks.iter().any(|&(c, a, b)| c == phrase.cue && b.saturating_add(reach) >= wi && a <= last.saturating_add(reach)) {
                continue;
            }
            let negated = self.negated(note, wi);
            let slot = best.iter().position(|(p, _, _)| *p == pi);
            if slot.is_some_and(|i| !best[i].1.negated || negated) {
                continue;
            }
            let phrase = &self.phrases[pi];
            let cue = &self.cues[phrase.cue];
            let span = (wi, wi + self.set.phrase(pi).len() - 1);
            let hit = CueHit {
                category: cue.category.clone(),
                cue: phrase.text.clone(),
                severity: cue.severity,
                negated,
                snippet: note.snippet(span.0, span.1),
                source: CueSource::Lexicon,
                score: None,
                terms: Vec::new(),
            };
            match slot {
                Some(i) => best[i] = (pi, hit, span),
                None => best.push((pi, hit, span)),
            }
        }
        best.sort_by_key(|(p, _, _)| *p);
        let mut hits: Vec<(CueHit, (usize, usize))> = best.into_iter().map(|(_, h, s)| (h, s)).collect();
        // Most severe first, then as written.
        hits.sort_by(|a, b| b.0.severity.cmp(&a.0.severity).then(a.0.negated.cmp(&b.0.negated)));
        hits
    }

    /// A cue is negated when a negation term ends within the window before it, in the same clause.
    pub fn negated(&self, note: &Note<'_>, at: usize) -> bool {
        let from = at.saturating_sub(self.negation_window);
        let mut j = at;
        while j > from {
            if note.break_before(j) {
                return false;
            }
            j -= 1;
            if !self.wildcard_negations && !self.negation_starts.contains(note.word(j)) {
                continue;
            }
            for term in &self.negations {
                if j + term.len() <= at && note.matches_at(j, term) {
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
        self.phrases.iter().filter(|p| !p.block).count()
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

#[cfg(test)]
mod tests;
