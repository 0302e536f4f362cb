//! `[retention]`: how long each kind of record is kept (SPEC section 10). Every kind has a key;
//! the service that owns the records prunes them on its own schedule, by its clock. Why each
//! default is what it is: the README's "Data protection" section.

use super::Checks;
use crate::domain::Span;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Processed event ids, to recognise a repeated event (`shared_processed_events`).
    pub event_ids: Span,
    /// How far past the longest rule window the flagger holds calls in memory.
    pub history_margin: Span,
    /// Calls counted for repeat callers (`flagger_calls`), by event time.
    pub calls: Span,
    /// Flags raised (`flagger_repeat_flags`, `flagger_mh_flags`, and desk flags not closed).
    pub flags: Span,
    /// Flag messages once the broker has them (`flagger_flag_messages`).
    pub flag_messages: Span,
    /// The desk's live-stream history (`desk_updates`).
    pub desk_updates: Span,
    /// Closed flags with their outcome and note (`desk_flags`), from closing.
    pub outcomes: Span,
    /// Nurses' verdicts on flags (`desk_feedback`).
    pub feedback: Span,
    /// Referrals to early-action teams, from their last change.
    pub referrals: Span,
    /// Desk sign-in sessions, from sign-in (a session ends long before).
    pub sessions: Span,
    /// The audit log.
    pub audit: Span,
    /// Demand's calls (answer times, abandonment) behind its monthly figures (`demand_calls`).
    pub demand_calls: Span,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            event_ids: Span::from_days(30),
            history_margin: Span::from_days(7),
            calls: Span::from_days(400),
            flags: Span::from_days(400),
            flag_messages: Span::from_days(7),
            desk_updates: Span::from_days(30),
            outcomes: Span::from_days(400),
            feedback: Span::from_days(400),
            referrals: Span::from_days(730),
            sessions: Span::from_days(1),
            audit: Span::from_days(2190),
            demand_calls: Span::from_days(400),
        }
    }
}

impl RetentionConfig {
    /// Every key with its value, in file order.
    pub fn periods(&self) -> [(&'static str, Span); 12] {
        [
            ("event_ids", self.event_ids),
            ("history_margin", self.history_margin),
            ("calls", self.calls),
            ("flags", self.flags),
            ("flag_messages", self.flag_messages),
            ("desk_updates", self.desk_updates),
            ("outcomes", self.outcomes),
            ("feedback", self.feedback),
            ("referrals", self.referrals),
            ("sessions", self.sessions),
            ("audit", self.audit),
            ("demand_calls", self.demand_calls),
        ]
    }

    /// `longest_window` and `cooldown` come from `[repeat_callers]`: calls must outlast the
    /// longest window (or rules would count too few), and flags the window and cooldown (or a
    /// flag pruned early would be raised again).
    pub(crate) fn check(&self, c: &mut Checks<'_>, longest_window: Span, cooldown: Span) {
        for (key, span) in self.periods() {
            if key != "history_margin" && span.millis() <= 0 {
                c.err(format!("retention.{key}"), "must be longer than 0s");
            }
        }
        let history = longest_window.millis() + self.history_margin.millis();
        if self.calls.millis() < history {
            c.err(
                "retention.calls",
                format!(
                    "is {}; it must be at least the longest rule window plus retention.history_margin ({})",
                    self.calls,
                    Span::from_millis(history)
                ),
            );
        }
        let flags = history + cooldown.millis();
        if self.flags.millis() < flags {
            c.err(
                "retention.flags",
                format!("is {}; it must be at least the longest rule window, retention.history_margin and repeat_callers.cooldown together ({})", self.flags, Span::from_millis(flags)),
            );
        }
    }
}
