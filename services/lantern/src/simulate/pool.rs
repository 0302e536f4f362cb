//! The simulation's frequent callers: a heavy tail (the k-th calls about 1/k as often as the
//! first) whose members have busy spells that fade day by day back to their usual rate, so the
//! busiest callers of any month call less the month after on their own (regression to the
//! mean). Once a week the busiest callers not yet referred are referred to early action, and
//! from then on call less by a set effect. Those referrals are the known truth that a test, a
//! demo or a force trying the impact report checks it against.

use chrono::{DateTime, Duration, Utc};
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;

/// How referrals change the simulated callers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferralParams {
    /// Busiest callers (over the last 30 days) referred each simulated week; 0 for none.
    pub per_week: usize,
    /// How much a referred caller's call rate falls from the referral on (0.5 halves it).
    pub effect: f64,
    /// The share of a busy or quiet spell that fades each day (0.1: it halves in about a week).
    pub regression: f64,
}

impl Default for ReferralParams {
    fn default() -> Self {
        ReferralParams { per_week: 3, effect: 0.5, regression: 0.1 }
    }
}

/// A simulated referral: who (as the events carry them) and from when.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReferral {
    pub caller: usize,
    pub number: String,
    pub address_id: String,
    pub at: DateTime<Utc>,
}

/// The daily step of a caller's log rate (times about N(0, 1/3)).
const SPELL_STEP: f64 = 0.55;
/// "Recent" calls decay with a 30-day time constant.
const RECENT_DECAY: f64 = 0.967_216; // e^(-1/30)

pub struct Pool {
    base: Vec<f64>,
    heat: Vec<f64>,
    factor: Vec<f64>,
    recent: Vec<f64>,
    considered: Vec<bool>,
    index: WeightedIndex<f64>,
    params: ReferralParams,
    next_day: DateTime<Utc>,
    day: u64,
    referrals: Vec<SimReferral>,
    passed_over: Vec<SimReferral>,
}

impl Pool {
    pub fn new(size: usize, params: ReferralParams, start: DateTime<Utc>) -> Pool {
        let base: Vec<f64> = (1..=size.max(1)).map(|k| 1.0 / (k as f64).powf(0.9)).collect();
        let index = WeightedIndex::new(&base).unwrap_or_else(|_| unreachable!("weights are positive"));
        let n = base.len();
        Pool {
            base,
            heat: vec![0.0; n],
            factor: vec![1.0; n],
            recent: vec![0.0; n],
            considered: vec![false; n],
            index,
            params,
            next_day: start,
            day: 0,
            referrals: Vec::new(),
            passed_over: Vec::new(),
        }
    }

    pub fn number(k: usize) -> String {
        format!("07700 {:06}", 100_000 + k)
    }

    pub fn address(k: usize) -> String {
        format!("UPRN-{:09}", 500_000 + k)
    }

    /// The referrals made so far, in time order.
    pub fn referrals(&self) -> &[SimReferral] {
        &self.referrals
    }

    /// Callers as busy as the referred ones when they were chosen, but not referred: the
    /// comparison group of the simulated truth.
    pub fn passed_over(&self) -> &[SimReferral] {
        &self.passed_over
    }

    /// The frequent caller of a call at `at`, or none when the caller it fell to has been
    /// referred and, by the effect, does not make this call (then a one-off caller makes it, so
    /// referrals do not push calls onto the other frequent callers).
    pub fn sample(&mut self, at: DateTime<Utc>, rng: &mut impl Rng) -> Option<usize> {
        while at >= self.next_day {
            self.new_day(rng);
        }
        let k = self.index.sample(rng);
        if self.factor[k] < 1.0 && !rng.gen_bool(self.factor[k].clamp(0.0, 1.0)) {
            return None;
        }
        self.recent[k] += 1.0;
        Some(k)
    }

