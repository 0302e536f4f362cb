//! `lantern replay`: historical events through the same detection code, no broker, no database.

use crate::detect::{assess, new_flag_id, Assessment, Detector, Flag, FlagKind, FlagStatus, MentalHealth, Reasons};
use chrono::{DateTime, TimeZone, Utc};
use lantern_shared::domain::event::{CallEvent, Rejection};
use lantern_shared::domain::ingest::IngestContext;
use lantern_shared::runtime::consumer::guard;
use lantern_shared::Config;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, Write};
use std::sync::{mpsc, Arc, Mutex};

/// Per-rule figures: what the thresholds would have done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleSummary {
    /// Flags raised with this rule among their reasons.
    pub flags_raised: u64,
    /// Flag messages (raised or updated) listing this rule.
    pub messages: u64,
    /// Distinct identities that met the rule at least once.
    pub identities: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub events: u64,
    pub rejected: BTreeMap<String, u64>,
    pub duplicates: u64,
    pub calls: u64,
    pub repeat_caller_flags: u64,
    pub repeat_caller_updates: u64,
    pub mental_health_flags: u64,
    /// Mental-health flags raised with each category among their unnegated reasons, and by
    /// what raised them (lexicon, pattern, model, incident).
    pub mental_health_categories: BTreeMap<String, u64>,
    pub mental_health_sources: BTreeMap<String, u64>,
    /// Distinct callers brought to the nurses by any repeat-caller rule.
    pub repeat_callers: u64,
    pub rules: BTreeMap<String, RuleSummary>,
}

fn hash(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// One line, read and scanned on a worker: the parsed event (or why not) and what the
/// mental-health layers say of it (or the panic inside them).
enum Prepared {
    Blank,
    Refused(Rejection),
    Event(Box<CallEvent>, Result<Assessment, String>),
}

/// Lines handed to a worker at a time.
const CHUNK_LINES: usize = 4096;

fn prepare(line: &str, ingest: &IngestContext, scanner: &MentalHealth, now: DateTime<Utc>) -> Prepared {
    if line.trim().is_empty() {
        return Prepared::Blank;
    }
    let parsed = guard(|| CallEvent::parse(line.as_bytes(), ingest, now))
        .unwrap_or_else(|why| Err(Rejection::new("internal_error", format!("processing this event failed: {why}"))));
    match parsed {
        Ok(ev) => {
            let assessment = guard(|| assess(scanner, &ev));
            Prepared::Event(Box::new(ev), assessment)
        }
        Err(r) => Prepared::Refused(r),
    }
}

/// Replays `input` (one event per line) through detection, writing each flag to `out` as a
/// JSON line (when `out` is given), and returns the summary. `now` is when the replay runs:
/// events stamped more than the allowed skew after it are refused, as the live service would.
///
/// Parsing, pseudonyms and the mental-health scan (most of the work, and independent per
/// event) run on worker threads, one per core; what keeps state (duplicates, repeat-caller
/// rules, mental-health flags per call) runs here, in input order, so the output is the same as
/// one thread's.
pub fn replay(
    config: &Config,
    ingest: &IngestContext,
    now: DateTime<Utc>,
    input: impl BufRead + Send,
    out: Option<&mut dyn Write>,
) -> std::io::Result<Summary> {
    let mut apply = Apply::new(config, ingest, out);
    // The workers scan with the detector's own layers: built once.
    let scanner = apply.detector.scanner();
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<String>)>(workers * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, Vec<Prepared>)>(workers * 2);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (rx, tx, scanner) = (work_rx.clone(), done_tx.clone(), &*scanner);
            s.spawn(move || loop {
                let job = lantern_shared::runtime::lock(&rx).recv();
                let Ok((seq, lines)) = job else { return };
                let prepared = lines.iter().map(|l| prepare(l, ingest, scanner, now)).collect();
                if tx.send((seq, prepared)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let reader = s.spawn(move || -> std::io::Result<()> {
            let mut chunk = Vec::with_capacity(CHUNK_LINES);
            let mut seq = 0;
            for line in input.lines() {
                chunk.push(line?);
                if chunk.len() == CHUNK_LINES {
                    if work_tx.send((seq, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES)))).is_err() {
                        return Ok(()); // the applier stopped (an output error): it says why
                    }
                    seq += 1;
                }
            }
            if !chunk.is_empty() {
                let _ = work_tx.send((seq, chunk));
            }
            Ok(())
        });
        let mut waiting: BTreeMap<u64, Vec<Prepared>> = BTreeMap::new();
        let mut next = 0;
        let mut result = Ok(());
        'chunks: for (seq, prepared) in done_rx {
            waiting.insert(seq, prepared);
            while let Some(chunk) = waiting.remove(&next) {
                next += 1;
                for p in chunk {
                    if let Err(e) = apply.one(p, now) {
                        result = Err(e);
                        break 'chunks;
                    }
                }
            }
        }
        drop(work_rx);
        let read = reader.join().unwrap_or_else(|_| Err(std::io::Error::other("the replay reader failed")));
        result.and(read).map(|()| apply.finish())
    })
}

