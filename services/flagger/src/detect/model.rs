//! The mental-health model (SPEC section 4): logistic regressions over a note's words, word pairs
//! and character 3-5-grams, trained offline (`tools/mh/train.py`) and loaded from the file
//! `mental_health.model` names. Scoring is pure Rust with no I/O.
//!
//! The features follow `tools/mh/features.py` exactly: lower case, plain quotes, apostrophes
//! dropped, words split on anything not a letter or digit, ASCII digits made 0, words cut to 30
//! characters; each feature counted, and counts divided by the square root of the number of
//! features the note produced. Each known word's own features (the word and its character
//! n-grams) are summed once at load, so a note costs about one lookup per word and per word pair.

use super::text::Note;
use lantern_shared::config::model_file::{ModelFile, Multi};
use lantern_shared::domain::Severity;
use rustc_hash::FxHashMap;

const MAX_WORD_CHARS: usize = 30;

/// Words too common to explain anything to a nurse; never shown as a reason's terms.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being", "but", "by", "can",
    "could", "did", "do", "does", "for", "from", "get", "got", "had", "has", "have", "he", "her", "here", "hers", "him", "his", "how", "i",
    "if", "in", "into", "is", "it", "its", "just", "me", "my", "no", "not", "now", "of", "off", "on", "one", "or", "our", "out", "over",
    "per", "re", "rp", "said", "say", "says", "she", "so", "some", "than", "that", "the", "their", "them", "then", "there", "they", "this",
    "to", "too", "up", "upd", "us", "very", "was", "we", "were", "what", "when", "where", "which", "who", "will", "with", "would", "you",
    "your",
];

fn telling(term: &str) -> bool {
    term.split(' ').any(|w| w.chars().count() >= 3 && !STOP_WORDS.contains(&w))
}
const NO_ID: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Word {
    id: u32,
    /// The detector weight of the word and of its character n-grams together.
    detector: f32,
    /// How many features the word produces on its own (itself and its character n-grams).
    features: u32,
}

/// The category and severity classifiers, over words and word pairs, in one table: each row
/// holds the category classes' weights, then the severity classes'.
struct Heads {
    categories: Vec<String>,
    severities: Vec<String>,
    bias: Vec<f32>,
    words: FxHashMap<u32, Vec<f32>>,
    pairs: FxHashMap<(u32, u32), Vec<f32>>,
}

impl Heads {
    fn new(category: &Multi, severity: &Multi, ids: &FxHashMap<Box<str>, Word>) -> Heads {
        let (nc, ns) = (category.classes.len(), severity.classes.len());
        let mut words: FxHashMap<u32, Vec<f32>> = FxHashMap::default();
        let mut pairs: FxHashMap<(u32, u32), Vec<f32>> = FxHashMap::default();
        for (offset, m) in [(0, category), (nc, severity)] {
            for (k, w) in &m.weights {
                let row = if let Some(word) = k.strip_prefix("w:") {
                    ids.get(word).map(|info| words.entry(info.id).or_insert_with(|| vec![0.0; nc + ns]))
                } else if let Some((a, b)) = k.strip_prefix("b:").and_then(|p| p.split_once(' ')) {
                    match (ids.get(a), ids.get(b)) {
                        (Some(a), Some(b)) => Some(pairs.entry((a.id, b.id)).or_insert_with(|| vec![0.0; nc + ns])),
                        _ => None,
                    }
                } else {
                    None
                };
                if let Some(row) = row {
                    for (i, x) in w.iter().enumerate() {
                        row[offset + i] = *x as f32;
                    }
                }
            }
        }
        let bias = category.bias.iter().chain(&severity.bias).map(|b| *b as f32).collect();
        Heads { categories: category.classes.clone(), severities: severity.classes.clone(), bias, words, pairs }
    }

    /// The most likely category and severity for these word ids.
    fn classify(&self, ids: &[u32]) -> (&str, &str) {
        let n = ids.len() + ids.len().saturating_sub(1);
        let scale = if n == 0 { 0.0 } else { 1.0 / (n as f32).sqrt() };
        let mut z = self.bias.clone();
        let mut add = |row: &Vec<f32>| {
            for (zi, w) in z.iter_mut().zip(row) {
                *zi += w * scale;
            }
        };
        for id in ids {
            if let Some(row) = self.words.get(id) {
                add(row);
            }
        }
        for pair in ids.windows(2) {
            if let Some(row) = self.pairs.get(&(pair[0], pair[1])) {
                add(row);
            }
        }
        let argmax = |z: &[f32]| z.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        let (c, s) = z.split_at(self.categories.len());
        (&self.categories[argmax(c)], &self.severities[argmax(s)])
    }
}

/// A loaded model.
pub struct Model {
    pub threshold: f64,
    pub veto: f64,
    bias: f64,
    words: FxHashMap<Box<str>, Word>,
    grams: FxHashMap<Box<str>, f32>,
    pairs: FxHashMap<(u32, u32), f32>,
    heads: Heads,
}

