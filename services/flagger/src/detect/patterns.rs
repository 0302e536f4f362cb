//! Patterns (SPEC section 4): words of one set within a few words of words of another, such as a
//! posture or movement near a place of danger, or several signs of psychosis together, unless a
//! blocking phrase for a known false friend ("hanging baskets", "jump start") is near.

use super::cues::Lexicon;
use super::text::{compile_words, Note, PhraseSet, WordPat};
use lantern_shared::config::PatternConfig;
use lantern_shared::domain::flag::{CueReason, CueSource};
use lantern_shared::domain::Severity;

struct Pattern {
    name: String,
    category: String,
    severity: Severity,
    sets: usize,
    min_sets: usize,
    /// Words apart at most; 0: anywhere in the note.
    within: usize,
    /// How near a blocking phrase cancels the match; `usize::MAX`: anywhere in the note.
    block_reach: usize,
}

/// What a phrase of the set stands for.
#[derive(Clone, Copy)]
enum Role {
    Term { pattern: usize, set: usize },
    Block { pattern: usize },
}

/// The compiled patterns: every term and blocking phrase of every pattern in one phrase set.
pub struct Patterns {
    set: PhraseSet,
    roles: Vec<(Role, usize)>,
    patterns: Vec<Pattern>,
}

/// One phrase found: where it starts and ends (word indices, inclusive).
#[derive(Clone, Copy)]
struct Found {
    set: usize,
    first: usize,
    last: usize,
}

