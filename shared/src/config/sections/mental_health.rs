//! `[mental_health]`: the lexicon, patterns, false friends and model of SPEC section 4.

use super::Checks;
use crate::config::model_file::{ModelFile, SHIPPED_MODEL};
use crate::domain::Severity;
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

/// Keys a file leaves out take the shipped file's values: a config without the section
/// detects as the shipped lexicon, patterns and (built-in) model do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default = "MentalHealthConfig::shipped")]
pub struct MentalHealthConfig {
    pub negation_terms: Vec<String>,
    pub negation_window: i64,
    pub incident_types: Vec<String>,
    pub qualifiers: Vec<String>,
    /// The model file (`tools/mh/train.py` writes one); a relative name is read beside the
    /// config file. Absent: the model shipped in the binary (the same as `config/mh-model.json`);
    /// `""`: no model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Score at or above which the model flags a note; absent: the threshold the file carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_threshold: Option<f64>,
    /// A cue or pattern flags a note only when the model's score is at least this; absent: the
    /// value the model file carries (0, never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_veto: Option<f64>,
    /// Phrases that make a cue or pattern beside them (two words either side) mean something else:
    /// "end it with her boyfriend", "hanging baskets", "jump start".
    pub false_friends: Vec<String>,
    pub cues: Vec<CueConfig>,
    pub patterns: Vec<PatternConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CueConfig {
    pub category: String,
    pub severity: Severity,
    pub phrases: Vec<String>,
    /// Optional plain-words label shown to nurses; defaults to the category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Phrases that cancel this group's cues when they come within `block_within` words of
    /// one ("abseil" near "hanging from the bridge").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// How near a blocking phrase must be; absent or 0: anywhere in the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_within: Option<i64>,
}

/// A pattern (SPEC section 4): words of one set within a few words of words of another, such as
/// a place of danger near a posture or movement, unless a blocking phrase is there too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternConfig {
    pub name: String,
    pub category: String,
    pub severity: Severity,
    /// Sets of words or phrases, written as lexicon phrases (whole words, `*` ends a word).
    pub near: Vec<Vec<String>>,
    /// How many words apart the matches may be at most; 0 means anywhere in the note.
    #[serde(default = "default_within")]
    pub within: i64,
    /// How many of the sets must match; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sets: Option<i64>,
    /// Phrases that cancel the pattern when they come within `block_within` words of its match
    /// ("hanging baskets").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// How near a blocking phrase must be to cancel; absent: `within`; 0: anywhere in the note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_within: Option<i64>,
    /// Plain words shown to nurses; defaults to the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

fn default_within() -> i64 {
    4
}

impl Default for MentalHealthConfig {
    fn default() -> Self {
        MentalHealthConfig::shipped()
    }
}

impl MentalHealthConfig {
    /// Nothing at all: no lexicon, no patterns, no model.
    fn empty() -> MentalHealthConfig {
        MentalHealthConfig {
            negation_terms: Vec::new(),
            negation_window: 5,
            incident_types: Vec::new(),
            qualifiers: Vec::new(),
            model: Some(String::new()),
            model_threshold: None,
            model_veto: None,
            false_friends: Vec::new(),
            cues: Vec::new(),
            patterns: Vec::new(),
        }
    }

    /// The `[mental_health]` section of the shipped file (a test keeps it complete and valid),
    /// read once, with the built-in model in place of the file it names.
    pub fn shipped() -> MentalHealthConfig {
        static SHIPPED_MH: OnceLock<MentalHealthConfig> = OnceLock::new();
        thread_local!(static READING: Cell<bool> = const { Cell::new(false) });
        // While the shipped section itself is read, the keys it spells out are all there is.
        if READING.get() {
            return MentalHealthConfig::empty();
        }
        SHIPPED_MH
            .get_or_init(|| {
                READING.set(true);
                let table: Option<toml::Table> = toml::from_str(crate::config::SHIPPED).ok();
                let read = table.and_then(|t| t.get("mental_health").cloned()).and_then(|s| s.try_into::<MentalHealthConfig>().ok());
                READING.set(false);
                MentalHealthConfig { model: None, ..read.unwrap_or_else(MentalHealthConfig::empty) }
            })
            .clone()
    }

    /// The model this section names, read and checked: `Ok(None)` when it names none.
    pub fn load_model(&self) -> Result<Option<ModelFile>, String> {
        match self.model.as_deref() {
            None => ModelFile::parse(SHIPPED_MODEL).map(Some),
            Some("") => Ok(None),
            Some(path) => ModelFile::load(Path::new(path)).map(Some),
        }
    }

    pub(crate) fn check(&self, c: &mut Checks<'_>) {
        c.words("mental_health.negation_window", self.negation_window, "no negation");
        for (i, cue) in self.cues.iter().enumerate() {
            let key = |field: &str| format!("mental_health.cues[{i}].{field}");
            if cue.category.trim().is_empty() {
                c.err(key("category"), "every cue needs a category");
            }
            if cue.phrases.is_empty() {
                c.err(key("phrases"), "needs at least one phrase");
            }
            c.phrases(&key("phrases"), &cue.phrases);
            c.phrases(&key("block"), &cue.block);
            if let Some(b) = cue.block_within {
                c.words(&key("block_within"), b, "anywhere in the note");
            }
        }
        let mut names = BTreeSet::new();
        for (i, pat) in self.patterns.iter().enumerate() {
            let key = |field: &str| format!("mental_health.patterns[{i}].{field}");
            if pat.name.trim().is_empty() {
                c.err(key("name"), "every pattern needs a name");
            } else if !names.insert(pat.name.as_str()) {
                c.err(key("name"), format!("`{}` is used by two patterns; names must be unique", pat.name));
            }
            if pat.category.trim().is_empty() {
                c.err(key("category"), "every pattern needs a category");
            }
            if pat.near.is_empty() || pat.near.iter().any(Vec::is_empty) {
                c.err(key("near"), "needs one or more sets, each with at least one word or phrase");
            }
            for (j, set) in pat.near.iter().enumerate() {
                c.phrases(&format!("mental_health.patterns[{i}].near[{j}]"), set);
            }
            c.phrases(&key("block"), &pat.block);
            c.words(&key("within"), pat.within, "anywhere in the note");
            if let Some(b) = pat.block_within {
                c.words(&key("block_within"), b, "anywhere in the note");
            }
            if let Some(k) = pat.min_sets {
                if k < 1 || k as usize > pat.near.len() {
                    c.err(key("min_sets"), format!("is {k}; it must be between 1 and the number of sets ({})", pat.near.len()));
                }
            }
        }
        c.phrases("mental_health.false_friends", &self.false_friends);
        for (key, value) in [("model_threshold", self.model_threshold), ("model_veto", self.model_veto)] {
            if let Some(t) = value {
                if !(0.0..1.0).contains(&t) {
                    c.err(format!("mental_health.{key}"), format!("is {t}; it must be from 0 up to 1"));
                }
            }
        }
        if let Err(why) = self.load_model() {
            c.err("mental_health.model", why);
        }
    }
}
