//! `lantern simulate`: realistic synthetic contact-centre traffic, seeded so runs repeat.
//!
//! About 2,200 calls a day for one force (38% on 999, 62% on 101), on a daily curve that peaks
//! in the evening. Each call is offered, then answered (after times around the 10 s and 40 s
//! targets) or abandoned, sometimes updated with more notes, then closed. Callers follow a heavy
//! tail: most call once, a few call very often; a few addresses are communal (hostels, care
//! homes). Notes come from the labelled corpus, mental-health related for about 12% of calls.
//! Frequent callers have busy spells that fade, and the busiest are referred to early action
//! each week and call less from then on ([`pool`]).

pub mod pool;

use chrono::{DateTime, Duration, Utc};
use pool::Pool;
pub use pool::{ReferralParams, SimReferral};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const CORPUS: &str = include_str!("../../../../tests/data/mh-corpus.tsv");
const DIVISIONS: [&str; 5] = ["North", "South", "East", "West", "Central"];
/// Relative call volume by hour of day: low at 4-6 am, peaking 6-10 pm.
const HOURLY: [f64; 24] =
    [3.2, 2.6, 2.1, 1.7, 1.4, 1.4, 1.8, 2.6, 3.4, 4.0, 4.4, 4.6, 4.8, 4.8, 4.8, 5.0, 5.3, 5.7, 6.1, 6.4, 6.5, 6.2, 5.3, 4.2];

#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    pub calls_per_day: f64,
    pub mental_health_share: f64,
    /// Distinct callers who call again and again (the heavy tail), as a pool.
    pub frequent_callers: usize,
    /// Referrals to early action among the frequent callers, and their effect.
    pub referral: ReferralParams,
}

impl Default for Params {
    fn default() -> Self {
        Params { seed: 7, calls_per_day: 2200.0, mental_health_share: 0.12, frequent_callers: 3000, referral: ReferralParams::default() }
    }
}

/// One event ready to publish: its topic, time and JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimEvent {
    pub at: DateTime<Utc>,
    pub seq: u64,
    pub topic: String,
    pub payload: String,
}

/// Generates events in time order from `start`.
pub struct Simulator {
    rng: ChaCha8Rng,
    params: Params,
    next_call_at: DateTime<Utc>,
    call_seq: u64,
    event_seq: u64,
    pending: BinaryHeap<Reverse<SimEvent>>,
    pool: Pool,
    mh_notes: Vec<&'static str>,
    other_notes: Vec<&'static str>,
    prefix: String,
}

impl Simulator {
    pub fn new(params: Params, start: DateTime<Utc>) -> Simulator {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let pool = Pool::new(params.frequent_callers, params.referral, start);
        let (mut mh_notes, mut other_notes) = (Vec::new(), Vec::new());
        for line in CORPUS.lines().skip(1) {
            let mut cols = line.splitn(3, '\t');
            match (cols.next(), cols.nth(1)) {
                (Some("1"), Some(note)) => mh_notes.push(note),
                (Some(_), Some(note)) => other_notes.push(note),
                _ => {}
            }
        }
        let prefix = format!("SIM{:04X}", rng.gen::<u16>());
        let mut sim = Simulator {
            rng,
            params,
            next_call_at: start,
            call_seq: 0,
            event_seq: 0,
            pending: BinaryHeap::new(),
            pool,
            mh_notes,
            other_notes,
            prefix,
        };
        sim.next_call_at = start + sim.gap(start);
        sim
    }

    /// Time to the next call: exponential around the hour's rate.
    fn gap(&mut self, at: DateTime<Utc>) -> Duration {
        let hour = at.format("%H").to_string().parse::<usize>().unwrap_or(12);
        let mean_weight = HOURLY.iter().sum::<f64>() / 24.0;
        let per_second = self.params.calls_per_day / 86_400.0 * HOURLY[hour] / mean_weight;
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        Duration::milliseconds(((-u.ln() / per_second) * 1000.0) as i64 + 1)
    }

    /// The early-action referrals made so far: the truth the impact report should find.
    pub fn referrals(&self) -> &[SimReferral] {
        self.pool.referrals()
    }

    /// The next event in time order.
    pub fn next_event(&mut self) -> SimEvent {
        while self.pending.peek().is_none_or(|Reverse(e)| e.at > self.next_call_at) {
            let at = self.next_call_at;
            self.new_call(at);
            self.next_call_at = at + self.gap(at);
        }
        self.pending.pop().map(|Reverse(e)| e).unwrap_or_else(|| unreachable!("a call was just queued"))
    }

    fn push(&mut self, at: DateTime<Utc>, topic: &str, payload: serde_json::Value) {
        self.event_seq += 1;
        self.pending.push(Reverse(SimEvent { at, seq: self.event_seq, topic: topic.to_string(), payload: payload.to_string() }));
    }

