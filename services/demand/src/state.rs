//! Demand state: pure code, time passed in. Changes for a batch are staged in a [`Scratch`]
//! and applied only after the batch is committed, so a retried batch never counts twice.

use lantern_shared::domain::event::CallEvent;
use lantern_shared::domain::Channel;
use lantern_shared::domain::EventKind;
use lantern_shared::Span;
use std::collections::HashMap;

/// A metric change to make once the batch is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Received(&'static str),
    Rejected(&'static str),
    NewCall { channel: Channel, division: String },
    Answered { channel: Channel, seconds: f64 },
    Abandoned { channel: Channel },
}

/// One call as demand counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub call_id: String,
    pub first_ms: i64,
    pub channel: Channel,
    pub division: String,
    pub offered_ms: Option<i64>,
    pub answered_ms: Option<i64>,
    pub abandoned: bool,
}

/// Trailing windows over sorted event times.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    times: Vec<i64>,
}

impl Windows {
    pub fn insert(&mut self, ms: i64) {
        let at = self.times.partition_point(|t| *t <= ms);
        self.times.insert(at, ms);
    }
    /// Events with time in `(now - window, ...]`: events stamped slightly ahead still count as now.
    pub fn count_since(&self, from_ms: i64) -> usize {
        self.times.len() - self.times.partition_point(|t| *t <= from_ms)
    }
    fn prune(&mut self, before_ms: i64) {
        let n = self.times.partition_point(|t| *t < before_ms);
        self.times.drain(..n);
    }
}

pub struct DemandState {
    windows: Vec<Span>,
    max_divisions: usize,
    divisions: Vec<String>,
    calls: HashMap<String, CallRow>,
    by_label: HashMap<(Channel, String), Windows>,
    mental_health: Windows,
}

/// Staged changes for one batch.
#[derive(Default)]
pub struct Scratch {
    rows: HashMap<String, CallRow>,
    order: Vec<String>,
    new_divisions: Vec<String>,
    new_calls: Vec<(Channel, String, i64)>,
    new_mh: Vec<i64>,
}

impl DemandState {
    pub fn new(windows: Vec<Span>, max_divisions: usize) -> DemandState {
        DemandState {
            windows,
            max_divisions,
            divisions: Vec::new(),
            calls: HashMap::new(),
            by_label: HashMap::new(),
            mental_health: Windows::default(),
        }
    }

    /// How long calls are kept: the longest window and a day for late events.
    pub fn keep_ms(&self) -> i64 {
        self.windows.iter().map(|w| w.millis()).max().unwrap_or(0) + 86_400_000
    }

    pub fn set_windows(&mut self, windows: Vec<Span>, max_divisions: usize) {
        self.windows = windows;
        self.max_divisions = max_divisions;
    }

    pub fn restore_division(&mut self, d: String) {
        if !self.divisions.contains(&d) {
            self.divisions.push(d);
        }
    }

    /// Puts back a call the database holds, at start-up.
    pub fn restore_call(&mut self, row: CallRow) {
        self.by_label.entry((row.channel, row.division.clone())).or_default().times.push(row.first_ms);
        self.calls.insert(row.call_id.clone(), row);
    }

    pub fn restore_mental_health(&mut self, ms: i64) {
        self.mental_health.times.push(ms);
    }

    pub fn finish_restore(&mut self) {
        for w in self.by_label.values_mut() {
            w.times.sort_unstable();
        }
        self.mental_health.times.sort_unstable();
    }

    /// The (channel, division) pairs seen, for creating series at zero.
    pub fn labels(&self) -> Vec<(Channel, String)> {
        self.by_label.keys().cloned().collect()
    }