    fn new_day(&mut self, rng: &mut impl Rng) {
        // Each caller's rate wanders around its usual one (a mean-reverting walk in log terms):
        // busy and quiet spells of a week or two, pulled back by `regression` each day.
        let keep = 1.0 - self.params.regression.clamp(0.0, 1.0);
        for k in 0..self.base.len() {
            let noise: f64 = (0..4).map(|_| rng.gen::<f64>()).sum::<f64>() - 2.0; // about N(0, 1/3)
            self.heat[k] = self.heat[k] * keep + SPELL_STEP * noise;
            self.recent[k] *= RECENT_DECAY;
        }
        if self.day % 7 == 6 && self.day >= 27 && self.params.per_week > 0 {
            // A team with room for `per_week` a week: of the twice as many busiest callers not
            // yet considered, half at random are referred; the other half are the comparison
            // group that the truth is measured against.
            let mut busiest: Vec<usize> = (0..self.base.len()).filter(|k| !self.considered[*k]).collect();
            busiest.sort_by(|a, b| self.recent[*b].total_cmp(&self.recent[*a]));
            busiest.truncate(2 * self.params.per_week);
            for (i, k) in busiest.iter().enumerate() {
                self.considered[*k] = true;
                let left = busiest.len() - i;
                let to_refer = self.params.per_week.saturating_sub(self.referrals.iter().filter(|r| r.at == self.next_day).count());
                let who = SimReferral { caller: *k, number: Pool::number(*k), address_id: Pool::address(*k), at: self.next_day };
                if rng.gen_range(0..left) < to_refer {
                    self.factor[*k] = 1.0 - self.params.effect.clamp(0.0, 1.0);
                    self.referrals.push(who);
                } else {
                    self.passed_over.push(who);
                }
            }
        }
        let weights = (0..self.base.len()).map(|k| (self.base[k] * self.heat[k].exp()).max(1e-12));
        self.index = WeightedIndex::new(weights).unwrap_or_else(|_| unreachable!("weights are positive"));
        self.next_day += Duration::days(1);
        self.day += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Calls in `[from, to)` of caller `k`.
    fn between(by_caller: &std::collections::HashMap<usize, Vec<i64>>, k: usize, from: i64, to: i64) -> usize {
        by_caller.get(&k).map(|v| v.iter().filter(|t| (from..to).contains(*t)).count()).unwrap_or(0)
    }

    /// (cohort change, comparison change, cohort size, comparison size) for one seed.
    fn truth(seed: u64) -> (f64, f64, usize, usize) {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00+00:00").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut pool = Pool::new(3000, ReferralParams::default(), start);
        // 1,000 calls a day from the tail for 300 days.
        let mut calls = Vec::new();
        for i in 0..300_000i64 {
            let at = start + Duration::milliseconds(i * 86_400);
            if let Some(k) = pool.sample(at, &mut rng) {
                calls.push((i, k));
            }
        }
        let mut by_caller: std::collections::HashMap<usize, Vec<i64>> = std::collections::HashMap::new();
        for (t, k) in &calls {
            by_caller.entry(*k).or_default().push(*t);
        }
        let day = 1000; // one day in call units
        let window = 30 * day;
        let change = |members: &[(usize, i64)]| {
            let before: usize = members.iter().map(|(k, t)| between(&by_caller, *k, t - window, *t)).sum();
            let after: usize = members.iter().map(|(k, t)| between(&by_caller, *k, *t, t + window)).sum();
            (after as f64 - before as f64) / before as f64
        };
        let in_period = |t: i64| (60 * day..240 * day).contains(&t);
        let to_units = |at: DateTime<Utc>| (at - start).num_milliseconds() / 86_400;
        let cohort: Vec<(usize, i64)> =
            pool.referrals().iter().map(|r| (r.caller, to_units(r.at))).filter(|(_, t)| in_period(*t)).collect();
        let comparison: Vec<(usize, i64)> =
            pool.passed_over().iter().map(|r| (r.caller, to_units(r.at))).filter(|(_, t)| in_period(*t)).collect();
        (change(&cohort), change(&comparison), cohort.len(), comparison.len())
    }

    #[test]
    fn referred_callers_fall_by_the_effect_beyond_what_the_unreferred_fall_back_by_themselves() {
        let runs: Vec<(f64, f64, usize, usize)> = (1..=4).map(truth).collect();
        for (c, k, nc, nk) in &runs {
            assert!(*nc >= 20 && *nk >= 20, "{nc} referred, {nk} compared");
            assert!(c < k, "referred callers fall further: cohort {c:.3}, comparison {k:.3}");
        }
        let drift = runs.iter().map(|(_, k, _, _)| k).sum::<f64>() / runs.len() as f64;
        assert!(drift < -0.02, "the busiest callers not referred fall back toward the mean by themselves: {runs:?}");
        // The effect is on the rate: after/before for the referred is about (1 - effect) times
        // that of the comparison group.
        let ratio = runs.iter().map(|(c, k, _, _)| (1.0 + c) / (1.0 + k)).sum::<f64>() / runs.len() as f64;
        assert!((0.4..0.65).contains(&ratio), "the measured effect is about the simulated one: {runs:?}, ratio {ratio:.3}");
    }
}
