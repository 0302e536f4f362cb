//! Repeat-caller detection (SPEC section 3): pure code, no I/O, time passed in.
//!
//! Each identity (a pseudonymised phone number or address) holds the event times of its
//! counted calls, sorted, packed with the few call attributes rule filters need. A new call is
//! inserted at its event time, so late and out-of-order calls land where they belong, and each
//! rule counts the identity's calls in `(t - window, t]` with two binary searches.

use lantern_shared::config::Config;
use lantern_shared::domain::pseudonym::CallerRef;
use lantern_shared::domain::{AgeBand, Channel, Identity, Severity};
use lantern_shared::Span;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const ATTR_BITS: u32 = 5;

/// The attributes of a call that rule filters look at, packed in five bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallAttrs(u8);

impl CallAttrs {
    pub fn new(channel: Channel, communal: Option<bool>, age: Option<AgeBand>) -> CallAttrs {
        let ch = match channel {
            Channel::Emergency => 0,
            Channel::NonEmergency => 1,
            Channel::Online => 2,
            Channel::Other => 3,
        };
        let communal = u8::from(communal == Some(true));
        let age = match age {
            Some(AgeBand::Under18) => 0,
            Some(AgeBand::Adult) => 1,
            Some(AgeBand::Unknown) | None => 2,
        };
        CallAttrs(ch | communal << 2 | age << 3)
    }
    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn from_bits(b: u8) -> CallAttrs {
        CallAttrs(b & 0x1f)
    }
}

/// A rule ready to evaluate: filters turned into a mask over packed attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub identity: Identity,
    pub window: Span,
    pub min_calls: u32,
    pub severity: Severity,
    /// Bit `n` set when attribute value `n` (0..32) passes every filter.
    passes: u32,
}

impl Rule {
    fn passes(&self, attrs: u8) -> bool {
        self.passes & (1 << attrs) != 0
    }
    fn is_unfiltered(&self) -> bool {
        self.passes == u32::MAX
    }
}

/// The repeat-caller settings in force: rules, cooldown, merging, exclusions.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub cooldown: Span,
    pub merge_within: Span,
    pub excluded_phones: HashSet<CallerRef>,
    pub excluded_addresses: HashSet<CallerRef>,
}

impl Rules {
    /// Compiles the config; exclusions are normalised and pseudonymised with the same
    /// code that handles incoming numbers, so any format of an excluded number matches.
    pub fn from_config(config: &Config, ingest: &lantern_shared::domain::ingest::IngestContext) -> Rules {
        let rc = &config.repeat_callers;
        let rules = rc
            .rules
            .iter()
            .map(|r| {
                let mut passes = 0u32;
                for bits in 0u8..32 {
                    let ch = Channel::ALL[usize::from(bits & 3)];
                    let communal = bits >> 2 & 1 == 1;
                    let age = match bits >> 3 {
                        0 => AgeBand::Under18,
                        1 => AgeBand::Adult,
                        _ => AgeBand::Unknown,
                    };
                    let ok = r.channels.as_ref().is_none_or(|c| c.contains(&ch))
                        && r.communal_address.is_none_or(|want| want == communal)
                        && r.age_band.is_none_or(|want| want == age);
                    if ok && bits >> 3 < 3 {
                        passes |= 1 << bits;
                    }
                }
                let unfiltered = r.channels.is_none() && r.communal_address.is_none() && r.age_band.is_none();
                Rule {
                    name: r.name.clone(),
                    identity: r.identity,
                    window: r.window,
                    min_calls: r.min_calls.clamp(1, u32::MAX as i64) as u32,
                    severity: r.severity,
                    passes: if unfiltered { u32::MAX } else { passes },
                }
            })
            .collect();
        Rules {
            rules,
            cooldown: rc.cooldown,
            merge_within: rc.merge_within,
            excluded_phones: rc.exclude_numbers.iter().filter_map(|n| ingest.phone_ref(n)).collect(),
            excluded_addresses: rc.exclude_addresses.iter().map(|a| ingest.pseudonymizer.address(a)).collect(),
        }
    }

