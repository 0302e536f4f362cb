//! Mental-health detection measured on labelled notes: the sealed blind sets (targets of issue 11)
//! and the corpora it was built from. Figures are printed with 95% Wilson intervals; the sealed
//! sets hold regression floors at the figures first reached on them.

use super::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(file)
}

/// `(notes, is mental health, category)` of a corpus: JSON lines or the older TSV.
fn corpus(file: &str) -> Vec<(String, bool, String)> {
    let text = std::fs::read_to_string(data(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    if file.ends_with(".tsv") {
        return text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut c = l.splitn(3, '\t');
                let (label, _, note) = (c.next()?, c.next()?, c.next()?);
                Some((note.to_string(), label == "1", "-".to_string()))
            })
            .collect();
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            (
                v["notes"].as_str().unwrap_or("").to_string(),
                v["mh"].as_bool().unwrap_or(false),
                v["cat"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

/// A 95% Wilson interval for k of n.
fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (k, n, z) = (k as f64, n as f64, 1.96f64);
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    (c - h, c + h)
}

#[derive(Default)]
struct Figures {
    tp: usize,
    fp: usize,
    fneg: usize,
    negatives: usize,
    by_category: BTreeMap<String, (usize, usize)>,
}

impl Figures {
    fn precision(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fp).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.tp as f64 / (self.tp + self.fneg).max(1) as f64
    }
    fn false_alarms(&self) -> f64 {
        self.fp as f64 / self.negatives.max(1) as f64
    }

    fn report(&self, name: &str) {
        let (pl, ph) = wilson(self.tp, self.tp + self.fp);
        let (rl, rh) = wilson(self.tp, self.tp + self.fneg);
        let (al, ah) = wilson(self.fp, self.negatives);
        println!("{name}: {} notes, {} mental health", self.tp + self.fneg + self.negatives, self.tp + self.fneg);
        if self.tp + self.fneg > 0 {
            println!("  precision {:.3} (95% CI {pl:.3}-{ph:.3}); recall {:.3} (95% CI {rl:.3}-{rh:.3})", self.precision(), self.recall());
        }
        println!(
            "  false alarms {:.4} (95% CI {al:.4}-{ah:.4}), {} of {} notes that are not mental health",
            self.false_alarms(),
            self.fp,
            self.negatives
        );
        for (cat, (k, n)) in &self.by_category {
            println!("    recall {cat:<20} {:.3} ({k}/{n})", *k as f64 / (*n).max(1) as f64);
        }
    }
}

fn measure(detector: &MentalHealth, files: &[&str]) -> Figures {
    let mut f = Figures::default();
    for file in files {
        for (notes, mh, cat) in corpus(file) {
            let flagged = detector.flags(&notes);
            match (mh, flagged) {
                (true, true) => f.tp += 1,
                (true, false) => f.fneg += 1,
                (false, true) => f.fp += 1,
                (false, false) => {}
            }
            if mh {
                let e = f.by_category.entry(cat).or_default();
                e.0 += usize::from(flagged);
                e.1 += 1;
            } else {
                f.negatives += 1;
            }
        }
    }
    f
}

fn shipped() -> MentalHealth {
    MentalHealth::new(&lantern_shared::Config::default().mental_health)
}

/// The sealed sets are the files committed when they were sealed, before any training.
fn check_sealed(file: &str) {
    let sums = std::fs::read_to_string(data("sealed/SHA256SUMS")).expect("SHA256SUMS");
    let want =
        sums.lines().find(|l| l.ends_with(file.trim_start_matches("sealed/"))).and_then(|l| l.split_whitespace().next()).expect("listed");
    let got = data_encoding::HEXLOWER.encode(&Sha256::digest(std::fs::read(data(file)).expect("sealed file")));
    assert_eq!(got, want, "{file} changed since it was sealed");
}

#[test]
fn sealed_labelled_notes_meet_the_targets() {
    check_sealed("sealed/mh-sealed.jsonl");
    let f = measure(&shipped(), &["sealed/mh-sealed.jsonl"]);
    f.report("sealed blind set (tests/data/sealed/mh-sealed.jsonl)");
    assert!(f.precision() >= SEALED_PRECISION_FLOOR, "precision {:.3}", f.precision());
    assert!(f.recall() >= SEALED_RECALL_FLOOR, "recall {:.3}", f.recall());
}

#[test]
fn sealed_ordinary_notes_raise_few_false_alarms() {
    check_sealed("sealed/mh-ordinary.jsonl");
    let f = measure(&shipped(), &["sealed/mh-ordinary.jsonl"]);
    f.report("ordinary notes (tests/data/sealed/mh-ordinary.jsonl)");
    assert!(f.false_alarms() <= ORDINARY_FALSE_ALARM_CEILING, "false alarms {:.4}", f.false_alarms());
}

#[test]
fn second_sealed_labelled_notes_meet_the_targets() {
    check_sealed2("mh-sealed-2.jsonl");
    let f = measure(&shipped(), &["sealed2/mh-sealed-2.jsonl"]);
    f.report("second sealed blind set (tests/data/sealed2/mh-sealed-2.jsonl)");
    assert!(f.precision() >= SEALED2_PRECISION_FLOOR, "precision {:.3}", f.precision());
    assert!(f.recall() >= SEALED2_RECALL_FLOOR, "recall {:.3}", f.recall());
}

#[test]
fn second_sealed_ordinary_notes_raise_few_false_alarms() {
    check_sealed2("mh-ordinary-2.jsonl");
    let f = measure(&shipped(), &["sealed2/mh-ordinary-2.jsonl"]);
    f.report("second sealed ordinary notes (tests/data/sealed2/mh-ordinary-2.jsonl)");
    assert!(f.false_alarms() <= SEALED2_FALSE_ALARM_CEILING, "false alarms {:.4}", f.false_alarms());
}

fn check_sealed2(file: &str) {
    let sums = std::fs::read_to_string(data("sealed2/SHA256SUMS")).expect("SHA256SUMS");
    let want = sums.lines().find(|l| l.ends_with(file)).and_then(|l| l.split_whitespace().next()).expect("listed");
    let got = data_encoding::HEXLOWER.encode(&Sha256::digest(std::fs::read(data(&format!("sealed2/{file}"))).expect("sealed file")));
    assert_eq!(got, want, "{file} changed since it was sealed");
}

#[test]
fn the_corpora_it_was_built_from_stay_above_ninety_percent() {
    let mut files: Vec<String> =
        ["mh-corpus.tsv", "mh-corpus-holdout.tsv", "mh-corpus-blind.tsv", "mh-corpus-blind2.tsv"].iter().map(|f| f.to_string()).collect();
    let mut train: Vec<String> = std::fs::read_dir(data("mh-train"))
        .expect("tests/data/mh-train")
        .flatten()
        .map(|e| format!("mh-train/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".jsonl"))
        .collect();
    train.sort();
    files.extend(train);
    let detector = shipped();
    for file in &files {
        let f = measure(&detector, &[file]);
        f.report(file);
        if f.tp + f.fneg > 0 {
            assert!(f.precision() >= 0.90 && f.recall() >= 0.90, "{file}: precision {:.3}, recall {:.3}", f.precision(), f.recall());
        }
        assert!(f.false_alarms() <= 0.05, "{file}: false alarms {:.4}", f.false_alarms());
    }
}

#[test]
fn every_flag_says_why_and_a_model_reason_lists_its_words() {
    let mh = shipped();
    let a = mh.assess(
        Some("neighbour says he has been sat on the parapet of the railway bridge for an hour, legs dangling, crying"),
        None,
        &[],
    );
    assert!(a.severity.is_some() && a.score.is_some());
    assert!(a.reasons.iter().all(|r| !r.cue.is_empty()));
    let model = mh.assess(
        Some("son keeps saying the neighbours are reading his thoughts through the telly and he has not eaten for days"),
        None,
        &[],
    );
    if let Some(r) = model.reasons.iter().find(|r| r.source == CueSource::Model) {
        assert!(!r.terms.is_empty() && r.score.is_some_and(|s| s >= mh.threshold()));
    }
    let quiet = mh.assess(Some("two vehicle rtc on the a38, no injuries, details exchanged"), None, &[]);
    assert!(quiet.severity.is_none(), "{quiet:?}");
}

#[test]
fn the_model_can_veto_a_cue_it_reads_as_about_something_else() {
    let note = "mum says she has taken all her tablets";
    let mut config = lantern_shared::Config::default().mental_health;
    config.model_veto = Some(0.0);
    let kept = MentalHealth::new(&config).assess(Some(note), None, &[]);
    assert!(kept.reasons.iter().any(|r| r.source == CueSource::Lexicon), "{kept:?}");
    assert!(kept.severity.is_some());
    config.model_veto = Some(0.99);
    config.model_threshold = Some(0.995);
    let vetoed = MentalHealth::new(&config).assess(Some(note), None, &[]);
    assert!(vetoed.severity.is_none(), "{vetoed:?}");
    assert_eq!(vetoed.score, kept.score, "the score is given either way");
    config.model = Some(String::new());
    assert!(MentalHealth::new(&config).assess(Some(note), None, &[]).severity.is_some(), "no model, no veto");
}