    fn new_call(&mut self, at: DateTime<Utc>) {
        self.call_seq += 1;
        let rng = &mut self.rng;
        let emergency = rng.gen_bool(0.38);
        let channel = if emergency { "999" } else { "101" };
        let division = DIVISIONS[rng.gen_range(0..DIVISIONS.len())];
        let call_id = format!("{}-{}-{:07}", self.prefix, at.format("%Y%m%d"), self.call_seq);
        // Caller: 45% from the heavy tail, a few from communal addresses, the rest one-off.
        let r: f64 = rng.gen();
        let frequent = if r < 0.45 { self.pool.sample(at, rng) } else { None };
        let (number, address, communal) = if let Some(k) = frequent {
            (Some(Pool::number(k)), Some(Pool::address(k)), false)
        } else if (0.45..0.48).contains(&r) {
            let home = rng.gen_range(0..25);
            (Some(format!("0113 496 {:04}", 1000 + rng.gen_range(0..4000))), Some(format!("UPRN-COMMUNAL-{home:03}")), true)
        } else if (0.48..0.52).contains(&r) {
            (None, None, false) // withheld and no address
        } else {
            (
                Some(format!("+44 7{:09}", rng.gen_range(0..1_000_000_000u64))),
                Some(format!("UPRN-{:09}", rng.gen_range(0..400_000_000u64))),
                false,
            )
        };
        let age_band = if rng.gen_bool(0.05) {
            "under_18"
        } else if rng.gen_bool(0.9) {
            "adult"
        } else {
            "unknown"
        };
        let mental_health = rng.gen_bool(self.params.mental_health_share);
        let notes = if mental_health {
            self.mh_notes[rng.gen_range(0..self.mh_notes.len())]
        } else {
            self.other_notes[rng.gen_range(0..self.other_notes.len())]
        };
        let mut caller = serde_json::json!({
            "presentation": if number.is_some() { "allowed" } else { "withheld" },
            "communal_address": communal,
            "age_band": age_band,
        });
        if let Some(n) = &number {
            caller["number"] = n.clone().into();
        }
        if let Some(a) = &address {
            caller["address_id"] = a.clone().into();
        }
        let incident = serde_json::json!({
            "type": if mental_health { "CONCERN_FOR_SAFETY" } else { ["ASB", "THEFT", "RTC", "DOMESTIC", "SUSPICIOUS"][rng.gen_range(0..5)] },
            "grade": if emergency { "immediate" } else { "standard" },
        });
        let topic = format!("contact-centre/calls/{division}");
        let base = |kind: &str, n: u32, when: DateTime<Utc>| {
            serde_json::json!({
                "event_id": format!("{call_id}-{n}"), "call_id": call_id, "kind": kind,
                "occurred_at": when.to_rfc3339_opts(chrono::SecondsFormat::Millis, false), "channel": channel, "division": division,
                "caller": caller, "incident": incident,
            })
        };
        let mut offered = base("offered", 0, at);
        offered["notes"] = "".into();
        // Answer times: 999 mostly inside 10 s, 101 around 40 s with a long tail.
        let abandon = rng.gen_bool(if emergency { 0.02 } else { 0.10 });
        let wait_s: f64 = if emergency {
            (rng.gen_range(0.0f64..1.0).powf(2.0) * 14.0) + 1.0
        } else {
            -rng.gen_range(f64::EPSILON..1.0f64).ln() * 35.0 + 3.0
        };
        let answered_at = at + Duration::milliseconds((wait_s * 1000.0) as i64);
        let close_at = answered_at + Duration::seconds(rng.gen_range(180..1200));
        let mut events = vec![(at, offered)];
        if abandon {
            events.push((answered_at, base("abandoned", 1, answered_at)));
        } else {
            let mut answered = base("answered", 1, answered_at);
            answered["notes"] = notes.into();
            events.push((answered_at, answered));
            if rng.gen_bool(0.25) {
                let upd_at = answered_at + Duration::seconds(rng.gen_range(30..170));
                let mut updated = base("updated", 2, upd_at);
                updated["notes"] = format!("{notes} - further info from caller").into();
                events.push((upd_at, updated));
            }
            events.push((close_at, base("closed", 3, close_at)));
        }
        for (when, payload) in events {
            self.push(when, &topic, payload);
        }
    }
}

/// `lantern simulate` arguments.
pub struct Args {
    pub rate: f64,
    pub duration: lantern_shared::Span,
    pub seed: u64,
    pub calls_per_day: f64,
    pub referral: ReferralParams,
    pub out: Option<std::path::PathBuf>,
    pub config: std::path::PathBuf,
}

/// Writes `span` of simulated traffic ending at `end` as JSON lines; returns the event count.
pub fn write_jsonl(params: Params, end: DateTime<Utc>, span: Duration, out: &mut dyn std::io::Write) -> std::io::Result<u64> {
    let mut sim = Simulator::new(params, end - span);
    let mut n = 0;
    loop {
        let e = sim.next_event();
        if e.at > end {
            return Ok(n);
        }
        writeln!(out, "{}", e.payload)?;
        n += 1;
    }
}