    pub fn longest_window(&self) -> Span {
        self.rules.iter().map(|r| r.window).max().unwrap_or(Span::ZERO)
    }
}

/// One counted call as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts {
    pub occurred_ms: i64,
    pub attrs: CallAttrs,
    pub phone: Option<CallerRef>,
    pub address: Option<CallerRef>,
}

pub use lantern_shared::domain::flag::{FlagStatus, RuleReason};

/// A flag to publish for one identity at one call.
#[derive(Debug, Clone, PartialEq)]
pub struct RepeatHit {
    pub identity: Identity,
    pub caller_ref: CallerRef,
    pub status: FlagStatus,
    pub flag_id: u128,
    /// When the flag was first raised (wall clock or, in replay, event time), in ms.
    pub raised_ms: i64,
    /// Event time of the call that raised it.
    pub t0_ms: i64,
    pub severity: Severity,
    pub reasons: Vec<RuleReason>,
}

/// What the engine did with a call: which identities it counted, and the flags to publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub counted_phone: Option<CallerRef>,
    pub counted_address: Option<CallerRef>,
    pub hits: Vec<RepeatHit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenFlag {
    flag_id: u128,
    t0_ms: i64,
    raised_ms: i64,
}

/// Every identity's counted calls, each `(event ms << 5) | attrs`, sorted ascending.
///
/// Most identities have a single call in the longest window. That call is kept in the table
/// itself; an identity with more keeps them in `many` and the table holds their index there,
/// top bit set. So a table entry is 24 bytes, and a one-call identity allocates nothing: the
/// table, sized to a power of two by the number of identities, is most of the memory held.
#[derive(Default)]
struct History {
    table: Map<u64>,
    many: Vec<Vec<u64>>,
    /// Places in `many` free for reuse.
    free: Vec<usize>,
}

/// Set in a table value that is an index into `many`; never set in a packed call.
const MANY: u64 = 1 << 63;

// The memory figure rests on this: a key and one word per identity.
const _: () = assert!(std::mem::size_of::<(Key, u64)>() == 24);

impl History {
    fn calls<'a>(many: &'a [Vec<u64>], slot: &'a u64) -> &'a [u64] {
        if slot & MANY == 0 {
            std::slice::from_ref(slot)
        } else {
            &many[(slot & !MANY) as usize]
        }
    }

    fn get(&self, k: &Key) -> &[u64] {
        self.table.get(k).map_or(&[], |slot| History::calls(&self.many, slot))
    }

    fn iter(&self) -> impl Iterator<Item = (&Key, &[u64])> {
        self.table.iter().map(|(k, slot)| (k, History::calls(&self.many, slot)))
    }

    /// Adds a call: where it belongs in time, or at the end when restoring (then
    /// [`History::settle`] sorts once). Returns the identity's calls, the new one included.
    fn add(&mut self, k: Key, packed: u64, in_order: bool) -> &[u64] {
        match self.table.entry(k) {
            Entry::Vacant(e) => std::slice::from_ref(e.insert(packed)),
            Entry::Occupied(mut e) => {
                let slot = *e.get();
                if slot & MANY == 0 {
                    let two = if in_order && packed < slot { vec![packed, slot] } else { vec![slot, packed] };
                    let i = match self.free.pop() {
                        Some(i) => {
                            self.many[i] = two;
                            i
                        }
                        None => {
                            self.many.push(two);
                            self.many.len() - 1
                        }
                    };
                    e.insert(i as u64 | MANY);
                    &self.many[i]
                } else {
                    let v = &mut self.many[(slot & !MANY) as usize];
                    if in_order {
                        v.insert(v.partition_point(|x| *x <= packed), packed);
                    } else {
                        v.push(packed);
                    }
                    v
                }
            }
        }
    }

    /// Sorts what was restored, and gives back room not needed.
    fn settle(&mut self) {
        for v in &mut self.many {
            v.sort_unstable();
            v.shrink_to_fit();
        }
    }

