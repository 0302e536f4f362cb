//! A JSON payload read as it stands, its strings borrowed from the payload wherever they hold
//! no escape: reading an event this way allocates a few lists instead of a map, a key and a
//! value for every field. Objects keep their fields in order and a repeated key reads as its
//! last value, as in `serde_json::Value`, so what is accepted and refused does not change.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

#[derive(Debug, PartialEq)]
pub(super) enum Raw<'a> {
    Null,
    Bool(bool),
    /// The event has no numeric field, so a number is kept only as its kind.
    Number,
    Str(Cow<'a, str>),
    Array(Vec<Raw<'a>>),
    Object(Fields<'a>),
}

/// An object's fields, in payload order.
#[derive(Debug, PartialEq)]
pub(super) struct Fields<'a>(Vec<(Cow<'a, str>, Raw<'a>)>);

impl<'a> Fields<'a> {
    /// The value of `name`; the last one when the key repeats.
    pub(super) fn get(&self, name: &str) -> Option<&Raw<'a>> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

impl<'a> Raw<'a> {
    pub(super) fn parse(text: &'a str) -> serde_json::Result<Raw<'a>> {
        serde_json::from_str(text)
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self, Raw::Null)
    }

    /// How an error sentence names this value's type.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Raw::Null => "null",
            Raw::Bool(_) => "a boolean",
            Raw::Number => "a number",
            Raw::Str(_) => "a string",
            Raw::Array(_) => "an array",
            Raw::Object(_) => "an object",
        }
    }
}

/// Fields an event object usually has, so its list is allocated once.
const USUAL_FIELDS: usize = 10;

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_none<E>(self) -> Result<Raw<'de>, E> {
        Ok(Raw::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw<'de>, D::Error> {
        Deserialize::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Raw<'de>, E> {
        Ok(Raw::Bool(b))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Raw<'de>, E> {
        Ok(Raw::Number)
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Raw<'de>, E> {
        Ok(Raw::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Raw::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut fields = Vec::with_capacity(USUAL_FIELDS);
        while let Some((Key(k), v)) = map.next_entry()? {
            fields.push((k, v));
        }
        Ok(Raw::Object(Fields(fields)))
    }
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw<'de>, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

/// An object key, borrowed when it holds no escape.
struct Key<'a>(Cow<'a, str>);

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(s)))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Whether `raw` holds what serde_json's own `Value` holds for the same text.
    fn same(raw: &Raw, value: &Value) -> bool {
        match (raw, value) {
            (Raw::Null, Value::Null) | (Raw::Number, Value::Number(_)) => true,
            (Raw::Bool(a), Value::Bool(b)) => a == b,
            (Raw::Str(a), Value::String(b)) => a == b,
            (Raw::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
            (Raw::Object(a), Value::Object(b)) => {
                b.iter().all(|(k, v)| a.get(k).is_some_and(|r| same(r, v))) && a.0.iter().all(|(k, _)| b.contains_key(k.as_ref()))
            }
            _ => false,
        }
    }

    /// Both readings of `text`: equal values, or the same error sentence.
    fn agree(text: &str) -> Result<(), String> {
        match (Raw::parse(text), serde_json::from_str::<Value>(text)) {
            (Ok(r), Ok(v)) if same(&r, &v) => Ok(()),
            (Err(a), Err(b)) if a.to_string() == b.to_string() => Ok(()),
            (r, v) => Err(format!("{text:?}: raw {r:?}, serde_json {v:?}")),
        }
    }

    #[test]
    fn reads_what_serde_json_reads_and_refuses_what_it_refuses_in_the_same_words() {
        for text in [
            r#"{"event_id":"E1","caller":{"number":"07700 900123"},"notes":"a\nb \u00e9","n":1.5e3,"q":[true,null,-2]}"#,
            r#"{"kind":"offered","kind":"closed"}"#,
            r#"{"a\"b":1,"a\"b":{"c":2}}"#,
            r#"{"deep":[[[[{"x":[{}]}]]]]}"#,
            r#"{"big":1e999}"#,
            r#"{"lone":"\ud800"}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "{\"a\":\"tab\there\"}",
            r#"[1,2"#,
            r#"{"a":1} trailing"#,
            "",
            "nul",
            "  \"just a string\"  ",
            &format!("{}{}", "[".repeat(130), "]".repeat(130)),
        ] {
            agree(text).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let Ok(Raw::Object(f)) = Raw::parse(r#"{"kind":"offered","x":1,"kind":"closed"}"#) else { panic!("an object") };
        assert_eq!(f.get("kind"), Some(&Raw::Str(Cow::Borrowed("closed"))));
        assert_eq!(f.get("y"), None);
    }

    #[test]
    fn strings_without_escapes_are_borrowed_from_the_payload() {
        let Ok(Raw::Object(f)) = Raw::parse(r#"{"plain":"07700","escaped":"a\u0041"}"#) else { panic!("an object") };
        assert!(matches!(f.get("plain"), Some(Raw::Str(Cow::Borrowed("07700")))));
        assert!(matches!(f.get("escaped"), Some(Raw::Str(Cow::Owned(s))) if s == "aA"));
    }

    /// JSON-ish text built from the pieces events are made of, broken ones included.
    fn jsonish() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\"kind\"",
            "\"caller\"",
            "\"number\"",
            "\"a\\u0042\"",
            "\"\\ud83d\\ude00\"",
            "\"\\x\"",
            "1",
            "-0.5e-3",
            "1e400",
            "true",
            "false",
            "null",
            " ",
            "\n",
            "\"é\"",
            "\u{0}",
        ]);
        prop::collection::vec(piece, 0..40).prop_map(|p| p.concat())
    }

    /// Well-formed objects with repeated keys and nested values.
    fn objects() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z0-9 \\\\\"\u{e9}\n]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[abk]{1,2}", inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json_on_any_text(text in jsonish()) {
            agree(&text).map_err(TestCaseError::fail)?;
        }

        #[test]
        fn agrees_with_serde_json_on_objects_with_repeated_keys(a in objects(), b in objects()) {
            // Two objects' members written one after the other: keys can repeat.
            let (sa, sb) = (a.to_string(), b.to_string());
            let text = match (sa.strip_suffix('}'), sb.strip_prefix('{')) {
                (Some(head), Some(tail)) if head != "{" && tail != "}" => format!("{head},{tail}"),
                _ => sa,
            };
            agree(&text).map_err(TestCaseError::fail)?;
        }
    }
}