/// The part of a replay that keeps state, fed in input order.
struct Apply<'a> {
    detector: Detector,
    seen_events: HashSet<u64>,
    seen_calls: HashSet<u64>,
    summary: Summary,
    rule_identities: HashMap<String, HashSet<String>>,
    callers: HashSet<String>,
    horizon: i64,
    latest_ms: i64,
    since_prune: u32,
    out: Option<&'a mut dyn Write>,
}

impl<'a> Apply<'a> {
    fn new(config: &Config, ingest: &IngestContext, out: Option<&'a mut dyn Write>) -> Apply<'a> {
        let mut summary = Summary::default();
        for r in &config.repeat_callers.rules {
            summary.rules.insert(r.name.clone(), RuleSummary::default());
        }
        Apply {
            detector: Detector::new(config, ingest),
            seen_events: HashSet::new(),
            seen_calls: HashSet::new(),
            summary,
            rule_identities: HashMap::new(),
            callers: HashSet::new(),
            horizon: config.longest_window().millis() + config.retention.history_margin.millis(),
            latest_ms: i64::MIN,
            since_prune: 0,
            out,
        }
    }

    fn one(&mut self, prepared: Prepared, now: DateTime<Utc>) -> std::io::Result<()> {
        let (ev, assessment) = match prepared {
            Prepared::Blank => return Ok(()),
            Prepared::Refused(r) => {
                self.summary.events += 1;
                *self.summary.rejected.entry(r.reason.to_string()).or_default() += 1;
                return Ok(());
            }
            Prepared::Event(ev, assessment) => (ev, assessment),
        };
        self.summary.events += 1;
        if !self.seen_events.insert(hash(&ev.event_id)) {
            self.summary.duplicates += 1;
            return Ok(());
        }
        let new_call = self.seen_calls.insert(hash(&ev.call_id));
        self.summary.calls += u64::from(new_call);
        // Replay stamps flags with event time, so the same input gives the same output.
        let at = Utc.timestamp_millis_opt(ev.occurred_ms()).single().unwrap_or(now);
        // Detection scans before it changes anything, so a failure leaves the history as it was.
        let mut ids = new_flag_id;
        let detection = assessment.and_then(|a| guard(|| self.detector.on_assessed(&ev, new_call, at, &mut ids, a)));
        let Ok(detection) = detection else {
            *self.summary.rejected.entry("internal_error".to_string()).or_default() += 1;
            return Ok(());
        };
        for flag in &detection.flags {
            tally(&mut self.summary, &mut self.rule_identities, &mut self.callers, flag);
            if let Some(w) = self.out.as_deref_mut() {
                writeln!(w, "{}", flag.to_json())?;
            }
        }
        self.latest_ms = self.latest_ms.max(ev.occurred_ms());
        self.since_prune += 1;
        if self.since_prune >= 50_000 {
            self.since_prune = 0;
            self.detector.prune(self.latest_ms - self.horizon, self.latest_ms - crate::detect::MH_CALL_MEMORY_MS);
        }
        Ok(())
    }

    fn finish(mut self) -> Summary {
        for (rule, set) in self.rule_identities {
            if let Some(s) = self.summary.rules.get_mut(&rule) {
                s.identities = set.len() as u64;
            }
        }
        self.summary.repeat_callers = self.callers.len() as u64;
        self.summary
    }
}

fn tally(summary: &mut Summary, rule_identities: &mut HashMap<String, HashSet<String>>, callers: &mut HashSet<String>, flag: &Flag) {
    let m = &flag.message;
    match (&m.reasons, m.kind) {
        (Reasons::Rules(reasons), FlagKind::RepeatCaller) => {
            let raised = m.status == FlagStatus::Raised;
            if raised {
                summary.repeat_caller_flags += 1;
            } else {
                summary.repeat_caller_updates += 1;
            }
            let who = m.caller_ref.clone().unwrap_or_default();
            callers.insert(who.clone());
            for r in reasons {
                if let Some(s) = summary.rules.get_mut(&r.rule) {
                    s.messages += 1;
                    s.flags_raised += u64::from(raised);
                    rule_identities.entry(r.rule.clone()).or_default().insert(who.clone());
                }
            }
        }
        (Reasons::Cues(cues), FlagKind::MentalHealth) if m.status == FlagStatus::Raised => {
            summary.mental_health_flags += 1;
            let live = || cues.iter().filter(|c| !c.negated);
            let categories: std::collections::BTreeSet<&str> = live().map(|c| c.category.as_str()).collect();
            for c in categories {
                *summary.mental_health_categories.entry(c.to_string()).or_default() += 1;
            }
            let sources: std::collections::BTreeSet<&str> = live().map(|c| c.source.as_str()).collect();
            for s in sources {
                *summary.mental_health_sources.entry(s.to_string()).or_default() += 1;
            }
        }
        _ => {}
    }
}

impl Summary {
    /// The per-rule table operations staff read.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "# {} events, {} calls, {} duplicates, {} rejected\n",
            self.events,
            self.calls,
            self.duplicates,
            self.rejected.values().sum::<u64>()
        ));
        s.push_str(&format!(
            "# repeat-caller flags raised: {} (updates {}), distinct callers: {}; mental-health flags: {}\n",
            self.repeat_caller_flags, self.repeat_caller_updates, self.repeat_callers, self.mental_health_flags
        ));
        s.push_str(&format!("# {:<24} {:>12} {:>10} {:>12}\n", "rule", "flags raised", "messages", "identities"));
        for (name, r) in &self.rules {
            s.push_str(&format!("# {:<24} {:>12} {:>10} {:>12}\n", name, r.flags_raised, r.messages, r.identities));
        }
        s
    }
}

