//! What changed between two configs, in lines a person can read:
//! `rule frecann-month: min_calls 5 -> 4`.

use super::Config;
use serde_json::Value;

pub use super::restart::applicable;
use super::RestartOnly;

/// One change: the readable line, and whether it needs a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub text: String,
    pub needs_restart: bool,
}

/// Every difference between `old` and `new`, in file order.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let a = serde_json::to_value(old).unwrap_or(Value::Null);
    let b = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut out = Vec::new();
    walk("", &a, &b, &mut out);
    out
}

fn needs_restart(path: &str) -> bool {
    RestartOnly::covers(path)
}

/// A value as a log line may show it: phone-like runs masked (`exclude_numbers`), and
/// credentials in URLs redacted.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains("://") => crate::store::redact_url(s),
        Value::String(s) => crate::domain::mask::mask(s),
        Value::Null => "(unset)".into(),
        other => other.to_string(),
    }
}

/// How an item of an array of tables is named: rules and users by name, cues by category.
fn item_name(v: &Value) -> Option<String> {
    v.get("name").or_else(|| v.get("category")).and_then(Value::as_str).map(str::to_string)
}

fn label(path: &str, name: &str) -> String {
    match path {
        "repeat_callers.rules" => format!("rule {name}"),
        "desk.users" => format!("user {name}"),
        "mental_health.cues" => format!("cue {name}"),
        "mental_health.patterns" => format!("pattern {name}"),
        _ => format!("{path}[{name}]"),
    }
}

fn push(out: &mut Vec<Change>, path: &str, text: String) {
    out.push(Change { path: path.to_string(), text, needs_restart: needs_restart(path) });
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&p, va, y.get(k).unwrap_or(&Value::Null), out);
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&p, &Value::Null, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).all(|v| item_name(v).is_some()) && !(x.is_empty() && y.is_empty()) => {
            for va in x {
                let name = item_name(va).unwrap_or_default();
                match y.iter().find(|vb| item_name(vb).as_deref() == Some(name.as_str())) {
                    Some(vb) => item_changes(&label(path, &name), path, va, vb, out),
                    None => push(out, path, format!("{} removed", label(path, &name))),
                }
            }
            for vb in y {
                let name = item_name(vb).unwrap_or_default();
                if !x.iter().any(|va| item_name(va).as_deref() == Some(name.as_str())) {
                    push(out, path, format!("{} added", label(path, &name)));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            let added: Vec<String> = y.iter().filter(|v| !x.contains(v)).map(show).collect();
            let removed: Vec<String> = x.iter().filter(|v| !y.contains(v)).map(show).collect();
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", added.join(", ")));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", removed.join(", ")));
            }
            if parts.is_empty() {
                parts.push("reordered".into());
            }
            push(out, path, format!("{path}: {}", parts.join("; ")));
        }
        _ => {
            let mut text = format!("{path}: {} -> {}", show(a), show(b));
            if path.ends_with("password_hash") {
                text = format!("{path}: changed");
            }
            push(out, path, text);
        }
    }
}

fn item_changes(label: &str, path: &str, a: &Value, b: &Value, out: &mut Vec<Change>) {
    let mut inner = Vec::new();
    walk("", a, b, &mut inner);
    for c in inner {
        let text = c.text.split_once(": ").map(|(k, rest)| format!("{label}: {k} {rest}")).unwrap_or(c.text);
        push(out, path, text);
    }
}

/// A short fingerprint of the config in force, for `lantern_config_info{hash}`.
pub fn fingerprint(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(config).unwrap_or_default();
    let digest = Sha256::digest(&json);
    data_encoding::HEXLOWER.encode(&digest[..6])
}
