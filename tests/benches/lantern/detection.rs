//! Detection alone: the repeat-caller engine, the lexicon, all three mental-health layers, parsing.

use crate::{ingest, median, random_ref, rss_bytes, Report};
use chrono::{Duration, Utc};
use lantern_flagger::detect::cues::Lexicon;
use lantern_flagger::detect::repeat::{CallAttrs, CallFacts, RepeatEngine, Rules};
use lantern_shared::domain::event::CallEvent;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::{AgeBand, Channel, Identity};
use lantern_shared::Config;
use rand::{Rng, SeedableRng};
use std::time::Instant;

/// The repeat-caller engine alone: 1 million calls from 400,000 identities held, then new
/// calls observed on one core. Baseline: inserting the same calls into a plain sorted Vec per
/// identity with no rule evaluation (the cost of just keeping history).
pub(crate) fn engine(report: &mut Report) {
    let config = Config::default();
    let rules = Rules::from_config(&config, &ingest());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let phones: Vec<CallerRef> = (0..300_000).map(|_| random_ref(&mut rng)).collect();
    let addresses: Vec<CallerRef> = (0..100_000).map(|_| random_ref(&mut rng)).collect();
    let now = Utc::now().timestamp_millis();
    let day = 86_400_000i64;
    let before = rss_bytes();
    let mut engine = RepeatEngine::new(rules.clone());
    let attrs = CallAttrs::new(Channel::NonEmergency, Some(false), Some(AgeBand::Adult));
    // 1,000,000 calls held: 750,000 by phone (300k numbers) and 250,000 by address (100k).
    for i in 0..750_000usize {
        engine.restore_call(Identity::Phone, phones[i % phones.len()], now - rng.gen_range(0..180 * day), attrs);
    }
    for i in 0..250_000usize {
        engine.restore_call(Identity::Address, addresses[i % addresses.len()], now - rng.gen_range(0..180 * day), attrs);
    }
    engine.finish_restore();
    let held = engine.calls_held();
    let per_call = (rss_bytes() - before) as f64 / held as f64;
    report.add("engine: resident memory per call held", per_call, "bytes", &format!("{held} calls, {} identities", engine.identities()));

    let n = 1_000_000usize;
    let calls: Vec<CallFacts> = (0..n)
        .map(|i| CallFacts {
            occurred_ms: now + i as i64,
            attrs: CallAttrs::new(
                if i % 3 == 0 { Channel::Emergency } else { Channel::NonEmergency },
                Some(i % 50 == 0),
                Some(AgeBand::Adult),
            ),
            phone: Some(phones[rng.gen_range(0..phones.len())]),
            address: if i % 2 == 0 { Some(addresses[rng.gen_range(0..addresses.len())]) } else { None },
        })
        .collect();
    let mut runs = Vec::new();
    let mut flags = 0;
    for _ in 0..3 {
        let mut e = RepeatEngine::new(rules.clone());
        for (i, c) in calls.iter().enumerate().take(held) {
            e.restore_call(Identity::Phone, c.phone.unwrap_or(phones[0]), now - (i as i64 % (180 * day)), attrs);
        }
        e.finish_restore();
        let start = Instant::now();
        flags = 0;
        let mut id = 0u128;
        for c in &calls {
            flags += e
                .observe(c, now, &mut || {
                    id += 1;
                    id
                })
                .hits
                .len();
        }
        runs.push(n as f64 / start.elapsed().as_secs_f64());
    }
    let engine_rate = median(runs);
    let mut base = Vec::new();
    for _ in 0..3 {
        let mut map: std::collections::HashMap<u128, Vec<i64>> = std::collections::HashMap::new();
        let start = Instant::now();
        for c in &calls {
            let v = map.entry(c.phone.map(|r| r.to_u128()).unwrap_or(0)).or_default();
            let at = v.partition_point(|t| *t <= c.occurred_ms);
            v.insert(at, c.occurred_ms);
        }
        base.push(n as f64 / start.elapsed().as_secs_f64());
    }
    let base_rate = median(base);
    report.add("engine: new calls observed per second (one core)", engine_rate, "calls/s", &format!("{flags} flag messages per run"));
    report.add(
        "baseline: bare history insert per second",
        base_rate,
        "calls/s",
        &format!("engine at {:.2} of baseline", engine_rate / base_rate),
    );
}