/// What the model says about a note.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    /// The words and word pairs that pushed the score up most, strongest first (when flagged).
    pub terms: Vec<String>,
    /// Where the strongest term is in the note (byte range), for the snippet.
    pub at: Option<(usize, usize)>,
    pub category: String,
    pub severity: Severity,
}

/// A note as the model reads it: the note's words (folded as for cues: lower case, plain quotes)
/// with apostrophes dropped, ASCII digits made 0 and each cut to 30 characters.
struct Tokens {
    words: String,
    /// Per model word: its byte range in `words`, and which word of the note it came from.
    spans: Vec<((usize, usize), usize)>,
}

impl Tokens {
    fn new(note: &Note<'_>) -> Tokens {
        let mut words = String::with_capacity(note.text.len());
        let mut spans = Vec::with_capacity(note.len());
        for i in 0..note.len() {
            let start = words.len();
            let mut chars = 0usize;
            for c in note.word(i).chars() {
                if c == '\'' || chars == MAX_WORD_CHARS {
                    continue;
                }
                words.push(if c.is_ascii_digit() { '0' } else { c });
                chars += 1;
            }
            if words.len() > start {
                spans.push(((start, words.len()), i));
            }
        }
        Tokens { words, spans }
    }

    fn word(&self, i: usize) -> &str {
        let (s, e) = self.spans[i].0;
        &self.words[s..e]
    }
}