    /// Drops calls packed below `cut`, and identities left with none; returns how many calls.
    fn prune(&mut self, cut: u64) -> usize {
        let (many, free) = (&mut self.many, &mut self.free);
        let mut dropped = 0;
        self.table.retain(|_, slot| {
            if *slot & MANY == 0 {
                let keep = *slot >= cut;
                dropped += usize::from(!keep);
                return keep;
            }
            let i = (*slot & !MANY) as usize;
            let v = &mut many[i];
            let n = v.partition_point(|x| *x < cut);
            v.drain(..n);
            dropped += n;
            let keep = match v[..] {
                [] => false,
                [one] => {
                    *slot = one;
                    true
                }
                _ => return true,
            };
            *v = Vec::new();
            free.push(i);
            keep
        });
        dropped
    }
}

/// Keys are HMAC outputs, already uniformly random: hashing them again is wasted work.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

type Map<V> = HashMap<Key, V, BuildHasherDefault<PassThrough>>;

/// A pseudonym's 80 bits, and whether it is an address in the top bit: two words rather than a
/// `u128`, whose 16-byte alignment would pad each table entry to 32 bytes.
type Key = (u64, u64);

fn key(identity: Identity, r: CallerRef) -> Key {
    let v = r.to_u128();
    (v as u64, (v >> 64) as u64 | u64::from(identity == Identity::Address) << 63)
}

fn identity_of(k: &Key) -> Identity {
    if k.1 >> 63 == 1 {
        Identity::Address
    } else {
        Identity::Phone
    }
}

fn pack(ms: i64, attrs: CallAttrs) -> u64 {
    // Clamped so the top bit stays clear (see `MANY`): that is some 4.5 million years.
    (ms.clamp(0, (MANY >> (ATTR_BITS + 1)) as i64) as u64) << ATTR_BITS | u64::from(attrs.bits())
}

/// The history of counted calls per identity, and each identity's latest flag.
pub struct RepeatEngine {
    rules: Rules,
    ids: History,
    /// Few identities are flagged: their flags live apart, so the many that are not pay
    /// nothing for them.
    flags: Map<OpenFlag>,
    calls_held: usize,
}

impl RepeatEngine {
    pub fn new(rules: Rules) -> RepeatEngine {
        RepeatEngine { rules, ids: History::default(), flags: Map::default(), calls_held: 0 }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// New thresholds apply from the next call, using the history already held.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    pub fn calls_held(&self) -> usize {
        self.calls_held
    }

    pub fn identities(&self) -> usize {
        self.ids.table.len()
    }

    /// Counts a call seen for the first time and returns the flags it raises or updates.
    /// `new_flag_id` is asked for an id only when a flag is raised; `now_ms` stamps it.
    pub fn observe(&mut self, call: &CallFacts, now_ms: i64, new_flag_id: &mut dyn FnMut() -> u128) -> Observed {
        let mut out = Observed::default();
        let idents = [(Identity::Phone, call.phone), (Identity::Address, call.address)];
        for (identity, r) in idents {
            let Some(r) = r else { continue };
            let excluded = match identity {
                Identity::Phone => &self.rules.excluded_phones,
                Identity::Address => &self.rules.excluded_addresses,
            };
            if excluded.contains(&r) {
                continue;
            }
            let t = call.occurred_ms;
            let k = key(identity, r);
            let merge = self.rules.merge_within.millis();
            if merge > 0 && count_in(self.ids.get(&k), t - merge - 1, t, None) > 0 {
                continue;
            }
            let calls = self.ids.add(k, pack(t, call.attrs), true);
            self.calls_held += 1;
            match identity {
                Identity::Phone => out.counted_phone = Some(r),
                Identity::Address => out.counted_address = Some(r),
            }

            let mut reasons = Vec::new();
            let mut severity = None;
            for rule in self.rules.rules.iter().filter(|rule| rule.identity == identity) {
                if !rule.passes(call.attrs.bits()) {
                    continue;
                }
                let filter = if rule.is_unfiltered() { None } else { Some(rule) };
                let n = count_in(calls, t - rule.window.millis(), t, filter);
                if n >= rule.min_calls {
                    severity = severity.max(Some(rule.severity));
                    reasons.push(RuleReason {
                        rule: rule.name.clone(),
                        identity,
                        window: rule.window.to_string(),
                        calls: n,
                        min_calls: rule.min_calls,
                    });
                }
            }
            let Some(severity) = severity else { continue };
            let cooldown = self.rules.cooldown.millis();
            let (status, flag) = match self.flags.get(&k) {
                Some(f) if t < f.t0_ms + cooldown => (FlagStatus::Updated, *f),
                _ => {
                    let f = OpenFlag { flag_id: new_flag_id(), t0_ms: t, raised_ms: now_ms };
                    self.flags.insert(k, f);
                    (FlagStatus::Raised, f)
                }
            };
            out.hits.push(RepeatHit {
                identity,
                caller_ref: r,
                status,
                flag_id: flag.flag_id,
                raised_ms: flag.raised_ms,
                t0_ms: flag.t0_ms,
                severity,
                reasons,
            });
        }
        out
    }

