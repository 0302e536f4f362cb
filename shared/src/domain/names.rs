//! The closed sets of names Lantern speaks in: channels, severities, roles, kinds of event and
//! flag, outcomes, verdicts. Each is written once, here, with its spelling on the wire, in config
//! and in metric labels, and has the same three things: `as_str`, `parse` and `ALL`.

/// Declares a closed set of names: the enum, `ALL` in declaration order (which is also the
/// order `Ord` follows), `as_str`, `parse`, `Display`, and serde as the names' text.
macro_rules! names {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* $variant),+
        }

        impl $name {
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, &[$($text),+]))
            }
        }
    };
}

names! {
    /// How a call reached the centre.
    pub enum Channel {
        Emergency = "999",
        NonEmergency = "101",
        Online = "online",
        Other = "other",
    }
}

names! {
    /// How urgent a flag or cue is; `info` marks a risk factor that never flags alone.
    pub enum Severity {
        Info = "info",
        Low = "low",
        Medium = "medium",
        High = "high",
    }
}

names! {
    /// What identifies a caller for the repeat-caller rules.
    pub enum Identity {
        Phone = "phone",
        Address = "address",
    }
}

names! {
    pub enum AgeBand {
        Under18 = "under_18",
        Adult = "adult",
        Unknown = "unknown",
    }
}

names! {
    pub enum Presentation {
        Allowed = "allowed",
        Withheld = "withheld",
        Unavailable = "unavailable",
    }
}

names! {
    /// What a call event says happened.
    pub enum EventKind {
        Offered = "offered",
        Answered = "answered",
        Abandoned = "abandoned",
        Updated = "updated",
        Closed = "closed",
    }
}

names! {
    pub enum FlagKind {
        RepeatCaller = "repeat_caller",
        MentalHealth = "mental_health",
    }
}

names! {
    pub enum FlagStatus {
        Raised = "raised",
        Updated = "updated",
    }
}

names! {
    /// What raised a mental-health reason (SPEC section 4).
    pub enum CueSource {
        Lexicon = "lexicon",
        Pattern = "pattern",
        Model = "model",
        Incident = "incident",
    }
}

names! {
    /// Who a desk user is.
    pub enum Role {
        Nurse = "nurse",
        Inspector = "inspector",
        EarlyAction = "early_action",
        Admin = "admin",
    }
}

names! {
    /// How a nurse closed a flag.
    pub enum Outcome {
        AdviceGiven = "advice_given",
        FaceToFace = "face_to_face",
        Referred = "referred",
        S136Avoided = "s136_avoided",
        NoAction = "no_action",
    }
}

names! {
    /// A nurse's verdict on a flag.
    pub enum Verdict {
        Useful = "useful",
        NotUseful = "not_useful",
        WrongPerson = "wrong_person",
    }
}

impl FlagKind {
    /// The topic below `mqtt.topic_root`: `flags/repeat-caller` or `flags/mental-health`.
    pub fn topic_suffix(self) -> &'static str {
        match self {
            FlagKind::RepeatCaller => "flags/repeat-caller",
            FlagKind::MentalHealth => "flags/mental-health",
        }
    }
}

/// The names of a set, joined for an error sentence: `useful, not_useful, wrong_person`.
pub fn listed<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_orders_as_declared() {
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert!(Severity::Info < Severity::Low && Severity::Medium < Severity::High);
        assert_eq!(Channel::parse("999"), Some(Channel::Emergency));
        assert_eq!(serde_json::to_string(&Outcome::S136Avoided).expect("json"), "\"s136_avoided\"");
        let e = serde_json::from_str::<Verdict>("\"great\"").expect_err("unknown");
        assert!(e.to_string().contains("useful"), "{e}");
        assert_eq!(listed(&Verdict::ALL, Verdict::as_str), "useful, not_useful, wrong_person");
    }
}