    pub fn known(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    pub fn begin(&self) -> Scratch {
        Scratch::default()
    }

    /// The label a division gets: its own while under `max_divisions`, else `other`.
    fn label(&self, scratch: &mut Scratch, division: Option<&str>) -> String {
        let d = division.filter(|d| !d.trim().is_empty()).unwrap_or("unknown");
        if self.divisions.iter().any(|x| x == d) || scratch.new_divisions.iter().any(|x| x == d) {
            return d.to_string();
        }
        if self.divisions.len() + scratch.new_divisions.len() < self.max_divisions {
            scratch.new_divisions.push(d.to_string());
            return d.to_string();
        }
        "other".to_string()
    }

    /// Stages one fresh (non-duplicate) event.
    pub fn stage(&self, scratch: &mut Scratch, ev: &CallEvent, effects: &mut Vec<Effect>) {
        let ms = ev.occurred_ms();
        let mut row = match scratch.rows.remove(&ev.call_id).or_else(|| self.calls.get(&ev.call_id).cloned()) {
            Some(r) => r,
            None => {
                let division = self.label(scratch, ev.division.as_deref());
                effects.push(Effect::NewCall { channel: ev.channel, division: division.clone() });
                scratch.new_calls.push((ev.channel, division.clone(), ms));
                CallRow {
                    call_id: ev.call_id.clone(),
                    first_ms: ms,
                    channel: ev.channel,
                    division,
                    offered_ms: None,
                    answered_ms: None,
                    abandoned: false,
                }
            }
        };
        let answered =
            |offered: i64, answered: i64| Effect::Answered { channel: row.channel, seconds: ((answered - offered).max(0)) as f64 / 1000.0 };
        match ev.kind {
            EventKind::Offered if row.offered_ms.is_none() => {
                row.offered_ms = Some(ms);
                if let Some(a) = row.answered_ms {
                    effects.push(answered(ms, a));
                }
            }
            EventKind::Answered if row.answered_ms.is_none() => {
                row.answered_ms = Some(ms);
                if let Some(o) = row.offered_ms {
                    effects.push(answered(o, ms));
                }
            }
            EventKind::Abandoned if !row.abandoned && row.answered_ms.is_none() => {
                row.abandoned = true;
                effects.push(Effect::Abandoned { channel: row.channel });
            }
            _ => {}
        }
        if !scratch.order.contains(&row.call_id) {
            scratch.order.push(row.call_id.clone());
        }
        scratch.rows.insert(row.call_id.clone(), row);
    }

    /// Puts a call the database holds (but memory had pruned) back in memory before staging.
    pub fn preload(&mut self, row: CallRow) {
        self.calls.entry(row.call_id.clone()).or_insert(row);
    }

    pub fn apply(&mut self, scratch: Scratch) {
        for d in scratch.new_divisions {
            self.restore_division(d);
        }
        for (channel, division, ms) in scratch.new_calls {
            self.by_label.entry((channel, division)).or_default().insert(ms);
        }
        for ms in scratch.new_mh {
            self.mental_health.insert(ms);
        }
        for (id, row) in scratch.rows {
            self.calls.insert(id, row);
        }
    }

    /// `lantern_calls_window` values: (window, channel, division, calls).
    pub fn window_counts(&self, now_ms: i64) -> Vec<(String, Channel, String, usize)> {
        let mut out = Vec::new();
        for w in &self.windows {
            for ((channel, division), times) in &self.by_label {
                out.push((w.to_string(), *channel, division.clone(), times.count_since(now_ms - w.millis())));
            }
        }
        out
    }

    pub fn mental_health_counts(&self, now_ms: i64) -> Vec<(String, usize)> {
        self.windows.iter().map(|w| (w.to_string(), self.mental_health.count_since(now_ms - w.millis()))).collect()
    }

    pub fn prune(&mut self, before_ms: i64) {
        self.calls.retain(|_, c| c.first_ms >= before_ms);
        for w in self.by_label.values_mut() {
            w.prune(before_ms);
        }
        self.mental_health.prune(before_ms);
    }
}

impl Scratch {
    /// Rows to upsert and divisions to record.
    pub fn dirty(&self) -> (Vec<&CallRow>, Vec<String>) {
        (self.order.iter().filter_map(|id| self.rows.get(id)).collect(), self.new_divisions.clone())
    }

    pub fn mental_health(&mut self, ms: i64) {
        self.new_mh.push(ms);
    }
}

#[cfg(test)]
mod tests;