pub fn main(args: Args) -> std::process::ExitCode {
    use std::process::ExitCode;
    lantern_shared::runtime::telemetry::init_tracing();
    if !(args.rate > 0.0 && args.rate <= 100_000.0) {
        eprintln!("--rate must be above 0 and at most 100000");
        return ExitCode::FAILURE;
    }
    if !(0.0..=1.0).contains(&args.referral.effect) {
        eprintln!("--referral-effect must be between 0 and 1");
        return ExitCode::FAILURE;
    }
    let params = Params { seed: args.seed, calls_per_day: args.calls_per_day, referral: args.referral, ..Params::default() };
    let span = Duration::milliseconds((args.duration.millis() as f64 * args.rate) as i64);
    if let Some(path) = &args.out {
        let result = std::fs::File::create(path).and_then(|f| {
            let mut w = std::io::BufWriter::new(f);
            let n = write_jsonl(params, Utc::now(), span, &mut w)?;
            std::io::Write::flush(&mut w)?;
            Ok(n)
        });
        return match result {
            Ok(n) => {
                eprintln!(
                    "wrote {n} events ({} of traffic) to {}",
                    lantern_shared::Span::from_millis(span.num_milliseconds()),
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let config = match lantern_shared::Config::load(&args.config) {
        Ok(c) => c,
        Err(p) => {
            eprint!("{}: {p}", args.config.display());
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(publish(params, &config, args.rate, args.duration)) {
        Ok(n) => {
            eprintln!("published {n} events");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("simulate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Where events go under `mqtt.calls_topic`: `contact-centre/calls/#` publishes to
/// `contact-centre/calls/<division>`; a topic without a wildcard is used as it is.
fn topic_for(calls_topic: &str, simulated: &str) -> String {
    match calls_topic.strip_suffix("/#") {
        Some(prefix) => format!("{prefix}/{}", simulated.rsplit('/').next().unwrap_or("unknown")),
        None if !calls_topic.contains('+') && !calls_topic.ends_with('#') => calls_topic.to_string(),
        None => simulated.to_string(),
    }
}

/// Publishes at `rate` times the natural pace for `duration`, to the calls topic of `config`.
/// The simulated clock starts far enough back that it reaches the wall clock exactly at the
/// end, so no event is in the future.
pub async fn publish(params: Params, config: &lantern_shared::Config, rate: f64, duration: lantern_shared::Span) -> anyhow::Result<u64> {
    use rumqttc::{Event, Packet, QoS};
    let id = format!("lantern-simulate-{}", std::process::id());
    // The first broker of the list, with the same account and TLS settings as the services.
    let mut options = lantern_shared::runtime::mqtt::account::client_options(&config.mqtt, &id).map_err(anyhow::Error::msg)?.remove(0);
    options.set_clean_session(true).set_manual_acks(false);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
    let (acks_tx, acks) = tokio::sync::watch::channel(0u64);
    let poller = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    n += 1;
                    let _ = acks_tx.send(n);
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "broker connection lost; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    });
    let real = std::time::Duration::from_millis(duration.millis().max(0) as u64);
    let now = Utc::now();
    let start = now - Duration::milliseconds(((rate - 1.0) * real.as_millis() as f64) as i64);
    let mut sim = Simulator::new(params, start);
    let began = tokio::time::Instant::now();
    let mut published = 0u64;
    loop {
        let e = sim.next_event();
        let due = std::time::Duration::from_millis((((e.at - start).num_milliseconds().max(0)) as f64 / rate) as u64);
        if due > real {
            break;
        }
        tokio::time::sleep_until(began + due).await;
        client.publish(topic_for(&config.mqtt.calls_topic, &e.topic), QoS::AtLeastOnce, false, e.payload.into_bytes()).await?;
        published += 1;
    }
    let mut acks = acks;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), acks.wait_for(|n| *n >= published)).await;
    client.disconnect().await?;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), poller).await;
    Ok(published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_and_a_day_looks_like_a_force() {
        let start = DateTime::parse_from_rfc3339("2026-11-01T00:00:00+00:00").map(|t| t.with_timezone(&Utc)).unwrap();
        let take = |seed| {
            let mut s = Simulator::new(Params { seed, ..Params::default() }, start);
            (0..500).map(|_| s.next_event().payload).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));

        let mut s = Simulator::new(Params::default(), start);
        let end = start + Duration::days(1);
        let (mut calls, mut emergency, mut evening, mut night, mut last) = (0, 0, 0, 0, start);
        loop {
            let e = s.next_event();
            assert!(e.at >= last, "events come in time order");
            last = e.at;
            if e.at >= end {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
            if v["kind"] == "offered" {
                calls += 1;
                emergency += usize::from(v["channel"] == "999");
                let h: u32 = e.at.format("%H").to_string().parse().unwrap();
                evening += usize::from((18..22).contains(&h));
                night += usize::from((3..7).contains(&h));
            }
        }
        assert!((1900..2500).contains(&calls), "{calls} calls in a day");
        let share = emergency as f64 / calls as f64;
        assert!((0.33..0.43).contains(&share), "999 share {share}");
        assert!(evening > 2 * night, "evening {evening} vs night {night}");
    }
}