    /// Puts back a counted call at start-up.
    pub fn restore_call(&mut self, identity: Identity, r: CallerRef, occurred_ms: i64, attrs: CallAttrs) {
        self.ids.add(key(identity, r), pack(occurred_ms, attrs), false);
        self.calls_held += 1;
    }

    /// Puts back a raised flag at start-up; the latest raise per identity is the one that counts.
    pub fn restore_flag(&mut self, identity: Identity, r: CallerRef, flag_id: u128, t0_ms: i64, raised_ms: i64) {
        let flag = OpenFlag { flag_id, t0_ms, raised_ms };
        self.flags
            .entry(key(identity, r))
            .and_modify(|f| {
                if f.t0_ms <= t0_ms {
                    *f = flag;
                }
            })
            .or_insert(flag);
    }

    /// Sorts what was restored; call once after the last `restore_*`.
    pub fn finish_restore(&mut self) {
        self.ids.settle();
    }

    /// Drops calls older than `before_ms`, and identities with nothing left to remember.
    pub fn prune(&mut self, before_ms: i64) -> usize {
        let cooldown = self.rules.cooldown.millis();
        let cut = pack(before_ms, CallAttrs(0));
        let dropped = self.ids.prune(cut);
        self.flags.retain(|_, f| f.t0_ms + cooldown >= before_ms);
        self.calls_held -= dropped;
        dropped
    }

    /// The event time of the oldest call held, if any: history is complete from here on.
    pub fn earliest_ms(&self) -> Option<i64> {
        self.ids.iter().filter_map(|(_, c)| c.first()).min().map(|v| (v >> ATTR_BITS) as i64)
    }

    /// For `lantern_repeat_callers{rule}`: identities whose count is at or over each rule now.
    pub fn at_or_over(&self, now_ms: i64) -> Vec<(String, usize)> {
        let mut counts = vec![0usize; self.rules.rules.len()];
        for (k, calls) in self.ids.iter() {
            let identity = identity_of(k);
            for (i, rule) in self.rules.rules.iter().enumerate() {
                if rule.identity != identity || calls.len() < rule.min_calls as usize {
                    continue;
                }
                let filter = if rule.is_unfiltered() { None } else { Some(rule) };
                if count_in(calls, now_ms - rule.window.millis(), now_ms, filter) >= rule.min_calls {
                    counts[i] += 1;
                }
            }
        }
        self.rules.rules.iter().map(|r| r.name.clone()).zip(counts).collect()
    }
}

/// Calls with event time in `(from_ms, to_ms]` that pass `filter` (all calls when `None`).
fn count_in(calls: &[u64], from_ms: i64, to_ms: i64, filter: Option<&Rule>) -> u32 {
    let lo = if from_ms < 0 { 0 } else { pack(from_ms + 1, CallAttrs(0)) };
    if to_ms < 0 {
        return 0;
    }
    let hi = pack(to_ms + 1, CallAttrs(0));
    let start = calls.partition_point(|v| *v < lo);
    let end = calls.partition_point(|v| *v < hi);
    match filter {
        None => (end.saturating_sub(start)) as u32,
        Some(rule) => calls[start..end.max(start)].iter().filter(|v| rule.passes((**v & 0x1f) as u8)).count() as u32,
    }
}

#[cfg(test)]
mod examples;
#[cfg(test)]
mod tests;