impl Patterns {
    pub fn new(config: &[PatternConfig]) -> Patterns {
        let mut phrases = Vec::new();
        let mut roles = Vec::new();
        let mut patterns = Vec::new();
        for (pi, p) in config.iter().enumerate() {
            for (si, set) in p.near.iter().enumerate() {
                for phrase in set {
                    let words = compile_words(phrase);
                    if !words.is_empty() {
                        roles.push((Role::Term { pattern: pi, set: si }, words.len()));
                        phrases.push(words);
                    }
                }
            }
            for phrase in &p.block {
                let words = compile_words(phrase);
                if !words.is_empty() {
                    roles.push((Role::Block { pattern: pi }, words.len()));
                    phrases.push(words);
                }
            }
            let sets = p.near.len();
            patterns.push(Pattern {
                name: p.label.clone().unwrap_or_else(|| p.name.clone()),
                category: p.category.clone(),
                severity: p.severity,
                sets,
                min_sets: p.min_sets.map(|k| k.clamp(1, sets as i64) as usize).unwrap_or(sets),
                within: p.within.max(0) as usize,
                block_reach: match p.block_within.unwrap_or(p.within) {
                    0 => usize::MAX,
                    b => b.max(0) as usize,
                },
            });
        }
        Patterns { set: PhraseSet::new(phrases), roles, patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Every pattern that matches the note, at most once each. A term that a negation term
    /// precedes (read as the lexicon reads it) does not count towards a pattern.
    pub fn scan(&self, note: &Note<'_>, lexicon: &Lexicon) -> Vec<CueReason> {
        self.scan_spans(note, lexicon).into_iter().map(|(hit, _)| hit).collect()
    }

    /// Every pattern that matches, with the words its match spans (first and last word index).
    pub fn scan_spans(&self, note: &Note<'_>, lexicon: &Lexicon) -> Vec<(CueReason, (usize, usize))> {
        self.scan_found(note, self.set.find(note), lexicon)
    }

    /// Every term and blocking phrase, compiled, in the order [`Patterns::scan_found`] numbers them.
    pub fn phrases(&self) -> impl Iterator<Item = &[WordPat]> {
        (0..self.roles.len()).map(|i| self.set.phrase(i))
    }

    /// Patterns from phrase matches found already, numbered as [`Patterns::phrases`] lists them.
    pub fn scan_found(&self, note: &Note<'_>, found_phrases: Vec<(usize, usize)>, lexicon: &Lexicon) -> Vec<(CueReason, (usize, usize))> {
        if self.patterns.is_empty() {
            return Vec::new();
        }
        // Terms and blocks found, per pattern.
        let mut terms: Vec<Vec<Found>> = vec![Vec::new(); self.patterns.len()];
        let mut blocks: Vec<Vec<Found>> = vec![Vec::new(); self.patterns.len()];
        for (i, at) in found_phrases {
            let (role, len) = self.roles[i];
            let found = |set| Found { set, first: at, last: at + len - 1 };
            match role {
                // A negated term ("not confused") is no evidence for the pattern.
                Role::Term { pattern, set } => {
                    if !lexicon.negated(note, at) {
                        terms[pattern].push(found(set));
                    }
                }
                Role::Block { pattern } => blocks[pattern].push(found(0)),
            }
        }
        let mut out = Vec::new();
        for (pi, p) in self.patterns.iter().enumerate() {
            let found = &mut terms[pi];
            if found.is_empty() {
                continue;
            }
            found.sort_by_key(|f| (f.first, f.set));
            if let Some((first, last, negated)) = self.best_window(p, found, &blocks[pi], note, lexicon) {
                let reason = CueReason {
                    category: p.category.clone(),
                    cue: p.name.clone(),
                    severity: p.severity,
                    negated,
                    snippet: note.snippet(first, last),
                    source: CueSource::Pattern,
                    score: None,
                    terms: Vec::new(),
                };
                out.push((reason, (first, last)));
            }
        }
        out
    }

    /// The first window (word range) holding enough of the pattern's sets with no blocking phrase
    /// near it: an unnegated one if any, else a negated one.
    fn best_window(
        &self,
        p: &Pattern,
        found: &[Found],
        blocks: &[Found],
        note: &Note<'_>,
        lexicon: &Lexicon,
    ) -> Option<(usize, usize, bool)> {
        let mut negated_match = None;
        for (a, anchor) in found.iter().enumerate() {
            if p.within == 0 && a > 0 {
                break; // the whole note is one window
            }
            let reach = if p.within == 0 { usize::MAX } else { anchor.first + p.within };
            let mut have = vec![false; p.sets];
            let (mut first, mut last) = (anchor.first, anchor.last);
            let start = if p.within == 0 { 0 } else { a };
            for f in found[start..].iter().filter(|f| f.first <= reach) {
                if !have[f.set] {
                    have[f.set] = true;
                    first = first.min(f.first);
                    last = last.max(f.last);
                }
            }
            if have.iter().filter(|h| **h).count() < p.min_sets {
                continue;
            }
            // A blocking phrase counts when it is within the pattern's blocking reach of the match.
            let margin = p.block_reach;
            let blocked = blocks.iter().any(|b| b.last.saturating_add(margin) >= first && b.first <= last.saturating_add(margin));
            if blocked {
                continue;
            }
            if !lexicon.negated(note, first) {
                return Some((first, last, false));
            }
            negated_match.get_or_insert((first, last, true));
        }
        negated_match
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lantern_shared::config::MentalHealthConfig;

    fn pattern(name: &str, near: &[&[&str]], within: i64, min_sets: Option<i64>, block: &[&str]) -> PatternConfig {
        PatternConfig {
            name: name.into(),
            category: "at_height".into(),
            severity: Severity::High,
            near: near.iter().map(|s| s.iter().map(|w| w.to_string()).collect()).collect(),
            within,
            min_sets,
            block: block.iter().map(|w| w.to_string()).collect(),
            block_within: None,
            label: None,
        }
    }

    fn lexicon() -> Lexicon {
        Lexicon::new(&MentalHealthConfig {
            negation_terms: vec!["no".into(), "not".into()],
            negation_window: 5,
            incident_types: vec![],
            qualifiers: vec![],
            model: Some(String::new()),
            model_threshold: None,
            model_veto: None,
            false_friends: vec![],
            cues: vec![],
            patterns: vec![],
        })
    }

    fn scan(p: &Patterns, text: &str) -> Vec<CueReason> {
        p.scan(&Note::new(text), &lexicon())
    }

    #[test]
    fn a_word_of_each_set_within_the_window_matches_in_either_order() {
        let p = Patterns::new(&[pattern(
            "posture near a drop",
            &[&["stood", "sat", "climb*"], &["parapet", "ledge", "edge of the roof"]],
            4,
            None,
            &[],
        )]);
        let hit = &scan(&p, "man seen sat on the parapet of the bridge, staring down")[0];
        assert_eq!((hit.cue.as_str(), hit.source, hit.negated), ("posture near a drop", CueSource::Pattern, false));
        assert!(hit.snippet.contains("sat on the parapet"));
        assert_eq!(scan(&p, "on the ledge - climbing slowly").len(), 1, "either order");
        assert_eq!(scan(&p, "climbed onto the edge of the roof").len(), 1, "phrases as terms");
        assert!(scan(&p, "sat in the car for an hour then walked to the ledge").is_empty(), "too far apart");
        assert!(scan(&p, "stood at the bus stop").is_empty(), "one set is not enough");
    }

    #[test]
    fn a_blocking_phrase_near_the_match_cancels_it() {
        let p = Patterns::new(&[pattern(
            "hanging near a neck",
            &[&["hanging"], &["rope", "basket*"]],
            3,
            None,
            &["hanging basket*", "jump start*"],
        )]);
        assert!(scan(&p, "someone has stolen her hanging baskets and the rope").is_empty());
        assert_eq!(scan(&p, "found him hanging from a rope in the garage").len(), 1);
    }

    #[test]
    fn several_signs_anywhere_in_the_note() {
        let p = Patterns::new(&[pattern(
            "signs of psychosis together",
            &[&["voices"], &["not slept", "no sleep"], &["watching him", "cameras"]],
            0,
            Some(2),
            &["scam*"],
        )]);
        assert_eq!(scan(&p, "hears voices. mum says he has not slept for days").len(), 1);
        assert!(scan(&p, "hears voices at night").is_empty(), "one sign is not several");
        assert!(scan(&p, "not slept, says cameras in the flat - it was a scam call").is_empty());
    }

    #[test]
    fn a_negated_term_is_no_evidence() {
        let p = Patterns::new(&[pattern("posture near a drop", &[&["stood"], &["ledge"]], 3, None, &[])]);
        assert!(scan(&p, "not stood on the ledge, inside the flat").is_empty());
        let older = Patterns::new(&[pattern("older and confused", &[&["elderly"], &["confused"]], 0, None, &[])]);
        assert!(scan(&older, "elderly male fallen in the garden - talking - not confused").is_empty());
        assert_eq!(scan(&older, "elderly male in the garden, confused and cold").len(), 1);
    }
}