/// Old and new side by side: flags raised and distinct callers per rule, then in all.
pub fn compare_table(old: &Summary, new: &Summary) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<24} {:>10} {:>10} {:>8} {:>12} {:>12} {:>8}\n",
        "rule", "old flags", "new flags", "change", "old callers", "new callers", "change"
    ));
    let mut names: Vec<&String> = old.rules.keys().chain(new.rules.keys()).collect();
    names.sort();
    names.dedup();
    let zero = RuleSummary::default();
    for name in names {
        let (o, n) = (old.rules.get(name), new.rules.get(name));
        let (os, ns) = (o.unwrap_or(&zero), n.unwrap_or(&zero));
        let mark = match (o, n) {
            (None, Some(_)) => " (new rule)",
            (Some(_), None) => " (removed)",
            _ => "",
        };
        s.push_str(&compare_row(name, (os.flags_raised, ns.flags_raised), (os.identities, ns.identities), mark));
    }
    s.push_str(&compare_row(
        "all repeat-caller rules",
        (old.repeat_caller_flags, new.repeat_caller_flags),
        (old.repeat_callers, new.repeat_callers),
        "",
    ));
    s.push_str(&format!("mental-health flags: {} old, {} new\n", old.mental_health_flags, new.mental_health_flags));
    // Per category and per layer, so a lexicon, pattern or model change shows where it lands.
    for (title, o, n) in [
        ("category", &old.mental_health_categories, &new.mental_health_categories),
        ("raised by", &old.mental_health_sources, &new.mental_health_sources),
    ] {
        let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (a, b) = (o.get(k).copied().unwrap_or(0), n.get(k).copied().unwrap_or(0));
            s.push_str(&format!("  mental health {title} {k:<28} {a:>8} {b:>8} {:>+8}\n", b as i64 - a as i64));
        }
    }
    s
}

/// One line of [`compare_table`]: flags and callers, old and new, each with its change.
fn compare_row(name: &str, (old_flags, new_flags): (u64, u64), (old_callers, new_callers): (u64, u64), mark: &str) -> String {
    format!(
        "{:<24} {:>10} {:>10} {:>+8} {:>12} {:>12} {:>+8}{mark}\n",
        name,
        old_flags,
        new_flags,
        new_flags as i64 - old_flags as i64,
        old_callers,
        new_callers,
        new_callers as i64 - old_callers as i64
    )
}