/// The lexicon over real-looking notes (the labelled corpora). Baseline: folding the same
/// notes to lower case, which any matcher must at least do.
pub(crate) fn lexicon(report: &mut Report) {
    let lexicon = Lexicon::new(&Config::default().mental_health);
    let corpus = [include_str!("../../data/mh-corpus.tsv"), include_str!("../../data/mh-corpus-holdout.tsv")];
    let notes: Vec<&str> = corpus.iter().flat_map(|c| c.lines().skip(1)).filter_map(|l| l.splitn(3, '\t').nth(2)).collect();
    let rounds = 200_000 / notes.len() + 1;
    let total = rounds * notes.len();
    let mut runs = Vec::new();
    let mut hits = 0;
    for _ in 0..3 {
        let start = Instant::now();
        hits = 0;
        for _ in 0..rounds {
            for n in &notes {
                hits += lexicon.scan(n).len();
            }
        }
        runs.push(total as f64 / start.elapsed().as_secs_f64());
    }
    let mut base = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..rounds {
            for n in &notes {
                bytes += lantern_shared::domain::text::fold(n).len();
            }
        }
        std::hint::black_box(bytes);
        base.push(total as f64 / start.elapsed().as_secs_f64());
    }
    let rate = median(runs);
    let base_rate = median(base);
    report.add(
        "lexicon: notes matched per second (shipped lexicon)",
        rate,
        "notes/s",
        &format!("{} phrases; {hits} cue hits per run", lexicon.phrase_count()),
    );
    report.add("baseline: notes lower-cased per second", base_rate, "notes/s", &format!("matcher at {:.2} of baseline", rate / base_rate));
}

/// Mental-health detection with all three layers (lexicon, patterns, model) over the same notes
/// as the lexicon group. Baseline, in the same run: the lexicon alone. Target: 150,000 notes/s.
pub(crate) fn mental_health(report: &mut Report) {
    let config = Config::default().mental_health;
    let detector = lantern_flagger::detect::MentalHealth::new(&config);
    let lexicon = Lexicon::new(&config);
    let corpus = [include_str!("../../data/mh-corpus.tsv"), include_str!("../../data/mh-corpus-holdout.tsv")];
    let notes: Vec<&str> = corpus.iter().flat_map(|c| c.lines().skip(1)).filter_map(|l| l.splitn(3, '\t').nth(2)).collect();
    let rounds = 200_000 / notes.len() + 1;
    let total = rounds * notes.len();
    let (mut all, mut alone) = (Vec::new(), Vec::new());
    let mut flagged = 0;
    // Interleaved, so both see the same machine.
    for _ in 0..3 {
        let start = Instant::now();
        flagged = 0;
        for _ in 0..rounds {
            for n in &notes {
                flagged += usize::from(detector.assess(Some(n), None, &[]).severity.is_some());
            }
        }
        all.push(total as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let mut hits = 0;
        for _ in 0..rounds {
            for n in &notes {
                hits += lexicon.scan(n).len();
            }
        }
        std::hint::black_box(hits);
        alone.push(total as f64 / start.elapsed().as_secs_f64());
    }
    let (rate, base) = (median(all), median(alone));
    report.add(
        "mental health: notes assessed per second, three layers (target 150,000)",
        rate,
        "notes/s",
        &format!("{flagged} flagged per run; {:.2} of the lexicon alone", rate / base),
    );
    report.add("baseline: notes scanned per second, lexicon alone", base, "notes/s", "");
}

/// Parsing and validating events (number normalised and pseudonymised). Baseline: serde_json
/// parsing the same payloads into a generic value.
pub(crate) fn parse(report: &mut Report, events: &[String]) {
    let ctx = ingest();
    let now = Utc::now() + Duration::days(1);
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let ok = events.iter().filter(|e| CallEvent::parse(e.as_bytes(), &ctx, now).is_ok()).count();
        assert_eq!(ok, events.len());
        runs.push(events.len() as f64 / start.elapsed().as_secs_f64());
    }
    let mut base = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let ok = events.iter().filter(|e| serde_json::from_str::<serde_json::Value>(e).is_ok()).count();
        std::hint::black_box(ok);
        base.push(events.len() as f64 / start.elapsed().as_secs_f64());
    }
    let rate = median(runs);
    let base_rate = median(base);
    report.add("ingest: events parsed and validated per second", rate, "events/s", "number normalised to E.164 and pseudonymised");
    report.add(
        "baseline: serde_json::Value parse per second",
        base_rate,
        "events/s",
        &format!("ingest at {:.2} of baseline", rate / base_rate),
    );
}