/// The character n-grams of " word " that the model reads.
fn for_each_gram(word: &str, mut f: impl FnMut(&str)) {
    let padded = format!(" {word} ");
    let bounds: Vec<usize> = padded.char_indices().map(|(i, _)| i).chain(std::iter::once(padded.len())).collect();
    let chars = bounds.len() - 1;
    for n in 3..=5 {
        for i in 0..(chars + 1).saturating_sub(n) {
            f(&padded[bounds[i]..bounds[i + n]]);
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    pub fn new(file: &ModelFile) -> Model {
        let mut grams: FxHashMap<Box<str>, f32> = FxHashMap::default();
        let mut unigram: FxHashMap<&str, f32> = FxHashMap::default();
        let mut raw_pairs = Vec::new();
        for (k, w) in &file.detector.weights {
            if let Some(g) = k.strip_prefix("c:") {
                grams.insert(g.into(), *w as f32);
            } else if let Some(word) = k.strip_prefix("w:") {
                unigram.insert(word, *w as f32);
            } else if let Some(pair) = k.strip_prefix("b:") {
                raw_pairs.push((pair, *w as f32));
            }
        }
        // Every word any part of the model names gets an id and its own features summed.
        let mut names: Vec<&str> = unigram.keys().copied().collect();
        for (pair, _) in &raw_pairs {
            names.extend(pair.split_once(' ').map(|(a, b)| [a, b]).into_iter().flatten());
        }
        for m in [&file.category, &file.severity] {
            for k in m.weights.keys() {
                if let Some(w) = k.strip_prefix("w:") {
                    names.push(w);
                } else if let Some((a, b)) = k.strip_prefix("b:").and_then(|p| p.split_once(' ')) {
                    names.extend([a, b]);
                }
            }
        }
        let mut words: FxHashMap<Box<str>, Word> = FxHashMap::default();
        for name in names {
            if words.contains_key(name) {
                continue;
            }
            let (detector, features) = Model::own(&grams, unigram.get(name).copied().unwrap_or(0.0), name);
            let id = words.len() as u32;
            words.insert(name.into(), Word { id, detector, features });
        }
        let mut pairs = FxHashMap::default();
        for (pair, w) in raw_pairs {
            if let Some((a, b)) = pair.split_once(' ') {
                if let (Some(a), Some(b)) = (words.get(a), words.get(b)) {
                    pairs.insert((a.id, b.id), w);
                }
            }
        }
        let heads = Heads::new(&file.category, &file.severity, &words);
        Model { threshold: file.threshold, veto: file.veto, bias: file.detector.bias, words, grams, pairs, heads }
    }

    /// A word's own detector weight (itself and its n-grams) and how many features it yields.
    fn own(grams: &FxHashMap<Box<str>, f32>, unigram: f32, word: &str) -> (f32, u32) {
        let mut sum = unigram;
        let mut n = 1u32;
        for_each_gram(word, |g| {
            n += 1;
            sum += grams.get(g).copied().unwrap_or(0.0);
        });
        (sum, n)
    }

    fn word(&self, w: &str) -> Word {
        match self.words.get(w) {
            Some(info) => *info,
            None => {
                let (detector, features) = Model::own(&self.grams, 0.0, w);
                Word { id: NO_ID, detector, features }
            }
        }
    }

    /// The score alone (0 to 1).
    pub fn score(&self, note: &str) -> f64 {
        self.run(&Tokens::new(&Note::new(note))).0
    }

    fn run(&self, t: &Tokens) -> (f64, Vec<Word>, f64) {
        let infos: Vec<Word> = (0..t.spans.len()).map(|i| self.word(t.word(i))).collect();
        let mut sum = 0f64;
        let mut features = 0u64;
        for w in &infos {
            sum += f64::from(w.detector);
            features += u64::from(w.features);
        }
        for pair in infos.windows(2) {
            features += 1;
            if pair[0].id != NO_ID && pair[1].id != NO_ID {
                sum += f64::from(self.pairs.get(&(pair[0].id, pair[1].id)).copied().unwrap_or(0.0));
            }
        }
        let scale = if features == 0 { 0.0 } else { 1.0 / (features as f64).sqrt() };
        (sigmoid(self.bias + sum * scale), infos, scale)
    }

    /// Scores a note and, when the score reaches `threshold`, explains it: the words and pairs
    /// that pushed it most, and the category and severity the model reads.
    pub fn assess(&self, note: &Note<'_>, threshold: f64) -> Scored {
        let t = Tokens::new(note);
        let (score, infos, scale) = self.run(&t);
        let mut scored = Scored { score, terms: Vec::new(), at: None, category: String::new(), severity: Severity::Medium };
        if score < threshold {
            return scored;
        }
        // Contributions of each word and each pair, as the note wrote them.
        let mut items: Vec<(f64, usize, usize)> = Vec::new();
        for (i, w) in infos.iter().enumerate() {
            items.push((f64::from(w.detector) * scale, i, i));
        }
        for (i, pair) in infos.windows(2).enumerate() {
            if pair[0].id != NO_ID && pair[1].id != NO_ID {
                if let Some(w) = self.pairs.get(&(pair[0].id, pair[1].id)) {
                    items.push((f64::from(*w) * scale, i, i + 1));
                }
            }
        }
        // The strongest dozen are enough to find five a nurse can read.
        let top = items.len().min(12);
        if items.len() > top {
            items.select_nth_unstable_by(top - 1, |a, b| b.0.total_cmp(&a.0));
            items.truncate(top);
        }
        items.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(c, first, last) in &items {
            if c <= 0.0 || scored.terms.len() == 5 {
                break;
            }
            let (start, end) = (note.source_range(t.spans[first].1).0, note.source_range(t.spans[last].1).1);
            let text = note.text[start..end].split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            // No digits (a term must never carry part of a number), and nothing a nurse cannot read.
            if text.chars().any(|ch| ch.is_ascii_digit()) || !telling(&text) || scored.terms.contains(&text) {
                continue;
            }
            scored.at.get_or_insert((start, end));
            scored.terms.push(text);
        }
        let ids: Vec<u32> = infos.iter().map(|w| w.id).collect();
        let (category, severity) = self.heads.classify(&ids);
        scored.category = category.to_string();
        scored.severity = Severity::parse(severity).unwrap_or(Severity::Medium);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Model {
        Model::new(&ModelFile::parse(lantern_shared::config::model_file::SHIPPED_MODEL).expect("shipped model"))
    }

    #[test]
    fn scores_match_the_training_script() {
        let model = shipped();
        let check = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mh-model.json.check.jsonl");
        let text = std::fs::read_to_string(&check).expect("config/mh-model.json.check.jsonl");
        let mut n = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let note = v["notes"].as_str().expect("notes");
            let want = v["score"].as_f64().expect("score");
            let got = model.score(note);
            assert!((got - want).abs() < 1e-4, "{note}: rust {got}, python {want}");
            n += 1;
        }
        assert!(n >= 40);
    }

    #[test]
    fn tokens_follow_the_python_rules() {
        let t = Tokens::new(&Note::new("He’s NOT ok — 07700, o'neil ÉCOLE 日本"));
        let words: Vec<&str> = (0..t.spans.len()).map(|i| t.word(i)).collect();
        assert_eq!(words, ["hes", "not", "ok", "00000", "oneil", "école", "日本"]);
        let long = Tokens::new(&Note::new(&"a".repeat(100)));
        assert_eq!(long.word(0).len(), 30);
    }

    #[test]
    fn a_flagged_note_is_explained_in_words() {
        let model = shipped();
        let s = model.assess(&Note::new("she has been hearing voices telling her to hurt herself and has not slept"), 0.0);
        assert!(s.score > 0.5, "{}", s.score);
        assert!(!s.terms.is_empty() && s.terms.len() <= 5);
        assert!(s.terms.iter().all(|t| !t.chars().any(|c| c.is_ascii_digit())));
        assert!(!s.category.is_empty());
        let quiet = model.assess(&Note::new("two vehicle rtc on the a38, no injuries, details exchanged"), 0.5);
        assert!(quiet.score < 0.5 && quiet.terms.is_empty());
    }
}
