//! The mental-health model file that `mental_health.model` names (SPEC section 4): logistic
//! regressions over a note's words, word pairs and character n-grams, trained offline by
//! `tools/mh/train.py` and read here. This module reads and checks the file; scoring is the
//! flagger's (`detect/model.rs`), pure Rust with no I/O.

use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// The model shipped in `config/mh-model.json`, built into the binary: what a config without a
/// `model` key uses.
pub const SHIPPED_MODEL: &str = include_str!("../../../config/mh-model.json");

pub const FORMAT: &str = "lantern-mental-health-model";

/// How a note becomes features; the scorer supports exactly this.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FeatureSpec {
    pub max_word_chars: usize,
    pub char_ngrams: Vec<usize>,
    pub word_ngrams: Vec<usize>,
}

/// Mental health or not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Binary {
    pub bias: f64,
    pub weights: HashMap<String, f64>,
}

/// One of several classes (category, severity).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Multi {
    pub classes: Vec<String>,
    pub bias: Vec<f64>,
    pub weights: HashMap<String, Vec<f64>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    pub threshold: f64,
    /// The score below which a cue or pattern does not flag (absent: 0, never).
    #[serde(default)]
    pub veto: f64,
    pub features: FeatureSpec,
    pub detector: Binary,
    pub category: Multi,
    pub severity: Multi,
}

impl ModelFile {
    /// Reads and checks a model file; the error says what is wrong with it.
    pub fn load(path: &Path) -> Result<ModelFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the model file {}: {e}", path.display()))?;
        ModelFile::parse(&text).map_err(|e| format!("the model file {} is not usable: {e}", path.display()))
    }

    /// Parses and checks model JSON.
    pub fn parse(text: &str) -> Result<ModelFile, String> {
        let m: ModelFile = serde_json::from_str(text).map_err(|e| format!("not a Lantern model ({e})"))?;
        if m.format != FORMAT {
            return Err(format!("`format` is `{}`, not `{FORMAT}`", m.format));
        }
        if m.version != 1 {
            return Err(format!("`version` is {}; this Lantern reads version 1 (retrain with tools/mh/train.py)", m.version));
        }
        if m.features != (FeatureSpec { max_word_chars: 30, char_ngrams: vec![3, 4, 5], word_ngrams: vec![1, 2] }) {
            return Err("`features` asks for features this Lantern does not compute".into());
        }
        if !(m.threshold > 0.0 && m.threshold < 1.0) {
            return Err(format!("`threshold` is {}; it must be between 0 and 1", m.threshold));
        }
        if !(0.0..1.0).contains(&m.veto) || m.veto >= m.threshold {
            return Err(format!("`veto` is {}; it must be from 0 up to the threshold", m.veto));
        }
        let finite = |x: &f64| x.is_finite();
        if !finite(&m.detector.bias) || !m.detector.weights.values().all(finite) {
            return Err("`detector` holds a weight that is not a finite number".into());
        }
        if m.detector.weights.keys().any(|k| !(k.starts_with("w:") || k.starts_with("b:") || k.starts_with("c:"))) {
            return Err("`detector` holds a feature that is not w:, b: or c:".into());
        }
        for (name, multi) in [("category", &m.category), ("severity", &m.severity)] {
            let n = multi.classes.len();
            if n < 2 || multi.bias.len() != n || !multi.bias.iter().all(finite) {
                return Err(format!("`{name}` needs at least two classes and one bias for each"));
            }
            if multi.weights.iter().any(|(k, w)| w.len() != n || !w.iter().all(finite) || !(k.starts_with("w:") || k.starts_with("b:"))) {
                return Err(format!("`{name}` holds a weight row of the wrong length, kind or value"));
            }
        }
        if m.severity.classes.iter().any(|c| !["low", "medium", "high"].contains(&c.as_str())) {
            return Err("`severity.classes` may only be low, medium and high".into());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_parses() {
        let m = ModelFile::parse(SHIPPED_MODEL).expect("shipped model");
        assert!(m.detector.weights.len() > 1000);
        assert_eq!(m.severity.classes, ["low", "medium", "high"]);
    }

    #[test]
    fn a_corrupt_model_is_refused_with_a_reason() {
        for (text, says) in [
            ("", "not a Lantern model"),
            ("{\"format\": \"x\"}", "not a Lantern model"),
            (&SHIPPED_MODEL.replacen("lantern-mental-health-model", "other", 1), "`format`"),
            (&SHIPPED_MODEL[..SHIPPED_MODEL.len() / 2], "not a Lantern model"),
        ] {
            let e = ModelFile::parse(text).expect_err("refused");
            assert!(e.contains(says), "{e}");
        }
    }
}
