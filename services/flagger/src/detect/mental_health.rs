//! Mental-health detection: three layers, one decision (SPEC section 4).
//!
//! The lexicon finds phrases, the patterns find words of one set near words of another, and the
//! model scores the whole note. A note is flagged when an unnegated cue or pattern of severity
//! low or above matches, when an incident code from config matches, or when the model's score
//! reaches its threshold. The flag's severity is the highest among the cues, patterns and codes
//! that matched (the triage scale written in config); a note only the model flags takes the
//! severity the model reads. Every reason says its source; a model reason, given when the model is
//! what flags the note, lists the words that pushed the score most. The flag carries the model's
//! score whenever a model ran.

use super::cues::Lexicon;
use super::model::Model;
use super::patterns::Patterns;
use super::text::{compile_words, snippet, Note, PhraseSet, WordPat};
use lantern_shared::config::MentalHealthConfig;
use lantern_shared::domain::flag::{CueReason, CueSource};
use lantern_shared::domain::Severity;

/// How many words from a false friend a cue or pattern is cancelled.
const FALSE_FRIEND_REACH: usize = 2;

/// The compiled layers.
pub struct MentalHealth {
    lexicon: Lexicon,
    patterns: Patterns,
    /// Phrases that make a cue or pattern beside them mean something else ("end it with her
    /// boyfriend", "hanging baskets", "jump start").
    false_friends: Vec<Vec<WordPat>>,
    /// The lexicon's phrases, then the patterns' phrases, then the false friends: one pass over
    /// a note finds them all.
    all: PhraseSet,
    /// Where the patterns' and the false friends' phrases start in `all`.
    pattern_base: usize,
    friend_base: usize,
    model: Option<Model>,
    threshold: f64,
    veto: f64,
}

/// What the layers say about one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assessment {
    /// Every reason, most severe first, negated ones last.
    pub reasons: Vec<CueReason>,
    /// The model's score, when a model ran on notes.
    pub score: Option<f64>,
    /// The flag's severity, or `None` when nothing flags the event.
    pub severity: Option<Severity>,
}

impl MentalHealth {
    pub fn new(config: &MentalHealthConfig) -> MentalHealth {
        let model = match config.load_model() {
            Ok(m) => m.as_ref().map(Model::new),
            Err(e) => {
                // Config validation refuses a model that will not load; this is a file changed since.
                tracing::error!(error = %e, "the mental-health model did not load; detection runs without it");
                None
            }
        };
        let threshold = config.model_threshold.or(model.as_ref().map(|m| m.threshold)).unwrap_or(0.5);
        let veto = config.model_veto.or(model.as_ref().map(|m| m.veto)).unwrap_or(0.0);
        let false_friends: Vec<Vec<WordPat>> = config.false_friends.iter().map(|p| compile_words(p)).filter(|w| !w.is_empty()).collect();
        let lexicon = Lexicon::new(config);
        let patterns = Patterns::new(&config.patterns);
        let mut phrases: Vec<Vec<WordPat>> = lexicon.phrases().map(<[WordPat]>::to_vec).collect();
        let pattern_base = phrases.len();
        phrases.extend(patterns.phrases().map(<[WordPat]>::to_vec));
        let friend_base = phrases.len();
        phrases.extend(false_friends.iter().cloned());
        let all = PhraseSet::new(phrases);
        MentalHealth { lexicon, patterns, false_friends, all, pattern_base, friend_base, model, threshold, veto }
    }

    pub fn lexicon(&self) -> &Lexicon {
        &self.lexicon
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Runs every layer on an event's notes and incident codes.
    pub fn assess(&self, notes: Option<&str>, incident_type: Option<&str>, qualifiers: &[String]) -> Assessment {
        let mut reasons = Vec::new();
        let mut score = None;
        let mut model_reason = None;
        if let Some(text) = notes {
            let note = Note::new(text);
            let (mut cues, mut terms, mut friends) = (Vec::new(), Vec::new(), Vec::new());
            for (i, at) in self.all.find(&note) {
                if i < self.pattern_base {
                    cues.push((i, at));
                } else if i < self.friend_base {
                    terms.push((i - self.pattern_base, at));
                } else {
                    friends.push((at, at + self.false_friends[i - self.friend_base].len() - 1));
                }
            }
            let near_friend = |&(first, last): &(usize, usize)| {
                friends.iter().any(|&(a, b)| b + FALSE_FRIEND_REACH >= first && a <= last + FALSE_FRIEND_REACH)
            };
            let mut found = self.lexicon.scan_found(&note, cues);
            found.extend(self.patterns.scan_found(&note, terms, &self.lexicon));
            reasons = found.into_iter().filter(|(_, span)| !near_friend(span)).map(|(hit, _)| hit).collect();
            if let Some(model) = &self.model {
                // The model explains itself (its words, category and severity) only when it is
                // what flags the note: a note a cue or pattern flags is explained by them already.
                let named = reasons.iter().any(|h| !h.negated && h.severity > Severity::Info);
                let s = model.assess(&note, if named { f64::INFINITY } else { self.threshold });
                score = Some(s.score);
                if !named && s.score >= self.threshold {
                    let around = match s.at {
                        Some((a, b)) => snippet(text, a, b),
                        None => snippet(text, 0, 0),
                    };
                    model_reason = Some(CueReason {
                        category: s.category,
                        cue: "model".into(),
                        severity: s.severity,
                        negated: false,
                        snippet: around,
                        source: CueSource::Model,
                        score: Some(s.score),
                        terms: s.terms,
                    });
                }
            }
        }
        // Cues and patterns stand unless the model reads the note as plainly about something else.
        let vetoed = score.is_some_and(|s| s < self.veto);
        let mut named =
            if vetoed { None } else { reasons.iter().filter(|h| !h.negated && h.severity > Severity::Info).map(|h| h.severity).max() };
        let codes = self.lexicon.incident_hits(incident_type, qualifiers);
        named = named.max(codes.iter().map(|h| h.severity).max());
        reasons.extend(codes);
        let severity = named.or(model_reason.as_ref().map(|m| m.severity));
        reasons.extend(model_reason);
        reasons.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.negated.cmp(&b.negated)));
        Assessment { reasons, score, severity }
    }

    /// The decision alone, for a note: what the corpus tests and benchmarks measure.
    pub fn flags(&self, notes: &str) -> bool {
        self.assess(Some(notes), None, &[]).severity.is_some()
    }
}

/// Regression floors on the first sealed sets (README, "Mental-health detection"). Their blind
/// use measured the first version (precision 0.938, recall 0.967, 9.7% false alarms); these
/// floors hold the retuned version at what it reaches on them now (0.952, 0.958, 2.4%), which is
/// no longer a blind figure.
#[cfg(test)]
const SEALED_PRECISION_FLOOR: f64 = 0.95;
#[cfg(test)]
const SEALED_RECALL_FLOOR: f64 = 0.95;
#[cfg(test)]
const ORDINARY_FALSE_ALARM_CEILING: f64 = 0.025;

/// Floors on the second sealed sets, whose one blind use measured the retuned version: precision
/// 0.976, recall 0.971, 1.73% false alarms on ordinary notes; rounded down (up for false alarms).
#[cfg(test)]
const SEALED2_PRECISION_FLOOR: f64 = 0.97;
#[cfg(test)]
const SEALED2_RECALL_FLOOR: f64 = 0.97;
#[cfg(test)]
const SEALED2_FALSE_ALARM_CEILING: f64 = 0.02;

#[cfg(test)]
mod tests;
